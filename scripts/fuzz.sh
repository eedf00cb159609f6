#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time, starting from its
# checked-in seed corpus (fuzz/corpus/TARGET). Exits non-zero on the first crash, printing the
# input that reproduces it.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      default: 60 s each, every target
#
# Environment:
#   KTSTR_FUZZ_SANITIZER   address (default) or none; the stable toolchain ships the ASan runtime
#   KTSTR_FUZZ_PROFILE     release (default) or dev: dev builds much faster, runs slower
#   KTSTR_FUZZ_TARGET_DIR  where to build (default: $CARGO_TARGET_DIR, else fuzz/target); the
#                          fuzz build goes to its own <triple>/ subdirectory, apart from the
#                          workspace's debug/ and release/
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
sanitizer=${KTSTR_FUZZ_SANITIZER:-address}
profile_flag=--release
[ "${KTSTR_FUZZ_PROFILE:-release}" = dev ] && profile_flag=--dev
target_dir=${KTSTR_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/fuzz/target}}
mkdir -p "$target_dir"

# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, ...); the stable
# compiler accepts them under RUSTC_BOOTSTRAP=1, and this machine has no nightly toolchain.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version > /dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# The fuzz targets never boot a VM: skip building the static guest agent ktstr embeds.
if [ -z "${KTSTR_GUEST_PREBUILT:-}" ]; then
    empty_guest="$target_dir/fuzz-empty-guest"
    : > "$empty_guest"
    export KTSTR_GUEST_PREBUILT="$empty_guest"
fi

fuzz=(cargo fuzz)
common=(--fuzz-dir fuzz --target-dir "$target_dir" -s "$sanitizer" "$profile_flag")
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

start=$SECONDS
"${fuzz[@]}" build "${common[@]}"
echo "fuzz: build took $((SECONDS - start)) s"

for t in "${targets[@]}"; do
    seeds="fuzz/corpus/$t"
    # New inputs go to a scratch corpus, never into the checked-in seeds.
    work="$target_dir/fuzz-corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    marker="$target_dir/fuzz-$t.started"
    : > "$marker"
    echo "fuzz: $t for $secs s (seeds: $seeds)"
    if ! "${fuzz[@]}" run "${common[@]}" "$t" "$work" "$seeds" -- \
        -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2> "$target_dir/fuzz-$t.log"; then
        tail -n 40 "$target_dir/fuzz-$t.log" >&2
        echo "fuzz: $t CRASHED (log: $target_dir/fuzz-$t.log); reproduce with:" >&2
        find "$artifacts" -type f -newer "$marker" | while read -r a; do
            echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run ${common[*]} $t $a" >&2
        done
        exit 1
    fi
    grep -E "stat::number_of_executed_units|^Done" "$target_dir/fuzz-$t.log" | sed "s/^/fuzz: $t: /" || true
done
echo "fuzz: all ${#targets[@]} targets ran $secs s each without a crash ($((SECONDS - start)) s in all)"
