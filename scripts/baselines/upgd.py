#!/usr/bin/env python3
"""PyTorch baseline for UPGD: the public optimizer's structure (first order, global scaling,
protecting: a first loop over tensors updating the utility trace and taking each tensor's max
with a host synchronization, then a second loop drawing noise and updating), on 100 tensors of
the sizes `trainkern bench --backend cuda` uses. Prints a table and, with --json FILE, rows
shaped like trainkern bench's JSON. The math matches trainkern's except the noise generator."""
import argparse
import json

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


class UPGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=1e-3, beta_utility=0.999, sigma=1e-3):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay,
                                      beta_utility=beta_utility, sigma=sigma))

    @torch.no_grad()
    def step(self):
        global_max = torch.tensor(-torch.inf, device=self.param_groups[0]["params"][0].device)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["avg_utility"] = torch.zeros_like(p)
                state["step"] += 1
                u = state["avg_utility"]
                u.mul_(group["beta_utility"]).add_(-p.grad * p, alpha=1 - group["beta_utility"])
                m = u.max()
                if m > global_max:  # a host synchronization per tensor, as upstream
                    global_max = m
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                bc = 1 - group["beta_utility"] ** state["step"]
                noise = torch.randn_like(p.grad) * group["sigma"]
                s = torch.sigmoid_((state["avg_utility"] / bc) / global_max)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_((p.grad + noise) * (1 - s), alpha=-group["lr"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,20,24,27")
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for log2 in [int(s) for s in args.sizes.split(",")]:
        each = max((2 ** log2) // 100 // 64, 1) * 64
        n = 100 * each
        src = torch.empty(n, device=dev)
        dst = torch.empty_like(src)
        ms = median_ms(lambda: dst.copy_(src))
        copy_gbps = 8 * n / ms / 1e6
        del src, dst
        params = [torch.nn.Parameter(torch.full((each // 64, 64), 0.5, device=dev)) for _ in range(100)]
        for p in params:
            p.grad = torch.full_like(p, 0.25)
        opt = UPGD(params)
        ms = median_ms(opt.step)
        gbps = 32 * n / ms / 1e6
        rows.append(dict(op="torch UPGD first-global", dtype="f32", len=n, seconds=ms / 1e3,
                         bytes=32 * n, gbps=gbps, copy_gbps=copy_gbps,
                         pct_of_copy=100 * gbps / copy_gbps, backend="torch",
                         device=torch.cuda.get_device_name()))
        del params, opt
    print(f"{'op':<24} {'len':>10} {'median':>11} {'GB/s':>9} {'% copy':>7}")
    for r in rows:
        print(f"{r['op']:<24} {r['len']:>10} {r['seconds']*1e3:>9.3f}ms {r['gbps']:>9.2f} {r['pct_of_copy']:>6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
