#!/usr/bin/env bash
# Prefix teacher targets (train.distill.stream_targets = "prefix": each step learns the teacher's opinion of
# the part of its clip heard so far): the shipped recurrent recipe otherwise (90-epoch first stage, then
# 6 epochs at lr 1e-4 on 120-s streams), held-out fold k; then the scoring (clips, 200 soundscape sounds,
# false events on background), by runs/drive_mamba_variant.sh.
#   bash runs/drive_mamba_prefix.sh K [SEED]    (another seed than 0: the runs are named ..._s<SEED>_f<K>)
k=$1
seed=${2:-0}
tag=$([ "$seed" = 0 ] || echo "_s$seed")
S2_TAG=prefix_bglong_lr1e4$tag exec bash "$(dirname "$0")/drive_mamba_variant.sh" "$k" "prefix$tag" \
    --set train.distill.stream_targets=prefix --set train.seed="$seed"
