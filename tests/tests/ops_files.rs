//! The ops files agree with the code and with the README: every metric the Prometheus rules
//! and the Grafana dashboard query is one the roles export; every alert has `for`, a severity,
//! a summary, a description and a `runbook_url` whose anchor is a README runbook section; the
//! dashboard is valid JSON covering what an operator looks at; and every key of
//! `ops/splatfleet.example.toml` is in the README's configuration reference (and no other).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_owned()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Every `"splatfleet_..."` string literal in the roles' sources: the metric names they export.
fn exported_metrics() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in ["common", "puller", "worker", "submitter"] {
        rust_files(&repo().join(krate).join("src"), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (at, _) in text.match_indices("\"splatfleet_") {
            let rest = &text[at + 1..];
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            if rest[end..].starts_with('"') {
                names.insert(rest[..end].to_owned());
            }
        }
    }
    names
}

/// Metric names (`splatfleet_*`, `rabbitmq_*`) appearing in a query text.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["splatfleet_", "rabbitmq_"] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &text[at..];
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
        }
    }
    names
}

/// The exported metric a queried series belongs to (histogram series carry suffixes).
fn base_metric<'a>(name: &'a str, exported: &BTreeSet<String>) -> Option<&'a str> {
    if exported.contains(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| exported.contains(*base))
}

fn assert_metrics_exist(what: &str, text: &str) {
    let exported = exported_metrics();
    assert!(
        exported.contains("splatfleet_submitter_submissions_total")
            && exported.contains("splatfleet_broker_queue_messages_ready"),
        "the source scan found too little: {exported:?}"
    );
    let referenced = referenced_metrics(text);
    assert!(!referenced.is_empty(), "{what} queries no metric");
    let unknown: Vec<_> = referenced
        .iter()
        .filter(|name| base_metric(name, &exported).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} queries metrics no role exports: {unknown:?}\nexported: {exported:?}"
    );
}

/// The rules file without its comment lines.
fn rules_text() -> String {
    read("ops/prometheus/rules.yml")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// (alert name, the lines of its rule).
fn alert_blocks(rules: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert:") {
            blocks.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// GitHub's anchor for a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn alert_rules_query_only_exported_metrics() {
    assert_metrics_exist("ops/prometheus/rules.yml", &rules_text());
}

#[test]
fn every_alert_is_complete_and_has_a_runbook_section() {
    let readme = read("README.md");
    let headings: BTreeMap<String, String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|h| (anchor(h), h.to_owned()))
        .collect();
    let blocks = alert_blocks(&rules_text());
    let names: BTreeSet<_> = blocks.iter().map(|(name, _)| name.as_str()).collect();
    // The alerts the ops issue asks for.
    for wanted in [
        "SplatfleetAcceptanceLow",
        "SplatfleetNoSubmissions",
        "SplatfleetTaskBacklogGrowing",
        "SplatfleetQueueNoConsumers",
        "SplatfleetDeadLetters",
        "SplatfleetRoleDown",
        "SplatfleetPenaltiesRising",
        "SplatfleetCooldownViolations",
        "SplatfleetGenerationErrorsHigh",
        "SplatfleetGateRejectingMost",
        "SplatfleetValidatorUnauthorized",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}: {names:?}");
    }
    for (name, block) in &blocks {
        for field in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "description:",
            "runbook_url:",
        ] {
            assert!(
                block.contains(field),
                "alert {name} lacks {field}:\n{block}"
            );
        }
        let url = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("runbook_url:"))
            .expect("runbook_url line")
            .trim()
            .trim_matches('"');
        let (page, fragment) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} has no #anchor"));
        assert!(
            page.ends_with("/README.md"),
            "{name}: {url} is not the README"
        );
        let heading = headings.get(fragment).unwrap_or_else(|| {
            panic!("{name}: README.md has no section with anchor #{fragment} (### {name})")
        });
        assert_eq!(
            heading, name,
            "{name}: the runbook section is named {heading}"
        );
        let tests = read("ops/prometheus/tests/alerts.yml");
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} has no promtool test in ops/prometheus/tests/alerts.yml"
        );
    }
}

#[test]
fn dashboard_is_json_and_queries_exported_metrics() {
    let text = read("ops/grafana/splatfleet.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("ops/grafana/splatfleet.json is valid JSON");
    assert_eq!(dashboard["uid"], "splatfleet");
    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    let mut titles = Vec::new();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        if panel["type"] == "row" {
            continue;
        }
        titles.push(panel["title"].as_str().unwrap_or_default().to_owned());
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            exprs.push(
                target["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_owned(),
            );
        }
    }
    let all = exprs.join("\n");
    assert_metrics_exist("ops/grafana/splatfleet.json", &all);
    // Throughput, acceptance by validator, score distribution, stage latencies, queue depth,
    // busy GPUs, penalties.
    for needed in [
        "splatfleet_submitter_submissions_total",
        "splatfleet_submitter_validator_score_bucket",
        "splatfleet_worker_stage_seconds_bucket",
        "splatfleet_broker_queue_messages_ready",
        "splatfleet_worker_busy_slots",
        "splatfleet_submitter_penalties_total",
    ] {
        assert!(all.contains(needed), "the dashboard never shows {needed}");
    }
    assert!(
        titles.iter().any(|t| t.contains("by validator")),
        "{titles:?}"
    );
    // One fleet of many hosts: an instance variable every splatfleet query is scoped by, a
    // validators table (hotkey beside uid) and what version each process runs.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "instance"),
        "no instance variable"
    );
    for expr in &exprs {
        let scoped = expr.matches("splatfleet_").count();
        let with_instance = expr.matches(r#"instance=~"$instance""#).count();
        assert_eq!(scoped, with_instance, "not scoped by $instance: {expr}");
    }
    assert!(all.contains("by (validator, uid)"), "no validators table");
    assert!(all.contains("splatfleet_build_info"), "no version panel");
}

/// `(section, key)` for every key of the example config, commented-out ones included.
fn example_keys() -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in read("ops/splatfleet.example.toml").lines() {
        let bare = line.trim_start_matches('#').trim();
        if let Some(name) = bare
            .strip_prefix("[[")
            .and_then(|rest| rest.strip_suffix("]]"))
            .or_else(|| bare.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        {
            section = name.to_owned();
            continue;
        }
        let end = bare.find(|c: char| !is_name_char(c)).unwrap_or(bare.len());
        let (key, rest) = bare.split_at(end);
        let starts_lower = key.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if starts_lower && rest.trim_start().starts_with('=') && !section.is_empty() {
            keys.insert((section.clone(), key.to_owned()));
        }
    }
    keys
}

/// `(section, key)` for every row of the README's configuration reference: tables under
/// `#### [section]` headings whose first cell is a backticked key.
fn readme_reference_keys() -> BTreeSet<(String, String)> {
    let readme = read("README.md");
    let start = readme
        .find("## Configuration reference")
        .expect("README.md has a '## Configuration reference' section");
    let body = &readme[start..];
    let body = &body[..body[3..].find("\n## ").map_or(body.len(), |end| end + 3)];
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in body.lines() {
        if let Some(heading) = line.strip_prefix("#### ") {
            section = heading
                .trim()
                .trim_matches('`')
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
        } else if let Some(cell) = line.strip_prefix("| `") {
            if let Some((key, _)) = cell.split_once('`') {
                keys.insert((section.clone(), key.to_owned()));
            }
        }
    }
    keys
}

#[test]
fn readme_config_reference_matches_the_example_config() {
    let example = example_keys();
    assert!(
        example.contains(&("broker".into(), "prefix".into()))
            && example.contains(&("worker".into(), "metrics_addr".into()))
            && example.len() > 80,
        "the example config scan found too little: {example:?}"
    );
    let readme = readme_reference_keys();
    let missing: Vec<_> = example.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "keys of ops/splatfleet.example.toml missing from the README's configuration reference: {missing:?}"
    );
    let extra: Vec<_> = readme.difference(&example).collect();
    assert!(
        extra.is_empty(),
        "the README's configuration reference names keys the example config lacks: {extra:?}"
    );
}

/// Policy keys that would fight the queue arguments `common::broker` declares (RabbitMQ
/// lets a queue argument win over a policy, so such a policy silently does nothing, or, for
/// `delivery-limit`, takes the lower value).
const DECLARED_BY_THE_CODE: [&str; 5] = [
    "delivery-limit",
    "dead-letter-exchange",
    "dead-letter-strategy",
    "overflow",
    "queue-mode",
];

#[test]
fn rabbitmq_policies_match_the_declared_queues_without_conflicting() {
    use splatfleet_common::broker::{QueueKind, Topology};
    let text = read("ops/rabbitmq/definitions.json");
    let definitions: serde_json::Value =
        serde_json::from_str(&text).expect("ops/rabbitmq/definitions.json is valid JSON");
    let topology = Topology::new("splatfleet", 5);
    let escape = |name: String| name.replace('.', "\\.");
    let work = format!(
        "^{}\\.({}|{})$",
        escape(topology.prefix.clone()),
        QueueKind::Tasks.suffix(),
        QueueKind::Results.suffix()
    );
    let dead = format!("^{}$", escape(topology.dead_queue()));
    let policies = definitions["policies"].as_array().expect("policies");
    let mut seen = BTreeSet::new();
    for policy in policies {
        let pattern = policy["pattern"].as_str().expect("pattern");
        let keys: Vec<&str> = policy["definition"]
            .as_object()
            .expect("definition")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(policy["vhost"], "/");
        assert_eq!(policy["apply-to"], "queues");
        if pattern == work {
            for key in &keys {
                assert!(
                    !DECLARED_BY_THE_CODE.contains(key),
                    "policy {} sets {key}, which the work queues declare as an argument",
                    policy["name"]
                );
            }
        } else {
            assert_eq!(
                pattern, dead,
                "policy {} matches no fleet queue",
                policy["name"]
            );
            assert!(
                !keys.contains(&"dead-letter-exchange"),
                "dead letters must not be dead-lettered again"
            );
        }
        seen.insert(pattern.to_owned());
    }
    assert!(
        seen.contains(&work) && seen.contains(&dead),
        "policies for the work queues ({work}) and the dead-letter queue ({dead}): {seen:?}"
    );
}
