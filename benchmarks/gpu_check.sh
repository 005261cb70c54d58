#!/bin/bash
# Everything benchfarm checks on a GPU host, in one run: GPU detection, the seed's MLPs through the whole farm
# on a GPU worker (JAX and PyTorch, each job forked from its backend's fork server), the harness against a
# bare model.fit on the GPU, and the per-job overhead on a GPU worker, cold and warm.
#
# The lent GPU hosts have Python 3.12 with JAX and PyTorch (CUDA) but no TensorFlow and no network: carry the
# wheels that ../shared/gpu/wheels.sh downloads (plus hiredis) in .whl/, then:
#     bash benchmarks/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT, else /tmp/gpu-check)
# Each step has its own time limit and log; a failing step does not stop the next.
set -u
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import celery, keras, pydantic_settings" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > "$out/install.log" 2>&1
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} FARM_CACHE_DIR=${FARM_CACHE_DIR:-/tmp/farm-cache}
device=${GPU_CHECK_DEVICE:-gpu}   # cpu: rehearse the script on a machine without a GPU
backends=${GPU_CHECK_BACKENDS:-jax, torch}   # the sweep's backends
rounds=${GPU_CHECK_ROUNDS:-3}                # farm vs bare rounds
limits=(${GPU_CHECK_LIMITS:-200 150 140})    # seconds for the sweep, farm vs bare, overhead

step() {
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout -s INT -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s (log: $name.log)"
  tail -n "${TAIL:-30}" "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
step devices 60 python3 -m cli.main devices
sed -e "s/\[jax, torch\]/[$backends]/" benchmarks/gpu_sweep.yaml > "$out/sweep.yaml"
if [ "$device" = cpu ]; then
  sed -i -e 's/device: gpu/device: cpu/' -e 's/train_samples: 20000/train_samples: 500/' "$out/sweep.yaml"
fi
sweep=$out/sweep.yaml
step sweep "${limits[0]}" python3 -m cli.main run "$sweep" -o "$out/sweep"
TAIL=60 step sweep_jobs 30 python3 - "$out/sweep/results.csv" <<'PY'
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
cols = ["workload", "backend", "repeat", "status", "device_name", "import_s", "data_s", "build_s", "first_epoch_s",
        "steady_epoch_s", "steady_samples_per_s", "eval_s", "total_s", "error"]
print(df.sort_values(["backend", "workload", "started_at"])[[c for c in cols if c in df]].to_string(index=False))
PY
samples=20000
[ "$device" = cpu ] && samples=500
step vs_bare "${limits[1]}" python3 -m benchmarks.farm_vs_bare --backend jax --device "$device" --samples "$samples" \
  --epochs 4 --rounds "$rounds" --pipelines keras
step overhead "${limits[2]}" python3 -m benchmarks.farm_speed --only overhead --device "$device" --backend jax --quick
pkill -f "cli.main worker" 2>/dev/null
exit 0
