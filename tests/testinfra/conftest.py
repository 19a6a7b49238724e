"""Fixtures shared by the host checks, on Molecule containers and on real VMs alike.

Molecule's verify runs them through testinfra's podman backend::

    LLM_CANARY_HOST_GROUPS=llamacpp pytest tests/testinfra --hosts=podman://llm-canary-llamacpp

and the same files run against GCE VMs through the dynamic inventory (docs/hosts.md)::

    pytest tests/testinfra --hosts='ansible://all' --ansible-inventory=inventory/gcp.gcp_compute.yml

Every check runs on the host itself (`host.run`), so nothing needs a port open to the runner.
A test for a runtime is skipped on a host that is not in that runtime's group: `group_names`
from the Ansible inventory, or LLM_CANARY_HOST_GROUPS (comma-separated) for other backends.
Settings a deployment may override (ports, model name) come from the environment in upper case
(LLAMACPP_PORT), then from the host's Ansible variables (llamacpp_port), then from the defaults
below, which are the roles' defaults.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from typing import Any

import pytest

ROLE_DEFAULTS: dict[str, Any] = {
    "llamacpp_port": 8080,
    "llamacpp_model_name": "SmolLM2-135M-Instruct",
    "ollama_port": 11434,
    "ai_exporter_port": 9101,
    "ollama_enable_gpu": False,
}

# Fetches one URL on the host with its own Python (present wherever Ansible manages a host) and
# prints {"status", "headers", "body"}; HTTP errors are results, not failures.
_FETCH = """
import json, sys, urllib.error, urllib.request
url, method, headers, body, timeout = json.loads(sys.argv[1])
request = urllib.request.Request(url, method=method, headers=headers,
                                 data=body.encode() if body is not None else None)
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status, head, text = response.status, dict(response.headers), response.read().decode()
except urllib.error.HTTPError as error:
    status, head, text = error.code, dict(error.headers), error.read().decode()
print(json.dumps({"status": status, "headers": head, "body": text}))
"""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class HostHttp:
    """HTTP requests made from inside the host under test (loopback or its private address)."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> HttpResponse:
        all_headers = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        spec = json.dumps([url, method, all_headers, body, timeout])
        result = self._host.run(f"python3 -c {shlex.quote(_FETCH)} {shlex.quote(spec)}")
        if result.rc != 0:
            raise ConnectionError(f"{method} {url} from the host failed: {result.stderr.strip()}")
        data = json.loads(result.stdout)
        return HttpResponse(status=data["status"], headers=data["headers"], body=data["body"])

    def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, json_body: Any, **kwargs: Any) -> HttpResponse:
        return self.request("POST", url, json_body=json_body, **kwargs)


@pytest.fixture
def http(host: Any) -> HostHttp:
    return HostHttp(host)


def _ansible_variables(host: Any) -> dict[str, Any] | None:
    if host.backend.NAME != "ansible":
        return None
    return host.ansible.get_variables()


@pytest.fixture
def host_groups(host: Any) -> set[str]:
    variables = _ansible_variables(host)
    if variables is not None:
        return set(variables.get("group_names", []))
    return {g.strip() for g in os.environ.get("LLM_CANARY_HOST_GROUPS", "").split(",") if g.strip()}


@pytest.fixture
def setting(host: Any):
    """setting(name): the deployment's value for one of ROLE_DEFAULTS (see the module docstring)."""
    variables = _ansible_variables(host) or {}

    def lookup(name: str) -> Any:
        default = ROLE_DEFAULTS[name]
        raw = os.environ.get(name.upper())
        if raw is not None:
            return type(default)(raw) if not isinstance(default, bool) else raw.lower() == "true"
        return variables.get(name, default)

    return lookup


@pytest.fixture
def private_address(host: Any) -> str:
    """The host's primary IPv4 address: the source of its default route (a GCE VM's internal IP)."""
    route = host.check_output("ip -4 -o route get 192.0.2.1")
    words = route.split()
    return words[words.index("src") + 1]


def _behind_proxy(host: Any, runtime: str) -> bool:
    """Whether roles/model_proxy fronts this runtime (then the server itself listens on loopback)."""
    return host.file(f"/etc/nginx/conf.d/llm-canary-{runtime}.conf").exists


@pytest.fixture
def server_address(host: Any, private_address: str):
    """server_address(runtime): where the model server itself listens: loopback behind its TLS
    proxy (playbooks/hosts.yml), the private address when the role runs alone."""

    def lookup(runtime: str) -> str:
        return "127.0.0.1" if _behind_proxy(host, runtime) else private_address

    return lookup


@pytest.fixture
def port_listeners(private_address: str, server_address):
    """port_listeners(runtime): the addresses its port may listen on: the server's, and the
    private address too when a TLS proxy answers there."""

    def lookup(runtime: str) -> list[str]:
        return sorted({server_address(runtime), private_address})

    return lookup


def require_group(groups: set[str], group: str) -> None:
    if group not in groups:
        pytest.skip(f"host is not in group {group!r} (groups: {sorted(groups) or 'none'})")


@pytest.fixture
def llamacpp_host(host_groups: set[str]) -> None:
    require_group(host_groups, "llamacpp")


@pytest.fixture
def ollama_host(host_groups: set[str]) -> None:
    require_group(host_groups, "ollama")


@pytest.fixture
def listening_addresses(host: Any):
    """listening_addresses(port): the local addresses with a TCP socket listening on `port`."""

    def lookup(port: int) -> list[str]:
        out = host.check_output(f"ss -Htln 'sport = :{port}'")
        return [line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line.strip()]

    return lookup
