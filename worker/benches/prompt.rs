//! Prompt preparation cost per sample: chat-template rendering with layout
//! placement, and tokenization with region, field and word mapping, on the
//! test model's Llama 3 style template and tokenizer.
//!
//! Run with `cargo bench -p gaze-worker --bench prompt`.

use criterion::{Criterion, criterion_group, criterion_main};
use gaze_shared::layout::{CharSpan, FieldSpan, PromptLayout, Region};
use gaze_worker::prompt::{ChatTemplate, PromptParts, render, tokenize_rendered};
use gaze_worker::testmodel::write_test_model;
use tokenizers::Tokenizer;

const SYSTEM: &str =
    "You are an immigration judge of the First-tier Tribunal. Apply the law to the facts.";
const PREFIX: &str = "Read the case below and decide the appeal.\n\n";
const SUFFIX: &str = "\n\nAnswer with GRANT or REFUSE and give brief reasons.";

/// Builds a user message around a vignette of about 200 words with three
/// fields, and returns it with its layout.
fn user_message() -> (String, PromptLayout) {
    let name = "Siobhán Nguyễn";
    let paragraph = "The Secretary of State refused the application because the evidence of the \
        relationship was insufficient. The First-tier Tribunal heard the appeal in Manchester \
        and found the appellant to be a credible witness. ";
    let vignette = format!(
        "The appellant, {name}, is 34 and from Vietnam. {}She speaks English fluently and works \
         as a nurse in Birmingham.",
        paragraph.repeat(5)
    );
    let p = PREFIX.chars().count();
    let v = vignette.chars().count();
    let name_at = p + 15;
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, p)),
            (Region::Vignette, CharSpan::new(p, p + v)),
            (
                Region::InstructionSuffix,
                CharSpan::new(p + v, p + v + SUFFIX.chars().count()),
            ),
        ],
        fields: vec![
            FieldSpan {
                field: "name".into(),
                span: CharSpan::new(name_at, name_at + name.chars().count()),
            },
            FieldSpan {
                field: "age".into(),
                span: CharSpan::new(name_at + 19, name_at + 21),
            },
            FieldSpan {
                field: "country".into(),
                span: CharSpan::new(name_at + 31, name_at + 38),
            },
        ],
    };
    (format!("{PREFIX}{vignette}{SUFFIX}"), layout)
}

fn bench_prompt(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    write_test_model(dir.path()).expect("test model");
    let template = ChatTemplate::from_model_dir(dir.path()).expect("chat template");
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
    let (user, layout) = user_message();
    let parts = PromptParts {
        system: Some(SYSTEM),
        user: &user,
        user_layout: &layout,
        assistant_prefix: "DECISION:",
    };
    let rendered = render(&template, &parts).expect("render");
    let tokens = tokenize_rendered(&tokenizer, Some(0), &rendered).expect("tokenize");
    println!(
        "prompt: {} characters, {} tokens",
        rendered.text.chars().count(),
        tokens.len()
    );

    c.bench_function("render chat template", |b| {
        b.iter(|| render(&template, &parts).unwrap())
    });
    c.bench_function("encode rendered prompt only", |b| {
        b.iter(|| tokenizer.encode(rendered.text.as_str(), false).unwrap())
    });
    c.bench_function("tokenize and map rendered prompt", |b| {
        b.iter(|| tokenize_rendered(&tokenizer, Some(0), &rendered).unwrap())
    });
}

criterion_group!(benches, bench_prompt);
criterion_main!(benches);
