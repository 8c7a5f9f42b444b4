//! Checks the GPU alignment towers against their CPU references and times them (run on a
//! GPU machine; CI only builds it). Random models of the real structure are built in memory
//! (seeded splitmix64):
//!
//! - text task, open_clip `convnext_large_d`: `tiny` (stem 4, kernel 7, dims 8/16/24/32,
//!   depths 1/1/2/1, embed 16; text width 32, 2 layers, 2 heads, vocabulary 520) and `full`
//!   (dims 192/384/768/1536, depths 3/3/27/3, head 1536, embed 768; text width 768, 16
//!   layers, 12 heads, MLP 3072, vocabulary 49408);
//! - image task, LLM2CLIP's vision tower: `tiny` (width 64, 2 layers, 4 heads, MLP 128,
//!   patch 14 at 112, projection 32) and `full` (CLIP ViT-L/14-336: width 1024, 24 layers, 16
//!   heads, MLP 4096, projection 1280, quick GELU).
//!
//! An object-like splat is rendered on the validator's 16-view rig (518²); each tower
//! encodes the views from the render buffer in place (`encode_views_from_render`) and from
//! the downloaded 8-bit views (`encode_views`, must agree to 1e-6), a 12-token and a 76-token
//! prompt (text) and a 300×220 prompt image (image), in FP32, TF32 and FP16 GEMMs. Each
//! embedding is compared with the CPU reference's (normalised): the largest
//! ‖gpu − cpu‖ / ‖cpu‖ over the views, the prompt, and the alignment score's difference.
//! `full` compares `--cpu-views` views (default 2; the CPU costs seconds a view). Then each
//! tower and each task's whole alignment (views from the render + the prompt) are timed:
//! median and p90 of `--reps` after 2 warm-ups (synchronised wall time). One line per check,
//! a JSON summary line (`json {...}`), then `alignment_check: ok|FAILED` (exit status 1 on
//! a failed bound: FP32 1e-3, TF32 2e-2, FP16 5e-3 relative; FP16 is FP16 weights and
//! activations in the products with a weight, FP32 accumulation).
//!
//! ```sh
//! cargo build --release -p splatfleet-kernels --example alignment_check
//! alignment_check [--models tiny,full] [--towers text,image] [--reps 20] [--cpu-views 2]
//!                 [--no-cpu] [--seed 17]
//! compute-sanitizer --tool memcheck alignment_check --memcheck   # tiny, 1 rep, all checks
//! ```

use std::time::Instant;

use rand::SeedableRng;
use serde_json::{json, Value};
use splatfleet_kernels::{
    gpu::GpuRenderer,
    scorer::{
        aggregate,
        convnext_clip::{
            model::{
                ConvnextBlock, ConvnextStage, ConvnextTower, TextLayer, TextTower,
                CONVNEXT_NORM_EPS, TEXT_NORM_EPS,
            },
            ClipConfig, ConvnextClip,
        },
        gpu::alignment::{cosines, AlignmentPrecision, GpuImageAlignment, GpuTextAlignment},
        llm2clip::{
            self,
            files::{Activation, ClipLayer, Llm2ClipVision, VisionConfig},
            PromptImage,
        },
        model::{Conv2d, Linear, Tensor},
        ScoreImages,
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
use test_splats::object_splat;

const PRECISIONS: [AlignmentPrecision; 3] = [
    AlignmentPrecision::Fp32,
    AlignmentPrecision::Tf32,
    AlignmentPrecision::Fp16,
];

fn bound(p: AlignmentPrecision) -> f64 {
    match p {
        AlignmentPrecision::Fp32 => 1e-3,
        AlignmentPrecision::Tf32 => 2e-2,
        AlignmentPrecision::Fp16 => 5e-3,
    }
}

struct Args {
    models: Vec<String>,
    towers: Vec<String>,
    reps: usize,
    cpu: bool,
    cpu_views: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models: vec!["tiny".into(), "full".into()],
        towers: vec!["text".into(), "image".into()],
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
            "--towers" => args.towers = value()?.split(',').map(str::to_owned).collect(),
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--cpu-views" => {
                args.cpu_views = value()?.parse().map_err(|e| format!("--cpu-views: {e}"))?
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--no-cpu" => args.cpu = false,
            "--memcheck" => {
                args.models = vec!["tiny".into()];
                args.reps = 1;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn tensor(r: &mut Rng, shape: Vec<usize>, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape,
        data: r.vec(n, scale),
    }
}

fn linear(r: &mut Rng, out: usize, inp: usize, bias: bool) -> Linear {
    Linear {
        weight: tensor(r, vec![out, inp], (3.0 / inp as f32).sqrt()),
        bias: bias.then(|| r.vec(out, 0.05)),
    }
}

fn clip_config(full: bool) -> ClipConfig {
    if full {
        ClipConfig {
            stem_patch: 4,
            kernel: 7,
            dims: vec![192, 384, 768, 1536],
            depths: vec![3, 3, 27, 3],
            mlp_hidden: vec![768, 1536, 3072, 6144],
            downsample: 2,
            head_hidden: 1536,
            head_fc2_bias: false,
            embed: 768,
            text_width: 768,
            text_layers: 16,
            text_heads: 12,
            text_mlp: 3072,
            context: 77,
            vocab: 49408,
        }
    } else {
        ClipConfig {
            stem_patch: 4,
            kernel: 7,
            dims: vec![8, 16, 24, 32],
            depths: vec![1, 1, 2, 1],
            mlp_hidden: vec![32, 64, 96, 128],
            downsample: 2,
            head_hidden: 32,
            head_fc2_bias: false,
            embed: 16,
            text_width: 32,
            text_layers: 2,
            text_heads: 2,
            text_mlp: 128,
            context: 77,
            vocab: 520,
        }
    }
}

fn convnext_clip(full: bool, seed: u64) -> ConvnextClip {
    let c = clip_config(full);
    let mut r = Rng(seed);
    let (k, p, d) = (c.kernel, c.stem_patch, c.downsample);
    let stem = linear(&mut r, c.dims[0], 3 * p * p, true);
    let stem_norm = norm(&mut r, c.dims[0], CONVNEXT_NORM_EPS);
    let mut stages = Vec::new();
    let mut prev = c.dims[0];
    for (s, (&dim, &depth)) in c.dims.iter().zip(&c.depths).enumerate() {
        let downsample = (s > 0).then(|| {
            (
                norm(&mut r, prev, CONVNEXT_NORM_EPS),
                linear(&mut r, dim, prev * d * d, true),
            )
        });
        let blocks = (0..depth)
            .map(|_| ConvnextBlock {
                dw_weight: r.vec(dim * k * k, (3.0 / (k * k) as f32).sqrt()),
                dw_bias: r.vec(dim, 0.05),
                norm: norm(&mut r, dim, CONVNEXT_NORM_EPS),
                fc1: linear(&mut r, c.mlp_hidden[s], dim, true),
                fc2: linear(&mut r, dim, c.mlp_hidden[s], true),
                gamma: r.around(dim, 0.15, 0.1),
            })
            .collect();
        stages.push(ConvnextStage { downsample, blocks });
        prev = dim;
    }
    let visual = ConvnextTower {
        stem,
        stem_norm,
        stages,
        head_norm: norm(&mut r, prev, CONVNEXT_NORM_EPS),
        proj_fc1: linear(&mut r, c.head_hidden, prev, true),
        proj_fc2: linear(&mut r, c.embed, c.head_hidden, c.head_fc2_bias),
    };
    let w = c.text_width;
    let layers = (0..c.text_layers)
        .map(|_| TextLayer {
            ln_1: norm(&mut r, w, TEXT_NORM_EPS),
            in_proj: linear(&mut r, 3 * w, w, true),
            out_proj: linear(&mut r, w, w, true),
            ln_2: norm(&mut r, w, TEXT_NORM_EPS),
            c_fc: linear(&mut r, c.text_mlp, w, true),
            c_proj: linear(&mut r, w, c.text_mlp, true),
        })
        .collect();
    let text = TextTower {
        token_embedding: tensor(&mut r, vec![c.vocab, w], 0.5),
        positional_embedding: tensor(&mut r, vec![c.context, w], 0.2),
        layers,
        heads: c.text_heads,
        ln_final: norm(&mut r, w, TEXT_NORM_EPS),
        projection: tensor(&mut r, vec![w, c.embed], (3.0 / w as f32).sqrt()),
    };
    ConvnextClip {
        config: c,
        visual,
        text,
    }
}

fn llm2clip_model(full: bool, seed: u64) -> Llm2ClipVision {
    let config = if full {
        VisionConfig {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            patch_size: 14,
            image_size: 336,
            layer_norm_eps: 1e-5,
            activation: Activation::QuickGelu,
            projection_dim: 1280,
        }
    } else {
        VisionConfig {
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 128,
            patch_size: 14,
            image_size: 112,
            layer_norm_eps: 1e-5,
            activation: Activation::QuickGelu,
            projection_dim: 32,
        }
    };
    let mut r = Rng(seed);
    let (h, m, p) = (
        config.hidden_size,
        config.intermediate_size,
        config.patch_size,
    );
    let eps = config.layer_norm_eps;
    let layers = (0..config.num_hidden_layers)
        .map(|_| ClipLayer {
            layer_norm1: norm(&mut r, h, eps),
            q_proj: linear(&mut r, h, h, true),
            k_proj: linear(&mut r, h, h, true),
            v_proj: linear(&mut r, h, h, true),
            out_proj: linear(&mut r, h, h, true),
            layer_norm2: norm(&mut r, h, eps),
            fc1: linear(&mut r, m, h, true),
            fc2: linear(&mut r, h, m, true),
        })
        .collect();
    Llm2ClipVision {
        config,
        class_embedding: r.vec(h, 0.5),
        patch_embedding: Conv2d {
            weight: tensor(&mut r, vec![h, 3, p, p], (3.0 / (3 * p * p) as f32).sqrt()),
            bias: None,
            stride: p,
            padding: 0,
        },
        position_embedding: r.vec(config.tokens() * h, 0.2),
        pre_layrnorm: norm(&mut r, h, eps),
        layers,
        post_layernorm: norm(&mut r, h, eps),
        visual_projection: linear(&mut r, config.projection_dim, h, false),
    }
}

/// A prompt of `tokens` tokens between SOT and EOT (the two largest ids), padded with 0.
fn prompt_ids(r: &mut Rng, vocab: usize, context: usize, tokens: usize) -> Vec<u32> {
    let mut ids = vec![0u32; context];
    ids[0] = (vocab - 2) as u32;
    let n = tokens.min(context - 2);
    for id in ids.iter_mut().skip(1).take(n) {
        *id = 1 + r.below(vocab as u64 - 3) as u32;
    }
    ids[n + 1] = (vocab - 1) as u32;
    ids
}

/// A 300×220 RGB prompt image: a shaded disc on a gradient.
fn prompt_image() -> PromptImage {
    let (w, h) = (300usize, 220usize);
    let mut rgb8 = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - 140.0, y as f32 - 115.0);
            let inside = dx * dx + dy * dy < 80.0 * 80.0;
            let px = if inside {
                [200 - (dy as i32).clamp(-80, 80) as u8 / 2, 90, 40]
            } else {
                [(x * 255 / w) as u8, (y * 255 / h) as u8, 230]
            };
            rgb8.extend(px);
        }
    }
    PromptImage {
        width: w,
        height: h,
        rgb8,
    }
}

fn normalised(x: &[f32]) -> Vec<f32> {
    let n = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    x.iter().map(|&v| (f64::from(v) / n) as f32).collect()
}

/// ‖a − b‖ / ‖b‖.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (f64::from(x) - f64::from(y)).powi(2);
        n += f64::from(y).powi(2);
    }
    let r = (d / n).sqrt();
    if r.is_nan() || a.len() != b.len() {
        f64::INFINITY
    } else {
        r
    }
}

fn max_rel(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    if a.len() < b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| rel(x, y)).fold(0.0, f64::max)
}

/// Median and p90 of `reps` timed calls after 2 warm-ups, ms.
fn time(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<(f64, f64), String> {
    let mut times = Vec::new();
    for i in 0..reps.max(1) + 2 {
        let t = Instant::now();
        f()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((percentile(times.clone(), 0.5), percentile(times, 0.9)))
}

fn subset(images: &ScoreImages, views: usize) -> ScoreImages {
    ScoreImages {
        views,
        width: images.width,
        height: images.height,
        rgb8: images.rgb8[..views * images.pixels_per_view() * 3].to_vec(),
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Ctx<'a> {
    args: &'a Args,
    renderer: &'a GpuRenderer,
    images: &'a ScoreImages,
    views: usize,
    rig: &'a Rig,
}

fn check_text(c: &Ctx<'_>, name: &str, full: bool, ok: &mut bool) -> Result<Value, String> {
    let model = convnext_clip(full, c.args.seed ^ 0xc11f);
    let built = Instant::now();
    let mut gpu = GpuTextAlignment::new(c.renderer.context(), c.renderer.stream(), &model)
        .map_err(|e| format!("GpuTextAlignment::new: {e}"))?;
    let mem = gpu.memory();
    println!(
        "text {name}: uploaded and compiled in {:.0} ms; memory weights {:.1} MiB, work {:.1} MiB",
        built.elapsed().as_secs_f64() * 1e3,
        mib(mem.weights),
        mib(mem.work)
    );
    let mut r = Rng(c.args.seed ^ 0x7e47);
    let cfg = &model.config;
    let prompts = [
        prompt_ids(&mut r, cfg.vocab, cfg.context, 12),
        prompt_ids(&mut r, cfg.vocab, cfg.context, 75),
    ];
    let cpu_views = if full {
        c.args.cpu_views.min(c.views)
    } else {
        c.views
    };
    let reference = if c.args.cpu {
        let t = Instant::now();
        let sub = subset(c.images, cpu_views);
        let views: Vec<Vec<f32>> = model
            .encode_images(&sub)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| normalised(v))
            .collect();
        let texts = prompts
            .iter()
            .map(|ids| model.encode_text(ids).map(|e| normalised(&e)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        println!(
            "text {name}: cpu reference ({cpu_views} views, 2 prompts) in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        Some((views, texts))
    } else {
        None
    };
    let mut per_precision = serde_json::Map::new();
    let (w, h) = (c.rig.width, c.rig.height);
    for p in PRECISIONS {
        gpu.set_precision(p);
        let from_render = gpu
            .encode_views_from_render(c.renderer.image(), c.views, w, h)
            .map_err(|e| format!("encode_views_from_render: {e}"))?;
        let uploaded = gpu
            .encode_views(c.images)
            .map_err(|e| format!("encode_views: {e}"))?;
        let same = max_rel(&uploaded, &from_render);
        let texts = prompts
            .iter()
            .map(|ids| gpu.encode_text(ids))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("encode_text: {e}"))?;
        let mut entry = json!({ "render_vs_upload": same });
        let mut line = format!("check text {name} {p:?}: render vs upload {same:.1e}");
        *ok &= same <= 1e-6;
        if let Some((ref_views, ref_texts)) = &reference {
            let ev = max_rel(&from_render[..cpu_views], ref_views);
            let et = max_rel(&texts, ref_texts);
            let gpu_score =
                aggregate::text_alignment(&cosines(&from_render[..cpu_views], &texts[0]));
            let cpu_score = aggregate::text_alignment(&cosines(ref_views, &ref_texts[0]));
            let passed = ev <= bound(p) && et <= bound(p);
            *ok &= passed;
            line += &format!(
                "; views max rel {ev:.2e}, text max rel {et:.2e}; alignment {gpu_score:.6} vs cpu {cpu_score:.6} -> {}",
                if passed { "ok" } else { "FAILED" }
            );
            entry["views_max_rel"] = json!(ev);
            entry["text_max_rel"] = json!(et);
            entry["alignment_abs"] = json!((gpu_score - cpu_score).abs());
        }
        println!("{line}");
        let (views_ms, views_p90) = time(c.args.reps, || {
            gpu.encode_views_from_render(c.renderer.image(), c.views, w, h)
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let (text_ms, _) = time(c.args.reps, || {
            gpu.encode_text(&prompts[0])
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let (task_ms, task_p90) = time(c.args.reps, || {
            gpu.encode_views_from_render(c.renderer.image(), c.views, w, h)
                .map_err(|e| e.to_string())?;
            gpu.encode_text(&prompts[0])
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        println!(
            "time  text {name} {p:?}: image tower {} views at 224 {views_ms:.2} ms (p90 {views_p90:.2}); text tower {text_ms:.2} ms; whole text alignment {task_ms:.2} ms (p90 {task_p90:.2})",
            c.views
        );
        entry["image_tower_ms"] = json!(views_ms);
        entry["text_tower_ms"] = json!(text_ms);
        entry["alignment_ms"] = json!(task_ms);
        per_precision.insert(format!("{p:?}").to_lowercase(), entry);
    }
    let mem = gpu.memory();
    Ok(json!({
        "memory_weights_bytes": mem.weights,
        "memory_work_bytes": mem.work,
        "precisions": per_precision,
    }))
}

fn check_image(c: &Ctx<'_>, name: &str, full: bool, ok: &mut bool) -> Result<Value, String> {
    let model = llm2clip_model(full, c.args.seed ^ 0x11d2);
    let built = Instant::now();
    let mut gpu = GpuImageAlignment::new(c.renderer.context(), c.renderer.stream(), &model)
        .map_err(|e| format!("GpuImageAlignment::new: {e}"))?;
    let mem = gpu.memory();
    println!(
        "image {name}: uploaded and compiled in {:.0} ms; memory weights {:.1} MiB, work {:.1} MiB",
        built.elapsed().as_secs_f64() * 1e3,
        mib(mem.weights),
        mib(mem.work)
    );
    let prompt = prompt_image();
    let cpu_views = if full {
        c.args.cpu_views.min(c.views)
    } else {
        c.views
    };
    let reference = if c.args.cpu {
        let t = Instant::now();
        let sub = subset(c.images, cpu_views);
        let (w, h) = (sub.width as usize, sub.height as usize);
        let mut inputs: Vec<(&[u8], usize, usize)> =
            vec![(&prompt.rgb8, prompt.width, prompt.height)];
        inputs.extend((0..cpu_views).map(|v| (sub.view(v), w, h)));
        let mut all = llm2clip::vit::embeddings(&model, &inputs).map_err(|e| e.to_string())?;
        let views = all.split_off(1);
        println!(
            "image {name}: cpu reference ({cpu_views} views and the prompt) in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        Some((views, all.remove(0)))
    } else {
        None
    };
    let mut per_precision = serde_json::Map::new();
    let (w, h) = (c.rig.width, c.rig.height);
    for p in PRECISIONS {
        gpu.set_precision(p);
        let from_render = gpu
            .encode_views_from_render(c.renderer.image(), c.views, w, h)
            .map_err(|e| format!("encode_views_from_render: {e}"))?;
        let uploaded = gpu
            .encode_views(c.images)
            .map_err(|e| format!("encode_views: {e}"))?;
        let same = max_rel(&uploaded, &from_render);
        let prompt_emb = gpu
            .encode_prompt(&prompt)
            .map_err(|e| format!("encode_prompt: {e}"))?;
        let mut entry = json!({ "render_vs_upload": same });
        let mut line = format!("check image {name} {p:?}: render vs upload {same:.1e}");
        *ok &= same <= 1e-6;
        if let Some((ref_views, ref_prompt)) = &reference {
            let ev = max_rel(&from_render[..cpu_views], ref_views);
            let ep = rel(&prompt_emb, ref_prompt);
            let score = |v: &[Vec<f32>], pr: &[f32]| {
                llm2clip::alignment_of_cosines(&cosines(v, pr))
                    .1
                    .service_value()
            };
            let gpu_score = score(&from_render[..cpu_views], &prompt_emb);
            let cpu_score = score(ref_views, ref_prompt);
            let passed = ev <= bound(p) && ep <= bound(p);
            *ok &= passed;
            line += &format!(
                "; views max rel {ev:.2e}, prompt rel {ep:.2e}; alignment {gpu_score:.6} vs cpu {cpu_score:.6} -> {}",
                if passed { "ok" } else { "FAILED" }
            );
            entry["views_max_rel"] = json!(ev);
            entry["prompt_rel"] = json!(ep);
            entry["alignment_abs"] = json!((gpu_score - cpu_score).abs());
        }
        println!("{line}");
        let (views_ms, views_p90) = time(c.args.reps, || {
            gpu.encode_views_from_render(c.renderer.image(), c.views, w, h)
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let (prompt_ms, _) = time(c.args.reps, || {
            gpu.encode_prompt(&prompt)
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let (task_ms, task_p90) = time(c.args.reps, || {
            gpu.encode_views_from_render(c.renderer.image(), c.views, w, h)
                .map_err(|e| e.to_string())?;
            gpu.encode_prompt(&prompt)
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        println!(
            "time  image {name} {p:?}: {} views at {} {views_ms:.2} ms (p90 {views_p90:.2}); prompt {prompt_ms:.2} ms; whole image alignment {task_ms:.2} ms (p90 {task_p90:.2})",
            c.views, model.config.image_size
        );
        entry["views_ms"] = json!(views_ms);
        entry["prompt_ms"] = json!(prompt_ms);
        entry["alignment_ms"] = json!(task_ms);
        per_precision.insert(format!("{p:?}").to_lowercase(), entry);
    }
    let mem = gpu.memory();
    Ok(json!({
        "memory_weights_bytes": mem.weights,
        "memory_work_bytes": mem.work,
        "precisions": per_precision,
    }))
}

fn run(args: &Args) -> Result<bool, String> {
    let mut renderer = GpuRenderer::new(0).map_err(|e| format!("no GPU: {e}"))?;
    println!("device: {}  seed: {}", renderer.device_name(), args.seed);
    let rig = Rig::validator();
    let views = rig.views();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let splat = object_splat(100_000, &mut rng);
    let (rendered, _) = renderer
        .render_and_measure(&splat, &rig, true)
        .map_err(|e| e.to_string())?;
    let images = ScoreImages::from_views(&rendered.ok_or("views were asked for")?);
    let mut ok = true;
    let mut summary = serde_json::Map::new();
    summary.insert("device".into(), json!(renderer.device_name()));
    let c = Ctx {
        args,
        renderer: &renderer,
        images: &images,
        views,
        rig: &rig,
    };
    for name in &args.models {
        let full = match name.as_str() {
            "tiny" => false,
            "full" => true,
            other => return Err(format!("unknown model size {other}")),
        };
        for tower in &args.towers {
            let result = match tower.as_str() {
                "text" => check_text(&c, name, full, &mut ok)?,
                "image" => check_image(&c, name, full, &mut ok)?,
                other => return Err(format!("unknown tower {other}")),
            };
            summary.insert(format!("{tower}_{name}"), result);
        }
    }
    println!("json {}", Value::Object(summary));
    Ok(ok)
}

fn main() {
    check::finish("alignment_check", parse_args().and_then(|a| run(&a)));
}
