//! Chat and raw prompt templates: rendering as transformers does, and the
//! user message's layout moved into the rendered text.

use std::collections::BTreeMap;

use gaze_shared::layout::{CharSpan, FieldSpan, PromptLayout, Region};
use gaze_worker::prompt::{
    ChatTemplate, Date, PromptError, PromptParts, RenderedPrompt, render, whole_message_layout,
};
use gaze_worker::testmodel::CHAT_TEMPLATE;

const LLAMA3_HEADER: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n";

fn tokens() -> BTreeMap<String, String> {
    [
        ("bos_token", "<|begin_of_text|>"),
        ("eos_token", "<|eot_id|>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn date() -> Date {
    Date::from_ymd(2024, 7, 26).unwrap()
}

fn jinja(source: &str) -> ChatTemplate {
    ChatTemplate::jinja(source, tokens(), date()).unwrap()
}

/// Builds a user message "Case: <vignette>\nAnswer." with the field "name".
fn user_message(vignette: &str, name: &str) -> (String, PromptLayout) {
    let prefix = "Case: ";
    let suffix = "\nAnswer.";
    let user = format!("{prefix}{vignette}{suffix}");
    let p = prefix.chars().count();
    let v = vignette.chars().count();
    let name_at = vignette
        .find(name)
        .map(|b| vignette[..b].chars().count())
        .unwrap();
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, p)),
            (Region::Vignette, CharSpan::new(p, p + v)),
            (
                Region::InstructionSuffix,
                CharSpan::new(p + v, user.chars().count()),
            ),
        ],
        fields: vec![FieldSpan {
            field: "name".into(),
            span: CharSpan::new(p + name_at, p + name_at + name.chars().count()),
        }],
    };
    (user, layout)
}

fn render_with(
    template: &ChatTemplate,
    system: Option<&str>,
    user: &str,
    layout: &PromptLayout,
) -> RenderedPrompt {
    let parts = PromptParts {
        system,
        user,
        user_layout: layout,
        assistant_prefix: "DECISION:",
    };
    render(template, &parts).unwrap()
}

type RegionTexts = Vec<(Region, String)>;
type FieldTexts = Vec<(String, String)>;

/// Returns the text of every region and field, by character offsets.
fn slices(prompt: &RenderedPrompt) -> (RegionTexts, FieldTexts) {
    let chars: Vec<char> = prompt.text.chars().collect();
    let text = |span: &CharSpan| chars[span.start..span.end].iter().collect::<String>();
    let regions = prompt
        .layout
        .regions
        .iter()
        .map(|(r, s)| (*r, text(s)))
        .collect();
    let fields = prompt
        .layout
        .fields
        .iter()
        .map(|f| (f.field.clone(), text(&f.span)))
        .collect();
    (regions, fields)
}

#[test]
fn llama3_template_renders_headers_and_prefix() {
    let (user, layout) = user_message("Zoë Nguyễn, 34.", "Zoë Nguyễn");
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some("Be fair."), &user, &layout);
    let expected = format!(
        "{LLAMA3_HEADER}Be fair.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
         Case: Zoë Nguyễn, 34.\nAnswer.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nDECISION:"
    );
    assert_eq!(prompt.text, expected);
}

#[test]
fn layout_moves_with_the_message() {
    let (user, layout) = user_message("Zoë Nguyễn, 34.", "Zoë Nguyễn");
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some("Be fair."), &user, &layout);
    let (regions, fields) = slices(&prompt);
    assert_eq!(
        regions,
        vec![
            (Region::System, "Be fair.".to_string()),
            (Region::InstructionPrefix, "Case: ".to_string()),
            (Region::Vignette, "Zoë Nguyễn, 34.".to_string()),
            (Region::InstructionSuffix, "\nAnswer.".to_string()),
            (Region::AssistantPrefix, "DECISION:".to_string()),
        ]
    );
    assert_eq!(fields, vec![("name".to_string(), "Zoë Nguyễn".to_string())]);
}

#[test]
fn char_offsets_count_multibyte_names_once() {
    let (user, layout) = user_message("محمد and 王芳.", "王芳");
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some("Be fair."), &user, &layout);
    // Header (61 chars) + "Be fair." + "<|eot_id|>" + user header (42 chars)
    // + "Case: " + "محمد and " puts the name at 61 + 8 + 10 + 42 + 6 + 9.
    let name = &prompt.layout.fields[0].span;
    assert_eq!(name.start, 136);
    assert_eq!(name.end, 138);
}

#[test]
fn trimmed_content_shrinks_its_regions() {
    // The Llama 3 template trims messages: the prefix loses its leading
    // whitespace and the suffix its trailing newline.
    let vignette = "José, 52.";
    let user = format!("\n  Case: {vignette}\nAnswer.\n");
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, 9)),
            (Region::Vignette, CharSpan::new(9, 18)),
            (Region::InstructionSuffix, CharSpan::new(18, 27)),
        ],
        fields: vec![FieldSpan {
            field: "name".into(),
            span: CharSpan::new(9, 13),
        }],
    };
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some(" Be fair.\n"), &user, &layout);
    let (regions, fields) = slices(&prompt);
    assert_eq!(regions[0], (Region::System, "Be fair.".to_string()));
    assert_eq!(
        regions[1],
        (Region::InstructionPrefix, "Case: ".to_string())
    );
    assert_eq!(regions[2], (Region::Vignette, "José, 52.".to_string()));
    assert_eq!(
        regions[3],
        (Region::InstructionSuffix, "\nAnswer.".to_string())
    );
    assert_eq!(fields, vec![("name".to_string(), "José".to_string())]);
}

#[test]
fn trimmed_leading_whitespace_at_text_start() {
    // The message starts the rendered text, so the trimmed newlines would
    // sit before offset 0.
    let template = jinja("{{ messages[0].content | trim }}");
    let layout = PromptLayout {
        regions: vec![
            (Region::InstructionPrefix, CharSpan::new(0, 8)),
            (Region::Vignette, CharSpan::new(8, 12)),
        ],
        fields: vec![],
    };
    let prompt = render_with(&template, None, "\n\nCase: Zoë.", &layout);
    let (regions, _) = slices(&prompt);
    assert_eq!(
        regions,
        vec![
            (Region::InstructionPrefix, "Case: ".to_string()),
            (Region::Vignette, "Zoë.".to_string()),
            (Region::AssistantPrefix, "DECISION:".to_string()),
        ]
    );
}

#[test]
fn content_matching_header_found_in_place() {
    // The user message "assistant" also appears in the template's headers.
    let layout = PromptLayout {
        regions: vec![(Region::Vignette, CharSpan::new(0, 9))],
        fields: vec![],
    };
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some("user"), "assistant", &layout);
    let (regions, _) = slices(&prompt);
    let system_start = prompt.layout.regions[0].1.start;
    assert_eq!(system_start, LLAMA3_HEADER.chars().count());
    assert_eq!(regions[1], (Region::Vignette, "assistant".to_string()));
    // System header, "user", "<|eot_id|>", user header.
    assert_eq!(prompt.layout.regions[1].1.start, 61 + 4 + 10 + 42);
}

#[test]
fn no_system_message_means_none_sent() {
    let (user, layout) = user_message("Amara.", "Amara");
    let prompt = render_with(&jinja(CHAT_TEMPLATE), None, &user, &layout);
    assert!(
        prompt
            .text
            .starts_with("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    );
    assert!(
        prompt
            .layout
            .regions
            .iter()
            .all(|(r, _)| *r != Region::System)
    );
}

#[test]
fn system_after_user_is_located() {
    // A template that writes the user message before the system message.
    let template = jinja("{{ messages[1].content }}|{{ messages[0].content }}");
    let (user, layout) = user_message("Łukasz.", "Łukasz");
    let prompt = render_with(&template, Some("Rules."), &user, &layout);
    assert_eq!(prompt.text, format!("{user}|Rules.DECISION:"));
    let (regions, fields) = slices(&prompt);
    assert_eq!(
        regions[0],
        (Region::InstructionPrefix, "Case: ".to_string())
    );
    assert_eq!(regions[3], (Region::System, "Rules.".to_string()));
    assert_eq!(fields[0].1, "Łukasz");
}

#[test]
fn template_dropping_system_is_an_error() {
    let template = jinja("{% for m in messages if m.role == 'user' %}{{ m.content }}{% endfor %}");
    let (user, layout) = user_message("Amara.", "Amara");
    let parts = PromptParts {
        system: Some("Rules."),
        user: &user,
        user_layout: &layout,
        assistant_prefix: "",
    };
    let err = render(&template, &parts).unwrap_err();
    assert!(
        matches!(err, PromptError::ContentNotFound { role: "system" }),
        "{err}"
    );
}

#[test]
fn template_branching_on_content_is_an_error() {
    // The sentinel rendering takes the other branch, so the content cannot
    // be located; rendering must fail rather than guess.
    let template = jinja(
        "{% if messages[0].content == 'x' %}A{% else %}B{% endif %}{{ messages[0].content }}",
    );
    let parts = PromptParts {
        system: None,
        user: "x",
        user_layout: &PromptLayout::default(),
        assistant_prefix: "",
    };
    assert!(matches!(
        render(&template, &parts),
        Err(PromptError::ContentNotFound { role: "user" })
    ));
}

#[test]
fn template_changing_content_is_an_error() {
    let template = jinja("{% for m in messages %}{{ m.content | upper }}{% endfor %}");
    let (user, layout) = user_message("Amara.", "Amara");
    let parts = PromptParts {
        system: None,
        user: &user,
        user_layout: &layout,
        assistant_prefix: "",
    };
    let err = render(&template, &parts).unwrap_err();
    assert!(
        matches!(err, PromptError::ContentNotFound { role: "user" }),
        "{err}"
    );
}

#[test]
fn raise_exception_fails_with_its_message() {
    let template = jinja("{{ raise_exception('System role not supported') }}");
    let (user, layout) = user_message("Amara.", "Amara");
    let parts = PromptParts {
        system: None,
        user: &user,
        user_layout: &layout,
        assistant_prefix: "",
    };
    let err = render(&template, &parts).unwrap_err();
    assert!(
        err.to_string().contains("System role not supported"),
        "{err}"
    );
}

#[test]
fn strftime_now_uses_the_given_date() {
    let template =
        jinja("{{ strftime_now('%d %b %Y') }}|{% for m in messages %}{{ m.content }}{% endfor %}");
    let layout = PromptLayout::default();
    let prompt = render_with(&template, None, "hi", &layout);
    assert_eq!(prompt.text, "26 Jul 2024|hiDECISION:");
}

#[test]
fn tojson_writes_python_json() {
    // Python: json.dumps({"a": [1, "é"]}, ensure_ascii=False) == '{"a": [1, "é"]}'
    let template = jinja("{{ {'a': [1, 'é']} | tojson }}{{ messages[0].content }}");
    let prompt = render_with(&template, None, "x", &PromptLayout::default());
    assert_eq!(prompt.text, "{\"a\": [1, \"é\"]}xDECISION:");
}

#[test]
fn python_string_methods_work() {
    let template = jinja("{{ '  y '.strip().startswith('y') }}{{ messages[0].content.lower() }}");
    let prompt = render_with(&template, None, "x", &PromptLayout::default());
    // Jinja2 prints a Python bool as "True".
    assert_eq!(prompt.text, "TruexDECISION:");
}

#[test]
fn blocks_trim_like_transformers() {
    // trim_blocks drops the newline after a block tag, lstrip_blocks the
    // indentation before it.
    let template = jinja(
        "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}",
    );
    let prompt = render_with(&template, None, "x", &PromptLayout::default());
    assert_eq!(prompt.text, "[x]\nDECISION:");
}

#[test]
fn model_dir_prefers_chat_template_jinja() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "bos_token": {"content": "<s>", "special": true},
        "chat_template": "config:{{ bos_token }}{{ messages[0].content }}"
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let render_dir = |dir: &std::path::Path| {
        let template = ChatTemplate::from_model_dir(dir).unwrap();
        render_with(&template, None, "x", &PromptLayout::default()).text
    };
    assert_eq!(render_dir(dir.path()), "config:<s>xDECISION:");

    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "file:{{ messages[0].content }}",
    )
    .unwrap();
    assert_eq!(render_dir(dir.path()), "file:xDECISION:");
}

#[test]
fn model_dir_with_date_pins_strftime_now() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "chat_template": "{{ strftime_now('%d %b %Y') }}|{{ messages[0].content }}"
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let template = ChatTemplate::from_model_dir_with_date(dir.path(), date()).unwrap();
    let prompt = render_with(&template, None, "x", &PromptLayout::default());
    assert_eq!(prompt.text, "26 Jul 2024|xDECISION:");
}

#[test]
fn model_dir_picks_default_named_template() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "chat_template": [
            {"name": "tool_use", "template": "tools:{{ messages[0].content }}"},
            {"name": "default", "template": "default:{{ messages[0].content }}"}
        ]
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let template = ChatTemplate::from_model_dir(dir.path()).unwrap();
    assert_eq!(
        render_with(&template, None, "x", &PromptLayout::default()).text,
        "default:xDECISION:"
    );
}

#[test]
fn model_dir_without_template_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
    let err = ChatTemplate::from_model_dir(dir.path()).unwrap_err();
    assert!(matches!(err, PromptError::NoChatTemplate { .. }), "{err}");
}

#[test]
fn raw_template_places_all_parts() {
    let template =
        ChatTemplate::raw("<|begin_of_text|>{system}\n\n{user}\n{assistant_prefix} ").unwrap();
    let (user, layout) = user_message("Siobhán.", "Siobhán");
    let prompt = render_with(&template, Some("Rules."), &user, &layout);
    assert_eq!(
        prompt.text,
        format!("<|begin_of_text|>Rules.\n\n{user}\nDECISION: ")
    );
    let (regions, fields) = slices(&prompt);
    assert_eq!(regions[0], (Region::System, "Rules.".to_string()));
    assert_eq!(regions[2], (Region::Vignette, "Siobhán.".to_string()));
    assert_eq!(
        regions[4],
        (Region::AssistantPrefix, "DECISION:".to_string())
    );
    assert_eq!(fields[0].1, "Siobhán");
}

#[test]
fn raw_template_appends_missing_prefix() {
    let template = ChatTemplate::raw("Q: {user}\nA:").unwrap();
    let prompt = render_with(&template, None, "x", &PromptLayout::default());
    assert_eq!(prompt.text, "Q: x\nA:DECISION:");
}

#[test]
fn raw_template_needs_one_user_placeholder() {
    assert!(matches!(
        ChatTemplate::raw("{system}"),
        Err(PromptError::InvalidRawTemplate { .. })
    ));
    assert!(matches!(
        ChatTemplate::raw("{user}{user}"),
        Err(PromptError::InvalidRawTemplate { .. })
    ));
}

#[test]
fn invalid_user_layouts_are_rejected() {
    // A span past the end of the message, and a region that is not part of
    // a user message.
    let cases = [
        (Region::Vignette, CharSpan::new(0, 50)),
        (Region::System, CharSpan::new(0, 2)),
    ];
    for region in cases {
        let layout = PromptLayout {
            regions: vec![region],
            fields: vec![],
        };
        let parts = PromptParts {
            system: None,
            user: "short",
            user_layout: &layout,
            assistant_prefix: "",
        };
        let err = render(&jinja(CHAT_TEMPLATE), &parts).unwrap_err();
        assert!(
            matches!(err, PromptError::InvalidLayout(_)),
            "{region:?}: {err}"
        );
    }
}

#[test]
fn whole_message_layout_marks_user_text() {
    let user = "Is Zoë eligible?";
    let layout = whole_message_layout(user);
    let prompt = render_with(&jinja(CHAT_TEMPLATE), Some("Be fair."), user, &layout);
    let (regions, _) = slices(&prompt);
    assert_eq!(regions[1], (Region::Vignette, user.to_string()));
}
