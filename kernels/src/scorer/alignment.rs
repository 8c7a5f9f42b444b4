//! Prompt alignment, the 20 % of the validator's score that is also a cut-off, for both task
//! kinds (`VALIDATOR_SCORING.md` §6–§7): a text prompt through open_clip's
//! `convnext_large_d` ([`super::convnext_clip`]), an image prompt through LLM2CLIP's vision
//! tower ([`super::llm2clip`]). This file owns what the scorer does with them: the models of a
//! worker ([`AlignmentModels`], loaded once from `models_dir`), the task's prompt
//! ([`Prompt`]), and the one typed result ([`Alignment`]) the gate and `score` read.
//!
//! Bad input never panics: a prompt the tokenizer refuses, a prompt image that does not
//! decode, or views the towers cannot read give an alignment of 0 with the reason, as the
//! service's `execute_validation` turns any exception into a score of 0; a kept negative
//! image cosine (the service's NaN) is 0 with the reason too.

use super::{
    aggregate,
    convnext_clip::{
        self, files::CLIP_VOCAB, tokenizer::CONTEXT_LENGTH, ClipTokenizer, ConvnextClip,
    },
    files::{ModelFileError, ModelsDir},
    images::ScoreImages,
    llm2clip::{self, vit::l2_normalised, ImageAlignment, Llm2ClipVision, PromptImage},
};

/// The alignment networks of one worker process, shared by its task slots.
#[derive(Debug)]
pub struct AlignmentModels {
    /// Text tasks: the CLIP ConvNeXt image tower and the text transformer.
    pub text: ConvnextClip,
    /// open_clip's tokenizer for `convnext_large_d`, from the vocabulary in the model folder.
    pub tokenizer: ClipTokenizer,
    /// Image tasks: the LLM2CLIP vision tower (prompt image and views alike).
    pub image: Llm2ClipVision,
}

impl AlignmentModels {
    /// Loads both towers and the vocabulary from `dir` (upstream folder and file names; a
    /// missing or misshaped file is a [`ModelFileError`] naming it and its download).
    pub fn load(dir: &ModelsDir) -> Result<Self, ModelFileError> {
        let text = convnext_clip::files::load(dir)?;
        let vocab = dir.path(CLIP_VOCAB);
        if !vocab.is_file() {
            return Err(ModelFileError::MissingFile {
                file: CLIP_VOCAB.to_string(),
                path: vocab,
                download: convnext_clip::files::vocab_download_command()
                    .replace("<models_dir>", &dir.root.display().to_string()),
            });
        }
        let tokenizer = ClipTokenizer::from_file(&vocab, CONTEXT_LENGTH).map_err(|err| {
            ModelFileError::Malformed {
                file: CLIP_VOCAB.to_string(),
                detail: err.to_string(),
            }
        })?;
        let image = llm2clip::files::load(&dir.root)?;
        Ok(Self {
            text,
            tokenizer,
            image,
        })
    }
}

/// A task's prompt, as the validator receives it.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// A text-to-3D prompt, raw (no template).
    Text(&'a str),
    /// An image-to-3D prompt: the base64 text the validator sent.
    ImageBase64(&'a str),
    /// An image-to-3D prompt as file bytes (`splatfleet-worker score --image`).
    ImageFile(&'a [u8]),
}

impl Prompt<'_> {
    /// `text` or `image`, for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::ImageBase64(_) | Self::ImageFile(_) => "image",
        }
    }
}

/// The alignment of one model's views with its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// What enters the final formula: the service's value (÷ 0.35 for text tasks), or 0
    /// with `problem` set.
    pub score: f64,
    /// `prompt · view` for each view (empty when nothing was measured).
    pub cosines: Vec<f64>,
    /// Why the alignment is 0 without being measured as 0 (the service scores it 0 too).
    pub problem: Option<String>,
}

impl Alignment {
    pub(crate) fn failed(problem: impl Into<String>) -> Self {
        Self {
            score: 0.0,
            cosines: Vec::new(),
            problem: Some(problem.into()),
        }
    }
}

/// The four encodings an alignment needs, on one device, each giving L2-normalised
/// embeddings: the views for each tower (the views are the implementor's), the tokenized
/// text prompt, the decoded prompt image. [`measure`] is the rest, written once for the CPU
/// reference and the GPU.
pub(crate) trait Towers {
    fn text_views(&mut self) -> Result<Vec<Vec<f32>>, String>;
    fn text_prompt(&mut self, ids: &[u32]) -> Result<Vec<f32>, String>;
    fn image_views(&mut self) -> Result<Vec<Vec<f32>>, String>;
    fn image_prompt(&mut self, prompt: &PromptImage) -> Result<Vec<f32>, String>;
}

/// `a · b` in `f64` of each (normalised) view embedding with the (normalised) prompt's.
pub fn cosines(views: &[Vec<f32>], prompt: &[f32]) -> Vec<f64> {
    views
        .iter()
        .map(|v| {
            v.iter()
                .zip(prompt)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        })
        .collect()
}

/// The service's alignment of `prompt` through `towers`: tokenize or decode the prompt, the
/// cosines, then the text task's or the image task's aggregation.
pub(crate) fn measure(
    towers: &mut impl Towers,
    tokenizer: &ClipTokenizer,
    prompt: Prompt,
) -> Alignment {
    let image = match prompt {
        Prompt::Text(text) => {
            let ids = match tokenizer.tokenize(text) {
                Ok(ids) => ids,
                Err(err) => return Alignment::failed(format!("text prompt: {err}")),
            };
            let measured = towers
                .text_prompt(&ids)
                .and_then(|prompt| towers.text_views().map(|views| cosines(&views, &prompt)));
            return match measured {
                Ok(cosines) => Alignment {
                    score: aggregate::text_alignment(&cosines),
                    cosines,
                    problem: None,
                },
                Err(err) => Alignment::failed(format!("text alignment: {err}")),
            };
        }
        Prompt::ImageBase64(text) => PromptImage::from_base64(text),
        Prompt::ImageFile(bytes) => PromptImage::from_bytes(bytes),
    };
    let image = match image {
        Ok(image) => image,
        Err(err) => return Alignment::failed(err.to_string()),
    };
    let measured = towers
        .image_prompt(&image)
        .and_then(|prompt| towers.image_views().map(|views| cosines(&views, &prompt)));
    let cosines = match measured {
        Ok(cosines) => cosines,
        Err(err) => return Alignment::failed(format!("image alignment: {err}")),
    };
    match llm2clip::alignment_of_cosines(&cosines).1 {
        ImageAlignment::Measured(score) => Alignment {
            score,
            cosines,
            problem: None,
        },
        ImageAlignment::NegativeCosine { negative, min } => Alignment {
            score: 0.0,
            cosines,
            problem: Some(format!(
                "{negative} kept image cosines are negative (smallest {min:.4}): the \
                 validator's geometric mean is NaN, which it never accepts"
            )),
        },
    }
}

/// The CPU reference's towers over 8-bit views.
struct CpuTowers<'a> {
    models: &'a AlignmentModels,
    images: &'a ScoreImages,
}

impl Towers for CpuTowers<'_> {
    fn text_views(&mut self) -> Result<Vec<Vec<f32>>, String> {
        let views = self.models.text.encode_images(self.images);
        views
            .map(|v| v.iter().map(|e| l2_normalised(e)).collect())
            .map_err(|e| e.to_string())
    }

    fn text_prompt(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
        let text = self.models.text.encode_text(ids);
        text.map(|t| l2_normalised(&t)).map_err(|e| e.to_string())
    }

    fn image_views(&mut self) -> Result<Vec<Vec<f32>>, String> {
        let (w, h) = (self.images.width as usize, self.images.height as usize);
        let inputs: Vec<(&[u8], usize, usize)> = (0..self.images.views)
            .map(|v| (self.images.view(v), w, h))
            .collect();
        llm2clip::vit::embeddings(&self.models.image, &inputs).map_err(|e| e.to_string())
    }

    fn image_prompt(&mut self, prompt: &PromptImage) -> Result<Vec<f32>, String> {
        llm2clip::vit::embedding(
            &self.models.image,
            &prompt.rgb8,
            prompt.width,
            prompt.height,
        )
        .map_err(|e| e.to_string())
    }
}

/// The CPU reference of the alignment of `images` with `prompt`.
pub fn cpu_alignment(models: &AlignmentModels, images: &ScoreImages, prompt: Prompt) -> Alignment {
    if images.views == 0 {
        return Alignment::failed("no views to align");
    }
    let mut towers = CpuTowers { models, images };
    measure(&mut towers, &models.tokenizer, prompt)
}
