//! The Rust half of the alignment parity run on the GPU machine
//! (`kernels/bench/alignment_run.sh`): scores PNG views against a text prompt with the
//! open_clip `convnext_large_d` CPU reference (`scorer::convnext_clip`), or against a prompt
//! image with the LLM2CLIP vision tower CPU reference (`scorer::llm2clip`), from the model
//! folder the Python references write, and prints one JSON object with the keys the matching
//! Python script prints:
//!
//! - text (`clip_reference.py score`): `{"prompts": [{"prompt", "ids", "text_embedding",
//!   "cosines", "kept", "geometric_mean", "alignment_score"}], "image_embeddings"}`
//!   (embeddings before normalisation, as `encode_text` / `encode_image` give them);
//! - image (`llm2clip_reference.py`): `{"prompt_shape", "prompt_rgb_sha256",
//!   "prompt_embedding", "view_embeddings", "cosines", "kept", "alignment"}` (normalised
//!   embeddings; `alignment` is null where the service's is NaN).
//!
//! Both add `"task"` and `"seconds"` (load and score times).
//!
//! `alignment_parity --models DIR --views v00.png ... v15.png (--prompt TEXT |
//! --prompt-image FILE) [--text-head-width N]`
//!
//! `--prompt-image` reads base64 text when the file ends in `.b64` or `.txt` (as the Python
//! reference does), else the image bytes. `--text-head-width` splits the text tower's width
//! into heads; by default it is read from `open_clip_config.json` beside the weights (the
//! tiny model `clip_reference.py tiny` writes), else the real model's 64.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use splatfleet_kernels::scorer::{
    aggregate,
    convnext_clip::{
        self,
        files::{CLIP_BIN, CLIP_DIR, CLIP_SAFETENSORS, CLIP_VOCAB, TEXT_HEAD_WIDTH},
        ClipTokenizer, TextAlignment,
    },
    llm2clip::{self, PromptImage},
    ModelsDir, ScoreImages,
};

/// Why the parity run stopped.
#[derive(Debug, thiserror::Error)]
enum ParityError {
    #[error("usage: {0}\n{USAGE}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: PNG: {source}")]
    Png {
        path: PathBuf,
        source: png::DecodingError,
    },
    #[error("{path}: {problem}")]
    BadView { path: PathBuf, problem: String },
    #[error("{path}: {problem}")]
    BadConfig { path: PathBuf, problem: String },
    #[error("model files: {0}")]
    Model(#[from] splatfleet_kernels::scorer::ModelFileError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] convnext_clip::TokenizerError),
    #[error("text alignment: {0}")]
    Clip(#[from] convnext_clip::ClipError),
    #[error("prompt image: {0}")]
    PromptImage(#[from] llm2clip::PromptImageError),
    #[error("image alignment: {0}")]
    Llm2Clip(#[from] llm2clip::Llm2ClipError),
}

const USAGE: &str = "alignment_parity --models DIR --views v00.png ... \
                     (--prompt TEXT | --prompt-image FILE) [--text-head-width N]";

enum Task {
    Text(String),
    Image(PathBuf),
}

struct Args {
    models: PathBuf,
    views: Vec<PathBuf>,
    task: Task,
    text_head_width: Option<usize>,
}

fn args() -> Result<Args, ParityError> {
    let usage = |m: String| ParityError::Usage(m);
    let mut models = None;
    let mut views = Vec::new();
    let mut task = None;
    let mut text_head_width = None;
    let mut it = std::env::args().skip(1).peekable();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--models" => models = Some(PathBuf::from(value()?)),
            "--prompt" | "--prompt-image" if task.is_some() => {
                return Err(usage("one of --prompt, --prompt-image, once".into()))
            }
            "--prompt" => task = Some(Task::Text(value()?)),
            "--prompt-image" => task = Some(Task::Image(PathBuf::from(value()?))),
            "--text-head-width" => {
                let v = value()?;
                let n = v
                    .parse::<usize>()
                    .map_err(|e| usage(format!("--text-head-width {v}: {e}")))?;
                text_head_width = Some(n);
            }
            "--views" => {
                while let Some(v) = it.next_if(|v| !v.starts_with("--")) {
                    views.push(PathBuf::from(v));
                }
            }
            other => return Err(usage(format!("unknown argument {other}"))),
        }
    }
    let models = models.ok_or_else(|| usage("--models is required".into()))?;
    let task = task.ok_or_else(|| usage("--prompt or --prompt-image is required".into()))?;
    if views.is_empty() {
        return Err(usage("--views needs at least one PNG".into()));
    }
    Ok(Args {
        models,
        views,
        task,
        text_head_width,
    })
}

/// One 8-bit RGB PNG: (width, height, HWC bytes).
fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>), ParityError> {
    let io = |source| ParityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let png_err = |source| ParityError::Png {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(png_err)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(png_err)?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(ParityError::BadView {
            path: path.to_path_buf(),
            problem: format!(
                "{:?} {:?}: the views must be 8-bit RGB",
                info.color_type, info.bit_depth
            ),
        });
    }
    let (w, h) = (info.width, info.height);
    let row = w as usize * 3;
    let mut rgb = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * info.line_size;
        let line = buf.get(start..start + row).ok_or(ParityError::BadView {
            path: path.to_path_buf(),
            problem: "short image data".into(),
        })?;
        rgb.extend_from_slice(line);
    }
    Ok((w, h, rgb))
}

/// The views as the scorer reads them: all the same size, view-major HWC.
fn read_views(paths: &[PathBuf]) -> Result<ScoreImages, ParityError> {
    let mut images = ScoreImages {
        views: 0,
        width: 0,
        height: 0,
        rgb8: Vec::new(),
    };
    for path in paths {
        let (w, h, rgb) = read_png(path)?;
        if images.views == 0 {
            (images.width, images.height) = (w, h);
        } else if (w, h) != (images.width, images.height) {
            return Err(ParityError::BadView {
                path: path.clone(),
                problem: format!(
                    "{w}×{h}, the first view is {}×{}",
                    images.width, images.height
                ),
            });
        }
        images.rgb8.extend_from_slice(&rgb);
        images.views += 1;
    }
    Ok(images)
}

/// The text head width of a tiny model, from the `open_clip_config.json` that
/// `clip_reference.py tiny` writes beside it (`model_cfg.text_cfg.width / heads`).
fn head_width_from_config(path: &Path) -> Result<Option<usize>, ParityError> {
    if !path.is_file() {
        return Ok(None);
    }
    let bad = |problem: String| ParityError::BadConfig {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ParityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let cfg = &v["model_cfg"]["text_cfg"];
    let (Some(width), Some(heads)) = (cfg["width"].as_u64(), cfg["heads"].as_u64()) else {
        return Err(bad("no model_cfg.text_cfg.width / heads".into()));
    };
    if heads == 0 || width % heads != 0 {
        return Err(bad(format!("text width {width} over {heads} heads")));
    }
    Ok(Some((width / heads) as usize))
}

/// `x / ‖x‖` in `f64`, as `convnext_clip` normalises before its cosines.
fn normalised(x: &[f32]) -> Vec<f64> {
    let norm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    x.iter().map(|&v| f64::from(v) / norm).collect()
}

fn text_task(a: &Args, prompt: &str, images: &ScoreImages) -> Result<Value, ParityError> {
    let models = ModelsDir::new(a.models.clone());
    let head_width = match a.text_head_width {
        Some(w) => w,
        None => head_width_from_config(&a.models.join(CLIP_DIR).join("open_clip_config.json"))?
            .unwrap_or(TEXT_HEAD_WIDTH),
    };
    let t0 = Instant::now();
    let file = if models.path(CLIP_SAFETENSORS).is_file() || !models.path(CLIP_BIN).is_file() {
        CLIP_SAFETENSORS
    } else {
        CLIP_BIN
    };
    let model = if head_width == TEXT_HEAD_WIDTH {
        convnext_clip::files::load(&models)?
    } else {
        convnext_clip::files::load_file(&models.path(file), file, head_width)?
    };
    let tokenizer = ClipTokenizer::from_file(&models.path(CLIP_VOCAB), model.config.context)?;
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let ids = tokenizer.tokenize(prompt)?;
    let text_embedding = model.encode_text(&ids)?;
    let image_embeddings = model.encode_images(images)?;
    // `ConvnextClip::text_alignment`'s steps on the embeddings above (it would run the image
    // tower again): f64 L2 normalisation, one cosine per view, `aggregate::text_alignment`.
    let text = normalised(&text_embedding);
    let cosines: Vec<f64> = image_embeddings
        .iter()
        .map(|img| normalised(img).iter().zip(&text).map(|(a, b)| a * b).sum())
        .collect();
    let alignment = TextAlignment {
        alignment_score: aggregate::text_alignment(&cosines),
        cosines,
    };
    let score_s = t1.elapsed().as_secs_f64();
    let kept = aggregate::filter_outliers(&alignment.cosines);
    Ok(json!({
        "task": "text",
        "prompts": [{
            "prompt": prompt,
            "ids": ids,
            "text_embedding": text_embedding,
            "cosines": alignment.cosines,
            "kept": kept,
            "geometric_mean": alignment.alignment_score * aggregate::TEXT_ALIGNMENT_DIVISOR,
            "alignment_score": alignment.alignment_score,
        }],
        "image_embeddings": image_embeddings,
        "text_head_width": head_width,
        "seconds": {"load": load_s, "score": score_s},
    }))
}

fn image_task(a: &Args, prompt_path: &Path, images: &ScoreImages) -> Result<Value, ParityError> {
    let raw = std::fs::read(prompt_path).map_err(|source| ParityError::Io {
        path: prompt_path.to_path_buf(),
        source,
    })?;
    let base64 = prompt_path
        .extension()
        .is_some_and(|e| e == "b64" || e == "txt");
    let prompt = if base64 {
        // The service's text is a Python str; Latin-1 maps every byte to one character.
        let text: String = raw.iter().map(|&b| char::from(b)).collect();
        PromptImage::from_base64(&text)?
    } else {
        PromptImage::from_bytes(&raw)?
    };
    let t0 = Instant::now();
    let model = llm2clip::files::load(&a.models)?;
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let s = llm2clip::score_image_alignment(&model, &prompt, images)?;
    let score_s = t1.elapsed().as_secs_f64();
    let alignment = s.alignment.service_value();
    Ok(json!({
        "task": "image",
        "prompt_shape": [prompt.height, prompt.width, 3],
        "prompt_rgb_sha256": hex::encode(Sha256::digest(&prompt.rgb8)),
        "prompt_embedding": s.prompt_embedding,
        "view_embeddings": s.view_embeddings,
        "cosines": s.cosines,
        "kept": s.kept,
        "alignment": if alignment.is_finite() { json!(alignment) } else { Value::Null },
        "alignment_typed": format!("{:?}", s.alignment),
        "seconds": {"load": load_s, "score": score_s},
    }))
}

fn run() -> Result<(), ParityError> {
    let a = args()?;
    let images = read_views(&a.views)?;
    let out = match &a.task {
        Task::Text(prompt) => text_task(&a, prompt, &images)?,
        Task::Image(path) => image_task(&a, path, &images)?,
    };
    println!("{out}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alignment_parity: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
