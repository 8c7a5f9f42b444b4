//! The validator's text-prompt alignment model, CPU reference: open_clip 2.29.0
//! `convnext_large_d` / `laion2b_s26b_b102k_augreg` as three-gen-subnet's
//! `TextVSImageMetric` uses it (`validation/engine/metrics/alignment_scorer.py:17-101`,
//! `validation_engine.py:28,90-102` at 5fc61f1; `VALIDATOR_SCORING.md` §6).
//!
//! - [`clean`], [`tokenizer`]: the prompt's tokens, exactly as open_clip's `SimpleTokenizer`.

pub mod clean;
pub mod tokenizer;

pub use tokenizer::{ClipTokenizer, TokenizerError};
