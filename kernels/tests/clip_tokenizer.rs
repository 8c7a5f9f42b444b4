//! The CLIP tokenizer against open_clip's own ids (`tests/golden/clip_prompts.json`, filled by
//! `kernels/bench/clip_reference.py ids` from open_clip 2.29.0's tokenizer). The id layout is
//! checked on every run with a synthetic vocabulary of the real size; the committed ids are
//! checked when `SPLATFLEET_CLIP_VOCAB` points at the real `bpe_simple_vocab_16e6.txt.gz`
//! (the file is not committed: 1.3 MB).

use std::path::PathBuf;

use serde_json::Value;
use splatfleet_kernels::scorer::convnext_clip::tokenizer::{
    ClipTokenizer, CONTEXT_LENGTH, EOT_TOKEN, MAX_MERGES, SOT_TOKEN,
};

fn prompts() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip_prompts.json");
    let text = std::fs::read_to_string(&path).expect("the prompt list is committed");
    let list: Value = serde_json::from_str(&text).expect("the prompt list is JSON");
    list.as_array().expect("a JSON array").clone()
}

/// A vocabulary file of the real size whose merges never apply to text: the id layout
/// (512 byte symbols, 48,894 merges, SOT, EOT) without the real file.
fn synthetic_vocabulary() -> String {
    let mut text = String::from("#version: 0.2\n");
    for n in 0..MAX_MERGES {
        text.push_str(&format!("\u{100}{n} \u{101}{n}\n"));
    }
    text
}

#[test]
fn empty_and_blank_prompts_are_sot_eot_and_padding_with_the_real_layout() {
    let tokenizer =
        ClipTokenizer::from_merges_text(&synthetic_vocabulary(), CONTEXT_LENGTH).expect("builds");
    assert_eq!((tokenizer.sot(), tokenizer.eot()), (SOT_TOKEN, EOT_TOKEN));
    assert_eq!(tokenizer.vocab_size(), 49408);
    let mut want = vec![0u32; CONTEXT_LENGTH];
    want[0] = SOT_TOKEN;
    want[1] = EOT_TOKEN;
    for prompt in ["", " \t\n ", "\u{feff}\u{0}\u{7}"] {
        assert_eq!(
            tokenizer.tokenize(prompt).expect("tokenizes"),
            want,
            "{prompt:?}"
        );
    }
    // The committed list agrees on the trivially known entries.
    for entry in prompts() {
        if entry["prompt"] == "" {
            let ids: Vec<u64> = entry["ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                assert_eq!(ids, want.iter().map(|&i| u64::from(i)).collect::<Vec<_>>());
            }
        }
    }
}

#[test]
fn every_prompt_tokenizes_to_the_context_with_eot() {
    let tokenizer =
        ClipTokenizer::from_merges_text(&synthetic_vocabulary(), CONTEXT_LENGTH).expect("builds");
    for entry in prompts() {
        let prompt = entry["prompt"].as_str().expect("a string prompt");
        let ids = tokenizer.tokenize(prompt).expect("tokenizes");
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!(ids[0], SOT_TOKEN);
        assert!(ids.contains(&EOT_TOKEN));
    }
}

#[test]
fn the_real_vocabulary_gives_open_clips_ids() {
    let Some(path) = std::env::var_os("SPLATFLEET_CLIP_VOCAB") else {
        eprintln!("SPLATFLEET_CLIP_VOCAB not set: skipping the real-vocabulary comparison");
        return;
    };
    let tokenizer =
        ClipTokenizer::from_file(&PathBuf::from(path), CONTEXT_LENGTH).expect("the vocabulary");
    assert_eq!(tokenizer.vocab_size(), 49408);
    let (mut compared, mut failures) = (0, Vec::new());
    for entry in prompts() {
        let prompt = entry["prompt"].as_str().expect("a string prompt");
        let Some(want) = entry["ids"].as_array() else {
            continue;
        };
        let want: Vec<u32> = want
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .expect("an id")
            })
            .collect();
        let got = tokenizer.tokenize(prompt).expect("tokenizes");
        if entry.get("known_difference").is_some_and(|v| !v.is_null()) {
            eprintln!(
                "known difference ({}): {prompt:?}",
                entry["known_difference"]
            );
            continue;
        }
        compared += 1;
        if got != want {
            failures.push(format!("{prompt:?}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(compared >= 30, "only {compared} prompts have ids");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
