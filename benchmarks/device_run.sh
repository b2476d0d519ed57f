#!/usr/bin/env bash
# The benchmarks on a lent GPU in one call: each step capped in time, results under
# $OUT after every step (log.txt, components.tar, results.tar), so a step that runs out
# of time costs only itself.
#
#   carry: .whl (numpyro, blackjax, arviz and arviz's needs as wheels) and .gpu
#   (.gpu/composition_2d: the component cache; missing components are trained there)
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
RESULTS=benchmarks/results/gpu
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv >>"$LOG" 2>&1
python3 -c "import jax, numpyro, blackjax, flax, optax, torch, numpyro_diffusion;
print(jax.__version__, numpyro.__version__, blackjax.__version__, flax.__version__,
      optax.__version__, torch.__version__, jax.devices())" >>"$LOG" 2>&1

step() {
    local name=$1 cap=$2
    shift 2
    echo "== $name start $(date +%T)" >>"$LOG"
    timeout "$cap" "$@" >>"$LOG" 2>&1
    echo "== $name rc=$? end $(date +%T)" >>"$LOG"
    tar cf "$OUT/results.tar" "$RESULTS"
}

# components at full float32 precision, as on a CPU
step composition-training "${TRAIN_CAP:-240}" env JAX_DEFAULT_MATMUL_PRECISION=highest \
    python3 benchmarks/composition_2d.py --train-only --quiet --cache .gpu/composition_2d
# only what this run trained: a file back from $OUT holds at most 16 MiB
(cd .gpu && find composition_2d -name '*.npz' ! -name '*.state.npz' -newer "$LOG" -print0 |
    xargs -0 -r tar cf "$OUT/components.tar")

# both frameworks at full float32 precision (PyTorch's default; JAX's is TF32 on a GPU)
step peer-pytorch "${PEER_CAP:-200}" env JAX_DEFAULT_MATMUL_PRECISION=highest \
    XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/peer_pytorch.py \
    --chains 1 256 4096 16384 65536 --block 100000000 --out "$RESULTS"

step throughput "${THROUGHPUT_CAP:-120}" python3 benchmarks/throughput.py \
    --max-chains 262144 --max-seconds 5 --out "$RESULTS"

step overhead "${OVERHEAD_CAP:-45}" python3 benchmarks/overhead.py --out "$RESULTS"
