#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_project_billing
short_description: Link a Google Cloud project to a billing account
version_added: 0.2.0
description:
  - Reads the project's billing info (Cloud Billing C(projects.getBillingInfo)) and links it to
    O(billing_account) with C(projects.updateBillingInfo) when it is linked to another account or
    to none.
  - A project made through the API has no billing account, and Service Usage refuses to enable
    billed APIs (Compute Engine, Cloud Run...) on it until it has one.
  - Never unlinks a project.
  - The caller needs C(billing.resourceAssociations.create) on the billing account (role
    C(roles/billing.user)) and C(resourcemanager.projects.createBillingAssignment) on the project;
    the Cloud Billing API must be enabled in the caller's quota project.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports whether the link would change.
  diff_mode:
    support: full
    description: The billing account before and after.
options:
  billing_account:
    description:
      - The billing account ID, such as V(012345-6789AB-CDEF01), with or without V(billingAccounts/).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Link a new project to the team's billing account
  llm_canary.cloud.gcp_project_billing:
    project: example-project
    billing_account: 012345-6789AB-CDEF01
"""

RETURN = r"""
billing_account:
  description: The billing account the project is linked to (or would be, in check mode).
  returned: success
  type: str
  sample: billingAccounts/012345-6789AB-CDEF01
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)

CLOUD_BILLING = "https://cloudbilling.googleapis.com/v1/projects/"


def ensure(module, client):
    wanted = module.params["billing_account"]
    if not wanted.startswith("billingAccounts/"):
        wanted = "billingAccounts/" + wanted
    url = "{}{}/billingInfo".format(CLOUD_BILLING, module.params["project"])
    current = client.call("GET", url).get("billingAccountName", "")
    diff = dict(before=current + "\n", after=wanted + "\n")
    if current == wanted:
        return dict(changed=False, billing_account=wanted)
    if not module.check_mode:
        client.call("PUT", url, body={"billingAccountName": wanted})
    return dict(changed=True, billing_account=wanted, diff=diff)


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(billing_account=dict(type="str", required=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = ensure(module, GcpClient(module))
    except GcpApiError as err:
        module.fail_json(
            msg="linking {} to billing account {}: {}".format(
                module.params["project"], module.params["billing_account"], err
            ),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
