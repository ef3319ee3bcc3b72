#!/usr/bin/env bash
# Stage 1 at 120 epochs (running), then the shipped second stage and the scoring, for one held-out fold k.
k=$1
cd "$(dirname "$0")/.."
while pgrep -f "out runs/mamba_kd_bc05_e120_f$k" > /dev/null; do sleep 20; done
OMP_NUM_THREADS=1 nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --init runs/mamba_kd_bc05_e120_f$k/single/model.safetensors \
    --set train.epochs=6 --set train.lr=0.0001 --set train.warmup_epochs=0.5 --set train.backbone_lr_scale=1.0 \
    --set train.sequences.gap_max_s=40.0 --set train.sequences.length_s=120.0 \
    --set train.sequences.background_min_dbfs=-70.0 --set train.sequences.background_max_dbfs=-35.0 \
    --set 'train.sequences.background_kinds=["white","pink","brown"]' --set train.num_threads=1 --no-progress \
    --out runs/mamba_kd_bc05_e120_bglong_lr1e4_f$k >> runs/logs/mamba_kd_bc05_e120_bglong_lr1e4_f$k.log 2>&1
model=runs/mamba_kd_bc05_e120_bglong_lr1e4_f$k/single/model.safetensors
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k --streaming --clips 20 --soundscapes 2 > runs/logs/soundscape_kd_bc05_e120_bglong_lr1e4_f$k.txt 2>&1
OMP_NUM_THREADS=1 nice -n 5 python scripts/false_events.py $model --minutes 10 --hop 0.16 \
    > runs/logs/false_kd_bc05_e120_bglong_lr1e4_f$k.txt 2>&1
