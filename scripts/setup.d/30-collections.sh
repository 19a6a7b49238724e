#!/usr/bin/env bash
# setup: deps up
# Third-party collections, offline: copied from the `ansible` PyPI package into collections/
# (Galaxy users get the same pins from requirements.yml).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
site="$("$VENV/bin/python" -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))' 2>/dev/null \
  || "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"] + "/ansible_collections")')"
dest="$ROOT/collections"
while read -r fqcn version; do
  ns="${fqcn%%.*}" name="${fqcn#*.}"
  manifest="$dest/ansible_collections/$ns/$name/MANIFEST.json"
  if [ -f "$manifest" ] && grep -q "\"version\": \"$version\"" "$manifest"; then continue; fi
  grep -q "\"version\": \"$version\"" "$site/$ns/$name/MANIFEST.json" \
    || die "the installed ansible package does not carry $fqcn $version (see requirements.yml)"
  "$VENV/bin/ansible-galaxy" collection install --offline --force -p "$dest" "$site/$ns/$name" >/dev/null
done < <("$VENV/bin/python" - "$ROOT/requirements.yml" <<'PY'
import sys, yaml
for c in yaml.safe_load(open(sys.argv[1]))["collections"]:
    print(c["name"], c["version"])
PY
)
