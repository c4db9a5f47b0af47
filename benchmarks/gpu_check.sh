#!/usr/bin/env bash
# Everything gscodec checks on a CUDA machine, in one run (a lent GPU is held for minutes):
#   bash benchmarks/gpu_check.sh SCENE_DIR OUT_DIR [DEADLINE_SECONDS] [STAGES]
# STAGES: comma list of gputest, speed, suite, cli, ablation (default all; install and the
# gsplat compile always run).
# 1. installs the wheels in .whl/ (gsplat, constriction, plyfile, zstandard, pytorch-msssim;
#    the machine has torch) and gscodec itself (editable, no dependencies);
# 2. compiles gsplat's CUDA kernels once (TORCH_CUDA_ARCH_LIST defaults to the card's) and
#    checks that gsplat renders (gscodec.render.gsplat_available);
# 3. runs the GPU-marked tests (gsplat and the pure-PyTorch renderer agree, images and
#    gradients; the prior trains on the GPU), then the whole suite with CUDA present (where
#    "auto" means gsplat);
# 4. times rendering (benchmarks/render_speed.py, gsplat against the pure-PyTorch renderer on
#    the GPU and on the CPU), the CLI's encode and decode (default steps: 300 on a GPU), and runs
#    the refinement ablation at 300 steps (benchmarks/refine.py) on the scenes in SCENE_DIR.
# Each stage has its own time limit so that what ran comes back even when one stage hangs;
# everything is written under OUT_DIR (log.txt, suite.txt, the benchmarks' reports).
set -u
DATA=${1:?scene folder}
OUT=${2:?output folder}
DEADLINE=${3:-540}
STAGES=",${4:-gputest,speed,suite,cli,ablation},"
want() { [[ $STAGES == *",$1,"* ]]; }
# shellcheck source=benchmarks/gpu_setup.sh
source "$(dirname "$0")/gpu_setup.sh"

want gputest && say "GPU tests" &&
    timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu -rs -v tests

want speed && say "render speed" &&
    timeout 120 python3 benchmarks/render_speed.py --sizes 100000,1000000 --pixels 512 \
        --backends cpu,cpu:cuda,gsplat --repeats 3 --out "$OUT" --name render_speed-gpu \
        >/dev/null

# the suite runs beside the benchmarks (16 cores, one GPU with memory to spare)
# (2 threads per worker: 8 workers with a thread per core each oversubscribe the 16 cores)
SUITE=
if want suite; then
    say "suite (background)"
    ( OMP_NUM_THREADS=2 timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider \
        -p no:benchmark -n 8 -rf --tb=short >"$OUT/suite.txt" 2>&1
      echo "suite rc=$?" >>"$OUT/suite.txt" ) &
    SUITE=$!
fi

want cli && say "CLI encode + decode (cat, preset 2, default steps: 300 on a GPU)"
if want cli && [ -f "$DATA/cat.ply" ]; then
    TIMEFORMAT="encode: %R s wall"
    time timeout 120 "${GS[@]}" encode "$DATA/cat.ply" -q 2 -o /tmp/cat.gsz --force
    TIMEFORMAT="decode: %R s wall"
    time timeout 120 "${GS[@]}" decode /tmp/cat.gsz -o /tmp/cat.out.ply --force
    "${GS[@]}" bitrate report /tmp/cat.gsz | tail -4
fi

SCENES=()
for s in cat plant playbot; do [ -f "$DATA/$s.ply" ] && SCENES+=("$DATA/$s.ply"); done
want ablation && say "refinement ablation, 300 steps" &&
    timeout $(( $(left) - 15 )) python3 benchmarks/refine.py "${SCENES[@]}" --qualities 1,2 \
        --base-qualities 1-4 --configs side,full --steps 300 --out "$OUT" --name refine-gpu \
        >/dev/null && say "refine done"

if [ -n "$SUITE" ]; then
    wait $SUITE
    tail -40 "$OUT/suite.txt"
fi
say "done"
