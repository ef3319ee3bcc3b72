#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run (ESC-50 audio beside the repository, as for the tests):
# the CUDA tests and the training/model suites with the GPU present (compute auto picks it), a training
# run on the GPU against the same run on the CPU, and replays of every shipped model on the GPU against
# the CPU. Writes its logs to OUT (default cuda_check/).
#
#     bash scripts/cuda_check.sh [OUT] [CSV]    # CSV: ESC-50-style subset for the training comparison
set -u
out=${1:-cuda_check}
csv=${2:-../shared/data/esc50/meta/esc50.csv}
work=$(mktemp -d)  # caches, runs and replays; only the logs go to OUT
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"

echo "== tests with the GPU present: the CUDA ones, then the model and training suites"
python3 -m pytest -q -p no:cacheprovider -rfs -m cuda tests/training/test_training_device.py \
    tests/streamd/test_engine.py tests/models/test_mamba.py 2>&1 | tee "$out/tests_cuda.txt" | tail -n 8
python3 -m pytest -q -p no:cacheprovider -rfs --maxfail=10 tests/models tests/training \
    tests/streamd/test_precision.py tests/streamd/test_config.py tests/streamd/test_engine.py 2>&1 | tee "$out/tests.txt" | tail -n 15

echo "== one training step, CPU (one thread) and GPU"
python3 scripts/bench_train_compute.py | tee "$out/bench_train.txt"
python3 scripts/bench_train_compute.py --config configs/train/esc50_ast_tiny_distill.toml \
    | tee -a "$out/bench_train.txt"

echo "== training: the default CNN recipe, GPU against CPU (one thread)"
train() {  # compute, epochs, extra args...
    local compute=$1 epochs=$2
    shift 2
    local start=$SECONDS
    python3 -m streamd train configs/train/esc50_resnet_cnn.toml --mode single --no-progress \
        --set "data.csv_path=\"$csv\"" --set 'data.folds=[1,2]' --set 'data.val_folds=[2]' \
        --set train.augment.mixing=bc --set train.batch_size=8 --set "train.epochs=$epochs" \
        --compute "$compute" \
        --set "experiment.cache_dir=\"$work/cache\"" --out "$work/train_$compute" --fresh "$@" 2>&1
    echo "$compute: $((SECONDS - start)) s wall"
}
train cpu 2 --set train.num_threads=1 | tee "$out/train_cpu.txt" | tail -n 4  # also fills the cache
train cuda 2 | tee "$out/train_cuda.txt" | tail -n 6

echo "== replay of every shipped model: GPU against CPU (fp32 and auto precision)"
for model in default recurrent ast; do
    for precision in fp32 auto; do
        for compute in cpu cuda; do
            python3 -m streamd replay examples/long.wav --speed max --json --model "$model" \
                --compute "$compute" --precision "$precision" \
                > "$work/replay_${model}_${precision}_$compute.jsonl" 2> "$work/replay.err" \
                || tail -n 2 "$work/replay.err"
        done
        printf '%s %s: ' "$model" "$precision"
        python3 scripts/compare_replays.py "$work/replay_${model}_${precision}_cpu.jsonl" \
            "$work/replay_${model}_${precision}_cuda.jsonl"
    done
done | tee "$out/replay.txt"
