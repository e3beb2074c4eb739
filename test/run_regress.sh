#!/usr/bin/env bash
# Runs the pg_regress suite (test/sql/*.sql against test/expected/*.out),
# then the isolation specs (test/specs/*.spec: concurrent sessions, by
# PostgreSQL's isolation tester) on throwaway clusters with ptune preloaded
# and a generated test model.  Needs `make install` first.  As root, the
# clusters run as user postgres.
#   test/run_regress.sh [TEST ...]      default: the whole schedule and every spec
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
root=$PWD
out="$root/$BUILD/regress"
models="$root/$BUILD/models"
pgbin=$(pg_config --bindir)
pg_regress="$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress"
pg_isolation_regress="$(dirname "$(pg_config --pgxs)")/../test/isolation/pg_isolation_regress"
tests=() specs=()
for t in "$@"; do
  if [[ -f test/specs/$t.spec ]]; then specs+=("$t"); else tests+=("$t"); fi
done
if (($# == 0)); then
  tests=(setup train classify evaluate generate scoring manage errors privileges isolation mismatch distribute)
  specs=(race_first_training race_manage)
fi

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
status=0
if ((${#tests[@]})); then
  "${run[@]}" "$pg_regress" --temp-instance="$out/tmp_check" --temp-config="$out/ptune.conf" \
    --inputdir=test --outputdir="$out" --bindir="$pgbin" --dbname=ptune_regress "${tests[@]}" || status=1
fi
if ((${#specs[@]})); then
  "${run[@]}" "$pg_isolation_regress" --temp-instance="$out/tmp_check_iso" --temp-config="$out/ptune.conf" \
    --inputdir=test --outputdir="$out/isolation" --bindir="$pgbin" --dbname=ptune_isolation "${specs[@]}" || status=1
fi
exit $status
