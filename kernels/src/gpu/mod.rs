//! The CUDA backend: a [`GpuRenderer`] owns the device context, the compiled kernels and
//! every device buffer, grown on demand and reused between calls so steady-state renders
//! allocate nothing. One call runs the whole pipeline on one stream: model statistics,
//! decode + normalise + project, scan, key emission, radix sort, tile ranges and the crowded
//! tiles, rasterise, metrics. Nothing is read back until the end: one packed summary (and
//! the views, when asked for).

mod buffers;
pub(crate) mod compile;
mod launch;
pub mod layout;

use std::{sync::Arc, time::Duration};

use cudarc::driver::{CudaContext, CudaStream, DriverError};
use splatfleet_common::splat::Splat;

pub use compile::cache_dir;

use self::{
    buffers::Buffers,
    launch::Kernels,
    layout::{summary, MODEL_BOUNDS_WORDS, VIEW_ACC_WORDS, VIEW_BBOX_WORDS},
};
use crate::{
    constants::{MAX_GAUSSIANS, TILE_SIZE},
    gaussians::{checked_extent, NormaliseError},
    metrics::{Metrics, ViewMetrics},
    rig::Rig,
    views::Views,
    KernelError,
};

/// Why the GPU path failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    #[error("NVRTC could not compile {module}.cu:\n{log}")]
    Compile { module: &'static str, log: String },
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("cuBLAS: {0}")]
    Blas(#[from] cudarc::cublas::result::CublasError),
    /// The scorer's weights do not fit together (shapes, the position-embedding grid).
    #[error("scorer model: {0}")]
    Model(String),
    /// What the scorer was asked to score does not fit its inputs.
    #[error("scorer input: {0}")]
    Input(String),
    #[error("{what} needs {needed} entries, more than the {limit} this renderer supports")]
    TooLarge {
        what: &'static str,
        needed: usize,
        limit: usize,
    },
}

/// Wall time of each stage of the last call, when profiling is on (CUDA events).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub upload: Duration,
    pub decode_project: Duration,
    pub sort: Duration,
    pub rasterize: Duration,
    pub metrics: Duration,
    pub total_on_device: Duration,
    pub intersections: usize,
}

/// The CUDA pipeline on one device.
#[derive(Debug)]
pub struct GpuRenderer {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    bufs: Buffers,
    name: String,
    /// Record CUDA events between stages (costs a little; for benchmarks).
    pub profile: bool,
    last_times: StageTimes,
}

impl GpuRenderer {
    /// Opens device `ordinal` and compiles (or loads cached) kernels for it. The driver and
    /// NVRTC libraries are probed first: cudarc panics when it cannot load them.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        probe()?;
        let ctx = CudaContext::new(ordinal)?;
        let (major, minor) = ctx.compute_capability()?;
        let name = ctx
            .name()
            .unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        let kernels = Kernels::load(&ctx, major, minor)?;
        let stream = ctx.default_stream();
        let bufs = Buffers::new(&stream)?;
        Ok(Self {
            ctx,
            stream,
            kernels,
            bufs,
            name: format!("{name} (sm_{major}{minor})"),
            profile: false,
            last_times: StageTimes::default(),
        })
    }

    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The device context and stream, for work that shares this renderer's device (the
    /// scorer reads the image buffer in place).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The last render: `views × height × width` RGBA `f32`, view-major, on the device.
    pub fn image(&self) -> &cudarc::driver::CudaSlice<f32> {
        &self.bufs.image
    }

    /// Stage times of the last call (all zero unless `profile` was set).
    pub fn last_times(&self) -> StageTimes {
        self.last_times
    }

    /// Uploads the splat, then runs [`GpuRenderer::render_uploaded`].
    pub fn render_and_measure(
        &mut self,
        splat: &Splat,
        rig: &Rig,
        download_views: bool,
    ) -> Result<(Option<Views>, Metrics), KernelError> {
        check_splat(splat)?;
        let start = self.event()?;
        self.bufs
            .upload(&self.stream, splat)
            .map_err(GpuError::from)?;
        let uploaded = self.event()?;
        let result = self.render_uploaded(splat.len(), rig, download_views)?;
        if let (Some(a), Some(b)) = (start, uploaded) {
            self.last_times.upload = elapsed(&a, &b)?;
        }
        Ok(result)
    }

    /// The last render's views of `rig`, copied to the host (previews, the CPU scorer): 69 MB
    /// at the validator's 16 views of 518, so only for a render that needs them.
    pub fn download_views(&self, rig: &Rig) -> Result<Views, KernelError> {
        let (views, w, h) = (rig.views(), rig.width, rig.height);
        let raw = self
            .stream
            .clone_dtoh(&self.bufs.image)
            .map_err(GpuError::from)?;
        let len = views * w as usize * h as usize * 4;
        let Some(raw) = raw.get(..len) else {
            return Err(GpuError::Unavailable("no render of this rig's size to download").into());
        };
        let pixels = raw
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2], p[3]])
            .collect();
        Ok(Views {
            views,
            width: w,
            height: h,
            pixels,
        })
    }

    /// Renders and measures the splat already on the device (`n` gaussians).
    pub fn render_uploaded(
        &mut self,
        n: usize,
        rig: &Rig,
        download_views: bool,
    ) -> Result<(Option<Views>, Metrics), KernelError> {
        let views = rig.views();
        let (w, h) = (rig.width, rig.height);
        let tiles_x = w.div_ceil(TILE_SIZE);
        let tiles_y = h.div_ceil(TILE_SIZE);
        let tile_bits = bits_for(tiles_x as usize * tiles_y as usize);
        let view_bits = bits_for(views);
        if tile_bits + view_bits > 32 {
            return Err(GpuError::TooLarge {
                what: "views × tiles",
                needed: views << tile_bits,
                limit: u32::MAX as usize,
            }
            .into());
        }
        let per_view = n.checked_mul(views).filter(|&m| m <= u32::MAX as usize);
        let Some(vn) = per_view else {
            return Err(GpuError::TooLarge {
                what: "views × gaussians",
                needed: n.saturating_mul(views),
                limit: u32::MAX as usize,
            }
            .into());
        };
        let plan = launch::SortPlan::new(launch::DepthSpan::of(rig), view_bits, tile_bits);
        // Nothing is read back before the end: the intersections are counted on the device
        // and sorted into buffers of the capacity they had. A model that needs more shows it
        // in the summary; the buffers grow and the render runs again (once per growth).
        // The first render of a model that needs more room than the buffers have runs again
        // once they have grown; growing covers the count, so a second pass always fits.
        let mut attempt = 0;
        let (summary, times, intersections) = loop {
            let capacity = self.bufs.intersection_capacity(plan.tile.digits());
            let (packed, times) =
                self.run_pipeline(n, vn, rig, &plan, tiles_x, tiles_y, tile_bits, capacity)?;
            let summary = Summary::of(&packed, views);
            let intersections = summary.intersections;
            // Radix look-back words hold counts in 30 bits.
            if intersections >= layout::MAX_INTERSECTIONS {
                return Err(GpuError::TooLarge {
                    what: "tile intersections",
                    needed: usize::try_from(intersections).unwrap_or(usize::MAX),
                    limit: layout::MAX_INTERSECTIONS as usize - 1,
                }
                .into());
            }
            let intersections = intersections as usize;
            if intersections <= capacity {
                break (summary, times, intersections);
            }
            attempt += 1;
            if attempt > 1 {
                return Err(GpuError::Unavailable(
                    "the tile buffers did not grow to the intersection count",
                )
                .into());
            }
            self.bufs
                .ensure_intersections(&self.stream, intersections, plan.tile.digits())
                .map_err(GpuError::from)?;
        };
        // An invalid model rendered nothing (decode_project culled every gaussian); say why.
        summary.check_normalisation()?;
        let metrics = metrics_from(
            &summary.acc,
            &summary.bbox,
            &summary.ssim[..views.saturating_sub(1)],
            summary.floaters,
            n,
            rig,
        );

        let views_out = if download_views {
            Some(self.download_views(rig)?)
        } else {
            None
        };
        self.last_times = StageTimes {
            upload: self.last_times.upload,
            intersections,
            ..times
        };
        Ok((views_out, metrics))
    }

    /// Queues the whole pipeline for `n` gaussians (`vn` view pairs) and reads back the packed
    /// summary ([`Summary`]), the one host read. Tile keys beyond `capacity` are not
    /// written; the caller checks the count.
    #[allow(clippy::too_many_arguments)]
    fn run_pipeline(
        &mut self,
        n: usize,
        vn: usize,
        rig: &Rig,
        plan: &launch::SortPlan,
        tiles_x: u32,
        tiles_y: u32,
        tile_bits: u32,
        capacity: usize,
    ) -> Result<(Vec<f64>, StageTimes), KernelError> {
        let views = rig.views();
        let (w, h) = (rig.width, rig.height);
        let slots = views << tile_bits;
        let t0 = self.event()?;

        // 1. Model statistics; decode_project derives the normalisation and the floater
        //    sphere from them on the device, and the host checks them with the metrics.
        self.bufs
            .ensure_model(&self.stream, n, vn, views, plan.depth.digits())
            .map_err(GpuError::from)?;
        self.bufs
            .upload_cameras(&self.stream, rig)
            .map_err(GpuError::from)?;
        self.kernels
            .model_stats(&self.stream, &mut self.bufs, n)
            .map_err(GpuError::from)?;

        // 2. Decode + normalise + project into every view.
        self.kernels
            .decode_project(&self.stream, &mut self.bufs, n, rig, tiles_x, tiles_y)
            .map_err(GpuError::from)?;
        let t1 = self.event()?;

        // 3. Depth-sort the visible pairs, emit one key per touched tile in that order, sort
        //    those stably by tile, and find each tile's range; the counts stay on the device.
        self.kernels
            .depth_order(&self.stream, &mut self.bufs, n, vn, plan)
            .map_err(GpuError::from)?;
        self.bufs
            .ensure_ranges(&self.stream, slots)
            .map_err(GpuError::from)?;
        self.kernels
            .bin_tiles(
                &self.stream,
                &mut self.bufs,
                n,
                vn,
                capacity,
                tiles_x,
                tile_bits,
                plan,
            )
            .map_err(GpuError::from)?;
        self.kernels
            .tile_ranges(&self.stream, &mut self.bufs, capacity, slots)
            .map_err(GpuError::from)?;
        self.kernels
            .heavy_tiles(
                &self.stream,
                &mut self.bufs,
                capacity,
                slots,
                views * (tiles_x * tiles_y) as usize,
            )
            .map_err(GpuError::from)?;
        let t2 = self.event()?;

        // 4. Rasterise.
        self.bufs
            .ensure_image(&self.stream, views * w as usize * h as usize)
            .map_err(GpuError::from)?;
        self.kernels
            .rasterize(
                &self.stream,
                &mut self.bufs,
                n,
                rig,
                tiles_x,
                tiles_y,
                tile_bits,
            )
            .map_err(GpuError::from)?;
        let t3 = self.event()?;

        // 5. Metrics, packed with everything else the host needs into one copy back.
        self.kernels
            .metrics(&self.stream, &mut self.bufs, rig)
            .map_err(GpuError::from)?;
        let summary = self
            .stream
            .clone_dtoh(&self.bufs.summary)
            .map_err(GpuError::from)?;
        let t4 = self.event()?;
        let mut times = StageTimes::default();
        if let (Some(t0), Some(t1), Some(t2), Some(t3), Some(t4)) = (t0, t1, t2, t3, t4) {
            times.decode_project = elapsed(&t0, &t1)?;
            times.sort = elapsed(&t1, &t2)?;
            times.rasterize = elapsed(&t2, &t3)?;
            times.metrics = elapsed(&t3, &t4)?;
            times.total_on_device = elapsed(&t0, &t4)?;
        }
        Ok((summary, times))
    }

    /// Writes `value` over every output buffer, so a check cannot pass on stale results.
    pub fn poison_outputs(&mut self, value: f32) -> Result<(), GpuError> {
        self.bufs
            .poison(&self.stream, value)
            .map_err(GpuError::from)
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(GpuError::from)
    }

    fn event(&self) -> Result<Option<cudarc::driver::CudaEvent>, GpuError> {
        if !self.profile {
            return Ok(None);
        }
        let event = self
            .ctx
            .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        event.record(&self.stream)?;
        Ok(Some(event))
    }
}

/// Whether the CUDA driver and NVRTC libraries can be loaded.
pub fn probe() -> Result<(), GpuError> {
    // SAFETY: only tries to open the shared libraries.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(GpuError::Unavailable(
            "the CUDA driver library (libcuda) was not found",
        ));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::Unavailable(
            "the NVRTC library (libnvrtc) was not found",
        ));
    }
    Ok(())
}

fn elapsed(
    a: &cudarc::driver::CudaEvent,
    b: &cudarc::driver::CudaEvent,
) -> Result<Duration, GpuError> {
    b.synchronize()?;
    let ms = a.elapsed_ms(b)?;
    Ok(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1000.0))
}

/// Bits needed to number `count` things (at least 1).
fn bits_for(count: usize) -> u32 {
    (usize::BITS - count.saturating_sub(1).leading_zeros()).max(1)
}

fn check_splat(splat: &Splat) -> Result<(), NormaliseError> {
    if splat.is_empty() {
        return Err(NormaliseError::Empty);
    }
    if splat.len() > MAX_GAUSSIANS {
        return Err(NormaliseError::TooMany {
            count: splat.len(),
            max: MAX_GAUSSIANS,
        });
    }
    splat
        .check_shape()
        .map_err(|e| NormaliseError::Shape(e.to_string()))
}

/// The one array a render reads back, as `pack_metrics` (metrics.cu) packs it and
/// `layout::summary` lays it out.
struct Summary {
    /// Per view: count, r, g, b, saturation, laplacian n, sum, sum of squares.
    acc: Vec<f64>,
    /// Per view: min x, min y, max x, max y.
    bbox: Vec<i32>,
    /// Per adjacent pair (and one unused slot).
    ssim: Vec<f64>,
    floaters: u32,
    /// model_stats' sum of every coordinate, and the bounds as ordered-float bits.
    coordinate_sum: f64,
    bounds: [u32; MODEL_BOUNDS_WORDS],
    intersections: u64,
}

impl Summary {
    /// `packed` holds `summary::len(views)` entries (the buffer may hold more).
    fn of(packed: &[f64], views: usize) -> Self {
        let (acc, rest) = packed.split_at(views * VIEW_ACC_WORDS);
        let (bbox, rest) = rest.split_at(views * VIEW_BBOX_WORDS);
        let (ssim, extra) = rest.split_at(views);
        let stats = &extra[summary::STATS..summary::BOUNDS];
        let bounds = &extra[summary::BOUNDS..summary::COUNTS];
        // counts: visible pairs, then the intersections' low and high words.
        let counts = &extra[summary::COUNTS..summary::EXTRA];
        Self {
            acc: acc.to_vec(),
            bbox: bbox.iter().map(|&b| b as i32).collect(),
            ssim: ssim.to_vec(),
            floaters: extra[summary::FLOATERS] as u32,
            coordinate_sum: stats[0],
            bounds: std::array::from_fn(|a| bounds[a] as u32),
            intersections: counts[1] as u64 | ((counts[2] as u64) << 32),
        }
    }

    /// The errors the CPU reference's `normalisation_of` gives, from the statistics
    /// `model_stats` left on the device: decode_project skips the model on the same
    /// conditions.
    fn check_normalisation(&self) -> Result<(), NormaliseError> {
        let lo = std::array::from_fn(|a| launch::ordered_to_float(self.bounds[a]));
        let hi = std::array::from_fn(|a| launch::ordered_to_float(self.bounds[3 + a]));
        checked_extent(self.coordinate_sum, &lo, &hi).map(drop)
    }
}

fn metrics_from(
    acc: &[f64],
    bbox: &[i32],
    ssim: &[f64],
    floaters: u32,
    n: usize,
    rig: &Rig,
) -> Metrics {
    let pixels = rig.pixels_per_view() as f64;
    let views = acc
        .chunks_exact(VIEW_ACC_WORDS)
        .zip(bbox.chunks_exact(VIEW_BBOX_WORDS))
        .map(|(a, b)| {
            if a[0] <= 0.0 {
                return ViewMetrics {
                    bbox: [-1; 4],
                    ..ViewMetrics::default()
                };
            }
            let sharpness = if a[5] > 0.0 {
                let m = a[6] / a[5];
                (a[7] / a[5] - m * m).max(0.0)
            } else {
                0.0
            };
            ViewMetrics {
                coverage: (a[0] / pixels) as f32,
                bbox: [b[0], b[1], b[2], b[3]],
                sharpness: sharpness as f32,
                mean_rgb: [
                    (a[1] / a[0]) as f32,
                    (a[2] / a[0]) as f32,
                    (a[3] / a[0]) as f32,
                ],
                saturation: (a[4] / a[0]) as f32,
            }
        })
        .collect();
    let r = layout::SSIM_R as usize;
    let (w, h) = (rig.width as usize, rig.height as usize);
    let positions = (w.saturating_sub(2 * r) * h.saturating_sub(2 * r) * 3) as f64;
    let adjacent_ssim = ssim
        .iter()
        .map(|s| {
            if positions > 0.0 {
                (s / positions) as f32
            } else {
                1.0
            }
        })
        .collect();
    Metrics {
        views,
        adjacent_ssim,
        floater_fraction: floaters as f32 / n as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::{launch::float_to_ordered, layout::summary, NormaliseError, Summary};

    #[test]
    fn the_summary_is_read_as_pack_metrics_lays_it_out() {
        let views = 3;
        let packed: Vec<f64> = (0..summary::len(views)).map(|i| i as f64).collect();
        let s = Summary::of(&packed, views);
        assert_eq!((s.acc.len(), s.acc[0]), (24, 0.0));
        assert_eq!(s.bbox, (24..36).collect::<Vec<i32>>());
        assert_eq!(s.ssim, [36.0, 37.0, 38.0]);
        assert_eq!(s.floaters, 39);
        // 41..45 are the floater sums, which only the device uses.
        assert_eq!(s.coordinate_sum, 40.0);
        assert_eq!(s.bounds, [46, 47, 48, 49, 50, 51]);
        // 52 is the visible count; then the intersections' low and high words.
        assert_eq!(s.intersections, 53 | (54 << 32));
    }

    #[test]
    fn the_device_statistics_give_the_cpu_reference_s_errors() {
        let views = 1;
        let mut packed = vec![0.0; summary::len(views)];
        let bounds_at = views * summary::PER_VIEW + summary::BOUNDS;
        let put_bounds = |packed: &mut Vec<f64>, lo: f32, hi: f32| {
            for a in 0..3 {
                packed[bounds_at + a] = f64::from(float_to_ordered(lo));
                packed[bounds_at + 3 + a] = f64::from(float_to_ordered(hi));
            }
        };
        put_bounds(&mut packed, -1.0, 2.0);
        assert!(Summary::of(&packed, views).check_normalisation().is_ok());
        put_bounds(&mut packed, 0.5, 0.5);
        assert!(matches!(
            Summary::of(&packed, views).check_normalisation(),
            Err(NormaliseError::DegenerateExtent(_))
        ));
        put_bounds(&mut packed, -1.0, f32::NAN);
        assert!(matches!(
            Summary::of(&packed, views).check_normalisation(),
            Err(NormaliseError::NonFinite)
        ));
        put_bounds(&mut packed, -1.0, 2.0);
        packed[views * summary::PER_VIEW + summary::STATS] = f64::INFINITY;
        assert!(matches!(
            Summary::of(&packed, views).check_normalisation(),
            Err(NormaliseError::NonFinite)
        ));
    }
}
