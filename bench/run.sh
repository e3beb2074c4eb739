#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md (numbers in bench/results/).
#   bench/run.sh            the full run (about 50 minutes on 2 cores)
#   bench/run.sh --peers    only the engine-against-peers rounds, then the report
#   bench/run.sh --quick    a smoke run on a tiny model (CI): checks that every
#                           benchmark still works; its numbers mean nothing
# The engine and its peers run in ROUNDS interleaved rounds (default 3) and
# every figure is the median over the rounds: this machine's speed drifts by
# tens of percent within minutes, so one run of each would compare moments.
# Everything is measured in the same run on the same machine: the engine
# (fp32, bf16 and int8), PyTorch at its faster thread setting, ONNX Runtime
# (fp32, and int8 from bench/ort/quantize_onnx.py), SQL.
# MODELS="flan-t5-small" limits the models (default: t5-small flan-t5-small).
# ROUND_FIRST=N starts at round N (default 1), keeping earlier rounds' files:
# a run too long for one quiet window goes in parts, e.g. ROUNDS=1, then
# ROUND_FIRST=2 ROUNDS=2, ...; medians are over every round on file.
# ACCURACY=0 skips bench/bf16_accuracy.sh in --peers (not a timing; run it once).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
root=$PWD
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
out=${BENCH_OUT:-bench/results}   # BENCH_OUT: another machine's results beside these
[[ $quick == --quick ]] && out=build/bench-quick
mkdir -p "$out" build/bench
q_flag=(); [[ $quick == --quick ]] && q_flag=(--quick)
export OMP_WAIT_POLICY=PASSIVE

bash scripts/install_deps.sh --bench >/dev/null
make -s -j"$(nproc)" >/dev/null
# --peers runs no SQL: it needs no installed extension (nor the shared PostgreSQL lock)
if [[ $quick != --peers ]]; then
  if [[ $(id -u) -eq 0 ]]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi
fi

# checkpoints with the exact shapes of the models (random weights: speed does
# not depend on their values); the real T5 vocabulary where it is at hand
tokenizer=()
[[ -f $shared/tokenizers/t5/spiece.model ]] && tokenizer=(--spiece "$shared/tokenizers/t5/spiece.model")
checkpoint() {   # name preset dtype
  [[ -f build/bench/$1/model.safetensors ]] ||
    ptune_py/gen_checkpoint.py "build/bench/$1" --preset "$2" --dtype "$3" --seed 0 "${tokenizer[@]}" >/dev/null
  echo "build/bench/$1"
}
if [[ $quick == --quick ]]; then
  bash test/make_test_models.sh build/models >/dev/null
  models=(tiny-gated:build/models/tiny-gated)
else
  models=()
  for name in ${MODELS:-t5-small flan-t5-small}; do models+=("$name:$(checkpoint "$name" "$name" f32)"); done
fi

labels_of() {   # the two single-token labels ptune bench picks, as ids
  printf 'yes\nno\nspam\nham\ntrue\nfalse\ngood\nbad\nthe\nand\nof\nto\nin\n' | build/ptune tokenize "$1" |
    grep -v ' ' | head -2 | paste -sd,
}

rounds=${ROUNDS:-3}
[[ $quick == --quick ]] && rounds=1
mkdir -p "$out/rounds" build/bench/ort
[[ -d build/bench/ort/node_modules/onnxruntime-node ]] ||
  (cd build/bench/ort && npm install --silent --ignore-scripts --no-audit --no-fund onnxruntime-node >/dev/null)
for round in $(seq "${ROUND_FIRST:-1}" "$rounds"); do
  for entry in "${models[@]}"; do
    name=${entry%%:*} dir=${entry#*:}
    echo "== $name, round $round of $rounds: engine fp32, bf16, int8, PyTorch, ONNX Runtime fp32, int8"
    r=$out/rounds/r$round
    for precision in fp32 bf16 int8; do
      PTUNE_PRECISION=$precision build/ptune bench "$dir" "${q_flag[@]}" > "${r}_engine_${name}_$precision.json"
    done
    /usr/bin/python3 -m ptune_py.pytorch_bench "$dir" "${q_flag[@]}" > "${r}_pytorch_${name}.json"
    [[ -f build/bench/ort/$name.onnx ]] ||
      /usr/bin/python3 -m ptune_py.export_onnx "$dir" "build/bench/ort/$name.onnx" >/dev/null 2>&1
    # int8 as ONNX Runtime's quantize_dynamic makes it (per-column weights, dynamic activations)
    [[ -f build/bench/ort/$name-int8.onnx ]] ||
      /usr/bin/python3 bench/ort/quantize_onnx.py "build/bench/ort/$name.onnx" "build/bench/ort/$name-int8.onnx" >/dev/null
    for graph in "$name:ort_${name}" "$name-int8:ort_${name}_int8"; do
      ORT_MODULES=build/bench/ort/node_modules node bench/ort/bench_ort.js "build/bench/ort/${graph%%:*}.onnx" \
        "$(jq .d_model "$dir/config.json")" "$(jq '[.vocab_size, 32000] | min' "$dir/config.json")" \
        "$(labels_of "$dir")" "${q_flag[@]}" > "${r}_${graph#*:}.json"
    done
  done
done
for entry in "${models[@]}"; do
  name=${entry%%:*}
  for kind in "engine_${name}_fp32" "engine_${name}_bf16" "engine_${name}_int8" "pytorch_${name}" \
              "ort_${name}" "ort_${name}_int8"; do
    /usr/bin/python3 bench/median.py "$out"/rounds/r*_"$kind".json > "$out/$kind.json"
  done
done
if [[ $quick == --peers ]]; then
  # the accuracy of bf16 and int8 against fp32 belongs with the peers (the int8 target)
  [[ ${ACCURACY:-1} == 0 ]] || bash bench/bf16_accuracy.sh > "$out/bf16_accuracy.json"
  /usr/bin/python3 bench/report.py "$out" > BENCHMARKS.md
  echo "wrote BENCHMARKS.md"
  exit 0
fi

sqlmodel=${models[-1]#*:}
echo "== SQL on $(basename "$sqlmodel")"
bash bench/sql_bench.sh "$sqlmodel" fp32 "${q_flag[@]}" > "$out/sql_fp32.json"
bash bench/sql_bench.sh "$sqlmodel" bf16 "${q_flag[@]}" > "$out/sql_bf16.json"

echo "== scale: model size, input length, prompt length"
if [[ $quick != --quick ]]; then
  for preset in flan-t5-base flan-t5-large; do
    dir=$(checkpoint "$preset-bf16" "$preset" bf16)
    PTUNE_PRECISION=bf16 build/ptune bench "$dir" --batches 1,8 > "$out/scale_${preset}_bf16.json"
  done
fi
for tokens in 32 128 512; do
  PTUNE_PRECISION=bf16 build/ptune bench "$sqlmodel" --input-tokens "$tokens" --batches 8 "${q_flag[@]}" \
    > "$out/scale_input_${tokens}.json"
done
for prompt in 1 20 100; do
  PTUNE_PRECISION=bf16 build/ptune bench "$sqlmodel" --prompt-length "$prompt" --batches 8 "${q_flag[@]}" \
    > "$out/scale_prompt_${prompt}.json"
done

echo "== text generation"
OUT=$out bash bench/generate_bench.sh "${q_flag[@]}" >/dev/null

echo "== accuracy of bf16 against fp32"
bash bench/bf16_accuracy.sh "${q_flag[@]}" > "$out/bf16_accuracy.json"

report=BENCHMARKS.md
[[ $quick == --quick ]] && report=$out/BENCHMARKS.md
/usr/bin/python3 bench/report.py "$out" > "$report"
echo "wrote $report"
