//! One batch from prefill to the last stopped sample: sampling each row,
//! keeping the attention rows that capture needs, and dropping finished
//! rows from the batch and its KV cache.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use tracing::{debug, warn};

use super::batch::{left_pad, shared_padding};
use super::decision::{DecisionParser, LabelProbabilities, LabelTokens};
use super::response::Response;
use super::sampling::Sampler;
use super::stop::{StopCriteria, StopReason};
use super::{
    DecisionOutcome, GenerateError, GenerationOutput, GenerationRequest, GenerationSettings,
    Timings,
};
use crate::capture::rows::StepAttention;
use crate::capture::{AttentionRow, CaptureSpec, CapturedStep};
use crate::model::decoder::{CaptureLayers, ForwardOutput};
use crate::model::kv_cache::KvCache;
use crate::model::loader::LoadedModel;
use crate::model::mask::{AttentionMasks, MaskLayout};

/// The settings of one call, checked and compiled once for all its batches.
#[derive(Debug, Clone)]
pub struct Plan {
    pub settings: GenerationSettings,
    pub capture: CaptureSpec,
    pub stop: StopCriteria,
    pub parser: Option<DecisionParser>,
    pub label_tokens: Option<LabelTokens>,
}

impl Plan {
    /// Checks `settings` and `capture` against `model` and compiles the
    /// decision pattern and label tokens.
    pub fn new(
        model: &LoadedModel,
        settings: &GenerationSettings,
        capture: &CaptureSpec,
    ) -> Result<Self, GenerateError> {
        if settings.max_new_tokens == 0 {
            return Err(GenerateError::InvalidSettings {
                message: "max_new_tokens is 0; generate at least one token".into(),
            });
        }
        capture.validate(model.decoder.config())?;
        let parser = settings
            .decision
            .as_ref()
            .map(DecisionParser::new)
            .transpose()?;
        let label_tokens = match &parser {
            Some(parser) => Some(LabelTokens::new(&model.tokenizer, parser.labels())?),
            None => None,
        };
        if let Some(reason) = label_tokens
            .as_ref()
            .and_then(|tokens| tokens.ambiguous.as_ref())
        {
            warn!(reason = %reason, "label probabilities will not be reported");
        }
        let stop = StopCriteria {
            eos_token_ids: model.special_tokens.eos_token_ids.clone(),
            stop_strings: settings.stop_strings.clone(),
            max_new_tokens: settings.max_new_tokens,
        };
        Ok(Self {
            settings: settings.clone(),
            capture: capture.clone(),
            stop,
            parser,
            label_tokens,
        })
    }
}

/// A step that may turn out to be the decision step.
///
/// NOTE: a response that repeats a label keeps one candidate per
/// repetition until the sample stops, so in the worst case every step's
/// rows are held at once.
struct Candidate {
    step: usize,
    token_id: u32,
    probabilities: Option<LabelProbabilities>,
    /// Its attention rows, kept when the capture spec includes the decision
    /// step and this step is not among the first steps (those are stored
    /// separately).
    rows: Option<Vec<AttentionRow>>,
}

/// One sample while its batch runs.
struct Row<'a> {
    /// Index of the request in the batch as given.
    index: usize,
    request: &'a GenerationRequest,
    /// Leading visible cache columns that are this row's padding.
    pad: usize,
    /// The position id of the next token fed to the model.
    next_position: u32,
    sampler: Sampler,
    response: Response,
    captured: Vec<CapturedStep>,
    candidates: Vec<Candidate>,
    stop: Option<StopReason>,
}

/// Generates `requests` as one left-padded batch. Fails on the first
/// invalid request or model error; nothing is returned for the others.
pub fn run_batch(
    model: &LoadedModel,
    requests: &[GenerationRequest],
    plan: &Plan,
) -> Result<Vec<GenerationOutput>, GenerateError> {
    validate_requests(model, requests)?;
    if requests.is_empty() {
        return Ok(Vec::new());
    }

    let (mut run, mut out) = BatchRun::prefill(model, requests, plan)?;
    let mut step = 0;
    loop {
        let keep = run.sample(step, &out.logits)?;
        run.keep_attention(step, out.attention.as_ref(), &keep)?;
        run.prune_candidates();
        if !run.retire_finished()? {
            break;
        }
        step += 1;
        out = run.decode_pass(step)?;
    }
    debug!(
        batch_size = requests.len(),
        steps = step + 1,
        "batch finished"
    );
    Ok(run
        .outputs
        .into_iter()
        .map(|output| output.expect("every row finished"))
        .collect())
}

/// The state of one batch between forward passes.
struct BatchRun<'a> {
    model: &'a LoadedModel,
    plan: &'a Plan,
    windows: Vec<Option<usize>>,
    cache: KvCache,
    capture_layers: Option<CaptureLayers>,
    /// The rows still generating, in cache row order.
    rows: Vec<Row<'a>>,
    /// Per request, its output once its row stopped.
    outputs: Vec<Option<GenerationOutput>>,
    batch_size: usize,
    prefill: Duration,
    prefill_end: Instant,
}

impl<'a> BatchRun<'a> {
    /// Pads the prompts on the left and runs the prefill over all of them.
    fn prefill(
        model: &'a LoadedModel,
        requests: &'a [GenerationRequest],
        plan: &'a Plan,
    ) -> Result<(Self, ForwardOutput), GenerateError> {
        let decoder = &model.decoder;
        let device = decoder.device();
        let spec = &plan.capture;
        let batch_size = requests.len();

        let prompts: Vec<&[u32]> = requests.iter().map(|r| r.prompt_ids.as_slice()).collect();
        let padded = left_pad(&prompts, model.special_tokens.pad_token_id);
        let capture_layers = match !spec.is_empty() && requests.iter().any(|r| r.capture) {
            true => Some(CaptureLayers {
                layers: spec.layers.clone(),
                heads: index_tensor(&spec.heads, device)?,
            }),
            false => None,
        };
        let rows = requests
            .iter()
            .enumerate()
            .map(|(index, request)| Row {
                index,
                request,
                pad: padded.pads[index],
                next_position: request.prompt_ids.len() as u32,
                sampler: Sampler::new(request.seed, plan.settings.sampling),
                response: Response::default(),
                captured: Vec::new(),
                candidates: Vec::new(),
                stop: None,
            })
            .collect();
        let mut run = Self {
            model,
            plan,
            windows: decoder.sliding_windows(),
            cache: decoder.new_cache(padded.max_len + plan.settings.max_new_tokens),
            capture_layers,
            rows,
            outputs: vec![None; batch_size],
            batch_size,
            prefill: Duration::ZERO,
            prefill_end: Instant::now(),
        };
        debug!(batch_size, prompt_len = padded.max_len, "prefill");

        let started = Instant::now();
        let input = Tensor::from_vec(padded.ids.clone(), (batch_size, padded.max_len), device)?;
        let layout = MaskLayout {
            pads: padded.pads.clone(),
            past_len: 0,
            new_len: padded.max_len,
        };
        let masks = AttentionMasks::new(&layout, &run.windows, device)?;
        let capture = run.capture_layers.as_ref();
        let out = decoder.forward(&input, &padded.positions(), &masks, &mut run.cache, capture)?;
        run.prefill = started.elapsed();
        run.prefill_end = Instant::now();
        Ok((run, out))
    }

    /// Samples each row's token from `logits` (one row per batch row),
    /// records decision candidates and the stop reason, and returns the
    /// batch rows whose attention at this step must be kept.
    fn sample(&mut self, step: usize, logits: &Tensor) -> Result<Vec<usize>, GenerateError> {
        let plan = self.plan;
        let spec = &plan.capture;
        let logits = logits.to_device(&Device::Cpu)?;
        let mut keep = Vec::new();
        for (position, row) in self.rows.iter_mut().enumerate() {
            let row_logits = logits.get(position)?;
            let token = row.sampler.sample(&row_logits)?;
            row.response.push(&self.model.tokenizer, token)?;

            let span = row.response.span(step);
            let candidate = plan
                .parser
                .as_ref()
                .is_some_and(|parser| parser.may_start_label(row.response.text(), span));
            if candidate {
                let probabilities = match &plan.label_tokens {
                    Some(tokens) => tokens.probabilities(&row_logits.to_vec1::<f32>()?),
                    None => None,
                };
                row.candidates.push(Candidate {
                    step,
                    token_id: token,
                    probabilities,
                    rows: None,
                });
            }
            let wanted = step < spec.first_steps || (candidate && spec.decision_step);
            if wanted && row.request.capture {
                keep.push(position);
            }
            row.stop = plan
                .stop
                .check(token, row.response.ids().len(), row.response.text());
        }
        Ok(keep)
    }

    /// Copies the attention rows of batch rows `keep` to the host, without
    /// their padding, as first-step captures or as the rows of this step's
    /// decision candidate.
    fn keep_attention(
        &mut self,
        step: usize,
        attention: Option<&Tensor>,
        keep: &[usize],
    ) -> Result<(), GenerateError> {
        let Some(attention) = attention.filter(|_| !keep.is_empty()) else {
            return Ok(());
        };
        let spec = &self.plan.capture;
        let config = self.model.decoder.config();
        let selected = index_tensor(keep, attention.device())?;
        let host = StepAttention::from_tensor(&attention.index_select(&selected, 1)?)?;
        for (host_row, &position) in keep.iter().enumerate() {
            let row = &mut self.rows[position];
            let rows = host.unpadded(host_row, row.pad, spec, |head| config.kv_head_of(head))?;
            debug_assert!(
                rows.iter()
                    .all(|r| r.scores.len() == row.request.prompt_ids.len() + step)
            );
            let token_id = *row
                .response
                .ids()
                .last()
                .expect("a token was sampled this step");
            if step < spec.first_steps {
                row.captured.push(CapturedStep {
                    step,
                    token_id,
                    rows,
                });
            } else if let Some(candidate) = row.candidates.last_mut().filter(|c| c.step == step) {
                candidate.rows = Some(rows);
            }
        }
        Ok(())
    }

    /// Drops candidates whose text has moved away from every label.
    fn prune_candidates(&mut self) {
        let Some(parser) = &self.plan.parser else {
            return;
        };
        for row in self.rows.iter_mut() {
            let response = &row.response;
            row.candidates
                .retain(|c| parser.may_start_label(response.text(), response.span(c.step)));
        }
    }

    /// Moves stopped rows to the outputs and out of the KV cache, and hides
    /// padding columns that every remaining row shares. Returns whether any
    /// row is still generating.
    fn retire_finished(&mut self) -> Result<bool, GenerateError> {
        let rows_before = self.rows.len();
        let mut kept_positions = Vec::with_capacity(rows_before);
        let mut active = Vec::with_capacity(rows_before);
        for (position, row) in std::mem::take(&mut self.rows).into_iter().enumerate() {
            if row.stop.is_some() {
                let timings = Timings {
                    batch_size: self.batch_size,
                    prefill: self.prefill,
                    decode: self.prefill_end.elapsed(),
                };
                let index = row.index;
                self.outputs[index] = Some(finish(row, self.plan, timings));
            } else {
                kept_positions.push(position);
                active.push(row);
            }
        }
        self.rows = active;
        if self.rows.is_empty() {
            return Ok(false);
        }
        if self.rows.len() < rows_before {
            self.cache
                .select_rows(&index_tensor(&kept_positions, self.model.decoder.device())?)?;
        }

        let shared = shared_padding(&self.rows.iter().map(|row| row.pad).collect::<Vec<_>>());
        if shared > 0 {
            self.cache.skip_front(shared);
            self.rows.iter_mut().for_each(|row| row.pad -= shared);
        }
        Ok(true)
    }

    /// Feeds each active row's last token and returns the pass for `step`.
    fn decode_pass(&mut self, step: usize) -> Result<ForwardOutput, GenerateError> {
        let decoder = &self.model.decoder;
        let device = decoder.device();
        let spec = &self.plan.capture;

        let tokens: Vec<u32> = self
            .rows
            .iter()
            .map(|row| *row.response.ids().last().expect("sampled"))
            .collect();
        let positions: Vec<Vec<u32>> = self
            .rows
            .iter()
            .map(|row| vec![row.next_position])
            .collect();
        self.rows.iter_mut().for_each(|row| row.next_position += 1);
        let input = Tensor::from_vec(tokens, (self.rows.len(), 1), device)?;
        let pads = self.rows.iter().map(|row| row.pad).collect();
        let layout = MaskLayout {
            pads,
            past_len: self.cache.visible_len(),
            new_len: 1,
        };
        let masks = AttentionMasks::new(&layout, &self.windows, device)?;
        let capture = self
            .capture_layers
            .as_ref()
            .filter(|_| step < spec.first_steps || spec.decision_step);
        Ok(decoder.forward(&input, &positions, &masks, &mut self.cache, capture)?)
    }
}

fn index_tensor(indices: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    Tensor::new(
        indices.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
        device,
    )
}

fn validate_requests(
    model: &LoadedModel,
    requests: &[GenerationRequest],
) -> Result<(), GenerateError> {
    let vocab_size = model.decoder.config().vocab_size;
    for (index, request) in requests.iter().enumerate() {
        if request.prompt_ids.is_empty() {
            return Err(GenerateError::InvalidRequest {
                index,
                message: "the prompt has no tokens".into(),
            });
        }
        if let Some(id) = request
            .prompt_ids
            .iter()
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(GenerateError::InvalidRequest {
                index,
                message: format!("token id {id} is outside the vocabulary of {vocab_size}"),
            });
        }
    }
    Ok(())
}

/// Parses a stopped row's decision and assembles its output, keeping the
/// decision step's rows and dropping the other candidates.
fn finish(row: Row, plan: &Plan, timings: Timings) -> GenerationOutput {
    let Row {
        request,
        response,
        mut captured,
        mut candidates,
        stop,
        ..
    } = row;
    let decision = plan.parser.as_ref().map(|parser| {
        let parsed = parser.parse(response.text());
        let step = parsed.offset.and_then(|offset| response.step_at(offset));
        let candidate = step.and_then(|step| candidates.iter().position(|c| c.step == step));
        if step.is_some() && candidate.is_none() {
            warn!(
                step,
                "the decision step was not kept as a candidate; its label probabilities are missing"
            );
        }
        let candidate = candidate.map(|index| candidates.swap_remove(index));
        let mut label_probabilities = None;
        if let Some(candidate) = candidate {
            label_probabilities = candidate.probabilities;
            if let Some(rows) = candidate.rows.filter(|_| request.capture) {
                captured.push(CapturedStep {
                    step: candidate.step,
                    token_id: candidate.token_id,
                    rows,
                });
            }
        }
        DecisionOutcome {
            status: parsed.status,
            label: parsed.label,
            step,
            label_probabilities,
        }
    });
    GenerationOutput {
        token_ids: response.ids().to_vec(),
        text: response.text().to_string(),
        stop_reason: stop.expect("finish is called on stopped rows"),
        captured,
        decision,
        timings,
    }
}
