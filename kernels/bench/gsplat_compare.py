"""Renders the cases `gpu_check --dump DIR` wrote with gsplat's `rasterization` exactly as the
validator calls it (three-gen-subnet 5fc61f1 gs_renderer.py: colours given directly,
packed=False, white background, near 0.01, far 100), reports PSNR per view of our GPU images
against gsplat's, and times gsplat's call for all 16 views (CUDA events, median).

usage: python3 gsplat_compare.py DIR [REPS]
"""
import json
import pathlib
import sys

import numpy as np
import torch
from gsplat.rendering import rasterization


def load(case: pathlib.Path):
    meta = json.loads(case.with_suffix(".json").read_text())
    n, v, w, h = meta["n"], meta["views"], meta["width"], meta["height"]
    raw = np.fromfile(case, dtype="<f4")
    sizes = [n * 3, n * 4, n * 3, n, n * 3, v * 16, v * 9, v * h * w * 4]
    parts, off = [], 0
    for s in sizes:
        parts.append(raw[off : off + s])
        off += s
    means, quats, scales, opac, colors, viewmats, ks, ours = parts
    dev = "cuda"
    t = lambda a, *shape: torch.tensor(a.reshape(*shape), device=dev)
    return dict(
        n=n, v=v, w=w, h=h,
        means=t(means, n, 3), quats=t(quats, n, 4), scales=t(scales, n, 3), opacities=t(opac, n),
        colors=t(colors, n, 3), viewmats=t(viewmats, v, 4, 4), Ks=t(ks, v, 3, 3),
        ours=ours.reshape(v, h, w, 4),
    )


def render(c):
    bg = torch.ones((c["v"], 3), device="cuda")
    rgb, alpha, _ = rasterization(
        c["means"], c["quats"], c["scales"], c["opacities"], c["colors"], c["viewmats"], c["Ks"],
        c["w"], c["h"], 0.01, 100.0, backgrounds=bg, render_mode="RGB", packed=False,
    )
    return rgb.clip(0, 1), alpha


def main():
    folder = pathlib.Path(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    for case in sorted(folder.glob("*.bin")):
        c = load(case)
        rgb, alpha = render(c)
        theirs = torch.cat([rgb, alpha], dim=-1).cpu().numpy()
        mse = ((theirs - c["ours"]) ** 2).reshape(c["v"], -1).mean(axis=1)
        psnr = [float("inf") if m == 0 else -10 * np.log10(m) for m in mse]
        mse_rgb = ((theirs[..., :3] - c["ours"][..., :3]) ** 2).reshape(c["v"], -1).mean(axis=1)
        psnr_rgb = min(float("inf") if m == 0 else -10 * np.log10(m) for m in mse_rgb)
        times = []
        for i in range(reps + 3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            render(c)
            end.record()
            torch.cuda.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(end))
        print(
            f"gsplat {case.stem:>20}: min PSNR ours vs gsplat {min(psnr):.1f} dB RGBA, {psnr_rgb:.1f} dB RGB "
            f"(per view {' '.join(f'{p:.0f}' for p in psnr)}); gsplat rasterization median {np.median(times):.3f} ms"
        )


if __name__ == "__main__":
    main()
