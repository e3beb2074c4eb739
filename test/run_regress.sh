#!/usr/bin/env bash
# Runs the pg_regress suite (test/sql/*.sql against expected/*.out) on a
# throwaway cluster with ptune preloaded and a generated test model.
# Needs `make install` first.  As root, the cluster runs as user postgres.
#   test/run_regress.sh [TEST ...]      default: the whole schedule
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
root=$PWD
out="$root/$BUILD/regress"
models="$root/$BUILD/models"
pgbin=$(pg_config --bindir)
pg_regress="$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress"
tests=("$@")
((${#tests[@]})) || tests=(setup train classify evaluate scoring manage errors privileges isolation mismatch)

bash test/make_test_models.sh "$models"
rm -rf "$out"
mkdir -p "$out"

# a valid prompt of another model, for the mismatch test
printf 'text,label\n"a dog",this\n"an apple",that\n"a cat",this\n"a lemon",that\n' > "$out/tiny.csv"
"$BUILD/ptune" train "$models/tiny-relu" --train "$out/tiny.csv" --text-column text --label-column label \
  --prompt-length 3 --steps 1 --validation-fraction 0 --out "$out/relu_prompt.bin" >/dev/null 2>&1

cat > "$out/ptune.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$models/tiny-gated'
max_worker_processes = 16
max_parallel_workers = 8
CONF

run=()
if [[ $(id -u) -eq 0 ]]; then
  chown -R postgres "$out"
  run=(runuser -u postgres --)
fi
"${run[@]}" "$pg_regress" --temp-instance="$out/tmp_check" --temp-config="$out/ptune.conf" \
  --inputdir=test --outputdir="$out" --bindir="$pgbin" --dbname=ptune_regress "${tests[@]}"
