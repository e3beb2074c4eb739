#!/usr/bin/env bash
# Runs the engine's C unit tests: makes the test checkpoints and PyTorch's
# bucket tables they compare against (once, cached in $BUILD/models), then
# runs $BUILD/test_engine.  Arguments select tests by name; UNIT_WRAPPER
# (e.g. "valgrind --error-exitcode=1") runs the binary under a tool.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SHARED=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
models="$PWD/$BUILD/models"
PTUNE_SHARED="$SHARED" bash test/make_test_models.sh "$models"
for cfg in 32:128 16:20 64:256; do
  buckets=${cfg%:*} distance=${cfg#*:}
  table="$models/buckets-$buckets-$distance.json"
  [[ -f "$table" ]] || /usr/bin/python3 ptune_py/t5_reference.py buckets \
      --buckets "$buckets" --max-distance "$distance" --max-len 700 > "$table"
done
# OpenMP threads sleep instead of spinning while they wait (see src/cli/main.c)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
PTUNE_TEST_MODELS="$models" PTUNE_SHARED="$SHARED" PTUNE_BUCKET_TABLES="$models" \
  ${UNIT_WRAPPER:-} "$BUILD/test_engine" "$@"
