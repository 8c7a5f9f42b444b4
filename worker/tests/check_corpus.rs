//! Bad-input suite, model files: the real `splatfleet-worker check` over the regenerated fuzz
//! corpus (`splatfleet_tests::corpus`: flipped bits, cuts, impossible counts, wrong types,
//! broken SPZ headers, NaN and infinite floats, noise). No panic, exit status 1, and exactly one
//! CSV row per file, each failure sorted into a category with its reason.

use std::{collections::BTreeMap, path::Path, process::Command};

use splatfleet_tests::corpus::mutated_corpus;

/// The categories `check` sorts a failure into (README, "Local validation").
const CATEGORIES: &[&str] = &[
    "unreadable",
    "corrupt",
    "hard_zero:too_few_gaussians",
    "hard_zero:mostly_transparent",
    "hard_zero:all_rotations_identity",
    "hard_zero:point_at_ones",
    "sn17_parser",
    "render_failed",
    "low_score",
];

#[test]
fn every_corpus_file_is_one_row_and_nothing_panics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = tmp.path().join("corpus");
    std::fs::create_dir_all(&models).expect("corpus dir");
    let corpus = mutated_corpus();
    for file in &corpus {
        std::fs::write(models.join(&file.name), &file.bytes).expect("write corpus file");
    }
    // Four 16×16 views: the corpus is about decoding, not scoring.
    let config = tmp.path().join("splatfleet.toml");
    std::fs::write(&config, "[worker]\ngate_views = 4\n").expect("config");
    let csv_path = tmp.path().join("report.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_splatfleet-worker"))
        .arg("check")
        .arg(&models)
        .arg("--csv")
        .arg(&csv_path)
        .args(["--render-size", "16", "--config"])
        .arg(&config)
        .env_remove("SPLATFLEET_CONFIG")
        .output()
        .expect("run splatfleet-worker check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");

    let mut reader = csv::Reader::from_path(&csv_path).expect("open CSV");
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    for record in reader.records() {
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.expect("CSV row").iter().map(str::to_owned))
            .collect();
        let name = Path::new(&row["path"])
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        assert!(rows.insert(name.clone(), row).is_none(), "{name} twice");
    }
    let missing: Vec<&str> = corpus
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| !rows.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "no row for {missing:?}");
    assert_eq!(rows.len(), corpus.len());

    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, row) in &rows {
        if row["passed"] == "true" {
            continue;
        }
        let category = row["category"].as_str();
        assert!(
            CATEGORIES.contains(&category),
            "{name}: category {category:?}"
        );
        assert!(!row["reason"].is_empty(), "{name}: no reason");
        *by_category
            .entry(CATEGORIES[CATEGORIES.iter().position(|c| *c == category).unwrap_or(0)])
            .or_default() += 1;
    }
    // The corpus reaches both the decoders' refusals and the gate behind them.
    assert!(
        by_category.get("corrupt").copied().unwrap_or(0) >= 50,
        "{by_category:?}"
    );
    assert!(
        by_category
            .get("hard_zero:too_few_gaussians")
            .copied()
            .unwrap_or(0)
            >= 5,
        "{by_category:?}"
    );
    // ... and the renderer behind those, which refuses non-finite positions by name.
    assert!(
        by_category.get("render_failed").copied().unwrap_or(0) >= 1,
        "{by_category:?}"
    );
    assert_eq!(rows["ply_big_intact.ply"]["passed"], "true");
    eprintln!("{} files: {by_category:?}", rows.len());
}
