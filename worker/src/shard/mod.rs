//! Processing one shard of a study with one model: render and tokenize each
//! planned sample, generate in batches, summarise the captured attention,
//! build the shard's tables and commit them exactly once.
//!
//! Generation is blocking CPU or GPU work, so [`ShardRunner::run`] runs it
//! on Tokio's blocking pool, where it does not stall heartbeats or progress.

mod records;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use gaze_shared::config::{StudyConfig, TemplateKind};
use gaze_shared::plan::Sample;
use gaze_shared::queue::{JobQueue, Lease};
use gaze_shared::store::{
    AttemptToken, CommitMarker, CommitOutcome, ModelId, ShardClaim, ShardKey, ShardTimings, Store,
    StoreError, StudyId, finish_claimed, stage_shard,
};
use gaze_shared::tables::{
    SamplesSchema, Table, TableError, attention_fields_batch, attention_rows_batch,
    attention_topk_batch, tokens_batch,
};
use gaze_shared::vignettes::VignetteSet;
use tracing::{debug, warn};

use crate::Engine;
use crate::capture::{CaptureError, CaptureSpec};
use crate::generate::{
    DecisionSpec, GenerateError, GenerationOutput, GenerationRequest, GenerationSettings,
    SamplingParams,
};
use crate::prompt::{self, ChatTemplate, Date, PromptError, PromptParts, PromptTokens};

/// Errors of processing a shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(
        "cannot load the chat template of model {model} in {dir}: {source}; set prompt.template = \"raw\" for a model without one"
    )]
    Template {
        model: String,
        dir: String,
        source: PromptError,
    },
    #[error("sample {sample_id}: {message}")]
    Prompt { sample_id: u64, message: String },
    #[error("the attention selection does not fit model {model}: {message}")]
    Selection { model: String, message: String },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("the samples table has an invalid column: {0}")]
    Schema(TableError),
    #[error("the shard was abandoned because the run is stopping")]
    Cancelled,
    #[error("the generation task of the shard failed: {0}")]
    Join(String),
}

impl From<StoreError> for ShardError {
    fn from(error: StoreError) -> Self {
        ShardError::Store(Box::new(error))
    }
}

/// The settings a study fixes for every shard that one model runs: the
/// prompt template, decoding settings, capture selection and table schema.
pub struct StudyContext {
    pub study: StudyId,
    pub model: ModelId,
    /// The study fingerprint, recorded in each commit marker.
    pub fingerprint: String,
    system: Option<String>,
    assistant_prefix: String,
    template: ChatTemplate,
    settings: GenerationSettings,
    capture: CaptureSpec,
    /// Prompt tokens kept per captured row in `attention_topk`; 0 writes no
    /// such table.
    top_k: usize,
    /// Whether the study captures attention at all (any attention table).
    attention: bool,
    store_rows: bool,
    samples_schema: SamplesSchema,
    batch_size: usize,
}

impl StudyContext {
    /// Builds the context of `model_id` in `config`, for `engine` (that
    /// model, loaded). `date` is the date `strftime_now` formats in chat
    /// templates: fix it per study so prompts do not change with the day.
    pub fn new(
        config: &StudyConfig,
        vignettes: &VignetteSet,
        model_id: &str,
        engine: &Engine,
        fingerprint: &str,
        date: Date,
    ) -> Result<StudyContext, ShardError> {
        let model = config
            .model(model_id)
            .expect("the caller passes a model of the config");
        let template = match config.prompt.template {
            TemplateKind::Chat => ChatTemplate::from_model_dir_with_date(&model.path, date)
                .map_err(|source| ShardError::Template {
                    model: model.id.clone(),
                    dir: model.path.display().to_string(),
                    source,
                })?,
            TemplateKind::Raw => {
                ChatTemplate::raw(&config.prompt.raw_template).map_err(|source| {
                    ShardError::Template {
                        model: model.id.clone(),
                        dir: model.path.display().to_string(),
                        source,
                    }
                })?
            }
        };

        let generation = &config.generation;
        let settings = GenerationSettings {
            max_new_tokens: generation.max_new_tokens,
            sampling: SamplingParams {
                temperature: generation.temperature,
                top_p: (generation.top_p < 1.0).then_some(generation.top_p),
                top_k: (generation.top_k > 0).then_some(generation.top_k),
            },
            stop_strings: generation.stop.clone(),
            decision: Some(DecisionSpec {
                labels: config.decision.labels.clone(),
                pattern: config.decision.pattern.clone(),
            }),
        };

        let attention = &config.attention;
        let model_config = engine.config();
        let selection_error = |e: gaze_shared::config::SelectionError| ShardError::Selection {
            model: model.id.clone(),
            message: e.to_string(),
        };
        let capture = CaptureSpec {
            layers: attention
                .resolve_layers(model_config.num_hidden_layers)
                .map_err(selection_error)?,
            heads: attention
                .resolve_heads(model_config.num_attention_heads)
                .map_err(selection_error)?,
            first_steps: attention.steps,
            decision_step: attention.decision_step,
        };
        capture.validate(model_config)?;

        let fields: BTreeSet<String> = vignettes
            .topics
            .iter()
            .flat_map(|topic| topic.pools.keys().cloned())
            .collect();
        let fields: Vec<String> = fields.into_iter().collect();
        let samples_schema =
            SamplesSchema::new(&fields, &config.decision.labels).map_err(ShardError::Schema)?;

        Ok(StudyContext {
            study: StudyId::new(&config.study.name).map_err(StoreError::from)?,
            model: ModelId::new(&model.id).map_err(StoreError::from)?,
            fingerprint: fingerprint.to_string(),
            system: Some(config.prompt.system.clone()).filter(|s| !s.is_empty()),
            assistant_prefix: config.prompt.assistant_prefix.clone(),
            template,
            settings,
            capture,
            top_k: attention.top_k,
            attention: attention.sample_rate > 0.0,
            store_rows: attention.store_rows,
            samples_schema,
            batch_size: generation.batch_size.max(1),
        })
    }

    /// Renders and tokenizes one sample's prompt.
    fn prompt(
        &self,
        engine: &Engine,
        sample: &Sample,
    ) -> Result<(String, PromptTokens), ShardError> {
        let parts = PromptParts {
            system: self.system.as_deref(),
            user: &sample.user_message,
            user_layout: &sample.layout,
            assistant_prefix: &self.assistant_prefix,
        };
        let failed = |message: String| ShardError::Prompt {
            sample_id: sample.sample_id,
            message,
        };
        let rendered = prompt::render(&self.template, &parts).map_err(|e| failed(e.to_string()))?;
        let tokens = prompt::tokenize_rendered(
            engine.tokenizer(),
            engine.special_tokens().bos_token_id,
            &rendered,
        )
        .map_err(|e| failed(format!("{e:#}")))?;
        Ok((rendered.text, tokens))
    }
}

/// Progress of a shard after one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    /// Samples finished in this batch.
    pub samples: usize,
    /// Tokens generated in this batch.
    pub generated_tokens: usize,
}

/// The worker and lease attempt behind an attempt at a shard.
#[derive(Debug, Clone)]
pub struct AttemptInfo {
    pub worker: String,
    /// The lease's attempt number, 1 for the first claim of the shard.
    pub attempt: u64,
}

/// The tables of one shard, built and not yet written.
pub struct ShardTables {
    /// Each table to write with its batch; `samples` first.
    pub tables: Vec<(Table, Vec<RecordBatch>)>,
    /// Time spent in prompt building and generation.
    pub generate_ms: u64,
}

/// Generates every sample of a shard and builds its tables. Blocking: run
/// it off the async runtime. `progress` is called after each batch.
/// Returns [`ShardError::Cancelled`] between batches once `cancel` is set.
///
/// Samples are generated in batches of `generation.batch_size`, sorted by
/// prompt length to cut padding. Tokens and decisions do not depend on the
/// order or the batches, because each sample has its own seed and padding
/// is masked. Attention values agree to float rounding (about 1e-6),
/// because padded batches sum in another order.
pub fn generate_shard(
    engine: &Engine,
    context: &StudyContext,
    samples: &[Sample],
    attempt: &AttemptInfo,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(BatchProgress),
) -> Result<ShardTables, ShardError> {
    let started = Instant::now();
    let prompts: Vec<(String, PromptTokens)> = samples
        .iter()
        .map(|sample| context.prompt(engine, sample))
        .collect::<Result<_, _>>()?;

    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| (prompts[i].1.len(), i));
    let mut outputs: Vec<Option<GenerationOutput>> = vec![None; samples.len()];
    for chunk in order.chunks(context.batch_size) {
        if cancel.load(Ordering::Relaxed) {
            return Err(ShardError::Cancelled);
        }
        let requests: Vec<GenerationRequest> = chunk
            .iter()
            .map(|&i| GenerationRequest {
                prompt_ids: prompts[i].1.ids.clone(),
                seed: samples[i].seed,
                capture: samples[i].collect_attention,
            })
            .collect();
        let results = engine.generate(&requests, &context.settings, &context.capture)?;
        let generated_tokens = results.iter().map(|r| r.token_ids.len()).sum();
        for (&i, output) in chunk.iter().zip(results) {
            outputs[i] = Some(output);
        }
        progress(BatchProgress {
            samples: chunk.len(),
            generated_tokens,
        });
    }
    let generate_ms = started.elapsed().as_millis() as u64;

    let mut builder = records::RecordBuilder::new(engine, context, attempt);
    for ((sample, (text, tokens)), output) in samples.iter().zip(&prompts).zip(outputs) {
        let output = output.expect("every sample was generated");
        builder.add(sample, text, tokens, &output);
    }
    builder.finish(generate_ms)
}

/// A loaded model with its study context and the store: runs shards of
/// that model one after another.
#[derive(Clone)]
pub struct ShardRunner {
    pub engine: Arc<Engine>,
    pub context: Arc<StudyContext>,
    pub store: Store,
}

/// The result of one shard.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// The shard's commit marker, whichever attempt it names.
    pub marker: CommitMarker,
    /// The commit's result: `None` when an earlier attempt had claimed the
    /// shard and this one only finished its commit.
    pub outcome: Option<CommitOutcome>,
}

impl ShardRunner {
    /// Runs one shard to its commit marker: finishes an earlier attempt's
    /// claim if there is one, else generates `samples`, stages the tables,
    /// checks the lease (when given) and commits.
    pub async fn run(
        &self,
        shard_id: u32,
        samples: Vec<Sample>,
        attempt: AttemptInfo,
        lease: Option<(&dyn JobQueue, &Lease)>,
        cancel: Arc<AtomicBool>,
        mut progress: Box<dyn FnMut(BatchProgress) + Send>,
    ) -> Result<ShardReport, ShardError> {
        let context = &self.context;
        let key = ShardKey::new(context.study.clone(), context.model.clone(), shard_id);
        if let Some(marker) = finish_claimed(&self.store, &key).await? {
            return Ok(ShardReport {
                marker,
                outcome: None,
            });
        }

        let started_unix_ms = unix_ms();
        let (engine, job_context, job_attempt) = (
            Arc::clone(&self.engine),
            Arc::clone(context),
            attempt.clone(),
        );
        let tables = tokio::task::spawn_blocking(move || {
            generate_shard(
                &engine,
                &job_context,
                &samples,
                &job_attempt,
                &cancel,
                &mut *progress,
            )
        })
        .await
        .map_err(|e| ShardError::Join(e.to_string()))??;

        let draft = ShardClaim {
            study: context.study.clone(),
            model: context.model.clone(),
            shard: shard_id,
            token: AttemptToken::new(&attempt.worker, attempt.attempt),
            fingerprint: context.fingerprint.clone(),
            attempt: attempt.attempt.try_into().unwrap_or(u32::MAX),
            worker: attempt.worker.clone(),
            rows: Default::default(),
            timings: ShardTimings {
                started_unix_ms,
                finished_unix_ms: 0,
                generate_ms: tables.generate_ms,
                write_ms: 0,
            },
            gaze_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let borrowed: Vec<(Table, &[RecordBatch])> = tables
            .tables
            .iter()
            .map(|(table, batches)| (*table, batches.as_slice()))
            .collect();
        let mut staged = stage_shard(&self.store, draft, &borrowed).await?;
        staged.claim.timings.finished_unix_ms = unix_ms();

        if let Some((queue, lease)) = lease {
            match queue.still_owner(lease).await {
                Ok(true) => {}
                Ok(false) => warn!(
                    shard = %key, worker = %attempt.worker, attempt = attempt.attempt,
                    "the lease was lost before the claim; claiming anyway, the first claim wins"
                ),
                Err(error) => {
                    warn!(shard = %key, cause = %error, "checking the lease failed; claiming anyway")
                }
            }
        }

        let outcome = staged.commit(&self.store).await?;
        // Callers log the commit with their own counts, so this is debug.
        debug!(
            shard = %key, worker = %attempt.worker, attempt = attempt.attempt,
            won = matches!(outcome, CommitOutcome::Won(_)), "shard committed"
        );
        Ok(ShardReport {
            marker: outcome.marker().clone(),
            outcome: Some(outcome),
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses the date of a `YYYY-MM-DD...` timestamp, such as a manifest's
/// `created_at`.
pub fn date_of(timestamp: &str) -> Option<Date> {
    let day = timestamp.get(..10)?;
    let mut parts = day.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    Date::from_ymd(year, month, day)
}

/// Builds the batches of the attention tables of a shard.
fn attention_tables(
    builder: &records::RecordBuilder,
) -> Result<Vec<(Table, Vec<RecordBatch>)>, TableError> {
    let mut tables = Vec::new();
    if builder.context.attention {
        tables.push((Table::Tokens, vec![tokens_batch(&builder.tokens)?]));
        if builder.context.top_k > 0 {
            tables.push((
                Table::AttentionTopk,
                vec![attention_topk_batch(&builder.topk)?],
            ));
        }
        tables.push((
            Table::AttentionFields,
            vec![attention_fields_batch(&builder.fields)?],
        ));
        if builder.context.store_rows {
            tables.push((
                Table::AttentionRows,
                vec![attention_rows_batch(&builder.rows)?],
            ));
        }
    }
    Ok(tables)
}
