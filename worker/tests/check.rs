//! `splatfleet-worker check` as operators run it: the real binary over a directory of good,
//! sparse, transparent, corrupt and truncated models (PLY and SPZ), with its CSV, previews,
//! exit status and usage errors. CPU renderer at 16×16, so the whole file takes seconds.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use splatfleet_common::splat::{encode_spz, write_ply, Splat};
use splatfleet_tests::sim::models::object;

/// Enough gaussians to clear the validator's 7000 minimum.
const GOOD_GAUSSIANS: usize = 8_000;
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn ply(splat: &Splat) -> Vec<u8> {
    write_ply(splat).expect("a generated splat has a consistent shape")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture directory");
    }
    std::fs::write(path, bytes).expect("write fixture");
}

/// Good models only: two PLYs (one in a subdirectory) and one SPZ.
fn write_good_models(dir: &Path) {
    write(dir, "good_a.ply", &ply(&object(GOOD_GAUSSIANS, 1)));
    write(dir, "nested/good_b.ply", &ply(&object(GOOD_GAUSSIANS, 2)));
    let spz = encode_spz(&object(GOOD_GAUSSIANS, 3)).expect("encode SPZ");
    write(dir, "good_c.spz", &spz);
}

/// Every kind of bad file, plus a file that is not a model at all.
fn write_bad_models(dir: &Path) {
    write(dir, "sparse.ply", &ply(&object(500, 4)));
    let mut transparent = object(GOOD_GAUSSIANS, 5);
    // sigmoid(-12) ≈ 6e-6: every opacity under the validator's 1e-3.
    transparent.opacities.iter_mut().for_each(|o| *o = -12.0);
    write(dir, "transparent.ply", &ply(&transparent));
    // Deterministic noise that is neither a PLY header nor a zstd/gzip frame.
    let noise: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(dir, "corrupt.ply", &noise);
    let whole = ply(&object(GOOD_GAUSSIANS, 6));
    write(dir, "truncated.ply", &whole[..whole.len() / 2]);
    write(dir, "broken.spz", b"not zstd at all");
    write(
        dir,
        "notes.txt",
        b"not a model; check must not pick this up",
    );
    // A model name whose target is gone: listed, then unreadable.
    std::os::unix::fs::symlink(dir.join("vanished.ply"), dir.join("dangling.ply"))
        .expect("symlink");
}

/// A config that changes only the pass threshold, to prove `--config` is read.
fn write_config(dir: &Path, pass_threshold: f64) -> PathBuf {
    let path = dir.join("splatfleet.toml");
    let toml = format!("[worker]\ngate_pass_threshold = {pass_threshold}\n");
    std::fs::write(&path, toml).expect("write config");
    path
}

fn check(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_splatfleet-worker"))
        .arg("check")
        .args(args)
        // A developer's own config must not change what these tests see.
        .env_remove("SPLATFLEET_CONFIG")
        .output()
        .expect("run splatfleet-worker")
}

fn assert_no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "stderr shows a panic:\n{stderr}"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// CSV rows keyed by the file name relative to `root`.
fn read_csv(path: &Path, root: &Path) -> (Vec<String>, BTreeMap<String, BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_path(path).expect("open CSV");
    let header: Vec<String> = reader
        .headers()
        .expect("CSV header")
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("CSV row");
        assert_eq!(record.len(), header.len(), "every row has every column");
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        let relative = Path::new(&row["path"])
            .strip_prefix(root)
            .expect("paths are under the checked directory")
            .to_string_lossy()
            .into_owned();
        assert!(
            rows.insert(relative.clone(), row).is_none(),
            "{relative} reported twice"
        );
    }
    (header, rows)
}

#[test]
fn mixed_directory_reports_every_file_and_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = tmp.path().join("models");
    write_good_models(&models);
    write_bad_models(&models);
    let config = write_config(tmp.path(), 0.3);
    let csv_path = tmp.path().join("out/report.csv");
    std::fs::create_dir_all(csv_path.parent().expect("parent")).expect("csv dir");
    let previews = tmp.path().join("previews");

    let output = check(&[
        models.as_os_str(),
        "--csv".as_ref(),
        csv_path.as_os_str(),
        "--previews".as_ref(),
        previews.as_os_str(),
        "--render-size".as_ref(),
        "16".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_no_panic(&output);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "bad files fail the run\nstdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );

    let (header, rows) = read_csv(&csv_path, &models);
    assert_eq!(
        &header[..8],
        [
            "path",
            "format",
            "bytes",
            "gaussians",
            "passed",
            "local_score",
            "category",
            "reason"
        ]
    );
    for metric in [
        "mean_coverage",
        "mean_adjacent_ssim",
        "mean_sharpness",
        "floater_fraction",
        "low_opacity_fraction",
    ] {
        assert!(header.iter().any(|h| h == metric), "column {metric}");
    }
    let names: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "broken.spz",
            "corrupt.ply",
            "dangling.ply",
            "good_a.ply",
            "good_c.spz",
            "nested/good_b.ply",
            "sparse.ply",
            "transparent.ply",
            "truncated.ply",
        ],
        "every model exactly once, notes.txt ignored"
    );
    let expected = [
        ("broken.spz", "spz", false, "corrupt"),
        ("corrupt.ply", "ply", false, "corrupt"),
        ("dangling.ply", "unknown", false, "unreadable"),
        ("good_a.ply", "ply", true, ""),
        ("good_c.spz", "spz", true, ""),
        ("nested/good_b.ply", "ply", true, ""),
        ("sparse.ply", "ply", false, "hard_zero:too_few_gaussians"),
        (
            "transparent.ply",
            "ply",
            false,
            "hard_zero:mostly_transparent",
        ),
        ("truncated.ply", "ply", false, "corrupt"),
    ];
    for (name, format, passed, category) in expected {
        let row = &rows[name];
        assert_eq!(row["format"], format, "{name} format");
        assert_eq!(row["passed"], passed.to_string(), "{name} passed: {row:?}");
        assert_eq!(row["category"], category, "{name} category: {row:?}");
        assert_eq!(row["reason"].is_empty(), passed, "{name} reason: {row:?}");
        if category != "unreadable" {
            let bytes: u64 = row["bytes"].parse().expect("bytes is a number");
            assert!(bytes > 0, "{name} bytes");
        }
    }
    assert!(rows["truncated.ply"]["reason"].contains("truncated"));
    assert!(rows["corrupt.ply"]["reason"].contains("not a PLY"));
    assert_eq!(rows["sparse.ply"]["gaussians"], "500");
    assert_eq!(
        rows["sparse.ply"]["local_score"].parse::<f64>().ok(),
        Some(0.0)
    );
    assert_eq!(
        rows["corrupt.ply"]["local_score"], "",
        "never reached the gate"
    );
    for name in ["good_a.ply", "good_c.spz", "nested/good_b.ply"] {
        let row = &rows[name];
        assert_eq!(row["gaussians"], GOOD_GAUSSIANS.to_string());
        for column in [
            "local_score",
            "mean_coverage",
            "mean_adjacent_ssim",
            "floater_fraction",
        ] {
            let value: f64 = row[column]
                .parse()
                .unwrap_or_else(|_| panic!("{name} {column} = {:?} is a number", row[column]));
            assert!((0.0..=1.0).contains(&value), "{name} {column} = {value}");
        }
        let preview = PathBuf::from(&row["preview"]);
        assert!(preview.starts_with(&previews), "{name} preview {preview:?}");
        let png = std::fs::read(&preview).expect("preview written");
        assert_eq!(png[..8], PNG_SIGNATURE, "{name} preview is a PNG");
    }
    // Hard-zero files are never rendered, so they have no preview.
    assert_eq!(rows["sparse.ply"]["preview"], "");

    assert!(
        stdout.contains("checked 9 files: 3 passed, 6 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("corrupt"), "{stdout}");
    assert!(stdout.contains("hard_zero:too_few_gaussians"), "{stdout}");
    assert!(stdout.contains("p50"), "{stdout}");
    assert!(text(&output.stderr).contains("pass threshold 0.3"));
}

#[test]
fn the_configured_threshold_decides_and_low_scores_are_grouped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model.ply");
    std::fs::write(&model, ply(&object(GOOD_GAUSSIANS, 8))).expect("write");
    // Above any score a blob reaches: the file renders fine and fails on its score alone.
    let config = write_config(tmp.path(), 0.999);
    let csv_path = tmp.path().join("report.csv");
    let output = check(&[
        model.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--render-size".as_ref(),
        "16".as_ref(),
        "--csv".as_ref(),
        csv_path.as_os_str(),
    ]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let (_, rows) = read_csv(&csv_path, tmp.path());
    let row = &rows["model.ply"];
    assert_eq!(row["passed"], "false");
    assert_eq!(row["category"], "low_score");
    assert!(
        row["reason"].contains("under the threshold 0.999"),
        "{row:?}"
    );
    let score: f64 = row["local_score"].parse().expect("score is a number");
    assert!(score > 0.0 && score < 0.999, "{score}");
    assert!(text(&output.stdout).contains("low_score"));
}

#[test]
fn directory_of_good_models_exits_0_without_a_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = tmp.path().join("models");
    write_good_models(&models);
    write(&models, "README.txt", b"ignored");
    // No --config: the built-in [worker] defaults (pass threshold 0.5) judge.
    let output = check(&["--render-size".as_ref(), "16".as_ref(), models.as_os_str()]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&output.stdout),
    );
    assert!(text(&output.stdout).contains("checked 3 files: 3 passed, 0 failed"));
    if !Path::new(splatfleet_common::role::DEFAULT_CONFIG_PATH).exists() {
        assert!(stderr.contains("built-in defaults"), "{stderr}");
    }
}

#[test]
fn a_named_file_that_is_not_a_model_is_a_failed_row() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, b"hello").expect("write");
    let output = check(&[notes.as_os_str()]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("neither a PLY"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("does-not-exist");
    let empty = tmp.path().join("empty");
    write(&empty, "notes.txt", b"no models here");
    let good = tmp.path().join("good.ply");
    std::fs::write(&good, ply(&object(GOOD_GAUSSIANS, 7))).expect("write");
    let csv_in_missing_dir = missing.join("sub/out.csv");
    let bad_config = tmp.path().join("bad.toml");
    std::fs::write(&bad_config, "[worker]\ngate_pass_threshold = 7\n").expect("write");

    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (vec![missing.as_os_str()], "no such file"),
        (vec![empty.as_os_str()], "no .ply or .spz files"),
        (vec![], "required"),
        (
            vec![good.as_os_str(), "--render-size".as_ref(), "0".as_ref()],
            "render-size",
        ),
        (
            vec![good.as_os_str(), "--config".as_ref(), missing.as_os_str()],
            "does-not-exist",
        ),
        (
            vec![
                good.as_os_str(),
                "--config".as_ref(),
                bad_config.as_os_str(),
            ],
            "gate_pass_threshold",
        ),
        (
            vec![
                good.as_os_str(),
                "--csv".as_ref(),
                csv_in_missing_dir.as_os_str(),
            ],
            "--csv",
        ),
    ];
    for (args, message) in cases {
        let output = check(&args);
        assert_no_panic(&output);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: {stderr:?} lacks {message:?}"
        );
    }
}

#[test]
fn help_documents_the_exit_status() {
    let output = check(&["--help".as_ref()]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    assert!(help.contains("Exit status"), "{help}");
    assert!(
        help.contains("--csv") && help.contains("--previews") && help.contains("--render-size")
    );
}
