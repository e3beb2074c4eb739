#!/usr/bin/env bash
# The reliability suite: load, faults under load, bad input, memory.  Starts
# its own cluster (as postgres when root; needs `make install`) and writes
# the figures to build/reliability/report.md (RELIABILITY.md holds a full run).
#   test/reliability/run.sh            full: 60 s load, 20,000 requests, 60 s fuzzing per target
#   test/reliability/run.sh --quick    CI: the same checks, short
#   test/reliability/run.sh --worker-load   only section 5 (the worker under load), full size
#   test/reliability/run.sh --worker-latency   section 5 without the big table (--big-table: only that),
#                                           to keep each run short
set -uo pipefail
cd "$(dirname "$0")/../.."
quick=${1:-}
sections=1-5
root=$PWD
base="$root/build/reliability"
models="$root/build/models"
export PGPORT=${PGPORT:-54350}
export PGSOCK="$base"
RUN=()
[[ $(id -u) -eq 0 ]] && RUN=(runuser -u postgres --)
source test/pg/lib.sh
if [[ $quick == --quick ]]; then
  LOAD_SECONDS=10 REQUESTS=2000 FUZZ=10 BAD_CALLS=300 model="$models/tiny-gated"
  WORKER_SECONDS=5 BIG_ROWS=20000 HUGE_ROWS=50000
else
  case $quick in --worker-load) sections=5 ;; --worker-latency) sections=5a ;; --big-table) sections=5b ;; esac
  LOAD_SECONDS=60 REQUESTS=20000 FUZZ=60 BAD_CALLS=2000
  WORKER_SECONDS=${WORKER_SECONDS:-30} BIG_ROWS=${BIG_ROWS:-200000} HUGE_ROWS=${HUGE_ROWS:-1000000}
  model=${RELIABILITY_MODEL:-"$root/build/bench/flan-t5-small"}
  [[ -f $model/model.safetensors ]] || ptune_py/gen_checkpoint.py "$model" --preset flan-t5-small --seed 0 >/dev/null
fi
bash test/make_test_models.sh "$models" >/dev/null

rm -rf "$base"; mkdir -p "$base/work"
WORK="$base/work"
report="$base/report.md"
[[ $(id -u) -eq 0 ]] && chown -R postgres "$base"
r() { echo "$*" >> "$report"; }
: > "$report"

start_cluster() {   # model path
  "${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -m fast stop >/dev/null 2>&1
  sed -i "s|^ptune.model_path = .*|ptune.model_path = '$1'|" "$base/data/postgresql.conf"
  "${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -l "$base/server.log" -w start >/dev/null
}
"${RUN[@]}" "$PGBIN/initdb" -D "$base/data" -A trust >/dev/null
cat >> "$base/data/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$model'
ptune.precision = 'bf16'
port = $PGPORT
unix_socket_directories = '$base'
listen_addresses = ''
max_connections = 60
restart_after_crash = on
CONF
# on any exit: stop the load loops and the cluster
trap 'touch "$WORK/stop"; kill $(jobs -p) 2>/dev/null; "${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -m immediate stop >/dev/null 2>&1' EXIT
start_cluster "$model"
wait_ready 60 >/dev/null
q -d postgres -c "CREATE DATABASE ptune_test"
q -c "CREATE EXTENSION ptune"
q -f test/pg/toy.sql >/dev/null
q >/dev/null <<'SQL'
CREATE TABLE small_eval AS SELECT * FROM toy WHERE id <= 40;
SET client_min_messages = warning;
SELECT * FROM ptune.train_prompt('toy', 'toy', 'text', 'label', prompt_length => 20, init => 'random_uniform',
    optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0, max_steps => 50, max_input_tokens => 32);
SQL
prompts_md5() { q -c "SELECT md5(string_agg(prompt::text || is_active, ',' ORDER BY task, version, member)) FROM ptune.prompts"; }

r "# Reliability figures"
r ""
r "Measured by \`test/reliability/run.sh ${quick}\` on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs),"
r "$(nproc) cores, model \`$(basename "$model")\` ($(du -sh "$model/model.safetensors" | cut -f1)), ptune.precision bf16."

if [[ $sections == 1-5 ]]; then
# ---- 1. load -----------------------------------------------------------------
echo "== load"
cat > "$WORK/classify.sql" <<'PGB'
\set id random(1, 160)
SELECT ptune.classify('toy', text) FROM toy WHERE id = :id;
PGB
cat > "$WORK/array.sql" <<'PGB'
\set id random(1, 150)
SELECT ptune.classify('toy', array_agg(text)) FROM toy WHERE id BETWEEN :id AND :id + 9;
PGB
cat > "$WORK/scores.sql" <<'PGB'
\set id random(1, 160)
SELECT s.* FROM toy t, ptune.classify_scores('toy', t.text) s WHERE t.id = :id;
PGB
cat > "$WORK/evaluate.sql" <<'PGB'
SELECT rows, accuracy FROM ptune.evaluate('toy', 'small_eval', 'text', 'label');
PGB
chmod 644 "$WORK"/*.sql
q -c "$LONG_TRAINING" > "$WORK/load_training.out" 2>&1 &
trainer=$!
wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 60
(cd "$WORK" && "${RUN[@]}" "$PGBIN/pgbench" -n -h "$base" -p "$PGPORT" -c 8 -j 2 -T "$LOAD_SECONDS" \
  -f classify.sql@5 -f array.sql@2 -f scores.sql@2 -f evaluate.sql@1 -l --log-prefix="$WORK/load" ptune_test \
  > "$WORK/pgbench.out" 2>&1)
load_rc=$?
training_steps=$(q -c "SELECT step FROM ptune.training_progress")
q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null; wait "$trainer" 2>/dev/null
/usr/bin/python3 - "$WORK" "$load_rc" "$training_steps" "$LOAD_SECONDS" >> "$report" <<'PY'
import glob, re, sys
work, rc, steps, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
names = {0: "classify", 1: "classify array (10 rows)", 2: "classify_scores", 3: "evaluate (40 rows)"}
lat = {k: [] for k in names}
for f in glob.glob(f"{work}/load.*"):
    for line in open(f):
        p = line.split()
        lat[int(p[3])].append(int(p[2]) / 1000)
text = open(f"{work}/pgbench.out").read()
failed = re.search(r"number of failed transactions: (\d+)", text)
tps = re.search(r"tps = ([\d.]+)", text)
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")
print("\n## 1. Load\n")
print(f"8 sessions (pgbench, {seconds} s) mixing four scripts while a prompt trains in another session "
      f"(it advanced to step {steps} meanwhile). pgbench exit status {rc} (0: no client aborted on an error); "
      f"failed transactions: {failed.group(1) if failed else 'n/a'}; {tps.group(1) if tps else 'n/a'} transactions/s.\n")
print("| script (weight) | transactions | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|")
for k, n in names.items():
    w = [5, 2, 2, 1][k]
    print(f"| {n} ({w}) | {len(lat[k])} | {pct(lat[k], .5):.1f} | {pct(lat[k], .95):.1f} | {pct(lat[k], .99):.1f} |")
PY
check $load_rc "load: pgbench finished without errors"

# ---- 2. faults under load -------------------------------------------------------
echo "== faults"
background_load() {   # a session per loop, each calling classify until $WORK/stop exists
  rm -f "$WORK/stop" "$WORK"/load_*.log
  for s in 1 2 3 4; do
    ( while [[ ! -f $WORK/stop ]]; do
        out=$(q_any -c "SELECT ptune.classify('toy', text) FROM toy WHERE id = $((RANDOM % 160 + 1))")
        if [[ $out == this || $out == that ]]; then echo "$(now) ok"
        else echo "$(now) err $(echo "$out" | grep -m1 -E 'ERROR|FATAL|error' || echo "$out" | head -1)"; fi
      done > "$WORK/load_$s.log" ) &
  done
  sleep 2
}
stop_load() { touch "$WORK/stop"; wait; }
# errors after the fault; seconds from the fault to the first success after the last error (or after the
# fault, when no call failed)
summarize() {   # fault_time
  cat "$WORK"/load_*.log | sort -n | /usr/bin/python3 -c "
import sys
t0 = float(sys.argv[1])
lines = [l.split(' ', 2) + [''] for l in sys.stdin.read().splitlines() if l.count(' ') >= 1]
errs = [l for l in lines if l[1] == 'err' and float(l[0]) >= t0]
last = max([float(l[0]) for l in errs], default=t0)
ok = [float(l[0]) for l in lines if l[1] == 'ok' and float(l[0]) > last]
msgs = sorted(set(l[2][:90].replace('|', '/') for l in errs))
print(f'{len(errs)} | {(min(ok) - t0 if ok else float(\"nan\")):.2f} | ' + '; '.join(msgs[:3]))
" "$1" 2>&1 | tr '\n' ' '
}
r ""
r "## 2. Faults"
r ""
r "Under load (4 sessions classifying in a loop), unless noted. *Errors*: failed calls after the fault;"
r "*recovery*: seconds from the fault to the first successful call after the last error."
r ""
r "| fault | errors | recovery s | what callers saw | committed prompts |"
r "|---|---|---|---|---|"

before=$(prompts_md5)
background_load; t=$(now); kill -TERM "$(worker_pid)"; sleep 6; stop_load
r "| SIGTERM to the worker | $(summarize "$t") | $([[ $(prompts_md5) == "$before" ]] && echo intact || echo CHANGED) |"

background_load
q -c "INSERT INTO ptune.prompts SELECT task, 99, member, false, model_name, model_fingerprint, prompt_length, d_model, labels, prompt, hyperparameters, metrics, now(), created_by FROM ptune.prompts WHERE task = 'toy' AND version = 1"
before=$(prompts_md5)
t=$(now); kill -KILL "$(worker_pid)"
until q -c "SELECT 1" >/dev/null 2>&1; do sleep 0.05; done
wait_ready 60 >/dev/null; sleep 3; stop_load
r "| \`kill -9\` of the worker (crash recovery restarts every session) | $(summarize "$t") | $([[ $(prompts_md5) == "$before" ]] && echo "intact, including one committed just before" || echo LOST) |"

# model missing, then corrupted, at start-up; fixed by a configuration reload
mkdir -p "$WORK/broken"; cp "$model"/* "$WORK/broken/"
truncate -s 1000 "$WORK/broken/model.safetensors"
[[ $(id -u) -eq 0 ]] && chown -R postgres "$WORK/broken"
for case in missing corrupted; do
  bad=/nonexistent/model; [[ $case == corrupted ]] && bad="$WORK/broken"
  start_cluster "$bad"
  wait_for "SELECT worker_state = 'failed' FROM ptune.status()" 30
  seen=$(q_any -c "SELECT ptune.classify('toy', 'a dog')" | head -2 | tr '\n' ' ' | cut -c1-150)
  t=$(now)
  if [[ $case == missing ]]; then
    sed -i "s|^ptune.model_path = .*|ptune.model_path = '$model'|" "$base/data/postgresql.conf"
  else
    cp "$model/model.safetensors" "$WORK/broken/model.safetensors"
  fi
  q -c "SELECT pg_reload_conf()" >/dev/null
  wait_ready 60 >/dev/null
  ok=$([[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]] && echo "works" || echo FAILS)
  r "| model $case at start-up, then fixed + \`pg_reload_conf()\` (no load) | every call until fixed | $(elapsed "$t" | cut -c1-4) | ${seen//|/\\|} | classify $ok after |"
done
start_cluster "$model"; wait_ready 60 >/dev/null

# cancels and timeouts (no background load: the figure is the caller's wait)
q -c "$LONG_TRAINING" > "$WORK/cancel.out" 2>&1 & trainer=$!
wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 1" 60
t=$(now); q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null; wait $trainer
r "| \`pg_cancel_backend\` on train_prompt | 1 (the cancelled call) | $(elapsed "$t" | cut -c1-4) | $(grep -m1 ERROR "$WORK/cancel.out" | cut -c1-80) | nothing stored: $(q -c "SELECT count(*) FROM ptune.prompts WHERE task = 'long'") rows |"
t=$(now); out=$(q_any -c "SET statement_timeout = '2s'" -c "$LONG_TRAINING")
r "| statement_timeout 2 s on train_prompt | 1 | $(echo "$(elapsed "$t") - 2" | bc | cut -c1-4) after the timeout | $(echo "$out" | grep -m1 ERROR | cut -c1-80) | nothing stored |"
big="SELECT ptune.classify('toy', array_agg(t.text)) FROM toy t, generate_series(1, 40)"
t=$(now); out=$(q_any -c "SET statement_timeout = '300ms'" -c "$big")
r "| statement_timeout 300 ms on classify (6,400 rows) | 1 | $(echo "$(elapsed "$t") - 0.3" | bc | cut -c1-4) after the timeout | $(echo "$out" | grep -m1 ERROR | cut -c1-80) | — |"
q -c "$big" > /dev/null 2>&1 & caller=$!
sleep 0.3; t=$(now)
q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 40)%' AND pid <> pg_backend_pid()" >/dev/null
wait $caller; r "| \`pg_cancel_backend\` on classify (6,400 rows) | 1 | $(elapsed "$t" | cut -c1-4) | canceling statement due to user request | — |"

# generation: 3 sessions generate (frozen model, 4 tokens) in a loop while a long generate is
# timed out and another cancelled; the looping sessions must see no error, and a call after works
echo "== generation"
rm -f "$WORK/stop" "$WORK"/gen_*.log
for s in 1 2 3; do
  ( while [[ ! -f $WORK/stop ]]; do
      out=$(q_any -c "SELECT ptune.generate(NULL, text, 4) IS NOT NULL FROM toy WHERE id = $((RANDOM % 160 + 1))")
      if [[ $out == t ]]; then echo "$(now) ok"
      else echo "$(now) err $(echo "$out" | grep -m1 -E 'ERROR|FATAL|error' || echo "$out" | head -1)"; fi
    done > "$WORK/gen_$s.log" ) &
done
sleep 1
gen_big="SELECT ptune.generate(NULL, array_agg(t.text), 32) FROM toy t, generate_series(1, 8)"
t=$(now); out=$(q_any -c "SET statement_timeout = '300ms'" -c "$gen_big")
gen_timeout=$(echo "$out" | grep -m1 ERROR | cut -c1-80)
r "| statement_timeout 300 ms on generate (1,280 rows, 32 tokens), 3 sessions generating | 1 | $(echo "$(elapsed "$t") - 0.3" | bc | cut -c1-4) after the timeout | $gen_timeout | — |"
q -c "$gen_big" > "$WORK/gen_cancel.out" 2>&1 & caller=$!
sleep 0.5; t=$(now)
q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 8)%' AND pid <> pg_backend_pid()" >/dev/null
wait $caller; gen_cancel_rc=$?
r "| \`pg_cancel_backend\` on generate (1,280 rows), 3 sessions generating | 1 | $(elapsed "$t" | cut -c1-4) | $(grep -m1 ERROR "$WORK/gen_cancel.out" | cut -c1-80) | — |"
sleep 1; touch "$WORK/stop"; for p in $(jobs -p); do [[ $p == "$trainer" ]] || wait "$p" 2>/dev/null; done
gen_ok=$(cat "$WORK"/gen_*.log | grep -c ' ok$'); gen_err=$(cat "$WORK"/gen_*.log | grep -c ' err')
gen_after=$(q_any -c "SELECT ptune.generate(NULL, 'a dog', 4) IS NOT NULL")
r "| (the 3 generating sessions meanwhile) | $gen_err of $((gen_ok + gen_err)) calls | — | $(cat "$WORK"/gen_*.log | grep -m1 ' err' | cut -d' ' -f3- | cut -c1-80) | generate after: $gen_after |"
[[ $gen_timeout == *"statement timeout"* && $gen_cancel_rc -ne 0 && $gen_err -eq 0 && $gen_ok -gt 0 && $gen_after == t ]]
check $? "generation: a timeout and a cancel stop only their own call ($gen_ok other calls ok, $gen_err failed)"
rm -f "$WORK/stop"
q -c "$LONG_TRAINING" > /dev/null 2>&1 & trainer=$!
wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 1" 60
t=$(now); q -c "SELECT pg_terminate_backend(pid) FROM ptune.training_progress" >/dev/null; wait $trainer
wait_for "SELECT queued + running = 0 FROM ptune.status()" 10
r "| \`pg_terminate_backend\` of a session waiting for the worker | the terminated session | $(elapsed "$t" | cut -c1-4) until its slot is free | the connection ends | — |"

# more callers than request slots
q -c "ALTER SYSTEM SET ptune.request_slots = 4" >/dev/null; start_cluster "$model"; wait_ready 60 >/dev/null
t=$(now); pids=(); for s in $(seq 1 16); do q -c "SELECT count(ptune.classify('toy', text)) FROM toy" > "$WORK/slots_$s" 2>&1 & pids+=($!); done
fails=0; for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
r "| 16 sessions on 4 request slots (160 rows each) | $fails | — ($(elapsed "$t" | cut -c1-4) s in all) | callers wait for a slot, cancellably | — |"
q -c "ALTER SYSTEM RESET ptune.request_slots" >/dev/null; start_cluster "$model"; wait_ready 60 >/dev/null

# ---- 3. bad input ------------------------------------------------------------------
echo "== bad input"
r ""
r "## 3. Bad input"
r ""
r "Coverage-guided fuzzing (libFuzzer, ASan + UBSan), $FUZZ s per target; a crash, a sanitizer report or a"
r "rejected input without an error message fails:"
r ""
bash test/run_fuzz.sh "$FUZZ" 2>&1 | sed 's/^/- /' >> "$report"
r ""
bad=$(/usr/bin/python3 test/reliability/bad_args.py "$BAD_CALLS" 7 "${RUN[@]}" "$PGBIN/psql" -h "$base" -p "$PGPORT" -d ptune_test)
bad_rc=$?
r "Randomized SQL with bad arguments ($BAD_CALLS calls to every function: NULLs, empty and 100 kB strings,"
r "wrong types, unknown tasks and tables, injection attempts, negative and absurd hyper-parameters):"
r ""
r '```json'
r "$bad"
r '```'
r ""
r "A 10 MB text is truncated to the task's token budget and classified (a label came back: $(q -c "SELECT ptune.classify('toy', repeat('dog apple ', 1000000)) IN ('this', 'that')")); see also test/sql/classify.sql."
check $bad_rc "bad arguments: every call a clean error"

# ---- 4. memory -----------------------------------------------------------------
echo "== memory"
rss() { awk '/VmRSS/ {print $2 / 1024}' /proc/"$(worker_pid)"/status; }
r ""
r "## 4. Memory"
r ""
r "The engine's unit tests run clean under valgrind memcheck and under ASan + UBSan (\`scripts/test.sh valgrind asan\`)."
r ""
r "Worker RSS over $REQUESTS classify requests (8 pgbench clients):"
r ""
r "| requests | worker RSS MB |"
r "|---|---|"
r "| 0 | $(rss) |"
per=$((REQUESTS / 4 / 8))
for chunk in 1 2 3 4; do
  (cd "$WORK" && "${RUN[@]}" "$PGBIN/pgbench" -n -h "$base" -p "$PGPORT" -c 8 -j 2 -t "$per" -f classify.sql ptune_test >/dev/null 2>&1)
  r "| $((chunk * per * 8)) | $(rss) |"
done

fi   # sections 1-4

# ---- 5. the worker under load ------------------------------------------------------
echo "== worker under load"
r ""
r "## 5. The worker under load"
r ""
r "Classification has priority: the worker runs at most one slice of training work"
r "(ptune.training_slice_ms, here $(q -c "SHOW ptune.training_slice_ms")) between classification rounds,"
r "and a training pass pauses between layers to serve classification that arrived meanwhile."
r ""
q -c "ALTER SYSTEM SET ptune.max_trainings_per_role = 4" -c "SELECT pg_reload_conf()" >/dev/null
if [[ $sections != 5b ]]; then
cat > "$WORK/classify.sql" <<'PGB'
\set id random(1, 160)
SELECT ptune.classify('toy', text) FROM toy WHERE id = :id;
PGB
chmod 644 "$WORK/classify.sql"
q >/dev/null <<SQL
CREATE TABLE big AS SELECT i AS id, t.text || ' ' || i AS text, t.label
  FROM generate_series(1, $BIG_ROWS) i JOIN toy t ON t.id = 1 + i % 160;
SQL
pauses() { q -c "SELECT training_pauses FROM ptune.status()"; }
one_row() {   # seconds; prints calls, p50, p99, max (ms) of one-row classify calls by one session,
              # and the training passes that paused to serve them
  local p0; p0=$(pauses)
  (cd "$WORK" && "${RUN[@]}" "$PGBIN/pgbench" -n -h "$base" -p "$PGPORT" -c 1 -T "$1" -f classify.sql -l \
    --log-prefix="$WORK/one" ptune_test >/dev/null 2>&1)
  cat "$WORK"/one.* | /usr/bin/python3 -c "
import sys
v = sorted(int(l.split()[2]) / 1000 for l in sys.stdin)
p = lambda q: v[min(len(v) - 1, int(len(v) * q))]
print(f'{len(v)} | {p(.5):.1f} | {p(.99):.1f} | {v[-1]:.1f} | $(( $(pauses) - p0 ))')"
  rm -f "$WORK"/one.*
}
trainings() {   # n: start n trainings (the first on the big table with validation_fraction 0.5)
  for i in $(seq 1 "$1"); do
    local table=toy vf=0.1
    [[ $i == 1 ]] && { table=big; vf=0.5; }
    q -c "SELECT * FROM ptune.train_prompt('load$i', '$table', 'text', 'label', prompt_length => 20,
          init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
          max_steps => 1000000, validation_fraction => $vf, max_input_tokens => 32)" >/dev/null 2>&1 &
  done
  wait_for "SELECT count(*) = $1 FROM ptune.training_progress WHERE step > 0" 600
}
stop_trainings() { q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null; wait; }
r "One session classifying one row per call ($WORKER_SECONDS s each):"
r ""
r "| while | calls | p50 ms | p99 ms | max ms | training pauses that served |"
r "|---|---|---|---|---|---|"
r "| idle | $(one_row "$WORKER_SECONDS") |"
trainings 1
r "| 1 training ($BIG_ROWS rows, validation_fraction 0.5) | $(one_row "$WORKER_SECONDS") |"
stop_trainings
trainings 4
r "| 4 trainings (one of them the above) | $(one_row "$WORKER_SECONDS") |"
stop_trainings

eight() {   # 8 sessions, one-row classify; prints p50 ms, failed transactions
  (cd "$WORK" && "${RUN[@]}" "$PGBIN/pgbench" -n -h "$base" -p "$PGPORT" -c 8 -j 2 -T "$WORKER_SECONDS" \
    -f classify.sql -l --log-prefix="$WORK/eight" ptune_test > "$WORK/eight.out" 2>&1)
  cat "$WORK"/eight.[0-9]* | /usr/bin/python3 -c "
import sys, re
v = sorted(int(l.split()[2]) / 1000 for l in sys.stdin if len(l.split()) > 3)
p = lambda q: v[min(len(v) - 1, int(len(v) * q))]
m = re.search(r'number of failed transactions: (\d+)', open('$WORK/eight.out').read())
print(f'{len(v)} | {p(.5):.1f} | {p(.99):.1f} | {m.group(1) if m else \"n/a\"}')"
  rm -f "$WORK"/eight.*
}
r ""
r "8 sessions (pgbench, one-row classify, $WORKER_SECONDS s), and the training's throughput:"
r ""
r "| while | transactions | p50 ms | p99 ms | failed | training rows/s |"
r "|---|---|---|---|---|---|"
r "| idle | $(eight) | — |"
q -c "SELECT * FROM ptune.train_prompt('alone', 'toy', 'text', 'label', prompt_length => 20,
      init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
      max_steps => 1000000, max_input_tokens => 32)" >/dev/null 2>&1 &
wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 600
sleep "$WORKER_SECONDS"
alone=$(q -c "SELECT round(rows_per_second) FROM ptune.training_progress")
q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null; wait
q -c "SELECT * FROM ptune.train_prompt('loaded', 'toy', 'text', 'label', prompt_length => 20,
      init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
      max_steps => 1000000, max_input_tokens => 32)" >/dev/null 2>&1 &
wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 600
s0=$(q -c "SELECT step FROM ptune.training_progress"); t0=$(now)
line=$(eight)
s1=$(q -c "SELECT step FROM ptune.training_progress"); t1=$(now)
q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null; wait
r "| 1 training | $line | $(echo "scale=1; ($s1 - $s0) * 16 / ($t1 - $t0)" | bc) (alone: $alone) |"
fi   # section 5a

if [[ $sections != 5a ]]; then

# a big table: rows stream to the worker; memory stays bounded
hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' /proc/"$1"/status; }
q -c "CREATE TABLE huge AS SELECT i AS id, t.text || ' ' || i AS text, t.label
      FROM generate_series(1, $HUGE_ROWS) i JOIN toy t ON t.id = 1 + i % 160" >/dev/null
huge_mb=$(q -c "SELECT pg_total_relation_size('huge') / 1048576")
# a fresh worker, so that its peak RSS is this training's (the model included)
kill -TERM "$(worker_pid)"; sleep 1; wait_ready 120 >/dev/null
q -c "SELECT ptune.classify('toy', 'a dog')" >/dev/null
wpid=$(worker_pid); worker_before=$(hwm "$wpid")
t=$(now)
q -c "SELECT steps, train_rows FROM ptune.train_prompt('huge', 'huge', 'text', 'label',
      prompt_length => 20, init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16,
      epochs => 0, max_steps => 20, validation_fraction => 0.001, max_input_tokens => 32)" > "$WORK/huge.out" 2>&1 &
huge=$!
bpid=""; peak_b=0; first=""
while kill -0 $huge 2>/dev/null; do
  [[ -z $bpid ]] && bpid=$(q -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%train_prompt(''huge''%' AND pid <> pg_backend_pid()")
  [[ -z $first && $(q -c "SELECT count(*) FROM ptune.training_progress WHERE task = 'huge' AND step > 0") == 1 ]] && first=$(elapsed "$t")
  [[ -n $bpid && -r /proc/$bpid/status ]] && peak_b=$(hwm "$bpid")
  sleep 0.05
done
wait $huge; huge_rc=$?
r ""
r "A table of $HUGE_ROWS rows ($huge_mb MB), trained with max_steps 20: $(tail -1 "$WORK/huge.out" | tr '|' ' ' | awk '{print $1 " steps on " $2 " training rows"}'),"
r "first step after ${first:0:5} s, in all $(elapsed "$t" | cut -c1-6) s; peak RSS of the backend $peak_b MB,"
r "of the worker $(hwm "$wpid") MB (before: $worker_before MB, the model included)."
check $huge_rc "a table of $HUGE_ROWS rows trains"
fi   # section 5b
q -c "ALTER SYSTEM RESET ptune.max_trainings_per_role" -c "SELECT pg_reload_conf()" >/dev/null

echo
cat "$report"
echo "reliability: $([[ $fail_count -eq 0 ]] && echo passed || echo "$fail_count checks failed")"
[[ $fail_count -eq 0 ]]
