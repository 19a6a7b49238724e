#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_serviceusage_services
short_description: Enable a list of Google Cloud APIs in one call
version_added: 0.1.0
description:
  - Reads the state of every service in O(services) with one C(services:batchGet) and enables
    the disabled ones with one C(services:batchEnable), then waits for it to finish.
  - Never disables a service (other workloads in the project may use it).
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports which services would be enabled.
  diff_mode:
    support: full
    description: The enabled services before and after.
options:
  services:
    description: Service names, such as V(compute.googleapis.com). At most 20.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Enable the APIs a Compute Engine deployment needs
  llm_canary.cloud.gcp_serviceusage_services:
    project: example-project
    services:
      - compute.googleapis.com
      - iam.googleapis.com
"""

RETURN = r"""
enabled:
  description: The services this run enabled (or would enable, in check mode).
  returned: always
  type: list
  elements: str
  sample: [compute.googleapis.com]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)

SERVICE_USAGE = "https://serviceusage.googleapis.com/v1/"


def ensure(module, client):
    project = "projects/{}".format(module.params["project"])
    wanted = sorted(set(module.params["services"]))
    if not 1 <= len(wanted) <= 20:
        raise GcpApiError(
            "ARGS", "services", "-", f"services must list between 1 and 20 APIs, got {len(wanted)}"
        )
    answer = client.call(
        "GET",
        f"{SERVICE_USAGE}{project}/services:batchGet",
        params={"names": [f"{project}/services/{s}" for s in wanted]},
    )
    enabled = sorted(s["config"]["name"] for s in answer.get("services", []) if s.get("state") == "ENABLED")
    missing = [s for s in wanted if s not in enabled]
    diff = dict(before="\n".join(enabled) + "\n", after="\n".join(sorted(enabled + missing)) + "\n")
    if missing and not module.check_mode:
        operation = client.call(
            "POST", f"{SERVICE_USAGE}{project}/services:batchEnable", body={"serviceIds": missing}
        )
        client.wait_done(SERVICE_USAGE, operation)
    return dict(changed=bool(missing), enabled=missing, diff=diff)


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(services=dict(type="list", elements="str", required=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = ensure(module, GcpClient(module))
    except GcpApiError as err:
        module.fail_json(
            msg="enabling APIs in {}: {}".format(module.params["project"], err),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
