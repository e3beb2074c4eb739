#!/usr/bin/env bash
# Scripted PostgreSQL tests that pg_regress cannot express: concurrent
# sessions, cancellation, timeouts, killed sessions and workers, crash
# recovery, dump and restore (also by a database owner who is no superuser),
# a cluster without preloading, a pgbouncer transaction pool.  Starts its own throwaway cluster (as user
# postgres when run as root) with ptune preloaded; needs `make install`.
#   test/run_pg_tests.sh [NAME_SUBSTRING]
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
root=$PWD
base="$root/$BUILD/pgtest"
models="$root/$BUILD/models"
export PGPORT=${PGPORT:-54329}
export PGSOCK="$base"
RUN=()
[[ $(id -u) -eq 0 ]] && RUN=(runuser -u postgres --)

source test/pg/lib.sh
source test/pg/tests.sh

bash test/make_test_models.sh "$models" || exit 1
rm -rf "$base"
mkdir -p "$base/work"
WORK="$base/work"
[[ $(id -u) -eq 0 ]] && chown -R postgres "$base"
"${RUN[@]}" "$PGBIN/initdb" -D "$base/data" -A trust >/dev/null || exit 1
cat >> "$base/data/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$models/tiny-gated'
ptune.request_slots = 4
port = $PGPORT
unix_socket_directories = '$base'
listen_addresses = ''
restart_after_crash = on
CONF
stop_cluster() { "${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -m immediate stop >/dev/null 2>&1; }
trap stop_cluster EXIT
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -l "$base/server.log" -w start >/dev/null || exit 1

# the database of the tests: the toy task of the regression tests, trained
q -d postgres -c "CREATE DATABASE ptune_test"
q -c "CREATE EXTENSION ptune"
q -f test/pg/toy.sql >/dev/null
q -f - <<'SQL' >/dev/null
SET client_min_messages = warning;
SELECT * FROM ptune.train_prompt('toy', 'toy', 'text', 'label', prompt_length => 20,
    init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16,
    epochs => 0, max_steps => 100, max_input_tokens => 16);
SQL

passed=0 failed=0
for t in $(declare -F | awk '{print $3}' | grep '^test_'); do
  [[ -n ${1:-} && $t != *"$1"* ]] && continue
  echo "${t#test_}"
  fail_count=0
  $t
  if [[ $fail_count -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "pg scripted tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
