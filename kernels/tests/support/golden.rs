//! Golden outputs, for the scorer's golden tests: compare a JSON of numbers with the
//! committed file (every number, by path, within a tolerance), or rewrite the file when
//! `SPLATFLEET_UPDATE_GOLDEN` is set (say why in the commit).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `kernels/tests/golden/<name>`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Every number of `v` with its path (`key[i].field`), in document order.
pub fn numbers(v: &Value) -> Vec<(String, f64)> {
    fn walk(v: &Value, prefix: String, out: &mut Vec<(String, f64)>) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{prefix}[{i}]"), out);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(item, key, out);
                }
            }
            other => out.push((prefix, other.as_f64().unwrap_or(f64::NAN))),
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// Checks `got` against the golden file at `path`: the same numbers, each within
/// `tolerance × (1 + |golden|)`; with `SPLATFLEET_UPDATE_GOLDEN` set, writes `got` there
/// instead and returns false (nothing was checked).
pub fn check(path: &Path, got: &Value, tolerance: f64) -> bool {
    if std::env::var_os("SPLATFLEET_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a golden folder")).expect("golden dir");
        let text = serde_json::to_string_pretty(got).expect("json");
        std::fs::write(path, text + "\n").expect("write the golden file");
        eprintln!("wrote {}", path.display());
        return false;
    }
    let text = std::fs::read_to_string(path).expect("the golden file is committed");
    let want: Value = serde_json::from_str(&text).expect("the golden file is JSON");
    let (got, want) = (numbers(got), numbers(&want));
    assert_eq!(
        got.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        want.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "{}: the golden file lists other numbers",
        path.display()
    );
    let worst = got
        .iter()
        .zip(&want)
        .map(|((key, g), (_, w))| (key, g, w, (g - w).abs() / (1.0 + w.abs())))
        .max_by(|a, b| a.3.total_cmp(&b.3));
    if let Some((key, g, w, diff)) = worst {
        assert!(
            diff <= tolerance,
            "{key} is {g} against the golden {w} (relative {diff:.2e} > {tolerance:e})"
        );
    }
    true
}
