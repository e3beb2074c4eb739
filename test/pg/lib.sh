# lib.sh - helpers for the scripted PostgreSQL tests (sourced by run_pg_tests.sh).
#
# A test is a function test_NAME; it passes if it returns 0.  check() records
# a failed expectation with a message and lets the test continue.

PGBIN=$(pg_config --bindir)

# psql as the cluster owner, quiet, tuples only, stop on error
q() { "${RUN[@]}" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PGPORT" -d "${DB:-ptune_test}" "$@"; }

# psql that may fail: prints stdout and stderr together
q_any() { "${RUN[@]}" "$PGBIN/psql" -X -q -At -h "$PGSOCK" -p "$PGPORT" -d "${DB:-ptune_test}" "$@" 2>&1; }

fail_count=0
check() {   # condition-exit-status message
  local msg=${2:0:300}
  if [[ $1 -ne 0 ]]; then echo "    FAILED: $msg"; fail_count=$((fail_count + 1)); else echo "    ok: $msg"; fi
}

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

worker_pid() { q -c "SELECT coalesce(worker_pid, 0) FROM ptune.status()"; }

# Waits until the worker reports ready (up to $1 seconds); prints the seconds it took.
wait_ready() {
  local limit=${1:-30} start; start=$(now)
  while true; do
    local state; state=$(q -c "SELECT worker_state FROM ptune.status()" 2>/dev/null || true)
    [[ $state == ready ]] && { elapsed "$start"; return 0; }
    (( $(echo "$(elapsed "$start") > $limit" | bc) )) && return 1
    sleep 0.1
  done
}

# Waits until a query returns "t" (up to $2 seconds).
wait_for() {
  local query=$1 limit=${2:-30} start; start=$(now)
  until [[ $(q -c "$query" 2>/dev/null) == t ]]; do
    (( $(echo "$(elapsed "$start") > $limit" | bc) )) && return 1
    sleep 0.05
  done
}

# A training that runs far longer than any test waits: something to interrupt.
LONG_TRAINING="SELECT * FROM ptune.train_prompt('long', 'toy', 'text', 'label', prompt_length => 50,
  init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 32, epochs => 0,
  max_steps => 1000000, max_input_tokens => 16)"
