#!/usr/bin/env bash
# Learning curves of prompt tuning on the spam data (../shared/data/spam) on
# a generated checkpoint with random weights (spam-256 shape, real T5
# vocabulary): the three initialisations, both optimisers, prompt lengths
# 1, 20 and 100, plus the PyTorch peer for the settings that learn.
# Writes bench/results/curves/*.csv and prints a markdown table.
#   bench/learning_curves.sh [STEPS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
out=bench/results/curves
model=build/bench/spam-256
mkdir -p "$out"
[[ -f $model/model.safetensors ]] || ptune_py/gen_checkpoint.py "$model" --preset spam-256 --seed 0 \
  --spiece "$shared/tokenizers/t5/spiece.model" >/dev/null
make -s cli

common=(--train "$shared/data/spam/train.csv" --dev "$shared/data/spam/dev.csv"
        --text-column text --label-column label --batch-size 16 --steps "$steps"
        --max-input-tokens 64 --eval-every 50 --seed 42)

echo "| init | optimizer | lr | prompt length | best val accuracy | final train loss | train rows/s |"
echo "|---|---|---|---|---|---|---|"
for opt in adafactor:0.3 adam:0.05; do
  for init in class_labels sampled_vocab random_uniform; do
    for len in 1 20 100; do
      name="${init}_${opt%%:*}_${len}"
      build/ptune train "$model" "${common[@]}" --init "$init" --optimizer "${opt%%:*}" --lr "${opt##*:}" \
        --prompt-length "$len" --curve "$out/$name.csv" --out "$out/$name.bin" > "$out/$name.json" 2>/dev/null
      best=$(cut -d, -f5 "$out/$name.csv" | tail -n +2 | sort -g | tail -1)
      echo "| $init | ${opt%%:*} | ${opt##*:} | $len | $best | $(jq -r '.final_loss*10000|round/10000' "$out/$name.json") | $(jq -r '.train_rows_per_s*10|round/10' "$out/$name.json") |"
    done
  done
done

# the PyTorch peer, same checkpoint, data and settings as the run that learns best
/usr/bin/python3 -m ptune_py.pytorch_prompt_tuning "$model" "${common[@]}" --init random_uniform \
  --optimizer adam --lr 0.05 --prompt-length 50 --ptune build/ptune > "$out/pytorch_adam_50.json" 2>/dev/null
build/ptune train "$model" "${common[@]}" --init random_uniform --optimizer adam --lr 0.05 \
  --prompt-length 50 --curve "$out/ptune_adam_50.csv" --out "$out/ptune_adam_50.bin" > "$out/ptune_adam_50.json" 2>/dev/null
echo
echo "| trainer | best val accuracy | train rows/s |"
echo "|---|---|---|"
echo "| ptune | $(cut -d, -f5 "$out/ptune_adam_50.csv" | tail -n +2 | sort -g | tail -1) | $(jq -r '.train_rows_per_s*10|round/10' "$out/ptune_adam_50.json") |"
echo "| PyTorch | $(jq -r '.val_accuracy' "$out/pytorch_adam_50.json") | $(jq -r '.train_rows_per_s*10|round/10' "$out/pytorch_adam_50.json") |"
