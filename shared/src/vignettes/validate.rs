//! Checks a [`VignetteFile`] and turns it into topics with ready pools.
//! Each message names the topic and the field it is about.

use std::collections::{BTreeMap, BTreeSet};

use super::agreement::{Agreement, FieldRef, agrees};
use super::file::{FieldSpec, PoolValue, Restriction, TopicSpec, VignetteFile};
use super::template::{Template, is_field_name};
use super::{Pool, RESERVED_FIELD_NAMES, Topic};
use crate::config::is_identifier;
use crate::store::MAX_ID_LEN;

/// Returns the validated topics, or a message saying what is wrong and how
/// to fix it.
pub(crate) fn validate(file: &VignetteFile) -> Result<Vec<Topic>, String> {
    if file.topics.is_empty() {
        return Err(
            "\"topics\" is empty; add at least one topic with an id, a route and a template".into(),
        );
    }

    let mut shared = BTreeMap::new();
    for (name, spec) in &file.fields {
        shared.insert(name.clone(), build_pool(name, spec, None)?);
    }

    let mut ids = BTreeSet::new();
    let mut topics = Vec::with_capacity(file.topics.len());
    for spec in &file.topics {
        if !ids.insert(spec.id.as_str()) {
            return Err(format!(
                "topic id {:?} appears twice; topic ids must be unique",
                spec.id
            ));
        }
        topics.push(build_topic(spec, &shared)?);
    }
    Ok(topics)
}

fn build_topic(spec: &TopicSpec, shared: &BTreeMap<String, Pool>) -> Result<Topic, String> {
    let id = &spec.id;
    if !is_identifier(id) {
        return Err(format!(
            "topic id {id:?} is invalid; use 1 to {MAX_ID_LEN} ASCII letters, digits, '_' and '-'"
        ));
    }
    if spec.route.trim().is_empty() {
        return Err(format!(
            "topic {id:?}: \"route\" is empty; give the route's name, such as \"Skilled Worker visa\""
        ));
    }
    let template = Template::parse(&spec.template)
        .map_err(|err| format!("topic {id:?}: invalid template: {err}"))?;

    let mut pools = shared.clone();
    for (name, field) in &spec.fields {
        if shared.contains_key(name) {
            return Err(format!(
                "topic {id:?}: field {name:?} is also defined in the shared \"fields\"; rename the topic's field or narrow the shared one with \"restrict\""
            ));
        }
        pools.insert(name.clone(), build_pool(name, field, Some(id))?);
    }

    for (name, restriction) in &spec.restrict {
        let pool = pools.get_mut(name).ok_or_else(|| {
            format!("topic {id:?}: \"restrict\" names field {name:?}, which no pool defines; fix the name or remove the restriction")
        })?;
        restrict_pool(id, name, pool, restriction)?;
    }

    for field in template.fields() {
        if !pools.contains_key(field) {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            return Err(format!(
                "topic {id:?}: the template uses {{{field}}}, which no field defines; define it under \"fields\" or use one of: {}",
                known.join(", ")
            ));
        }
    }

    for (name, pool) in &pools {
        check_agreement(id, name, pool, &pools)?;
    }

    Ok(Topic {
        id: id.clone(),
        route: spec.route.clone(),
        template,
        pools,
    })
}

fn build_pool(name: &str, spec: &FieldSpec, topic: Option<&str>) -> Result<Pool, String> {
    let place = match topic {
        Some(topic) => format!("topic {topic:?}: field {name:?}"),
        None => format!("field {name:?}"),
    };
    if !is_field_name(name) {
        return Err(format!(
            "{place}: the name is invalid; use only ASCII letters, digits and '_' so it can be a placeholder"
        ));
    }
    if RESERVED_FIELD_NAMES.contains(&name) {
        return Err(format!(
            "{place}: the name is reserved for a plan column ({}); rename the field",
            RESERVED_FIELD_NAMES.join(", ")
        ));
    }
    if spec.values.is_empty() {
        return Err(format!(
            "{place}: the pool is empty; list at least one value"
        ));
    }
    let mut seen = BTreeSet::new();
    for value in &spec.values {
        if !seen.insert(value.value.as_str()) {
            return Err(format!(
                "{place}: the value {:?} appears twice; remove the repeat",
                value.value
            ));
        }
    }

    let mut agree = Vec::new();
    for (attribute, references) in &spec.agree {
        if references.is_empty() {
            return Err(format!(
                "{place}: agree.{attribute} is empty; list the fields its value must match, such as [\"country\"]"
            ));
        }
        agree.push(Agreement {
            attribute: attribute.clone(),
            references: references.iter().map(|r| FieldRef::parse(r)).collect(),
        });
    }
    for value in &spec.values {
        if let Some(rule) = agree
            .iter()
            .find(|rule| !value.attributes.contains_key(&rule.attribute))
        {
            return Err(format!(
                "{place}: the value {:?} has no attribute {:?}, which the agree rule needs; add it",
                value.value, rule.attribute
            ));
        }
    }

    Ok(Pool {
        category: spec.category,
        values: spec.values.clone(),
        agree,
    })
}

fn restrict_pool(
    topic: &str,
    name: &str,
    pool: &mut Pool,
    restriction: &Restriction,
) -> Result<(), String> {
    let place = format!("topic {topic:?}: restrict.{name}");
    if restriction.values.is_none() && restriction.attributes.is_empty() {
        return Err(format!(
            "{place} is empty; give \"values\" or \"attributes\", or remove it"
        ));
    }
    if let Some(values) = &restriction.values
        && let Some(unknown) = values
            .iter()
            .find(|v| !pool.values.iter().any(|p| &p.value == *v))
    {
        return Err(format!(
            "{place} lists {unknown:?}, which is not a value of field {name:?}; fix the value or add it to the pool"
        ));
    }

    let allowed = |value: &PoolValue| {
        let listed = restriction
            .values
            .as_ref()
            .is_none_or(|values| values.contains(&value.value));
        let attributes_match = restriction.attributes.iter().all(|(attribute, accepted)| {
            value
                .attributes
                .get(attribute)
                .is_some_and(|v| accepted.contains(v))
        });
        listed && attributes_match
    };
    pool.values.retain(allowed);

    if pool.values.is_empty() {
        return Err(format!(
            "{place} leaves no value of field {name:?}; widen the restriction or add matching values to the pool"
        ));
    }
    Ok(())
}

/// Checks that every combination of the referenced fields' values has at
/// least one agreeing value, so the plan can always draw one.
fn check_agreement(
    topic: &str,
    name: &str,
    pool: &Pool,
    pools: &BTreeMap<String, Pool>,
) -> Result<(), String> {
    if pool.agree.is_empty() {
        return Ok(());
    }
    let place = format!("topic {topic:?}: field {name:?}");

    let mut referenced: Vec<&str> = Vec::new();
    for rule in &pool.agree {
        for reference in &rule.references {
            let Some(target) = pools.get(&reference.field) else {
                return Err(format!(
                    "{place}: agree.{} refers to {reference}, but field {:?} is not defined; fix the reference",
                    rule.attribute, reference.field
                ));
            };
            if !target.agree.is_empty() {
                return Err(format!(
                    "{place}: agree.{} refers to {:?}, which has an agree rule of its own; a field may only agree with fields that have none",
                    rule.attribute, reference.field
                ));
            }
            if !referenced.contains(&reference.field.as_str()) {
                referenced.push(&reference.field);
            }
        }
    }

    let mut combination: BTreeMap<&str, &PoolValue> = BTreeMap::new();
    check_combinations(&place, pool, pools, &referenced, &mut combination)
}

fn check_combinations<'a>(
    place: &str,
    pool: &Pool,
    pools: &'a BTreeMap<String, Pool>,
    remaining: &[&'a str],
    combination: &mut BTreeMap<&'a str, &'a PoolValue>,
) -> Result<(), String> {
    let Some((field, rest)) = remaining.split_first() else {
        if pool
            .values
            .iter()
            .any(|value| agrees(value, &pool.agree, combination))
        {
            return Ok(());
        }
        let described: Vec<String> = combination
            .iter()
            .map(|(f, v)| format!("{f} = {:?}", v.value))
            .collect();
        let needed: Vec<String> = pool
            .agree
            .iter()
            .map(|rule| {
                let options: Vec<String> = rule
                    .references
                    .iter()
                    .filter_map(|r| r.resolve(combination).map(|v| format!("{v:?}")))
                    .collect();
                format!("{} = {}", rule.attribute, options.join(" or "))
            })
            .collect();
        return Err(format!(
            "{place}: no value agrees with {}; add a value with attributes {}",
            described.join(", "),
            needed.join(", ")
        ));
    };

    for value in &pools[*field].values {
        combination.insert(field, value);
        check_combinations(place, pool, pools, rest, combination)?;
    }
    combination.remove(field);
    Ok(())
}
