#!/usr/bin/env bash
# Screenshots of the default matrix's report.html into docs/screenshots/, taken by Debian's
# headless chromium: the top of the page (verdict, summary heatmap), the metrics (box plots) and
# the cells. Usage:
#   scripts/screenshots.sh [RUN_DIR]
# RUN_DIR is a stored `ktstr matrix` output directory; without one, the default matrix is run
# into a temporary directory first (boots VMs: a few minutes under TCG with cached kernels).
# KTSTR names the ktstr binary (default: target/release/ktstr, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

KTSTR="${KTSTR:-target/release/ktstr}"
OUT_DIR=docs/screenshots
WIDTH=1100
HEIGHT=760

command -v chromium >/dev/null || { echo "screenshots: chromium not found; run scripts/setup.sh" >&2; exit 2; }
if [ ! -x "$KTSTR" ]; then
  cargo build --release -p ktstr
fi

run_dir="${1:-}"
if [ -z "$run_dir" ]; then
  run_dir="$(mktemp -d)/default-matrix"
  # Exit status 1 only says a cell failed or regressed: the report is still worth a picture.
  "$KTSTR" matrix --out "$run_dir" || [ $? -eq 1 ]
elif [ ! -f "$run_dir/results.jsonl" ]; then
  echo "screenshots: $run_dir has no results.jsonl: pass the --out directory of a \`ktstr matrix\` run" >&2
  exit 2
fi

# Re-render with this ktstr, so the pictures show the current report.
"$KTSTR" report "$run_dir" >/dev/null || [ $? -eq 1 ]
page="$(realpath "$run_dir")/report.html"
mkdir -p "$OUT_DIR"
frame_dir="$(mktemp -d)"
trap 'rm -rf "$frame_dir"' EXIT

# A fragment given to --screenshot is not scrolled to: the report is framed in a page of the
# window's size instead, which scrolls the frame to the fragment and lets its plots load.
shot() { # NAME FRAGMENT
  printf '<!DOCTYPE html><html><body style="margin:0"><iframe src="file://%s%s" style="border:0;width:%spx;height:%spx"></iframe></body></html>' \
    "$page" "$2" "$WIDTH" "$HEIGHT" > "$frame_dir/frame.html"
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files \
    --virtual-time-budget=3000 --window-size="$WIDTH,$HEIGHT" \
    --screenshot="$OUT_DIR/$1.png" "file://$frame_dir/frame.html" 2>/dev/null
  echo "screenshots: $OUT_DIR/$1.png"
}
shot report-summary ""
shot report-metrics "#metrics"
shot report-cells "#cells"
