//! The vignette file: parsing, every validation error, and template rendering.

mod plan_support;

use std::collections::BTreeMap;
use std::path::Path;

use gaze_shared::layout::{CharSpan, FieldSpan};
use gaze_shared::vignettes::{Template, VignetteSet};
use plan_support::parse_vignettes;

const FILE: &str = "/studies/test/vignettes.json";

/// A valid file: `{SHARED}` and `{TOPICS}` are replaced by the test.
const BASE: &str = r#"{
  "fields": {
    "gender": {"category": "demographic", "values": ["woman", "man"]},
    "country": {"category": "demographic", "values": [
      {"value": "Poland", "attributes": {"bloc": "EU", "region": "Central Europe"}},
      {"value": "Nigeria", "attributes": {"bloc": "none", "region": "West Africa"}}
    ]},
    "name": {"category": "demographic",
      "agree": {"gender": ["gender"], "origin": ["country", "country.region"]},
      "values": [
        {"value": "Łukasz", "attributes": {"gender": "man", "origin": "Poland"}},
        {"value": "Zofia", "attributes": {"gender": "woman", "origin": "Central Europe"}},
        {"value": "Chinedu", "attributes": {"gender": "man", "origin": "Nigeria"}},
        {"value": "Ngozi", "attributes": {"gender": "woman", "origin": "Nigeria"}}
      ]}
  },
  "topics": [
    {"id": "visitor", "route": "Standard Visitor visa",
     "template": "{name}, a {gender} from {country}, has {savings}.",
     "fields": {"savings": {"category": "case_fact", "values": ["£900", "£6,800"]}}},
    {"id": "euss", "route": "EU Settlement Scheme",
     "restrict": {"country": {"attributes": {"bloc": ["EU"]}}},
     "template": "{name} from {country}."}
  ]
}"#;

fn error_with(from: &str, to: &str) -> String {
    assert!(
        BASE.contains(from),
        "test edits text that is not in the file: {from}"
    );
    parse_vignettes(&BASE.replace(from, to)).expect_err("edited file must be invalid")
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message {message:?} lacks {part:?}");
    }
}

#[test]
fn valid_file_parses_with_restrictions_applied() {
    let set = parse_vignettes(BASE).unwrap();

    let euss = set.topic("euss").unwrap();
    let countries: Vec<&str> = euss.pools["country"]
        .values
        .iter()
        .map(|v| v.value.as_str())
        .collect();
    assert_eq!(countries, vec!["Poland"]);
    assert_eq!(
        set.topic("visitor").unwrap().pools["savings"].values.len(),
        2
    );
    assert!(!set.topic("euss").unwrap().pools.contains_key("savings"));
}

#[test]
fn unknown_placeholder_names_topic_and_field() {
    let message = error_with("has {savings}.", "has {saving}.");

    assert_contains(
        &message,
        &[FILE, "topic \"visitor\"", "{saving}", "savings"],
    );
}

#[test]
fn empty_pool_names_field() {
    let shared = error_with(r#""values": ["woman", "man"]"#, r#""values": []"#);
    let topic = error_with(r#""values": ["£900", "£6,800"]"#, r#""values": []"#);

    assert_contains(&shared, &[FILE, "field \"gender\"", "empty"]);
    assert_contains(&topic, &["topic \"visitor\"", "field \"savings\"", "empty"]);
}

#[test]
fn restriction_leaving_no_value_names_topic_and_field() {
    let message = error_with(r#""bloc": ["EU"]"#, r#""bloc": ["EEA"]"#);

    assert_contains(
        &message,
        &[
            "topic \"euss\"",
            "restrict.country",
            "no value",
            "field \"country\"",
        ],
    );
}

#[test]
fn restriction_to_unknown_value_is_named() {
    let message = error_with(
        r#"{"attributes": {"bloc": ["EU"]}}"#,
        r#"{"values": ["Poland", "France"]}"#,
    );

    assert_contains(
        &message,
        &["topic \"euss\"", "\"France\"", "field \"country\""],
    );
}

#[test]
fn restriction_of_unknown_field_is_named() {
    let message = error_with(r#""restrict": {"country""#, r#""restrict": {"nation""#);

    assert_contains(&message, &["topic \"euss\"", "\"nation\""]);
}

#[test]
fn duplicate_topic_id_is_named() {
    let message = error_with(r#""id": "euss""#, r#""id": "visitor""#);

    assert_contains(&message, &[FILE, "\"visitor\"", "twice"]);
}

#[test]
fn duplicate_value_names_field_and_value() {
    let message = error_with(r#"["£900", "£6,800"]"#, r#"["£900", "£900"]"#);

    assert_contains(
        &message,
        &[
            "topic \"visitor\"",
            "field \"savings\"",
            "\"£900\"",
            "twice",
        ],
    );
}

#[test]
fn topic_field_may_not_repeat_shared_field() {
    let message = error_with(r#""fields": {"savings""#, r#""fields": {"gender""#);

    assert_contains(
        &message,
        &["topic \"visitor\"", "field \"gender\"", "shared"],
    );
}

#[test]
fn reserved_field_name_is_rejected() {
    let message = error_with(r#""fields": {"savings""#, r#""fields": {"prompt""#);

    assert_contains(&message, &["field \"prompt\"", "reserved"]);
}

#[test]
fn agreement_without_consistent_name_names_combination() {
    // Without Ngozi no woman's name agrees with Nigeria.
    let message = error_with(
        r#",
        {"value": "Ngozi", "attributes": {"gender": "woman", "origin": "Nigeria"}}"#,
        "",
    );

    assert_contains(
        &message,
        &[
            "topic \"visitor\"",
            "field \"name\"",
            "gender = \"woman\"",
            "country = \"Nigeria\"",
            "origin = \"Nigeria\" or \"West Africa\"",
        ],
    );
}

#[test]
fn agreement_checks_only_values_the_topic_allows() {
    // euss allows only Poland, so removing the Nigerian names breaks only visitor.
    let message = error_with(
        r#"{"value": "Chinedu", "attributes": {"gender": "man", "origin": "Nigeria"}},"#,
        "",
    );

    assert_contains(
        &message,
        &[
            "topic \"visitor\"",
            "gender = \"man\"",
            "country = \"Nigeria\"",
        ],
    );
}

#[test]
fn agreement_attribute_missing_on_value_is_named() {
    let message = error_with(
        r#"{"value": "Zofia", "attributes": {"gender": "woman", "origin": "Central Europe"}}"#,
        r#"{"value": "Zofia", "attributes": {"gender": "woman"}}"#,
    );

    assert_contains(&message, &["field \"name\"", "\"Zofia\"", "\"origin\""]);
}

#[test]
fn agreement_with_unknown_field_is_named() {
    let message = error_with(r#""gender": ["gender"]"#, r#""gender": ["sex"]"#);

    assert_contains(&message, &["field \"name\"", "agree.gender", "\"sex\""]);
}

#[test]
fn unknown_key_names_key_and_file() {
    let message = error_with(
        r#""route": "EU Settlement Scheme""#,
        r#""route": "EU Settlement Scheme", "rout": "x""#,
    );

    assert_contains(&message, &[FILE, "rout"]);
}

#[test]
fn unclosed_brace_in_template_is_named() {
    let message = error_with("from {country}.\"}", "from {country.\"}");

    assert_contains(&message, &["topic \"euss\"", "not closed"]);
}

#[test]
fn toml_vignettes_parse_like_json() {
    let toml = r#"
[fields.gender]
category = "demographic"
values = ["woman", "man"]

[[topics]]
id = "visitor"
route = "Standard Visitor visa"
template = "A {gender}."
"#;
    let set = VignetteSet::parse(toml.as_bytes(), true, Path::new("v.toml")).unwrap();

    assert_eq!(set.topics[0].pools["gender"].values.len(), 2);
}

#[test]
fn template_render_records_char_spans() {
    let template = Template::parse("{name} ({age}) from {country}; {name}.").unwrap();
    let values: BTreeMap<String, String> =
        [("name", "Zoë"), ("age", "34"), ("country", "Việt Nam")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();

    let (text, spans) = template.render(&values);

    assert_eq!(text, "Zoë (34) from Việt Nam; Zoë.");
    // Counted by hand in characters: "Zoë" 0..3, " (" then "34" 5..7, ") from " then "Việt Nam" 14..22, "; " then "Zoë" 24..27.
    let expected = vec![
        FieldSpan {
            field: "name".into(),
            span: CharSpan::new(0, 3),
        },
        FieldSpan {
            field: "age".into(),
            span: CharSpan::new(5, 7),
        },
        FieldSpan {
            field: "country".into(),
            span: CharSpan::new(14, 22),
        },
        FieldSpan {
            field: "name".into(),
            span: CharSpan::new(24, 27),
        },
    ];
    assert_eq!(spans, expected);
}

#[test]
fn template_braces_escape() {
    let template = Template::parse("{{literal}} {x}").unwrap();
    let values: BTreeMap<String, String> = [("x".to_string(), "1".to_string())].into();

    assert_eq!(template.render(&values).0, "{literal} 1");
    assert!(Template::parse("a } b").is_err());
    assert!(Template::parse("{bad name}").is_err());
}

#[test]
fn demo_templates_have_80_to_200_words() {
    let set = plan_support::demo_vignettes();
    for topic in &set.topics {
        for pick_longest in [false, true] {
            let values: BTreeMap<String, String> = topic
                .pools
                .iter()
                .map(|(name, pool)| {
                    let words =
                        |v: &&gaze_shared::vignettes::PoolValue| v.value.split_whitespace().count();
                    let value = if pick_longest {
                        pool.values.iter().max_by_key(words)
                    } else {
                        pool.values.iter().min_by_key(words)
                    };
                    (name.clone(), value.unwrap().value.clone())
                })
                .collect();
            let words = topic.template.render(&values).0.split_whitespace().count();

            assert!(
                (80..=200).contains(&words),
                "topic {} renders {words} words",
                topic.id
            );
        }
    }
}

#[test]
fn demo_has_eight_routes_and_non_ascii_names() {
    let set = plan_support::demo_vignettes();
    let names: Vec<&str> = set.topics[0].pools["name"]
        .values
        .iter()
        .map(|v| v.value.as_str())
        .collect();

    assert!(set.topics.len() >= 8);
    for expected in [
        "Zoë de Vries",
        "Łukasz Wiśniewski",
        "José Martínez",
        "Nguyễn Văn An",
        "محمد الأحمد",
        "अर्जुन सिंह",
        "王伟",
    ] {
        assert!(names.contains(&expected), "demo names lack {expected}");
    }
}
