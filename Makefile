# llm-canary. The two commands a user needs: `make up` and `make test`. Everything they need is
# set up by `make setup` (idempotent, cached under ~/.cache/llm-canary).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
RUN := source scripts/lib.sh && activate_venv &&

.PHONY: help setup deps up canary test lint test-infra test-gateway test-worker test-roles test-vm test-observability test-e2e bench destroy lock

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## install everything the project needs (apt, venv, collections, llama-server, test and VM images)
	@[ -n "$(SETUP_DONE)" ] || scripts/setup.sh

deps: ## only what a deploy to Google Cloud needs: the virtualenv and the collections (a minute)
	@[ -n "$(SETUP_DONE)" ] || scripts/setup.sh deps

up: ## the whole stack on this machine (site.yml -e target=local), ending with a real answer
	@[ -n "$(SETUP_DONE)" ] || scripts/setup.sh up
	@$(RUN) ansible-playbook site.yml -e target=local

canary: ## deploy the local target, smoke-test it, SLO verdict; exit 0 pass, 1 fail, 2 deploy failed
	@[ -n "$(SETUP_DONE)" ] || scripts/setup.sh up
	@$(RUN) TARGET=local tools/deploy/ci/deploy_ollama_gcp.sh

test: setup ## lint, then every test suite
	@$(MAKE) --no-print-directory SETUP_DONE=1 lint test-infra test-gateway test-worker test-roles test-vm test-observability test-e2e

lint: setup ## ansible-lint (production profile, offline), yamllint, ruff
	@$(RUN) scripts/lint.sh

test-infra: setup ## the GCP play against the discovery-validated fake GCP API
	@$(RUN) scripts/test-infra.sh

test-gateway: setup ## the model gateway against real llama-server and fault-injecting upstreams
	@$(RUN) scripts/test-gateway.sh

test-worker: setup ## the Worker in workerd (Miniflare) and the Cloudflare deploy module
	@$(RUN) scripts/test-worker.sh

test-roles: setup ## Molecule: every role on real systemd hosts under podman
	@$(RUN) scripts/test-roles.sh

test-vm: setup ## testinfra over SSH against a QEMU Debian VM
	@$(RUN) scripts/test-vm.sh

test-observability: setup ## promtool on the rules, the dashboard's queries on a real Prometheus, Datadog monitors vs a fake
	@$(RUN) scripts/test-observability.sh

test-e2e: setup ## the local target end to end: make up from clean, canary pass/fail, rerun, destroy
	@$(RUN) scripts/test-e2e.sh

bench: setup ## benchmarks: gateway vs nginx vs direct; Worker vs pass-through
	@$(RUN) scripts/bench.sh

destroy: deps ## remove what site.yml made: make destroy target=local, or project_id=X destroy_confirm=X
	@$(RUN) ansible-playbook playbooks/destroy.yml $(if $(target),-e target=$(target)) \
		$(if $(project_id),-e project_id=$(project_id)) $(if $(destroy_confirm),-e destroy_confirm=$(destroy_confirm))

lock: ## rewrite requirements/constraints.txt from a fresh install of requirements/*.txt and gateway/
	@scripts/lock.sh
