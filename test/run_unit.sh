#!/usr/bin/env bash
# Runs the engine's C unit tests: makes the tiny test checkpoints they need
# (once, cached in $BUILD/models), then runs $BUILD/test_engine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SHARED=${PTUNE_SHARED:-$(cd .. && pwd)/shared}
bash test/make_test_models.sh "$BUILD/models"
PTUNE_TEST_MODELS="$PWD/$BUILD/models" PTUNE_SHARED="$SHARED" "$BUILD/test_engine" "$@"
