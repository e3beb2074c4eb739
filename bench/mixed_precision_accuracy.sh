#!/usr/bin/env bash
# Does mixed-precision training learn as well as fp32?  The same spam-256
# checkpoint, data, seed and settings train a prompt twice: in fp32
# (PTUNE_PRECISION=fp32) and in a bf16 model (PTUNE_PRECISION=bf16: products
# in bfloat16 with fp32 accumulation, everything else fp32).  Both prompts
# then classify the 882 spam dev rows in fp32 (each run keeps the prompt its
# dev evaluations every 50 steps chose, as bench/learning_curves.sh does).  Prints JSON: each run's dev
# accuracy, train loss, rows/s, and the difference in accuracy points.
#   bench/mixed_precision_accuracy.sh [STEPS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
work=build/bench/mixed-precision
model=build/bench/spam-256
mkdir -p "$work"
[[ -f $model/model.safetensors ]] || ptune_py/gen_checkpoint.py "$model" --preset spam-256 --seed 0 \
  --spiece "$shared/tokenizers/t5/spiece.model" >/dev/null
common=(--train "$shared/data/spam/train.csv" --text-column text --label-column label
        --batch-size 16 --steps "$steps" --max-input-tokens 64 --seed 42 --dev "$shared/data/spam/dev.csv" --eval-every 50
        --init random_uniform --optimizer adam --lr 0.05 --prompt-length 50)
for prec in fp32 bf16; do
  PTUNE_PRECISION=$prec build/ptune train "$model" "${common[@]}" --out "$work/$prec.bin" \
    > "$work/train_$prec.json" 2>/dev/null
  PTUNE_PRECISION=fp32 build/ptune evaluate "$model" "$work/$prec.bin" "$shared/data/spam/dev.csv" \
    --text-column text --label-column label > "$work/dev_$prec.json"
done
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
out = {}
for p in ("fp32", "bf16"):
    t = json.load(open(f"{w}/train_{p}.json"))
    d = json.load(open(f"{w}/dev_{p}.json"))
    out[p] = {"dev": d, "final_loss": t.get("final_loss"), "train_rows_per_s": t.get("train_rows_per_s")}
acc = {p: out[p]["dev"].get("accuracy") for p in out}
out["accuracy_points_bf16_minus_fp32"] = None if None in acc.values() else 100 * (acc["bf16"] - acc["fp32"])
print(json.dumps(out, indent=2))
PY
