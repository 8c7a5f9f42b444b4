#!/usr/bin/env python3
"""Parity and speed reference for the scorer (kernels/src/scorer), run on the GPU machine.

It rebuilds the v45 validation service's quality, SSIM and LPIPS computation from the
libraries the service pins (transformers' Dinov2Model, torchmetrics 1.5.1's SSIM and LPIPS,
torchvision's AlexNet), feeding them the same random weights and the same 8-bit images as our
Rust scorer, and compares the numbers. Facts followed: VALIDATOR_SCORING.md §4, §5, §8, §9
(three-gen-subnet 5fc61f1: validation/engine/models/quality_model.py,
validation/engine/metrics/similarity_scorer.py, validation/engine/validation_engine.py,
validation/engine/utils/statistics_computation_utils.py). The code here is ours.

Subcommands:
  make-models DIR     random-weight models at the real sizes, saved by the real libraries
                      under the upstream file names (dinov2-small/ via save_pretrained,
                      quality_scorer.safetensors via safetensors.torch.save_model on the
                      service's DINOv2Net layout, alexnet-owt-7be5be79.pth via torch.save,
                      alex.pth via torch.save in the legacy format)
  score MODELS CASES OUT.json
                      for every CASES/<case>/view_NN.png (16 views), the service's numbers
                      and the CLS embeddings, and the time of the service's own loop
  compare REF.json OURS.json...
                      per quantity, the largest absolute and relative difference; exit 1
                      when a tolerance is missed
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_FILE = "alex.pth"
QUALITY_FILE = "quality_scorer.safetensors"
DINO_DIR = "dinov2-small"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dino_config():
    from transformers import Dinov2Config

    # facebook/dinov2-small's published config values.
    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        hidden_act="gelu",
    )


class QualityNet(torch.nn.Module):
    """The service's DINOv2Net layout: backbone, emb_head (unused), score_head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.emb_head = torch.nn.Linear(hidden, 256)
        self.score_head = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        cls = self.backbone(x).last_hidden_state[:, 0]
        return cls, self.score_head(cls).squeeze(1)


def randomise(module, generator, scale=0.02):
    """Perturbs every parameter so that no tensor keeps its constant initial value
    (layer scales of 1, LayerNorm weights of 1 and biases of 0 would hide layout bugs)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator) * scale
            if name.endswith("lambda1") or (p.dim() == 1 and "norm" in name and "weight" in name):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:
                p.add_(noise)
            else:
                p.add_(noise * 0.1)


def make_models(out):
    from safetensors.torch import save_model
    from transformers import Dinov2Model
    import torchvision

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(17)
    torch.manual_seed(17)
    facebook = Dinov2Model(dino_config()).eval()
    randomise(facebook, g)
    facebook.save_pretrained(out / DINO_DIR, safe_serialization=True)
    # The scorer file holds the whole DINOv2Net: a backbone fine-tuned away from facebook's.
    tuned = Dinov2Model(dino_config()).eval()
    tuned.load_state_dict(facebook.state_dict())
    randomise(tuned, g, scale=0.01)
    net = QualityNet(tuned)
    with torch.no_grad():
        net.score_head.weight.copy_(torch.randn(net.score_head.weight.shape, generator=g) * 0.05)
        net.score_head.bias.fill_(0.1)
    save_model(net, str(out / QUALITY_FILE))
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save(alexnet.state_dict(), out / ALEXNET_FILE)
    widths = [64, 192, 384, 256, 256]
    lins = {
        f"lin{k}.model.1.weight": torch.rand((1, c, 1, 1), generator=g) * 0.1
        for k, c in enumerate(widths)
    }
    torch.save(lins, out / LPIPS_FILE, _use_new_zipfile_serialization=False)
    print(f"make-models: wrote {sorted(p.name for p in out.iterdir())} under {out}")


def load_quality(models, device):
    from safetensors.torch import load_model
    from transformers import Dinov2Model

    backbone = Dinov2Model.from_pretrained(str(Path(models) / DINO_DIR))
    net = QualityNet(backbone)
    load_model(net, str(Path(models) / QUALITY_FILE), strict=False)
    return net.eval().to(device)


def load_lpips(models, device):
    """torchmetrics' LPIPS with our files in the places torchvision's cache and torchmetrics'
    package hold the real ones (no download: the cache file exists)."""
    import torchmetrics
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    hub = Path(os.environ.setdefault("TORCH_HOME", "/tmp/torch_home")) / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(models) / ALEXNET_FILE, hub / ALEXNET_FILE)
    pkg = Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models"
    shutil.copy(Path(models) / LPIPS_FILE, pkg / LPIPS_FILE)
    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device).eval()


def read_case(case_dir, device):
    from PIL import Image

    views = sorted(case_dir.glob("view_*.png"))
    return [
        torch.from_numpy(np.array(Image.open(p).convert("RGB"))).to(device) for p in views
    ]


def quality_input(img, device):
    x = img.to(device).permute(2, 0, 1).float() / 255.0
    x = F.interpolate(x.unsqueeze(0), size=(518, 518), mode="bilinear",
                      align_corners=False, antialias=False).squeeze(0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    return (x - mean) / std


def lpips_input(img):
    x = img.unsqueeze(0).permute(0, 3, 1, 2) / 255.0
    return torch.clip(F.interpolate(x, size=(256, 256), mode="bicubic", align_corners=False), 0, 1)


def filter_outliers(values):
    """pytod KNN(n_neighbors=5, contamination=0.1) as the service uses it: distance to the
    5th nearest other value, drop those strictly above the 90th percentile (linear)."""
    x = torch.sort(torch.as_tensor(values, dtype=torch.float64))[0].reshape(-1, 1)
    d = torch.cdist(x, x)
    score = torch.topk(d, 6, largest=False, dim=1)[0][:, -1].numpy()
    threshold = np.percentile(score, 90)
    return x.flatten()[torch.from_numpy(score <= threshold)]


def geometric_mean(t):
    return float(torch.exp(torch.log(t).mean()))


def sigmoid(x, k, x0):
    return 1.0 / (1.0 + np.exp(-k * (x - x0)))


def service_numbers(images, quality, lpips, ssim, device):
    """The service's loop: 16 batch-1 quality forwards, then LPIPS and SSIM pair by pair."""
    cls, quality_scores = [], []
    with torch.no_grad():
        for img in images:
            emb, logit = quality(quality_input(img, device).unsqueeze(0))
            cls.append(emb[0])
            quality_scores.append(torch.sigmoid(logit)[0])
        pair_lpips, pair_ssim = [], []
        n = len(images)
        for i in range(n):
            a, b = images[i], images[(i + 1) % n]
            pair_lpips.append(lpips(lpips_input(a), lpips_input(b)))
            fa = a.unsqueeze(0).permute(0, 3, 1, 2) / 255.0
            fb = b.unsqueeze(0).permute(0, 3, 1, 2) / 255.0
            pair_ssim.append(ssim(fa, fb))
        torch.cuda.synchronize()
    return cls, quality_scores, pair_lpips, pair_ssim


def _ssim_f64(a, b):
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    fa = a.unsqueeze(0).permute(0, 3, 1, 2).double() / 255.0
    fb = b.unsqueeze(0).permute(0, 3, 1, 2).double() / 255.0
    return ssim(fa, fb, data_range=1.0)


def score(models, cases, out_json, reps=30):
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # the service leaves TF32 matmul off
    # ... and PyTorch's default leaves cuDNN's TF32 convolutions on (SSIM's blur, AlexNet,
    # the patch embedding); REF_CUDNN_TF32=0 turns them off to see what that changes.
    torch.backends.cudnn.allow_tf32 = os.environ.get("REF_CUDNN_TF32", "1") != "0"
    quality = load_quality(models, device)
    lpips = load_lpips(models, device)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
    result = {"cases": {}}
    case_dirs = sorted(p for p in Path(cases).iterdir() if p.is_dir())
    for case_dir in case_dirs:
        images = read_case(case_dir, device)
        cls, q, pl, ps = service_numbers(images, quality, lpips, ssim, device)
        q = [float(v) for v in q]
        pl = [float(v) for v in pl]
        ps = [float(v) for v in ps]
        iqa = float(np.float32(np.mean(np.array(q, dtype=np.float32))))
        ssim_agg = geometric_mean(filter_outliers(ps))
        lpips_agg = 1.0 - geometric_mean(filter_outliers(pl))
        alignment = 1.0
        final = (0.75 * iqa + 0.2 * alignment + 0.025 * sigmoid(ssim_agg, 35, 0.83)
                 + 0.025 * lpips_agg * sigmoid(lpips_agg, 30, 0.7))
        # SSIM again in float64: how much of any difference is torch's float32 arithmetic.
        n = len(images)
        ps64 = [
            float(_ssim_f64(images[i], images[(i + 1) % n])) for i in range(n)
        ]
        result["cases"][case_dir.name] = {
            "view_quality": q, "pair_ssim": ps, "pair_lpips": pl, "pair_ssim_f64": ps64,
            "cls": [c.float().cpu().tolist() for c in cls],
            "iqa": iqa, "ssim": ssim_agg, "lpips": lpips_agg, "score": final,
        }
        print(f"score: {case_dir.name}: score {final:.5f} iqa {iqa:.5f} ssim {ssim_agg:.5f} lpips {lpips_agg:.5f}")
    # The time of the service's loop on images already on the GPU (fp32, eager).
    images = read_case(case_dirs[0], device)
    for _ in range(3):
        service_numbers(images, quality, lpips, ssim, device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        service_numbers(images, quality, lpips, ssim, device)
        times.append((time.perf_counter() - t0) * 1e3)
    result["pytorch_ms"] = {"median": float(np.median(times)), "min": float(np.min(times)),
                            "reps": reps, "torch": torch.__version__,
                            "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    print(f"score: PyTorch eager fp32, IQA + SSIM + LPIPS of 16 views: median {np.median(times):.2f} ms "
          f"(min {np.min(times):.2f}, max {np.max(times):.2f}, {reps} reps, torch {torch.__version__}, "
          f"cudnn tf32 {torch.backends.cudnn.allow_tf32})")
    Path(out_json).write_text(json.dumps(result))


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))), float(np.max(np.abs(a - b)))


def compare(ours_json, ref_json, label="ours"):
    ours = json.loads(Path(ours_json).read_text())
    ref = json.loads(Path(ref_json).read_text())
    ok = True
    for case, r in ref["cases"].items():
        o = ours["cases"].get(case)
        if o is None:
            print(f"compare: {label} has no case {case}")
            ok = False
            continue
        for key in ("view_quality", "pair_ssim", "pair_lpips", "iqa", "ssim", "lpips", "score"):
            if key not in o:
                continue
            rmax, amax = rel(o[key], r[key])
            print(f"compare: {label} {case} {key:13s} max rel {rmax:.2e} max abs {amax:.2e}")
        if "pair_ssim_f64" in r:
            rmax, amax = rel(o["pair_ssim"], r["pair_ssim_f64"])
            print(f"compare: {label} {case} pair_ssim vs torchmetrics in float64  max rel {rmax:.2e} max abs {amax:.2e}")
        if "cls" in o:
            # Relative to the embedding's norm, per view: the "within 1e-3 relative".
            worst = max(
                float(np.linalg.norm(np.subtract(a, b)) / np.linalg.norm(b))
                for a, b in zip(o["cls"], r["cls"])
            )
            print(f"compare: {label} {case} cls embedding  max |ours-ref|/|ref| {worst:.2e}")
            ok &= worst <= o.get("cls_tolerance", 1e-3)
        final_diff = abs(o["score"] - r["score"])
        ok &= final_diff <= o.get("score_tolerance", 0.005)
    print(f"compare: {label}: {'ok' if ok else 'FAILED'}")
    return ok


def main(argv):
    if len(argv) >= 2 and argv[1] == "make-models":
        make_models(argv[2])
    elif len(argv) >= 2 and argv[1] == "score":
        score(argv[2], argv[3], argv[4])
    elif len(argv) >= 2 and argv[1] == "compare":
        ok = True
        for ours in argv[3:]:
            ok &= compare(ours, argv[2], Path(ours).stem)
        sys.exit(0 if ok else 1)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
