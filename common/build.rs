//! Embeds `sql/migrations/NNNN_name.sql` into the binary so every role carries the schema it
//! was built with, and a deployed binary needs no source tree beside it.

use std::{env, fmt::Write as _, fs, path::PathBuf};

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
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
