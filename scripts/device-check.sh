#!/usr/bin/env bash
# GPU runs in one call (design/testing.md, "GPU runs").
#
#   scripts/device-check.sh prepare   here: build trainkern in release with the cuda feature and
#                                     stage it with the baselines under .device/ (git-ignored)
#   scripts/device-check.sh run       on the GPU machine, from the repository root, carrying
#                                     .device: check and bench on CUDA, the PyTorch baselines,
#                                     everything under $OUT (check.txt, bench.txt, bench.json,
#                                     torch.txt, torch.json, nvidia-smi.txt)
#   scripts/device-check.sh record D  here: append the run's tables from folder D to
#                                     BENCHMARKS.md with the date, card and commit
#
# With the device tool: run(command="scripts/device-check.sh run", carry=[".device"],
# timeout_s=420) after `prepare`, then `record` on the folder the files came back to.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  cargo build --release --bin trainkern
  mkdir -p .device
  cp target/release/trainkern .device/
  cp scripts/baselines/*.py .device/  # timing.py travels with the baselines
  git rev-parse --short HEAD > .device/commit
  echo "staged in .device/: $(ls .device | tr '\n' ' ')"
  ;;
run)
  out=${OUT:-/tmp/trainkern-device}
  mkdir -p "$out"
  # One budget for the whole run (TK_BUDGET seconds, default 400, inside the device tool's
  # timeout_s=420): each step gets its own cap or what is left, whichever is less, most
  # important first, so a slow step costs the ones after it rather than the whole call.
  budget=${TK_BUDGET:-400}
  start=$SECONDS
  step() {
    local cap=$1 left
    shift
    left=$((budget - (SECONDS - start)))
    if [ "$left" -le 5 ]; then
      echo "skipped, the run's budget of ${budget} s is spent: $*"
      return 124
    fi
    timeout $((cap < left ? cap : left)) "$@"
  }
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv > "$out/nvidia-smi.txt" || true
  cat "$out/nvidia-smi.txt"
  .device/trainkern info | tee "$out/info.txt"
  set +e
  step 200 .device/trainkern check --backend cuda 2>&1 | tee "$out/check.txt"
  check=${PIPESTATUS[0]}
  step 150 .device/trainkern bench --backend cuda --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
  export PYTHONUNBUFFERED=1
  step 90 python3 .device/mf_noise.py --json "$out/torch_mf_noise.json" 2>&1 | tee "$out/torch.txt"
  step 90 python3 .device/upgd.py --json "$out/torch_upgd.json" 2>&1 | tee -a "$out/torch.txt"
  step 120 python3 .device/render.py --json "$out/torch_render.json" 2>&1 | tee -a "$out/torch.txt"
  step 60 python3 .device/splat.py --json "$out/torch_splat.json" 2>&1 | tee -a "$out/torch.txt"
  step 90 python3 .device/clip.py --json "$out/torch_clip.json" 2>&1 | tee -a "$out/torch.txt"
  step 90 python3 .device/noise.py --json "$out/torch.json" 2>&1 | tee -a "$out/torch.txt"
  echo "commit $(cat .device/commit); check exit $check; $((SECONDS - start)) s of $budget"
  exit "$check"
  ;;
record)
  dir=${2:?usage: scripts/device-check.sh record FOLDER}
  card=$(tail -n +2 "$dir/nvidia-smi.txt" | head -1)
  {
    echo
    echo "## $(date -u +%Y-%m-%d) — ${card:-unknown card} — commit $(cat .device/commit 2>/dev/null || git rev-parse --short HEAD)"
    echo
    echo '```'
    tail -n 4 "$dir/check.txt" 2>/dev/null
    echo
    cat "$dir/bench.txt" 2>/dev/null
    echo
    cat "$dir/torch.txt" 2>/dev/null
    echo '```'
  } >> BENCHMARKS.md
  echo "appended to BENCHMARKS.md"
  ;;
*)
  sed -n '2,16p' "$0"
  exit 2
  ;;
esac
