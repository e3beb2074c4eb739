#!/usr/bin/env bash
# Text generation speed: ptune (fp32, bf16) against PyTorch running the same
# cached greedy decoding (ptune_py/pytorch_generate.py), flan-t5-small shapes,
# 128-token inputs, 32 new tokens (EOS ignored), batch 1 and 32.  ROUNDS
# interleaved rounds (default 3), medians.  Writes $OUT/generate_*.json
# (bench/report.py turns them into BENCHMARKS.md's generation section) and
# prints that section.
#   bench/generate_bench.sh            the measurement (hold the exclusive quiet lock)
#   bench/generate_bench.sh --quick    a smoke run on a tiny model (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
out=${OUT:-bench/results}
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
export OMP_WAIT_POLICY=PASSIVE
rounds=${ROUNDS:-3}
args=()
if [[ $quick == --quick ]]; then
  out=build/bench-quick
  bash test/make_test_models.sh build/models >/dev/null
  dir=build/models/tiny-gated rounds=1 args=(--quick --new-tokens 4)
else
  dir=build/bench/flan-t5-small
  [[ -f $dir/model.safetensors ]] ||
    ptune_py/gen_checkpoint.py "$dir" --preset flan-t5-small --dtype f32 --seed 0 \
      --spiece "$shared/tokenizers/t5/spiece.model" >/dev/null
fi
mkdir -p "$out/rounds"
for round in $(seq 1 "$rounds"); do
  echo "== generation, round $round of $rounds: engine fp32, engine bf16, PyTorch" >&2
  r=$out/rounds/r$round
  build/ptune bench-generate "$dir" "${args[@]}" > "${r}_generate_engine_fp32.json"
  PTUNE_PRECISION=bf16 build/ptune bench-generate "$dir" "${args[@]}" > "${r}_generate_engine_bf16.json"
  /usr/bin/python3 -m ptune_py.pytorch_generate "$dir" "${args[@]}" > "${r}_generate_pytorch.json"
done
for kind in generate_engine_fp32 generate_engine_bf16 generate_pytorch; do
  /usr/bin/python3 bench/median.py "$out"/rounds/r*_"$kind".json > "$out/$kind.json"
done
/usr/bin/python3 bench/report.py "$out" --generation-only
