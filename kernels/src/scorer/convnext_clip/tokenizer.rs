//! open_clip's `SimpleTokenizer` as `get_tokenizer("convnext_large_d")` builds it (open_clip
//! 2.29.0 `tokenizer.py`, `factory.py:get_tokenizer`): clean = `"lower"` ([`super::clean`]),
//! the pre-split pattern, byte-level BPE over the merges of `bpe_simple_vocab_16e6.txt.gz`,
//! `[SOT] + tokens + [EOT]`, truncated to the context (the last kept token forced to EOT),
//! zero-padded.
//!
//! Facts (upstream): the merges are lines `1 .. 49152 − 256 − 2 + 1` of the vocabulary file;
//! the vocabulary is the 256 byte characters of `bytes_to_unicode`, the same with `</w>`, one
//! entry per merge, then `<start_of_text>` and `<end_of_text>` (49406 and 49407 with the
//! real file); the pattern is
//! `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! with `re.IGNORECASE` (the `regex` crate's `(?i)` and Unicode classes; alternation is
//! leftmost-first in both). A special-token name in a prompt maps to its id, as upstream's
//! cache does.
//!
//! The BPE is written here (no crate applies CLIP's `</w>`-suffixed merges with its
//! rank-min, left-to-right merge rule); it caches nothing, and stops encoding once the
//! context is full (later words cannot change the kept tokens).

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use regex::Regex;

use super::clean::clean_lower;

/// open_clip's `DEFAULT_CONTEXT_LENGTH` and `convnext_large_d.json` `text_cfg.context_length`.
pub const CONTEXT_LENGTH: usize = 77;
/// Upstream keeps at most this many merges (`merges[1:49152-256-2+1]`).
pub const MAX_MERGES: usize = 49152 - 256 - 2;
/// The vocabulary file as open_clip ships it (gzip); a plain-text copy is also read.
pub const VOCAB_FILE: &str = "bpe_simple_vocab_16e6.txt.gz";
/// The real vocabulary's start and end tokens.
pub const SOT_TOKEN: u32 = 49406;
pub const EOT_TOKEN: u32 = 49407;
/// A vocabulary file larger than this is refused before it is decompressed further.
const MAX_VOCAB_BYTES: u64 = 64 << 20;

/// Why the tokenizer could not be built or could not tokenize a prompt.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("CLIP vocabulary {path}: cannot read it: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CLIP vocabulary {path}: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error("context length {0} cannot hold the start and end tokens")]
    ContextTooShort(usize),
    #[error("BPE symbol {symbol:?} of the prompt is not in the vocabulary")]
    UnknownSymbol { symbol: String },
}

/// The tokenizer: the vocabulary, the merge ranks and the context length.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    pattern: Regex,
    sot: u32,
    eot: u32,
    context: usize,
}

/// `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the rest to U+0100 on, in
/// byte order.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in chars.iter_mut().enumerate() {
        let b = b as u32;
        let code = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    chars
}

impl ClipTokenizer {
    /// Reads the vocabulary file (gzip, or plain text) at `path`.
    pub fn from_file(path: &Path, context: usize) -> Result<Self, TokenizerError> {
        let io = |source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let raw = std::fs::read(path).map_err(io)?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .take(MAX_VOCAB_BYTES)
                .read_to_end(&mut out)
                .map_err(io)?;
            out
        } else {
            raw
        };
        let text = String::from_utf8(text).map_err(|e| TokenizerError::Malformed {
            path: path.to_path_buf(),
            problem: format!("not UTF-8: {e}"),
        })?;
        Self::from_merges_text(&text, context).map_err(|problem| TokenizerError::Malformed {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Builds the tokenizer from the text of a vocabulary file (a header line, then one merge
    /// `a b` per line).
    pub fn from_merges_text(text: &str, context: usize) -> Result<Self, String> {
        if context < 2 {
            return Err(TokenizerError::ContextTooShort(context).to_string());
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let end = lines.len().min(MAX_MERGES + 1);
        // Python keeps every line as `tuple(line.split())`: its joined text enters the
        // vocabulary whatever its length, and only two-symbol merges can ever apply.
        let merges: Vec<Vec<&str>> = lines
            .iter()
            .take(end)
            .skip(1)
            .map(|line| line.split_whitespace().collect())
            .collect();
        let byte_chars = byte_chars();
        // The dict's insertion order: the printable bytes first, then the rest, each in byte
        // order; that is, the mapped characters in code point order.
        let mut ordered = byte_chars;
        ordered.sort_unstable();
        let mut vocab: Vec<String> = ordered.iter().map(|c| c.to_string()).collect();
        vocab.extend(ordered.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|parts| parts.concat()));
        vocab.push("<start_of_text>".into());
        vocab.push("<end_of_text>".into());
        let len = u32::try_from(vocab.len()).map_err(|_| "too many merges".to_string())?;
        // Python's dict(zip(vocab, range)) keeps the last id of a repeated entry.
        let encoder: HashMap<String, u32> = vocab.into_iter().zip(0..len).collect();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, parts) in merges.iter().enumerate() {
            if let [a, b] = parts.as_slice() {
                ranks.insert((a.to_string(), b.to_string()), rank);
            }
        }
        let pattern = Regex::new(
            r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .map_err(|e| format!("the pre-split pattern: {e}"))?;
        Ok(Self {
            encoder,
            ranks,
            byte_chars,
            pattern,
            sot: len - 2,
            eot: len - 1,
            context,
        })
    }

    pub fn sot(&self) -> u32 {
        self.sot
    }

    pub fn eot(&self) -> u32 {
        self.eot
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Entries of the vocabulary (the text model's embedding must have at least this many).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// `SimpleTokenizer.encode`: the BPE ids of the cleaned text, at most `limit` of them.
    pub fn encode(&self, text: &str, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        let cleaned = clean_lower(text);
        let mut ids = Vec::new();
        for word in self.pattern.find_iter(&cleaned) {
            if ids.len() >= limit {
                break;
            }
            let word = word.as_str();
            if word == "<start_of_text>" || word == "<end_of_text>" {
                ids.push(if word == "<start_of_text>" {
                    self.sot
                } else {
                    self.eot
                });
                continue;
            }
            let mapped: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
            for symbol in self.bpe(&mapped) {
                match self.encoder.get(&symbol) {
                    Some(&id) => ids.push(id),
                    None => return Err(TokenizerError::UnknownSymbol { symbol }),
                }
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    /// The model's input: `context` ids, `[SOT] + encode(text) + [EOT]`, truncated with the
    /// last kept id forced to EOT, zero-padded.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(self.context);
        ids.push(self.sot);
        ids.extend(self.encode(text, self.context)?);
        ids.push(self.eot);
        if ids.len() > self.context {
            ids.truncate(self.context);
            if let Some(last) = ids.last_mut() {
                *last = self.eot;
            }
        }
        ids.resize(self.context, 0);
        Ok(ids)
    }

    /// `SimpleTokenizer.bpe` on one byte-mapped word: start from its characters (the last with
    /// `</w>`), merge the lowest-ranked adjacent pair everywhere, left to right, until no
    /// pair has a rank.
    fn bpe(&self, word: &str) -> Vec<String> {
        let chars: Vec<char> = word.chars().collect();
        let Some((last, head)) = chars.split_last() else {
            return Vec::new();
        };
        let mut symbols: Vec<String> = head.iter().map(|c| c.to_string()).collect();
        symbols.push(format!("{last}</w>"));
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0].clone(), w[1].clone())))
                .min()
                .copied();
            let Some(best) = best else { break };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self
                        .ranks
                        .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                        == Some(&best)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny vocabulary: a header and a few merges in the real file's format.
    pub(crate) const TINY_MERGES: &str =
        "#version: 0.2\nr e\nc h\nch a\ni r</w>\ncha ir</w>\nre d</w>";

    fn tiny() -> ClipTokenizer {
        ClipTokenizer::from_merges_text(TINY_MERGES, 16).expect("tiny vocabulary")
    }

    fn id(t: &ClipTokenizer, symbol: &str) -> u32 {
        t.encoder[symbol]
    }

    #[test]
    fn byte_chars_match_bytes_to_unicode() {
        let chars = byte_chars();
        assert_eq!(chars[b'a' as usize], 'a');
        assert_eq!(chars[b' ' as usize], '\u{120}');
        assert_eq!(chars[0], '\u{100}');
        assert_eq!(chars[0xad], '\u{143}');
        assert_eq!(chars[0xff], 'ÿ');
    }

    #[test]
    fn tiny_vocabulary_ids_and_merges() {
        let t = tiny();
        // 512 byte symbols, 6 merges, then SOT and EOT.
        assert_eq!((t.sot(), t.eot(), t.vocab_size()), (518, 519, 520));
        let ids = t.tokenize("  A RED\tChair!! ").expect("tokenizes");
        let want = [
            t.sot(),
            id(&t, "a</w>"),
            id(&t, "red</w>"),
            id(&t, "chair</w>"),
            id(&t, "!"),
            id(&t, "!</w>"),
            t.eot(),
        ];
        assert_eq!(&ids[..want.len()], &want);
        assert!(ids[want.len()..].iter().all(|&i| i == 0));
        assert_eq!(ids.len(), 16);
    }

    #[test]
    fn empty_prompt_is_sot_eot_and_padding() {
        let t = tiny();
        for prompt in ["", "   ", "\u{feff}\u{0}"] {
            let ids = t.tokenize(prompt).expect("tokenizes");
            assert_eq!(&ids[..2], &[t.sot(), t.eot()], "{prompt:?}");
            assert!(ids[2..].iter().all(|&i| i == 0));
        }
    }

    #[test]
    fn long_prompts_are_truncated_with_eot_last() {
        let t = tiny();
        let long = "red chair ".repeat(1000);
        let ids = t.tokenize(&long).expect("tokenizes");
        assert_eq!(ids.len(), 16);
        assert_eq!(ids[0], t.sot());
        assert_eq!(ids[15], t.eot());
        assert!(ids[1..15].iter().all(|&i| i != 0 && i != t.eot()));
        // One word of 10,000 letters, emoji, accents and controls all give a result.
        for prompt in [
            "a".repeat(10_000),
            "🪑🔥 chaise à café\u{1}\u{7f}".to_string(),
            "&lt;&amp;&#x1F600;".to_string(),
        ] {
            let ids = t.tokenize(&prompt).expect("tokenizes");
            assert_eq!(ids.len(), 16);
        }
    }

    #[test]
    fn special_token_names_map_to_their_ids() {
        let t = tiny();
        let ids = t.tokenize("red<END_OF_TEXT>").expect("tokenizes");
        assert_eq!(&ids[..4], &[t.sot(), id(&t, "red</w>"), t.eot(), t.eot()]);
    }

    #[test]
    fn malformed_vocabularies_are_typed_errors() {
        // Python keeps odd lines as vocabulary entries that never merge.
        let odd = ClipTokenizer::from_merges_text("#v\nonly-one\n", 77).expect("builds");
        assert_eq!(odd.vocab_size(), 512 + 2 + 2);
        assert!(ClipTokenizer::from_merges_text("#v\n", 1).is_err());
        let missing = ClipTokenizer::from_file(Path::new("/nonexistent/vocab.txt.gz"), 77);
        assert!(matches!(missing, Err(TokenizerError::Io { .. })));
    }
}
