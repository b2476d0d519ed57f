#!/usr/bin/env bash
# The benchmarks on a lent GPU in one call: the steps named (default: all, in this
# order), each capped in time, results under $OUT after every step (log.txt,
# results.tar, components.tar), so a step that runs out of time costs only itself.
#
#   bash benchmarks/device_run.sh [prior64] [palettes] [unet] [segmentation] [peer] [throughput] [overhead] [composition]
#   QUICK=1 bash benchmarks/device_run.sh ...   # smoke settings, to check the script
#
#   carry: .whl (numpyro, blackjax, arviz and arviz's needs as wheels, see the device
#   README) and, for composition, .gpu/composition_2d (the component cache: what is
#   missing there is trained, and only that comes back); for prior64,
#   .gpu/landcover_A_64px_base.npy (city A's 64 x 64 maps, made on a CPU by
#   generate_maps(PRNGKey(0), 5000, CITIES["A"], 64), int8)
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
START=$(mktemp)  # files newer than this were written by this run
RESULTS=benchmarks/results/gpu
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
QUICK=${QUICK:+--quick}
STEPS=${*:-segmentation peer throughput overhead composition}
PALETTE_OPTIONS=${PALETTE_OPTIONS:-}

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv >>"$LOG" 2>&1
python3 -c "import jax, numpyro, blackjax, flax, optax, numpyro_diffusion;
print(jax.__version__, numpyro.__version__, blackjax.__version__, flax.__version__,
      optax.__version__, jax.devices())" >>"$LOG" 2>&1

step() {
    local name=$1 cap=$2
    shift 2
    echo "== $name start $(date +%T)" >>"$LOG"
    timeout "$cap" "$@" >>"$LOG" 2>&1
    echo "== $name rc=$? end $(date +%T)" >>"$LOG"
    tar cf "$OUT/results.tar" "$RESULTS"
}

for name in $STEPS; do
    case $name in
    prior64) # the 64 x 64 land-cover prior, in the background beside the steps after it
        # (half the GPU's memory each); what it has at the cap comes back
        mkdir -p .gpu/cache /tmp/prior64
        python3 -c "import numpy as np, sys; sys.path.insert(0, 'scripts')
from resumable import square_symmetries
np.save('.gpu/cache/landcover_A_64px_5000_seed0.npy',
        square_symmetries(np.load('.gpu/landcover_A_64px_base.npy')))" >>"$LOG" 2>&1
        (
            XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 timeout "${PRIOR64_CAP:-400}" python3 \
                scripts/train_segmentation_prior.py --size 64 --steps ${PRIOR64_STEPS:-60000} \
                --segment 2000 --save-every 500 --batch 64 --cache .gpu/cache \
                --out /tmp/prior64/landcover_A_64px.npz \
                --state /tmp/prior64/landcover_A_64px.state.npz >"$OUT/prior64.log" 2>&1
            echo "prior64 rc=$? end $(date +%T)" >>"$OUT/prior64.log"
            cp /tmp/prior64/landcover_A_64px.npz /tmp/prior64/landcover_A_64px.state.npz "$OUT/"
        ) &
        export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
        ;;
    palettes) # city B's maps in unseen palettes (PALETTE_RUNS: seed:chains; B: its own);
        # no per-level progress bar, so that later runs load the walk from JAX's cache
        export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
        for run in ${PALETTE_RUNS:-32:16 33:16 34:16 35:16 31:64 36:16 37:16 32:64}; do
            [ "$SECONDS" -gt "${PALETTE_UNTIL:-420}" ] && break  # the call's own limit
            palette=${run%:*}  # a seed, or B for the city's own palette
            recolour=$([ "$palette" = B ] || echo "--new-palette $palette")
            step "palette-$palette-chains${run#*:}" "${PALETTE_CAP:-110}" python3 \
                benchmarks/segmentation.py --methods potts,annealed --images "${PALETTE_IMAGES:-32}" \
                $recolour --samples "${run#*:}" --no-level-progress $PALETTE_OPTIONS \
                --out "$RESULTS/palettes${PALETTE_TAG:-}/chains${run#*:}" $QUICK
        done
        ;;
    segmentation) # the annealed posterior's calibration over many images
        step segmentation "${SEGMENTATION_CAP:-240}" python3 benchmarks/segmentation.py \
            --images "${SEGMENTATION_IMAGES:-128}" --out "$RESULTS" $QUICK
        ;;
    peer) # both frameworks at full float32 precision (JAX's GPU default is TF32)
        step peer "${PEER_CAP:-200}" env JAX_DEFAULT_MATMUL_PRECISION=highest \
            XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/peer_pytorch.py \
            --chains ${PEER_CHAINS:-1 256 4096 16384 65536} --block 100000000 \
            --out "$RESULTS" $QUICK
        ;;
    throughput)
        step throughput "${THROUGHPUT_CAP:-150}" python3 benchmarks/throughput.py \
            --max-chains 262144 --max-seconds 5 --out "$RESULTS" $QUICK
        ;;
    unet) # the 8x8 U-Net walk that stalled on an H100 at 4 chains: each run's first
        # (compiling) time as it ends, patch or XLA convolutions, GPU autotuning on or off
        for conv in patch xla; do
            for tune in 4 0; do
                step "unet-$conv-autotune$tune" "${UNET_CAP:-45}" env \
                    XLA_FLAGS="--xla_gpu_autotune_level=$tune" python3 benchmarks/throughput.py \
                    --models unet-8x8 --conv $conv --max-chains 64 --repeats 1 \
                    --out "$RESULTS/unet_probe/$conv-autotune$tune" $QUICK
            done
        done
        ;;
    overhead)
        step overhead "${OVERHEAD_CAP:-60}" python3 benchmarks/overhead.py --out "$RESULTS" $QUICK
        ;;
    composition) # components at full float32 precision, as on a CPU
        step composition "${TRAIN_CAP:-240}" env JAX_DEFAULT_MATMUL_PRECISION=highest \
            python3 benchmarks/composition_2d.py --train-only --quiet \
            --cache .gpu/composition_2d $QUICK
        # only what this run trained: a file back from $OUT holds at most 16 MiB
        (cd .gpu && find composition_2d -name '*.npz' ! -name '*.state.npz' -newer "$START" \
            -print0 | xargs -0 -r tar cf "$OUT/components.tar")
        ;;
    *) echo "unknown step $name" >>"$LOG" ;;
    esac
done
wait
