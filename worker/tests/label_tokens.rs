//! The first tokens that stand for decision labels on the reference
//! tokenizers: byte-level BPE (Llama 3, Qwen2) and SentencePiece-style
//! (Llama 2).

use std::path::PathBuf;

use gaze_worker::generate::LabelTokens;
use tokenizers::Tokenizer;

fn tokenizer(model: &str) -> Tokenizer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(model)
        .join("tokenizer.json");
    Tokenizer::from_file(path).unwrap()
}

fn label_tokens(model: &str, labels: &[&str]) -> (Tokenizer, LabelTokens) {
    let tokenizer = tokenizer(model);
    let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    let tokens = LabelTokens::new(&tokenizer, &labels).unwrap();
    (tokenizer, tokens)
}

fn ids(tokenizer: &Tokenizer, tokens: &[&str]) -> Vec<u32> {
    tokens
        .iter()
        .map(|t| tokenizer.token_to_id(t).unwrap())
        .collect()
}

#[test]
fn byte_level_label_has_bare_and_spaced_tokens() {
    for model in ["llama3", "qwen2"] {
        let (tokenizer, tokens) = label_tokens(model, &["GRANT", "REFUSE"]);
        // "GRANT" alone encodes as G RAN T; after a space as one token.
        assert_eq!(tokens.ids[0], ids(&tokenizer, &["G", "ĠGRANT"]), "{model}");
        assert_eq!(tokens.ids[1], ids(&tokenizer, &["R", "ĠREFUSE"]), "{model}");
        assert_eq!(tokens.ambiguous, None, "{model}");
    }
}

#[test]
fn metaspace_label_has_one_first_token() {
    let (tokenizer, tokens) = label_tokens("llama2", &["GRANT", "REFUSE"]);
    assert_eq!(tokens.ids[0], ids(&tokenizer, &["▁GRANT"]));
    assert_eq!(tokens.ids[1], ids(&tokenizer, &["▁REFUSE"]));
}

#[test]
fn shared_first_token_counts_for_no_label() {
    let (tokenizer, tokens) = label_tokens("llama3", &["GRANT", "GRANTED"]);
    let g = tokenizer.token_to_id("G").unwrap();
    assert!(!tokens.ids[0].contains(&g), "{:?}", tokens.ids);
    assert!(!tokens.ids[1].contains(&g), "{:?}", tokens.ids);
}

#[test]
fn label_without_own_token_disables_probabilities() {
    // Both encode to ▁GRANT first, which is all that "GRANT" has.
    let (_, tokens) = label_tokens("llama2", &["GRANT", "GRANTS"]);
    assert!(tokens.ambiguous.is_some(), "{:?}", tokens.ids);
    assert_eq!(tokens.probabilities(&[0.0; 816]), None);
}
