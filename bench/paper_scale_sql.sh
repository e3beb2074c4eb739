#!/usr/bin/env bash
# paper_scale_sql.sh MODEL_DIR [NAME] - a big model served through SQL on a
# throwaway cluster (BENCHMARKS.md, "Paper scale"): how long the worker takes
# to load it, its peak RSS, one-row and 8-row classification, and a short
# mixed-precision train_prompt (batch 8, 128-token inputs, prompt 20).
#
# Needs the extension installed (make install) and the spam data
# (scripts/spam_dataset.py; build/demo/data is reused if scripts/demo.sh ran).
# Prints one JSON object.  Heavy: run it alone on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(cd "$1" && pwd)
name=${2:-$(basename "$model")}
work=$(mktemp -d /tmp/ptune-sql-bench.XXXXXX)
port=${PTUNE_BENCH_PORT:-54377}
data=build/demo/data
[[ -f $data/train.csv ]] || /usr/bin/python3 scripts/spam_dataset.py "$data"

run=()
if [[ $(id -u) -eq 0 ]]; then run=(runuser -u postgres --); fi
pgbin=$(pg_config --bindir)
mkdir -p "$work/data"
head -41 "$data/train.csv" > "$work/data/train.csv"   # header + 40 rows: 2 steps of 8, a few to validate
head -9 "$data/test.csv" > "$work/data/test.csv"
[[ ${#run[@]} -eq 0 ]] || chown -R postgres "$work"
"${run[@]}" "$pgbin/initdb" -D "$work/pg" -A trust >/dev/null
cat >> "$work/pg/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$model'
ptune.precision = ${PTUNE_BENCH_PRECISION:-bf16}
port = $port
unix_socket_directories = '$work'
listen_addresses = ''
CONF
cleanup() { [[ ${ok:-} == 1 ]] || tail -30 "$work/server.log" >&2 || true; "${run[@]}" "$pgbin/pg_ctl" -D "$work/pg" stop -m fast >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
psql=("${run[@]}" "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d postgres)

start=$(date +%s.%N)
"${run[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/server.log" -w start >/dev/null
"${psql[@]}" -c "CREATE EXTENSION ptune"
until [[ $("${psql[@]}" -c "SELECT worker_state FROM ptune.status()") == ready ]]; do
  [[ $("${psql[@]}" -c "SELECT worker_state FROM ptune.status()") == failed ]] && { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
load_s=$(echo "$(date +%s.%N) - $start" | bc)
"${psql[@]}" <<SQL
CREATE TABLE spam_train (id text PRIMARY KEY, text text, label text, "group" text);
CREATE TABLE spam_test (LIKE spam_train);
\copy spam_train FROM '$work/data/train.csv' WITH (FORMAT csv, HEADER true)
\copy spam_test FROM '$work/data/test.csv' WITH (FORMAT csv, HEADER true)
SQL
train=$("${psql[@]}" -c "SELECT json_build_object('steps', steps, 'seconds', round(seconds::numeric, 1))
  FROM ptune.train_prompt('big', 'spam_train', 'text', 'label', prompt_length => 20, init => 'class_labels',
       optimizer => 'adafactor', learning_rate => 0.3, batch_size => 8, epochs => 0, max_steps => 2,
       validation_fraction => 0.2, max_input_tokens => 128)")
t=$(date +%s.%N)
"${psql[@]}" -c "SELECT ptune.classify('big', text) FROM spam_test" >/dev/null
one_row_s=$(echo "$(date +%s.%N) - $t" | bc)
t=$(date +%s.%N)
"${psql[@]}" -c "SELECT ptune.classify('big', array_agg(text)) FROM spam_test" >/dev/null
batch8_s=$(echo "$(date +%s.%N) - $t" | bc)
pid=$("${psql[@]}" -c "SELECT worker_pid FROM ptune.status()")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
ok=1
printf '{"model": "%s", "load_s": %.1f, "train": %s, "rows_per_s_batch1": %.2f, "rows_per_s_batch8": %.2f, "worker_peak_rss_mb": %d}\n' \
  "$name" "$load_s" "$train" "$(echo "8 / $one_row_s" | bc -l)" "$(echo "8 / $batch8_s" | bc -l)" $((hwm_kb / 1024))
