//! The scorer's half of the parity run on the GPU machine (`kernels/bench/scorer_run.sh`):
//! loads the models an operator would download (here random weights saved by the real
//! libraries), renders object-shaped splats (a few dense clusters of small gaussians) at the
//! validator's 16 views × 518 px, writes each view as the validator's 8-bit PNG for the
//! PyTorch reference, and scores them on the GPU (fp32 and the fast path) and on the CPU
//! reference. Writes `ours_gpu_fp32.json`, `ours_gpu_fast.json`, `ours_cpu.json` (the
//! numbers and the CLS embeddings), each model as `cases/<case>/model.ply`, and prints the GPU
//! times, median of `--reps`.
//!
//! `scorer_parity --models DIR --out DIR [--cases N] [--reps N] [--warmup N] [--chunks 96,1,2,4]
//! [--no-cpu]`

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use rand::{rngs::StdRng, SeedableRng};
use serde_json::{json, Value};
#[path = "shared/test_splats.rs"]
#[allow(dead_code)]
mod test_splats;

use splatfleet_kernels::{
    scorer::{
        cpu, gpu::ScorerPrecision, model::ScorerModels, ModelsDir, PartScores, ScoreImages, Scorer,
        ValidatorScore,
    },
    Backend, OrbitSpec, Renderer, Rig,
};

struct Args {
    models: PathBuf,
    out: PathBuf,
    cases: usize,
    reps: usize,
    warmup: usize,
    chunks: Vec<usize>,
    cpu: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        models: PathBuf::new(),
        out: PathBuf::from("/tmp/scorer/ours"),
        cases: 4,
        reps: 20,
        warmup: 3,
        chunks: Vec::new(),
        cpu: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => a.models = PathBuf::from(value()?),
            "--out" => a.out = PathBuf::from(value()?),
            "--cases" => a.cases = value()?.parse().map_err(|e| format!("--cases: {e}"))?,
            "--reps" => a.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--chunks" => {
                a.chunks = value()?
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--chunks: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--no-cpu" => a.cpu = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn write_png(path: &std::path::Path, w: u32, h: u32, rgb: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())
}

fn case_json(parts: &PartScores, cls: &[Vec<f32>], tolerance: (f64, f64)) -> Value {
    let score = ValidatorScore::aggregate(parts.clone(), 1.0, true);
    json!({
        "view_quality": parts.view_quality, "pair_ssim": parts.pair_ssim,
        "pair_lpips": parts.pair_lpips, "cls": cls,
        "iqa": score.iqa, "ssim": score.ssim, "lpips": score.lpips, "score": score.score,
        "cls_tolerance": tolerance.0, "score_tolerance": tolerance.1,
    })
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let a = args()?;
    let started = Instant::now();
    let models: Arc<ScorerModels> = Arc::new(
        ModelsDir::new(a.models.clone())
            .load()
            .map_err(|e| e.to_string())?,
    );
    println!("parity: models loaded in {:.2?}", started.elapsed());
    let rig = Rig::orbit(&OrbitSpec::validator_sized(16, 518, 518));
    let mut renderer = Renderer::new(0);
    if let Backend::Cpu { reason } = renderer.backend() {
        return Err(format!(
            "no CUDA renderer ({reason}): this check runs on the GPU machine"
        ));
    }
    let mut scorer = Scorer::for_renderer(models.clone(), &renderer).map_err(|e| e.to_string())?;
    let cases_dir = a.out.join("cases");
    std::fs::create_dir_all(&cases_dir).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(20261203);
    let (mut fp32, mut fast, mut cpu_out) = (json!({}), json!({}), json!({}));
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for case in 0..a.cases {
        let n = [200_000, 500_000, 100_000, 1_000_000][case % 4];
        let splat = test_splats::object_splat(n, &mut rng);
        let name = format!("case{case}_{}k", n / 1000);
        let mut per_precision = Vec::new();
        for precision in [ScorerPrecision::Fp32, ScorerPrecision::Tf32] {
            scorer.set_precision(precision);
            let (views, _, parts) = renderer
                .render_and_score(&splat, &rig, &mut scorer, true)
                .map_err(|e| e.to_string())?;
            let cls = scorer
                .last_cls_embeddings(rig.views())
                .map_err(|e| e.to_string())?
                .ok_or("the scorer is not on the GPU")?;
            per_precision.push((precision, parts, cls, views));
        }
        let views = per_precision[0]
            .3
            .clone()
            .ok_or("views were not downloaded")?;
        let images = ScoreImages::from_views(&views);
        let dir = cases_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The model itself, for `splatfleet-worker score` on the same machine.
        let ply = splatfleet_common::splat::write_ply(&splat).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("model.ply"), ply).map_err(|e| e.to_string())?;
        for v in 0..images.views {
            write_png(
                &dir.join(format!("view_{v:02}.png")),
                images.width,
                images.height,
                images.view(v),
            )?;
        }
        for (precision, parts, cls, _) in &per_precision {
            let (target, tol) = match precision {
                ScorerPrecision::Fp32 => (&mut fp32, (1e-3, 0.005)),
                ScorerPrecision::Tf32 => (&mut fast, (1e-2, 0.01)),
            };
            target[&name] = case_json(parts, cls, tol);
        }
        if a.cpu {
            let t = Instant::now();
            let parts = cpu::try_score_parts(&models, &images).map_err(|e| e.to_string())?;
            let cls =
                cpu::quality_embeddings(&models.quality, &images).map_err(|e| e.to_string())?;
            println!("parity: {name}: CPU reference {:.2?}", t.elapsed());
            cpu_out[&name] = case_json(&parts, &cls, (1e-3, 0.005));
        }
        // Times of the score alone, from the render already on the device.
        for precision in [ScorerPrecision::Fp32, ScorerPrecision::Tf32] {
            scorer.set_precision(precision);
            let key = match precision {
                ScorerPrecision::Fp32 => "fp32",
                ScorerPrecision::Tf32 => "tf32",
            };
            let mut t = Vec::new();
            for rep in 0..a.reps + a.warmup {
                let t0 = Instant::now();
                scorer
                    .rescore_last_render(&renderer, &rig)
                    .map_err(|e| e.to_string())?
                    .ok_or("the scorer is not on the GPU")?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                if rep >= a.warmup {
                    t.push(ms);
                }
            }
            println!(
                "parity: {name}: GPU score {key}: median {:.3} ms",
                median_ms(t.clone())
            );
            times.entry(key).or_default().extend(t);
        }
    }
    // The attention chunk (view, head pairs per step) against the score's time, on the last
    // render; then back to the default.
    for &chunk in &a.chunks {
        scorer
            .set_attention_chunk(Some(chunk))
            .map_err(|e| e.to_string())?;
        for precision in [ScorerPrecision::Fp32, ScorerPrecision::Tf32] {
            scorer.set_precision(precision);
            let mut t = Vec::new();
            for rep in 0..a.reps + a.warmup {
                let t0 = Instant::now();
                scorer
                    .rescore_last_render(&renderer, &rig)
                    .map_err(|e| e.to_string())?;
                if rep >= a.warmup {
                    t.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            if !t.is_empty() {
                println!(
                    "parity: attention chunk {chunk:3}, {precision:?}: median {:.3} ms",
                    median_ms(t)
                );
            }
        }
    }
    let write = |file: &str, cases: Value| -> Result<(), String> {
        let path = a.out.join(file);
        std::fs::write(&path, json!({ "cases": cases }).to_string())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    write("ours_gpu_fp32.json", fp32)?;
    write("ours_gpu_fast.json", fast)?;
    if a.cpu {
        write("ours_cpu.json", cpu_out)?;
    }
    for (key, t) in times.into_iter().filter(|(_, t)| !t.is_empty()) {
        println!("parity: GPU IQA + SSIM + LPIPS of 16 views at 518, {key}: median {:.3} ms over {} runs", median_ms(t.clone()), t.len());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parity: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
