//! The layout the host and the CUDA kernels share, written once: threads per block and items
//! per thread of every kernel whose launch or buffers depend on them, the radix digits, the
//! words of `sort_state`, the segments of the packed summary the host reads back, and the
//! camera record. The kernels receive each number as a `#define` of the prelude
//! ([`cuda_defines`], through `constants::cuda_prelude`), so no `.cu` source repeats one; a
//! test checks that every upper-case name a `.cu` source uses and does not define itself is
//! defined there.

use crate::constants::{SSIM_WINDOW, TILE_SIZE};

/// Bits of one radix digit (a pass sorts on at most this many), and the digits of a pass.
pub const RADIX_DIGIT_BITS: u32 = 8;
pub const RADIX_DIGITS: u32 = 1 << RADIX_DIGIT_BITS;
/// Most radix passes one sort takes: 32-bit keys.
pub const MAX_PASSES: u32 = u32::BITS / RADIX_DIGIT_BITS;

/// Threads per block of the single-pass scans (`visible_depth_keys`, `emission_offsets`) and
/// values each thread takes.
pub const SCAN_THREADS: u32 = 256;
pub const SCAN_ITEMS: u32 = 4;
/// Values per scan block: the look-back status has one word per block of them.
pub const SCAN_TILE: usize = (SCAN_THREADS * SCAN_ITEMS) as usize;
/// Threads per block of `radix_pass` and keys each thread ranks.
pub const RADIX_THREADS: u32 = 256;
pub const RADIX_ITEMS: u32 = 8;
/// Keys per radix block (one look-back word per digit and chunk).
pub const RADIX_CHUNK: usize = (RADIX_THREADS * RADIX_ITEMS) as usize;
/// Depth-sorted pairs per `emit_tile_keys` block, one thread each.
pub const EMIT_PAIRS: u32 = 256;
/// Threads per block of `tile_ranges`, and sorted keys each thread reads at once (one
/// 16-byte load).
pub const RANGE_THREADS: u32 = 256;
pub const RANGE_KEYS: u32 = 4;
/// Bits of the count in a radix look-back word (the two bits above are its flags).
pub const LOOKBACK_COUNT_BITS: u32 = 30;
/// Most tile intersections one render may have: the radix look-back words count them.
pub const MAX_INTERSECTIONS: u64 = 1 << LOOKBACK_COUNT_BITS;
/// Words per entry of the crowded-tile list `heavy_tiles` writes: slot, start, end.
pub const HEAVY_WORDS: usize = 3;
/// Threads per `rasterize` block: one per pixel of a tile.
pub const RASTER_THREADS: u32 = TILE_SIZE * TILE_SIZE;

/// SSIM's window radius: an output averages the (2R + 1)² pixels around it.
pub const SSIM_R: u32 = (SSIM_WINDOW / 2) as u32;
/// Output columns and rows per SSIM block (`measure_views`, `ssim_validator`); one thread
/// per (output column, colour channel).
pub const SSIM_COLS: u32 = 64;
pub const SSIM_ROWS: u32 = 128;
pub const SSIM_THREADS: u32 = 3 * SSIM_COLS;
/// Image rows per view-metrics block of `measure_views` (which runs them with SSIM_THREADS).
pub const VIEW_METRICS_ROWS: u32 = 8;

/// Floats per camera in decode.cu's `Cam`: rotation (9), translation (3), fx, fy, cx, cy,
/// near, far.
pub const CAMERA_FLOATS: usize = 18;
/// `model_stats`' statistics: the sum of all coordinates, the sum of the weights w, three
/// sums of w·p, the sum of w·|p|² (w = sigmoid opacity).
pub const MODEL_STATS_WORDS: usize = 6;
/// `model_stats`' bounds: min x, y, z then max x, y, z, as ordered float bits.
pub const MODEL_BOUNDS_WORDS: usize = 6;
/// The view metrics' accumulators per view: count, r, g, b, saturation, Laplacian n, sum,
/// sum of squares.
pub const VIEW_ACC_WORDS: usize = 8;
/// The silhouette's box per view: min x, min y, max x, max y.
pub const VIEW_BBOX_WORDS: usize = 4;

/// Word offsets in the `sort_state` buffer (zeroed before each render): the blocks'
/// tickets, the visible and intersection counts, the crowded-tile count and the digit counts
/// of every pass.
pub mod state {
    use super::{MAX_PASSES, RADIX_DIGITS};

    pub const TICKETS: u32 = 0;
    /// Tickets, from `TICKETS`: the visible-pair scan, the emission scan, then one per pass
    /// of the depth sort and of the tile sort.
    pub const TICKET_VISIBLE: u32 = 0;
    pub const TICKET_EMISSION: u32 = 1;
    pub const TICKET_DEPTH_PASS: u32 = 2;
    pub const TICKET_TILE_PASS: u32 = TICKET_DEPTH_PASS + MAX_PASSES;
    pub const VISIBLE: u32 = 16;
    /// Low, then high word.
    pub const INTERSECTIONS: u32 = 17;
    /// Tiles moved to the front of the rasteriser's queue.
    pub const HEAVY: u32 = 19;
    /// `MAX_PASSES` × `RADIX_DIGITS` counts each.
    pub const DEPTH_DIGITS: u32 = 32;
    pub const TILE_DIGITS: u32 = DEPTH_DIGITS + MAX_PASSES * RADIX_DIGITS;
    /// Words in all.
    pub const WORDS: usize = (TILE_DIGITS + MAX_PASSES * RADIX_DIGITS) as usize;

    const _: () = assert!(TICKETS + TICKET_TILE_PASS + MAX_PASSES <= VISIBLE);
    const _: () = assert!(HEAVY < DEPTH_DIGITS && INTERSECTIONS + 2 <= HEAVY);
}

/// The one array a render reads back, as `pack_metrics` (metrics.cu) packs it:
/// `PER_VIEW` entries per view (the accumulators of every view, then their boxes, then one
/// SSIM sum per view), then `EXTRA` entries at the offsets below.
pub mod summary {
    use super::{MODEL_BOUNDS_WORDS, MODEL_STATS_WORDS, VIEW_ACC_WORDS, VIEW_BBOX_WORDS};

    /// Per view: the accumulators, the box and one SSIM sum (of the pair starting there).
    pub const PER_VIEW: usize = VIEW_ACC_WORDS + VIEW_BBOX_WORDS + 1;
    /// After `views × PER_VIEW`: the floater count, the model statistics, the bounds, then
    /// the `COUNTS` words of `sort_state` from `state::VISIBLE` on (the visible pairs and the
    /// intersections' low and high words).
    pub const FLOATERS: usize = 0;
    pub const STATS: usize = FLOATERS + 1;
    pub const BOUNDS: usize = STATS + MODEL_STATS_WORDS;
    pub const COUNTS: usize = BOUNDS + MODEL_BOUNDS_WORDS;
    pub const COUNT_WORDS: usize = 3;
    /// Entries after the per-view ones.
    pub const EXTRA: usize = COUNTS + COUNT_WORDS;

    /// Entries of the whole summary for `views` views.
    pub const fn len(views: usize) -> usize {
        views * PER_VIEW + EXTRA
    }
}

// The kernels give one thread to each digit (radix_pass, flush_digits) and scan 256-thread
// blocks in eight warps (block_exclusive_scan): sort.cu asserts the same.
const _: () = assert!(
    SCAN_THREADS == RADIX_DIGITS && RADIX_THREADS == RADIX_DIGITS && EMIT_PAIRS == RADIX_DIGITS
);
const _: () = assert!(state::INTERSECTIONS == state::VISIBLE + 1);

/// Every number above that the kernels use, as C `#define`s (plain decimal integers, as the
/// literals they replace were).
pub fn cuda_defines() -> String {
    let defines: [(&str, u64); 39] = [
        ("RADIX_DIGIT_BITS", RADIX_DIGIT_BITS.into()),
        ("RADIX_DIGITS", RADIX_DIGITS.into()),
        ("MAX_PASSES", MAX_PASSES.into()),
        ("SCAN_THREADS", SCAN_THREADS.into()),
        ("SCAN_ITEMS", SCAN_ITEMS.into()),
        ("SCAN_TILE", SCAN_TILE as u64),
        ("RADIX_THREADS", RADIX_THREADS.into()),
        ("RADIX_ITEMS", RADIX_ITEMS.into()),
        ("RADIX_CHUNK", RADIX_CHUNK as u64),
        ("EMIT_PAIRS", EMIT_PAIRS.into()),
        ("RANGE_KEYS", RANGE_KEYS.into()),
        ("LOOKBACK_COUNT_BITS", LOOKBACK_COUNT_BITS.into()),
        ("HEAVY_WORDS", HEAVY_WORDS as u64),
        ("RASTER_THREADS", RASTER_THREADS.into()),
        ("SSIM_R", SSIM_R.into()),
        ("SSIM_COLS", SSIM_COLS.into()),
        ("SSIM_ROWS", SSIM_ROWS.into()),
        ("SSIM_THREADS", SSIM_THREADS.into()),
        ("VIEW_METRICS_ROWS", VIEW_METRICS_ROWS.into()),
        ("CAMERA_FLOATS", CAMERA_FLOATS as u64),
        ("MODEL_STATS_WORDS", MODEL_STATS_WORDS as u64),
        ("MODEL_BOUNDS_WORDS", MODEL_BOUNDS_WORDS as u64),
        ("VIEW_ACC_WORDS", VIEW_ACC_WORDS as u64),
        ("VIEW_BBOX_WORDS", VIEW_BBOX_WORDS as u64),
        ("STATE_TICKETS", state::TICKETS.into()),
        ("TICKET_VISIBLE", state::TICKET_VISIBLE.into()),
        ("TICKET_EMISSION", state::TICKET_EMISSION.into()),
        ("TICKET_DEPTH_PASS", state::TICKET_DEPTH_PASS.into()),
        ("TICKET_TILE_PASS", state::TICKET_TILE_PASS.into()),
        ("STATE_VISIBLE", state::VISIBLE.into()),
        ("STATE_INTERSECTIONS", state::INTERSECTIONS.into()),
        ("STATE_HEAVY", state::HEAVY.into()),
        ("STATE_DEPTH_DIGITS", state::DEPTH_DIGITS.into()),
        ("STATE_TILE_DIGITS", state::TILE_DIGITS.into()),
        ("SUMMARY_PER_VIEW", summary::PER_VIEW as u64),
        ("SUMMARY_FLOATERS", summary::FLOATERS as u64),
        ("SUMMARY_STATS", summary::STATS as u64),
        ("SUMMARY_BOUNDS", summary::BOUNDS as u64),
        ("SUMMARY_EXTRA", summary::EXTRA as u64),
    ];
    defines
        .iter()
        .map(|(name, value)| format!("#define {name} {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::{constants::cuda_prelude, gpu::compile};

    /// The renderer's sources, which take their layout from the prelude.
    const RENDERER: [compile::Source; 4] = [
        compile::DECODE,
        compile::SORT,
        compile::RASTER,
        compile::METRICS,
    ];

    /// Upper-case names a source uses that are its own and no macro: template parameters.
    const NOT_MACROS: [&str; 2] = ["CLAMP_VARIANCE", "MAX"];

    /// The text without `//` and `/* */` comments and without string literals (which hold no
    /// quote marks but their own).
    fn code_only(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some((at, end)) = [("//", "\n"), ("/*", "*/"), ("\"", "\"")]
            .iter()
            .filter_map(|&(open, end)| rest.find(open).map(|at| (at, (open, end))))
            .min_by_key(|&(at, _)| at)
        {
            let (open, end) = end;
            out.push_str(&rest[..at]);
            out.push(' ');
            let inner = &rest[at + open.len()..];
            rest = inner.find(end).map_or("", |e| &inner[e + end.len()..]);
        }
        out.push_str(rest);
        out
    }

    /// Every upper-case identifier (two characters or more) in the code.
    fn upper_case_names(code: &str) -> BTreeSet<String> {
        code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.len() >= 2 && w.starts_with(|c: char| c.is_ascii_uppercase()))
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned)
            .collect()
    }

    /// The names a text `#define`s.
    fn defined_names(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("#define "))
            .filter_map(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_prelude_defines_every_name_the_renderer_s_sources_take_from_rust() {
        let prelude = defined_names(&cuda_prelude());
        for source in RENDERER {
            let code = code_only(source.code);
            let own = defined_names(&code);
            let missing: Vec<_> = upper_case_names(&code)
                .into_iter()
                .filter(|n| !own.contains(n) && !prelude.contains(n))
                .filter(|n| !NOT_MACROS.contains(&n.as_str()))
                .collect();
            assert!(
                missing.is_empty(),
                "{}.cu uses {missing:?}, which neither it nor the prelude defines",
                source.name
            );
        }
    }

    #[test]
    fn no_source_redefines_a_prelude_name() {
        let prelude = defined_names(&cuda_prelude());
        // The scorer's own source takes the prelude too; its names must not collide.
        let scorer = compile::Source {
            name: "scorer",
            code: include_str!("../scorer/gpu/scorer.cu"),
        };
        for source in RENDERER.iter().chain([&scorer]) {
            let twice: Vec<_> = defined_names(&code_only(source.code))
                .intersection(&prelude)
                .cloned()
                .collect();
            assert!(
                twice.is_empty(),
                "{}.cu defines {twice:?} again: the prelude owns them",
                source.name
            );
        }
    }

    #[test]
    fn the_layout_s_defines_are_plain_integers_the_kernels_can_size_arrays_with() {
        let defines = super::cuda_defines();
        for line in defines.lines() {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
        assert!(defines.contains("#define STATE_TILE_DIGITS 1056\n"));
        assert!(defines.contains("#define SUMMARY_EXTRA 16\n"));
        assert!(defines.contains("#define SSIM_THREADS 192\n"));
    }

    #[test]
    fn comments_are_not_code() {
        let code = code_only("A_B // C_D\n/* E_F */ G_H /* I_J\n K_L */ M_N \"O_P\" Q_R");
        assert_eq!(
            upper_case_names(&code).into_iter().collect::<Vec<_>>(),
            ["A_B", "G_H", "M_N", "Q_R"]
        );
    }
}
