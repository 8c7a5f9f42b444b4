//! Checks the CUDA path against the CPU reference and times it (run on a GPU machine; see
//! `kernels/bench/run.sh`). For each size and kind of splat (fresh random inputs every run,
//! seed printed): GPU outputs poisoned with NaN, rendered on both backends with the
//! validator's 16-view rig, PSNR per view and the largest relative metric difference
//! reported; then the GPU pipeline timed with CUDA events (median of `--reps`). With
//! `--dump DIR` each case's normalised gaussians, cameras and GPU images are written for
//! `gsplat_compare.py`.
//!
//! `gpu_check [--sizes 1000,100000,1000000] [--reps 20] [--dump DIR] [--no-cpu] [--seed S]`

use std::{io::Write, path::PathBuf, time::Instant};

use rand::SeedableRng;
use splatfleet_common::splat::Splat;
use splatfleet_kernels::{
    cpu, decode_normalise, gaussians::floater_fraction, gpu::GpuRenderer, KernelError, Metrics,
    NormaliseError, Rig, Views,
};

#[path = "shared/test_splats.rs"]
mod test_splats;
use test_splats::{object_splat, random_splat, structured_splat};

struct Args {
    sizes: Vec<usize>,
    reps: usize,
    dump: Option<PathBuf>,
    cpu: bool,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sizes: vec![1_000, 100_000, 1_000_000],
        reps: 20,
        dump: None,
        cpu: true,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--dump" => args.dump = Some(PathBuf::from(value()?)),
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--no-cpu" => args.cpu = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn metric_difference(a: &Metrics, b: &Metrics) -> (f64, String) {
    let (fa, fb) = (a.flatten(), b.flatten());
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in fa.iter().zip(fb.iter()) {
        // Relative, with an absolute floor so near-zero values compare sensibly.
        let d = (x - y).abs() / x.abs().max(y.abs()).max(1e-3);
        if d > worst.0 {
            worst = (d, format!("{name}: cpu {x} gpu {y}"));
        }
    }
    worst
}

fn dump_case(
    dir: &PathBuf,
    name: &str,
    splat: &Splat,
    rig: &Rig,
    views: &Views,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let Ok((g, _)) = decode_normalise(splat) else {
        return Ok(());
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.bin")))?);
    let mut put = |vals: &mut dyn Iterator<Item = f32>| -> std::io::Result<()> {
        for v in vals {
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    };
    put(&mut g.means.iter().flatten().copied())?;
    put(&mut g.quats.iter().flatten().copied())?;
    put(&mut g.scales.iter().flatten().copied())?;
    put(&mut g.opacities.iter().copied())?;
    put(&mut g.colors.iter().flatten().copied())?;
    for cam in &rig.cameras {
        let r = cam.rotation;
        let t = cam.translation;
        let m = [
            r[0][0], r[0][1], r[0][2], t[0], r[1][0], r[1][1], r[1][2], t[1], r[2][0], r[2][1],
            r[2][2], t[2], 0.0, 0.0, 0.0, 1.0,
        ];
        put(&mut m.into_iter())?;
    }
    for cam in &rig.cameras {
        put(&mut [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0].into_iter())?;
    }
    put(&mut views.pixels.iter().flatten().copied())?;
    drop(out);
    std::fs::write(
        dir.join(format!("{name}.json")),
        format!(
            r#"{{"n": {}, "views": {}, "width": {}, "height": {}}}"#,
            splat.len(),
            rig.views(),
            rig.width,
            rig.height
        ),
    )
}

/// The GPU path must give the CPU reference's typed errors for models it cannot normalise,
/// and render normally afterwards.
fn check_invalid_models(gpu: &mut GpuRenderer, rig: &Rig) -> Result<(), String> {
    let mut flat = Splat::zeroed(64, 0, false);
    let degenerate = gpu.render_and_measure(&flat, rig, false);
    flat.positions[7] = [f32::NAN, 0.0, 0.0];
    let non_finite = gpu.render_and_measure(&flat, rig, false);
    let ok = matches!(
        degenerate,
        Err(KernelError::Normalise(NormaliseError::DegenerateExtent(_)))
    ) && matches!(
        non_finite,
        Err(KernelError::Normalise(NormaliseError::NonFinite))
    );
    println!(
        "check invalid models: all at one point -> {:?}; a NaN position -> {:?}",
        degenerate.err(),
        non_finite.err()
    );
    if ok {
        Ok(())
    } else {
        Err("invalid models did not give the CPU reference's errors".into())
    }
}

/// Buffers grow and are reused, and the tile sort's count never leaves the device: the same
/// splat must render to the same pixels whether it comes first (its first render runs twice,
/// once to learn the count), after a much larger model, or after a smaller one.
fn check_history_independence(
    gpu: &mut GpuRenderer,
    rig: &Rig,
    rng: &mut rand::rngs::StdRng,
) -> Result<(), String> {
    let small = random_splat(100_000, rng);
    let large = random_splat(1_000_000, rng);
    let tiny = structured_splat(1_000, rng);
    let mut renders = Vec::new();
    for splat in [&small, &large, &small, &tiny, &small] {
        gpu.poison_outputs(f32::NAN).map_err(|e| e.to_string())?;
        let (views, metrics) = gpu
            .render_and_measure(splat, rig, true)
            .map_err(|e| e.to_string())?;
        renders.push((views.ok_or("views were asked for")?, metrics));
    }
    let (first, first_metrics) = &renders[0];
    let mut worst = 0.0f64;
    let mut same = true;
    for (views, metrics) in [&renders[2], &renders[4]] {
        same &= views
            .pixels
            .iter()
            .zip(&first.pixels)
            .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        worst = worst.max(metric_difference(first_metrics, metrics).0);
    }
    println!(
        "check history: 100 k random rendered first, after 1 M and after 1 k: pixels identical {same}, worst metric rel diff {worst:.1e}"
    );
    if same && worst < 1e-9 {
        Ok(())
    } else {
        Err("a render depended on what was rendered before it".into())
    }
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let mut gpu = GpuRenderer::new(0).map_err(|e| format!("no GPU: {e}"))?;
    println!(
        "device: {}  seed: {}  reps: {}",
        gpu.device_name(),
        args.seed,
        args.reps
    );
    let rig = Rig::validator();
    check_invalid_models(&mut gpu, &rig)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    if args.cpu {
        check_history_independence(&mut gpu, &rig, &mut rng)?;
    }
    for &n in &args.sizes {
        for kind in ["random", "structured", "object"] {
            let splat = match kind {
                "random" => random_splat(n, &mut rng),
                "structured" => structured_splat(n, &mut rng),
                _ => object_splat(n, &mut rng),
            };
            gpu.poison_outputs(f32::NAN).map_err(|e| e.to_string())?;
            let (gpu_views, gpu_metrics) = gpu
                .render_and_measure(&splat, &rig, true)
                .map_err(|e| e.to_string())?;
            let gpu_views = gpu_views.ok_or("views were asked for")?;
            let poisoned = gpu_views
                .pixels
                .iter()
                .flatten()
                .filter(|v| v.is_nan())
                .count();
            if args.cpu {
                let started = Instant::now();
                let (g, _) = decode_normalise(&splat).map_err(|e| e.to_string())?;
                let cpu_views = cpu::render(&g, &rig);
                let cpu_metrics = cpu::measure(&cpu_views, floater_fraction(&splat));
                let cpu_time = started.elapsed();
                let psnr: Vec<f64> = (0..rig.views())
                    .map(|v| gpu_views.psnr(&cpu_views, v))
                    .collect();
                let min_psnr = psnr.iter().copied().fold(f64::INFINITY, f64::min);
                let (worst, what) = metric_difference(&cpu_metrics, &gpu_metrics);
                println!(
                    "check {kind:>10} n={n:>8}: min PSNR gpu vs cpu {min_psnr:.1} dB (per view {}), worst metric rel diff {worst:.2e} ({what}), NaN pixels left {poisoned}, cpu reference {:.0} ms ({} threads)",
                    psnr.iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(" "),
                    cpu_time.as_secs_f64() * 1e3,
                    rayon::current_num_threads()
                );
            } else {
                println!("check {kind:>10} n={n:>8}: NaN pixels left {poisoned} (CPU comparison skipped)");
            }
            if let Some(dir) = &args.dump {
                dump_case(dir, &format!("{kind}_{n}"), &splat, &rig, &gpu_views)
                    .map_err(|e| e.to_string())?;
            }
            // Timing: splat already on the device, as gsplat's inputs are.
            gpu.profile = true;
            let mut totals = Vec::new();
            let mut stages = Vec::new();
            for _ in 0..args.reps.max(1) + 2 {
                gpu.render_uploaded(n, &rig, false)
                    .map_err(|e| e.to_string())?;
                let t = gpu.last_times();
                totals.push(t.total_on_device.as_secs_f64() * 1e3);
                stages.push(t);
            }
            gpu.profile = false;
            let (totals, stages) = (totals[2..].to_vec(), stages[2..].to_vec());
            let stage = |f: &dyn Fn(&splatfleet_kernels::gpu::StageTimes) -> f64| {
                median(stages.iter().map(f).collect())
            };
            println!(
                "time  {kind:>10} n={n:>8}: decode+normalise+render+metrics median {:.3} ms (decode+project {:.3}, bin+sort {:.3}, rasterize {:.3}, metrics {:.3}); {} intersections; upload {:.3} ms",
                median(totals),
                stage(&|t| t.decode_project.as_secs_f64() * 1e3),
                stage(&|t| t.sort.as_secs_f64() * 1e3),
                stage(&|t| t.rasterize.as_secs_f64() * 1e3),
                stage(&|t| t.metrics.as_secs_f64() * 1e3),
                stages.last().map_or(0, |t| t.intersections),
                gpu.last_times().upload.as_secs_f64() * 1e3,
            );
        }
    }
    Ok(())
}
