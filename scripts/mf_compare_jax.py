#!/usr/bin/env python3
"""Compare `trainkern mf plan` with jax_privacy (CPU, float64) on the issue's settings.

Installs jax-privacy into a virtual environment on first use (CI does not run this):

    python3 scripts/mf_compare_jax.py [--trainkern target/release/trainkern] [--venv DIR]

For each setting it times both planners, then evaluates BOTH results with jax_privacy's own
loss and sensitivity functions, so the losses compare the strategies, not two implementations
of the loss:
  1. BandMF (banded Toeplitz), n = 2000, p = 100, mean error (jax: toeplitz.optimize_banded_toeplitz)
  2. BLT, n = 10^5, 2 buffers, single participation, max error (jax: buffered_toeplitz.optimize)
  3. Dense, n = 256, single participation, mean error (jax: dense.optimize)
  4. Sensitivities under (k, b)-min-sep of our plans (jax: toeplitz.minsep_sensitivity_squared)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def ensure_venv(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "jax-privacy"])
    return py


def ours(binary, args):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    t = time.perf_counter()
    subprocess.check_call([binary, "mf", "plan", *args, "--json", path], stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    with open(path) as f:
        plan = json.load(f)
    os.unlink(path)
    return plan, seconds


def inner(binary):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax_privacy.matrix_factorization import buffered_toeplitz as bt
    from jax_privacy.matrix_factorization import toeplitz

    rows = []
    # 1. BandMF.
    n, p = 2000, 100
    plan, ours_s = ours(binary, ["--strategy", "bandmf", "--steps", str(n), "--epochs", "20",
                                 "--min-sep", "100", "--bands", str(p)])
    t = time.perf_counter()
    coef = toeplitz.optimize_banded_toeplitz(n, p, reduction_fn=jnp.mean)
    coef.block_until_ready()
    jax_s = time.perf_counter() - t
    ours_loss = float(toeplitz.loss(jnp.array(plan["coefficients"]), n))
    jax_loss = float(toeplitz.loss(coef, n))
    rows.append(("BandMF n=2000 p=100 mean", ours_s, jax_s, ours_loss, jax_loss))

    # 2. BLT.
    n = 100_000
    plan, ours_s = ours(binary, ["--strategy", "blt", "--steps", str(n), "--epochs", "1",
                                 "--min-sep", str(n), "--buffers", "2", "--objective", "max"])
    t = time.perf_counter()
    blt = bt.optimize(n=n, max_participations=1, error="max", min_buffers=2, max_buffers=2)
    jax_s = time.perf_counter() - t
    mine = bt.BufferedToeplitz(buf_decay=jnp.array(plan["theta"]),
                               output_scale=jnp.array(plan["omega"]))
    rows.append(("BLT n=1e5 m=2 max", ours_s, jax_s, float(bt.max_loss(mine, n)),
                 float(bt.max_loss(blt, n))))

    # 3. Dense, n = 256, single participation, mean error (jax: dense.optimize).
    from jax_privacy.matrix_factorization import dense
    n = 256
    plan, ours_s = ours(binary, ["--strategy", "dense", "--steps", str(n), "--epochs", "1",
                                 "--min-sep", str(n)])
    t = time.perf_counter()
    c_jax = dense.optimize(n)
    c_jax.block_until_ready()
    jax_s = time.perf_counter() - t

    def dense_loss(c):
        sens2 = float(jnp.max(jnp.sum(c * c, axis=0)))
        return sens2 * float(jnp.mean(dense.per_query_error(strategy_matrix=c)))

    c_ours = jnp.array(plan["c"]).reshape(n, n)
    rows.append(("dense n=256 mean", ours_s, jax_s, dense_loss(c_ours), dense_loss(c_jax)))

    # 4. Sensitivities of our exact plans against jax_privacy's.
    sens = []
    for args in (["--strategy", "sqrt", "--steps", "1000", "--epochs", "7", "--min-sep", "64"],
                 ["--strategy", "bisr", "--steps", "1000", "--epochs", "5", "--min-sep", "100",
                  "--bands", "50"],
                 ["--strategy", "blt", "--steps", "2000", "--epochs", "4", "--min-sep", "300",
                  "--buffers", "3"]):
        plan, _ = ours(binary, args)
        n, k, b = plan["n"], plan["k"], plan["min_sep"]
        if "coefficients" in plan:
            c = jnp.array(plan["coefficients"])
        elif "theta" in plan:
            c = bt.BufferedToeplitz(buf_decay=jnp.array(plan["theta"]),
                                    output_scale=jnp.array(plan["omega"])).toeplitz_coefs(n)
        else:  # BISR: C's coefficients are the inverse of the noising coefficients
            c = toeplitz.inverse_coef(jnp.array(plan["inverse_coefficients"]), n)
        want = float(toeplitz.minsep_sensitivity_squared(c, b, k, n))
        sens.append((args[1], plan["sensitivity_squared"], want))

    print(f"{'case':<28} {'ours s':>8} {'jax s':>8} {'speedup':>8} {'our loss':>14} {'jax loss':>14} {'ratio':>9}")
    for name, a, b, la, lb in rows:
        print(f"{name:<28} {a:>8.3f} {b:>8.2f} {b / a:>8.1f} {la:>14.8f} {lb:>14.8f} {la / lb:>9.6f}")
    print(f"{'sensitivity':<28} {'ours':>22} {'jax_privacy':>22} {'rel diff':>10}")
    for name, a, b in sens:
        print(f"{name:<28} {a:>22.15g} {b:>22.15g} {abs(a - b) / b:>10.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainkern", default="target/release/trainkern")
    ap.add_argument("--venv", default=os.path.expanduser("~/.cache/trainkern-jax-privacy"))
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        inner(os.path.abspath(a.trainkern))
        return
    py = ensure_venv(a.venv)
    subprocess.check_call([py, os.path.abspath(__file__), "--inner", "--trainkern",
                           os.path.abspath(a.trainkern)])


if __name__ == "__main__":
    main()
