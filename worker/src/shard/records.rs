//! The table records of a shard: one `samples` row per sample, and for
//! samples that collect attention their prompt tokens and the summaries of
//! each captured attention row.

use gaze_shared::layout::Region;
use gaze_shared::plan::Sample;
use gaze_shared::tables::{
    AttentionFieldRecord, AttentionRowRecord, AttentionTopkRecord, SampleRecord, Table, TargetKind,
    TokenRecord,
};

use super::{AttemptInfo, ShardError, ShardTables, StudyContext, attention_tables};
use crate::Engine;
use crate::capture::summary::summarize;
use crate::generate::GenerationOutput;
use crate::prompt::PromptTokens;

/// Collects the records of a shard's samples in plan order.
pub(super) struct RecordBuilder<'a> {
    engine: &'a Engine,
    pub(super) context: &'a StudyContext,
    attempt: &'a AttemptInfo,
    samples: Vec<SampleRecord>,
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) topk: Vec<AttentionTopkRecord>,
    pub(super) fields: Vec<AttentionFieldRecord>,
    pub(super) rows: Vec<AttentionRowRecord>,
}

impl<'a> RecordBuilder<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        context: &'a StudyContext,
        attempt: &'a AttemptInfo,
    ) -> Self {
        Self {
            engine,
            context,
            attempt,
            samples: Vec::new(),
            tokens: Vec::new(),
            topk: Vec::new(),
            fields: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds one generated sample: its `samples` row and, when it collects
    /// attention, its token and attention rows.
    pub(super) fn add(
        &mut self,
        sample: &Sample,
        prompt: &str,
        tokens: &PromptTokens,
        output: &GenerationOutput,
    ) {
        self.samples
            .push(self.sample_record(sample, prompt, tokens, output));
        if sample.collect_attention {
            self.add_tokens(sample, tokens);
            self.add_attention(sample, tokens, output);
        }
    }

    /// Builds the batches of every table the study writes.
    pub(super) fn finish(self, generate_ms: u64) -> Result<ShardTables, ShardError> {
        let samples = self.context.samples_schema.batch(&self.samples)?;
        let mut tables = vec![(Table::Samples, vec![samples])];
        tables.extend(attention_tables(&self)?);
        Ok(ShardTables {
            tables,
            generate_ms,
        })
    }

    fn model(&self) -> String {
        self.context.model.to_string()
    }

    fn sample_record(
        &self,
        sample: &Sample,
        prompt: &str,
        tokens: &PromptTokens,
        output: &GenerationOutput,
    ) -> SampleRecord {
        let settings = &self.context.settings;
        let decision = output.decision.as_ref();
        let probabilities = decision.and_then(|d| d.label_probabilities.as_ref());
        let label_probabilities = probabilities
            .map(|p| {
                settings
                    .decision
                    .as_ref()
                    .map_or(&[][..], |d| d.labels.as_slice())
                    .iter()
                    .zip(&p.normalized)
                    .map(|(label, share)| (label.clone(), share * p.mass))
                    .collect()
            })
            .unwrap_or_default();
        let prefill_ms = output.timings.prefill.as_secs_f64() * 1000.0;
        let decode_ms = output.timings.decode.as_secs_f64() * 1000.0;
        SampleRecord {
            sample_id: sample.sample_id as i64,
            shard_id: sample.shard_id as i32,
            model: self.model(),
            topic: sample.topic.clone(),
            route: sample.route.clone(),
            fields: sample.fields.clone(),
            prompt: prompt.to_string(),
            response: output.text.clone(),
            decision: decision.and_then(|d| d.label.clone()),
            decision_status: decision
                .map_or("no_label", |d| d.status.as_str())
                .to_string(),
            decision_step: decision.and_then(|d| d.step).map(|s| s as i32),
            label_probabilities,
            label_mass: probabilities.map(|p| p.mass),
            prompt_tokens: tokens.len() as i32,
            generated_tokens: output.token_ids.len() as i32,
            stop_reason: output.stop_reason.as_str().to_string(),
            seed: sample.seed,
            temperature: settings.sampling.temperature as f32,
            top_p: settings.sampling.top_p.unwrap_or(1.0) as f32,
            top_k: settings.sampling.top_k.map(|k| k as i32),
            worker: self.attempt.worker.clone(),
            attempt: self.attempt.attempt.try_into().unwrap_or(i32::MAX),
            prefill_ms,
            decode_ms,
            total_ms: prefill_ms + decode_ms,
            collect_attention: sample.collect_attention,
        }
    }

    fn add_tokens(&mut self, sample: &Sample, tokens: &PromptTokens) {
        let model = self.model();
        self.tokens
            .extend(tokens.tokens.iter().map(|t| TokenRecord {
                sample_id: sample.sample_id as i64,
                model: model.clone(),
                position: t.position as i32,
                token_id: t.id as i32,
                token: t.token.clone(),
                text: t.text.clone(),
                start: t.start as i32,
                end: t.end as i32,
                word: t.word.map(|w| w as i32),
                region: t.region,
                field: t.field.clone(),
                special: t.special,
            }));
    }

    fn add_attention(&mut self, sample: &Sample, tokens: &PromptTokens, output: &GenerationOutput) {
        let model = self.model();
        let sample_id = sample.sample_id as i64;
        let region_tokens = region_token_counts(tokens);
        for step in &output.captured {
            let generated_token = self
                .engine
                .tokenizer()
                .decode(&[step.token_id], false)
                .unwrap_or_default();
            for row in &step.rows {
                let summary = summarize(&row.scores, tokens, self.context.top_k)
                    .expect("a captured row covers the prompt and the generated keys");
                let (step_index, layer, head) =
                    (step.step as i32, row.layer as i32, row.head as i32);

                for (rank, top) in summary.top_k.iter().enumerate() {
                    let token = &tokens.tokens[top.position];
                    self.topk.push(AttentionTopkRecord {
                        sample_id,
                        model: model.clone(),
                        topic: sample.topic.clone(),
                        step: step_index,
                        generated_token: generated_token.clone(),
                        generated_token_id: step.token_id as i32,
                        layer,
                        head,
                        kv_head: row.kv_head as i32,
                        rank: rank as i32,
                        position: top.position as i32,
                        token: token.token.clone(),
                        text: token.text.clone(),
                        score: top.score,
                        region: token.region,
                        field: token.field.clone(),
                    });
                }

                let mut target = |kind: TargetKind, name: &str, mass: f32, count: usize| {
                    self.fields.push(AttentionFieldRecord {
                        sample_id,
                        model: model.clone(),
                        step: step_index,
                        layer,
                        head,
                        target_kind: kind,
                        target: name.to_string(),
                        mass,
                        mass_per_token: if count == 0 { 0.0 } else { mass / count as f32 },
                        token_count: count as i32,
                    });
                };
                if tokens.bos_position.is_some() {
                    target(TargetKind::Bos, "bos", summary.bos_mass, 1);
                }
                for ((region, mass), count) in summary.region_mass.iter().zip(&region_tokens) {
                    target(TargetKind::Region, region.as_str(), *mass, *count);
                }
                for field in &summary.field_mass {
                    target(TargetKind::Field, &field.field, field.mass, field.tokens);
                }
                target(
                    TargetKind::Generated,
                    "generated",
                    summary.generated_mass,
                    step.step,
                );

                if self.context.store_rows {
                    self.rows.push(AttentionRowRecord {
                        sample_id,
                        model: model.clone(),
                        step: step_index,
                        layer,
                        head,
                        scores: row.scores.clone(),
                    });
                }
            }
        }
    }
}

/// Counts the prompt tokens of each region in [`Region::ALL`] order, BOS
/// excluded, as the region masses count them.
fn region_token_counts(tokens: &PromptTokens) -> Vec<usize> {
    Region::ALL
        .iter()
        .map(|region| {
            tokens
                .tokens
                .iter()
                .filter(|t| Some(t.position) != tokens.bos_position && t.region == *region)
                .count()
        })
        .collect()
}
