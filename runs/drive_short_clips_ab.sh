#!/usr/bin/env bash
# Own-data recurrent training on clips shorter than the window, before (TREE = a worktree of the commit
# before training.short_clips) and after (TREE = this checkout): held-out report of the test split, and
# for task B the background scores.
#   python scripts/make_short_clips.py ../shared/data/esc50 /tmp/taskA --classes dog rooster siren \
#       church_bells crow rain sneezing door_wood_knock engine cat --seconds 0.3 --max-seconds 2.5
#   python scripts/make_short_clips.py ../shared/data/esc50 /tmp/taskB --classes dog rain siren \
#       church_bells engine --cut dog --seconds 0.4
#   bash runs/drive_short_clips_ab.sh TREE TAG
tree=$1
tag=$2
export OMP_NUM_THREADS=1 PYTHONPATH=$tree
here=$(pwd)
cd "$tree"
for task in A B; do
  for seed in 0 1; do
    out=/tmp/short_${task}_${tag}_s$seed
    python -m streamd train --data /tmp/task$task --recipe recurrent --epochs 80 --set train.num_threads=1 \
        --set train.seed=$seed --no-progress --fresh --out $out > $here/runs/logs/short_${task}_${tag}_s$seed.log 2>&1
    if [ $task = B ]; then
      python scripts/false_events.py $out/model.safetensors --minutes 2 --hop 0.16 \
          > $here/runs/logs/false_short_${task}_${tag}_s$seed.txt 2>&1
    fi
  done
done
