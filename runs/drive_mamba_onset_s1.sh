#!/usr/bin/env bash
# Onset weighting from the first stage on (the first 1 s of each clip's audible part weighs 3x): the recurrent
# recipe's first stage at 60 epochs, then the 6-epoch second stage at lr 3e-4 (the 60 + 6 recipe it is
# compared with), held-out fold k; then the scoring (clips, soundscapes, false events).
#   bash runs/drive_mamba_onset_s1.sh K
k=$1
cd "$(dirname "$0")/.."
onset=(--set train.sequences.onset_s=1.0 --set train.sequences.onset_weight=3.0)
s1=runs/mamba_kd_bc05_e60_onset1s_w3_f$k
s2=runs/mamba_kd_bc05_e60_onset1s_w3_bglong_f$k
OMP_NUM_THREADS=1 nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --set train.epochs=60 --set train.num_threads=1 "${onset[@]}" --no-progress \
    --out $s1 >> runs/logs/$(basename $s1).log 2>&1
OMP_NUM_THREADS=1 nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
    --set "data.val_folds=[$k]" --init $s1/single/model.safetensors \
    --set train.epochs=6 --set train.lr=0.0003 --set train.warmup_epochs=0.5 --set train.backbone_lr_scale=1.0 \
    --set train.sequences.gap_max_s=40.0 --set train.sequences.length_s=120.0 \
    --set train.sequences.background_min_dbfs=-70.0 --set train.sequences.background_max_dbfs=-35.0 \
    --set 'train.sequences.background_kinds=["white","pink","brown"]' --set train.num_threads=1 "${onset[@]}" \
    --no-progress --out $s2 >> runs/logs/$(basename $s2).log 2>&1
model=$s2/single/model.safetensors
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k > runs/logs/clips_$(basename $s2).txt 2>&1
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $model --esc50 ../shared/data/esc50/meta/esc50.csv \
    --folds $k --streaming --clips 20 --soundscapes 2 --json > runs/logs/soundscape_$(basename $s2).json 2>&1
OMP_NUM_THREADS=1 nice -n 5 python scripts/false_events.py $model --minutes 10 --hop 0.16 \
    > runs/logs/false_$(basename $s2).txt 2>&1
