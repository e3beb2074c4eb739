#!/usr/bin/env bash
# Installs every Debian package ptune needs to build, test and benchmark.
# Idempotent: packages already present are skipped quickly by apt.
# Usage: scripts/install_deps.sh [--demo | --bench]
#   --demo adds npm (the demo fetches its sample data from the npm registry)
#   --bench adds what the benchmarks need
set -euo pipefail

packages=(
  # build
  build-essential pkg-config clang
  # engine libraries: BLAS (OpenMP flavour, shares one thread pool with oneDNN),
  # oneDNN for bf16 matmuls, sentencepiece tokenizer, JSON, hashing, CRC
  libopenblas-openmp-dev libdnnl-dev libsentencepiece-dev sentencepiece
  libjansson-dev libxxhash-dev zlib1g-dev
  # PostgreSQL 15 server and headers for PGXS
  postgresql-15 postgresql-server-dev-15 postgresql-contrib
  # tests: reference implementation, memory checkers, fuzzers
  python3 python3-torch python3-numpy valgrind afl++ libclang-rt-14-dev
  # tests: a client pool in front of the server (transaction pooling)
  pgbouncer
  # scripts
  curl ca-certificates jq procps bc
)
if [[ "${1:-}" == "--demo" || "${1:-}" == "--bench" ]]; then
  command -v npm >/dev/null || packages+=(nodejs npm)
fi
if [[ "${1:-}" == "--bench" ]]; then
  # python3-onnx: bench/ort/quantize_onnx.py makes the int8 graph for ONNX Runtime
  packages+=(hyperfine bc python3-onnx)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install_deps: all packages present"
