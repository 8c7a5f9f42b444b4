//! Embeds `sql/migrations/NNNN_name.sql` into the binary so every role carries the schema it
//! was built with, and a deployed binary needs no source tree beside it; and captures the git
//! revision it was built from (`SPLATFLEET_GIT_REVISION`, read by `telemetry`).

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// Names the revision when the source is not a git checkout (a tarball, a vendored copy).
const REVISION_VARIABLE: &str = "SPLATFLEET_GIT_REVISION";

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let revision = git_revision(&manifest);
    println!("cargo:rustc-env={REVISION_VARIABLE}={revision}");
    let dir = manifest.join("../sql/migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(u32, String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).expect("sql/migrations must exist") {
        let path = entry.expect("readable sql/migrations entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        let (number, label) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name} must be named NNNN_label.sql"));
        let version: u32 = number
            .parse()
            .unwrap_or_else(|_| panic!("migration {name} must start with a number"));
        println!("cargo:rerun-if-changed={}", path.display());
        files.push((version, label.to_owned(), path));
    }
    files.sort();
    for pair in files.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "two migrations share version {}",
            pair[0].0
        );
    }
    let mut out = String::from("&[\n");
    for (version, label, path) in &files {
        writeln!(
            out,
            "    Migration {{ version: {version}, name: {label:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        )
        .expect("write to string");
    }
    out.push(']');
    let target =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(target, out).expect("write migrations.rs");
}

/// `git rev-parse --short HEAD`, `$SPLATFLEET_GIT_REVISION` when set, or `unknown`: a build
/// outside git (or without git installed) must still succeed.
///
/// Release builds (what is deployed) run this again whenever HEAD moves. Other profiles do
/// not: every commit would rebuild `common` and every crate above it (the kernels included),
/// so a debug binary reports the revision of the last time this script ran.
fn git_revision(manifest: &Path) -> String {
    println!("cargo:rerun-if-env-changed={REVISION_VARIABLE}");
    if let Some(revision) = env::var(REVISION_VARIABLE).ok().filter(|r| !r.is_empty()) {
        return revision;
    }
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(manifest)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let text = text.trim();
        (output.status.success() && !text.is_empty()).then(|| text.to_owned())
    };
    let Some(revision) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    if env::var("PROFILE").as_deref() == Ok("release") {
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        for name in ["HEAD", "packed-refs"]
            .into_iter()
            .map(str::to_owned)
            .chain(head_ref)
        {
            // A path that does not exist would rerun this script on every build.
            if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
                let path = manifest.join(path);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    revision
}
