//! Device buffers of the pipeline, each grown (with headroom) only when a call needs more
//! than it holds, so a worker rendering similar models allocates nothing in steady state.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, DriverError, ValidAsZeroBits};
use splatfleet_common::splat::Splat;

use super::{
    launch::HEAVY_CAP,
    layout::{
        state, summary, CAMERA_FLOATS, HEAVY_WORDS, MAX_INTERSECTIONS, MODEL_BOUNDS_WORDS,
        MODEL_STATS_WORDS, RADIX_CHUNK, SCAN_TILE, VIEW_ACC_WORDS, VIEW_BBOX_WORDS,
    },
};
use crate::rig::Rig;

#[derive(Debug)]
pub struct Buffers {
    pub positions: CudaSlice<f32>,
    pub opacity_logits: CudaSlice<f32>,
    pub log_scales: CudaSlice<f32>,
    pub rotations: CudaSlice<f32>,
    pub sh_dc: CudaSlice<f32>,
    pub stats: CudaSlice<f64>,
    pub bounds: CudaSlice<u32>,
    pub floaters: CudaSlice<u32>,
    pub cameras: CudaSlice<f32>,
    pub colors: CudaSlice<f32>,
    pub xy: CudaSlice<f32>,
    pub conic_opacity: CudaSlice<f32>,
    pub depths: CudaSlice<f32>,
    pub rects: CudaSlice<u32>,
    pub tile_counts: CudaSlice<u32>,
    pub depth_values: CudaSlice<u32>,
    pub depth_values_alt: CudaSlice<u32>,
    pub emit_offsets: CudaSlice<u32>,
    /// Depth keys, then the tile keys (the depth keys are spent once emission starts).
    pub keys: CudaSlice<u32>,
    pub keys_alt: CudaSlice<u32>,
    pub values: CudaSlice<u32>,
    pub values_alt: CudaSlice<u32>,
    /// Tickets, the visible and intersection counts and the digit counts (`layout::state`).
    pub sort_state: CudaSlice<u32>,
    /// Look-back words of the radix passes: one per (digit, block) of each pass.
    pub lookback: CudaSlice<u32>,
    /// Look-back words of the two scans: one per block each.
    pub scan_status: CudaSlice<u64>,
    pub ranges: CudaSlice<u32>,
    /// The crowded tiles the rasteriser starts with: [slot, start, end] each.
    pub heavy: CudaSlice<u32>,
    pub image: CudaSlice<f32>,
    pub view_acc: CudaSlice<f64>,
    pub view_bbox: CudaSlice<i32>,
    pub ssim_sum: CudaSlice<f64>,
    /// Everything the host reads back after a render, packed by `pack_metrics`.
    pub summary: CudaSlice<f64>,
}

/// Replaces `slot` with a larger buffer when it holds fewer than `len` elements.
pub fn grow<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    slot: &mut CudaSlice<T>,
    len: usize,
) -> Result<(), DriverError> {
    if slot.len() < len {
        // 25 % headroom so models of similar size do not reallocate.
        *slot = stream.alloc_zeros::<T>(len + len / 4)?;
    }
    Ok(())
}

/// Flattens `[f32; K]` rows into one `f32` slice without copying.
fn flat<const K: usize>(rows: &[[f32; K]]) -> &[f32] {
    // SAFETY: `[f32; K]` has the size and alignment of K consecutive f32s and no padding.
    unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<f32>(), rows.len() * K) }
}

impl Buffers {
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self, DriverError> {
        let one_f = || stream.alloc_zeros::<f32>(1);
        let one_u = || stream.alloc_zeros::<u32>(1);
        Ok(Self {
            positions: one_f()?,
            opacity_logits: one_f()?,
            log_scales: one_f()?,
            rotations: one_f()?,
            sh_dc: one_f()?,
            stats: stream.alloc_zeros::<f64>(MODEL_STATS_WORDS)?,
            bounds: stream.alloc_zeros::<u32>(MODEL_BOUNDS_WORDS)?,
            floaters: one_u()?,
            cameras: one_f()?,
            colors: one_f()?,
            xy: one_f()?,
            conic_opacity: one_f()?,
            depths: one_f()?,
            rects: one_u()?,
            tile_counts: one_u()?,
            depth_values: one_u()?,
            depth_values_alt: one_u()?,
            emit_offsets: one_u()?,
            keys: one_u()?,
            keys_alt: one_u()?,
            values: one_u()?,
            values_alt: one_u()?,
            sort_state: stream.alloc_zeros::<u32>(state::WORDS)?,
            lookback: one_u()?,
            scan_status: stream.alloc_zeros::<u64>(1)?,
            ranges: one_u()?,
            heavy: stream.alloc_zeros::<u32>(HEAVY_WORDS * HEAVY_CAP)?,
            image: one_f()?,
            view_acc: stream.alloc_zeros::<f64>(1)?,
            view_bbox: stream.alloc_zeros::<i32>(1)?,
            ssim_sum: stream.alloc_zeros::<f64>(1)?,
            summary: stream.alloc_zeros::<f64>(1)?,
        })
    }

    /// Copies the splat's stored arrays to the device.
    pub fn upload(&mut self, stream: &Arc<CudaStream>, splat: &Splat) -> Result<(), DriverError> {
        let n = splat.len();
        grow(stream, &mut self.positions, 3 * n)?;
        grow(stream, &mut self.opacity_logits, n)?;
        grow(stream, &mut self.log_scales, 3 * n)?;
        grow(stream, &mut self.rotations, 4 * n)?;
        grow(stream, &mut self.sh_dc, 3 * n)?;
        stream.memcpy_htod(
            flat(&splat.positions),
            &mut self.positions.slice_mut(..3 * n),
        )?;
        stream.memcpy_htod(
            splat.opacities.as_slice(),
            &mut self.opacity_logits.slice_mut(..n),
        )?;
        stream.memcpy_htod(
            flat(&splat.log_scales),
            &mut self.log_scales.slice_mut(..3 * n),
        )?;
        stream.memcpy_htod(
            flat(&splat.rotations),
            &mut self.rotations.slice_mut(..4 * n),
        )?;
        stream.memcpy_htod(flat(&splat.sh_dc), &mut self.sh_dc.slice_mut(..3 * n))?;
        Ok(())
    }

    /// Sizes the per-gaussian and per-(view, gaussian) buffers, the depth sort's among them
    /// (its count stays on the device, so they hold every pair), with `depth_digits`
    /// look-back words per radix block.
    pub fn ensure_model(
        &mut self,
        stream: &Arc<CudaStream>,
        n: usize,
        vn: usize,
        views: usize,
        depth_digits: usize,
    ) -> Result<(), DriverError> {
        grow(stream, &mut self.colors, 3 * n)?;
        grow(stream, &mut self.xy, 2 * vn)?;
        grow(stream, &mut self.conic_opacity, 4 * vn)?;
        grow(stream, &mut self.depths, vn)?;
        grow(stream, &mut self.rects, 2 * vn)?;
        grow(stream, &mut self.tile_counts, vn)?;
        grow(stream, &mut self.keys, vn)?;
        grow(stream, &mut self.keys_alt, vn)?;
        grow(stream, &mut self.depth_values, vn)?;
        grow(stream, &mut self.depth_values_alt, vn)?;
        grow(stream, &mut self.emit_offsets, vn)?;
        grow(
            stream,
            &mut self.scan_status,
            2 * vn.div_ceil(SCAN_TILE).max(1),
        )?;
        grow(
            stream,
            &mut self.lookback,
            depth_digits * vn.div_ceil(RADIX_CHUNK).max(1),
        )?;
        grow(stream, &mut self.cameras, views * CAMERA_FLOATS)?;
        grow(stream, &mut self.view_acc, views * VIEW_ACC_WORDS)?;
        grow(stream, &mut self.view_bbox, views * VIEW_BBOX_WORDS)?;
        grow(stream, &mut self.ssim_sum, views.max(1))?;
        grow(stream, &mut self.summary, summary::len(views))?;
        Ok(())
    }

    pub fn upload_cameras(
        &mut self,
        stream: &Arc<CudaStream>,
        rig: &Rig,
    ) -> Result<(), DriverError> {
        let mut host = Vec::with_capacity(rig.views() * CAMERA_FLOATS);
        for cam in &rig.cameras {
            for row in &cam.rotation {
                host.extend_from_slice(row);
            }
            host.extend_from_slice(&cam.translation);
            host.extend_from_slice(&[cam.fx, cam.fy, cam.cx, cam.cy, cam.near, cam.far]);
        }
        stream.memcpy_htod(host.as_slice(), &mut self.cameras.slice_mut(..host.len()))
    }

    /// How many tile intersections the key, value and look-back buffers can sort now
    /// (`tile_digits` look-back words per radix chunk), below the radix counts' 2^30.
    pub fn intersection_capacity(&self, tile_digits: usize) -> usize {
        let keys = self
            .keys
            .len()
            .min(self.keys_alt.len())
            .min(self.values.len())
            .min(self.values_alt.len());
        let chunks = self.lookback.len() / tile_digits.max(1);
        keys.min(chunks * RADIX_CHUNK)
            .min(MAX_INTERSECTIONS as usize - 1)
    }

    /// Sizes `ranges` for `slots` (view, tile) pairs.
    pub fn ensure_ranges(
        &mut self,
        stream: &Arc<CudaStream>,
        slots: usize,
    ) -> Result<(), DriverError> {
        grow(stream, &mut self.ranges, 2 * slots)
    }

    /// Sizes the tile sort's buffers for `m` intersections (`tile_digits` look-back words per
    /// radix block).
    pub fn ensure_intersections(
        &mut self,
        stream: &Arc<CudaStream>,
        m: usize,
        tile_digits: usize,
    ) -> Result<(), DriverError> {
        let m = m.max(1);
        grow(stream, &mut self.keys, m)?;
        grow(stream, &mut self.keys_alt, m)?;
        grow(stream, &mut self.values, m)?;
        grow(stream, &mut self.values_alt, m)?;
        grow(
            stream,
            &mut self.lookback,
            tile_digits * m.div_ceil(RADIX_CHUNK),
        )
    }

    pub fn ensure_image(
        &mut self,
        stream: &Arc<CudaStream>,
        pixels: usize,
    ) -> Result<(), DriverError> {
        grow(stream, &mut self.image, 4 * pixels)
    }

    /// Fills the outputs with `value` (NaN makes any pixel a kernel forgot stand out).
    pub fn poison(&mut self, stream: &Arc<CudaStream>, value: f32) -> Result<(), DriverError> {
        let image = vec![value; self.image.len()];
        stream.memcpy_htod(image.as_slice(), &mut self.image)?;
        let xy = vec![value; self.xy.len()];
        stream.memcpy_htod(xy.as_slice(), &mut self.xy)?;
        let acc = vec![f64::from(value); self.view_acc.len()];
        stream.memcpy_htod(acc.as_slice(), &mut self.view_acc)?;
        let summary = vec![f64::from(value); self.summary.len()];
        stream.memcpy_htod(summary.as_slice(), &mut self.summary)?;
        Ok(())
    }
}
