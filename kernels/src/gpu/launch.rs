//! One typed launcher per kernel: grid and block sizes, argument order matching the `.cu`
//! signatures, and the small host-side steps between them (zeroing accumulators and
//! look-back words, planning and chaining the radix passes).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};

use super::{
    buffers::Buffers,
    compile::{ptx_for, DECODE, METRICS, RASTER, SORT},
    layout::{
        state, summary, EMIT_PAIRS, MODEL_BOUNDS_WORDS, RADIX_CHUNK, RADIX_DIGITS, RADIX_THREADS,
        RANGE_KEYS, RANGE_THREADS, RASTER_THREADS, SCAN_THREADS, SCAN_TILE, SSIM_COLS, SSIM_R,
        SSIM_ROWS, SSIM_THREADS, VIEW_ACC_WORDS, VIEW_METRICS_ROWS,
    },
    GpuError,
};
use crate::rig::Rig;

/// Most crowded tiles `heavy_tiles` moves to the front of the rasteriser's queue; that many
/// blocks lead every raster launch (those past the count leave at once).
pub const HEAVY_CAP: usize = 1024;

/// How a sort's key bits split into LSD radix passes of at most `RADIX_DIGIT_BITS` bits, as even as possible
/// (27 bits: 7, 7, 7, 6): fewer digits per pass rank faster and write longer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    pub passes: u32,
    /// Byte p: the shift of pass p.
    pub shifts: u32,
    /// Byte p: the digit width of pass p.
    pub widths: u32,
}

impl PassPlan {
    pub fn for_bits(bits: u32) -> Self {
        let bits = bits.clamp(1, 32);
        let passes = bits.div_ceil(super::layout::RADIX_DIGIT_BITS);
        let (base, extra) = (bits / passes, bits % passes);
        let (mut shifts, mut widths, mut shift) = (0, 0, 0);
        for p in 0..passes {
            let width = base + u32::from(p < extra);
            shifts |= shift << (8 * p);
            widths |= width << (8 * p);
            shift += width;
        }
        Self {
            passes,
            shifts,
            widths,
        }
    }

    /// (shift, width) of pass `p`.
    pub fn pass(&self, p: u32) -> (u32, u32) {
        (
            (self.shifts >> (8 * p)) & 0xff,
            (self.widths >> (8 * p)) & 0xff,
        )
    }

    /// Look-back words per radix block, over all passes.
    pub fn digits(&self) -> usize {
        (0..self.passes).map(|p| 1usize << self.pass(p).1).sum()
    }
}

/// Float bits mapped so unsigned order is float order (`float_to_ordered` in the .cu files).
pub fn float_to_ordered(f: f32) -> u32 {
    let u = f.to_bits();
    if u & 0x8000_0000 != 0 {
        !u
    } else {
        u | 0x8000_0000
    }
}

/// The inverse of [`float_to_ordered`] (`ordered_to_float` in the .cu files).
pub fn ordered_to_float(u: u32) -> f32 {
    f32::from_bits(if u & 0x8000_0000 != 0 {
        u & 0x7fff_ffff
    } else {
        !u
    })
}

/// The visible depths' range as ordered float bits: every visible depth lies in the rig's
/// [near, far], so its ordered bits minus `near_ordered` fit in `bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthSpan {
    pub near_ordered: u32,
    pub bits: u32,
}

impl DepthSpan {
    /// Full 32-bit keys when a plane is NaN or the planes are out of order (the cull then
    /// decides alone what is visible).
    pub fn of(rig: &Rig) -> Self {
        // f32::min and max skip NaN, so a NaN plane is looked for on its own.
        let any_nan = rig
            .cameras
            .iter()
            .any(|c| c.near.is_nan() || c.far.is_nan());
        let near = rig.cameras.iter().map(|c| c.near).reduce(f32::min);
        let far = rig.cameras.iter().map(|c| c.far).reduce(f32::max);
        match (near, far) {
            (Some(near), Some(far)) if near <= far && !any_nan => {
                let span = float_to_ordered(far) - float_to_ordered(near);
                Self {
                    near_ordered: float_to_ordered(near),
                    bits: (u32::BITS - span.leading_zeros()).max(1),
                }
            }
            _ => Self {
                near_ordered: 0,
                bits: 32,
            },
        }
    }
}

/// Which of the two sorts carries the view (sort.cu's header says why one is enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortPlan {
    pub span: DepthSpan,
    /// Where the view sits in the depth key; 32 = not in it (the tile key has it instead).
    pub view_shift: u32,
    pub depth: PassPlan,
    pub tile: PassPlan,
}

impl SortPlan {
    /// The view goes with the depth when both fit 32 bits, so the longer tile sort works on
    /// the tile bits alone (the validator's rig: 31-bit depth keys, 11-bit tile keys).
    pub fn new(span: DepthSpan, view_bits: u32, tile_bits: u32) -> Self {
        if span.bits + view_bits <= 32 {
            Self {
                span,
                view_shift: span.bits,
                depth: PassPlan::for_bits(span.bits + view_bits),
                tile: PassPlan::for_bits(tile_bits),
            }
        } else {
            Self {
                span,
                view_shift: 32,
                depth: PassPlan::for_bits(span.bits),
                tile: PassPlan::for_bits(tile_bits + view_bits),
            }
        }
    }
}

/// Which keys a radix sort moves: the depth keys carry `depth_values`, the tile keys `values`.
#[derive(Debug, Clone, Copy)]
enum Keys {
    Depth,
    Tile,
}

#[derive(Debug)]
pub struct Kernels {
    model_stats: CudaFunction,
    decode_project: CudaFunction,
    visible_depth_keys: CudaFunction,
    emission_offsets: CudaFunction,
    emit_tile_keys: CudaFunction,
    radix_pass: CudaFunction,
    tile_ranges: CudaFunction,
    heavy_tiles: CudaFunction,
    rasterize: CudaFunction,
    measure_views: CudaFunction,
    reset_metrics: CudaFunction,
    pack_metrics: CudaFunction,
    /// Radix blocks that fit on the device at once: the passes' persistent grid.
    radix_resident: usize,
    /// Likewise for `tile_ranges` (`RANGE_THREADS` a block).
    ranges_resident: usize,
}

fn blocks(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block).max(1) as u32
}

fn linear(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(n, threads as usize), 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>, major: i32, minor: i32) -> Result<Self, GpuError> {
        let decode = ctx.load_module(ptx_for(&DECODE, major, minor)?)?;
        let sort = ctx.load_module(ptx_for(&SORT, major, minor)?)?;
        let raster = ctx.load_module(ptx_for(&RASTER, major, minor)?)?;
        let metrics = ctx.load_module(ptx_for(&METRICS, major, minor)?)?;
        let radix_pass = sort.load_function("radix_pass")?;
        let tile_ranges = sort.load_function("tile_ranges")?;
        let sms = ctx.attribute(
            cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        )?;
        let sms = usize::try_from(sms).unwrap_or(1).max(1);
        let resident = |f: &CudaFunction, threads: u32| -> Result<usize, DriverError> {
            Ok(sms
                * f.occupancy_max_active_blocks_per_multiprocessor(threads, 0, None)?
                    .max(1) as usize)
        };
        Ok(Self {
            radix_resident: resident(&radix_pass, RADIX_THREADS)?,
            ranges_resident: resident(&tile_ranges, RANGE_THREADS)?,
            model_stats: decode.load_function("model_stats")?,
            decode_project: decode.load_function("decode_project")?,
            visible_depth_keys: sort.load_function("visible_depth_keys")?,
            emission_offsets: sort.load_function("emission_offsets")?,
            emit_tile_keys: sort.load_function("emit_tile_keys")?,
            radix_pass,
            tile_ranges,
            heavy_tiles: sort.load_function("heavy_tiles")?,
            rasterize: raster.load_function("rasterize")?,
            measure_views: metrics.load_function("measure_views")?,
            reset_metrics: metrics.load_function("reset_metrics")?,
            pack_metrics: metrics.load_function("pack_metrics")?,
        })
    }

    pub fn model_stats(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
    ) -> Result<(), DriverError> {
        stream.memset_zeros(&mut b.stats)?;
        stream.memset_zeros(&mut b.floaters)?;
        // Minima start at the largest ordered value, maxima at the least.
        let half = MODEL_BOUNDS_WORDS / 2;
        let start: [u32; MODEL_BOUNDS_WORDS] =
            std::array::from_fn(|a| if a < half { u32::MAX } else { 0 });
        stream.memcpy_htod(&start, &mut b.bounds)?;
        let n32 = n as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks(n, 256).min(1024), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.model_stats);
        launch
            .arg(&b.positions)
            .arg(&b.opacity_logits)
            .arg(&n32)
            .arg(&mut b.stats)
            .arg(&mut b.bounds);
        // SAFETY: argument order and types match `model_stats` in decode.cu; buffers hold n entries.
        unsafe { launch.launch(cfg) }.map(drop)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn decode_project(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        rig: &Rig,
        tiles_x: u32,
        tiles_y: u32,
    ) -> Result<(), DriverError> {
        let (n32, views, w, h) = (n as u32, rig.views() as u32, rig.width, rig.height);
        let mut launch = stream.launch_builder(&self.decode_project);
        launch
            .arg(&b.positions)
            .arg(&b.opacity_logits)
            .arg(&b.log_scales)
            .arg(&b.rotations)
            .arg(&b.sh_dc)
            .arg(&n32)
            .arg(&b.stats)
            .arg(&b.bounds)
            .arg(&b.cameras)
            .arg(&views)
            .arg(&w)
            .arg(&h)
            .arg(&tiles_x)
            .arg(&tiles_y)
            .arg(&mut b.colors)
            .arg(&mut b.xy)
            .arg(&mut b.conic_opacity)
            .arg(&mut b.depths)
            .arg(&mut b.rects)
            .arg(&mut b.tile_counts)
            .arg(&mut b.floaters);
        // SAFETY: matches `decode_project` in decode.cu; per-view buffers hold views × n entries.
        unsafe { launch.launch(linear(n, 256)) }.map(drop)
    }

    /// Compacts the visible pairs into depth keys, sorts them, and scans their tile counts in
    /// that order into emission offsets, all on the device: the visible count and the
    /// intersections land in `sort_state` (`state::VISIBLE`, `state::INTERSECTIONS`).
    pub fn depth_order(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        vn: usize,
        plan: &SortPlan,
    ) -> Result<(), DriverError> {
        let scan_blocks = vn.div_ceil(SCAN_TILE).max(1);
        let radix_blocks = vn.div_ceil(RADIX_CHUNK).max(1);
        // One block per SCAN_TILE values: the look-back status has a word per block.
        let scan_cfg = LaunchConfig {
            grid_dim: (scan_blocks as u32, 1, 1),
            block_dim: (SCAN_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        stream.memset_zeros(&mut b.sort_state)?;
        stream.memset_zeros(&mut b.scan_status.slice_mut(..2 * scan_blocks))?;
        stream.memset_zeros(&mut b.lookback.slice_mut(..plan.depth.digits() * radix_blocks))?;
        let (vn32, n32) = (vn as u32, n as u32);
        let mut launch = stream.launch_builder(&self.visible_depth_keys);
        launch
            .arg(&b.tile_counts)
            .arg(&b.depths)
            .arg(&vn32)
            .arg(&n32)
            .arg(&plan.span.near_ordered)
            .arg(&plan.view_shift)
            .arg(&plan.depth.passes)
            .arg(&plan.depth.shifts)
            .arg(&plan.depth.widths)
            .arg(&mut b.keys)
            .arg(&mut b.depth_values)
            .arg(&mut b.scan_status)
            .arg(&mut b.sort_state);
        // SAFETY: matches `visible_depth_keys`; keys and values hold vn entries, the scan
        // status one word per block (ensure_model).
        unsafe { launch.launch(scan_cfg) }?;
        self.radix_sort(
            stream,
            b,
            Keys::Depth,
            &plan.depth,
            vn,
            state::VISIBLE,
            state::DEPTH_DIGITS,
            state::TICKET_DEPTH_PASS,
        )?;
        let mut emission_status = b.scan_status.slice_mut(scan_blocks..2 * scan_blocks);
        let mut launch = stream.launch_builder(&self.emission_offsets);
        launch
            .arg(&b.depth_values)
            .arg(&b.tile_counts)
            .arg(&mut b.emit_offsets)
            .arg(&mut emission_status)
            .arg(&mut b.sort_state);
        // SAFETY: matches `emission_offsets`; offsets hold vn entries, blocks past the
        // visible count return before touching them.
        unsafe { launch.launch(scan_cfg) }.map(drop)
    }

    /// Emits one (view, tile) key per intersection in depth order and sorts them stably; the
    /// visible and intersection counts are read on the device, and nothing is written when
    /// the intersections exceed `capacity`.
    #[allow(clippy::too_many_arguments)]
    pub fn bin_tiles(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        vn: usize,
        capacity: usize,
        tiles_x: u32,
        tile_bits: u32,
        plan: &SortPlan,
    ) -> Result<(), DriverError> {
        let chunks = capacity.div_ceil(RADIX_CHUNK).max(1);
        stream.memset_zeros(&mut b.lookback.slice_mut(..plan.tile.digits() * chunks))?;
        let (n32, cap32) = (n as u32, capacity as u32);
        let mut launch = stream.launch_builder(&self.emit_tile_keys);
        launch
            .arg(&b.depth_values)
            .arg(&b.emit_offsets)
            .arg(&b.rects)
            .arg(&n32)
            .arg(&tiles_x)
            .arg(&tile_bits)
            .arg(&cap32)
            .arg(&plan.tile.passes)
            .arg(&plan.tile.shifts)
            .arg(&plan.tile.widths)
            .arg(&mut b.keys)
            .arg(&mut b.values)
            .arg(&mut b.sort_state);
        // SAFETY: matches `emit_tile_keys` (EMIT_PAIRS pairs per block, one thread each, over
        // every pair; blocks past the visible count leave); keys/values hold `capacity`
        // entries and nothing is written past it.
        unsafe { launch.launch(linear(vn, EMIT_PAIRS)) }?;
        self.radix_sort(
            stream,
            b,
            Keys::Tile,
            &plan.tile,
            capacity,
            state::INTERSECTIONS,
            state::TILE_DIGITS,
            state::TICKET_TILE_PASS,
        )
    }

    /// Stable LSD radix sort of the depth or tile keys (with values), one single-pass kernel
    /// per pass; the result ends in `keys` and the matching values buffer. The count is read
    /// on the device; `capacity` keys fit the buffers (one look-back word per digit and
    /// chunk of them is zeroed), and a larger count sorts nothing.
    #[allow(clippy::too_many_arguments)]
    fn radix_sort(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        which: Keys,
        plan: &PassPlan,
        capacity: usize,
        count_at: u32,
        digits_at: u32,
        ticket_at: u32,
    ) -> Result<(), DriverError> {
        let blocks = capacity.div_ceil(RADIX_CHUNK).max(1);
        // Blocks take chunks by ticket until the keys run out: a grid that stays resident.
        let cfg = LaunchConfig {
            grid_dim: (blocks.min(self.radix_resident) as u32, 1, 1),
            block_dim: (RADIX_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let cap32 = capacity as u32;
        let mut status_at = 0;
        for p in 0..plan.passes {
            let (shift, width) = plan.pass(p);
            let words = (1usize << width) * blocks;
            let (values, values_alt) = match which {
                Keys::Depth => (&mut b.depth_values, &mut b.depth_values_alt),
                Keys::Tile => (&mut b.values, &mut b.values_alt),
            };
            let mut status = b.lookback.slice_mut(status_at..status_at + words);
            let (pass_digits, pass_ticket) = (digits_at + RADIX_DIGITS * p, ticket_at + p);
            let mut launch = stream.launch_builder(&self.radix_pass);
            launch
                .arg(&b.keys)
                .arg(&*values)
                .arg(&mut b.sort_state)
                .arg(&count_at)
                .arg(&cap32)
                .arg(&pass_digits)
                .arg(&pass_ticket)
                .arg(&shift)
                .arg(&width)
                .arg(&mut status)
                .arg(&mut b.keys_alt)
                .arg(&mut *values_alt);
            // SAFETY: matches `radix_pass`; the key and value buffers hold `capacity` entries,
            // the status slice one word per (digit, chunk of them).
            unsafe { launch.launch(cfg) }?;
            drop(launch);
            std::mem::swap(&mut b.keys, &mut b.keys_alt);
            std::mem::swap(values, values_alt);
            status_at += words;
        }
        Ok(())
    }

    pub fn tile_ranges(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        capacity: usize,
        slots: usize,
    ) -> Result<(), DriverError> {
        stream.memset_zeros(&mut b.ranges.slice_mut(..2 * slots))?;
        let cap32 = capacity as u32;
        let cfg = LaunchConfig {
            grid_dim: (
                blocks(
                    capacity.div_ceil(RANGE_KEYS as usize),
                    RANGE_THREADS as usize,
                )
                .min(self.ranges_resident as u32),
                1,
                1,
            ),
            block_dim: (RANGE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.tile_ranges);
        launch
            .arg(&b.keys)
            .arg(&b.sort_state)
            .arg(&cap32)
            .arg(&mut b.ranges);
        // SAFETY: matches `tile_ranges` (RANGE_KEYS keys per thread, striding over the count);
        // keys hold `capacity` entries, ranges 2 × (views << tile_bits).
        unsafe { launch.launch(cfg) }.map(drop)
    }

    /// Lists the crowded tiles for the rasteriser to start with (`HEAVY_CAP` at most).
    pub fn heavy_tiles(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        capacity: usize,
        slots: usize,
        tiles: usize,
    ) -> Result<(), DriverError> {
        let (cap32, slots32, tiles32, heavy32) = (
            capacity as u32,
            slots as u32,
            tiles as u32,
            HEAVY_CAP as u32,
        );
        let mut launch = stream.launch_builder(&self.heavy_tiles);
        launch
            .arg(&mut b.sort_state)
            .arg(&cap32)
            .arg(&slots32)
            .arg(&tiles32)
            .arg(&heavy32)
            .arg(&mut b.ranges)
            .arg(&mut b.heavy);
        // SAFETY: matches `heavy_tiles`; ranges hold `slots` entries, heavy HEAVY_WORDS ×
        // HEAVY_CAP.
        unsafe { launch.launch(linear(slots, 256)) }.map(drop)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rasterize(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        rig: &Rig,
        tiles_x: u32,
        tiles_y: u32,
        tile_bits: u32,
    ) -> Result<(), DriverError> {
        let (n32, w, h) = (n as u32, rig.width, rig.height);
        let (tiles, heavy_cap) = (tiles_x * tiles_y, HEAVY_CAP as u32);
        let cfg = LaunchConfig {
            // The crowded tiles' blocks first, then one per (view, tile) in tile order.
            grid_dim: (heavy_cap + tiles * rig.views() as u32, 1, 1),
            // One thread per pixel of the tile; raster.cu maps each warp to an 8x4 sub-tile.
            block_dim: (RASTER_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let heavy_at = state::HEAVY as usize;
        let heavy_count = b.sort_state.slice(heavy_at..heavy_at + 1);
        let mut launch = stream.launch_builder(&self.rasterize);
        launch
            .arg(&b.ranges)
            .arg(&b.values)
            .arg(&b.xy)
            .arg(&b.conic_opacity)
            .arg(&b.colors)
            .arg(&n32)
            .arg(&w)
            .arg(&h)
            .arg(&tiles_x)
            .arg(&tile_bits)
            .arg(&b.heavy)
            .arg(&heavy_count)
            .arg(&heavy_cap)
            .arg(&tiles)
            .arg(&mut b.image);
        // SAFETY: matches `rasterize` in raster.cu; image holds views × h × w pixels, heavy
        // HEAVY_WORDS × HEAVY_CAP entries (heavy_tiles ran first).
        unsafe { launch.launch(cfg) }.map(drop)
    }

    pub fn metrics(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        rig: &Rig,
    ) -> Result<(), DriverError> {
        let views = rig.views();
        let (w, h) = (rig.width, rig.height);
        let views32 = views as u32;
        let mut launch = stream.launch_builder(&self.reset_metrics);
        launch
            .arg(&mut b.view_acc)
            .arg(&mut b.view_bbox)
            .arg(&mut b.ssim_sum)
            .arg(&views32);
        // SAFETY: matches `reset_metrics`; the buffers hold VIEW_ACC_WORDS, VIEW_BBOX_WORDS
        // and 1 entries per view.
        unsafe { launch.launch(linear(views * VIEW_ACC_WORDS, 128)) }?;
        // SSIM blocks for every adjacent pair (none when the image is narrower than the
        // window), then the view-metrics blocks, in one launch (metrics.cu says why).
        let r = SSIM_R;
        let (ssim_cols, ssim_rows, pairs) = if views >= 2 && w > 2 * r && h > 2 * r {
            (
                (w - 2 * r).div_ceil(SSIM_COLS),
                (h - 2 * r).div_ceil(SSIM_ROWS),
                views as u32 - 1,
            )
        } else {
            (0, 0, 0)
        };
        let view_rows = h.div_ceil(VIEW_METRICS_ROWS);
        let cfg = LaunchConfig {
            grid_dim: (ssim_cols * ssim_rows * pairs + view_rows * views32, 1, 1),
            // One thread per (output column, channel) in the SSIM blocks.
            block_dim: (SSIM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.measure_views);
        launch
            .arg(&b.image)
            .arg(&w)
            .arg(&h)
            .arg(&ssim_cols)
            .arg(&ssim_rows)
            .arg(&pairs)
            .arg(&view_rows)
            .arg(&mut b.ssim_sum)
            .arg(&mut b.view_acc)
            .arg(&mut b.view_bbox);
        // SAFETY: matches `measure_views`; one SSIM sum per adjacent pair, VIEW_ACC_WORDS and
        // VIEW_BBOX_WORDS accumulators per view.
        unsafe { launch.launch(cfg) }?;
        // The visible count and the intersection count's two words.
        let at = state::VISIBLE as usize;
        let counts = b.sort_state.slice(at..at + summary::COUNT_WORDS);
        let mut launch = stream.launch_builder(&self.pack_metrics);
        launch
            .arg(&b.view_acc)
            .arg(&b.view_bbox)
            .arg(&b.ssim_sum)
            .arg(&b.floaters)
            .arg(&b.stats)
            .arg(&b.bounds)
            .arg(&counts)
            .arg(&views32)
            .arg(&mut b.summary);
        // SAFETY: matches `pack_metrics`; summary holds `summary::len(views)` entries.
        unsafe { launch.launch(linear(summary::len(views), 128)) }.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::{float_to_ordered, DepthSpan, PassPlan, SortPlan};
    use crate::rig::Rig;

    #[test]
    fn the_validator_rig_s_depths_fit_27_bits_and_keep_their_order() {
        let rig = Rig::validator();
        let span = DepthSpan::of(&rig);
        assert_eq!(span.bits, 27);
        // Ordered bits minus the near plane's order as the depths do, across the whole range.
        let mut depths: Vec<f32> = (0..10_000)
            .map(|i| 0.01 + (100.0 - 0.01) * ((i as f32 * 0.618_034) % 1.0))
            .chain([0.01, 100.0, 2.5, 2.500_000_2])
            .collect();
        depths.sort_by(f32::total_cmp);
        let keys: Vec<u32> = depths
            .iter()
            .map(|&d| float_to_ordered(d) - span.near_ordered)
            .collect();
        assert!(keys.windows(2).all(|k| k[0] <= k[1]));
        assert!(keys.iter().all(|&k| k < 1 << span.bits));
    }

    #[test]
    fn ordered_bits_sort_negative_and_positive_depths_alike() {
        let values = [-100.0f32, -2.5, -0.01, 0.0, 0.01, 2.5, 100.0, f32::INFINITY];
        let ordered: Vec<u32> = values.iter().map(|&v| float_to_ordered(v)).collect();
        assert!(ordered.windows(2).all(|o| o[0] < o[1]));
        let mut rig = Rig::validator();
        rig.cameras[3].near = -1.0;
        let span = DepthSpan::of(&rig);
        assert_eq!(span.near_ordered, float_to_ordered(-1.0));
        let key = float_to_ordered(100.0) - span.near_ordered;
        assert!(u64::from(key) < 1u64 << span.bits);
        rig.cameras[5].far = f32::INFINITY;
        assert_eq!(DepthSpan::of(&rig).bits, 32);
        rig.cameras[0].near = f32::NAN;
        let unknown = DepthSpan::of(&rig);
        assert_eq!((unknown.near_ordered, unknown.bits), (0, 32));
    }

    #[test]
    fn passes_split_the_bits_evenly_and_cover_them_in_order() {
        for bits in 1..=32 {
            let plan = PassPlan::for_bits(bits);
            assert_eq!(plan.passes, bits.div_ceil(8));
            let mut next = 0;
            for p in 0..plan.passes {
                let (shift, width) = plan.pass(p);
                assert_eq!(shift, next, "{bits} bits, pass {p}");
                assert!((1..=8).contains(&width));
                next += width;
            }
            assert_eq!(next, bits);
        }
        let plan = PassPlan::for_bits(27);
        assert_eq!(
            (0..4).map(|p| plan.pass(p).1).collect::<Vec<_>>(),
            [7, 7, 7, 6]
        );
        assert_eq!(plan.digits(), 3 * 128 + 64);
    }

    #[test]
    fn the_view_goes_into_exactly_one_of_the_two_keys() {
        let rig = Rig::validator();
        let plan = SortPlan::new(DepthSpan::of(&rig), 4, 11);
        assert_eq!(plan.view_shift, 27);
        assert_eq!(plan.depth, PassPlan::for_bits(31));
        assert_eq!(plan.tile, PassPlan::for_bits(11));
        let wide = DepthSpan {
            near_ordered: 0,
            bits: 32,
        };
        let plan = SortPlan::new(wide, 4, 11);
        assert_eq!(plan.view_shift, 32);
        assert_eq!(plan.depth, PassPlan::for_bits(32));
        assert_eq!(plan.tile, PassPlan::for_bits(15));
    }
}
