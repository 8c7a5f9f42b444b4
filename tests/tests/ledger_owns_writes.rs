//! The ledger owns the task and submission lifecycle: no Rust file outside
//! `common/src/ledger/` (tests included; `target/` aside) writes to `tasks`, `submissions` or
//! `attempts`. A test needing a state the roles never write seeds it through
//! `ledger::seed` (feature `test-support`).

use std::path::{Path, PathBuf};

/// The lifecycle's tables.
const TABLES: [&str; 3] = ["tasks", "submissions", "attempts"];

/// Where the writes may live, relative to the workspace root.
const OWNER: &str = "common/src/ledger";

/// The words of `text` (letters, digits, `_` and `.`), each with its line (from 1). A
/// string literal's escape (`\n`, `\t`) separates words, as the whitespace it stands for.
fn words(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut word = String::new();
    let mut word_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            if word.is_empty() {
                word_line = line;
            }
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push((std::mem::take(&mut word), word_line));
        }
        if c == '\n' {
            line += 1;
        } else if c == '\\' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            chars.next();
        }
    }
    if !word.is_empty() {
        out.push((word, word_line));
    }
    out
}

/// The table a statement names at `rest` (after `ONLY`, without a `public.` schema), if it
/// is one of [`TABLES`].
fn table(rest: &[(String, usize)]) -> Option<&'static str> {
    let mut rest = rest.iter().map(|(w, _)| w.as_str());
    let mut name = rest.next()?;
    if name.eq_ignore_ascii_case("only") {
        name = rest.next()?;
    }
    let name = name.strip_prefix("public.").unwrap_or(name);
    TABLES.iter().copied().find(|t| *t == name)
}

/// `(line, statement)` of every INSERT, UPDATE or DELETE on a lifecycle table in `text`,
/// however the statement is spread over lines.
fn writes(text: &str) -> Vec<(usize, String)> {
    let words = words(text);
    let mut found = Vec::new();
    for (i, (word, line)) in words.iter().enumerate() {
        let next_is = |k: usize, want: &str| {
            words
                .get(i + k)
                .is_some_and(|(w, _)| w.eq_ignore_ascii_case(want))
        };
        let (verb, skip) = if word.eq_ignore_ascii_case("insert") && next_is(1, "into") {
            ("INSERT INTO", 2)
        } else if word.eq_ignore_ascii_case("delete") && next_is(1, "from") {
            ("DELETE FROM", 2)
        } else if word.eq_ignore_ascii_case("update") {
            ("UPDATE", 1)
        } else {
            continue;
        };
        if let Some(t) = words.get(i + skip..).and_then(table) {
            found.push((*line, format!("{verb} {t}")));
        }
    }
    found
}

/// Every `.rs` file under `dir`, outside `target/`, hidden folders and the ledger.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            let skipped = name == "target"
                || name.starts_with('.')
                || path.strip_prefix(root).is_ok_and(|p| p == Path::new(OWNER));
            if !skipped {
                rust_files(root, &path, out);
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_rust_file_outside_the_ledger_writes_to_tasks_submissions_or_attempts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut files = Vec::new();
    rust_files(root, root, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("puller/src/main.rs")),
        "the scan reached the roles' sources"
    );
    let mut offenders = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        for (line, statement) in writes(&text) {
            offenders.push(format!("{shown}:{line}: {statement}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "writes to the lifecycle tables outside {OWNER}/ (call the ledger, or ledger::seed \
         for a state only tests need):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scan_finds_a_write_however_it_is_spelled() {
    // `T0`, `T1`, `T2` stand for the tables until run time, so that this file does not trip
    // its own scan.
    let sample = concat!(
        "client.execute(\"INSERT INTO\n",
        "        T0 (a) VALUES ($1)\", &[]);\n",
        "let x = \"upDATE T1 SET a = 1\";\n",
        "let y = \"DELETE FROM public.T2\\nWHERE id = 1\";\n",
        "let z = \"UPDATE ONLY T0 SET a = 1\";\n",
        "// neither of these: validator_state, T0_open_idx\n",
        "let w = \"UPDATE validator_state SET a = 1; INSERT INTO T0_open_idx\";\n",
    )
    .replace("T0", TABLES[0])
    .replace("T1", TABLES[1])
    .replace("T2", TABLES[2]);
    assert_eq!(
        writes(&sample),
        vec![
            (1, format!("INSERT INTO {}", TABLES[0])),
            (3, format!("UPDATE {}", TABLES[1])),
            (4, format!("DELETE FROM {}", TABLES[2])),
            (5, format!("UPDATE {}", TABLES[0])),
        ]
    );
}
