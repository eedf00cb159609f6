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
# tests"); longer runs: scripts/fuzz.sh 600. The fuzz build lives outside the clone so a warm
# machine rebuilds only the workspace's crates (a cold one: docs/benchmarks.md, "Fuzzing");
# KTSTR_CI_FUZZ_SECONDS=0 skips the step.
fuzz_secs=${KTSTR_CI_FUZZ_SECONDS:-10}
if [ "$fuzz_secs" -gt 0 ]; then
    KTSTR_FUZZ_TARGET_DIR=${KTSTR_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktstr-ci/fuzz-target} \
        bash scripts/fuzz.sh "$fuzz_secs"
fi
