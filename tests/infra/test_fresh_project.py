"""A fresh project, as Google's APIs treat one in its first minutes: what passes by itself is retried
until a deadline; what does not ends the run at once, saying what to do."""

from __future__ import annotations

from conftest import PROJECT, Cloud

NO_OLLAMA = {"enable_ollama_vm": False}
# Long enough that the first call after enabling lands inside it even on a loaded machine (Ansible
# spends seconds between tasks there); the retries' backoff then waits it out.
PROPAGATION_S = 15.0


def said(output: str) -> str:
    return " ".join(output.split())


def statuses(cloud: Cloud, method_id: str) -> list[int]:
    return [r.status for r in cloud.fake.requests if r.method_id == method_id]


def test_compute_enabled_a_moment_ago_is_retried_until_it_has_propagated(cloud: Cloud) -> None:
    # IAM was on before this run; Compute is enabled by it and answers 403 SERVICE_DISABLED a while.
    cloud.fake.platform.projects[PROJECT].services.add("iam.googleapis.com")
    cloud.fake.platform.propagation_s = PROPAGATION_S
    result = cloud.apply(**NO_OLLAMA)
    first_read = statuses(cloud, "compute.networks.get")
    assert first_read[0] == 403 and 404 in first_read, first_read
    assert set(cloud.fake.resources("instances")) == {"llm-canary-llamacpp-1"}
    assert cloud.fake.token not in result.output


def test_iam_enabled_a_moment_ago_is_retried_when_making_the_service_account(cloud: Cloud) -> None:
    cloud.fake.platform.propagation_s = PROPAGATION_S
    cloud.apply(**NO_OLLAMA)
    assert statuses(cloud, "iam.projects.serviceAccounts.get")[0] == 403
    assert statuses(cloud, "iam.projects.serviceAccounts.create") == [200]


def test_an_api_that_never_comes_up_fails_after_the_deadline_saying_what_to_do(cloud: Cloud) -> None:
    cloud.fake.platform.projects[PROJECT].services.add("iam.googleapis.com")
    cloud.fake.platform.propagation_s = 999.0
    result = cloud.play("playbooks/infra.yml", infra_api_propagation_timeout=3, **NO_OLLAMA)
    text = said(result.output)
    assert result.rc != 0
    assert "HTTP 403 (accessNotConfigured)" in text
    assert "still so after 3s of retries" in text
    assert "What to do: enable compute.googleapis.com" in text
    assert 2 <= len(statuses(cloud, "compute.networks.get")) <= 4


def test_new_service_account_unknown_to_iam_is_granted_once_it_has_propagated(cloud: Cloud) -> None:
    cloud.fake.platform.iam_propagation_s = PROPAGATION_S
    cloud.apply(**NO_OLLAMA)
    writes = statuses(cloud, "cloudresourcemanager.projects.setIamPolicy")
    assert writes[0] == 400 and writes[-1] == 200, writes
    policy = cloud.fake.platform.projects[PROJECT].policy
    assert [b for b in policy["bindings"] if any("llm-canary-vm@" in m for m in b["members"])]


def test_service_account_that_iam_never_knows_fails_after_the_deadline(cloud: Cloud) -> None:
    cloud.fake.platform.iam_propagation_s = 999.0
    result = cloud.play("playbooks/infra.yml", infra_api_propagation_timeout=2, **NO_OLLAMA)
    text = said(result.output)
    assert result.rc != 0
    assert "Service account llm-canary-vm@canary-test.iam.gserviceaccount.com does not exist." in text
    assert "still so after 2s of retries" in text


def test_user_credentials_without_quota_project_fail_at_once_saying_what_to_run(cloud: Cloud) -> None:
    cloud.fake.platform.adc_without_quota_project = True
    result = cloud.play("playbooks/infra.yml", **NO_OLLAMA)
    text = said(result.output)
    assert result.rc != 0
    assert "requires a quota project" in text
    assert "gcloud auth application-default set-quota-project PROJECT_ID" in text
    # Not mistaken for an API still propagating: one call, no retries.
    assert len([r for r in cloud.fake.requests if r.host == "serviceusage.googleapis.com"]) == 1


def test_project_without_billing_fails_at_once_saying_how_to_link_one(cloud: Cloud) -> None:
    cloud.fake.platform.projects[PROJECT].billing_account = ""
    result = cloud.play("playbooks/infra.yml", **NO_OLLAMA)
    text = said(result.output)
    assert result.rc != 0
    assert "Billing must be enabled for activation of service(s)" in text
    assert "What to do: link a billing account" in text and "infra_billing_account" in text
    assert statuses(cloud, "serviceusage.services.batchEnable") == [400]
    assert cloud.fake.resources("networks") == {}


def test_billing_account_given_links_a_project_without_one_before_enabling_apis(cloud: Cloud) -> None:
    cloud.fake.platform.projects[PROJECT].billing_account = ""
    cloud.apply(infra_billing_account="012345-6789AB-CDEF01", **NO_OLLAMA)
    assert cloud.fake.platform.projects[PROJECT].billing_account == "billingAccounts/012345-6789AB-CDEF01"
    calls = [r.method_id for r in cloud.fake.mutating_requests()]
    assert calls[:2] == ["cloudbilling.projects.updateBillingInfo", "serviceusage.services.batchEnable"]
    rerun = cloud.apply(infra_billing_account="012345-6789AB-CDEF01", **NO_OLLAMA)
    assert rerun.changed == 0
