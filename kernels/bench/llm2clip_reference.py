#!/usr/bin/env python3
"""Parity reference for kernels/src/scorer/llm2clip (the image task's alignment).

Builds the LLM2CLIP-Openai-L-14-336 image side as transformers 4.44.2 builds a CLIP vision
tower (CLIPVisionModel from a CLIPVisionConfig, quick_gelu, eps 1e-5) plus the bias-free
visual_projection (hidden -> projection), with random weights (the hub's remote code cannot
be loaded offline), writes it where the Rust loader looks
(<out>/LLM2CLIP-Openai-L-14-336/{config.json,model.safetensors}, real tensor names, fp16),
then scores a prompt image against PNG views exactly as the validation service does
(pipeline.py:102-108, alignment_scorer.py:139-181, validation_engine.py:76-78) and prints
JSON: the prompt pixels' sha256 after PIL's decoding, the embeddings, the 16 cosines, the
kept cosines and the alignment.

    python3 llm2clip_reference.py --out /tmp/l2c --size real --prompt prompt.png \
        --views views/*.png [--dtype fp16|fp32] [--device cuda]

--dtype fp16 is the service (fp16 weights and inputs); fp32 is the reference's arithmetic
(for the 1e-3 relative embedding check). Needs torch, transformers==4.44.2, safetensors,
pillow==10.0.0, numpy; pybase64==1.4.0 if installed (else the stdlib's non-strict
base64, which differs only on malformed padding).
"""

import argparse
import base64
import hashlib
import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIZES = {
    # hidden, layers, heads, mlp, patch, image, projection
    "real": (1024, 24, 16, 4096, 14, 336, 1280),
    "tiny": (32, 2, 2, 64, 14, 28, 16),
}
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
FOLDER = "LLM2CLIP-Openai-L-14-336"


def b64decode(text):
    try:
        import pybase64

        return pybase64.b64decode(text)
    except ImportError:
        return base64.b64decode(text)


def add_white_background(image):
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA"))


def prompt_pixels(path):
    """The service's decoding: base64 text (a .b64/.txt file) or raw image bytes."""
    raw = open(path, "rb").read()
    if path.endswith((".b64", ".txt")):
        raw = b64decode(raw.decode("latin-1"))
    image = Image.open(io.BytesIO(raw))
    if len(image.getbands()) == 4:
        image = add_white_background(image)
    image = image.convert("RGB")
    return np.asarray(image)


def build(size, seed):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    hidden, layers, heads, mlp, patch, image, proj = SIZES[size]
    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image,
        patch_size=patch,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=proj,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    vision = CLIPVisionModel(config).eval()
    # Random init leaves the norms at 1/0 and the class embedding small: spread them so the
    # check exercises every tensor.
    with torch.no_grad():
        for name, p in vision.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.05)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif "class_embedding" in name or "position_embedding" in name:
                p.normal_(0.0, 0.5)
    projection = torch.nn.Linear(hidden, proj, bias=False).eval()
    return config, vision, projection


def save(out, config, vision, projection):
    from safetensors.torch import save_file

    folder = os.path.join(out, FOLDER)
    os.makedirs(folder, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in vision.state_dict().items()
               if not k.endswith("position_ids")}
    tensors["visual_projection.weight"] = projection.weight.detach().to(torch.float16).contiguous()
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["LLM2CLIPModel"],
        "projection_dim": config.projection_dim,
        "vision_config": {
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_channels": 3,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    # The weights as stored (fp16), so both sides compute from the same values.
    with torch.no_grad():
        state = {k: v.float() for k, v in tensors.items()}
        projection.weight.copy_(state.pop("visual_projection.weight"))
        vision.load_state_dict(state, strict=False)


def preprocess(images, side, dtype, device):
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 3
    std = torch.tensor(STD).view(1, 3, 1, 1) * 3
    x = torch.stack(images, dim=0).to(device) / 255.0
    x = x.permute(0, 3, 1, 2).to(dtype)
    x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
    # torchvision Normalize: mean/std cast to the input's dtype, sub then div.
    return (x - mean.to(device, dtype)) / std.to(device, dtype)


def embed(vision, projection, images, side, dtype, device):
    with torch.no_grad():
        pixels = preprocess(images, side, dtype, device)
        pooled = vision(pixel_values=pixels).pooler_output
        e = projection(pooled)
        e = e / e.norm(dim=-1, keepdim=True)
    return e


def filter_outliers(values):
    """pytod KNN(n_neighbors=5, contamination=0.1) as the service uses it."""
    try:
        from pytod.models.knn import KNN

        x = torch.sort(torch.tensor(values))[0].reshape(-1, 1)
        clf = KNN(device="cpu")
        clf.fit(x)
        labels = torch.tensor(clf.labels_)
        x[torch.nonzero(labels == 1, as_tuple=True)[0]] = -1
        return [float(v) for v in x[x != -1]]
    except ImportError:
        v = np.asarray(values, dtype=np.float64)
        scores = np.array([np.sort(np.abs(v - x)[np.arange(len(v)) != i])[4] for i, x in enumerate(v)])
        threshold = np.percentile(scores, 90)
        return sorted(float(x) for x, s in zip(v, scores) if s <= threshold)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prompt", required=True, help="image file, or .b64/.txt base64 text")
    ap.add_argument("--views", nargs="+", required=True, help="PNG views (8-bit RGB)")
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32

    config, vision, projection = build(args.size, args.seed)
    save(args.out, config, vision, projection)
    vision = vision.to(args.device, dtype)
    projection = projection.to(args.device, dtype)

    prompt = prompt_pixels(args.prompt)
    views = [np.asarray(Image.open(p).convert("RGB")) for p in args.views]
    side = config.image_size
    p = embed(vision, projection, [torch.from_numpy(prompt.copy())], side, dtype, args.device)
    v = embed(vision, projection, [torch.from_numpy(x.copy()) for x in views], side, dtype, args.device)
    cosines = (p @ v.T).to(torch.float32).reshape(-1).tolist()
    kept = filter_outliers(cosines)
    alignment = float(torch.exp(torch.log(torch.tensor(kept)).mean()))
    json.dump(
        {
            "size": args.size,
            "dtype": args.dtype,
            "prompt_shape": list(prompt.shape),
            "prompt_rgb_sha256": hashlib.sha256(prompt.tobytes()).hexdigest(),
            "prompt_embedding": p[0].float().cpu().tolist(),
            "view_embeddings": v.float().cpu().tolist(),
            "cosines": cosines,
            "kept": kept,
            "alignment": alignment,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
