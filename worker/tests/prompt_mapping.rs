//! Token mapping on the test model's tokenizer: the BOS contract, template
//! fields inside the vignette, the boundary rule and word grouping.

use gaze_shared::layout::{CharSpan, FieldSpan, PromptLayout, Region};
use gaze_worker::prompt::{
    ChatTemplate, PromptParts, PromptTokens, RenderedPrompt, render, tokenize_rendered,
};
use gaze_worker::testmodel::write_test_model;
use tokenizers::Tokenizer;

const BOS: u32 = 0;

fn tokenizer() -> Tokenizer {
    let dir = tempfile::tempdir().unwrap();
    write_test_model(dir.path()).unwrap();
    Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap()
}

fn raw(template: &str, user: &str) -> RenderedPrompt {
    let layout = PromptLayout::default();
    let parts = PromptParts {
        system: None,
        user,
        user_layout: &layout,
        assistant_prefix: "",
    };
    render(&ChatTemplate::raw(template).unwrap(), &parts).unwrap()
}

/// Builds the prompt "The appellant, Zoë Fletcher, is 34." with one field span.
fn with_field(start: usize, end: usize) -> RenderedPrompt {
    let text = "The appellant, Zoë Fletcher, is 34.".to_string();
    let layout = PromptLayout {
        regions: vec![(Region::Vignette, CharSpan::new(0, 35))],
        fields: vec![FieldSpan {
            field: "f".into(),
            span: CharSpan::new(start, end),
        }],
    };
    RenderedPrompt { text, layout }
}

fn token<'a>(tokens: &'a PromptTokens, text: &str) -> &'a gaze_worker::prompt::PromptToken {
    tokens
        .tokens
        .iter()
        .find(|t| t.text == text)
        .unwrap_or_else(|| panic!("no token {text:?} in {tokens:?}"))
}

#[test]
fn missing_bos_is_inserted() {
    let tokens =
        tokenize_rendered(&tokenizer(), Some(BOS), &raw("{user}", "José appealed.")).unwrap();
    assert_eq!(tokens.ids[0], BOS);
    assert_eq!(tokens.ids.iter().filter(|&&id| id == BOS).count(), 1);
    let bos = &tokens.tokens[0];
    assert_eq!((bos.start, bos.end), (0, 0));
    assert!(bos.special);
    assert_eq!(bos.region, Region::ChatTemplate);
    assert_eq!(tokens.bos_position, Some(0));
}

#[test]
fn written_bos_is_kept_once() {
    let tokens = tokenize_rendered(
        &tokenizer(),
        Some(BOS),
        &raw("<|begin_of_text|>{user}", "José."),
    )
    .unwrap();
    assert_eq!(tokens.ids.iter().filter(|&&id| id == BOS).count(), 1);
    assert_eq!((tokens.tokens[0].start, tokens.tokens[0].end), (0, 17));
}

#[test]
fn repeated_bos_collapses_to_one() {
    let prompt = raw("<|begin_of_text|><|begin_of_text|>{user}", "José.");
    let tokens = tokenize_rendered(&tokenizer(), Some(BOS), &prompt).unwrap();
    assert_eq!(tokens.ids.iter().filter(|&&id| id == BOS).count(), 1);
    assert_eq!(tokens.ids[0], BOS);
    let positions: Vec<usize> = tokens.tokens.iter().map(|t| t.position).collect();
    assert_eq!(positions, (0..tokens.len()).collect::<Vec<_>>());
}

#[test]
fn no_bos_for_models_without_one() {
    let tokens = tokenize_rendered(&tokenizer(), None, &raw("{user}", "José.")).unwrap();
    assert!(!tokens.ids.contains(&BOS));
    assert_eq!(tokens.bos_position, None);
}

#[test]
fn field_value_inside_vignette_maps_to_field() {
    let vignette = "The appellant, Siobhán Nguyễn, is 34 and from Vietnam.";
    let user = format!("Read this.\n\n{vignette}\n\nDecide.");
    let v_start = 12;
    let v_end = v_start + vignette.chars().count();
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, v_start)),
            (Region::Vignette, CharSpan::new(v_start, v_end)),
            (
                Region::InstructionSuffix,
                CharSpan::new(v_end, user.chars().count()),
            ),
        ],
        fields: vec![
            FieldSpan {
                field: "name".into(),
                span: CharSpan::new(v_start + 15, v_start + 29),
            },
            FieldSpan {
                field: "age".into(),
                span: CharSpan::new(v_start + 34, v_start + 36),
            },
        ],
    };
    let template = ChatTemplate::raw("<|begin_of_text|>{system}\n{user}").unwrap();
    let parts = PromptParts {
        system: Some("Be fair."),
        user: &user,
        user_layout: &layout,
        assistant_prefix: "DECISION:",
    };
    let prompt = render(&template, &parts).unwrap();
    let tokens = tokenize_rendered(&tokenizer(), Some(BOS), &prompt).unwrap();

    let name: String = tokens
        .tokens
        .iter()
        .filter(|t| t.field.as_deref() == Some("name"))
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(name.trim(), "Siobhán Nguyễn");
    let age: String = tokens
        .tokens
        .iter()
        .filter(|t| t.field.as_deref() == Some("age"))
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(age.trim(), "34");
    for token in tokens.tokens.iter().filter(|t| t.field.is_some()) {
        assert_eq!(token.region, Region::Vignette, "{token:?}");
    }
    assert_eq!(token(&tokens, "DECISION").region, Region::AssistantPrefix);
}

#[test]
fn straddling_token_takes_larger_overlap() {
    let tokenizer = tokenizer();
    // Field "oë F" (16..20). " Zoë" has o and ë inside and Z outside, so it
    // is in the field. " Fletcher" has only F inside, so it is not.
    let tokens = tokenize_rendered(&tokenizer, None, &with_field(16, 20)).unwrap();
    assert_eq!(token(&tokens, " Zoë").field.as_deref(), Some("f"));
    assert_eq!(token(&tokens, " Fletcher").field, None);
}

#[test]
fn straddling_tie_goes_to_earlier_span() {
    let tokenizer = tokenizer();
    // "34" is at 32..34. A field over "3" ties with the text after it and
    // comes first. A field over "4" ties with the text before it and comes
    // second.
    let tokens = tokenize_rendered(&tokenizer, None, &with_field(32, 33)).unwrap();
    assert_eq!(token(&tokens, "34").field.as_deref(), Some("f"));
    let tokens = tokenize_rendered(&tokenizer, None, &with_field(33, 34)).unwrap();
    assert_eq!(token(&tokens, "34").field, None);
}

#[test]
fn leading_space_does_not_count_against_field() {
    // " Zoë" (14..18) with the field over "Zoë" alone belongs to it.
    let tokens = tokenize_rendered(&tokenizer(), None, &with_field(15, 18)).unwrap();
    assert_eq!(token(&tokens, " Zoë").field.as_deref(), Some("f"));
}

#[test]
fn sub_word_pieces_share_a_word() {
    let tokens = tokenize_rendered(
        &tokenizer(),
        None,
        &raw("{user}", "Zoë Fletcherowski appealed"),
    )
    .unwrap();
    let pieces: Vec<_> = tokens
        .tokens
        .iter()
        .filter(|t| t.start >= 4 && t.end <= 17)
        .collect();
    assert!(
        pieces.len() > 1,
        "expected the unseen name to split: {pieces:?}"
    );
    assert!(pieces.iter().all(|t| t.word == pieces[0].word));

    let words: Vec<Option<usize>> = tokens.tokens.iter().map(|t| t.word).collect();
    let first = words[0].unwrap();
    assert_eq!(
        words.iter().flatten().max(),
        Some(&(first + 2)),
        "three words: {words:?}"
    );
}

#[test]
fn spans_slice_the_rendered_text() {
    let prompt = raw("{user}", "محمد, राहुल and 王芳 met Łukasz.");
    let tokens = tokenize_rendered(&tokenizer(), None, &prompt).unwrap();
    let chars: Vec<char> = prompt.text.chars().collect();
    for token in &tokens.tokens {
        assert!(token.start < token.end, "{token:?}");
        assert_eq!(
            token.text,
            chars[token.start..token.end].iter().collect::<String>()
        );
    }
}
