#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, clang, with ASan + UBSan) of the code
# that reads untrusted bytes: the safetensors loader, config.json, the prompt
# bytea decoder and the CSV reader.  Each target runs for a fixed time from a
# seed corpus of real files; a crash, a sanitizer report or a rejected input
# without an error message is a failure.
#   test/run_fuzz.sh [SECONDS_PER_TARGET]      (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
out=build/fuzz
mkdir -p "$out"
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Wno-unknown-pragmas -Isrc/engine -Isrc/cli -Itest/fuzz)
sources=(src/engine/error.c src/engine/safetensors.c src/engine/config.c src/cli/csv.c
         src/engine/prompt.c src/engine/dtype.c)

# the C++ tokenizer shim, for prompt.c's initialisation code (not fuzzed)
[[ $out/tokenizer.o -nt src/engine/tokenizer.cc ]] ||
  clang++ -g -O1 -fsanitize=fuzzer-no-link,address,undefined -std=c++17 -Isrc/engine \
    -c src/engine/tokenizer.cc -o "$out/tokenizer.o"

# seeds: real files of each kind
models=build/models
bash test/make_test_models.sh "$models" >/dev/null
mkdir -p "$out"/seeds_{safetensors,config,prompt,csv}
head -c 4096 "$models/tiny-gated/model.safetensors" > "$out/seeds_safetensors/head"
cp "$models/tiny-relu/model.safetensors" "$out/seeds_safetensors/tiny-relu" 2>/dev/null || true
for m in tiny-relu tiny-gated; do cp "$models/$m/config.json" "$out/seeds_config/$m.json"; done
printf 'text,label\n"a dog",this\n"an apple",that\n' > "$out/seeds_csv/simple.csv"
printf 'a,"b ""quoted""\r\nwith newline",c\r\n1,2,3\r\n' > "$out/seeds_csv/quoted.csv"
build/ptune train "$models/tiny-gated" --train "$out/seeds_csv/simple.csv" --text-column text \
  --label-column label --prompt-length 2 --steps 1 --validation-fraction 0 \
  --out "$out/seeds_prompt/prompt.bin" >/dev/null 2>&1

failed=0
for target in safetensors config prompt csv; do
  # (linked by clang++: the tokenizer shim is C++)
  clang++ -x c "${flags[@]}" "test/fuzz/fuzz_$target.c" "${sources[@]}" -x none "$out/tokenizer.o" \
    -lsentencepiece -ljansson -lxxhash -lz -lstdc++ -o "$out/fuzz_$target" 2>"$out/build_$target.log" ||
    { echo "fuzz_$target: build failed"; cat "$out/build_$target.log"; failed=1; continue; }
  mkdir -p "$out/corpus_$target"
  if "$out/fuzz_$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$out/crash_$target-" "$out/corpus_$target" "$out/seeds_$target" \
       > "$out/fuzz_$target.log" 2>&1; then
    echo "fuzz_$target: $(grep -oE 'Done [0-9]+ runs' "$out/fuzz_$target.log" | tail -1) in ${seconds} s, no crash," \
         "$(ls "$out/corpus_$target" | wc -l) corpus inputs"
  else
    echo "fuzz_$target: FAILED"; tail -30 "$out/fuzz_$target.log"; failed=1
  fi
done
exit $failed
