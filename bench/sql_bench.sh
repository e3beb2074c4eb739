#!/usr/bin/env bash
# Classification through SQL on a table of 2,000 rows of 128-token texts:
# serial calls, parallel workers, the array form, 4 concurrent sessions;
# the latency of single calls; the worker's and a backend's memory.
# Starts its own throwaway cluster (as postgres when root); needs `make install`.
# Prints one JSON object.
#   bench/sql_bench.sh MODEL_DIR [fp32|bf16] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(cd "$1" && pwd)
precision=${2:-fp32}
quick=${3:-}
rows=2000
[[ $quick == --quick ]] && rows=200
base="$PWD/build/sqlbench"
port=${PTUNE_BENCH_PORT:-54340}
pgbin=$(pg_config --bindir)
run=()
[[ $(id -u) -eq 0 ]] && run=(runuser -u postgres --)
q() { "${run[@]}" "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port" -d postgres "$@"; }
now() { date +%s.%N; }

rm -rf "$base"; mkdir -p "$base"
[[ $(id -u) -eq 0 ]] && chown postgres "$base"
"${run[@]}" "$pgbin/initdb" -D "$base/data" -A trust >/dev/null
cat >> "$base/data/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$model'
ptune.precision = '$precision'
ptune.batch_size = 32
port = $port
unix_socket_directories = '$base'
listen_addresses = ''
max_worker_processes = 16
CONF
trap '"${run[@]}" "$pgbin/pg_ctl" -D "$base/data" -m immediate stop >/dev/null 2>&1' EXIT
"${run[@]}" "$pgbin/pg_ctl" -D "$base/data" -l "$base/log" -w start >/dev/null
until [[ $(q -c "SELECT worker_state FROM ptune.status()" 2>/dev/null || true) == ready ]]; do
  q -c "CREATE EXTENSION IF NOT EXISTS ptune" 2>/dev/null || true; sleep 0.2
done

# 2,000 texts of random common words, each longer than 128 tokens, and a task
# with two single-token labels (trained for one step: speed is all we measure)
q >/dev/null <<SQL
CREATE TABLE t AS
SELECT i AS id, CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END AS label,
       (SELECT string_agg(w[1 + ((i * 7919 + j * 104729) % array_length(w, 1))], ' ')
        FROM generate_series(1, 200) j) AS text
FROM generate_series(1, $rows) i,
     (SELECT string_to_array('time year people way day man thing woman life child world school state '
      'family student group country problem hand part place case week company system program question '
      'work government number night point home water room mother area money story fact month lot right '
      'study book eye job word business issue side kind head house service friend father power hour game '
      'line end member law car city community name president team minute idea kid body information back '
      'parent face others level office door health person art war history party result change morning '
      'reason research girl guy moment air teacher force education', ' ') AS w) words;
ALTER TABLE t SET (parallel_workers = 2);
CREATE INDEX ON t (id);
SET client_min_messages = warning;
SELECT version FROM ptune.train_prompt('bench', 't', 'text', 'label', prompt_length => 20,
       epochs => 0, max_steps => 1, validation_fraction => 0, max_input_tokens => 128);
SQL

counters() { q -c "SELECT forward_passes || ' ' || rows_classified FROM ptune.status()"; }
measure() {  # name, then psql arguments; sets rows/s and the worker's mean batch
  local name=$1; shift
  local c0 f0 r0 start seconds c1 f1 r1
  c0=$(counters); start=$(now)
  "$@"
  seconds=$(echo "$(now) - $start" | bc -l)
  c1=$(counters)
  read -r f0 r0 <<<"$c0"; read -r f1 r1 <<<"$c1"
  printf '"%s": {"rows_per_s": %.3f, "seconds": %.3f, "forward_passes": %d, "mean_batch": %.2f}' \
    "$name" "$(echo "$rows / $seconds" | bc -l)" "$seconds" $((f1 - f0)) \
    "$(echo "($r1 - $r0) / ($f1 - $f0)" | bc -l)"
}

serial() { q -c "SET max_parallel_workers_per_gather = 0" -c "SELECT count(ptune.classify('bench', text)) FROM t" >/dev/null; }
parallel() { q -c "SET max_parallel_workers_per_gather = 2" -c "SET parallel_setup_cost = 0" \
               -c "SET parallel_tuple_cost = 0" -c "SET min_parallel_table_scan_size = 0" \
               -c "SELECT count(ptune.classify('bench', text)) FROM t" >/dev/null; }
array() { q -c "SELECT cardinality(ptune.classify('bench', array_agg(text))) FROM t" >/dev/null; }
sessions() {
  local pids=()
  for s in 0 1 2 3; do
    q -c "SET max_parallel_workers_per_gather = 0" \
      -c "SELECT count(ptune.classify('bench', text)) FROM t WHERE id % 4 = $s" >/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
}

# the latency of one call: pgbench, one client, single rows; and of the same
# query without classify (what SQL itself costs)
cat > "$base/latency.sql" <<'PGB'
\set id random(1, 200)
SELECT ptune.classify('bench', text) FROM t WHERE id = :id;
PGB
cat > "$base/baseline.sql" <<'PGB'
\set id random(1, 200)
SELECT length(text) FROM t WHERE id = :id;
PGB
chmod 644 "$base/latency.sql" "$base/baseline.sql"
latency() {  # key, script
  rm -f "$base"/pgblog*
  (cd "$base" && "${run[@]}" "$pgbin/pgbench" -n -h "$base" -p "$port" -f "$2" \
     -t "$([[ $quick == --quick ]] && echo 20 || echo 300)" -c 1 -l --log-prefix="$base/pgblog" postgres >/dev/null 2>&1)
  sort -n -k3 "$base"/pgblog* | awk -v key="$1" '{ l[NR] = $3 } END {
    printf "\"%s\": {\"calls\": %d, \"p50\": %.3f, \"p99\": %.3f}", key, NR, l[int(NR * 0.5) + 1] / 1000, l[int(NR * 0.99) + 1] / 1000 }'
}

# the engine alone, measured now: this machine's speed drifts within minutes,
# so the SQL figures are compared with the engine in the same window
engine=$(PTUNE_PRECISION=$precision build/ptune bench "$model" --classify-only --batches 1,2,4,8,32 \
           $([[ $quick == --quick ]] && echo --quick) | jq -c '.classify_rows_per_s')

# memory: the worker, and one backend before and after classifying
worker_pid=$(q -c "SELECT worker_pid FROM ptune.status()")
backend=$(q -c "SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\\s+(\\d+)'))[1]" \
            -c "SELECT count(ptune.classify('bench', text)) FROM t WHERE id <= 50" \
            -c "SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\\s+(\\d+)'))[1]")

echo "{"
echo "\"rows\": $rows, \"precision\": \"$precision\", \"model\": \"$model\","
measure serial serial; echo ","
measure parallel parallel; echo ","
measure array array; echo ","
measure sessions_4 sessions; echo ","
latency latency_ms latency.sql; echo ","
latency sql_only_latency_ms baseline.sql; echo ","
echo "\"engine_rows_per_s\": $engine,"
printf '"memory_mb": {"worker_rss": %.1f, "model_file": %.1f, "backend_before": %.1f, "backend_after": %.1f}\n' \
  "$(awk '/VmRSS/ {print $2 / 1024}' /proc/"$worker_pid"/status)" \
  "$(du -k --apparent-size "$model"/*.safetensors | awk '{s += $1} END {print s / 1024}')" \
  "$(echo "$backend" | sed -n 1p | awk '{print $1 / 1024}')" "$(echo "$backend" | sed -n 3p | awk '{print $1 / 1024}')"
echo "}"
