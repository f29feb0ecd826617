#!/usr/bin/env bash
# Engine benchmark, side by side in one interleaved run: see bench_engine.py (the same
# measurements, with medians, minimums and ratios per round). Usage: bench_engine.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" tests/bench/bench_engine.py -n "${1:-20}" "${@:2}"
