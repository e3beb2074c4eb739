#!/usr/bin/env bash
# ptune beyond one server (README, "Scaling out"): a coordinator and 2-3 shard
# clusters on this machine, each with its own ptune worker and the same model.
#
#   1. the spam table is sharded: a table partitioned by hash(id) on the
#      coordinator whose partitions are postgres_fdw foreign tables on the shards;
#   2. a prompt is trained on the coordinator and reaches the shards: by
#      ptune.export_task()/ptune.import_task() (shard 1, shard 3) and by logical
#      replication of ptune's tables (shard 2);
#   3. EXPLAIN VERBOSE shows that postgres_fdw does not ship ptune.classify()
#      (a STABLE function) and that a view on each shard does: the shards
#      classify their own rows, concurrently (Async Foreign Scan);
#   4. each worker's rows_classified shows where the work happened (the
#      coordinator's stays 0), and the labels equal single-server ones.
#
#   scripts/scale_out_demo.sh          spam-256 (generated) or PTUNE_MODEL_DIR, all 882 dev rows
#   scripts/scale_out_demo.sh --tiny   the test models, 120 rows: the CI test (scripts/test.sh scaleout)
#
# Needs `make install` first.  As root the clusters run as user postgres.  Ports
# PTUNE_SCALE_PORT (default 54360) and the next ones; PTUNE_SHARDS (2 or 3,
# default 2); PTUNE_SHARED (default ../shared) holds data/spam.  The clusters
# are stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BUILD=${BUILD:-build}
mode=full
[[ ${1:-} == --tiny ]] && mode=tiny
shards=${PTUNE_SHARDS:-2}
((shards >= 2 && shards <= 3)) || { echo "PTUNE_SHARDS must be 2 or 3"; exit 2; }
base_port=${PTUNE_SCALE_PORT:-54360}
shared=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
dir="$root/$BUILD/scaleout"
pgbin=$(pg_config --bindir)
data="$shared/data/spam"
[[ -f $data/train.csv && -f $data/dev.csv ]] || { echo "no spam data in $data (set PTUNE_SHARED)"; exit 1; }

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; exit 1; }
now() { date +%s.%N; }

# ---- the model -----------------------------------------------------------------
if [[ $mode == tiny ]]; then
  bash test/make_test_models.sh "$root/$BUILD/models" >/dev/null
  model="$root/$BUILD/models/tiny-gated"
  rows=120
  settings="prompt_length => 4, init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1,
            batch_size => 16, epochs => 0, max_steps => 5, max_input_tokens => 16"
elif [[ -n ${PTUNE_MODEL_DIR:-} ]]; then
  model=$(cd "$PTUNE_MODEL_DIR" && pwd)
  rows=100000
  settings="prompt_length => 20, batch_size => 8, epochs => 1, max_input_tokens => 128"
else
  model="$root/$BUILD/scaleout-model"
  rows=100000
  if [[ ! -f $model/model.safetensors ]]; then
    cut -d, -f2- "$data/train.csv" > "$dir.train_text.txt"
    ptune_py/gen_checkpoint.py "$model" --preset spam-256 --seed 0 \
      --train-spiece "$dir.train_text.txt" --spiece-vocab 8000 >/dev/null
    rm -f "$dir.train_text.txt"
  fi
  settings="prompt_length => 50, init => 'random_uniform', optimizer => 'adam', learning_rate => 0.05,
            batch_size => 16, epochs => 0, max_steps => 100, max_input_tokens => 64"
fi

# ---- the clusters --------------------------------------------------------------
run=()
[[ $(id -u) -eq 0 ]] && run=(runuser -u postgres --)
names=(coord)
for ((i = 1; i <= shards; i++)); do names+=("shard$i"); done
port_of() { local i; for i in "${!names[@]}"; do [[ ${names[$i]} == "$1" ]] && echo $((base_port + i)); done; }

stop_all() {
  for n in "${names[@]}"; do
    [[ -f $dir/$n/postmaster.pid ]] && "${run[@]}" "$pgbin/pg_ctl" -D "$dir/$n" -m immediate stop >/dev/null 2>&1
  done
  return 0
}
trap stop_all EXIT
stop_all
rm -rf "$dir"
mkdir -p "$dir"
[[ $(id -u) -eq 0 ]] && chown postgres "$dir"

step "Starting ${names[*]} (ports $base_port-$((base_port + shards))), model $(basename "$model")"
for n in "${names[@]}"; do
  "${run[@]}" "$pgbin/initdb" -D "$dir/$n" -A trust >/dev/null
  cat >> "$dir/$n/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$model'
ptune.threads = 1
port = $(port_of "$n")
unix_socket_directories = '$dir'
listen_addresses = ''
wal_level = logical
wal_retrieve_retry_interval = '200ms'
max_worker_processes = 16
CONF
  "${run[@]}" "$pgbin/pg_ctl" -D "$dir/$n" -l "$dir/$n.log" -w start >/dev/null
done
# psql on one server: sql NAME [psql args]
sql() { local n=$1; shift; "${run[@]}" "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$(port_of "$n")" -d postgres "$@"; }
# a table for people: show NAME [psql args]
show() { local n=$1; shift; "${run[@]}" "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$(port_of "$n")" -d postgres "$@"; }
for n in "${names[@]}"; do
  for _ in $(seq 100); do [[ $(sql "$n" -c "CREATE EXTENSION IF NOT EXISTS ptune; SELECT worker_state FROM ptune.status()") == ready ]] && break; sleep 0.1; done
  [[ $(sql "$n" -c "SELECT worker_state FROM ptune.status()") == ready ]] || fail "the worker of $n is not ready"
done

step "Sharding the spam table: hash(id) partitions on ${names[*]:1}"
sql coord <<SQL
CREATE TABLE spam_train (id text PRIMARY KEY, text text, label text, "group" text);
CREATE TABLE spam_dev (LIKE spam_train);
\copy spam_train FROM '$data/train.csv' WITH (FORMAT csv, HEADER true)
\copy spam_dev FROM '$data/dev.csv' WITH (FORMAT csv, HEADER true)
DELETE FROM spam_dev WHERE id NOT IN (SELECT id FROM spam_dev ORDER BY md5(id) LIMIT $rows);
CREATE EXTENSION postgres_fdw;
-- the data: foreign partitions over each shard's table
CREATE TABLE spam (id text NOT NULL, text text, label text) PARTITION BY HASH (id);
-- the labels: foreign partitions over each shard's view, which classifies there
CREATE TABLE spam_classified (id text NOT NULL, label text, predicted text) PARTITION BY HASH (id);
SQL
for ((i = 1; i <= shards; i++)); do
  sql "shard$i" <<'SQL'
CREATE TABLE spam (id text PRIMARY KEY, text text, label text);
-- The documented pattern: the shard computes the label.  postgres_fdw ships
-- only IMMUTABLE functions, so a query on the coordinator cannot carry
-- ptune.classify() to the shard; selecting `predicted` from this view does.
CREATE VIEW spam_classified AS
    SELECT id, label, ptune.classify('spam', text) AS predicted FROM spam;
SQL
  sql coord <<SQL
CREATE SERVER shard$i FOREIGN DATA WRAPPER postgres_fdw
    OPTIONS (host '$dir', port '$(port_of "shard$i")', dbname 'postgres',
             extensions 'ptune', async_capable 'true', fetch_size '200');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard$i;
CREATE FOREIGN TABLE spam_p$i PARTITION OF spam FOR VALUES WITH (MODULUS $shards, REMAINDER $((i - 1)))
    SERVER shard$i OPTIONS (table_name 'spam');
CREATE FOREIGN TABLE spam_classified_p$i PARTITION OF spam_classified
    FOR VALUES WITH (MODULUS $shards, REMAINDER $((i - 1)))
    SERVER shard$i OPTIONS (table_name 'spam_classified');
SQL
done
sql coord -c "INSERT INTO spam SELECT id, text, label FROM spam_dev"
show coord -c "SELECT tableoid::regclass AS partition, count(*) AS rows FROM spam GROUP BY 1 ORDER BY 1"

step "Training on the coordinator"
# shard 2 follows ptune's tables by logical replication (set up before training)
sql coord -c "CREATE PUBLICATION ptune_tasks FOR TABLE ptune.task_owners, ptune.prompts"
sql shard2 -c "CREATE SUBSCRIPTION ptune_tasks CONNECTION 'host=$dir port=$base_port dbname=postgres'
               PUBLICATION ptune_tasks"
if [[ $mode == tiny ]]; then
  sql coord -c "CREATE TABLE spam_train_small AS SELECT * FROM spam_train ORDER BY md5(id) LIMIT 200"
  train_rel=spam_train_small
else
  train_rel=spam_train
fi
show coord -c "SET client_min_messages = warning" \
  -c "SELECT task, version, labels, train_rows, steps, round(seconds::numeric, 1) AS seconds
      FROM ptune.train_prompt('spam', '$train_rel', 'text', 'label', $settings)"

imported=shard1; [[ $shards == 3 ]] && imported="shard1 and shard3"
step "Distributing the prompt: export/import to $imported, logical replication to shard2"
sql coord -c "COPY (SELECT ptune.export_task('spam')) TO STDOUT" > "$dir/spam.export"
echo "export: $(($(wc -c < "$dir/spam.export") / 2)) bytes"
for ((i = 1; i <= shards; i++)); do
  [[ $i == 2 ]] && continue
  sql "shard$i" -c "CREATE TEMP TABLE incoming (data bytea)" -c "\\copy incoming FROM '$dir/spam.export'" \
    -c "SELECT 'shard$i imported: ' || task || ' version ' || version || ', labels ' || labels::text
        FROM incoming, ptune.import_task(data)"
done
for _ in $(seq 300); do
  [[ $(sql shard2 -c "SELECT count(*) FROM ptune.tasks WHERE task = 'spam' AND active_version IS NOT NULL") == 1 ]] && break
  sleep 0.1
done
[[ $(sql shard2 -c "SELECT owner FROM ptune.tasks WHERE task = 'spam'") == postgres ]] ||
  fail "the replicated task did not reach shard2"
echo "shard2 replicated: version $(sql shard2 -c "SELECT active_version FROM ptune.tasks WHERE task = 'spam'")"
# every shard now holds the same prompt bytes
ref=$(sql coord -c "SELECT md5(prompt) FROM ptune.prompts WHERE task = 'spam' AND is_active ORDER BY member")
for ((i = 1; i <= shards; i++)); do
  [[ $(sql "shard$i" -c "SELECT md5(prompt) FROM ptune.prompts WHERE task = 'spam' AND is_active ORDER BY member") == "$ref" ]] ||
    fail "shard$i holds other prompt bytes than the coordinator"
done

step "Replication and roles: owners travel by name, so the role must exist on the shard"
# Logical replication sends regrole columns as text (the role's name) and the
# shard reads the name back into its own OID.  A task of a role the shard does
# not have stops the apply worker (it retries) until the role is created.
sql coord -c "CREATE ROLE mailer" -c "GRANT SELECT ON spam_train TO mailer" -c "SET ROLE mailer" \
  -c "SET client_min_messages = warning" \
  -c "SELECT task FROM ptune.train_prompt('mailer_task', 'spam_train', 'text', 'label', prompt_length => 1,
        init => 'random_uniform', optimizer => 'adam', epochs => 0, max_steps => 1, max_input_tokens => 8,
        validation_fraction => 0)" >/dev/null
for _ in $(seq 100); do grep -q 'role "mailer" does not exist' "$dir/shard2.log" && break; sleep 0.1; done
grep -q 'role "mailer" does not exist' "$dir/shard2.log" || fail "expected shard2's apply worker to stop at the unknown role"
echo "shard2 without the role: $(grep -m1 -o 'ERROR: .*role "mailer" does not exist.*' "$dir/shard2.log")"
sql shard2 -c "CREATE ROLE mailer"
for _ in $(seq 300); do
  [[ $(sql shard2 -c "SELECT owner FROM ptune.tasks WHERE task = 'mailer_task'") == mailer ]] && break
  sleep 0.1
done
[[ $(sql shard2 -c "SELECT owner FROM ptune.tasks WHERE task = 'mailer_task'") == mailer ]] ||
  fail "the task did not arrive once the role existed"
echo "shard2 with the role: mailer_task arrived, owned by mailer (OID $(sql shard2 -c "SELECT 'mailer'::regrole::oid")" \
     "here, $(sql coord -c "SELECT 'mailer'::regrole::oid") on the coordinator)"

step "What postgres_fdw ships: classify() over the data partitions runs on the coordinator"
plan=$(sql coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id, ptune.classify('spam', text) FROM spam")
echo "$plan"
grep 'Remote SQL' <<< "$plan" | grep -q classify && fail "postgres_fdw shipped classify(): the design below is not needed any more"
grep -q '^ *Output: .*ptune.classify' <<< "$plan" || fail "expected classify() in the coordinator's plan"

step "The shards' views: each shard classifies its rows, concurrently"
plan=$(sql coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id, predicted FROM spam_classified")
echo "$plan"
[[ $(grep -c 'Async Foreign Scan' <<< "$plan") == "$shards" ]] || fail "expected $shards Async Foreign Scans"
[[ $(grep 'Remote SQL' <<< "$plan" | grep -c 'SELECT id, predicted FROM public.spam_classified') == "$shards" ]] ||
  fail "expected every shard to compute predicted"

counter() { sql "$1" -c "SELECT rows_classified FROM ptune.status()"; }
declare -A before after
for n in "${names[@]}"; do before[$n]=$(counter "$n"); done
t0=$(now)
sql coord -c "CREATE TABLE sharded_labels AS SELECT id, predicted FROM spam_classified"
t_sharded=$(echo "$(now) - $t0" | bc)
for n in "${names[@]}"; do after[$n]=$(counter "$n"); done
total=$(sql coord -c "SELECT count(*) FROM sharded_labels")
printf '%-8s %10s %16s\n' server rows rows_classified
for n in "${names[@]}"; do
  held=0
  [[ $n != coord ]] && held=$(sql "$n" -c "SELECT count(*) FROM spam")
  printf '%-8s %10s %16s\n' "$n" "$held" "$((after[$n] - before[$n]))"
  [[ $((after[$n] - before[$n])) == "$held" ]] || fail "$n classified $((after[$n] - before[$n])) rows, holds $held"
done
printf 'through the coordinator: %d rows in %.2f s = %.1f rows/s\n' "$total" "$t_sharded" "$(echo "$total / $t_sharded" | bc -l)"

step "Conditions travel to the shards; a query without the label classifies nothing"
plan=$(sql coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM spam_classified WHERE predicted = 'spam'")
grep 'Remote SQL' <<< "$plan"
[[ $(grep -c "Remote SQL: SELECT id FROM public.spam_classified WHERE ((predicted = 'spam'))" <<< "$plan") == "$shards" ]] ||
  fail "expected the condition on predicted to run on the shards"
for n in "${names[@]}"; do before[$n]=$(counter "$n"); done
echo "rows: $(sql coord -c "SELECT count(*) FROM spam_classified WHERE label = 'spam'") spam rows counted"
for n in "${names[@]}"; do
  [[ $(counter "$n") == "${before[$n]}" ]] || fail "$n classified rows for a query that does not select the label"
done
echo "rows_classified unchanged on every server"

step "The same rows on one server (the coordinator): the labels must be equal"
t0=$(now)
sql coord -c "CREATE TABLE single_labels AS SELECT id, ptune.classify('spam', text) AS predicted FROM spam_dev"
t_single=$(echo "$(now) - $t0" | bc)
printf 'one server: %d rows in %.2f s = %.1f rows/s\n' "$total" "$t_single" "$(echo "$total / $t_single" | bc -l)"
show coord -c "SELECT count(*) AS rows, count(*) FILTER (WHERE s.predicted = l.predicted) AS same_label,
                      count(*) FILTER (WHERE l.predicted = d.label) AS correct
               FROM spam_dev d JOIN single_labels l USING (id) LEFT JOIN sharded_labels s USING (id)"
[[ $(sql coord -c "SELECT count(*) FROM spam_dev d JOIN single_labels l USING (id)
                   LEFT JOIN sharded_labels s USING (id) WHERE s.predicted IS DISTINCT FROM l.predicted") == 0 ]] ||
  fail "sharded labels differ from single-server ones"
[[ $total == $(sql coord -c "SELECT count(*) FROM spam_dev") ]] || fail "rows went missing"

if [[ $mode == full ]]; then
  step "Throughput of each shard alone (its own rows, directly on the shard)"
  for ((i = 1; i <= shards; i++)); do
    n=$(sql "shard$i" -c "SELECT count(*) FROM spam")
    t0=$(now)
    sql "shard$i" -c "SELECT count(predicted) FROM spam_classified" >/dev/null
    t=$(echo "$(now) - $t0" | bc)
    printf 'shard%d: %d rows in %.2f s = %.1f rows/s\n' "$i" "$n" "$t" "$(echo "$n / $t" | bc -l)"
  done
fi
step "scale-out demo passed"
