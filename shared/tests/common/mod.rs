//! Fixtures shared by the store and table tests: small shards of every
//! table, an object store that fails on purpose, and the gate for tests
//! that need an outside service.

#![allow(dead_code)]

pub mod failing;

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use gaze_shared::layout::Region;
use gaze_shared::store::{
    CommitMarker, Manifest, ModelId, ShardTimings, StudyId, UPLOAD_PART_BYTES,
};
use gaze_shared::tables::{
    AttentionFieldRecord, AttentionRowRecord, AttentionTopkRecord, SampleRecord, SamplesSchema,
    Table, TargetKind, TokenRecord, attention_fields_batch, attention_rows_batch,
    attention_topk_batch, tokens_batch,
};

pub const FIELDS: [&str; 2] = ["nationality", "age"];
pub const LABELS: [&str; 2] = ["GRANT", "REFUSE"];

pub fn study(name: &str) -> StudyId {
    StudyId::new(name).unwrap()
}

pub fn model(name: &str) -> ModelId {
    ModelId::new(name).unwrap()
}

pub fn samples_schema() -> SamplesSchema {
    let fields: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
    let labels: Vec<String> = LABELS.iter().map(|l| l.to_string()).collect();
    SamplesSchema::new(&fields, &labels).unwrap()
}

/// The records of one small shard: `samples` samples, of which the even
/// ones collect attention over a 4-token prompt, 2 steps, 2 layers, 2 heads.
pub struct ShardFixture {
    pub samples: Vec<SampleRecord>,
    pub tokens: Vec<TokenRecord>,
    pub topk: Vec<AttentionTopkRecord>,
    pub fields: Vec<AttentionFieldRecord>,
    pub rows: Vec<AttentionRowRecord>,
}

pub fn shard_fixture(model: &str, shard: i32, samples: i64) -> ShardFixture {
    let mut fixture = ShardFixture {
        samples: Vec::new(),
        tokens: Vec::new(),
        topk: Vec::new(),
        fields: Vec::new(),
        rows: Vec::new(),
    };
    let words = [
        ("<|begin_of_text|>", Region::ChatTemplate, None),
        ("Ali", Region::Vignette, Some("nationality")),
        (" is", Region::Vignette, None),
        (" 34", Region::Vignette, Some("age")),
    ];

    // Reverse order, so that the builders' sorting is exercised.
    for offset in (0..samples).rev() {
        let sample_id = i64::from(shard) * 1000 + offset;
        let collect = offset % 2 == 0;
        fixture
            .samples
            .push(sample_record(model, shard, sample_id, collect));
        if !collect {
            continue;
        }
        for (position, (text, region, field)) in words.iter().enumerate() {
            fixture.tokens.push(TokenRecord {
                sample_id,
                model: model.to_string(),
                position: position as i32,
                token_id: 1000 + position as i32,
                token: text.replace(' ', "Ġ"),
                text: text.to_string(),
                start: position as i32 * 3,
                end: position as i32 * 3 + 3,
                word: (position > 0).then_some(position as i32 - 1),
                region: *region,
                field: field.map(String::from),
                special: position == 0,
            });
        }
        for step in 0..2 {
            for layer in 0..2 {
                for head in 0..2 {
                    push_query_row(&mut fixture, model, sample_id, step, layer, head);
                }
            }
        }
    }
    fixture
}

fn sample_record(model: &str, shard: i32, sample_id: i64, collect: bool) -> SampleRecord {
    let grant = 0.25 + (sample_id % 7) as f32 / 100.0;
    SampleRecord {
        sample_id,
        shard_id: shard,
        model: model.to_string(),
        topic: "asylum".to_string(),
        route: if sample_id % 3 == 0 {
            "appeal"
        } else {
            "initial"
        }
        .to_string(),
        fields: BTreeMap::from([
            ("nationality".to_string(), "Syrian, \"Aleppo\"".to_string()),
            ("age".to_string(), format!("{}", 20 + sample_id % 40)),
        ]),
        prompt: format!("Decide case {sample_id}.\nApplicant: Ali"),
        response: "DECISION: GRANT".to_string(),
        decision: (sample_id % 5 != 0).then(|| "GRANT".to_string()),
        decision_status: if sample_id % 5 != 0 {
            "parsed"
        } else {
            "no_label"
        }
        .to_string(),
        decision_step: (sample_id % 5 != 0).then_some(2),
        label_probabilities: BTreeMap::from([
            ("GRANT".to_string(), grant),
            ("REFUSE".to_string(), 0.5),
        ]),
        label_mass: Some(grant + 0.5),
        prompt_tokens: 4,
        generated_tokens: 3,
        stop_reason: "eos".to_string(),
        seed: 1_000_000_007 * sample_id as u64,
        temperature: 0.7,
        top_p: 0.9,
        top_k: if sample_id % 2 == 0 { Some(40) } else { None },
        worker: "worker-a".to_string(),
        attempt: 1,
        prefill_ms: 12.5,
        decode_ms: 30.25,
        total_ms: 42.75,
        collect_attention: collect,
    }
}

fn push_query_row(
    fixture: &mut ShardFixture,
    model: &str,
    sample_id: i64,
    step: i32,
    layer: i32,
    head: i32,
) {
    let scores: Vec<f32> = vec![0.5, 0.25, 0.125, 0.125];
    for (rank, position) in [0, 1].into_iter().enumerate() {
        fixture.topk.push(AttentionTopkRecord {
            sample_id,
            model: model.to_string(),
            topic: "asylum".to_string(),
            step,
            generated_token: " GRANT".to_string(),
            generated_token_id: 4000 + step,
            layer,
            head,
            kv_head: head / 2,
            rank: rank as i32,
            position,
            token: if position == 0 {
                "<|begin_of_text|>"
            } else {
                "Ali"
            }
            .to_string(),
            text: if position == 0 {
                "<|begin_of_text|>"
            } else {
                "Ali"
            }
            .to_string(),
            score: scores[position as usize],
            region: if position == 0 {
                Region::ChatTemplate
            } else {
                Region::Vignette
            },
            field: (position == 1).then(|| "nationality".to_string()),
        });
    }
    let targets = [
        (TargetKind::Bos, "bos", 0.5, 1),
        (TargetKind::Region, "vignette", 0.5, 3),
        (TargetKind::Field, "nationality", 0.25, 1),
        (TargetKind::Field, "age", 0.125, 1),
    ];
    // Reverse order, so that sorting by target kind is exercised.
    for (target_kind, target, mass, token_count) in targets.into_iter().rev() {
        fixture.fields.push(AttentionFieldRecord {
            sample_id,
            model: model.to_string(),
            step,
            layer,
            head,
            target_kind,
            target: target.to_string(),
            mass,
            mass_per_token: mass / token_count as f32,
            token_count,
        });
    }
    fixture.rows.push(AttentionRowRecord {
        sample_id,
        model: model.to_string(),
        step,
        layer,
        head,
        scores: scores.clone(),
    });
}

impl ShardFixture {
    /// Builds one batch per table, in [`Table::ALL`] order.
    pub fn batches(&self) -> Vec<(Table, Vec<RecordBatch>)> {
        vec![
            (
                Table::Samples,
                vec![samples_schema().batch(&self.samples).unwrap()],
            ),
            (Table::Tokens, vec![tokens_batch(&self.tokens).unwrap()]),
            (
                Table::AttentionTopk,
                vec![attention_topk_batch(&self.topk).unwrap()],
            ),
            (
                Table::AttentionFields,
                vec![attention_fields_batch(&self.fields).unwrap()],
            ),
            (
                Table::AttentionRows,
                vec![attention_rows_batch(&self.rows).unwrap()],
            ),
        ]
    }
}

/// Builds a manifest for `study_name` with one model, `llama`.
pub fn manifest(study_name: &str) -> Manifest {
    Manifest {
        study: study(study_name),
        fingerprint: "f1ngerpr1nt".to_string(),
        fingerprint_parts: BTreeMap::from([(
            "vignettes".to_string(),
            "0123456789abcdef".to_string(),
        )]),
        config: serde_json::json!({"study": {"name": study_name}}),
        plan: serde_json::json!({"samples": 10}),
        gaze_version: "0.1.0".to_string(),
        models: BTreeMap::from([("llama".to_string(), "fedcba9876543210".to_string())]),
        vignettes: None,
        created_at: None,
    }
}

pub fn marker(study_name: &str, model_name: &str, shard: u32) -> CommitMarker {
    CommitMarker {
        study: study(study_name),
        model: model(model_name),
        shard,
        fingerprint: "f1ngerpr1nt".to_string(),
        attempt: 1,
        worker: "worker-a".to_string(),
        rows: BTreeMap::new(),
        timings: ShardTimings {
            started_unix_ms: 1_700_000_000_000,
            finished_unix_ms: 1_700_000_005_000,
            generate_ms: 4000,
            write_ms: 900,
        },
        gaze_version: "0.1.0".to_string(),
    }
}

/// Rows of random scores, more than one upload part in size, so that the
/// write goes through a multipart upload.
pub fn rows_larger_than_one_part() -> RecordBatch {
    let keys = 1000;
    let rows = UPLOAD_PART_BYTES * 3 / 2 / (keys * 4);
    let mut state: u32 = 12345;
    let records: Vec<AttentionRowRecord> = (0..rows)
        .map(|row| AttentionRowRecord {
            sample_id: row as i64,
            model: "llama".to_string(),
            step: 0,
            layer: 0,
            head: 0,
            scores: (0..keys)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    state as f32 / u32::MAX as f32
                })
                .collect(),
        })
        .collect();
    attention_rows_batch(&records).unwrap()
}

/// Returns the value of `variable`, or `None` after printing why the test
/// is skipped. With `GAZE_REQUIRE_SERVICES=1` a missing value fails the
/// test instead, so that CI cannot skip it by accident.
pub fn service_env(variable: &str, how_to_set: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("GAZE_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{variable} is not set, and GAZE_REQUIRE_SERVICES=1 requires it: {how_to_set}")
        }
        _ => {
            eprintln!("SKIPPED: {variable} is not set ({how_to_set})");
            None
        }
    }
}
