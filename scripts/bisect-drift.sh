#!/bin/bash
# docs/benchmarks.md, "Release bisection over Debian's 6.12.y": the same release bisection (cached kernels) with a host CPU hog that starts
# 25 s in and lasts to the end. $1 = ktstr binary, $2 = out dir.
set -u
K=$1; OUT=$2; rm -rf "$OUT"
( sleep 25; stress-ng --cpu 2 --timeout 240s >/dev/null 2>&1 ) &
HOG=$!
$K bisect --kernels 6.12.115..6.12.118 --config sched_ext,steal-time --scenario steady \
  --metric total_work_units --threshold 10 --topology 1n1l1c1t --duration 2s --out "$OUT" > "$OUT.log" 2>&1
echo "exit $?" >> "$OUT.log"
pkill -f "stress-ng --cpu 2 --timeout 240s"; wait $HOG 2>/dev/null
grep -E "endpoint|confirm|first bad|no regression|inconclusive|exit" "$OUT.log"
