#!/usr/bin/env bash
# Train the restoration network (the learned prior) on a CUDA machine, in one run:
#   bash benchmarks/gpu_train_prior.sh SCENE_DIR OUT_DIR [TRAIN_SECONDS] [VIEWS] [VAL]
# SCENE_DIR holds the training and validation scenes in any format training reads (.splat,
# .spz, .sog, .ply): the shared data's .splat files as they are (12 objects without NC
# licences, biker.spz and plant.splat are about 44 MB, which fits a lease's 64 MiB with the
# wheels). Pairs are made in parallel processes with gsplat (VIEWS random views per training
# scene, default 48; presets 1-3), then the network trains for TRAIN_SECONDS (default 300) on
# the GPU and is validated on VAL (default plant,cat). OUT_DIR gets restore-gpu.pt (float16,
# for the CPU), report.json and log.txt. Validate on playbot and run the ablation afterwards on
# any machine (`benchmarks/refine.py`, `gscodec.restore.load_weights`).
set -u
DATA=${1:?scene folder}
OUT=${2:?output folder}
SECONDS_TRAIN=${3:-300}
VIEWS=${4:-48}
VAL=${5:-plant,cat}
DEADLINE=$((SECONDS_TRAIN + 300))
# shellcheck source=benchmarks/gpu_setup.sh
source "$(dirname "$0")/gpu_setup.sh"

JOBS=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
say "pairs ($JOBS processes) and training (${SECONDS_TRAIN} s)"
timeout $(( $(left) - 20 )) python3 -m gscodec.training.prior --data "$DATA" \
    --out "$OUT/restore-gpu.pt" --report "$OUT/report.json" --device cuda \
    --views "$VIEWS" --val-views 6 --qualities 1-3 --val "$VAL" \
    --exclude brucewick,cow,falconstatue,mushroom --zero-mean-block 4 --p-residual 0.8 \
    --lr 2e-3 --batch 32 --time-limit "$SECONDS_TRAIN" --steps 10000000 --val-every 5000 \
    --skip-initial-validation --jobs "$JOBS" --threads 4 --cache "$HOME/.cache/gscodec/restore-pairs"
say "train rc=$?"
ls -la "$OUT"
