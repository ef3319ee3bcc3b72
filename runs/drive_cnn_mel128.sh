#!/usr/bin/env bash
# The between-class CNN recipe (200 epochs) at 128 mel bins, held-out fold k: a teacher of other
# features for the ensemble (frequency masks scaled with the bins); then its held-out score.
#   bash runs/drive_cnn_mel128.sh K
k=$1
cd "$(dirname "$0")/.."
out=runs/cnn_e200_bc_mel128_f$k
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nice -n 10 streamd train configs/train/esc50_resnet_cnn.toml --mode single --set "data.val_folds=[$k]" \
    --set train.augment.mixing=bc --set features.num_mel_bins=128 --set normalization.mean=-6.6268077 \
    --set normalization.std=5.358466 --set train.augment.freq_mask=32 --set train.num_threads=1 \
    --no-progress --out $out >> runs/logs/$(basename $out).log 2>&1 || exit 1
nice -n 10 streamd evaluate --checkpoint $out/single/model.safetensors \
    --esc50 ../shared/data/esc50/meta/esc50.csv --folds $k > runs/logs/clips_$(basename $out).txt 2>&1
