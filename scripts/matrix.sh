#!/usr/bin/env bash
# The main job: set-up, build ktstr, run the default matrix (or pass your own arguments through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p ktstr
exec ./target/release/ktstr matrix "$@"
