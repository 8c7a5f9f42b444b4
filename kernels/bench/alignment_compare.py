#!/usr/bin/env python3
"""Helpers of kernels/bench/alignment_run.sh (the alignment parity run on the GPU machine).

Subcommands:
  inputs    16 object-like test views (a shaded blob on a grey/white background, turning and
            moving per view) as 8-bit RGB PNGs plus views.npy (the uint8 [N, H, W, 3] array
            clip_reference.py reads), and an RGBA prompt PNG (partly transparent object).
  clipreal  a random-weight convnext_large_d at the true shapes, built by open_clip itself
            (open_clip_model.safetensors, real names), the weights spread as
            clip_reference.py's `tiny` spreads them.
  vocab     copies open_clip's bpe_simple_vocab_16e6.txt.gz into a folder.
  compare   diffs our JSON against a reference JSON (text or image task), prints one table
            row per comparison and appends it to a JSON-lines file.

Needs numpy and pillow (inputs, compare); torch and open_clip (clipreal, vocab).
"""
import argparse
import json
import math
import os
import shutil
import sys


def cmd_inputs(args):
    import numpy as np
    from PIL import Image

    os.makedirs(args.out, exist_ok=True)
    n, s = args.views, args.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) / (s - 1)
    views = []
    for v in range(n):
        t = 2 * math.pi * v / n
        # background: light grey to white vertical gradient
        bg = 0.80 + 0.2 * yy
        img = np.stack([bg, bg, bg], axis=-1)
        cx, cy = 0.5 + 0.08 * math.cos(t), 0.52 + 0.04 * math.sin(t)
        rx, ry = 0.22 + 0.05 * abs(math.cos(t)), 0.30
        # rotated ellipse body
        c, sn = math.cos(t / 2), math.sin(t / 2)
        dx, dy = xx - cx, yy - cy
        u, w = (c * dx + sn * dy) / rx, (-sn * dx + c * dy) / ry
        r2 = u * u + w * w
        body = r2 <= 1.0
        shade = np.clip(0.55 + 0.45 * (-(u * 0.6) - w * 0.5 + np.sqrt(np.clip(1 - r2, 0, 1))), 0, 1)
        colour = np.array([0.85, 0.25 + 0.3 * (v % 4) / 3, 0.15])
        img[body] = shade[body, None] * colour
        # a darker "handle": a small disc beside the body
        hx, hy = cx + 0.28 * math.cos(t), cy - 0.05
        handle = (xx - hx) ** 2 + (yy - hy) ** 2 <= 0.06 ** 2
        img[handle] = np.array([0.2, 0.2, 0.35])
        # soft shadow under the object
        shadow = ((xx - cx) / 0.3) ** 2 + ((yy - 0.88) / 0.04) ** 2 <= 1.0
        img[shadow & ~body] *= 0.75
        u8 = np.clip(img * 255.0, 0, 255).astype(np.uint8)
        views.append(u8)
        Image.fromarray(u8, "RGB").save(os.path.join(args.out, f"v{v:02d}.png"))
    np.save(os.path.join(args.out, "views.npy"), np.stack(views))
    # The prompt: RGBA, transparent background, a half-transparent edge.
    p = args.prompt_size
    yy, xx = np.mgrid[0:p, 0:p].astype(np.float64) / (p - 1)
    r2 = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.38) ** 2
    rgba = np.zeros((p, p, 4), dtype=np.float64)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 0.8, 0.3 + 0.2 * yy, 0.1 + 0.2 * xx
    rgba[..., 3] = np.clip((1.1 - r2) / 0.2, 0, 1)
    Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(
        os.path.join(args.out, "prompt.png"))
    print(f"wrote {n} views of {s}x{s} and prompt.png ({p}x{p} RGBA) under {args.out}")


def cmd_clipreal(args):
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    model = open_clip.create_model("convnext_large_d")  # no pretrained tag: no download
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.1, 1.0)
            elif p.dim() <= 1:
                p.uniform_(-0.2, 0.2).add_(1.0 if name.endswith("weight") else 0.0)
            else:
                fan_in = p[0].numel()
                p.uniform_(-(fan_in ** -0.5), fan_in ** -0.5)
    os.makedirs(args.out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, "open_clip_model.safetensors"))
    print(f"wrote {len(state)} tensors to {args.out}/open_clip_model.safetensors")


def cmd_vocab(args):
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip not found")
    src = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(src, args.out)
    print(f"copied {src} to {args.out}")


def rel_err(a, b):
    """max over rows of ||a - b|| / ||b||."""
    import numpy as np

    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(b, axis=-1), 1e-30)))


def max_abs(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def num(x):
    return float("nan") if x is None else float(x)


def cmd_compare(args):
    ours = json.load(open(args.ours))
    ref = json.load(open(args.ref))
    row = {"label": args.label, "task": args.task}
    if args.task == "text":
        o, r = ours["prompts"][0], ref["prompts"][0]
        r_kept = sorted(filter_text(r["cosines"]))
        row.update(
            ids_equal=o["ids"] == r["ids"],
            image_emb_rel=rel_err(ours["image_embeddings"], ref["image_embeddings"]),
            text_emb_rel=rel_err(o["text_embedding"], r["text_embedding"]),
            cos_abs=max_abs(o["cosines"], r["cosines"]),
            # A Python output (the fp16 vs fp32 row) has no "kept": filter its cosines here.
            kept_same=len(o.get("kept", filter_text(o["cosines"]))) == len(r_kept),
            align_ours=o["alignment_score"], align_ref=r["alignment_score"],
        )
    else:
        row.update(
            ids_equal=ours["prompt_rgb_sha256"] == ref["prompt_rgb_sha256"]
            and ours["prompt_shape"] == ref["prompt_shape"],
            image_emb_rel=rel_err(ours["view_embeddings"], ref["view_embeddings"]),
            text_emb_rel=rel_err(ours["prompt_embedding"], ref["prompt_embedding"]),
            cos_abs=max_abs(ours["cosines"], ref["cosines"]),
            kept_same=len(ours["kept"]) == len(ref["kept"]),
            align_ours=num(ours["alignment"]), align_ref=num(ref["alignment"]),
        )
    row["align_abs"] = abs(row["align_ours"] - row["align_ref"])
    row["ours_seconds"] = ours.get("seconds")
    with open(args.rows, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(fmt_row(row))


def filter_text(cos):
    """clip_reference.py's filter (5th nearest other value, 90th percentile, keep <=)."""
    import numpy as np

    x = np.asarray(cos, dtype=np.float64)
    if len(x) > 5:
        d = np.abs(x[:, None] - x[None, :])
        knn = np.sort(d, axis=1)[:, 5]
        x = x[knn <= np.percentile(knn, 90)]
    return x.tolist()


HEADER = (f"{'run':34} {'ids/px':>6} {'views rel':>10} {'prompt rel':>10} {'|dcos|max':>10} "
          f"{'kept':>5} {'align ours':>11} {'align ref':>11} {'|dalign|':>10}")


def fmt_row(row):
    return (f"{row['label']:34} {str(row['ids_equal']):>6} {row['image_emb_rel']:10.3e} "
            f"{row['text_emb_rel']:10.3e} {row['cos_abs']:10.3e} {str(row['kept_same']):>5} "
            f"{row['align_ours']:11.6f} {row['align_ref']:11.6f} {row['align_abs']:10.3e}")


def cmd_table(args):
    print(HEADER)
    print("  (ids/px: text token ids equal | prompt pixels' sha256 equal; views rel: max over "
          "views of ||ours-ref||/||ref|| of the image embeddings; prompt rel: the text / "
          "prompt-image embedding's)")
    for line in open(args.rows):
        print(fmt_row(json.loads(line)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inputs")
    p.add_argument("--out", required=True)
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--prompt-size", type=int, default=384)
    p = sub.add_parser("clipreal")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("vocab")
    p.add_argument("--out", required=True)
    p = sub.add_parser("compare")
    p.add_argument("--task", choices=["text", "image"], required=True)
    p.add_argument("--ours", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--rows", required=True)
    p = sub.add_parser("table")
    p.add_argument("--rows", required=True)
    args = ap.parse_args()
    {"inputs": cmd_inputs, "clipreal": cmd_clipreal, "vocab": cmd_vocab,
     "compare": cmd_compare, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
