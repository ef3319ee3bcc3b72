#!/usr/bin/env bash
# The recurrent recipe with prefix teacher targets on folds 1-4 (the candidate to ship as --model recurrent):
# stage 1 (90 epochs), stage 2 (6 epochs at lr 1e-4 on 120-s streams), then false events on background and
# the events on examples/long.wav. Re-running it resumes a stage from its saved state.
#   bash runs/drive_mamba_prefix_full.sh
cd "$(dirname "$0")/.."
teacher=(--set 'train.distill.teachers=["runs/cnn_e200_full/full/model.safetensors"]' --set train.distill.stream_targets=prefix)
s1=runs/mamba_kd_bc05_e90_prefix_full
s2=runs/mamba_kd_bc05_e90_prefix_bglong_lr1e4_full
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
if [ ! -f $s1/full/model.safetensors ]; then
  nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode full --set train.epochs=90 \
      "${teacher[@]}" --set train.num_threads=1 --no-progress --out $s1 >> runs/logs/$(basename $s1).log 2>&1 || exit 1
fi
if [ ! -f $s2/full/model.safetensors ]; then
  nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode full "${teacher[@]}" \
      --init $s1/full/model.safetensors --set train.epochs=6 --set train.lr=0.0001 \
      --set train.warmup_epochs=0.5 --set train.backbone_lr_scale=1.0 --set train.sequences.gap_max_s=40.0 \
      --set train.sequences.length_s=120.0 --set train.sequences.background_min_dbfs=-70.0 \
      --set train.sequences.background_max_dbfs=-35.0 --set 'train.sequences.background_kinds=["white","pink","brown"]' \
      --set train.num_threads=1 --no-progress --out $s2 >> runs/logs/$(basename $s2).log 2>&1 || exit 1
fi
model=$s2/full/model.safetensors
nice -n 5 python scripts/false_events.py $model --minutes 10 --hop 0.16 > runs/logs/false_$(basename $s2).txt 2>&1
nice -n 5 streamd replay examples/long.wav --checkpoint $model --speed max --no-dashboard --json \
    | grep '"type":"event"' > runs/logs/long_wav_events_$(basename $s2).jsonl
