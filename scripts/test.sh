#!/usr/bin/env bash
# The test command: set-up, format and lint checks, then every test including the end-to-end ones
# that build and boot real kernels (one cold sched_ext kernel build, shared through the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo fmt --all -- --check
# nixpkgs cannot be fetched here, so the flake is not evaluated; its syntax is checked at least.
nix-instantiate --parse flake.nix > /dev/null
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# VM tests are CPU-heavy under TCG; two test threads match this machine's two cores.
cargo test --workspace -- --test-threads=2
# Every fuzz target briefly on its checked-in seed corpus (DEVELOPERS.md, "Fuzzing and property
# tests"); longer runs: scripts/fuzz.sh 600. Off unless KTSTR_CI_FUZZ_SECONDS is set: a cold fuzz
# build costs far more than the CI budget allows (docs/benchmarks.md, "Fuzzing").
if [ "${KTSTR_CI_FUZZ_SECONDS:-0}" -gt 0 ]; then
    bash scripts/fuzz.sh "$KTSTR_CI_FUZZ_SECONDS"
fi
