#!/usr/bin/env python3
"""Reference outputs of the validator's text-alignment model (open_clip 2.29.0
`convnext_large_d`), for parity with splatfleet's `kernels/src/scorer/convnext_clip/`.

Subcommands:
  ids      fill the `ids` of kernels/tests/golden/clip_prompts.json from open_clip's tokenizer
           (`open_clip.get_tokenizer("convnext_large_d")`); `--no-torch` runs open_clip's
           tokenizer.py without torch installed (only ftfy and regex are needed).
  tiny     write a random-weight convnext CLIP with the real tensor names, in the real file
           format (open_clip_model.safetensors), built by open_clip itself from a shrunken
           model config (same architecture and names, smaller dims), plus its config JSON.
  score    embeddings and the alignment score for images and prompts, as the validator
           computes them (TextVSImageMetric.score_text_alignment with the engine's / 0.35),
           printed as JSON. `--weights` takes a safetensors/bin file (real or tiny),
           `--config` the model config JSON for a tiny model, `--fp32` drops the autocast.

Examples (on a machine with open_clip_torch==2.29.0, timm, ftfy, regex, torch):
  python kernels/bench/clip_reference.py ids
  python kernels/bench/clip_reference.py tiny --out /tmp/tinyclip --seed 1
  python kernels/bench/clip_reference.py score --weights /tmp/tinyclip/open_clip_model.safetensors \
      --config /tmp/tinyclip/open_clip_config.json --images views.npy --prompt "a red chair" --fp32
`views.npy`: uint8 array [N, H, W, 3] (the renderer's 8-bit views).
"""
import argparse
import json
import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = os.path.join(REPO, "kernels", "tests", "golden", "clip_prompts.json")

# The validator's image normalisation (alignment_scorer.py:26-28): CLIP's mean and std, x3.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
TEXT_DIVISOR = 0.35  # validation_engine.py:102

# A shrunken convnext_large_d: the same structure (timm convnext, mlp head, text transformer),
# the dims small enough for CI. timm's ConvNeXt takes depths/dims as model kwargs.
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {
        "timm_model_name": "convnext_large",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "mlp",
        "timm_drop": 0.0,
        "timm_drop_path": 0.0,
        "image_size": 224,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_TIMM_KWARGS = {"depths": [1, 1, 2, 1], "dims": [8, 16, 24, 32]}


def tokenizer_without_torch():
    """open_clip's tokenizer.py, imported with a stub torch (token ids need none of it)."""
    import importlib.util

    stub = types.ModuleType("torch")
    stub.LongTensor = stub.Tensor = object
    stub.long = None
    sys.modules.setdefault("torch", stub)
    try:
        import numpy  # noqa: F401  (tokenizer.py imports it; token ids do not use it)
    except ImportError:
        sys.modules["numpy"] = types.ModuleType("numpy")
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip not found: pip install --no-deps open_clip_torch==2.29.0")
    path = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer.py")
    mod_spec = importlib.util.spec_from_file_location("oc_tokenizer", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    tok = module.SimpleTokenizer(context_length=77)  # what get_tokenizer builds for this model

    def call(text):
        ids = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
        if len(ids) > 77:
            ids = ids[:77]
            ids[-1] = tok.eot_token_id
        return ids + [0] * (77 - len(ids))

    return call


def cmd_ids(args):
    if args.no_torch:
        tokenize = tokenizer_without_torch()
    else:
        import open_clip

        tok = open_clip.get_tokenizer("convnext_large_d")
        tokenize = lambda text: tok(text)[0].tolist()  # noqa: E731
    entries = json.load(open(args.prompts, encoding="utf-8"))
    for entry in entries:
        entry["ids"] = tokenize(entry["prompt"])
    with open(args.prompts, "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"filled {len(entries)} entries of {args.prompts}")


def build_model(config, timm_kwargs):
    import open_clip
    import timm
    import torch

    if timm_kwargs:
        # open_clip's TimmModel calls timm.create_model(name, pretrained=..., drop_path_rate=...);
        # pass the shrunken depths/dims through.
        original = timm.create_model

        def create(name, *a, **kw):
            return original(name, *a, **dict(timm_kwargs, **kw))

        open_clip.timm_model.timm.create_model = create
    model = open_clip.model.CLIP(
        embed_dim=config["embed_dim"],
        vision_cfg=config["vision_cfg"],
        text_cfg=config["text_cfg"],
    )
    model.eval()
    return model, torch


def cmd_tiny(args):
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    model, _ = build_model(TINY_CONFIG, TINY_TIMM_KWARGS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Random weights of a sensible scale; layer scales and norms away from identity.
            if name.endswith("gamma"):
                p.uniform_(0.1, 1.0)
            elif p.dim() <= 1:
                p.uniform_(-0.2, 0.2).add_(1.0 if name.endswith("weight") else 0.0)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.uniform_(-(fan_in ** -0.5), fan_in ** -0.5)
    os.makedirs(args.out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, "open_clip_model.safetensors"))
    torch.save(state, os.path.join(args.out, "open_clip_pytorch_model.bin"))
    with open(os.path.join(args.out, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": TINY_CONFIG, "timm_kwargs": TINY_TIMM_KWARGS}, f, indent=1)
    print(json.dumps({k: list(v.shape) for k, v in state.items()}, indent=1))


def geometric_mean_after_filter(scores):
    """The service's filter_outliers (pytod KNN, 5 neighbours, 90th percentile, strict >),
    clip to [0, 1], geometric mean (statistics_computation_utils.py)."""
    import numpy as np

    x = np.asarray(scores, dtype=np.float64)
    if len(x) > 5:
        d = np.abs(x[:, None] - x[None, :])
        knn = np.sort(d, axis=1)[:, 5]  # 5th nearest other value (column 0 is itself)
        x = x[knn <= np.percentile(knn, 90)]
    x = np.clip(x, 0.0, 1.0)
    return float(np.exp(np.mean(np.log(x))))


def cmd_score(args):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torchvision import transforms

    if args.config:
        cfg = json.load(open(args.config))
        model, _ = build_model(cfg["model_cfg"], cfg.get("timm_kwargs"))
    else:
        import open_clip

        model, _, _ = open_clip.create_model_and_transforms("convnext_large_d")
    if args.weights.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(args.weights)
    else:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    model = model.to(device)
    import open_clip

    tokenizer = open_clip.get_tokenizer("convnext_large_d")

    images = np.load(args.images)
    stacked = torch.from_numpy(images).to(device) / 255.0
    stacked = stacked.permute(0, 3, 1, 2)
    if not args.fp32:
        stacked = stacked.to(torch.float16)
    stacked = F.interpolate(stacked, size=(224, 224), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 3
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 3
    stacked = transforms.Normalize(mean, std)(stacked)
    out = {"prompts": []}
    for prompt in args.prompt:
        tokens = tokenizer(prompt).to(device)
        autocast = torch.amp.autocast(device.type, enabled=not args.fp32)
        with torch.no_grad(), autocast:
            img = model.encode_image(stacked)
            txt = model.encode_text(tokens)
            img_n = img / img.norm(dim=-1, keepdim=True)
            txt_n = txt / txt.norm(dim=-1, keepdim=True)
        cos = (img_n @ txt_n.T).to(torch.float32)[:, 0].cpu().tolist()
        alignment = geometric_mean_after_filter(cos)
        out["prompts"].append(
            {
                "prompt": prompt,
                "ids": tokens[0].cpu().tolist(),
                "text_embedding": txt[0].float().cpu().tolist(),
                "cosines": cos,
                "geometric_mean": alignment,
                "alignment_score": alignment / TEXT_DIVISOR,
            }
        )
    out["image_embeddings"] = img.float().cpu().tolist()
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ids")
    p.add_argument("--prompts", default=PROMPTS)
    p.add_argument("--no-torch", action="store_true")
    p = sub.add_parser("tiny")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("score")
    p.add_argument("--weights", required=True)
    p.add_argument("--config")
    p.add_argument("--images", required=True)
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    {"ids": cmd_ids, "tiny": cmd_tiny, "score": cmd_score}[args.cmd](args)


if __name__ == "__main__":
    main()
