#!/usr/bin/env bash
# The shipped recurrent recipe's second stage from its 90-epoch first stage of held-out fold k, with onset
# weighting (default: the first 1 s of each clip's audible part weighs 3x); then the scoring.
#   bash runs/drive_mamba_onset.sh K [TAG [--set KEY=VALUE ...]]   (extra --set after the defaults win)
k=$1; tag=${2:-onset1s_w3}; shift $(( $# < 2 ? $# : 2 ))
extra=(--set train.sequences.onset_s=1.0 --set train.sequences.onset_weight=3.0 "$@")
cd "$(dirname "$0")/.."
out=runs/mamba_kd_bc05_e90_bglong_lr1e4_${tag}_f$k
OMP_NUM_THREADS=1 nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --init runs/mamba_kd_bc05_e90_f$k/single/model.safetensors \
    --set train.epochs=6 --set train.lr=0.0001 --set train.warmup_epochs=0.5 --set train.backbone_lr_scale=1.0 \
    --set train.sequences.gap_max_s=40.0 --set train.sequences.length_s=120.0 \
    --set train.sequences.background_min_dbfs=-70.0 --set train.sequences.background_max_dbfs=-35.0 \
    --set 'train.sequences.background_kinds=["white","pink","brown"]' --set train.num_threads=1 --no-progress \
    "${extra[@]}" --out $out >> runs/logs/$(basename $out).log 2>&1
model=$out/single/model.safetensors
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k > runs/logs/clips_$(basename $out).txt 2>&1
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k --streaming --clips 20 --soundscapes 2 --json > runs/logs/soundscape_$(basename $out).json 2>&1
OMP_NUM_THREADS=1 nice -n 5 python scripts/false_events.py $model --minutes 10 --hop 0.16 \
    > runs/logs/false_$(basename $out).txt 2>&1
