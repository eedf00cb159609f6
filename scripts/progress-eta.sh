#!/bin/bash
# The kernel build ETA against reality: an incremental rebuild of the cached 6.1 kernel with
# kernel/sched/fair.c touched, stderr piped (the plain progress lines a CI log gets), each line
# prefixed with the seconds since the start. Run it twice: the first run records the build, the
# second shows ETAs estimated from it. Needs the 6.1 entry and its kept O= tree in the cache;
# it marks that entry corrupt (an extra byte in its config) so ktstr rebuilds it in place.
set -euo pipefail
KTSTR=${KTSTR:-ktstr}
ROOT=${KTSTR_CACHE_DIR:-$HOME/.cache/ktstr}
KEY=$("$KTSTR" kernel build 6.1 --plan --offline | awk '/^key:/{print $2}')
SRC_ID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['inputs']['source']['identity'].replace(':','-'))" \
  "$ROOT/kernels/$KEY/metadata.json")
touch "$ROOT/sources/trees/$SRC_ID/kernel/sched/fair.c"
echo x >>"$ROOT/kernels/$KEY/config"
start=$(date +%s.%N)
"$KTSTR" kernel build 6.1 --offline 2>&1 >/dev/null | while IFS= read -r l; do
  printf '%6.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$l"
done
