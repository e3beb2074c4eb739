#!/usr/bin/env bash
# check_symbols.sh - the model worker's library must not call a function that
# PostgreSQL's own executable also defines under the same name.
#
# ptune_worker.so is loaded into the postgres process, whose symbols come
# first when the dynamic linker binds: a call meant for a library the engine
# links binds to PostgreSQL's function of that name instead.  jansson's
# json_object() and PostgreSQL's SQL function json_object() are such a pair:
# the worker crashed at start-up (SIGSEGV in pg_detoast_datum), taking the
# cluster down, while every engine test passed.  This finds any such name.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=${1:-ptune_worker.so}
postgres="$(pg_config --bindir)/postgres"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

names() { sed 's/@.*//' | sort -u; }
nm -D --undefined-only "$lib" | awk '{print $2}' | names > "$tmp/needed"
# functions only (T, W, i): data such as libc's stderr is meant to bind to the executable's copy
functions() { awk '$2 ~ /^[TWi]$/ {print $3}'; }
nm -D --defined-only "$postgres" | functions | names > "$tmp/postgres"
: > "$tmp/libraries"
for dep in $(ldd "$lib" | awk '$3 ~ /^\// {print $3}'); do
  nm -D --defined-only "$dep" | functions >> "$tmp/libraries"
done
names < "$tmp/libraries" > "$tmp/libraries.sorted"
clash=$(comm -12 "$tmp/needed" "$tmp/postgres" | comm -12 - "$tmp/libraries.sorted")
if [[ -n $clash ]]; then
  echo "check_symbols: $lib calls functions that postgres also defines (they would bind to PostgreSQL's):"
  echo "$clash" | sed 's/^/  /'
  exit 1
fi
echo "check_symbols: no function of $lib's libraries is shadowed by postgres ($(wc -l < "$tmp/needed") names checked)"
