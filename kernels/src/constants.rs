//! Numbers the CPU reference and the CUDA kernels share, each with where it comes from. The
//! CUDA sources receive them as `#define`s generated from these constants, so the two paths
//! cannot drift apart; the prelude also carries the launch and buffer layout the host and the
//! kernels share (`gpu::layout`).

/// SH band-0 constant: DC colour = 0.5 + SH_C0 · f_dc (three-gen-subnet `validation/engine/io/ply/loader.py`).
pub const SH_C0: f32 = 0.282_094_8;
/// The validator rescales models so the largest bounding-box side is this long (`gs_utils.py`, `ref_bbox_size`).
pub const REF_BBOX_SIZE: f32 = 1.5;
/// Added to both diagonal entries of each projected 2D covariance (gsplat `rasterization`, `eps2d`).
pub const EPS2D: f32 = 0.3;
/// Largest alpha one gaussian may contribute (gsplat 1.5.3 `RasterizeToPixels3DGSFwd.cu`: `min(0.999f, …)`).
pub const ALPHA_MAX: f32 = 0.999;
/// Contributions under this alpha are skipped (gsplat `ALPHA_THRESHOLD`, 1/255).
pub const ALPHA_MIN: f32 = 1.0 / 255.0;
/// A pixel stops blending once transmittance would fall to this (exclusive; gsplat).
pub const T_MIN: f32 = 1e-4;
/// Largest bounding-box extent in standard deviations (gsplat projection, `extend = 3.33f`).
pub const EXTEND_MAX: f32 = 3.33;
/// Side of a square screen tile, pixels (gsplat's default `tile_size`).
pub const TILE_SIZE: u32 = 16;
/// Epsilon of `torch.nn.functional.normalize`, which the validator uses on quaternions.
pub const QUAT_NORM_EPS: f32 = 1e-12;
/// A pixel belongs to the silhouette when its alpha reaches this.
pub const SILHOUETTE_ALPHA: f32 = 0.5;
/// A gaussian is a floater when its distance from the opacity-weighted centre exceeds this
/// many opacity-weighted RMS radii.
pub const FLOATER_RMS_FACTOR: f32 = 3.0;
/// SSIM window side and Gaussian sigma (torchmetrics defaults).
pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f32 = 1.5;
/// SSIM stabilisers for a data range of 1 (torchmetrics: (0.01·L)², (0.03·L)²).
pub const SSIM_C1: f32 = 0.01 * 0.01;
pub const SSIM_C2: f32 = 0.03 * 0.03;
/// The scorer's DINOv2 input normalisation: ImageNet's mean and std (the validator's
/// `quality_model.py`, torchvision `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// LPIPS's input side: the validator resizes each view to this (bicubic) before LPIPS.
pub const LPIPS_SIZE: usize = 256;
/// LPIPS's scaling layer (torchmetrics `ScalingLayer`): (x - shift) / scale on [-1, 1] input.
pub const LPIPS_SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
pub const LPIPS_SCALE: [f32; 3] = [0.458, 0.448, 0.450];
/// torchmetrics 1.5.1 `_normalize_tensor`: f / sqrt(eps + sum over channels of f²).
pub const LPIPS_NORM_EPS: f32 = 1e-8;
/// PyTorch's bicubic convolution constant (`upsample_bicubic2d`, A = -0.75).
pub const BICUBIC_A: f32 = -0.75;
/// Most gaussians the renderer accepts.
pub const MAX_GAUSSIANS: usize = 10_000_000;

/// Float bits mapped so that unsigned order is float order, and back (as
/// `gpu::launch::float_to_ordered` on the host): the kernels' bounds and depth keys.
const ORDERED_FLOAT_HELPERS: &str = "\
__device__ __forceinline__ unsigned int float_to_ordered(float f) {
    unsigned int u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float ordered_to_float(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}
";

/// The constants and the layout (`gpu::layout`) as C `#define`s, prepended to every CUDA
/// source, and the helpers more than one source uses.
pub fn cuda_prelude() -> String {
    // Shortest round-trip digits, so the kernel's float literals are the same floats.
    let weights = ssim_window()
        .iter()
        .map(|w| format!("{w:e}f"))
        .collect::<Vec<_>>()
        .join(", ");
    let list = |v: &[f32; 3]| {
        v.iter()
            .map(|x| format!("{x:e}f"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scorer = format!(
        "#define IMAGENET_MEAN {}\n#define IMAGENET_STD {}\n#define LPIPS_SHIFT {}\n\
         #define LPIPS_SCALE {}\n#define LPIPS_NORM_EPS {LPIPS_NORM_EPS:e}f\n\
         #define BICUBIC_A ({BICUBIC_A:e}f)\n",
        list(&IMAGENET_MEAN),
        list(&IMAGENET_STD),
        list(&LPIPS_SHIFT),
        list(&LPIPS_SCALE)
    );
    format!(
        "#define SH_C0 {SH_C0:e}f\n#define EPS2D {EPS2D:e}f\n#define ALPHA_MAX {ALPHA_MAX:e}f\n\
         #define ALPHA_MIN ({ALPHA_MIN:e}f)\n#define T_MIN {T_MIN:e}f\n#define EXTEND_MAX {EXTEND_MAX:e}f\n\
         #define TILE_SIZE {TILE_SIZE}\n#define QUAT_NORM_EPS {QUAT_NORM_EPS:e}f\n\
         #define SILHOUETTE_ALPHA {SILHOUETTE_ALPHA:e}f\n#define REF_BBOX_SIZE {REF_BBOX_SIZE:e}f\n#define FLOATER_RMS_FACTOR {FLOATER_RMS_FACTOR:e}f\n\
         #define SSIM_WINDOW {SSIM_WINDOW}\n#define SSIM_C1 {SSIM_C1:e}f\n#define SSIM_C2 {SSIM_C2:e}f\n\
         #define SSIM_WEIGHTS {weights}\n{scorer}{layout}{ORDERED_FLOAT_HELPERS}",
        layout = crate::gpu::layout::cuda_defines()
    )
}

/// The normalised 1D Gaussian window of SSIM (torchmetrics `_gaussian`).
pub fn ssim_window() -> [f32; SSIM_WINDOW] {
    let mut w = [0f32; SSIM_WINDOW];
    let half = (SSIM_WINDOW as f32 - 1.0) / 2.0;
    let mut sum = 0f32;
    for (i, v) in w.iter_mut().enumerate() {
        let x = i as f32 - half;
        *v = (-(x * x) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
        sum += *v;
    }
    for v in &mut w {
        *v /= sum;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::{cuda_prelude, ssim_window};

    #[test]
    fn the_kernels_ssim_weights_are_the_reference_s_floats() {
        let prelude = cuda_prelude();
        let line = prelude
            .lines()
            .find_map(|l| l.strip_prefix("#define SSIM_WEIGHTS "))
            .expect("the prelude defines SSIM_WEIGHTS");
        let parsed: Vec<f32> = line
            .split(", ")
            .map(|w| w.trim_end_matches('f').parse().expect("a float literal"))
            .collect();
        assert_eq!(parsed, ssim_window());
        assert!((parsed.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
