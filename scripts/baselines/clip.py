#!/usr/bin/env python3
"""PyTorch baseline for per-example clipping, written the way Opacus does it in eager mode:
per-parameter per-sample norms, the per-example norm, clip factors, an einsum-weighted sum per
parameter, torch.normal noise of std noise_multiplier * C, and the division by the batch size.
The parameters are a model-like list of 20 tensors making up d columns. Shapes follow
`trainkern bench --backend cuda`: B = 64 in f32 and B = 256 in bf16 with d = len / B. Also
ghost norms against building per-example gradients explicitly (einsum), on one linear layer.
Prints a table and, with --json FILE, writes rows shaped like trainkern bench's JSON."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def opacus_clip(grads, c, z, gen):
    # grads: list of per-sample gradients, each (B, *shape).
    norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=-1) for g in grads], dim=1)
    n = norms.norm(2, dim=1)
    factors = (c / (n + 1e-6)).clamp(max=1.0)
    out = []
    for g in grads:
        s = torch.einsum("i,i...", factors.to(g.dtype), g).float()
        s += torch.normal(0.0, z * c, size=s.shape, device=s.device, generator=gen)
        out.append(s / len(g))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,20,24,28")
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev)
    gen.manual_seed(1)
    rows = []

    def add(op, dtype, n, ms, nbytes, copy_gbps):
        gbps = nbytes / ms / 1e6
        rows.append(dict(op=op, dtype=dtype, len=n, seconds=ms / 1e3, bytes=nbytes, gbps=gbps,
                         copy_gbps=copy_gbps, pct_of_copy=100 * gbps / copy_gbps))

    for log2 in [int(s) for s in args.sizes.split(",")]:
        n = 1 << log2
        src = torch.empty(n, dtype=torch.float32, device=dev)
        dst = torch.empty_like(src)
        ms = median_ms(lambda: dst.copy_(src))
        copy_gbps = 8 * n / ms / 1e6
        add("copy", "f32", n, ms, 8 * n, copy_gbps)
        del src, dst
        for b, dt, name, size in [(64, torch.float32, "f32", 4), (256, torch.bfloat16, "bf16", 2)]:
            d = max(n // b, 20)
            widths = [d // 20] * 19 + [d - 19 * (d // 20)]
            grads = [torch.full((b, w), 0.01, dtype=dt, device=dev) for w in widths if w > 0]
            ms = median_ms(lambda: opacus_clip(grads, 1.0, 1.0, gen))
            add(f"opacus clip B={b}", name, b * d, ms, 2 * b * d * size + 4 * d, copy_gbps)
            del grads
        # Ghost norms of one layer, T = 128, p = q = 256, at most 16 examples.
        t, p, q = 128, 256, 256
        bg = max(1, min(16, n // (t * p)))
        a = torch.full((bg, t, p), 0.5, device=dev)
        g = torch.full((bg, t, q), 0.25, device=dev)

        def ghost():
            aa = torch.einsum("bsp,btp->bst", a, a)
            gg = torch.einsum("bsq,btq->bst", g, g)
            return (aa * gg).sum(dim=(1, 2)) + g.sum(dim=1).pow(2).sum(dim=1)

        def explicit():
            per = torch.einsum("btq,btp->bqp", g, a)
            return per.pow(2).sum(dim=(1, 2)) + g.sum(dim=1).pow(2).sum(dim=1)

        read = 4 * bg * t * (p + q)
        add("torch ghost gram", "f32", bg * t * p, median_ms(ghost), read, copy_gbps)
        add("torch ghost explicit", "f32", bg * t * p, median_ms(explicit),
            read + 8 * bg * p * q, copy_gbps)
        del a, g
    dev_name = torch.cuda.get_device_name()
    print(f"{'op':<22} {'dtype':<5} {'len':>10} {'median':>11} {'GB/s':>9} {'% copy':>7}  "
          f"{dev_name}, torch {torch.__version__}")
    for r in rows:
        r["device"] = dev_name
        r["backend"] = "torch"
        print(f"{r['op']:<22} {r['dtype']:<5} {r['len']:>10} {r['seconds']*1e3:>9.3f}ms "
              f"{r['gbps']:>9.2f} {r['pct_of_copy']:>6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
