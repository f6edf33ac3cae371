//! Parquet bytes per attention sample, and the time to encode them.
//!
//! The synthetic shard matches what the old Python pipeline kept per sample:
//! a 350-token prompt, the first 3 decode steps, 3 layers, all 32 heads of
//! Llama-3-8B and the top 10 keys per head. It prints the bytes per sample
//! of each table, then measures encoding with criterion.
//!
//!     cargo bench -p gaze-shared --bench attention_bytes

use std::collections::BTreeMap;
use std::hint::black_box;

use arrow::record_batch::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use gaze_shared::layout::Region;
use gaze_shared::tables::{
    AttentionFieldRecord, AttentionRowRecord, AttentionTopkRecord, SampleRecord, SamplesSchema,
    Table, TargetKind, TokenRecord, attention_fields_batch, attention_rows_batch,
    attention_topk_batch, tokens_batch, writer_properties,
};
use parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SAMPLES: i64 = 100;
const PROMPT_TOKENS: usize = 350;
const STEPS: i32 = 3;
const LAYERS: [i32; 3] = [0, 15, 31];
const HEADS: i32 = 32;
const KV_HEADS: i32 = 8;
const TOP_K: usize = 10;
const FIELDS: [&str; 8] = [
    "name",
    "age",
    "gender",
    "nationality",
    "religion",
    "entry_route",
    "history",
    "family",
];
/// Size of one attention sample in the old Python pipeline's output, in bytes.
const PYTHON_BYTES_PER_SAMPLE: f64 = 0.5e6;

const WORDS: [&str; 24] = [
    "the",
    "applicant",
    "claims",
    "asylum",
    "on",
    "grounds",
    "of",
    "persecution",
    "in",
    "their",
    "home",
    "country",
    "Home",
    "Office",
    "decision",
    "appeal",
    "evidence",
    "credible",
    "risk",
    "return",
    "family",
    "years",
    "old",
    "was",
];

/// One prompt token: its text, region and template field.
struct PromptToken {
    text: String,
    region: Region,
    field: Option<&'static str>,
}

/// Builds a prompt laid out like a filled vignette: template text, system
/// message, the vignette with template fields spread through it, and the
/// suffix.
fn prompt(rng: &mut ChaCha8Rng) -> Vec<PromptToken> {
    (0..PROMPT_TOKENS)
        .map(|position| {
            let region = match position {
                0..5 => Region::ChatTemplate,
                5..40 => Region::System,
                40..60 => Region::InstructionPrefix,
                60..320 => Region::Vignette,
                320..340 => Region::InstructionSuffix,
                _ => Region::AssistantPrefix,
            };
            let field = (region == Region::Vignette && position % 13 < 3)
                .then(|| FIELDS[position / 13 % FIELDS.len()]);
            let text = match field {
                Some(_) => format!(" {}", rng.random_range(18..80)),
                None => format!(" {}", WORDS[rng.random_range(0..WORDS.len())]),
            };
            PromptToken {
                text,
                region,
                field,
            }
        })
        .collect()
}

/// Draws attention scores over the prompt. BOS takes most of the mass and
/// the rest has a long tail, a rough imitation of trained decoder heads.
fn attention_row(rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut row: Vec<f32> = (0..PROMPT_TOKENS)
        .map(|_| rng.random::<f32>().powi(8))
        .collect();
    row[0] = rng.random_range(2.0..40.0);
    let total: f32 = row.iter().sum();
    row.iter_mut().for_each(|score| *score /= total);
    row
}

fn top_k(row: &[f32]) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(TOP_K);
    ranked
}

struct Shard {
    samples: Vec<SampleRecord>,
    tokens: Vec<TokenRecord>,
    topk: Vec<AttentionTopkRecord>,
    fields: Vec<AttentionFieldRecord>,
    rows: Vec<AttentionRowRecord>,
}

fn synthetic_shard() -> Shard {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut shard = Shard {
        samples: Vec::new(),
        tokens: Vec::new(),
        topk: Vec::new(),
        fields: Vec::new(),
        rows: Vec::new(),
    };
    let model = "llama-3-8b-immigration".to_string();

    for sample_id in 0..SAMPLES {
        let tokens = prompt(&mut rng);
        shard.samples.push(sample_record(&model, sample_id));
        let mut offset = 0;
        for (position, token) in tokens.iter().enumerate() {
            let length = token.text.chars().count() as i32;
            shard.tokens.push(TokenRecord {
                sample_id,
                model: model.clone(),
                position: position as i32,
                token_id: 1000 + (token.text.len() as i32 * 97 + position as i32) % 128_000,
                token: token.text.replace(' ', "Ġ"),
                text: token.text.clone(),
                start: offset,
                end: offset + length,
                word: Some(position as i32),
                region: token.region,
                field: token.field.map(String::from),
                special: position < 5,
            });
            offset += length;
        }

        for step in 0..STEPS {
            for layer in LAYERS {
                for head in 0..HEADS {
                    let row = attention_row(&mut rng);
                    push_query(
                        &mut shard,
                        &model,
                        &tokens,
                        (sample_id, step, layer, head),
                        &row,
                    );
                }
            }
        }
    }
    shard
}

fn push_query(
    shard: &mut Shard,
    model: &str,
    tokens: &[PromptToken],
    query: (i64, i32, i32, i32),
    row: &[f32],
) {
    let (sample_id, step, layer, head) = query;
    for (rank, (position, score)) in top_k(row).into_iter().enumerate() {
        let token = &tokens[position];
        shard.topk.push(AttentionTopkRecord {
            sample_id,
            model: model.to_string(),
            topic: "asylum".to_string(),
            step,
            generated_token: [" GR", "ANT", "ED"][step as usize].to_string(),
            generated_token_id: 50_000 + step,
            layer,
            head,
            kv_head: head / (HEADS / KV_HEADS),
            rank: rank as i32,
            position: position as i32,
            token: token.text.replace(' ', "Ġ"),
            text: token.text.clone(),
            score,
            region: token.region,
            field: token.field.map(String::from),
        });
    }

    let mut masses: BTreeMap<(TargetKind, String), (f32, i32)> = BTreeMap::new();
    for (position, score) in row.iter().enumerate() {
        let token = &tokens[position];
        let region = if position == 0 {
            (TargetKind::Bos, "bos".to_string())
        } else {
            (TargetKind::Region, token.region.as_str().to_string())
        };
        let entry = masses.entry(region).or_default();
        *entry = (entry.0 + score, entry.1 + 1);
        if let Some(field) = token.field {
            let entry = masses
                .entry((TargetKind::Field, field.to_string()))
                .or_default();
            *entry = (entry.0 + score, entry.1 + 1);
        }
    }
    masses.insert(
        (TargetKind::Generated, "generated".to_string()),
        (0.0, step),
    );
    for ((target_kind, target), (mass, token_count)) in masses {
        shard.fields.push(AttentionFieldRecord {
            sample_id,
            model: model.to_string(),
            step,
            layer,
            head,
            target_kind,
            target,
            mass,
            mass_per_token: if token_count > 0 {
                mass / token_count as f32
            } else {
                0.0
            },
            token_count,
        });
    }

    shard.rows.push(AttentionRowRecord {
        sample_id,
        model: model.to_string(),
        step,
        layer,
        head,
        scores: row.to_vec(),
    });
}

fn sample_record(model: &str, sample_id: i64) -> SampleRecord {
    SampleRecord {
        sample_id,
        shard_id: 0,
        model: model.to_string(),
        topic: "asylum".to_string(),
        route: "initial".to_string(),
        fields: FIELDS
            .iter()
            .map(|f| (f.to_string(), format!("value of {f}")))
            .collect(),
        prompt: "A prompt of about 350 tokens. ".repeat(40),
        response: "GRANTED".to_string(),
        decision: Some("GRANT".to_string()),
        decision_status: "parsed".to_string(),
        decision_step: Some(0),
        label_probabilities: BTreeMap::from([
            ("GRANT".to_string(), 0.7),
            ("REFUSE".to_string(), 0.29),
        ]),
        label_mass: Some(0.99),
        prompt_tokens: PROMPT_TOKENS as i32,
        generated_tokens: 3,
        stop_reason: "eos".to_string(),
        seed: sample_id as u64,
        temperature: 0.7,
        top_p: 0.9,
        top_k: None,
        worker: "worker-0".to_string(),
        attempt: 1,
        prefill_ms: 40.0,
        decode_ms: 60.0,
        total_ms: 100.0,
        collect_attention: true,
    }
}

fn batches(shard: &Shard) -> Vec<(Table, RecordBatch)> {
    let fields: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
    let labels = vec!["GRANT".to_string(), "REFUSE".to_string()];
    let samples = SamplesSchema::new(&fields, &labels).unwrap();
    vec![
        (Table::Samples, samples.batch(&shard.samples).unwrap()),
        (Table::Tokens, tokens_batch(&shard.tokens).unwrap()),
        (
            Table::AttentionTopk,
            attention_topk_batch(&shard.topk).unwrap(),
        ),
        (
            Table::AttentionFields,
            attention_fields_batch(&shard.fields).unwrap(),
        ),
        (
            Table::AttentionRows,
            attention_rows_batch(&shard.rows).unwrap(),
        ),
    ]
}

/// Encodes `batch` with the table's writer settings and returns the size.
fn parquet_size(table: Table, batch: &RecordBatch) -> usize {
    let mut buffer = Vec::new();
    let properties = writer_properties(table, &batch.schema());
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    buffer.len()
}

fn report_sizes(tables: &[(Table, RecordBatch)]) {
    println!("Parquet bytes per attention sample ({SAMPLES} samples in one shard file per table):");
    let mut without_rows = 0.0;
    for (table, batch) in tables {
        let per_sample = parquet_size(*table, batch) as f64 / SAMPLES as f64;
        println!(
            "  {:<17} {:>10.0} B  ({} rows per sample)",
            table.as_str(),
            per_sample,
            batch.num_rows() as i64 / SAMPLES
        );
        if *table != Table::AttentionRows {
            without_rows += per_sample;
        }
    }
    println!(
        "  all but attention_rows: {without_rows:.0} B per sample, {:.1}% of the Python pipeline's {PYTHON_BYTES_PER_SAMPLE:.0} B",
        100.0 * without_rows / PYTHON_BYTES_PER_SAMPLE
    );
}

fn bench(c: &mut Criterion) {
    let tables = batches(&synthetic_shard());
    report_sizes(&tables);

    for (table, batch) in &tables {
        if matches!(table, Table::AttentionTopk | Table::AttentionFields) {
            c.bench_function(
                &format!("encode_{}_{SAMPLES}_samples", table.as_str()),
                |b| b.iter(|| black_box(parquet_size(*table, batch))),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
