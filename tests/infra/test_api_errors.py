"""API failures injected into the fake: each ends the run with a clear message, or is retried."""

from __future__ import annotations

import pytest
from conftest import PROJECT, Cloud

INSTANCES = r"/zones/us-central1-a/instances$"


def said(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize(
    ("method", "path", "code", "reason", "message", "names"),
    [
        pytest.param(
            "POST",
            INSTANCES,
            403,
            "quotaExceeded",
            "Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 0.0 in region us-central1.",
            "instances llm-canary-ollama-1: POST",
            id="403-quota-exceeded",
        ),
        pytest.param(
            "POST",
            r"/global/networks$",
            409,
            "alreadyExists",
            "The resource 'projects/canary-test/global/networks/llm-canary' already exists",
            "networks llm-canary: POST",
            id="409-already-exists",
        ),
    ],
)
def test_refused_insert_ends_with_resource_call_status_and_googles_message(
    cloud: Cloud, method: str, path: str, code: int, reason: str, message: str, names: str
) -> None:
    cloud.fake.inject(method, path, code, reason, message)
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert names in said(result.output)
    assert f"HTTP {code} ({reason}): {message}" in said(result.output)


def test_quota_error_in_the_operation_ends_with_its_message(cloud: Cloud) -> None:
    cloud.fake.fail_next_operation(
        "instances", "QUOTA_EXCEEDED", "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."
    )
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert "QUOTA_EXCEEDED: Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally." in said(result.output)


def test_unavailable_once_is_retried_and_the_run_succeeds(cloud: Cloud) -> None:
    cloud.fake.inject("POST", INSTANCES, 503, "backendError", "The service is currently unavailable.")
    cloud.apply(enable_ollama_vm=False)
    assert [
        r.status for r in cloud.fake.requests if r.method == "POST" and r.path.endswith("/instances")
    ] == [503, 200]
    assert set(cloud.fake.resources("instances")) == {"llm-canary-llamacpp-1"}


def test_unavailable_for_good_gives_up_with_the_status(cloud: Cloud) -> None:
    cloud.fake.inject(
        "GET",
        r"/global/networks/llm-canary$",
        503,
        "backendError",
        "The service is currently unavailable.",
        times=99,
    )
    result = cloud.play("playbooks/infra.yml", "-e", '{"infra_api_retries": 1}')
    assert result.rc != 0
    assert "HTTP 503 (backendError): The service is currently unavailable." in said(result.output)


SET_IAM_POLICY = r":setIamPolicy$"


def test_iam_policy_changed_by_someone_else_is_read_again_and_written(cloud: Cloud) -> None:
    cloud.fake.inject("POST", SET_IAM_POLICY, 409, "aborted", "There were concurrent policy changes.")
    cloud.apply(enable_ollama_vm=False)
    iam_calls = [r.path.rpartition(":")[2] for r in cloud.fake.requests if "IamPolicy" in r.path]
    assert iam_calls == ["getIamPolicy", "setIamPolicy", "getIamPolicy", "setIamPolicy"]
    policy = cloud.fake.platform.projects[PROJECT].policy
    assert [b for b in policy["bindings"] if any("llm-canary-vm@" in m for m in b["members"])]


def test_iam_policy_that_keeps_changing_gives_up_saying_so(cloud: Cloud) -> None:
    cloud.fake.inject(
        "POST", SET_IAM_POLICY, 409, "aborted", "There were concurrent policy changes.", times=99
    )
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert "kept changing" in said(result.output)
