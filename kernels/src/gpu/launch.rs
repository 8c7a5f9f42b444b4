//! One typed launcher per kernel: grid and block sizes, argument order matching the `.cu`
//! signatures, and the small host-side steps between them (zeroing accumulators, the scan
//! recursion, the radix passes).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    PushKernelArg,
};

use super::{
    buffers::{grow, Buffers, SortScratch},
    compile::{ptx_for, DECODE, METRICS, RASTER, SORT},
    DeviceNormalisation, GpuError,
};
use crate::{constants::TILE_SIZE, rig::Rig};

/// Values scanned per block (`SCAN_TILE` in sort.cu).
const SCAN_TILE: usize = 1024;
/// Keys per radix block (`RADIX_CHUNK` in sort.cu).
pub const RADIX_CHUNK: usize = 2048;

/// The visible depths' range as float bits, for 32-bit depth keys: every visible depth lies
/// in the rig's [near, far], so its bits minus `near_bits` fit in `bits`.
#[derive(Debug, Clone, Copy)]
pub struct DepthSpan {
    pub near_bits: u32,
    pub bits: u32,
}

impl DepthSpan {
    /// `None` unless every camera has 0 < near ≤ far < ∞ (where float bits order like floats).
    pub fn of(rig: &Rig) -> Option<Self> {
        let near = rig.cameras.iter().map(|c| c.near).reduce(f32::min)?;
        let far = rig.cameras.iter().map(|c| c.far).reduce(f32::max)?;
        if !(near > 0.0 && far.is_finite() && far >= near) {
            return None;
        }
        let span = far.to_bits() - near.to_bits();
        Some(Self {
            near_bits: near.to_bits(),
            bits: (u32::BITS - span.leading_zeros()).max(1),
        })
    }
}

#[derive(Debug)]
pub struct Kernels {
    model_stats: CudaFunction,
    decode_project: CudaFunction,
    scan_tiles: CudaFunction,
    scan_add: CudaFunction,
    visible_flags: CudaFunction,
    depth_keys: CudaFunction,
    depth_keys_u32: CudaFunction,
    gather_counts: CudaFunction,
    emit_tile_keys: CudaFunction,
    radix_histogram_u64: CudaFunction,
    radix_scatter_u64: CudaFunction,
    radix_histogram_u32: CudaFunction,
    radix_scatter_u32: CudaFunction,
    tile_ranges: CudaFunction,
    rasterize: CudaFunction,
    view_metrics: CudaFunction,
    ssim_adjacent: CudaFunction,
    reset_metrics: CudaFunction,
    pack_metrics: CudaFunction,
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
        Ok(Self {
            model_stats: decode.load_function("model_stats")?,
            decode_project: decode.load_function("decode_project")?,
            scan_tiles: sort.load_function("scan_tiles")?,
            scan_add: sort.load_function("scan_add")?,
            visible_flags: sort.load_function("visible_flags")?,
            depth_keys: sort.load_function("depth_keys")?,
            depth_keys_u32: sort.load_function("depth_keys_u32")?,
            gather_counts: sort.load_function("gather_counts")?,
            emit_tile_keys: sort.load_function("emit_tile_keys")?,
            radix_histogram_u64: sort.load_function("radix_histogram_u64")?,
            radix_scatter_u64: sort.load_function("radix_scatter_u64")?,
            radix_histogram_u32: sort.load_function("radix_histogram_u32")?,
            radix_scatter_u32: sort.load_function("radix_scatter_u32")?,
            tile_ranges: sort.load_function("tile_ranges")?,
            rasterize: raster.load_function("rasterize")?,
            view_metrics: metrics.load_function("view_metrics")?,
            ssim_adjacent: metrics.load_function("ssim_adjacent")?,
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
        stream.memcpy_htod(&[u32::MAX, u32::MAX, u32::MAX, 0, 0, 0], &mut b.bounds)?;
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
        norm: &DeviceNormalisation,
        rig: &Rig,
        tiles_x: u32,
        tiles_y: u32,
    ) -> Result<(), DriverError> {
        let (n32, views, w, h) = (n as u32, rig.views() as u32, rig.width, rig.height);
        let [cx, cy, cz] = norm.floater_centre;
        let limit2 = norm.floater_limit2;
        let mut launch = stream.launch_builder(&self.decode_project);
        launch
            .arg(&b.positions)
            .arg(&b.opacity_logits)
            .arg(&b.log_scales)
            .arg(&b.rotations)
            .arg(&b.sh_dc)
            .arg(&n32)
            .arg(&norm.mean)
            .arg(&norm.scale)
            .arg(&cx)
            .arg(&cy)
            .arg(&cz)
            .arg(&limit2)
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

    /// Flags the visible (view, gaussian) pairs and scans the flags; returns how many.
    pub fn count_visible(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        vn: usize,
    ) -> Result<u32, DriverError> {
        let vn32 = vn as u32;
        let mut launch = stream.launch_builder(&self.visible_flags);
        launch.arg(&b.tile_counts).arg(&vn32).arg(&mut b.flags);
        // SAFETY: matches `visible_flags`; both buffers hold vn entries.
        unsafe { launch.launch(linear(vn, 256)) }?;
        self.scan(
            stream,
            &b.flags,
            &mut b.visible_positions,
            vn,
            &mut b.scratch.scan_sums,
            true,
        )
    }

    /// Writes the depth keys of the visible pairs, sorts them by (view, depth), and scans
    /// their tile counts in that order into emission offsets; returns the intersections.
    #[allow(clippy::too_many_arguments)]
    pub fn depth_order(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        views: usize,
        visible: usize,
        view_bits: u32,
        depth_span: Option<DepthSpan>,
    ) -> Result<u32, DriverError> {
        let (n32, v32) = (n as u32, views as u32);
        if let Some(span) = depth_span.filter(|s| s.bits + view_bits <= 32) {
            let mut launch = stream.launch_builder(&self.depth_keys_u32);
            launch
                .arg(&b.tile_counts)
                .arg(&b.visible_positions)
                .arg(&b.depths)
                .arg(&n32)
                .arg(&v32)
                .arg(&span.near_bits)
                .arg(&span.bits)
                .arg(&mut b.keys)
                .arg(&mut b.depth_values);
            // SAFETY: matches `depth_keys_u32`; `keys` and `depth_values` hold `visible`
            // entries (ensure_visible).
            unsafe { launch.launch(linear(n * views, 256)) }?;
            self.radix_sort(
                stream,
                &self.radix_histogram_u32,
                &self.radix_scatter_u32,
                &mut b.keys,
                &mut b.keys_alt,
                &mut b.depth_values,
                &mut b.depth_values_alt,
                &mut b.scratch,
                visible,
                span.bits + view_bits,
            )?;
            return self.emission_offsets(stream, b, visible);
        }
        let mut launch = stream.launch_builder(&self.depth_keys);
        launch
            .arg(&b.tile_counts)
            .arg(&b.visible_positions)
            .arg(&b.depths)
            .arg(&n32)
            .arg(&v32)
            .arg(&mut b.depth_keys)
            .arg(&mut b.depth_values);
        // SAFETY: matches `depth_keys`; the key buffers hold `visible` entries.
        unsafe { launch.launch(linear(n * views, 256)) }?;
        self.radix_sort(
            stream,
            &self.radix_histogram_u64,
            &self.radix_scatter_u64,
            &mut b.depth_keys,
            &mut b.depth_keys_alt,
            &mut b.depth_values,
            &mut b.depth_values_alt,
            &mut b.scratch,
            visible,
            32 + view_bits,
        )?;
        self.emission_offsets(stream, b, visible)
    }

    /// Gathers the tile counts in depth order and scans them into emission offsets; returns
    /// the intersections.
    fn emission_offsets(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        visible: usize,
    ) -> Result<u32, DriverError> {
        let k32 = visible as u32;
        let mut launch = stream.launch_builder(&self.gather_counts);
        launch
            .arg(&b.depth_values)
            .arg(&b.tile_counts)
            .arg(&k32)
            .arg(&mut b.sorted_counts);
        // SAFETY: matches `gather_counts`; `sorted_counts` holds `visible` entries.
        unsafe { launch.launch(linear(visible, 256)) }?;
        self.scan(
            stream,
            &b.sorted_counts,
            &mut b.emit_offsets,
            visible,
            &mut b.scratch.scan_sums,
            true,
        )
    }

    /// Scans `input[..n]` into `output`, recursing over block sums; returns the total when
    /// `need_total` (a read back to the host, so a sync), else 0. The level buffers grow only
    /// when a larger input arrives, so steady-state calls allocate nothing.
    fn scan(
        &self,
        stream: &Arc<CudaStream>,
        input: &CudaSlice<u32>,
        output: &mut CudaSlice<u32>,
        n: usize,
        sums: &mut Vec<(CudaSlice<u32>, CudaSlice<u32>)>,
        need_total: bool,
    ) -> Result<u32, DriverError> {
        let mut levels = 1;
        let mut blocks_at_level = n.div_ceil(SCAN_TILE).max(1);
        while blocks_at_level > 1 {
            levels += 1;
            blocks_at_level = blocks_at_level.div_ceil(SCAN_TILE);
        }
        while sums.len() < levels {
            sums.push((stream.alloc_zeros::<u32>(1)?, stream.alloc_zeros::<u32>(1)?));
        }
        self.scan_level(stream, input, output, n, sums, need_total)
    }

    fn scan_level(
        &self,
        stream: &Arc<CudaStream>,
        input: &CudaSlice<u32>,
        output: &mut CudaSlice<u32>,
        n: usize,
        sums: &mut [(CudaSlice<u32>, CudaSlice<u32>)],
        need_total: bool,
    ) -> Result<u32, DriverError> {
        let nblocks = n.div_ceil(SCAN_TILE).max(1);
        let Some(((raw, scanned), deeper)) = sums.split_first_mut() else {
            // `scan` sized the levels for this input; nothing to scan into otherwise.
            return Ok(0);
        };
        grow(stream, raw, nblocks)?;
        grow(stream, scanned, nblocks)?;
        let n32 = n as u32;
        let cfg = LaunchConfig {
            grid_dim: (nblocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.scan_tiles);
        launch.arg(input).arg(&mut *output).arg(&mut *raw).arg(&n32);
        // SAFETY: matches `scan_tiles`; `raw` holds one sum per block.
        unsafe { launch.launch(cfg) }?;
        if nblocks == 1 {
            if !need_total {
                return Ok(0);
            }
            let total = stream.clone_dtoh(&raw.slice(..1))?;
            return Ok(total[0]);
        }
        let total = self.scan_level(stream, raw, scanned, nblocks, deeper, need_total)?;
        let mut launch = stream.launch_builder(&self.scan_add);
        launch.arg(&mut *output).arg(&*scanned).arg(&n32);
        // SAFETY: matches `scan_add`; one offset per block.
        unsafe { launch.launch(cfg) }?;
        Ok(total)
    }

    /// Emits one (view, tile) key per intersection in depth order and sorts them stably.
    #[allow(clippy::too_many_arguments)]
    pub fn bin_tiles(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        visible: usize,
        intersections: usize,
        tiles_x: u32,
        tile_bits: u32,
        view_bits: u32,
    ) -> Result<(), DriverError> {
        let (n32, k32, m32) = (n as u32, visible as u32, intersections as u32);
        let mut launch = stream.launch_builder(&self.emit_tile_keys);
        launch
            .arg(&b.depth_values)
            .arg(&k32)
            .arg(&b.emit_offsets)
            .arg(&b.rects)
            .arg(&n32)
            .arg(&tiles_x)
            .arg(&tile_bits)
            .arg(&m32)
            .arg(&mut b.keys)
            .arg(&mut b.values);
        // SAFETY: matches `emit_tile_keys` (256 pairs per block, EMIT_PAIRS); keys/values
        // hold the scanned total `intersections`.
        unsafe { launch.launch(linear(visible, 256)) }?;
        self.radix_sort(
            stream,
            &self.radix_histogram_u32,
            &self.radix_scatter_u32,
            &mut b.keys,
            &mut b.keys_alt,
            &mut b.values,
            &mut b.values_alt,
            &mut b.scratch,
            intersections,
            tile_bits + view_bits,
        )
    }

    /// Stable LSD radix sort of `keys[..m]` (with values) on the low `key_bits` bits, 8 at a
    /// time; the result ends in `keys`/`values`.
    #[allow(clippy::too_many_arguments)]
    fn radix_sort<K: DeviceRepr>(
        &self,
        stream: &Arc<CudaStream>,
        histogram_fn: &CudaFunction,
        scatter_fn: &CudaFunction,
        keys: &mut CudaSlice<K>,
        keys_alt: &mut CudaSlice<K>,
        values: &mut CudaSlice<u32>,
        values_alt: &mut CudaSlice<u32>,
        sort: &mut SortScratch,
        m: usize,
        key_bits: u32,
    ) -> Result<(), DriverError> {
        if m == 0 {
            return Ok(());
        }
        let nblocks = m.div_ceil(RADIX_CHUNK);
        let m32 = m as u32;
        let cfg = LaunchConfig {
            grid_dim: (nblocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut shift = 0u32;
        while shift < key_bits {
            let mut launch = stream.launch_builder(histogram_fn);
            launch
                .arg(&*keys)
                .arg(&m32)
                .arg(&shift)
                .arg(&mut sort.histogram);
            // SAFETY: matches `radix_histogram_*`; histogram holds 256 × blocks.
            unsafe { launch.launch(cfg) }?;
            // Only the offsets matter here: no total, so no sync per pass.
            self.scan(
                stream,
                &sort.histogram,
                &mut sort.histogram_scan,
                256 * nblocks,
                &mut sort.scan_sums,
                false,
            )?;
            let mut launch = stream.launch_builder(scatter_fn);
            launch
                .arg(&*keys)
                .arg(&*values)
                .arg(&m32)
                .arg(&shift)
                .arg(&sort.histogram_scan)
                .arg(&mut *keys_alt)
                .arg(&mut *values_alt);
            // SAFETY: matches `radix_scatter_*`; output buffers hold m entries.
            unsafe { launch.launch(cfg) }?;
            std::mem::swap(keys, keys_alt);
            std::mem::swap(values, values_alt);
            shift += 8;
        }
        Ok(())
    }

    pub fn tile_ranges(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        m: usize,
        slots: usize,
    ) -> Result<(), DriverError> {
        stream.memset_zeros(&mut b.ranges.slice_mut(..2 * slots))?;
        if m == 0 {
            return Ok(());
        }
        let m32 = m as u32;
        let mut launch = stream.launch_builder(&self.tile_ranges);
        launch.arg(&b.keys).arg(&m32).arg(&mut b.ranges);
        // SAFETY: matches `tile_ranges`; ranges hold 2 × (views << tile_bits).
        unsafe { launch.launch(linear(m, 256)) }.map(drop)
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
        let cfg = LaunchConfig {
            grid_dim: (tiles_x, tiles_y, rig.views() as u32),
            // One thread per pixel of the tile; raster.cu maps each warp to an 8x4 sub-tile.
            block_dim: (TILE_SIZE * TILE_SIZE, 1, 1),
            shared_mem_bytes: 0,
        };
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
            .arg(&mut b.image);
        // SAFETY: matches `rasterize` in raster.cu; image holds views × h × w pixels.
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
        // SAFETY: matches `reset_metrics`; the buffers hold 8, 4 and 1 entries per view.
        unsafe { launch.launch(linear(views * 8, 128)) }?;
        let cfg = LaunchConfig {
            grid_dim: (w.div_ceil(16), h.div_ceil(16), views as u32),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.view_metrics);
        launch
            .arg(&b.image)
            .arg(&w)
            .arg(&h)
            .arg(&mut b.view_acc)
            .arg(&mut b.view_bbox);
        // SAFETY: matches `view_metrics`; accumulators hold 8 and 4 entries per view.
        unsafe { launch.launch(cfg) }?;
        let r = (crate::constants::SSIM_WINDOW / 2) as u32;
        if views >= 2 && w > 2 * r && h > 2 * r {
            let cfg = LaunchConfig {
                grid_dim: (
                    (w - 2 * r).div_ceil(16),
                    (h - 2 * r).div_ceil(16),
                    views as u32 - 1,
                ),
                block_dim: (16, 16, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = stream.launch_builder(&self.ssim_adjacent);
            launch
                .arg(&b.image)
                .arg(&w)
                .arg(&h)
                .arg(&b.ssim_window)
                .arg(&mut b.ssim_sum);
            // SAFETY: matches `ssim_adjacent`; one sum per adjacent pair.
            unsafe { launch.launch(cfg) }?;
        }
        let mut launch = stream.launch_builder(&self.pack_metrics);
        launch
            .arg(&b.view_acc)
            .arg(&b.view_bbox)
            .arg(&b.ssim_sum)
            .arg(&b.floaters)
            .arg(&views32)
            .arg(&mut b.summary);
        // SAFETY: matches `pack_metrics`; summary holds 13 entries per view plus one.
        unsafe { launch.launch(linear(views * 13 + 1, 128)) }.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::DepthSpan;
    use crate::rig::Rig;

    #[test]
    fn the_validator_rig_s_depths_fit_27_bits_and_keep_their_order() {
        let rig = Rig::validator();
        let span = DepthSpan::of(&rig).expect("near 0.01, far 100");
        assert_eq!(span.bits, 27);
        // Float bits minus the near plane's order as the depths do, across the whole range.
        let mut depths: Vec<f32> = (0..10_000)
            .map(|i| 0.01 + (100.0 - 0.01) * ((i as f32 * 0.618_034) % 1.0))
            .chain([0.01, 100.0, 2.5, 2.500_000_2])
            .collect();
        depths.sort_by(f32::total_cmp);
        let keys: Vec<u32> = depths
            .iter()
            .map(|d| d.to_bits() - span.near_bits)
            .collect();
        assert!(keys.windows(2).all(|k| k[0] <= k[1]));
        assert!(keys.iter().all(|&k| k < 1 << span.bits));
    }

    #[test]
    fn a_rig_with_a_non_positive_near_plane_keeps_64_bit_keys() {
        let mut rig = Rig::validator();
        rig.cameras[3].near = 0.0;
        assert!(DepthSpan::of(&rig).is_none());
        rig.cameras[3].near = 0.01;
        rig.cameras[5].far = f32::INFINITY;
        assert!(DepthSpan::of(&rig).is_none());
    }
}
