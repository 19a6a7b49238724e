#!/usr/bin/env bash
# make test-roles: `molecule test` (create, converge, idempotence, verify, destroy) for every
# scenario directory under molecule/ (each one that has a molecule.yml, but default/; molecule/_shared/
# holds the configuration they share), after the roles' own unit tests (roles/*/tests/).
# Name scenarios to run only those:
#   scripts/test-roles.sh llamacpp ai_exporter
# KEEP=1 leaves the containers running after a failure, for `podman exec -it llm-canary-NAME bash`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

LLM_CANARY_TEST_IMAGE="$(bash scripts/setup.d/50-test-image.sh --print-image)"
podman image exists "$LLM_CANARY_TEST_IMAGE" || die "test image $LLM_CANARY_TEST_IMAGE is missing: run make setup"
export LLM_CANARY_TEST_IMAGE LLM_CANARY_CACHE="$CACHE_DIR"
# The pins (source and model checksums) reach molecule.yml files as environment variables.
set -a
source scripts/pins.sh
set +a
mkdir -p "$CACHE_DIR/ccache" "$CACHE_DIR/apt-archives/partial" "$CACHE_DIR/apt-lists/partial"
# Until it holds package lists, the shared list directory must look stale: apt's
# cache_valid_time would otherwise skip the update and find no packages.
compgen -G "$CACHE_DIR/apt-lists/*Packages*" >/dev/null || touch -d @0 "$CACHE_DIR/apt-lists"

if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for file in molecule/*/molecule.yml; do
    dir="${file%/molecule.yml}"
    # molecule/default/ is not a scenario (its molecule.yml says why).
    [ "${dir##*/}" = default ] || scenarios+=("${dir##*/}")
  done
fi

# Unit tests that roles keep beside their code (roles/*/tests/), seconds, before the containers.
role_tests=(roles/*/tests)
if [ -d "${role_tests[0]}" ]; then
  log "pytest ${role_tests[*]}"
  pytest -q -p no:cacheprovider "${role_tests[@]}"
fi

destroy=always
[ "${KEEP:-}" = 1 ] && destroy=never
failed=()
for scenario in "${scenarios[@]}"; do
  [ -f "molecule/$scenario/molecule.yml" ] || die "no scenario molecule/$scenario/molecule.yml"
  log "molecule test -s $scenario"
  start=$SECONDS
  if LLM_CANARY_SCENARIO="$scenario" molecule --base-config molecule/_shared/base.yml \
    test --scenario-name "$scenario" --destroy "$destroy"; then
    log "scenario $scenario passed in $((SECONDS - start)) s"
  else
    log "scenario $scenario FAILED after $((SECONDS - start)) s"
    failed+=("$scenario")
  fi
done
[ ${#failed[@]} -eq 0 ] || die "failed scenarios: ${failed[*]}"
