"""API failures injected into the fake: each ends the run with a clear message, or is retried."""

from __future__ import annotations

from conftest import Cloud

INSTANCES = r"/zones/us-central1-a/instances$"


def said(output: str) -> str:
    return " ".join(output.split())


def test_quota_exceeded_on_insert_ends_with_the_quota_message(cloud: Cloud) -> None:
    cloud.fake.inject(
        "POST",
        INSTANCES,
        403,
        "quotaExceeded",
        "Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 0.0 in region us-central1.",
    )
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert "instances llm-canary-ollama-1: POST" in said(result.output)
    assert "HTTP 403 (quotaExceeded): Quota 'NVIDIA_T4_GPUS' exceeded." in said(result.output)


def test_quota_error_in_the_operation_ends_with_its_message(cloud: Cloud) -> None:
    cloud.fake.fail_next_operation(
        "instances", "QUOTA_EXCEEDED", "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."
    )
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert "QUOTA_EXCEEDED: Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally." in said(result.output)


def test_conflict_on_insert_ends_with_already_exists(cloud: Cloud) -> None:
    cloud.fake.inject(
        "POST",
        r"/global/networks$",
        409,
        "alreadyExists",
        "The resource 'projects/canary-test/global/networks/llm-canary' already exists",
    )
    result = cloud.play("playbooks/infra.yml")
    assert result.rc != 0
    assert "networks llm-canary: POST" in said(result.output)
    assert "HTTP 409 (alreadyExists)" in said(result.output)


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
