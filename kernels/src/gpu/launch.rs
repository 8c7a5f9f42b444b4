//! One typed launcher per kernel: grid and block sizes, argument order matching the `.cu`
//! signatures, and the small host-side steps between them (zeroing accumulators, the scan
//! recursion, the radix passes).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};

use super::{
    buffers::{grow, Buffers},
    compile::{ptx_for, DECODE, METRICS, RASTER, SORT},
    DeviceNormalisation, GpuError,
};
use crate::{constants::TILE_SIZE, rig::Rig};

/// Values scanned per block (`SCAN_TILE` in sort.cu).
const SCAN_TILE: usize = 1024;
/// Keys per radix block (`RADIX_CHUNK` in sort.cu).
pub const RADIX_CHUNK: usize = 4096;

#[derive(Debug)]
pub struct Kernels {
    model_stats: CudaFunction,
    decode_project: CudaFunction,
    scan_tiles: CudaFunction,
    scan_add: CudaFunction,
    emit_keys: CudaFunction,
    radix_histogram: CudaFunction,
    radix_scatter: CudaFunction,
    tile_ranges: CudaFunction,
    rasterize: CudaFunction,
    view_metrics: CudaFunction,
    ssim_adjacent: CudaFunction,
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
            emit_keys: sort.load_function("emit_keys")?,
            radix_histogram: sort.load_function("radix_histogram")?,
            radix_scatter: sort.load_function("radix_scatter")?,
            tile_ranges: sort.load_function("tile_ranges")?,
            rasterize: raster.load_function("rasterize")?,
            view_metrics: metrics.load_function("view_metrics")?,
            ssim_adjacent: metrics.load_function("ssim_adjacent")?,
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

    /// Exclusive scan of `tile_counts[..vn]` into `tile_offsets`; returns the total.
    pub fn scan_counts(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        vn: usize,
    ) -> Result<u32, DriverError> {
        let Buffers {
            tile_counts,
            tile_offsets,
            scan_sums,
            ..
        } = b;
        self.scan(stream, tile_counts, tile_offsets, vn, scan_sums, 0)
    }

    /// Scans `input[..n]` into `output`, recursing over block sums; returns the total.
    fn scan(
        &self,
        stream: &Arc<CudaStream>,
        input: &CudaSlice<u32>,
        output: &mut CudaSlice<u32>,
        n: usize,
        sums: &mut Vec<(CudaSlice<u32>, CudaSlice<u32>)>,
        level: usize,
    ) -> Result<u32, DriverError> {
        let nblocks = n.div_ceil(SCAN_TILE).max(1);
        while sums.len() <= level {
            sums.push((stream.alloc_zeros::<u32>(1)?, stream.alloc_zeros::<u32>(1)?));
        }
        let (raw, scanned) = &mut sums[level];
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
            let total = stream.clone_dtoh(&raw.slice(..1))?;
            return Ok(total[0]);
        }
        // Scan the block sums (moved out so the recursion can borrow the level list).
        let (raw_owned, mut scanned_owned) = std::mem::replace(
            &mut sums[level],
            (stream.alloc_zeros::<u32>(1)?, stream.alloc_zeros::<u32>(1)?),
        );
        let total = self.scan(
            stream,
            &raw_owned,
            &mut scanned_owned,
            nblocks,
            sums,
            level + 1,
        )?;
        let mut launch = stream.launch_builder(&self.scan_add);
        launch.arg(&mut *output).arg(&scanned_owned).arg(&n32);
        // SAFETY: matches `scan_add`; one offset per block.
        unsafe { launch.launch(cfg) }?;
        sums[level] = (raw_owned, scanned_owned);
        Ok(total)
    }

    pub fn emit_keys(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        n: usize,
        views: usize,
        tiles_x: u32,
        tile_bits: u32,
    ) -> Result<(), DriverError> {
        let (n32, v32) = (n as u32, views as u32);
        let mut launch = stream.launch_builder(&self.emit_keys);
        launch
            .arg(&b.tile_offsets)
            .arg(&b.tile_counts)
            .arg(&b.rects)
            .arg(&b.depths)
            .arg(&n32)
            .arg(&v32)
            .arg(&tiles_x)
            .arg(&tile_bits)
            .arg(&mut b.keys)
            .arg(&mut b.values);
        // SAFETY: matches `emit_keys`; keys/values hold the scanned total.
        unsafe { launch.launch(linear(n * views, 256)) }.map(drop)
    }

    /// Stable LSD radix sort of `keys[..m]` (with values) on the low `key_bits` bits.
    pub fn radix_sort(
        &self,
        stream: &Arc<CudaStream>,
        b: &mut Buffers,
        m: usize,
        key_bits: u32,
    ) -> Result<(), DriverError> {
        let nblocks = m.div_ceil(RADIX_CHUNK);
        let m32 = m as u32;
        let cfg = LaunchConfig {
            grid_dim: (nblocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut shift = 0u32;
        while shift < key_bits {
            let mut launch = stream.launch_builder(&self.radix_histogram);
            launch
                .arg(&b.keys)
                .arg(&m32)
                .arg(&shift)
                .arg(&mut b.histogram);
            // SAFETY: matches `radix_histogram`; histogram holds 256 × blocks.
            unsafe { launch.launch(cfg) }?;
            {
                let Buffers {
                    histogram,
                    histogram_scan,
                    scan_sums,
                    ..
                } = &mut *b;
                self.scan(
                    stream,
                    histogram,
                    histogram_scan,
                    256 * nblocks,
                    scan_sums,
                    0,
                )?;
            }
            let mut launch = stream.launch_builder(&self.radix_scatter);
            launch
                .arg(&b.keys)
                .arg(&b.values)
                .arg(&m32)
                .arg(&shift)
                .arg(&b.histogram_scan)
                .arg(&mut b.keys_alt)
                .arg(&mut b.values_alt);
            // SAFETY: matches `radix_scatter`; output buffers hold m entries.
            unsafe { launch.launch(cfg) }?;
            std::mem::swap(&mut b.keys, &mut b.keys_alt);
            std::mem::swap(&mut b.values, &mut b.values_alt);
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
            block_dim: (TILE_SIZE, TILE_SIZE, 1),
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
        stream.memset_zeros(&mut b.view_acc)?;
        stream.memset_zeros(&mut b.ssim_sum)?;
        let bbox_init: Vec<i32> = (0..b.view_bbox.len())
            .map(|k| if k % 4 < 2 { i32::MAX } else { -1 })
            .collect();
        stream.memcpy_htod(bbox_init.as_slice(), &mut b.view_bbox)?;
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
        Ok(())
    }
}
