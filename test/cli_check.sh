#!/usr/bin/env bash
# CLI checks that the unit tests cannot make (run by `scripts/test.sh unit`):
# `ptune train --objective generation` on the test tokenizer's tiny model, the
# prompt it writes used by `ptune generate`, and the errors around it.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
models="$PWD/$BUILD/models"
bash test/make_test_models.sh "$models" >/dev/null
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ptune="$BUILD/ptune" model="$models/tiny-gated"
passed=0 failed=0
check() {   # status message
  if [[ $1 -eq 0 ]]; then passed=$((passed + 1)); echo "ok   $2"
  else failed=$((failed + 1)); echo "FAIL $2"; fi
}

# targets of any text (a comma and quotes included), chosen by the input's class
{ echo 'text,target'
  for i in $(seq 1 12); do echo "\"the dog $i runs\",\"this that\""; echo "\"an apple $i\",\"that, \"\"this\"\"\""; done
} > "$work/gen.csv"
"$ptune" train "$model" --train "$work/gen.csv" --text-column text --label-column target --objective generation \
  --prompt-length 4 --steps 3 --batch-size 4 --validation-fraction 0.25 --init random_uniform \
  --out "$work/gen.bin" > "$work/train.json" 2> "$work/train.err"
check $? "train --objective generation runs ($(tail -1 "$work/train.err"))"
/usr/bin/python3 - "$work/train.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["objective"] == "generation" and r["labels"] == [], r
assert r["train_rows"] == 18 and r["val_rows"] == 6 and r["steps"] == 3, r
assert r["selection_accuracy"] is not None and 0 <= r["selection_accuracy"] <= 1, r
PY
check $? "its JSON: objective generation, no labels, 18 + 6 rows, exact match in [0, 1]"

printf 'the dog runs\nan apple\n' | "$ptune" generate "$model" "$work/gen.bin" --max-new-tokens 4 > "$work/gen.out"
check $? "generate with the trained prompt"
[[ $(wc -l < "$work/gen.out") -eq 2 ]]
check $? "one output line per input line ($(wc -l < "$work/gen.out"))"

echo 'a dog' | "$ptune" classify "$model" "$work/gen.bin" > /dev/null 2> "$work/classify.err"
[[ $? -ne 0 ]] && grep -qi "generation" "$work/classify.err"
check $? "classify refuses a generation prompt: $(head -1 "$work/classify.err" | cut -c1-100)"

"$ptune" train "$model" --train "$work/gen.csv" --text-column text --label-column target --objective summarise \
  --out "$work/x.bin" > /dev/null 2> "$work/bad.err"
[[ $? -eq 2 ]] && grep -q "objective" "$work/bad.err"
check $? "an unknown --objective is a usage error: $(head -1 "$work/bad.err" | cut -c1-100)"
"$ptune" train "$model" --train "$work/gen.csv" --text-column text --label-column target --objective generation \
  --ensemble 2 --steps 1 --out "$work/x.bin" > /dev/null 2> "$work/ens.err"
[[ $? -ne 0 && ! -e $work/x.bin ]] && grep -q "ensemble" "$work/ens.err"
check $? "generation with --ensemble 2 is refused, no file written: $(head -1 "$work/ens.err" | cut -c1-100)"

# classification stays the default
"$ptune" train "$model" --train "$work/gen.csv" --text-column text --label-column target --prompt-length 2 \
  --steps 1 --validation-fraction 0 --out "$work/cls.bin" > "$work/cls.json" 2>/dev/null
[[ $? -eq 0 ]] && grep -q '"objective": "classification"' "$work/cls.json"
check $? "without --objective: classification"

echo "cli-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
