#!/usr/bin/env bash
# A variant of the shipped default's background epochs (bgkd) from the student of held-out fold k, then its
# scoring and its false event starts on background.
#   bash runs/drive_bgkd_variant.sh K TAG [--set KEY=VALUE ...]   (the --set after the defaults win)
k=$1; tag=$2; shift 2
cd "$(dirname "$0")/.."
teachers='train.distill.teachers=["runs/cnn_e200_f{fold}/single/model.safetensors","runs/cnn_e200_bc_f{fold}/single/model.safetensors","runs/cnn_e200_bc_aug_f{fold}/single/model.safetensors"]'
out=runs/cnn_bc_kd3_online_${tag}_f$k
OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 nice -n 5 streamd train configs/train/esc50_resnet_cnn.toml --mode single \
    --set "data.val_folds=[$k]" --init runs/cnn_bc_kd3_online_f$k/single/model.safetensors --set train.epochs=4 \
    --set train.lr=0.0002 --set train.warmup_epochs=0.5 --set train.background=0.2 --set train.augment.mixing=bc \
    --set train.num_threads=1 --set "$teachers" --set train.distill.mode=online --set train.distill.temperature=2.0 \
    --set train.distill.weight=0.7 "$@" --no-progress --out $out >> runs/logs/$(basename $out).log 2>&1
OMP_NUM_THREADS=1 nice -n 5 python scripts/false_events.py $out/single/model.safetensors --minutes 10 --hop 1 \
    > runs/logs/false_$(basename $out).txt 2>&1
