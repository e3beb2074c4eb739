#!/usr/bin/env bash
# Cross-checks the C engine against the independent float64 PyTorch T5
# (test/reference/t5_reference.py): logits, loss and prompt gradient on
# random cases, for both feed-forward variants and both head variants, and
# rank classification's label probabilities (labels sharing prefixes).
# Prints one summary line per model and "cross-check: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
models="$PWD/$BUILD/models"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref=test/reference/t5_reference.py
passed=0 failed=0

check() {   # model, cases arguments...
  local model=$1; shift
  local tag="$model $*"
  /usr/bin/python3 $ref make-cases "$models/$model" "$@" > "$work/cases.json"
  "$BUILD/ptune" check "$models/$model" < "$work/cases.json" > "$work/engine.json"
  /usr/bin/python3 $ref check "$models/$model" < "$work/cases.json" > "$work/reference.json"
  if /usr/bin/python3 test/reference/compare.py "$work/reference.json" "$work/engine.json" \
       --logits-tol 1e-4 --grad-tol 1e-4 --loss-tol 1e-5 > "$work/compare.txt"; then
    passed=$((passed + 1)); echo "ok   $tag: $(tail -1 "$work/compare.txt")"
  else
    failed=$((failed + 1)); echo "FAIL $tag"; cat "$work/compare.txt"
  fi
}

check tiny-relu       --n 6 --seed 1 --prompt-len 5 --rank-labels 4
check tiny-relu       --n 4 --seed 2                     # no prompt
check tiny-gated      --n 6 --seed 3 --prompt-len 7 --max-input 40 --max-target 24 --rank-labels 5
check tiny-gated-bf16 --n 4 --seed 4 --prompt-len 3
check tiny-gated-f16  --n 4 --seed 5 --prompt-len 1
# targets longer than the encoder row (prompt + input), batched on 2 threads
PTUNE_THREADS=2 check tiny-relu  --n 8 --seed 6 --prompt-len 1 --max-target 60 --decoder-longer
PTUNE_THREADS=2 check tiny-gated --n 6 --seed 7 --prompt-len 3 --max-target 40 --decoder-longer
echo "cross-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
