//! The scorer's model files: tiny models written in the upstream formats load back through
//! `ModelsDir`; every broken file gives a typed error naming it, never a panic.

use std::{fs, path::Path};

use splatfleet_kernels::scorer::{
    files::{
        layout,
        safetensors::SafetensorsFile,
        sha256_file,
        torch::{TorchCheckpoint, TorchFormat},
    },
    ModelFileError, ModelsDir,
};
use splatfleet_tests::sim::{
    models::SimRng,
    scorer_models::{
        tiny_dinov2_config, write_safetensors_file, write_tiny_models, write_torch_legacy,
        write_torch_zip, NamedTensor, StorageKind, TINY_ALEXNET_WIDTHS,
    },
};

fn tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_models(dir.path(), 3).expect("write tiny models");
    dir
}

/// Every tensor of a safetensors file, in name order.
fn read_all(path: &Path, file: &str) -> Vec<NamedTensor> {
    let f = SafetensorsFile::open(path, file).expect("open");
    f.entries()
        .keys()
        .map(|name| {
            let t = f.tensor(name).expect("tensor").expect("present");
            NamedTensor {
                name: name.clone(),
                shape: t.shape,
                data: t.data,
            }
        })
        .collect()
}

fn rewrite(path: &Path, file: &str, edit: impl FnOnce(&mut Vec<NamedTensor>)) {
    let mut tensors = read_all(path, file);
    edit(&mut tensors);
    write_safetensors_file(path, &tensors, StorageKind::Float).expect("rewrite");
}

fn err_of(dir: &Path) -> ModelFileError {
    let models = ModelsDir::new(dir);
    let check = models.check().expect_err("check should fail");
    let load = models.load().expect_err("load should fail");
    assert_eq!(check.to_string(), load.to_string());
    load
}

#[test]
fn tiny_models_round_trip() {
    let dir = tiny();
    let models = ModelsDir::new(dir.path());
    models.check().expect("check");
    let m = models.load().expect("load");

    let c = tiny_dinov2_config();
    let b = &m.quality.backbone;
    assert_eq!(b.config, c);
    assert_eq!(b.config.tokens(), 1 + 37 * 37);
    assert_eq!(b.cls_token.len(), 32);
    assert_eq!(b.position_embeddings.len(), (1 + 37 * 37) * 32);
    assert_eq!(b.patch_embed.weight.shape, vec![32, 3, 14, 14]);
    assert_eq!((b.patch_embed.stride, b.patch_embed.padding), (14, 0));
    assert_eq!(b.layers.len(), 2);
    let l = &b.layers[1];
    assert_eq!(l.query.weight.shape, vec![32, 32]);
    assert_eq!(l.fc1.weight.shape, vec![128, 32]);
    assert_eq!(l.fc2.weight.shape, vec![32, 128]);
    assert_eq!(l.layer_scale2.len(), 32);
    assert!(l.query.bias.is_some());
    assert_eq!(l.norm1.eps, 1e-6);
    assert_eq!(m.quality.score_head.weight.shape, vec![1, 32]);
    assert_eq!(m.quality.score_head.bias.as_deref(), Some(&[0.3f32][..]));

    // Values: the loaded ones are the file's.
    let facebook = read_all(
        &dir.path().join(layout::DINOV2_WEIGHTS),
        layout::DINOV2_WEIGHTS,
    );
    let find = |ts: &[NamedTensor], n: &str| {
        ts.iter()
            .find(|t| t.name == n)
            .map(|t| t.data.clone())
            .expect("tensor")
    };
    assert_eq!(b.cls_token, find(&facebook, "embeddings.cls_token"));
    assert_eq!(
        l.fc1.weight.data,
        find(&facebook, "encoder.layer.1.mlp.fc1.weight")
    );

    // The quality file's backbone.* tensors replace the facebook ones.
    let quality = read_all(
        &dir.path().join(layout::QUALITY_SCORER),
        layout::QUALITY_SCORER,
    );
    let tuned = find(&quality, "backbone.layernorm.weight");
    assert_eq!(b.final_norm.weight, tuned);
    assert_ne!(b.final_norm.weight, find(&facebook, "layernorm.weight"));
    assert_eq!(
        l.fc2.bias.as_deref(),
        Some(&find(&quality, "backbone.encoder.layer.1.mlp.fc2.bias")[..])
    );
    assert_eq!(
        b.layers[0].fc2.bias.as_deref(),
        Some(&find(&facebook, "encoder.layer.0.mlp.fc2.bias")[..])
    );

    // LPIPS: AlexNet's geometry at the tiny widths, lins as wide as the convs.
    let strides: Vec<_> = m
        .lpips
        .convs
        .iter()
        .map(|c| (c.stride, c.padding, c.kernel()))
        .collect();
    assert_eq!(
        strides,
        vec![(4, 2, 11), (1, 2, 5), (1, 1, 3), (1, 1, 3), (1, 1, 3)]
    );
    for ((conv, lin), &width) in m
        .lpips
        .convs
        .iter()
        .zip(&m.lpips.lins)
        .zip(&TINY_ALEXNET_WIDTHS)
    {
        assert_eq!(conv.out_channels(), width);
        assert_eq!(lin.len(), width);
        assert!(lin.iter().all(|&w| w > 0.0));
    }
    assert_eq!(m.lpips.convs[1].in_channels(), 8);
    let alex = TorchCheckpoint::open(&dir.path().join(layout::ALEXNET), layout::ALEXNET)
        .expect("open alexnet");
    assert_eq!(alex.format(), TorchFormat::Zip);
    assert_eq!(alex.shapes()["classifier.6.weight"], vec![10, 32]);
    let w = alex
        .tensor("features.3.weight")
        .expect("read")
        .expect("present");
    assert_eq!(w.data, m.lpips.convs[1].weight.data);
}

#[test]
fn both_torch_formats_read_what_the_writers_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = SimRng::new(11);
    // Twelve tensors: legacy storage keys sort as strings ("0", "1", "10", "11", "2", …).
    let tensors: Vec<NamedTensor> = (0..12)
        .map(|i| {
            let shape = match i % 4 {
                0 => vec![3],
                1 => vec![2, 5],
                2 => vec![1, 4, 1, 1],
                _ => vec![2, 3, 3, 3],
            };
            let n = shape.iter().product();
            NamedTensor {
                name: format!("t{i}.weight"),
                data: (0..n).map(|_| rng.normal() as f32).collect(),
                shape,
            }
        })
        .collect();
    for kind in [StorageKind::Float, StorageKind::Half, StorageKind::BFloat16] {
        for legacy in [false, true] {
            let path = dir.path().join(format!("{kind:?}-{legacy}.pth"));
            if legacy {
                write_torch_legacy(&path, &tensors, kind).expect("write");
            } else {
                write_torch_zip(&path, &tensors, kind).expect("write");
            }
            let ck = TorchCheckpoint::open(&path, "x.pth").expect("open");
            let want = if legacy {
                TorchFormat::Legacy
            } else {
                TorchFormat::Zip
            };
            assert_eq!(ck.format(), want);
            let tol = match kind {
                StorageKind::Float => 0.0,
                StorageKind::Half => 2e-3,
                StorageKind::BFloat16 => 1.6e-2,
            };
            for t in &tensors {
                let got = ck.tensor(&t.name).expect("read").expect("present");
                assert_eq!(got.shape, t.shape, "{kind:?} legacy={legacy} {}", t.name);
                for (a, b) in got.data.iter().zip(&t.data) {
                    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{a} vs {b}");
                }
            }
            assert!(ck.tensor("absent").expect("read").is_none());
        }
    }
}

#[test]
fn f16_and_bf16_safetensors_and_a_dinov2_prefix_load() {
    let dir = tiny();
    let path = dir.path().join(layout::DINOV2_WEIGHTS);
    let mut tensors = read_all(&path, layout::DINOV2_WEIGHTS);
    for kind in [StorageKind::Half, StorageKind::BFloat16] {
        write_safetensors_file(&path, &tensors, kind).expect("write");
        let m = ModelsDir::new(dir.path()).load().expect("load");
        let want = &tensors
            .iter()
            .find(|t| t.name == "embeddings.cls_token")
            .expect("cls")
            .data;
        for (a, b) in m.quality.backbone.cls_token.iter().zip(want) {
            assert!((a - b).abs() < 0.02 * b.abs().max(1.0));
        }
    }
    for t in &mut tensors {
        t.name = format!("dinov2.{}", t.name);
    }
    write_safetensors_file(&path, &tensors, StorageKind::Float).expect("write");
    ModelsDir::new(dir.path())
        .load()
        .expect("load with the dinov2. prefix");
}

#[test]
fn sha256_pins_are_checked_and_a_mismatch_names_the_file() {
    let dir = tiny();
    let actual = sha256_file(&dir.path().join(layout::LPIPS_ALEX)).expect("hash");
    let pinned = ModelsDir::new(dir.path()).with_sha256(layout::LPIPS_ALEX, actual.to_uppercase());
    pinned.check().expect("a matching pin passes");
    let wrong = ModelsDir::new(dir.path()).with_sha256(layout::LPIPS_ALEX, "00".repeat(32));
    let e = wrong.check().expect_err("mismatch");
    assert!(
        matches!(&e, ModelFileError::Sha256Mismatch { file, actual: a, .. }
        if file == layout::LPIPS_ALEX && *a == actual)
    );
    assert!(e.to_string().contains("alex.pth"), "{e}");
}

#[test]
fn a_missing_file_names_it_and_its_download() {
    let dir = tiny();
    fs::remove_file(dir.path().join(layout::ALEXNET)).expect("rm");
    let e = err_of(dir.path());
    assert!(matches!(&e, ModelFileError::MissingFile { file, .. } if file == layout::ALEXNET));
    let msg = e.to_string();
    assert!(
        msg.contains("alexnet-owt-7be5be79.pth") && msg.contains("curl"),
        "{msg}"
    );
    fs::remove_dir_all(dir.path().join(layout::DINOV2_DIR)).expect("rm");
    let msg = err_of(dir.path()).to_string();
    assert!(msg.contains("dinov2-small/config.json"), "{msg}");
    assert!(
        msg.contains("huggingface-cli download facebook/dinov2-small"),
        "{msg}"
    );
}

#[test]
fn a_truncated_safetensors_file_is_a_typed_error() {
    let dir = tiny();
    let path = dir.path().join(layout::DINOV2_WEIGHTS);
    let bytes = fs::read(&path).expect("read");
    for cut in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&path, &bytes[..cut]).expect("write");
        let e = err_of(dir.path());
        assert!(
            matches!(&e, ModelFileError::Truncated { file, .. } if file == layout::DINOV2_WEIGHTS),
            "cut {cut}: {e}"
        );
    }
    // A header length past the end of the file.
    let mut long = (1u64 << 20).to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    fs::write(&path, &long).expect("write");
    let e = err_of(dir.path());
    assert!(
        e.to_string().contains("dinov2-small/model.safetensors"),
        "{e}"
    );
    assert!(matches!(e, ModelFileError::Truncated { .. }), "{e}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let dir = tiny();
    let q = dir.path().join(layout::QUALITY_SCORER);
    rewrite(&q, layout::QUALITY_SCORER, |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "score_head.weight")
            .expect("head");
        t.shape = vec![1, 31];
        t.data.truncate(31);
    });
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::WrongShape { file, name, expected, found }
        if file == layout::QUALITY_SCORER && name == "score_head.weight"
            && **expected == [1, 32] && **found == [1, 31]),
        "{e}"
    );

    // A fine-tuned backbone tensor must keep the facebook shape (load_state_dict's rule).
    let dir = tiny();
    let q = dir.path().join(layout::QUALITY_SCORER);
    rewrite(&q, layout::QUALITY_SCORER, |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "backbone.layernorm.bias")
            .expect("override");
        t.shape = vec![2, 16];
    });
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::WrongShape { file, name, .. }
        if file == layout::QUALITY_SCORER && name == "backbone.layernorm.bias"),
        "{e}"
    );

    // LPIPS lins must be as wide as AlexNet's convs.
    let dir = tiny();
    let lins: Vec<NamedTensor> = layout::lpips_tensors(&[8, 16, 16, 16, 12])
        .into_iter()
        .map(|s| NamedTensor {
            data: vec![0.1; s.shape.iter().product()],
            name: s.name,
            shape: s.shape,
        })
        .collect();
    write_torch_zip(
        &dir.path().join(layout::LPIPS_ALEX),
        &lins,
        StorageKind::Float,
    )
    .expect("w");
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::WrongShape { file, name, .. }
        if file == layout::LPIPS_ALEX && name == "lin4.model.1.weight"),
        "{e}"
    );
}

#[test]
fn a_missing_tensor_is_named_with_its_shape() {
    let dir = tiny();
    let w = dir.path().join(layout::DINOV2_WEIGHTS);
    rewrite(&w, layout::DINOV2_WEIGHTS, |ts| {
        ts.retain(|t| t.name != "encoder.layer.1.mlp.fc1.bias")
    });
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::MissingTensor { file, name, expected }
        if file == layout::DINOV2_WEIGHTS && name == "encoder.layer.1.mlp.fc1.bias"
            && **expected == [128]),
        "{e}"
    );
    // mask_token is never read: its absence is fine.
    let dir = tiny();
    let w = dir.path().join(layout::DINOV2_WEIGHTS);
    rewrite(&w, layout::DINOV2_WEIGHTS, |ts| {
        ts.retain(|t| t.name != "embeddings.mask_token")
    });
    ModelsDir::new(dir.path())
        .load()
        .expect("load without mask_token");
}

#[test]
fn garbage_and_truncated_checkpoints_are_typed_errors() {
    let dir = tiny();
    let pth = dir.path().join(layout::LPIPS_ALEX);
    let mut rng = SimRng::new(5);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    fs::write(&pth, &garbage).expect("write");
    let e = err_of(dir.path());
    assert_eq!(e.file(), layout::LPIPS_ALEX);
    assert!(e.to_string().contains("alex.pth"), "{e}");

    // A pickle that would execute code.
    fs::write(
        &pth,
        b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.",
    )
    .expect("write");
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::UnsupportedGlobal { file, module, name }
        if file == layout::LPIPS_ALEX && module == "os" && name == "system"),
        "{e}"
    );

    // An opcode torch never emits in a state dict.
    fs::write(&pth, b"\x80\x02}q\x00(X\x01\x00\x00\x00aI1\nu.").expect("write");
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::UnsupportedOpcode { file, name: "INT", .. }
        if file == layout::LPIPS_ALEX),
        "{e}"
    );
}

/// Every prefix and many random corruptions of both torch formats and of a safetensors
/// file: an error or a value, never a panic.
#[test]
fn corrupted_files_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tensors = vec![
        NamedTensor {
            name: "a".into(),
            shape: vec![2, 3],
            data: vec![1.0; 6],
        },
        NamedTensor {
            name: "b.weight".into(),
            shape: vec![1, 4, 1, 1],
            data: vec![0.5; 4],
        },
    ];
    let zip = dir.path().join("z.pth");
    let legacy = dir.path().join("l.pth");
    let st = dir.path().join("s.safetensors");
    write_torch_zip(&zip, &tensors, StorageKind::Float).expect("w");
    write_torch_legacy(&legacy, &tensors, StorageKind::Half).expect("w");
    write_safetensors_file(&st, &tensors, StorageKind::BFloat16).expect("w");
    let probe = dir.path().join("probe");
    let mut rng = SimRng::new(99);
    for source in [&zip, &legacy, &st] {
        let bytes = fs::read(source).expect("read");
        let is_st = source == &st;
        let try_read = |b: &[u8]| {
            fs::write(&probe, b).expect("write");
            if is_st {
                if let Ok(f) = SafetensorsFile::open(&probe, "s") {
                    for n in ["a", "b.weight"] {
                        let _ = f.tensor(n);
                    }
                }
            } else if let Ok(ck) = TorchCheckpoint::open(&probe, "p") {
                for n in ["a", "b.weight"] {
                    let _ = ck.tensor(n);
                }
            }
        };
        for cut in 0..bytes.len().min(1200) {
            try_read(&bytes[..cut]);
        }
        for _ in 0..600 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.between(0, 3) {
                let i = rng.between(0, b.len() - 1);
                b[i] = rng.next_u64() as u8;
            }
            try_read(&b);
        }
    }
}

#[test]
fn config_json_is_checked_key_by_key() {
    let dir = tiny();
    let cfg = dir.path().join(layout::DINOV2_CONFIG);
    let text = fs::read_to_string(&cfg).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");

    let mut swiglu = json.clone();
    swiglu["use_swiglu_ffn"] = true.into();
    fs::write(&cfg, swiglu.to_string()).expect("write");
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::UnsupportedArchitecture { file, .. }
        if file == layout::DINOV2_CONFIG),
        "{e}"
    );

    let mut registers = json.clone();
    registers["num_register_tokens"] = 4.into();
    fs::write(&cfg, registers.to_string()).expect("write");
    assert!(matches!(
        err_of(dir.path()),
        ModelFileError::UnsupportedArchitecture { .. }
    ));

    let mut no_hidden = json.clone();
    if let Some(o) = no_hidden.as_object_mut() {
        o.remove("hidden_size");
    }
    fs::write(&cfg, no_hidden.to_string()).expect("write");
    let e = err_of(dir.path());
    assert!(
        matches!(&e, ModelFileError::BadConfig { key, .. } if key == "hidden_size"),
        "{e}"
    );

    let mut bad_heads = json.clone();
    bad_heads["num_attention_heads"] = 3.into();
    fs::write(&cfg, bad_heads.to_string()).expect("write");
    let e = err_of(dir.path());
    assert!(matches!(&e, ModelFileError::BadConfig { key, .. } if key == "num_attention_heads"));

    fs::write(&cfg, "{ not json").expect("write");
    assert!(matches!(
        err_of(dir.path()),
        ModelFileError::Malformed { .. }
    ));
}
