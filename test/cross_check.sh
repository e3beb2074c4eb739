#!/usr/bin/env bash
# Cross-checks the C engine against the independent float64 PyTorch T5
# (ptune_py/t5_reference.py): logits, loss and prompt gradient on
# random cases, for both feed-forward variants and both head variants, and
# rank classification's label probabilities (labels sharing prefixes).
# Then Adafactor against an independent float64 re-implementation of T5X's
# (ptune_py/t5x_adafactor.py): 20 steps on fixed pseudo-random
# gradients, prompt shapes below and above T5X's factoring threshold (128).
# Prints one summary line per case and "cross-check: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
models="$PWD/$BUILD/models"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref=ptune_py/t5_reference.py
passed=0 failed=0

check() {   # model, cases arguments...
  local model=$1; shift
  local tag="$model $*"
  /usr/bin/python3 $ref make-cases "$models/$model" "$@" > "$work/cases.json"
  "$BUILD/ptune" check "$models/$model" < "$work/cases.json" > "$work/engine.json"
  /usr/bin/python3 $ref check "$models/$model" < "$work/cases.json" > "$work/reference.json"
  if /usr/bin/python3 ptune_py/compare.py "$work/reference.json" "$work/engine.json" \
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

# Generation: greedy and beam search ids, scores and per-token log-probabilities
# against the reference's uncached decoding loop, all cases in one batched
# call (mixed input lengths and prompts).  Each setting runs twice: with the
# model's EOS, then with an EOS picked from the first run's greedy output so
# that sequences end at different steps (random models rarely emit EOS).
generation() {   # model, max_new, "beams:alpha ...", make-cases arguments...
  local model=$1 max_new=$2 searches=$3; shift 3
  /usr/bin/python3 $ref make-cases "$models/$model" "$@" > "$work/gen_cases.json"
  /usr/bin/python3 $ref generate "$models/$model" --max-new-tokens "$max_new" \
      < "$work/gen_cases.json" > "$work/gen_greedy.json"
  local picked
  picked=$(/usr/bin/python3 $ref pick-eos "$work/gen_greedy.json")
  for eos in -1 "$picked"; do
    for search in $searches; do
      local beams=${search%:*} alpha=${search#*:}
      local opts=(--max-new-tokens "$max_new" --num-beams "$beams" --length-penalty "$alpha" --eos-id "$eos")
      local tag="generate $model beams=$beams alpha=$alpha eos=$eos $*"
      /usr/bin/python3 $ref generate "$models/$model" "${opts[@]}" < "$work/gen_cases.json" > "$work/gen_ref.json"
      "$BUILD/ptune" generate-check "$models/$model" "${opts[@]}" < "$work/gen_cases.json" > "$work/gen_eng.json"
      if /usr/bin/python3 $ref compare-generate "$work/gen_ref.json" "$work/gen_eng.json" --tol 1e-5 \
           > "$work/compare.txt"; then
        passed=$((passed + 1)); echo "ok   $tag: $(tail -1 "$work/compare.txt")"
      else
        failed=$((failed + 1)); echo "FAIL $tag"; cat "$work/compare.txt"
      fi
    done
  done
}

generation tiny-relu       14 "1:0 4:0.6"   --n 6 --seed 11 --prompt-len 5 --mixed-prompts
generation tiny-relu       10 "1:0 3:1.5"   --n 5 --seed 12
generation tiny-gated      14 "1:0 4:0.6"   --n 6 --seed 13 --prompt-len 4 --mixed-prompts --max-input 40
PTUNE_THREADS=2 generation tiny-gated 12 "2:0" --n 5 --seed 14 --prompt-len 2
generation tiny-gated-bf16 10 "1:0 3:0.6"   --n 4 --seed 15 --prompt-len 3
generation tiny-gated-f16  10 "3:0.6"       --n 4 --seed 16

adafactor() {   # rows cols [make-case options...]
  local tag="adafactor $*" opt=ptune_py/t5x_adafactor.py
  local rows=$1 cols=$2; shift 2
  /usr/bin/python3 $opt make-case --rows "$rows" --cols "$cols" --steps 20 "$@" > "$work/opt.json"
  /usr/bin/python3 $opt run < "$work/opt.json" > "$work/opt_reference.json"
  "$BUILD/ptune" optimizer-check < "$work/opt.json" > "$work/opt_engine.json"
  if /usr/bin/python3 $opt compare "$work/opt_reference.json" "$work/opt_engine.json" --tol 1e-6 \
       > "$work/compare.txt"; then
    passed=$((passed + 1)); echo "ok   $tag: $(tail -1 "$work/compare.txt")"
  else
    failed=$((failed + 1)); echo "FAIL $tag"; cat "$work/compare.txt"
  fi
}

adafactor 20 64 --seed 1                        # full second moment (20 < 128)
adafactor 100 64 --seed 2
adafactor 130 64 --seed 3                       # 130 rows, but d_model 64 < 128: full
adafactor 200 48 --seed 4
adafactor 130 160 --seed 5                      # factored, rows < cols
adafactor 200 128 --seed 6                      # factored, rows > cols
adafactor 100 64 --seed 7 --start-step 1100000  # the paper's step count (T5X checkpoint_1100000)
adafactor 100 64 --seed 8 --min-dim 1 --weight-decay 3e-6   # ptune's earlier settings as options
echo "cross-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
