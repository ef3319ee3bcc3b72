#!/bin/bash
# After stage 1 of the wider distilled recurrent run of fold $1 (PID $2): stage 2 (6 epochs on 120-s
# streams with 0.2-40 s noise gaps), then the held-out scores, soundscapes and false events.
k=$1; pid=$2
cd "$(dirname "$0")/../.."
while kill -0 "$pid" 2>/dev/null; do sleep 20; done
s1=runs/mamba_kd_bc05_w192_f$k/single/model.safetensors
[ -f "$s1" ] || { echo "no stage-1 model for fold $k"; exit 1; }
export OMP_NUM_THREADS=1
nice -n 5 streamd train configs/train/esc50_streaming_mamba_conv_distill.toml --mode single \
  --set "data.val_folds=[$k]" --set model.config.stem_channels=32 --set model.config.d_model=192 \
  --init "$s1" --set train.epochs=6 --set train.lr=0.0003 --set train.warmup_epochs=0.5 \
  --set train.backbone_lr_scale=1.0 --set train.sequences.length_s=120.0 --set train.sequences.gap_max_s=40.0 \
  --set train.sequences.background_min_dbfs=-70.0 --set train.sequences.background_max_dbfs=-35.0 \
  --set 'train.sequences.background_kinds=["white","pink","brown"]' --set train.num_threads=1 --no-progress \
  --out runs/mamba_kd_bc05_w192_bglong_f$k > runs/logs/mamba_kd_bc05_w192_bglong_f$k.log 2>&1 || exit 1
s2=runs/mamba_kd_bc05_w192_bglong_f$k/single/model.safetensors
nice -n 5 streamd evaluate --checkpoint "$s2" --esc50 ../shared/data/esc50/meta/esc50.csv --folds $k \
  --streaming --clips 20 --soundscapes 2 > runs/logs/soundscape_kd_bc05_w192_bglong_f$k.txt 2>&1
nice -n 5 python scripts/false_events.py "$s2" --minutes 10 --hop 0.16 > runs/logs/false_kd_bc05_w192_bglong_f$k.txt 2>&1
echo "fold $k done"
