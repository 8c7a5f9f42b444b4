//! Checks the GPU scorer against the CPU reference and times it (run on a GPU machine; CI
//! only builds it). Random scorer models of the real structure are built in memory (seeded):
//! `tiny` (DINOv2 hidden 32, 2 heads, 2 layers, MLP 128; AlexNet widths 8, 16, 16, 16, 16)
//! and `full` (DINOv2-small: hidden 384, 6 heads, 12 layers, MLP 1536; AlexNet 64, 192,
//! 384, 256, 256), both at patch 14 and 518 px. A few generated splats are rendered with the
//! GPU renderer on the validator's 16-view rig; `GpuScorer::score_render` scores the image
//! buffer in FP32 and TF32 and each per-view / per-pair number is compared with
//! `scorer::cpu::try_score_parts` on the downloaded views (largest absolute and relative
//! difference). Then 16 views at 518 are timed (`--reps`, median and p90) in both precisions.
//! One line per check, then `scorer_check: ok|FAILED`; exit status 1 on a failed tolerance.
//!
//! `scorer_check [--models tiny,full] [--splats 2] [--reps 20] [--no-cpu] [--cpu-views N]
//! [--seed S]` (`--cpu-views`: views compared with the CPU at full size, default 2; the CPU
//! DINOv2-small costs ~0.1 TFLOP a view).

use std::time::Instant;

use rand::SeedableRng;
use splatfleet_kernels::{
    gpu::GpuRenderer,
    scorer::{
        cpu,
        gpu::{GpuScorer, ScorerPrecision},
        model::{
            Conv2d, Dinov2, Dinov2Config, Linear, Lpips, QualityModel, ScorerModels, Tensor,
            VitLayer,
        },
        PartScores, ScoreImages,
    },
    Rig,
};

#[path = "shared/check.rs"]
#[allow(dead_code)]
mod check;
use check::{norm, percentile, Rng};

#[path = "shared/test_splats.rs"]
#[allow(dead_code)]
mod test_splats;
use test_splats::{object_splat, structured_splat};

struct Args {
    models: Vec<String>,
    splats: usize,
    reps: usize,
    cpu: bool,
    cpu_views: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models: vec!["tiny".into(), "full".into()],
        splats: 2,
        reps: 20,
        cpu: true,
        cpu_views: 2,
        seed: 17,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => args.models = value()?.split(',').map(str::to_owned).collect(),
            "--splats" => args.splats = value()?.parse().map_err(|e| format!("--splats: {e}"))?,
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--cpu-views" => {
                args.cpu_views = value()?.parse().map_err(|e| format!("--cpu-views: {e}"))?
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--no-cpu" => args.cpu = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn linear(r: &mut Rng, out: usize, inp: usize) -> Linear {
    Linear {
        weight: Tensor {
            shape: vec![out, inp],
            data: r.vec(out * inp, (3.0 / inp as f32).sqrt()),
        },
        bias: Some(r.vec(out, 0.05)),
    }
}

fn conv(r: &mut Rng, out: usize, inp: usize, k: usize, stride: usize, padding: usize) -> Conv2d {
    Conv2d {
        weight: Tensor {
            shape: vec![out, inp, k, k],
            // He-like scale so ReLU maps neither vanish nor explode through five layers.
            data: r.vec(out * inp * k * k, (6.0 / (inp * k * k) as f32).sqrt()),
        },
        bias: Some(r.vec(out, 0.05)),
        stride,
        padding,
    }
}

fn models(full: bool, seed: u64) -> ScorerModels {
    let mut r = Rng(seed);
    let (hidden, heads, layers, mlp) = if full {
        (384, 6, 12, 1536)
    } else {
        (32, 2, 2, 128)
    };
    let widths = if full {
        [64, 192, 384, 256, 256]
    } else {
        [8, 16, 16, 16, 16]
    };
    let config = Dinov2Config {
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        mlp_hidden: mlp,
        patch_size: 14,
        image_size: 518,
        layer_norm_eps: 1e-6,
    };
    let tokens = config.tokens();
    let layers = (0..layers)
        .map(|_| VitLayer {
            norm1: norm(&mut r, hidden, 1e-6),
            query: linear(&mut r, hidden, hidden),
            key: linear(&mut r, hidden, hidden),
            value: linear(&mut r, hidden, hidden),
            output: linear(&mut r, hidden, hidden),
            layer_scale1: r.around(hidden, 0.3, 0.2),
            norm2: norm(&mut r, hidden, 1e-6),
            fc1: linear(&mut r, mlp, hidden),
            fc2: linear(&mut r, hidden, mlp),
            layer_scale2: r.around(hidden, 0.3, 0.2),
        })
        .collect();
    let backbone = Dinov2 {
        config,
        cls_token: r.vec(hidden, 0.5),
        position_embeddings: r.vec(tokens * hidden, 0.2),
        patch_embed: conv(&mut r, hidden, 3, 14, 14, 0),
        layers,
        final_norm: norm(&mut r, hidden, 1e-6),
    };
    let score_head = linear(&mut r, 1, hidden);
    let convs = [
        conv(&mut r, widths[0], 3, 11, 4, 2),
        conv(&mut r, widths[1], widths[0], 5, 1, 2),
        conv(&mut r, widths[2], widths[1], 3, 1, 1),
        conv(&mut r, widths[3], widths[2], 3, 1, 1),
        conv(&mut r, widths[4], widths[3], 3, 1, 1),
    ];
    let lins = widths.map(|c| r.vec(c, 1.0).into_iter().map(f32::abs).collect());
    ScorerModels {
        quality: QualityModel {
            backbone,
            score_head,
        },
        lpips: Lpips { convs, lins },
    }
}

/// Largest absolute and relative (with an absolute floor) difference of two series.
fn difference(a: &[f64], b: &[f64], floor: f64) -> (f64, f64) {
    a.iter().zip(b).fold((0.0f64, 0.0f64), |(ma, mr), (x, y)| {
        let d = (x - y).abs();
        let rel = d / x.abs().max(y.abs()).max(floor);
        (
            if d.is_nan() { f64::INFINITY } else { ma.max(d) },
            if rel.is_nan() {
                f64::INFINITY
            } else {
                mr.max(rel)
            },
        )
    })
}

fn fmt(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.5}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tolerances per precision: (quality abs, SSIM abs, LPIPS rel).
fn tolerances(p: ScorerPrecision) -> (f64, f64, f64) {
    match p {
        ScorerPrecision::Fp32 => (1e-4, 1e-5, 2e-3),
        ScorerPrecision::Tf32 => (1e-2, 1e-5, 3e-2),
    }
}

fn compare(label: &str, p: ScorerPrecision, gpu: &PartScores, cpu: &PartScores) -> bool {
    let (tq, ts, tl) = tolerances(p);
    let q = difference(&gpu.view_quality, &cpu.view_quality, 1e-3);
    let s = difference(&gpu.pair_ssim, &cpu.pair_ssim, 1e-3);
    let l = difference(&gpu.pair_lpips, &cpu.pair_lpips, 1e-2);
    let ok = q.0 <= tq && s.0 <= ts && l.1 <= tl;
    println!(
        "check {label} {p:?}: quality max abs {:.2e} rel {:.2e}; ssim max abs {:.2e} rel {:.2e}; lpips max abs {:.2e} rel {:.2e} -> {}",
        q.0,
        q.1,
        s.0,
        s.1,
        l.0,
        l.1,
        if ok { "ok" } else { "FAILED" }
    );
    if !ok {
        println!(
            "  gpu quality {}\n  cpu quality {}",
            fmt(&gpu.view_quality),
            fmt(&cpu.view_quality)
        );
        println!(
            "  gpu ssim    {}\n  cpu ssim    {}",
            fmt(&gpu.pair_ssim),
            fmt(&cpu.pair_ssim)
        );
        println!(
            "  gpu lpips   {}\n  cpu lpips   {}",
            fmt(&gpu.pair_lpips),
            fmt(&cpu.pair_lpips)
        );
    }
    ok
}

fn run(args: &Args) -> Result<bool, String> {
    let mut renderer = GpuRenderer::new(0).map_err(|e| format!("no GPU: {e}"))?;
    println!("device: {}  seed: {}", renderer.device_name(), args.seed);
    let rig = Rig::validator();
    let views = rig.views();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut ok = true;
    for name in &args.models {
        let full = match name.as_str() {
            "tiny" => false,
            "full" => true,
            other => return Err(format!("unknown model size {other}")),
        };
        let models = models(full, args.seed ^ 0x5c0e);
        let built = Instant::now();
        let mut scorer = GpuScorer::new(renderer.context(), renderer.stream(), &models)
            .map_err(|e| format!("GpuScorer::new: {e}"))?;
        println!(
            "models {name}: uploaded and compiled in {:.0} ms",
            built.elapsed().as_secs_f64() * 1e3
        );
        let cpu_views = if full {
            args.cpu_views.min(views)
        } else {
            views
        };
        for i in 0..args.splats.max(1) {
            let splat = if i % 2 == 0 {
                object_splat(100_000, &mut rng)
            } else {
                structured_splat(50_000, &mut rng)
            };
            let (rendered, _) = renderer
                .render_and_measure(&splat, &rig, true)
                .map_err(|e| e.to_string())?;
            let rendered = rendered.ok_or("views were asked for")?;
            let images = ScoreImages::from_views(&rendered);
            let mut results = Vec::new();
            for p in [ScorerPrecision::Fp32, ScorerPrecision::Tf32] {
                scorer.set_precision(p);
                let all = scorer
                    .score_render(renderer.image(), views, rig.width, rig.height)
                    .map_err(|e| format!("score_render: {e}"))?;
                let again = scorer
                    .score_render(renderer.image(), views, rig.width, rig.height)
                    .map_err(|e| format!("score_render: {e}"))?;
                let uploaded = scorer
                    .score_images(&images)
                    .map_err(|e| format!("score_images: {e}"))?;
                // The per-block sums reach the device totals in any order: equal to ~1e-15.
                let spread = [&again, &uploaded]
                    .iter()
                    .map(|o| {
                        let d = |a: &[f64], b: &[f64]| difference(a, b, 1e-3).0;
                        d(&all.view_quality, &o.view_quality)
                            .max(d(&all.pair_ssim, &o.pair_ssim))
                            .max(d(&all.pair_lpips, &o.pair_lpips))
                    })
                    .fold(0.0f64, f64::max);
                let same = spread <= 1e-9;
                ok &= same;
                println!(
                    "check {name} splat {i} {p:?}: 16 views: repeat and score_images agree to {spread:.1e} ({}); wrap pair (15, 0) ssim {:.6} lpips {:.3e}; quality {}",
                    if same { "ok" } else { "FAILED" },
                    all.pair_ssim[views - 1],
                    all.pair_lpips[views - 1],
                    fmt(&all.view_quality[..4.min(views)])
                );
                results.push((p, all));
            }
            if args.cpu {
                let subset = ScoreImages {
                    views: cpu_views,
                    width: images.width,
                    height: images.height,
                    rgb8: images.rgb8[..cpu_views * images.pixels_per_view() * 3].to_vec(),
                };
                let started = Instant::now();
                let reference =
                    cpu::try_score_parts(&models, &subset).map_err(|e| e.to_string())?;
                let cpu_ms = started.elapsed().as_secs_f64() * 1e3;
                println!("cpu reference {name} splat {i}: {cpu_views} views in {cpu_ms:.0} ms");
                for (p, all) in &results {
                    let gpu = if cpu_views == views {
                        all.clone()
                    } else {
                        scorer.set_precision(*p);
                        scorer
                            .score_render(renderer.image(), cpu_views, rig.width, rig.height)
                            .map_err(|e| format!("score_render: {e}"))?
                    };
                    ok &= compare(
                        &format!("{name} splat {i} ({cpu_views} views)"),
                        *p,
                        &gpu,
                        &reference,
                    );
                }
            }
        }
        // Timing: 16 views at 518 from the render buffer, both precisions.
        for p in [ScorerPrecision::Fp32, ScorerPrecision::Tf32] {
            scorer.set_precision(p);
            let mut times = Vec::new();
            for _ in 0..args.reps.max(1) + 2 {
                renderer.synchronize().map_err(|e| e.to_string())?;
                let t = Instant::now();
                scorer
                    .score_render(renderer.image(), views, rig.width, rig.height)
                    .map_err(|e| e.to_string())?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let times = times[2..].to_vec();
            println!(
                "time  {name} {p:?}: IQA + SSIM + LPIPS of {views} views at {}x{}: median {:.2} ms, p90 {:.2} ms ({} reps)",
                rig.width,
                rig.height,
                percentile(times.clone(), 0.5),
                percentile(times.clone(), 0.9),
                times.len()
            );
        }
    }
    Ok(ok)
}

fn main() {
    check::finish("scorer_check", parse_args().and_then(|a| run(&a)));
}
