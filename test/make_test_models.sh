#!/usr/bin/env bash
# Generates the small checkpoints the tests use (seeded, so always identical)
# into DIR, skipping any that already exist.
#   tiny-relu        relu, tied head, 1000-piece tokenizer trained here
#   tiny-gated       gated-gelu, untied head, inner != d_model, enc/dec depth differ
#   tiny-gated-bf16  the same weights stored as BF16 (and -f16 as F16)
#   tiny-relu-bf16   tiny-relu's weights as BF16: a tied head read from a BF16 file
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: make_test_models.sh DIR}
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
gen=ptune_py/gen_checkpoint.py
mkdir -p "$out"

if [[ ! -f "$out/spiece-1000.model" ]]; then
  # one small tokenizer for all tiny models, trained on the shared corpus
  $gen "$out/tok-tmp" --preset tiny-relu --train-spiece "$shared/data/corpus/plain.txt" \
       --spiece-vocab 1000 >/dev/null
  cp "$out/tok-tmp/spiece.model" "$out/spiece-1000.model"
  rm -rf "$out/tok-tmp"
fi

make_model() {
  local name=$1; shift
  [[ -f "$out/$name/model.safetensors" ]] && return 0
  $gen "$out/$name" "$@" >/dev/null
}
make_model tiny-relu       --preset tiny-relu  --seed 1 --spiece "$out/spiece-1000.model"
make_model tiny-gated      --preset tiny-gated --seed 2 --spiece "$out/spiece-1000.model"
make_model tiny-gated-bf16 --preset tiny-gated --seed 2 --spiece "$out/spiece-1000.model" --dtype bf16
make_model tiny-gated-f16  --preset tiny-gated --seed 2 --spiece "$out/spiece-1000.model" --dtype f16
make_model tiny-relu-bf16  --preset tiny-relu  --seed 1 --spiece "$out/spiece-1000.model" --dtype bf16
