#!/usr/bin/env python3
"""The PyTorch side of the alignment speed ratio: the validation service's own way of
computing both alignments of one model's 16 views (three-gen-subnet 5fc61f1,
validation/engine/metrics/alignment_scorer.py), timed on the GPU with the real model shapes
and random weights (no download, no network):

- text task: open_clip convnext_large_d, views stacked /255 -> fp16 -> bicubic to 224 ->
  Normalize(mean x3, std x3), encode_image and encode_text under torch.amp.autocast("cuda"),
  L2-normalise, prompt @ views.T (alignment_scorer.py:26-89);
- image task: a CLIP ViT-L/14-336 vision tower + the bias-free 1024 -> 1280 projection in
  fp16 (LLM2CLIP's image side as transformers builds it), prompt image as batch 1, views as
  batch 16, each /255 -> fp16 -> bicubic to 336 -> Normalize x3 (alignment_scorer.py:104-181).

Each is timed as the median of --reps runs after --warmup, torch.cuda.synchronize() around
each; prints JSON {"text_ms", "image_ms"}. Our numbers come from examples/alignment_check in
the same machine session:   python3 kernels/bench/alignment_torch_time.py --reps 20
(needs torch, open_clip_torch 2.29.0, transformers 4.44.2; kernels/bench/alignment_run.sh
installs the last two from .whl/).
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]) * 3
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]) * 3


def preprocess(views_u8, side):
    x = views_u8.permute(0, 3, 1, 2).float().div(255).half()
    x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
    mean = MEAN.to(x.device, x.dtype).view(1, 3, 1, 1)
    std = STD.to(x.device, x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def text_task(views, reps, warmup):
    import open_clip

    model = open_clip.create_model("convnext_large_d").cuda().eval()
    tokenizer = open_clip.get_tokenizer("convnext_large_d")

    def run():
        with torch.no_grad():
            x = preprocess(views, 224)
            tokens = tokenizer(["a red ceramic teapot with a dark handle"]).cuda()
            with torch.amp.autocast("cuda"):
                image = model.encode_image(x)
                text = model.encode_text(tokens)
            image = image / image.norm(dim=-1, keepdim=True)
            text = text / text.norm(dim=-1, keepdim=True)
            return (text @ image.T).float().cpu()

    return timed(run, reps, warmup)


def image_task(views, prompt, reps, warmup):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=336, patch_size=14,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    vision = CLIPVisionModel(config).cuda().half().eval()
    projection = torch.nn.Linear(1024, 1280, bias=False).cuda().half().eval()

    def features(x):
        pooled = vision(pixel_values=x).pooler_output
        f = projection(pooled)
        return f / f.norm(dim=-1, keepdim=True)

    def run():
        with torch.no_grad():
            p = features(preprocess(prompt, 336))
            v = features(preprocess(views, 336))
            return (p @ v.T).float().cpu()

    return timed(run, reps, warmup)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    views = torch.randint(0, 256, (16, 518, 518, 3), dtype=torch.uint8).cuda()
    prompt = torch.randint(0, 256, (1, 384, 384, 3), dtype=torch.uint8).cuda()
    out = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "text_ms": text_task(views, args.reps, args.warmup),
        "image_ms": image_task(views, prompt, args.reps, args.warmup),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
