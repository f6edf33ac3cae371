//! Tokenization, character offsets, chat-template rendering and token
//! mapping, checked against transformers' records for three tokenizer
//! styles: byte-level BPE (Llama 3, Qwen2) and SentencePiece-style BPE with
//! byte fallback (Llama 2).

mod common;

use common::{
    GOLDEN_MODELS, GOLDEN_TOKENIZERS, case, golden, golden_dir, golden_tokenizer, ids, pairs,
    strings,
};
use gaze_shared::layout::{CharSpan, FieldSpan, PromptLayout, Region};
use gaze_worker::prompt::{
    ByteToChar, ChatTemplate, PromptParts, PromptTokens, bos_token_id, render, tokenize_raw,
    tokenize_rendered,
};
use serde_json::Value;

const RAW_CASES: [&str; 5] = ["plain", "names", "scripts", "decomposed", "spaces"];

fn region_named(name: &str) -> Region {
    *Region::ALL
        .iter()
        .find(|r| r.as_str() == name)
        .unwrap_or_else(|| panic!("unknown region {name}"))
}

/// Tokenizes each raw case of each golden model; returns it with its record and `tokenize_raw` result.
fn raw_cases() -> Vec<(String, Value, PromptTokens)> {
    let mut cases = Vec::new();
    for model in GOLDEN_TOKENIZERS {
        let golden = golden(model);
        let tokenizer = golden_tokenizer(model);
        for name in RAW_CASES {
            let case = case(&golden, name).clone();
            let tokens = tokenize_raw(&tokenizer, case["text"].as_str().unwrap()).unwrap();
            cases.push((format!("{model}/{name}"), case, tokens));
        }
    }
    cases
}

fn spans(tokens: &PromptTokens) -> Vec<(usize, usize)> {
    tokens.tokens.iter().map(|t| (t.start, t.end)).collect()
}

#[test]
fn raw_ids_match_transformers() {
    for (label, case, tokens) in raw_cases() {
        assert_eq!(tokens.ids, ids(&case["input_ids"]), "{label}");
    }
}

#[test]
fn raw_char_offsets_match_transformers() {
    for (label, case, tokens) in raw_cases() {
        assert_eq!(spans(&tokens), pairs(&case["offsets"]), "{label}");
    }
}

#[test]
fn byte_offsets_convert_to_python_char_offsets() {
    for model in GOLDEN_TOKENIZERS {
        let golden = golden(model);
        for case in golden["cases"].as_array().unwrap() {
            let table = ByteToChar::new(case["text"].as_str().unwrap());
            for ((bs, be), (cs, ce)) in pairs(&case["byte_offsets"])
                .into_iter()
                .zip(pairs(&case["offsets"]))
            {
                assert_eq!(
                    table.char_span(bs, be).unwrap(),
                    CharSpan::new(cs, ce),
                    "{model}/{}",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn token_text_is_the_python_slice() {
    for model in GOLDEN_TOKENIZERS {
        let golden = golden(model);
        let tokenizer = golden_tokenizer(model);
        let case = case(&golden, "names");
        let tokens = tokenize_raw(&tokenizer, case["text"].as_str().unwrap()).unwrap();
        let texts: Vec<Option<String>> =
            tokens.tokens.iter().map(|t| Some(t.text.clone())).collect();
        assert_eq!(texts, strings(&case["token_texts"]), "{model}");
    }
}

#[test]
fn non_special_tokens_have_non_empty_spans() {
    for model in GOLDEN_TOKENIZERS {
        let golden = golden(model);
        let tokenizer = golden_tokenizer(model);
        for case in golden["cases"].as_array().unwrap() {
            let tokens = tokenize_raw(&tokenizer, case["text"].as_str().unwrap()).unwrap();
            for token in tokens.tokens.iter().filter(|t| !t.special) {
                assert!(
                    token.start < token.end,
                    "{model}/{}: {token:?}",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn multibyte_name_pieces_cover_whole_characters() {
    // Llama 2 style falls back to bytes for "राहुल" and "王芳": each byte token
    // spans the whole character it is part of.
    let golden = golden("llama2");
    let tokenizer = golden_tokenizer("llama2");
    let text = case(&golden, "scripts")["text"].as_str().unwrap();
    let tokens = tokenize_raw(&tokenizer, text).unwrap();
    let han: Vec<&str> = tokens
        .tokens
        .iter()
        .filter(|t| t.token.starts_with("<0x"))
        .map(|t| t.text.as_str())
        .collect();
    assert!(han.iter().filter(|t| **t == "王").count() == 3, "{han:?}");
    assert!(han.iter().filter(|t| **t == "芳").count() == 3, "{han:?}");
}

#[test]
fn bos_token_id_matches_tokenizer_config() {
    for model in GOLDEN_TOKENIZERS {
        let golden = golden(model);
        let expected = golden["bos_token_id"].as_u64().map(|id| id as u32);
        assert_eq!(bos_token_id(&golden_tokenizer(model)), expected, "{model}");
    }
}

#[test]
fn raw_bos_position_is_first_token() {
    let llama3 = golden("llama3");
    let text = case(&llama3, "plain")["text"].as_str().unwrap();
    let tokens = tokenize_raw(&golden_tokenizer("llama3"), text).unwrap();
    assert_eq!(tokens.bos_position, Some(0));

    let qwen2 = golden("qwen2");
    let text = case(&qwen2, "plain")["text"].as_str().unwrap();
    let tokens = tokenize_raw(&golden_tokenizer("qwen2"), text).unwrap();
    assert_eq!(tokens.bos_position, None);
}

/// The chat case's parts, rebuilt from the golden record.
struct ChatInput {
    system: String,
    user: String,
    layout: PromptLayout,
    assistant_prefix: String,
}

fn chat_input(case: &Value) -> ChatInput {
    let parts = &case["user_parts"];
    let prefix = parts["instruction_prefix"].as_str().unwrap();
    let vignette = parts["vignette"].as_str().unwrap();
    let suffix = parts["instruction_suffix"].as_str().unwrap();
    let (p, v, s) = (
        prefix.chars().count(),
        vignette.chars().count(),
        suffix.chars().count(),
    );

    let fields = parts["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| FieldSpan {
            field: f["field"].as_str().unwrap().to_string(),
            span: CharSpan::new(
                p + f["start"].as_u64().unwrap() as usize,
                p + f["end"].as_u64().unwrap() as usize,
            ),
        })
        .collect();
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, p)),
            (Region::Vignette, CharSpan::new(p, p + v)),
            (Region::InstructionSuffix, CharSpan::new(p + v, p + v + s)),
        ],
        fields,
    };
    ChatInput {
        system: case["messages"][0]["content"].as_str().unwrap().to_string(),
        user: format!("{prefix}{vignette}{suffix}"),
        layout,
        assistant_prefix: case["assistant_prefix"].as_str().unwrap().to_string(),
    }
}

fn render_chat(model: &str, input: &ChatInput) -> gaze_worker::prompt::RenderedPrompt {
    let template = ChatTemplate::from_model_dir(&golden_dir(model)).unwrap();
    let parts = PromptParts {
        system: Some(&input.system),
        user: &input.user,
        user_layout: &input.layout,
        assistant_prefix: &input.assistant_prefix,
    };
    render(&template, &parts).unwrap()
}

#[test]
fn chat_render_matches_transformers() {
    for model in GOLDEN_MODELS {
        let golden = golden(model);
        let case = case(&golden, "chat");
        let rendered = render_chat(model, &chat_input(case));
        assert_eq!(rendered.text, case["text"].as_str().unwrap(), "{model}");
    }
}

#[test]
fn chat_layout_shifts_into_rendered_text() {
    for model in GOLDEN_MODELS {
        let golden = golden(model);
        let case = case(&golden, "chat");
        let rendered = render_chat(model, &chat_input(case));

        let regions: Vec<(Region, CharSpan)> = case["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let span = CharSpan::new(
                    r["start"].as_u64().unwrap() as usize,
                    r["end"].as_u64().unwrap() as usize,
                );
                (region_named(r["region"].as_str().unwrap()), span)
            })
            .collect();
        assert_eq!(rendered.layout.regions, regions, "{model}");

        let fields: Vec<(String, usize, usize)> = case["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let span = (
                    f["start"].as_u64().unwrap() as usize,
                    f["end"].as_u64().unwrap() as usize,
                );
                (f["field"].as_str().unwrap().to_string(), span.0, span.1)
            })
            .collect();
        let got: Vec<(String, usize, usize)> = rendered
            .layout
            .fields
            .iter()
            .map(|f| (f.field.clone(), f.span.start, f.span.end))
            .collect();
        assert_eq!(got, fields, "{model}");
    }
}

/// Renders and tokenizes the chat case of a golden model; returns its record and `tokenize_rendered`
/// result, with the BOS id that transformers reports.
fn chat_tokens(model: &str) -> (Value, PromptTokens) {
    let golden = golden(model);
    let case = case(&golden, "chat").clone();
    let rendered = render_chat(model, &chat_input(&case));
    let bos = golden["bos_token_id"].as_u64().map(|id| id as u32);
    let tokens = tokenize_rendered(&golden_tokenizer(model), bos, &rendered).unwrap();
    (case, tokens)
}

#[test]
fn chat_tokens_match_transformers() {
    for model in GOLDEN_MODELS {
        let (case, tokens) = chat_tokens(model);
        assert_eq!(tokens.ids, ids(&case["input_ids"]), "{model}");
        assert_eq!(spans(&tokens), pairs(&case["offsets"]), "{model}");
    }
}

#[test]
fn chat_token_regions_and_fields_match_reference() {
    for model in GOLDEN_MODELS {
        let (case, tokens) = chat_tokens(model);
        let regions: Vec<Option<String>> = tokens
            .tokens
            .iter()
            .map(|t| Some(t.region.as_str().to_string()))
            .collect();
        assert_eq!(regions, strings(&case["token_regions"]), "{model}");
        let fields: Vec<Option<String>> = tokens.tokens.iter().map(|t| t.field.clone()).collect();
        assert_eq!(fields, strings(&case["token_fields"]), "{model}");
    }
}

#[test]
fn chat_prompt_has_exactly_one_bos() {
    for model in ["llama3", "llama2"] {
        let (_, tokens) = chat_tokens(model);
        let bos = bos_token_id(&golden_tokenizer(model));
        assert_eq!(
            tokens.ids.iter().filter(|id| Some(**id) == bos).count(),
            1,
            "{model}"
        );
        assert_eq!(Some(tokens.ids[0]), bos, "{model}");
        assert_eq!(tokens.bos_position, Some(0), "{model}");
    }
}

#[test]
fn template_special_tokens_are_special() {
    // "<|eot_id|>" written by the template has special-mask 0 in the
    // encoding but is a special added token by id.
    let (_, tokens) = chat_tokens("llama3");
    let eot: Vec<_> = tokens
        .tokens
        .iter()
        .filter(|t| t.token == "<|eot_id|>")
        .collect();
    assert_eq!(
        eot.len(),
        2,
        "one <|eot_id|> after each of the two messages"
    );
    assert!(
        eot.iter()
            .all(|t| t.special && t.region == Region::ChatTemplate && t.word.is_none())
    );
}

#[test]
fn trimmed_offsets_still_give_whitespace_spans() {
    // GPT-2 style tokenizers trim whitespace from offsets, which leaves a
    // token of only spaces with an empty span. Each such token must get the
    // whitespace it stands for.
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(golden_dir("qwen2").join("tokenizer.json")).unwrap())
            .unwrap();
    spec["post_processor"]["trim_offsets"] = Value::Bool(true);
    let tokenizer: tokenizers::Tokenizer = spec.to_string().parse().unwrap();

    let text = "  Two  leading spaces, x \n and 34 ";
    let trimmed = tokenizer.encode(text, true).unwrap();
    assert!(
        trimmed.get_offsets().iter().any(|(s, e)| s == e),
        "the tokenizer trims offsets"
    );

    let tokens = tokenize_raw(&tokenizer, text).unwrap();
    let chars: Vec<char> = text.chars().collect();
    for token in &tokens.tokens {
        assert!(token.start < token.end, "{token:?}");
    }
    let spaces: Vec<_> = tokens
        .tokens
        .iter()
        .filter(|t| t.token.chars().all(|c| c == 'Ġ'))
        .collect();
    assert!(spaces.len() >= 4, "{spaces:?}");
    for token in spaces {
        assert!(
            chars[token.start..token.end].iter().all(|c| *c == ' '),
            "{token:?}"
        );
    }
}
