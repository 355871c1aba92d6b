#!/usr/bin/env python3
"""PyTorch baseline for the noise ops: torch.randn (fill) and x.add_(randn) on the sizes of
`trainkern bench --backend cuda`, plus a plain device copy as the yardstick. Prints a table and,
with --json FILE, writes rows shaped like trainkern bench's JSON."""
import argparse
import json

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,20,24,28")
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for log2 in [int(s) for s in args.sizes.split(",")]:
        n = 1 << log2
        src = torch.empty(n, dtype=torch.float32, device=dev)
        dst = torch.empty_like(src)
        ms = median_ms(lambda: dst.copy_(src))
        copy_gbps = 8 * n / ms / 1e6
        rows.append(dict(op="copy", dtype="f32", len=n, seconds=ms / 1e3, bytes=8 * n,
                         gbps=copy_gbps, copy_gbps=copy_gbps, pct_of_copy=100.0))
        del src, dst
        for name, dt, size in [("f32", torch.float32, 4), ("f16", torch.float16, 2),
                               ("bf16", torch.bfloat16, 2)]:
            out = torch.empty(n, dtype=dt, device=dev)
            ms = median_ms(lambda: torch.randn(n, dtype=dt, device=dev, out=out))
            gbps = size * n / ms / 1e6
            rows.append(dict(op="torch.randn", dtype=name, len=n, seconds=ms / 1e3,
                             bytes=size * n, gbps=gbps, copy_gbps=copy_gbps,
                             pct_of_copy=100 * gbps / copy_gbps))
            del out
        x = torch.zeros(n, dtype=torch.float32, device=dev)
        ms = median_ms(lambda: x.add_(torch.randn_like(x)))
        gbps = 8 * n / ms / 1e6
        rows.append(dict(op="x.add_(randn_like)", dtype="f32", len=n, seconds=ms / 1e3,
                         bytes=8 * n, gbps=gbps, copy_gbps=copy_gbps,
                         pct_of_copy=100 * gbps / copy_gbps))
        del x
    dev_name = torch.cuda.get_device_name()
    print(f"{'op':<20} {'dtype':<5} {'len':>10} {'median':>11} {'GB/s':>9} {'Melem/s':>10} {'% copy':>7}  {dev_name}, torch {torch.__version__}")
    for r in rows:
        r["device"] = dev_name
        r["backend"] = "torch"
        print(f"{r['op']:<20} {r['dtype']:<5} {r['len']:>10} {r['seconds']*1e3:>9.3f}ms "
              f"{r['gbps']:>9.2f} {r['len']/r['seconds']/1e6:>10.1f} {r['pct_of_copy']:>6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
