#!/usr/bin/env bash
# After the online three-teacher student of held-out fold k has finished its 200 epochs (waits for its
# training process to end), its scoring, the 4 background epochs with its teachers (bgkd) and their scoring.
#   bash runs/drive_cv_student.sh K
k=$1
cd "$(dirname "$0")/.."
student=runs/cnn_bc_kd3_online_f$k
while pgrep -f -- "--out $student( |$)" > /dev/null; do sleep 30; done
teachers='train.distill.teachers=["runs/cnn_e200_f{fold}/single/model.safetensors","runs/cnn_e200_bc_f{fold}/single/model.safetensors","runs/cnn_e200_bc_aug_f{fold}/single/model.safetensors"]'
distill=(--set "$teachers" --set train.distill.mode=online --set train.distill.temperature=2.0 --set train.distill.weight=0.7)
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $student/single/model.safetensors \
    --esc50 ../shared/data/esc50/meta/esc50.csv --folds $k > runs/logs/eval_cnn_bc_kd3_online_f$k.txt 2>&1
out=runs/cnn_bc_kd3_online_bgkd_f$k
OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 nice -n 5 streamd train configs/train/esc50_resnet_cnn.toml --mode single \
    --set "data.val_folds=[$k]" --init $student/single/model.safetensors --set train.epochs=4 \
    --set train.lr=0.0002 --set train.warmup_epochs=0.5 --set train.background=0.2 --set train.augment.mixing=bc \
    --set train.num_threads=1 "${distill[@]}" --no-progress --out $out >> runs/logs/$(basename $out).log 2>&1
OMP_NUM_THREADS=1 nice -n 5 streamd evaluate --checkpoint $out/single/model.safetensors \
    --esc50 ../shared/data/esc50/meta/esc50.csv --folds $k > runs/logs/eval_$(basename $out).txt 2>&1
