#!/usr/bin/env python3
"""PyTorch baseline for MF noise generation, eager code as a DP-FTRL trainer writes it: BandMF
with a ring buffer of p - 1 tensors (y = (z - sum c_r y_{t-r}) / c_0), BLT with m state tensors
(x = z - sum omega_i S_i; S_i = theta_i S_i + x), BISR regenerating p Gaussian tensors, and
independent noise, each adding sigma * x to a gradient in place; torch.fft on the sizes of
trainkern bench's fft rows and the Fourier mechanism's table for one coordinate block. Sizes follow
`trainkern bench --backend cuda`. Prints a table and, with --json FILE, rows shaped like
trainkern bench's JSON (bytes per step as in design/mf.md)."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


class BandMF:
    def __init__(self, c, d, dev):
        self.c = c
        self.ring = [torch.zeros(d, device=dev) for _ in range(len(c) - 1)]
        self.t = 0

    def step(self, grad, sigma):
        y = torch.randn_like(grad)
        slots = len(self.ring)
        for r in range(1, min(slots, self.t) + 1):
            y.sub_(self.ring[(self.t - r) % slots], alpha=self.c[r])
        y.div_(self.c[0])
        if slots:
            self.ring[self.t % slots].copy_(y)
        grad.add_(y, alpha=sigma)
        self.t += 1


class BLT:
    def __init__(self, theta, omega, d, dev):
        self.theta, self.omega = theta, omega
        self.s = [torch.zeros(d, device=dev) for _ in theta]

    def step(self, grad, sigma):
        x = torch.randn_like(grad)
        for s, w in zip(self.s, self.omega):
            x.sub_(s, alpha=w)
        for s, th in zip(self.s, self.theta):
            s.mul_(th).add_(x)
        grad.add_(x, alpha=sigma)


def bisr_step(grad, r, sigma, gens):
    x = torch.zeros_like(grad)
    for q, w in enumerate(r):
        x.add_(torch.randn(grad.shape, device=grad.device, generator=gens[q]), alpha=w)
    grad.add_(x, alpha=sigma)


def fourier_table_row(dev, steps=256, coords=1 << 16):
    """The Fourier mechanism's per-step table for a block of coordinates, as trainkern bench's
    "mf fourier table" row: Gaussians N x coords, FFT along time, times sqrt(lambda), inverse
    FFT, the first n rows differenced."""
    big = 1 << (2 * steps - 1).bit_length()
    a = torch.zeros(big, dtype=torch.complex128, device=dev)
    a[:steps] = 1
    root = torch.sqrt(torch.fft.fft(a)).to(torch.complex64)[:, None]

    def build():
        z = torch.randn(big, coords, device=dev).to(torch.complex64)
        y = torch.fft.ifft(torch.fft.fft(z, dim=0) * root, dim=0).real[:steps]
        return torch.diff(y, dim=0, prepend=torch.zeros(1, coords, device=dev))

    ms = median_ms(build)
    nbytes = 4 * steps * coords
    flops = 2 * 5 * big * coords * (big.bit_length() - 1)
    return dict(op="torch fourier table", dtype="f32", len=coords, seconds=ms / 1e3,
                bytes=nbytes, gbps=nbytes / ms / 1e6, copy_gbps=0.0, pct_of_copy=0.0,
                gflops=flops / ms / 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,20,24,26")
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for log2 in [int(s) for s in args.sizes.split(",")]:
        d = 1 << log2
        src = torch.empty(d, device=dev)
        dst = torch.empty_like(src)
        ms = median_ms(lambda: dst.copy_(src))
        copy_gbps = 8 * d / ms / 1e6
        rows.append(dict(op="copy", dtype="f32", len=d, seconds=ms / 1e3, bytes=8 * d,
                         gbps=copy_gbps, copy_gbps=copy_gbps, pct_of_copy=100.0))
        del src, dst
        grad = torch.zeros(d, device=dev)
        cases = []
        for p in (8, 16):
            c = [1.0] + [0.5 / r for r in range(1, p)]
            m = BandMF(c, d, dev)
            for _ in range(p):
                m.step(grad, 1.0)
            cases.append((f"torch band p={p}", lambda m=m: m.step(grad, 1.0), (p + 2) * 4 * d))
        for mm in (4, 8):
            b = BLT([1 - 0.5 ** (i + 1) for i in range(mm)], [0.5 / mm] * mm, d, dev)
            cases.append((f"torch blt m={mm}", lambda b=b: b.step(grad, 1.0), (2 * mm + 2) * 4 * d))
        gens = [torch.Generator(device=dev) for _ in range(8)]
        r = [1.0] + [-0.5 / q for q in range(1, 8)]
        cases.append(("torch bisr p=8", lambda: bisr_step(grad, r, 1.0, gens), 8 * d))
        cases.append(("torch independent", lambda: grad.add_(torch.randn_like(grad)), 8 * d, 0))
        # FFTs as trainkern bench's fft rows: d complex points as 1024-point signals along the
        # slow axis (interleaved, as a noise table), and as signals of min(d, 2^20) points.
        spec = torch.randn(d // 1024, 1024, dtype=torch.complex64, device=dev) if d >= 1024 else None
        if spec is not None:
            cases.append(("torch fft n=1024", lambda: torch.fft.fft(spec, dim=1), 16 * d,
                          5 * d * 10))
        n_long = min(d, 1 << 20)
        sig = torch.randn(d // n_long, n_long, dtype=torch.complex64, device=dev)
        cases.append(("torch fft n=min(len,2^20)", lambda: torch.fft.fft(sig, dim=1), 16 * d,
                      5 * d * (n_long.bit_length() - 1)))
        cases = [c if len(c) == 4 else (*c, 0) for c in cases]
        for name, fn, nbytes, flops in cases:
            ms = median_ms(fn)
            gbps = nbytes / ms / 1e6
            rows.append(dict(op=name, dtype="f32", len=d, seconds=ms / 1e3, bytes=nbytes,
                             gbps=gbps, copy_gbps=copy_gbps, pct_of_copy=100 * gbps / copy_gbps,
                             gflops=flops / ms / 1e6))
        del grad, cases, spec, sig
        torch.cuda.empty_cache()
    rows.append(fourier_table_row(dev))
    dev_name = torch.cuda.get_device_name()
    print(f"{'op':<20} {'len':>10} {'median':>11} {'GB/s':>9} {'% copy':>7}  {dev_name}, "
          f"torch {torch.__version__}")
    for r_ in rows:
        r_["device"] = dev_name
        r_["backend"] = "torch"
        print(f"{r_['op']:<20} {r_['len']:>10} {r_['seconds']*1e3:>9.3f}ms {r_['gbps']:>9.2f} "
              f"{r_['pct_of_copy']:>6.1f}%  {r_.get('gflops', 0):.1f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
