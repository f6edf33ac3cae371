//! Attention summaries: top-k with ties, masses per region and field, the
//! BOS apart, and the identity that the parts add up to the row's sum.

mod common;

use gaze_shared::layout::Region;
use gaze_worker::capture::summary::{SummaryError, summarize, top_k};
use gaze_worker::prompt::{PromptToken, PromptTokens};

fn token(position: usize, region: Region, field: Option<&str>) -> PromptToken {
    PromptToken {
        position,
        id: position as u32,
        token: String::new(),
        text: String::new(),
        start: position,
        end: position + 1,
        special: position == 0,
        word: None,
        region,
        field: field.map(str::to_string),
    }
}

/// BOS, a template header, a system token, two name tokens, one vignette
/// token and one age token.
fn prompt() -> PromptTokens {
    let tokens = vec![
        token(0, Region::ChatTemplate, None),
        token(1, Region::ChatTemplate, None),
        token(2, Region::System, None),
        token(3, Region::Vignette, Some("name")),
        token(4, Region::Vignette, Some("name")),
        token(5, Region::Vignette, None),
        token(6, Region::Vignette, Some("age")),
    ];
    PromptTokens {
        ids: (0..7).collect(),
        tokens,
        bos_position: Some(0),
    }
}

/// Seven prompt keys and two generated keys; the values are exact in f32
/// sums of this size.
const ROW: [f32; 9] = [
    0.375, 0.0625, 0.0625, 0.125, 0.125, 0.0625, 0.0625, 0.0625, 0.0625,
];

fn mass(summary: &gaze_worker::capture::summary::AttentionSummary, region: Region) -> f32 {
    summary
        .region_mass
        .iter()
        .find(|(r, _)| *r == region)
        .unwrap()
        .1
}

#[test]
fn bos_mass_is_reported_apart() {
    let summary = summarize(&ROW, &prompt(), 3).unwrap();
    assert_eq!(summary.bos_mass, 0.375);
    assert_eq!(mass(&summary, Region::ChatTemplate), 0.0625);
}

#[test]
fn region_masses_sum_per_region() {
    let summary = summarize(&ROW, &prompt(), 3).unwrap();
    assert_eq!(mass(&summary, Region::System), 0.0625);
    assert_eq!(mass(&summary, Region::Vignette), 0.375);
    assert_eq!(mass(&summary, Region::InstructionPrefix), 0.0);
    assert_eq!(summary.region_mass.len(), Region::ALL.len());
}

#[test]
fn generated_mass_covers_keys_past_prompt() {
    let summary = summarize(&ROW, &prompt(), 3).unwrap();
    assert_eq!(summary.generated_mass, 0.125);
}

#[test]
fn parts_add_up_to_one() {
    let summary = summarize(&ROW, &prompt(), 3).unwrap();
    let regions: f32 = summary.region_mass.iter().map(|(_, m)| m).sum();
    assert_eq!(regions + summary.bos_mass + summary.generated_mass, 1.0);
}

#[test]
fn field_mass_per_token() {
    let summary = summarize(&ROW, &prompt(), 3).unwrap();
    let name = &summary.field_mass[0];
    assert_eq!(
        (
            name.field.as_str(),
            name.mass,
            name.tokens,
            name.mass_per_token
        ),
        ("name", 0.25, 2, 0.125)
    );
    let age = &summary.field_mass[1];
    assert_eq!(
        (age.field.as_str(), age.mass, age.tokens, age.mass_per_token),
        ("age", 0.0625, 1, 0.0625)
    );
}

#[test]
fn top_k_ties_by_position_without_bos() {
    let top: Vec<(usize, f32)> = top_k(&ROW, &prompt(), 4)
        .iter()
        .map(|t| (t.position, t.score))
        .collect();
    assert_eq!(top, vec![(3, 0.125), (4, 0.125), (1, 0.0625), (2, 0.0625)]);
}

#[test]
fn top_k_excludes_generated_keys() {
    let top = top_k(&ROW, &prompt(), 100);
    assert_eq!(top.len(), 6);
    assert!(top.iter().all(|t| t.position < 7));
}

#[test]
fn top_k_sorts_nan_last() {
    let mut row = ROW;
    row[3] = f32::NAN;
    let top = top_k(&row, &prompt(), 6);
    assert_eq!(top[5].position, 3);
}

#[test]
fn short_row_is_rejected() {
    let err = summarize(&ROW[..5], &prompt(), 3).unwrap_err();
    assert_eq!(
        err,
        SummaryError::RowTooShort {
            row_len: 5,
            prompt_len: 7
        }
    );
}

#[test]
fn golden_attention_rows_add_up() {
    // Real softmax rows from transformers over the Llama 3 style chat prompt.
    use gaze_shared::layout::{CharSpan, PromptLayout};
    use gaze_worker::prompt::{RenderedPrompt, bos_token_id, tokenize_rendered};

    let golden = common::golden("llama3");
    let case = common::case(&golden, "chat");
    let tokenizer = common::golden_tokenizer("llama3");
    let regions = case["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let region = *Region::ALL
                .iter()
                .find(|x| x.as_str() == r["region"])
                .unwrap();
            (
                region,
                CharSpan::new(
                    r["start"].as_u64().unwrap() as usize,
                    r["end"].as_u64().unwrap() as usize,
                ),
            )
        })
        .collect();
    let layout = PromptLayout {
        regions,
        fields: vec![],
    };
    let prompt = RenderedPrompt {
        text: case["text"].as_str().unwrap().to_string(),
        layout,
    };
    let tokens = tokenize_rendered(&tokenizer, bos_token_id(&tokenizer), &prompt).unwrap();
    assert!(tokens.tokens.iter().any(|t| t.region == Region::Vignette));

    for (step, layers) in case["attentions"].as_array().unwrap().iter().enumerate() {
        for heads in layers.as_array().unwrap() {
            for row in heads.as_array().unwrap() {
                let row: Vec<f32> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(row.len(), tokens.len() + step);
                let summary = summarize(&row, &tokens, 5).unwrap();
                let regions: f64 = summary.region_mass.iter().map(|(_, m)| f64::from(*m)).sum();
                let total =
                    regions + f64::from(summary.bos_mass) + f64::from(summary.generated_mass);
                assert!((total - 1.0).abs() < 1e-5, "step {step}: total {total}");
            }
        }
    }
}
