#!/usr/bin/env bash
# How much bfloat16 inference changes classification: the same trained
# prompt classifies the spam dev set in fp32 and in bf16.  Prints JSON:
# accuracy of each, the fraction of rows whose label agrees, and the largest
# probability difference.
#   bench/bf16_accuracy.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
work=build/bench/bf16-full
[[ ${1:-} == --quick ]] && work=build/bench/bf16-quick   # each keeps its own trained prompt
mkdir -p "$work"
if [[ ${1:-} == --quick ]]; then
  model=build/models/tiny-gated
  printf 'text,label\n' > "$work/data.csv"
  for i in $(seq 1 40); do echo "\"a dog and a cat number $i\",this"; echo "\"an apple and a lemon $i\",that"; done >> "$work/data.csv"
  train=$work/data.csv dev=$work/data.csv steps=20 prompt_len=8
else
  model=build/bench/spam-256
  [[ -f $model/model.safetensors ]] || ptune_py/gen_checkpoint.py "$model" --preset spam-256 --seed 0 \
    --spiece "$shared/tokenizers/t5/spiece.model" >/dev/null
  train=$shared/data/spam/train.csv dev=$shared/data/spam/dev.csv steps=300 prompt_len=50
fi
prompt=$work/prompt.bin
[[ -f $prompt ]] || build/ptune train "$model" --train "$train" --dev "$dev" --text-column text \
  --label-column label --prompt-length "$prompt_len" --init random_uniform --optimizer adam --lr 0.05 \
  --batch-size 16 --steps "$steps" --max-input-tokens 64 --out "$prompt" >/dev/null 2>&1

/usr/bin/python3 - "$dev" > "$work/texts.txt" <<'PY'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    print(row["text"].replace("\n", " "))
PY
/usr/bin/python3 - "$dev" > "$work/labels.txt" <<'PY'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    print(row["label"])
PY
PTUNE_PRECISION=fp32 build/ptune classify "$model" "$prompt" < "$work/texts.txt" > "$work/fp32.tsv"
PTUNE_PRECISION=bf16 build/ptune classify "$model" "$prompt" < "$work/texts.txt" > "$work/bf16.tsv"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
truth = open(f"{w}/labels.txt").read().split("\n")[:-1]
def read(name):
    rows = [line.split("\t") for line in open(f"{w}/{name}.tsv").read().split("\n") if line]
    return [r[0] for r in rows], [float(r[1]) for r in rows]
l32, p32 = read("fp32")
l16, p16 = read("bf16")
n = len(truth)
def prob_of(labels, probs, other_labels):
    # probability each precision gives to the fp32 label
    return [p if a == b else 1 - p for a, b, p in zip(labels, other_labels, probs)]
diff = max(abs(a - b) for a, b in zip(prob_of(l32, p32, l32), prob_of(l16, p16, l32)))
print(json.dumps({
    "rows": n,
    "accuracy_fp32": sum(a == t for a, t in zip(l32, truth)) / n,
    "accuracy_bf16": sum(a == t for a, t in zip(l16, truth)) / n,
    "label_agreement": sum(a == b for a, b in zip(l32, l16)) / n,
    "max_probability_difference": diff,
}, indent=2))
PY
