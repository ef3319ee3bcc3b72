#!/usr/bin/env bash
# A variant of the shipped recurrent recipe (90-epoch first stage, then 6 epochs at lr 1e-4 on 120-s
# streams), held-out fold k, with extra --set options applied to both stages; then the scoring (clips,
# 200 soundscape sounds, false events on background).
#   bash runs/drive_mamba_variant.sh K TAG [--set key=value ...]
#   e.g. bash runs/drive_mamba_variant.sh 3 l6 --set model.config.n_layers=6
k=$1
tag=$2
shift 2
cd "$(dirname "$0")/.."
s1=runs/mamba_kd_bc05_e90_${tag}_f$k
s2=runs/mamba_kd_bc05_e90_${S2_TAG:-${tag}_bglong_lr1e4}_f$k  # S2_TAG: another name for the second stage
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --set train.epochs=90 --set train.num_threads=1 "$@" --no-progress \
    --out $s1 >> runs/logs/$(basename $s1).log 2>&1 || exit 1
nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --init $s1/single/model.safetensors \
    --set train.epochs=6 --set train.lr=0.0001 --set train.warmup_epochs=0.5 --set train.backbone_lr_scale=1.0 \
    --set train.sequences.gap_max_s=40.0 --set train.sequences.length_s=120.0 \
    --set train.sequences.background_min_dbfs=-70.0 --set train.sequences.background_max_dbfs=-35.0 \
    --set 'train.sequences.background_kinds=["white","pink","brown"]' --set train.num_threads=1 "$@" \
    --no-progress --out $s2 >> runs/logs/$(basename $s2).log 2>&1 || exit 1
model=$s2/single/model.safetensors
nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k > runs/logs/clips_$(basename $s2).txt 2>&1
nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k --streaming --clips 50 --soundscapes 4 --json > runs/logs/soundscape200_$(basename $s2).json 2>&1
nice -n 5 python scripts/false_events.py $model --minutes 10 --hop 0.16 \
    > runs/logs/false_$(basename $s2).txt 2>&1
