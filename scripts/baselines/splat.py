#!/usr/bin/env python3
"""PyTorch baseline for splatting (design/triplane.md, "Splat"): each ray's feature vector goes
into a triplane at every sample with bilinear corner weights by index_add_ (scatter-add), the
weights likewise, then the division by max(weight, 1e-5); autograd gives the backward pass.
Lightplane's splatter setup: a triplane with batch 3, 128 x 128 planes, C = 32, 128^2 rays per
view, 96 samples, 1, 8 and 64 views. Reports forward and forward+backward time and the peak
device memory beyond the inputs; a size that runs out of memory is reported as such. Prints a
table and, with --json FILE, rows shaped like trainkern bench's JSON."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def splat_plane(feat, pts, axes, B, res, C, bidx):
    # pts [N, 3]; feat [N, C]; bidx [N]: bilinear corners on the plane's two axes,
    # align_corners=False, corners outside dropped.
    out = torch.zeros(B * res * res, C, device=feat.device)
    wsum = torch.zeros(B * res * res, device=feat.device)
    ix = (pts[:, axes[0]] + 1) / 2 * res - 0.5
    iy = (pts[:, axes[1]] + 1) / 2 * res - 0.5
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            x, y = x0 + dx, y0 + dy
            ok = (x >= 0) & (x < res) & (y >= 0) & (y < res)
            cell = (bidx * res * res + y.clamp(0, res - 1) * res + x.clamp(0, res - 1)).long()
            w = wx * wy * ok
            out = out.index_add(0, cell, feat * w[:, None])
            wsum = wsum.index_add(0, cell, w)
    return out / wsum.clamp(min=1e-5)[:, None]


def splat(feat, origins, dirs, near, far, bidx, n, B, res):
    # feat [R, C] splatted at n samples per ray into three planes.
    t = torch.linspace(0, 1, n, device=feat.device)
    t = near[:, None] + (far - near)[:, None] * t
    pts = (origins[:, None, :] + t[..., None] * dirs[:, None, :]).reshape(-1, 3)
    f = feat[:, None, :].expand(-1, n, -1).reshape(-1, feat.shape[1])
    b = bidx[:, None].expand(-1, n).reshape(-1)
    C = feat.shape[1]
    return [splat_plane(f, pts, axes, B, res, C, b) for axes in ([0, 1], [0, 2], [1, 2])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", default="1,8,64")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    B, C, res, side = 3, 32, 128, 128
    rows = []
    for views in [int(v) for v in args.views.split(",")]:
        rays = views * side * side
        feat = torch.randn(rays, C, device=dev, requires_grad=True)
        origins = torch.tensor([0.0, 0.0, -2.0], device=dev).expand(rays, 3).contiguous()
        dirs = torch.randn(rays, 3, device=dev) * 0.2 + torch.tensor([0.0, 0.0, 1.0], device=dev)
        near = torch.full((rays,), 1.0, device=dev)
        far = torch.full((rays,), 3.0, device=dev)
        bidx = torch.arange(rays, device=dev) % B
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        try:
            def fw():
                with torch.no_grad():
                    splat(feat, origins, dirs, near, far, bidx, args.samples, B, res)

            fw_ms = median_ms(fw, reps=5)

            def fwbw():
                planes = splat(feat, origins, dirs, near, far, bidx, args.samples, B, res)
                sum(p.sum() for p in planes).backward()

            torch.cuda.reset_peak_memory_stats()
            fwbw_ms = median_ms(fwbw, reps=5)
            peak = torch.cuda.max_memory_allocated() - base
            status = "ok"
        except torch.cuda.OutOfMemoryError:
            fw_ms = fwbw_ms = float("nan")
            peak = torch.cuda.max_memory_allocated() - base
            status = "out of memory"
            torch.cuda.empty_cache()
        name = torch.cuda.get_device_name()
        rows.append(dict(op="torch splat fw", len=rays, seconds=fw_ms / 1e3, backend="torch",
                         device=name, status=status))
        rows.append(dict(op="torch splat fw+bw", len=rays, seconds=fwbw_ms / 1e3,
                         work_bytes=peak, backend="torch", device=name, status=status))
        del feat, origins, dirs, near, far, bidx
        torch.cuda.empty_cache()
    print(f"{'op':<22} {'rays':>9} {'median':>11} {'work MB':>10}  status")
    for r in rows:
        peak = r.get("work_bytes")
        peak = f"{peak / 1e6:10.2f}" if peak is not None else f"{'':>10}"
        print(f"{r['op']:<22} {r['len']:>9} {r['seconds']*1e3:>9.2f}ms {peak}  {r['status']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
