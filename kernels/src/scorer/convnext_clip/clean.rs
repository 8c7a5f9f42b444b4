//! The text cleaning open_clip's `SimpleTokenizer` (clean = `"lower"`, open_clip 2.29.0
//! `tokenizer.py` `_clean_lower`) applies before BPE:
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
//! `ftfy.fix_text(text)`, then `html.unescape` twice, then `strip()`, and `whitespace_clean` is
//! `" ".join(text.split()).strip()`.
//!
//! Written by hand because no crate reproduces these Python functions exactly:
//! - [`fix_text`]: ftfy 6.3's `fix_text` with its default `TextFixerConfig`, segment by
//!   segment (split after each `\n`, at most 1,000,000 characters), each segment fixed until
//!   stable: `unescape_html` ("auto": off from the first segment that holds a `<` on),
//!   `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes`,
//!   `fix_line_breaks`, `remove_terminal_escapes`, `remove_control_chars`, then NFC
//!   (`unicode-normalization`).
//!   **Not covered**: ftfy's mojibake repair (`fix_encoding`: its badness heuristic and the
//!   re-decoding plans, e.g. `"sÃ³"` → `"só"`); text ftfy considers mojibake is left as is
//!   here. ASCII text and text ftfy does not judge "bad" are unaffected by that step, which
//!   covers ordinary prompts. `fix_surrogates` has nothing to do on a Rust `str`.
//! - [`html_unescape`]: Python's `html.unescape` (numeric references with the HTML5
//!   replacement table and the removed code points, named references by exact name or the
//!   longest legacy prefix), over the WHATWG entity table the `htmlize` crate ships (the same
//!   2,231 names as Python's `html.entities.html5`).
//! - Python's `str.split()`/`strip()` whitespace (`str.isspace`: White_Space plus
//!   U+001C..U+001F), which `char::is_whitespace` does not match exactly.
//!
//! Known residual differences: the Unicode version of Python's `str.lower` and of
//! `unicodedata` against Rust's `to_lowercase` and `unicode-normalization`.

use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// ftfy's `max_decode_length` default: the longest segment fixed at once.
const FTFY_MAX_SEGMENT: usize = 1_000_000;

/// Python's `str.isspace`: bidirectional class WS, B or S, or category Zs.
pub fn is_python_space(c: char) -> bool {
    matches!(c, '\u{1c}'..='\u{1f}') || c.is_whitespace()
}

/// `_clean_lower`: the text the BPE pre-split reads.
pub fn clean_lower(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let joined = unescaped
        .split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    joined.to_lowercase()
}

/// ftfy's `fix_text` with its defaults, less mojibake repair (see the module doc).
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        // A segment runs to just after the next '\n', capped at FTFY_MAX_SEGMENT characters.
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((cap, _)) = rest.char_indices().nth(FTFY_MAX_SEGMENT) {
            end = end.min(cap);
        }
        let segment = &rest[..end];
        rest = &rest[end..];
        // "auto": once a segment holds '<', unescaping stays off for the rest of the text.
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let before = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = text.chars().map(c1_to_windows_1252).collect();
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = text
            .chars()
            .map(|c| match c {
                '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
                '\u{201c}'..='\u{201f}' => '"',
                other => other,
            })
            .collect();
        text = text
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        text = terminal_escape_pattern()
            .replace_all(&text, "")
            .into_owned();
        text.retain(|c| !is_removed_control(c));
        text = text.nfc().collect();
        if text == before {
            return text;
        }
    }
}

/// `ANSI_RE`: `\033\[((?:\d|;)*)([a-zA-Z])` (Python's `\d` is Unicode Nd, as the regex
/// crate's).
fn terminal_escape_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"\x1b\[[\d;]*[a-zA-Z]").unwrap_or_else(|e| unreachable!("fixed pattern: {e}"))
    })
}

/// ftfy's `HTML_ENTITY_RE`: `&#?[0-9A-Za-z]{1,24};`.
fn ftfy_entity_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"&#?[0-9A-Za-z]{1,24};").unwrap_or_else(|e| unreachable!("fixed pattern: {e}"))
    })
}

/// Python's `html._charref`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`.
fn python_charref_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0c <&#;]{1,32};?)")
            .unwrap_or_else(|e| unreachable!("fixed pattern: {e}"))
    })
}

/// The expansion of `&name` (with or without its `;`) in the WHATWG table.
fn entity(name_with_amp: &str) -> Option<String> {
    htmlize::ENTITIES
        .get(name_with_amp.as_bytes())
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// ftfy's `unescape_html`: entities ending in `;` by exact name; all-caps spellings of
/// lowercase names that are not themselves entities (`&EACUTE;` → `É`); numeric references
/// through `html.unescape` when that consumes the `;`.
fn ftfy_unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    ftfy_entity_pattern()
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let matched = &caps[0];
            if let Some(expansion) = entity(matched) {
                return expansion;
            }
            if matched.starts_with("&#") {
                let unescaped = html_unescape(matched);
                return if unescaped.contains(';') {
                    matched.to_string()
                } else {
                    unescaped
                };
            }
            let lower = matched.to_ascii_lowercase();
            if lower.to_uppercase() == matched && html_unescape(matched) == matched {
                if let Some(expansion) = entity(&lower) {
                    return expansion.to_uppercase();
                }
            }
            matched.to_string()
        })
        .into_owned()
}

/// Python's `html.unescape`.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    python_charref_pattern()
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let body = &caps[1];
            if let Some(number) = body.strip_prefix('#') {
                let number = number.trim_end_matches(';');
                let value = match number.strip_prefix(['x', 'X']) {
                    Some(hex) => parse_saturating(hex, 16),
                    None => parse_saturating(number, 10),
                };
                numeric_reference(value)
            } else {
                if let Some(expansion) = entity(&format!("&{body}")) {
                    return expansion;
                }
                // The longest legacy name that prefixes `body` (Python tries lengths
                // len − 1 down to 2).
                let bounds: Vec<usize> = body.char_indices().map(|(i, _)| i).skip(2).collect();
                for &end in bounds.iter().rev() {
                    if let Some(expansion) = entity(&format!("&{}", &body[..end])) {
                        return expansion + &body[end..];
                    }
                }
                format!("&{body}")
            }
        })
        .into_owned()
}

/// `int(digits, radix)`, saturated above U+10FFFF (every such value gives U+FFFD).
fn parse_saturating(digits: &str, radix: u32) -> u32 {
    digits.chars().fold(0u32, |acc, c| {
        let d = c.to_digit(radix).unwrap_or(0);
        acc.saturating_mul(radix).saturating_add(d).min(0x11_0000)
    })
}

/// Python's `html._replace_charref` for a numeric reference.
fn numeric_reference(value: u32) -> String {
    if value == 0 {
        return "\u{fffd}".into();
    }
    if value == 0x0d {
        return "\r".into();
    }
    if (0x80..=0x9f).contains(&value) {
        return windows_1252_c1(value).to_string();
    }
    if (0xd800..=0xdfff).contains(&value) || value > 0x10_ffff {
        return "\u{fffd}".into();
    }
    let removed = matches!(value, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef)
        || (value & 0xfffe) == 0xfffe;
    if removed {
        return String::new();
    }
    char::from_u32(value).map_or_else(|| "\u{fffd}".into(), |c| c.to_string())
}

/// Windows-1252's reading of bytes 0x80..=0x9F, the five undefined ones kept as the C1
/// control (Python's `html._invalid_charrefs`, ftfy's "sloppy-windows-1252").
fn windows_1252_c1(value: u32) -> char {
    const TABLE: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    TABLE[(value - 0x80) as usize]
}

/// ftfy's `fix_c1_controls`, one character.
fn c1_to_windows_1252(c: char) -> char {
    let v = u32::from(c);
    if (0x80..=0x9f).contains(&v) {
        windows_1252_c1(v)
    } else {
        c
    }
}

/// ftfy's `LIGATURES` table.
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let replacement = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "\u{2bc}n",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            other => {
                out.push(other);
                continue;
            }
        };
        out.push_str(replacement);
    }
    out
}

/// ftfy's `WIDTH_MAP`: U+3000 → space; U+FF01..U+FFEF → their NFKC form where it differs.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            other => out.push(other),
        }
    }
    out
}

/// ftfy's `CONTROL_CHARS`: removed outright.
fn is_removed_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_html_unescape_edge_cases() {
        assert_eq!(html_unescape("&amp;lt;"), "&lt;");
        assert_eq!(html_unescape("&amp"), "&");
        assert_eq!(html_unescape("&ampx"), "&x");
        assert_eq!(html_unescape("&notit;"), "¬it;");
        assert_eq!(html_unescape("&#65;&#x42;&#X43"), "ABC");
        assert_eq!(
            html_unescape("&#0;&#x80;&#1;&#xD800;&#99999999;"),
            "\u{fffd}€\u{fffd}\u{fffd}"
        );
        assert_eq!(html_unescape("&nosuch;"), "&nosuch;");
        assert_eq!(html_unescape("a & b"), "a & b");
    }

    #[test]
    fn ftfy_fixes_the_documented_examples() {
        assert_eq!(
            fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
            "Broken text… it's flubberific!"
        );
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("P&EACUTE;REZ"), "PÉREZ");
        assert_eq!(
            fix_text("&ntilde; &Ntilde; &NTILDE; &nTILDE;"),
            "ñ Ñ Ñ &nTILDE;"
        );
        // A '<' turns entity decoding off (html.unescape still runs afterwards).
        assert_eq!(fix_text("<b>&amp;</b>"), "<b>&amp;</b>");
        assert_eq!(fix_text("e\u{301}\x1b[31mred\x1b[0m\u{feff}"), "\u{e9}red");
        assert_eq!(fix_text("a\r\nb\rc\u{2028}"), "a\nb\nc\n");
    }

    #[test]
    fn clean_lower_collapses_python_whitespace() {
        assert_eq!(
            clean_lower("  A\u{a0}Red \t\n Chair \u{3000} "),
            "a red chair"
        );
        assert_eq!(clean_lower(""), "");
        assert_eq!(clean_lower("&amp;amp;"), "&");
    }
}
