#!/usr/bin/env python3
"""PyTorch autograd baseline for rendering (design/triplane.md): the same math as trainkern's
renderer written with grid_sample, matmuls and cumsum, so autograd stores every sample's
activations. Lightplane's benchmark setup: a triplane of three 32x32 planes, C = 32, batch 3,
256 samples, MLPs 32 wide with 2 + 2 + 2 layers, at 64^2, 256^2 and 1024^2 rays. Reports the
forward and backward time and the peak device memory beyond the inputs; a size that runs out of
memory is reported as such. Prints a table and, with --json FILE, rows shaped like trainkern
bench's JSON."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def sample_plane(plane, pts, axes):
    # plane [B, C, H, W]; pts [B, N, 3] in [-1, 1]; axes picks (x, y) of the plane.
    grid = pts[..., axes].unsqueeze(2)  # [B, N, 1, 2]
    return F.grid_sample(plane, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[..., 0].permute(0, 2, 1)  # [B, N, C]


def mlp(x, layers, relu_last):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i + 1 < len(layers) or relu_last:
            x = torch.relu(x)
    return x


def render(planes, trunk, opacity, color, origins, dirs, near, far, n):
    # One batch entry per ray group: rays are [B, R, 3] with R rays per grid.
    t = torch.linspace(0, 1, n, device=origins.device)
    t = near[..., None] + (far - near)[..., None] * t  # [B, R, n]
    delta = ((far - near) / (n - 1))[..., None].expand_as(t)
    pts = origins[:, :, None, :] + t[..., None] * dirs[:, :, None, :]  # [B, R, n, 3]
    B, R = pts.shape[:2]
    flat = pts.reshape(B, R * n, 3)
    f = (sample_plane(planes[0], flat, [0, 1]) + sample_plane(planes[1], flat, [0, 2])
         + sample_plane(planes[2], flat, [1, 2]))
    h = mlp(f, trunk, True)
    o = F.softplus(mlp(h, opacity, False)[..., 0]).reshape(B, R, n)
    c = torch.sigmoid(mlp(h, color, False)).reshape(B, R, n, -1)
    lam = torch.cumsum(o * delta, dim=-1)
    trans = torch.exp(-F.pad(lam, (1, 0)))
    w = trans[..., :-1] - trans[..., 1:]
    return (w[..., None] * c).sum(-2), (w * t).sum(-1), lam[..., -1]


def xavier(n_in, n_out, dev):
    w = torch.empty(n_in, n_out, device=dev)
    torch.nn.init.xavier_uniform_(w, gain=2 ** 0.5)
    return [w.requires_grad_(), torch.zeros(n_out, device=dev, requires_grad=True)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="64,256,1024")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    B, C, H, res = 3, 32, 32, 32
    planes = [torch.randn(B, C, res, res, device=dev, requires_grad=True) for _ in range(3)]
    trunk = [xavier(C, H, dev), xavier(H, H, dev)]
    opacity = [xavier(H, H, dev), xavier(H, 1, dev)]
    color = [xavier(H, H, dev), xavier(H, 3, dev)]
    rows = []
    for side in [int(s) for s in args.sides.split(",")]:
        rays = side * side
        per = rays // B
        origins = torch.tensor([0.0, 0.0, -2.0], device=dev).expand(B, per, 3).contiguous()
        dirs = torch.randn(B, per, 3, device=dev) * 0.2 + torch.tensor([0.0, 0.0, 1.0], device=dev)
        near = torch.full((B, per), 1.0, device=dev)
        far = torch.full((B, per), 3.0, device=dev)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        try:
            def fw():
                with torch.no_grad():
                    render(planes, trunk, opacity, color, origins, dirs, near, far, args.samples)

            fw_ms = median_ms(fw, reps=5)

            def fwbw():
                feat, length, lam = render(planes, trunk, opacity, color, origins, dirs, near,
                                           far, args.samples)
                (feat.sum() + length.sum() + lam.sum()).backward()

            torch.cuda.reset_peak_memory_stats()
            fwbw_ms = median_ms(fwbw, reps=5)
            peak = torch.cuda.max_memory_allocated() - base
            status = "ok"
        except torch.cuda.OutOfMemoryError:
            fw_ms = fwbw_ms = float("nan")
            peak = torch.cuda.max_memory_allocated() - base
            status = "out of memory"
            torch.cuda.empty_cache()
        rows.append(dict(op="torch render fw", len=rays, seconds=fw_ms / 1e3, backend="torch",
                         device=torch.cuda.get_device_name(), status=status))
        rows.append(dict(op="torch render fw+bw", len=rays, seconds=fwbw_ms / 1e3,
                         work_bytes=peak, backend="torch", device=torch.cuda.get_device_name(),
                         status=status))
        del origins, dirs, near, far
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
