#!/usr/bin/env bash
# Fails when the dev-dependencies change the features of a crate that the normal build also
# compiles: `cargo test` would then rebuild it (and everything above it, e.g. all of Burn)
# instead of reusing the `cargo build` artifacts. Resolves only, compiles nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
tree() { cargo tree --locked -e "$1" -f '{p} {f}' --prefix none "${@:2}" | sed 's/ (\*)$//' | sort -u; }
for feats in "" "--features wgpu"; do
  # One after the other: two cargo processes at once wait on each other's package-cache lock.
  # shellcheck disable=SC2086
  normal=$(tree normal,build $feats)
  # shellcheck disable=SC2086
  with_dev=$(tree normal,build,dev $feats)
  changed=$(comm -23 <(echo "$normal") <(echo "$with_dev"))
  if [ -n "$changed" ]; then
    echo "dev-dependencies change these crates of the normal build ($feats):" >&2
    echo "$changed" >&2
    exit 1
  fi
done
echo "dev-dependencies add no features to the normal build"
