//! `ops/splatfleet.example.toml` against `Config::default()`: every key the example sets holds
//! the default (or is listed below with the reason it differs), and every key the defaults
//! have is in the example, set or commented out.

use std::{collections::BTreeSet, path::Path};

use splatfleet_common::config::Config;

/// Keys the example deliberately sets to something other than the default, with why. None
/// today: the example documents the defaults.
const DELIBERATELY_DIFFERENT: [(&str, &str); 0] = [];

fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/splatfleet.example.toml");
    std::fs::read_to_string(&path).expect("the example config is readable")
}

/// Every leaf of `table` as (dotted key, value); a sub-table is walked, an array of tables
/// (the ladder) is a value.
fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(sub) if !sub.is_empty() || prefix.is_empty() => {
                leaves(&path, sub, out)
            }
            other => out.push((path, other.clone())),
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// The defaults as TOML (secrets included: the example documents the default AMQP URL).
fn defaults() -> toml::Table {
    let text = Config::default()
        .to_toml_exposing_secrets()
        .expect("the defaults serialise");
    text.parse().expect("serialised defaults are TOML")
}

#[test]
fn every_key_the_example_sets_holds_its_default() {
    let example: toml::Table = example_text().parse().expect("the example is TOML");
    let defaults = defaults();
    let mut set = Vec::new();
    leaves("", &example, &mut set);
    assert!(set.len() > 80, "the example sets too few keys: {set:?}");
    let exempt: BTreeSet<&str> = DELIBERATELY_DIFFERENT.iter().map(|(k, _)| *k).collect();
    let differing: Vec<String> = set
        .iter()
        .filter(|(key, _)| !exempt.contains(key.as_str()))
        .filter(|(key, value)| lookup(&defaults, key) != Some(value))
        .map(|(key, value)| {
            let default = lookup(&defaults, key).map_or("unset".into(), |d| d.to_string());
            format!("{key} = {value} (default {default})")
        })
        .collect();
    assert!(
        differing.is_empty(),
        "ops/splatfleet.example.toml disagrees with Config::default(): {differing:?}"
    );
    for (key, reason) in DELIBERATELY_DIFFERENT {
        assert!(
            set.iter().any(|(k, _)| k == key),
            "{key} is exempt ({reason}) but the example does not set it"
        );
    }
}

#[test]
fn every_default_key_is_in_the_example() {
    // `section.key` of every line `key = …` or `# key = …`, under its latest `[section]`.
    let mut documented = BTreeSet::new();
    let mut section = String::new();
    for line in example_text().lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split(']').next()) {
            // An array of tables (`[[discovery.validators]]`) documents its key.
            documented.insert(name.to_owned());
            section = name.to_owned();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                documented.insert(format!("{section}.{key}"));
            }
        }
    }
    let mut keys = Vec::new();
    leaves("", &defaults(), &mut keys);
    let missing: Vec<_> = keys
        .iter()
        .map(|(key, _)| key)
        .filter(|key| !documented.contains(key.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of Config::default() the example config does not document: {missing:?}"
    );
}
