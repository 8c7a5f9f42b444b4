//! Tiny random-weight scorer models in exactly the upstream formats and names, for CI, the
//! demo and tests (`splatfleet-sim models --tiny DIR`): the real architectures at reduced
//! width, deterministic by seed.
//!
//! - `dinov2-small/config.json` + `model.safetensors`: HF `Dinov2Model` with hidden 32, 2
//!   heads, 2 layers, mlp_ratio 4, patch 14, image 518 (the real 37×37 + CLS position grid).
//! - `quality_scorer.safetensors`: `score_head.*`, `emb_head.*` and a few `backbone.*`
//!   tensors (a fine-tuned backbone's overrides, distinct from the facebook ones).
//! - `alexnet-owt-7be5be79.pth`: torchvision AlexNet's state dict, conv widths 8/16/16/16/16
//!   (same kernels), `classifier.*` included.
//! - `alex.pth`: LPIPS' `lin0..lin4.model.1.weight`.
//!
//! The `.pth` files are written as `torch.save` writes them (`torch/serialization.py`): the
//! zip format (stored entries under `archive/`, `data.pkl` in pickle protocol 2 with
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and BINPERSID
//! `('storage', torch.FloatStorage, key, 'cpu', numel)`, storages as `archive/data/<key>`
//! aligned to 64 bytes, `version` "3"); [`write_torch_legacy`] writes torch's legacy format
//! for the legacy reader's tests. Names and shapes come from the loader's own
//! `splatfleet_kernels::scorer::files::layout`. [`write_tiny_models`] also writes the
//! prompt-alignment models ([`super::alignment_models`]).

use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use splatfleet_kernels::scorer::{files::layout, model::Dinov2Config};

use super::models::SimRng;

/// One named tensor to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The element type of a written storage or safetensors tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Float,
    Half,
    BFloat16,
}

impl StorageKind {
    fn torch_name(self) -> &'static str {
        match self {
            Self::Float => "FloatStorage",
            Self::Half => "HalfStorage",
            Self::BFloat16 => "BFloat16Storage",
        }
    }

    fn encode(self, data: &[f32]) -> Vec<u8> {
        match self {
            Self::Float => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::Half => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Self::BFloat16 => data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }

    fn safetensors_dtype(self) -> safetensors::Dtype {
        match self {
            Self::Float => safetensors::Dtype::F32,
            Self::Half => safetensors::Dtype::F16,
            Self::BFloat16 => safetensors::Dtype::BF16,
        }
    }
}

/// The tiny DINOv2's configuration (the real patch and image size, so the real position grid).
pub fn tiny_dinov2_config() -> Dinov2Config {
    Dinov2Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        mlp_hidden: 128,
        patch_size: 14,
        image_size: 518,
        layer_norm_eps: 1e-6,
    }
}

/// The tiny AlexNet's conv widths.
pub const TINY_ALEXNET_WIDTHS: [usize; 5] = [8, 16, 16, 16, 16];

/// The `backbone.*` tensors the tiny `quality_scorer.safetensors` overrides.
pub const TINY_BACKBONE_OVERRIDES: [&str; 3] = [
    "layernorm.weight",
    "layernorm.bias",
    "encoder.layer.1.mlp.fc2.bias",
];

/// What [`write_tiny_models`] wrote: each file (relative name) and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyModels {
    pub root: PathBuf,
    pub files: Vec<(String, u64)>,
}

fn normal(rng: &mut SimRng, n: usize, mean: f32, std: f32) -> Vec<f32> {
    (0..n).map(|_| mean + std * rng.normal() as f32).collect()
}

fn uniform(rng: &mut SimRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Random values for one DINOv2 tensor, by its role, at scales that keep the forward pass
/// well-conditioned.
fn dinov2_values(rng: &mut SimRng, name: &str, shape: &[usize]) -> Vec<f32> {
    let n = numel(shape);
    let fan_in = shape
        .get(1..)
        .map_or(1, |s| s.iter().product::<usize>())
        .max(1);
    if name.ends_with("mask_token") {
        vec![0.0; n]
    } else if name.ends_with("cls_token") {
        normal(rng, n, 0.0, 0.5)
    } else if name.ends_with("position_embeddings") {
        normal(rng, n, 0.0, 0.1)
    } else if name.ends_with("lambda1") {
        uniform(rng, n, 0.1, 1.0)
    } else if name.contains("norm") && name.ends_with(".weight") {
        normal(rng, n, 1.0, 0.05)
    } else if name.ends_with(".bias") {
        normal(rng, n, 0.0, 0.02)
    } else {
        // Linear and conv weights: N(0, 1/fan_in).
        normal(rng, n, 0.0, 1.0 / (fan_in as f32).sqrt())
    }
}

fn write_safetensors(path: &Path, tensors: &[NamedTensor], kind: StorageKind) -> io::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| kind.encode(&t.data)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(kind.safetensors_dtype(), t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    // transformers refuses a safetensors file without `format` metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(io::Error::other)
}

/// Writes `tensors` as a safetensors file of `kind` elements (with `format: pt` metadata).
pub fn write_safetensors_file(
    path: &Path,
    tensors: &[NamedTensor],
    kind: StorageKind,
) -> io::Result<()> {
    write_safetensors(path, tensors, kind)
}

/// The tiny `config.json`, with the keys facebook/dinov2-small's has.
pub fn tiny_config_json(c: &Dinov2Config) -> String {
    let json = serde_json::json!({
        "architectures": ["Dinov2Model"],
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": c.hidden_size,
        "image_size": c.image_size,
        "initializer_range": 0.02,
        "layer_norm_eps": c.layer_norm_eps as f64,
        "layerscale_value": 1.0,
        "mlp_ratio": c.mlp_hidden / c.hidden_size,
        "model_type": "dinov2",
        "num_attention_heads": c.num_attention_heads,
        "num_channels": 3,
        "num_hidden_layers": c.num_hidden_layers,
        "patch_size": c.patch_size,
        "qkv_bias": true,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_swiglu_ffn": false
    });
    // 1e-6 as f32 → f64 is 9.99999997e-7: write the value HF writes.
    serde_json::to_string_pretty(&json)
        .unwrap_or_default()
        .replace("9.999999974752427e-7", "1e-06")
}

/// Writes every scorer file under `dir` (created if needed), deterministic by `seed`.
pub fn write_tiny_models(dir: &Path, seed: u64) -> io::Result<TinyModels> {
    let mut rng = SimRng::new(seed ^ 0x5c0e_u64);
    let config = tiny_dinov2_config();
    fs::create_dir_all(dir.join(layout::DINOV2_DIR))?;

    fs::write(dir.join(layout::DINOV2_CONFIG), tiny_config_json(&config))?;

    let dinov2: Vec<NamedTensor> = layout::dinov2_tensors(&config, true)
        .into_iter()
        .map(|s| NamedTensor {
            data: dinov2_values(&mut rng, &s.name, &s.shape),
            name: s.name,
            shape: s.shape,
        })
        .collect();
    write_safetensors(
        &dir.join(layout::DINOV2_WEIGHTS),
        &dinov2,
        StorageKind::Float,
    )?;

    let h = config.hidden_size;
    let mut quality = Vec::new();
    for s in layout::quality_head_tensors(h) {
        let data = if s.name.ends_with("bias") {
            // A logit near 0.3: sigmoid outputs around 0.5–0.7, far from saturation.
            vec![0.3; numel(&s.shape)]
        } else {
            normal(&mut rng, numel(&s.shape), 0.0, 0.5 / (h as f32).sqrt())
        };
        quality.push(NamedTensor {
            name: s.name,
            shape: s.shape,
            data,
        });
    }
    for s in layout::emb_head_tensors(h) {
        quality.push(NamedTensor {
            data: normal(&mut rng, numel(&s.shape), 0.0, 0.02),
            name: s.name,
            shape: s.shape,
        });
    }
    for name in TINY_BACKBONE_OVERRIDES {
        if let Some(t) = dinov2.iter().find(|t| t.name == name) {
            quality.push(NamedTensor {
                name: format!("{}{name}", layout::BACKBONE_PREFIX),
                shape: t.shape.clone(),
                data: dinov2_values(&mut rng, name, &t.shape),
            });
        }
    }
    write_safetensors(
        &dir.join(layout::QUALITY_SCORER),
        &quality,
        StorageKind::Float,
    )?;

    let widths = TINY_ALEXNET_WIDTHS;
    let mut alexnet: Vec<NamedTensor> = layout::alexnet_tensors(&widths)
        .into_iter()
        .map(|s| {
            let fan_in = s
                .shape
                .get(1..)
                .map_or(1, |d| d.iter().product::<usize>())
                .max(1);
            let data = if s.name.ends_with("bias") {
                // Slightly positive: no channel's ReLU is dead everywhere.
                uniform(&mut rng, numel(&s.shape), 0.0, 0.1)
            } else {
                normal(&mut rng, numel(&s.shape), 0.0, (2.0 / fan_in as f32).sqrt())
            };
            NamedTensor {
                name: s.name,
                shape: s.shape,
                data,
            }
        })
        .collect();
    // torchvision's classifier (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear) at
    // reduced width, on the 6×6 adaptive pool.
    let flat = widths[4] * 36;
    for (index, out, inp) in [(1, 32, flat), (4, 32, 32), (6, 10, 32)] {
        alexnet.push(NamedTensor {
            name: format!("classifier.{index}.weight"),
            shape: vec![out, inp],
            data: normal(&mut rng, out * inp, 0.0, 1.0 / (inp as f32).sqrt()),
        });
        alexnet.push(NamedTensor {
            name: format!("classifier.{index}.bias"),
            shape: vec![out],
            data: normal(&mut rng, out, 0.0, 0.01),
        });
    }
    write_torch_zip(&dir.join(layout::ALEXNET), &alexnet, StorageKind::Float)?;

    let lins: Vec<NamedTensor> = layout::lpips_tensors(&widths)
        .into_iter()
        .map(|s| NamedTensor {
            // LPIPS' learned weights are non-negative.
            data: uniform(&mut rng, numel(&s.shape), 0.01, 0.2),
            name: s.name,
            shape: s.shape,
        })
        .collect();
    write_torch_zip(&dir.join(layout::LPIPS_ALEX), &lins, StorageKind::Float)?;
    // The prompt-alignment towers, which the worker loads with these.
    super::alignment_models::write_tiny_alignment_models(dir, seed ^ 0xa11c)?;

    let files = layout::ALL_FILES
        .iter()
        .map(|f| Ok((f.to_string(), fs::metadata(dir.join(f))?.len())))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(TinyModels {
        root: dir.to_path_buf(),
        files,
    })
}

/// A pickle writer emitting the opcodes CPython's protocol-2 pickler emits for a state dict.
struct Pickler {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
}

impl Pickler {
    fn new() -> Self {
        Self {
            out: vec![0x80, 2],
            memo: HashMap::new(),
        }
    }

    fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    fn memoize(&mut self, key: String) {
        let i = self.memo.len() as u32;
        self.memo.insert(key, i);
        if i < 256 {
            self.out.extend_from_slice(&[b'q', i as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn fetch(&mut self, key: &str) -> bool {
        match self.memo.get(key) {
            Some(&i) if i < 256 => self.out.extend_from_slice(&[b'h', i as u8]),
            Some(&i) => {
                self.out.push(b'j');
                self.out.extend_from_slice(&i.to_le_bytes());
            }
            None => return false,
        }
        true
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("global {module}.{name}");
        if !self.fetch(&key) {
            self.op(b'c');
            self.out
                .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            self.memoize(key);
        }
    }

    fn str(&mut self, s: &str) {
        self.op(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.op(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.op(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: minimal two's complement, little-endian.
            let mut bytes = v.to_le_bytes().to_vec();
            while bytes.len() > 1 {
                let (last, prev) = (bytes[bytes.len() - 1], bytes[bytes.len() - 2]);
                if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                    bytes.pop();
                } else {
                    break;
                }
            }
            self.out.extend_from_slice(&[0x8a, bytes.len() as u8]);
            self.out.extend_from_slice(&bytes);
        }
    }

    fn tuple_of_ints(&mut self, values: &[usize]) {
        match values.len() {
            0 => self.op(b')'),
            n @ 1..=3 => {
                for &v in values {
                    self.int(v as i64);
                }
                self.op(0x84 + n as u8);
            }
            _ => {
                self.op(b'(');
                for &v in values {
                    self.int(v as i64);
                }
                self.op(b't');
            }
        }
    }

    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }

    /// `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` over storage
    /// `key` (contiguous), whose persistent id has a sixth `None` in the legacy format.
    fn tensor(&mut self, t: &NamedTensor, key: &str, kind: StorageKind, legacy: bool) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        // The persistent id.
        self.op(b'(');
        self.str("storage");
        self.global("torch", kind.torch_name());
        self.str(key);
        self.str("cpu");
        self.int(t.data.len() as i64);
        if legacy {
            self.op(b'N');
        }
        self.op(b't');
        self.op(b'Q');
        self.int(0);
        self.tuple_of_ints(&t.shape);
        let mut stride = vec![1usize; t.shape.len()];
        for i in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * t.shape[i + 1];
        }
        self.tuple_of_ints(&stride);
        self.op(0x89);
        self.empty_ordered_dict();
        self.op(b't');
        self.op(b'R');
    }

    /// The whole state dict: `OrderedDict` of tensors (storage keys "0", "1", …), then its
    /// `_metadata` through BUILD as `OrderedDict.__reduce__` gives it.
    fn state_dict(&mut self, tensors: &[NamedTensor], kind: StorageKind, legacy: bool) {
        self.empty_ordered_dict();
        self.op(b'(');
        for (i, t) in tensors.iter().enumerate() {
            self.str(&t.name);
            self.tensor(t, &i.to_string(), kind, legacy);
        }
        self.op(b'u');
        // {'_metadata': OrderedDict([('', {'version': 1})])}
        self.op(b'}');
        self.str("_metadata");
        self.empty_ordered_dict();
        self.str("");
        self.op(b'}');
        self.str("version");
        self.int(1);
        self.op(b's');
        self.op(b's');
        self.op(b's');
        self.op(b'b');
        self.op(b'.');
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// A one-value pickle (the legacy format's header pickles).
fn small_pickle(body: impl FnOnce(&mut Pickler)) -> Vec<u8> {
    let mut p = Pickler::new();
    body(&mut p);
    p.op(b'.');
    p.finish()
}

/// Writes `tensors` as `torch.save` (zip format, torch ≥ 1.6) writes a state dict.
pub fn write_torch_zip(path: &Path, tensors: &[NamedTensor], kind: StorageKind) -> io::Result<()> {
    use zip::write::SimpleFileOptions;
    let mut pickler = Pickler::new();
    pickler.state_dict(tensors, kind, false);
    let pickle = pickler.finish();

    let file = fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(false);
    let aligned = options.with_alignment(64);
    let mut record = |name: &str, bytes: &[u8], aligned_record: bool| -> io::Result<()> {
        let opts = if aligned_record { aligned } else { options };
        zip.start_file(format!("archive/{name}"), opts)
            .map_err(io::Error::other)?;
        zip.write_all(bytes)
    };
    record("data.pkl", &pickle, true)?;
    record(".format_version", b"1", true)?;
    record(".storage_alignment", b"64", true)?;
    record("byteorder", b"little", true)?;
    for (i, t) in tensors.iter().enumerate() {
        record(&format!("data/{i}"), &kind.encode(&t.data), true)?;
    }
    record("version", b"3\n", true)?;
    zip.finish().map_err(io::Error::other)?.flush()
}

/// Writes `tensors` in torch's legacy format (`_legacy_save`): the magic number, protocol
/// version and sys info pickles, the state dict, the sorted storage keys, then each storage
/// as a little-endian `u64` element count and its bytes.
pub fn write_torch_legacy(
    path: &Path,
    tensors: &[NamedTensor],
    kind: StorageKind,
) -> io::Result<()> {
    let mut out = Vec::new();
    out.extend(small_pickle(|p| {
        p.out.extend_from_slice(&[0x8a, 10]);
        p.out
            .extend_from_slice(&splatfleet_kernels::scorer::files::torch::LEGACY_MAGIC);
    }));
    out.extend(small_pickle(|p| p.int(1001)));
    out.extend(small_pickle(|p| {
        p.op(b'}');
        p.op(b'(');
        p.str("protocol_version");
        p.int(1001);
        p.str("little_endian");
        p.op(0x88);
        p.str("type_sizes");
        p.op(b'}');
        p.op(b'(');
        for (name, size) in [("short", 2), ("int", 4), ("long", 8)] {
            p.str(name);
            p.int(size);
        }
        p.op(b'u');
        p.op(b'u');
    }));
    let mut pickler = Pickler::new();
    pickler.state_dict(tensors, kind, true);
    out.extend(pickler.finish());
    let mut keys: Vec<(String, usize)> = (0..tensors.len()).map(|i| (i.to_string(), i)).collect();
    keys.sort();
    out.extend(small_pickle(|p| {
        p.op(b']');
        p.op(b'(');
        for (k, _) in &keys {
            p.str(k);
        }
        p.op(b'e');
    }));
    for (_, i) in &keys {
        let t = &tensors[*i];
        out.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
        out.extend(kind.encode(&t.data));
    }
    fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_models_are_deterministic_by_seed() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let c = tempfile::tempdir().expect("tempdir");
        write_tiny_models(a.path(), 7).expect("write");
        write_tiny_models(b.path(), 7).expect("write");
        write_tiny_models(c.path(), 8).expect("write");
        for f in layout::ALL_FILES {
            let fa = fs::read(a.path().join(f)).expect("read");
            assert_eq!(fa, fs::read(b.path().join(f)).expect("read"), "{f}");
            if f != layout::DINOV2_CONFIG {
                assert_ne!(fa, fs::read(c.path().join(f)).expect("read"), "{f}");
            }
        }
    }

    #[test]
    fn zip_storages_are_aligned_and_the_archive_is_torch_shaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = NamedTensor {
            name: "w".into(),
            shape: vec![2, 3],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let path = dir.path().join("x.pth");
        write_torch_zip(&path, &[t], StorageKind::Float).expect("write");
        let bytes = fs::read(&path).expect("read");
        let mut zip = zip::ZipArchive::new(io::Cursor::new(&bytes)).expect("zip");
        let names: Vec<String> = zip
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.to_string())
            .collect();
        assert!(names.contains(&"archive/data.pkl".to_string()));
        assert!(names.contains(&"archive/version".to_string()));
        let entry = zip.by_name("archive/data/0").expect("storage");
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        assert_eq!(entry.data_start().expect("start") % 64, 0);
    }
}
