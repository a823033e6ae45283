#!/usr/bin/env bash
# Side-by-side benchmark: advmnist and its PyTorch peers (scripts/peers/) on the same machine,
# the same thread count, back to back, twice each (ABAB), then the ratios of the better runs,
# for LeNet's three workloads and the autoencoder's three.
# Usage: scripts/bench_vs_pytorch.sh PYTHON_WITH_TORCH [THREADS] [SECONDS]
# Set-up of PYTHON_WITH_TORCH, once: python3 -m venv torchenv && torchenv/bin/pip install torch numpy
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:?usage: $0 PYTHON_WITH_TORCH [THREADS] [SECONDS]}
threads=${2:-2}
seconds=${3:-5}
peers=scripts/peers
cargo build --release -q
ours=() theirs=()
for round in 1 2; do
  ours+=("$(./target/release/advmnist bench --threads "$threads" --seconds "$seconds" --json)")
  theirs+=("$("$py" "$peers/torch_lenet_bench.py" --threads "$threads" --seconds "$seconds"
             "$py" "$peers/torch_dae_bench.py" --threads "$threads" --seconds "$seconds")")
done
python3 - "$threads" "${ours[@]}" "${theirs[@]}" <<'PY'
import json, sys
threads = sys.argv[1]
ours = [json.loads(s) for s in sys.argv[2:4]]
theirs = [dict(l.split() for l in s.splitlines() if l.endswith(tuple("0123456789")) and "_per_s" in l) for s in sys.argv[4:6]]
print(f"threads {threads}")
print(f"{'workload':<24}{'advmnist img/s':>16}{'PyTorch img/s':>16}{'ratio':>8}")
for key in ("train_img_per_s", "fgsm_img_per_s", "infer_img_per_s",
            "dae_train_img_per_s", "pipeline_fgsm_img_per_s", "dae_infer_img_per_s"):
    a = max(o[key] for o in ours)
    b = max(float(t[key]) for t in theirs)
    print(f"{key:<24}{a:>16.0f}{b:>16.0f}{a / b:>8.2f}")
PY
