#!/usr/bin/env bash
# Idempotent set-up of everything ktstr needs on a Debian bookworm machine (root or sudo):
# QEMU, busybox for the guest shell, kernel sources and build deps, clang for BPF schedulers.
set -euo pipefail

PKGS=(
  qemu-system-x86 busybox-static            # VMs and the guest's shell
  linux-source-6.12 linux-source-6.1        # kernel sources (tarballs in /usr/src)
  build-essential flex bison bc libelf-dev libssl-dev dwarves cpio zstd xz-utils kmod
  clang-19 llvm-19 pkg-config zlib1g-dev libzstd-dev   # BPF schedulers (scx_*, tools/sched_ext)
  nix-bin                                   # only to check that flake.nix parses (no nixpkgs offline)
  rt-tests linux-perf stress-ng             # packaged benchmark scenarios (hackbench, perf bench, stress-ng)
  slurm-wlm munge                           # the Slurm end-to-end test's single-node cluster
  gpgv gpg                                  # sha256sums.asc signatures (gpgv); test keys (gpg)
  chromium                                  # report.html opened headless (matrix/tests/html_browser.rs, scripts/screenshots.sh)
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 2; }
