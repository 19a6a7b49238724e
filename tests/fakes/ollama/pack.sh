#!/usr/bin/env bash
# pack.sh VERSION DEST: pack the Ollama stand-in into DEST/ollama-linux-amd64.FORMAT, laid out like
# Ollama's release archive (bin/ollama, lib/ollama/), and print its sha256 (also written beside it,
# as ollama-linux-amd64.FORMAT.sha256). FORMAT is Ollama's for that version: tgz up to 0.13.x,
# tar.zst from 0.14.0 on. The archive is reproducible (sorted, fixed owner and mtime): a VERSION
# always gives the same checksum.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 VERSION DEST" >&2; exit 2; }
version="$1" dest="$2"
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(printf '%s\n' 0.14.0 "$version" | sort -V | head -1)" = 0.14.0 ]; then
  format=tar.zst compress=(zstd -q -19 -c)
else
  format=tgz compress=(gzip -9n)
fi
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$here/ollama_standin.py" "$stage/bin/ollama"
install -D -m 0644 "$here/registry.json" "$stage/lib/ollama/standin-registry.json"
printf '%s\n' "$version" >"$stage/lib/ollama/standin-version"
mkdir -p "$dest"
archive="$dest/ollama-linux-amd64.$format"
tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - bin lib \
  | "${compress[@]}" >"$archive"
sha256sum "$archive" | cut -d' ' -f1 | tee "$archive.sha256"
