//! `splatfleet-worker score` as operators run it: the real binary over good, hard-zero and
//! corrupt files with tiny random-weight models, as text and as JSON, with its exit status
//! and usage errors. CPU reference at `--render-size 32` (518 is the validator's and the
//! default, minutes per file in a debug build), so the file takes seconds.

use std::{
    path::Path,
    process::{Command, Output},
};

use splatfleet_common::splat::{encode_spz, write_ply, Splat};
use splatfleet_tests::sim::{models::object, scorer_models::write_tiny_models};

fn ply(splat: &Splat) -> Vec<u8> {
    write_ply(splat).expect("a generated splat has a consistent shape")
}

fn score(args: &[&str], models: &Path, extra: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_splatfleet-worker"))
        .arg("score")
        .arg("--models")
        .arg(models)
        .args(["--cpu", "--render-size", "32"])
        .args(args)
        .args(extra)
        .env_remove("SPLATFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run splatfleet-worker score")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn score_prints_the_services_numbers_per_file_and_an_error_line_for_a_bad_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    write_tiny_models(&models, 11).expect("tiny models");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::write(files.join("good.ply"), ply(&object(8_000, 1))).expect("good");
    let spz = encode_spz(&object(8_000, 2)).expect("encode SPZ");
    std::fs::write(files.join("good.spz"), spz).expect("good spz");
    std::fs::write(files.join("sparse.ply"), ply(&object(500, 3))).expect("sparse");
    std::fs::write(files.join("corrupt.ply"), b"ply\nformat nonsense\n").expect("corrupt");

    // Text: one line per file, sorted; the corrupt one names its error; exit 1.
    let out = score(&["--prompt", "a red chair"], &models, &[&files]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("text prompt alignment"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("corrupt.ply: error: "), "{stdout}");
    for (line, name) in [(lines[1], "good.ply"), (lines[2], "good.spz")] {
        assert!(line.contains(name), "{line}");
        for field in ["score ", "iqa ", "alignment_score ", "ssim ", "lpips "] {
            assert!(line.contains(field), "{field}: {line}");
        }
    }
    assert!(lines[3].contains("sparse.ply: score 0.0000"), "{stdout}");
    assert!(
        lines[3].contains("hard zero: hard_zero:too_few_gaussians"),
        "{stdout}"
    );

    // JSON: one object per file with the service's names; no prompt: alignment not measured,
    // taken as 1.0 and said so.
    let good = files.join("good.ply");
    let corrupt = files.join("corrupt.ply");
    let out = score(&["--json"], &models, &[&good, &corrupt]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 2, "{stdout}");
    let (bad, scored) = (&objects[0], &objects[1]);
    assert!(bad["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("corrupt.ply")));
    assert!(
        bad["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{bad}"
    );
    assert!(scored["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("good.ply")));
    assert_eq!(scored["alignment_score"], 1.0);
    assert_eq!(scored["alignment_assumed"], true);
    assert_eq!(scored["gaussians"], 8_000);
    assert_eq!(scored["scorer"], "cpu");
    let iqa = scored["iqa"].as_f64().expect("iqa");
    let ssim = scored["ssim"].as_f64().expect("ssim");
    let lpips = scored["lpips"].as_f64().expect("lpips");
    let total = scored["score"].as_f64().expect("score");
    assert!(
        (0.0..=1.0).contains(&iqa) && (0.0..=1.0).contains(&ssim),
        "{scored}"
    );
    // The service's formula, alignment 1.0 (over the 0.3 cut-off).
    let sigmoid = |x: f64, k: f64, x0: f64| 1.0 / (1.0 + (-k * (x - x0)).exp());
    let expected = 0.75 * iqa
        + 0.2 * 1.0
        + 0.025 * sigmoid(ssim, 35.0, 0.83)
        + 0.025 * lpips * sigmoid(lpips, 30.0, 0.7);
    assert!((total - expected).abs() < 1e-9, "{total} vs {expected}");

    // Every file scored: exit 0.
    let out = score(&["--json"], &models, &[&good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again: serde_json::Value =
        serde_json::from_str(text(&out.stdout).trim()).expect("one object");
    assert_eq!(again["iqa"], scored["iqa"], "deterministic");
}

#[test]
fn score_usage_errors_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("good.ply");
    std::fs::write(&file, ply(&object(8_000, 1))).expect("good");
    let empty = dir.path().join("no-models");
    std::fs::create_dir_all(&empty).expect("dir");

    let out = score(&[], &empty, &[&file]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--models"), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(stderr.contains("download it with"), "{stderr}");

    let models = dir.path().join("models");
    write_tiny_models(&models, 11).expect("tiny models");
    let out = score(&[], &models, &[&dir.path().join("nope.ply")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );

    // A prompt image that does not decode is scored as the validator scores it: 0, with
    // the reason, not a usage error.
    let corrupt = dir.path().join("prompt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n not really").expect("corrupt prompt");
    let out = score(&["--json", "--image"], &models, &[&corrupt, &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scored: serde_json::Value =
        serde_json::from_str(text(&out.stdout).trim()).expect("one object");
    assert_eq!(scored["score"], 0.0, "{scored}");
    assert_eq!(scored["alignment_score"], 0.0);
    assert_eq!(scored["alignment_assumed"], false);
    assert!(
        scored["alignment_problem"]
            .as_str()
            .is_some_and(|p| p.contains("prompt image")),
        "{scored}"
    );

    let out = score(&["--image", "/nonexistent/prompt.png"], &models, &[&file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--image /nonexistent/prompt.png"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_prints_the_validation_services_numbers_and_the_differences() {
    use splatfleet_tests::sim::validation::{SimValidation, ValidationSettings, TEXT_PATH};

    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    write_tiny_models(&models, 11).expect("tiny models");
    let file = dir.path().join("good.ply");
    std::fs::write(&file, ply(&object(8_000, 1))).expect("good");
    let service = SimValidation::start(
        0,
        ValidationSettings {
            fixed_score: Some(0.7),
            ..ValidationSettings::default()
        },
    )
    .await
    .expect("validation service");
    let url = service.url();

    let run = {
        let (models, file, url) = (models.clone(), file.clone(), url.clone());
        move |extra: &'static [&'static str]| {
            let mut args = vec!["--compare", url.as_str()];
            args.extend_from_slice(extra);
            score(&args, &models, &[&file])
        }
    };
    let json = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["--json", "--prompt", "a red chair"])
    })
    .await
    .expect("score");
    assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
    let scored: serde_json::Value =
        serde_json::from_str(text(&json.stdout).trim()).expect("one object");
    let compared = &scored["compared"];
    assert_eq!(compared["service"]["score"], 0.7, "{scored}");
    let ours = scored["score"].as_f64().expect("our score");
    let difference = compared["difference"]["score"]
        .as_f64()
        .expect("difference");
    assert!((difference - (ours - 0.7)).abs() < 1e-12, "{scored}");
    for part in ["iqa", "alignment_score"] {
        let theirs = compared["service"][part]
            .as_f64()
            .expect("the service's part");
        let mine = scored[part].as_f64().expect("our part");
        let diff = compared["difference"][part]
            .as_f64()
            .expect("its difference");
        assert!((diff - (mine - theirs)).abs() < 1e-12, "{part}: {scored}");
    }
    // The service saw the model as SPZ with the prompt, on the text endpoint.
    let received = service.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, TEXT_PATH);
    assert_eq!(received[0].prompt.as_deref(), Some("a red chair"));
    assert_eq!(received[0].compression, Some(2));
    assert_eq!(received[0].gaussians, Some(8_000));

    // As text: a second line with the service's numbers and the differences.
    let out = tokio::task::spawn_blocking(move || run(&["--prompt", "a red chair"]))
        .await
        .expect("score");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("service:") && stdout.contains("score 0.7000 ("),
        "{stdout}"
    );

    // Without a prompt the service cannot score: a usage error naming what to add.
    let (models2, file2) = (models.clone(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        score(&["--compare", "http://127.0.0.1:9"], &models2, &[&file2])
    })
    .await
    .expect("score");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--prompt"),
        "{}",
        text(&out.stderr)
    );

    // A service that does not answer: this file's comparison failed, exit 1, said why.
    drop(service);
    let out = tokio::task::spawn_blocking(move || {
        score(
            &["--compare", "http://127.0.0.1:9", "--prompt", "a red chair"],
            &models,
            &[&file],
        )
    })
    .await
    .expect("score");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("service: error: "),
        "{}",
        text(&out.stdout)
    );
}
