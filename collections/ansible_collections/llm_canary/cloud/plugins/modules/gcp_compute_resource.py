#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_compute_resource
short_description: Compare-first create, update or delete of one Compute Engine resource
version_added: 0.1.0
description:
  - Ensures one Compute Engine v1 resource (network, subnetwork, address, firewall, disk or
    instance) matches the insert body given in O(resource), or is absent.
  - Reads the resource first and compares only the fields given in O(resource), normalising
    partial and full resource URLs and numbers sent as strings, so an unchanged resource reports
    C(changed=false) on every run.
  - Firewall rules are updated in place with C(PATCH). Compute Engine cannot change most fields of
    the other kinds in place; differences in them are reported as RV(drift) with a warning, and
    the resource is deleted and created again only when O(recreate_on_drift=true).
  - Waits for each operation to finish and fails with the operation's error.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports what would be created, updated or deleted.
  diff_mode:
    support: full
    description: The fields that differ, before and after.
options:
  collection:
    description: The Compute Engine collection the resource lives in.
    type: str
    required: true
    choices: [networks, subnetworks, addresses, firewalls, disks, instances]
  name:
    description: The resource name.
    type: str
    required: true
  region:
    description: The region, for O(collection=subnetworks) and O(collection=addresses).
    type: str
  zone:
    description: The zone, for O(collection=disks) and O(collection=instances).
    type: str
  state:
    description: Whether the resource should exist.
    type: str
    default: present
    choices: [present, absent]
  resource:
    description:
      - The resource as the API's C(insert) method takes it, without C(name); references may be
        partial URLs (V(global/networks/example)).
      - Required when O(state=present).
    type: dict
  recreate_on_drift:
    description:
      - Delete and create the resource again when a field that cannot be changed in place differs.
      - This destroys the resource's data (an instance's boot disk, an address's IP).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Reserve a static external address
  llm_canary.cloud.gcp_compute_resource:
    project: example-project
    collection: addresses
    region: us-central1
    name: example-ip
    resource:
      addressType: EXTERNAL
      networkTier: PREMIUM

- name: Open a model port to one range only (updated in place when the ranges change)
  llm_canary.cloud.gcp_compute_resource:
    project: example-project
    collection: firewalls
    name: example-allow-llama
    resource:
      network: global/networks/example
      sourceRanges: [203.0.113.7/32]
      targetTags: [llamacpp]
      allowed: [{IPProtocol: tcp, ports: ["8080"]}]

- name: Remove an instance
  llm_canary.cloud.gcp_compute_resource:
    project: example-project
    collection: instances
    zone: us-central1-a
    name: example-vm
    state: absent
"""

RETURN = r"""
resource:
  description:
    - The resource as the API returns it after the change.
    - In check mode, for a resource that does not exist yet, the request that would be sent.
  returned: when O(state=present)
  type: dict
  sample: {"name": "example-ip", "address": "34.123.45.10", "status": "RESERVED", "selfLink": "https://compute.googleapis.com/compute/v1/..."}
drift:
  description: Fields of O(resource) that differ from the live resource and were not changed in place.
  returned: always
  type: list
  elements: dict
  sample:
    - field: machineType
      current: https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a/machineTypes/n1-standard-4
      desired: zones/us-central1-a/machineTypes/n1-standard-8
action:
  description: What was done (or would be done in check mode).
  returned: always
  type: str
  sample: created
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    COMPUTE,
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_compare import differences  # noqa: E402

SCOPES = {
    "networks": "global",
    "firewalls": "global",
    "subnetworks": "region",
    "addresses": "region",
    "disks": "zone",
    "instances": "zone",
}
PATCHABLE = frozenset({"firewalls"})


def collection_url(params):
    scope = SCOPES[params["collection"]]
    if scope == "global":
        where = "global"
    else:
        if not params.get(scope):
            raise GcpApiError(
                "ARGS",
                params["collection"],
                "-",
                "{} needs the {} option".format(params["collection"], scope),
            )
        where = f"{scope}s/{params[scope]}"
    return "{}projects/{}/{}/{}".format(COMPUTE, params["project"], where, params["collection"])


def ensure(module, client):
    params = module.params
    url = collection_url(params)
    link = "{}/{}".format(url, params["name"])
    current = client.call("GET", link, allow_missing=True)
    if params["state"] == "absent":
        if current is None:
            return dict(changed=False, action="none", drift=[])
        if not module.check_mode:
            client.wait_compute(client.call("DELETE", link))
        return dict(changed=True, action="deleted", drift=[], diff=dict(before=current, after={}))

    desired = dict(params["resource"] or {}, name=params["name"])
    if current is None:
        if module.check_mode:
            return dict(
                changed=True,
                action="created",
                drift=[],
                resource=desired,
                diff=dict(before={}, after=desired),
            )
        client.wait_compute(client.call("POST", url, body=desired))
        created = client.call("GET", link)
        return dict(
            changed=True, action="created", drift=[], resource=created, diff=dict(before={}, after=created)
        )

    drift = differences(desired, current)
    if not drift:
        return dict(changed=False, action="none", drift=[], resource=current)
    diff = dict(
        before=dict((d["field"], d["current"]) for d in drift),
        after=dict((d["field"], d["desired"]) for d in drift),
    )
    if params["collection"] in PATCHABLE:
        if not module.check_mode:
            client.wait_compute(client.call("PATCH", link, body=desired))
            current = client.call("GET", link)
        return dict(changed=True, action="updated", drift=[], resource=current, diff=diff)
    if params["recreate_on_drift"]:
        if not module.check_mode:
            client.wait_compute(client.call("DELETE", link))
            client.wait_compute(client.call("POST", url, body=desired))
            current = client.call("GET", link)
        return dict(changed=True, action="recreated", drift=drift, resource=current, diff=diff)
    module.warn(
        "{} {} differs from the wanted state in {}, which Compute Engine cannot change in place; "
        "left as it is (set recreate_on_drift to delete and create it again)".format(
            params["collection"], params["name"], ", ".join(d["field"] for d in drift)
        )
    )
    return dict(changed=False, action="drift-reported", drift=drift, resource=current)


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        collection=dict(type="str", required=True, choices=sorted(SCOPES)),
        name=dict(type="str", required=True),
        region=dict(type="str"),
        zone=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        resource=dict(type="dict"),
        recreate_on_drift=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("resource",))],
        supports_check_mode=True,
    )
    try:
        result = ensure(module, GcpClient(module))
    except GcpApiError as err:
        module.fail_json(
            msg="{} {}: {}".format(module.params["collection"], module.params["name"], err),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
