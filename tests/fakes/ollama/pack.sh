#!/usr/bin/env bash
# pack.sh VERSION DEST: pack the Ollama stand-in into DEST/ollama-linux-amd64.tgz, laid out like
# Ollama's release archive (bin/ollama, lib/ollama/), and print its sha256 (also written beside
# it). The archive is reproducible (sorted, fixed owner and mtime): a VERSION always gives the
# same checksum.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 VERSION DEST" >&2; exit 2; }
version="$1" dest="$2"
here="$(cd "$(dirname "$0")" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$here/ollama_standin.py" "$stage/bin/ollama"
install -D -m 0644 "$here/registry.json" "$stage/lib/ollama/standin-registry.json"
printf '%s\n' "$version" >"$stage/lib/ollama/standin-version"
mkdir -p "$dest"
tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - bin lib \
  | gzip -9n >"$dest/ollama-linux-amd64.tgz"
sha256sum "$dest/ollama-linux-amd64.tgz" | cut -d' ' -f1 | tee "$dest/ollama-linux-amd64.tgz.sha256"
