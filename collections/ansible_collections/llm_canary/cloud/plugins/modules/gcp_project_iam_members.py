#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_project_iam_members
short_description: Grant or revoke project roles of members, leaving every other binding alone
version_added: 0.1.0
description:
  - Reads the project's IAM policy, adds the O(bindings) it lacks (or, with O(state=absent),
    removes them) and writes it back with the etag it read, so a concurrent change is never
    overwritten (a conflict is read again and retried).
  - A service account made a moment ago may still be unknown to IAM, which is eventually
    consistent; Google answers HTTP 400 "does not exist" meanwhile. The module reads and writes
    again, with backoff, until O(api_propagation_timeout) has passed.
  - Touches no other member or role, and no conditional binding.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports which bindings would be added.
  diff_mode:
    support: full
    description: The added or removed bindings.
options:
  state:
    description: Whether the members should have the roles.
    type: str
    default: present
    choices: [present, absent]
  bindings:
    description: Role and member pairs to grant.
    type: list
    elements: dict
    required: true
    suboptions:
      role:
        description: A role, such as V(roles/logging.logWriter).
        type: str
        required: true
      member:
        description: A member, such as V(serviceAccount:vm@example-project.iam.gserviceaccount.com).
        type: str
        required: true
"""

EXAMPLES = r"""
- name: Let the VMs' service account write logs and metrics, and nothing else
  llm_canary.cloud.gcp_project_iam_members:
    project: example-project
    bindings:
      - role: roles/logging.logWriter
        member: serviceAccount:vm@example-project.iam.gserviceaccount.com
      - role: roles/monitoring.metricWriter
        member: serviceAccount:vm@example-project.iam.gserviceaccount.com
"""

RETURN = r"""
changes:
  description: The bindings this run added or removed (or would, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - role: roles/logging.logWriter
      member: serviceAccount:vm@example-project.iam.gserviceaccount.com
"""

import time  # noqa: E402 (after the documentation, as Ansible wants)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)

RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com/v1/projects/"
CONFLICT_RETRIES = 5
# The longest wait between two writes while a new service account propagates through IAM.
PROPAGATION_MAX_DELAY = 10.0


def _unknown_member(err, todo):
    """setIamPolicy refused a member this run adds because IAM does not know it yet."""
    return (
        err.status == 400
        and "does not exist" in err.message
        and any(m.split(":", 1)[-1] in err.message for _r, m in todo)
    )


def ensure(module, client):
    url = RESOURCE_MANAGER + module.params["project"]
    wanted = [(b["role"], b["member"]) for b in module.params["bindings"]]
    present = module.params["state"] == "present"
    conflicts = 0
    waited = 0
    deadline = time.monotonic() + (module.params.get("api_propagation_timeout") or 0)
    while conflicts < CONFLICT_RETRIES:
        # Version 3 returns conditional bindings as they are, so writing the policy back keeps them.
        policy = client.call("POST", url + ":getIamPolicy", body={"options": {"requestedPolicyVersion": 3}})
        bindings = policy.setdefault("bindings", [])
        plain = [b for b in bindings if "condition" not in b]
        granted = {(b["role"], m) for b in plain for m in b.get("members", [])}
        todo = [pair for pair in wanted if (pair in granted) != present]
        changes = [dict(role=r, member=m) for r, m in todo]
        listed = "".join(f"{r} {m}\n" for r, m in todo)
        diff = dict(before="", after=listed) if present else dict(before=listed, after="")
        if not todo or module.check_mode:
            return dict(changed=bool(todo), changes=changes, diff=diff)
        for role, member in todo:
            binding = next((b for b in plain if b["role"] == role), None)
            if binding is None:
                binding = dict(role=role, members=[])
                bindings.append(binding)
                plain.append(binding)
            if present:
                binding.setdefault("members", []).append(member)
            else:
                binding["members"].remove(member)
        policy["bindings"] = [b for b in bindings if b.get("members")]
        policy["version"] = 3
        try:
            client.call("POST", url + ":setIamPolicy", body={"policy": policy})
        except GcpApiError as err:
            if err.status == 409:
                conflicts += 1
                continue
            if _unknown_member(err, todo) and time.monotonic() < deadline:
                time.sleep(
                    min(client.retry_delay * 2**waited, PROPAGATION_MAX_DELAY, deadline - time.monotonic())
                )
                waited += 1
                continue
            if _unknown_member(err, todo):
                err.message += f" (still so after {module.params['api_propagation_timeout']}s of retries)"
            raise
        return dict(changed=True, changes=changes, diff=diff)
    raise GcpApiError(
        "POST", url + ":setIamPolicy", 409, f"the policy kept changing under us ({CONFLICT_RETRIES} tries)"
    )


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        bindings=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(role=dict(type="str", required=True), member=dict(type="str", required=True)),
        ),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = ensure(module, GcpClient(module))
    except GcpApiError as err:
        module.fail_json(
            msg=f"changing IAM roles in {module.params['project']}: {err}",
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
