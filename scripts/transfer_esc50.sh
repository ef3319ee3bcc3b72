#!/usr/bin/env bash
# Transfer experiment (docs/fine-tuning.md): a CNN trained on 40 ESC-50 classes (folds 1-4) as --init for
# a new 10-class task made of the left-out classes (train folds 1-3, test fold 4), against the same recipe
# from scratch. Usage: scripts/transfer_esc50.sh [source|scratch|finetune|all] (EPOCHS, SOURCE_EPOCHS and
# OUT from the env; precision auto: bf16 where the CPU runs it natively, else fp32).
set -euo pipefail
EPOCHS=${EPOCHS:-8}
SOURCE_EPOCHS=${SOURCE_EPOCHS:-$EPOCHS}
OUT=${OUT:-runs/transfer}
LEFT='["dog","cat","rain","sea_waves","crackling_fire","crying_baby","clock_tick","sneezing","helicopter","chainsaw"]'
RECIPE=configs/train/esc50_resnet_cnn.toml
COMMON=(--set train.warmup_epochs=1.0 --set train.num_threads=1 --fresh --no-progress)
step=${1:-all}
if [[ $step == source || $step == all ]]; then
  streamd train "$RECIPE" --mode full --set "data.exclude_categories=$LEFT" --set train.epochs="$SOURCE_EPOCHS" "${COMMON[@]}" --out "$OUT/source"
fi
if [[ $step == scratch || $step == all ]]; then
  streamd train "$RECIPE" --mode single --set "data.categories=$LEFT" --set train.epochs="$EPOCHS" "${COMMON[@]}" --out "$OUT/scratch"
fi
if [[ $step == finetune || $step == all ]]; then
  streamd train "$RECIPE" --mode single --set "data.categories=$LEFT" --set train.epochs="$EPOCHS" "${COMMON[@]}" --out "$OUT/finetune" \
    --init "$OUT/source/full/model.safetensors"
fi
