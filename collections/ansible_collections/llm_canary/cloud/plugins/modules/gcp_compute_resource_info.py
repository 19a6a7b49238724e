#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_compute_resource_info
short_description: List Compute Engine resources of one kind in every zone or region, by label and name
version_added: 0.2.0
description:
  - Lists the resources of O(collection) across the project with C(aggregatedList), filtered on
    the server by O(labels) and on the client by O(name_regex), following every page.
  - For finding everything a deployment made, whatever counts it was made with.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
options:
  collection:
    description: The kind of resource.
    type: str
    required: true
    choices: [addresses, disks, instances]
  labels:
    description: Labels every listed resource carries (all of them). Empty lists every resource.
    type: dict
    default: {}
  name_regex:
    description: A Python regular expression the name must match (searched from its start).
    type: str
"""

EXAMPLES = r"""
- name: Find every VM labelled app=llm-canary, in any zone
  llm_canary.cloud.gcp_compute_resource_info:
    project: example-project
    collection: instances
    labels:
      app: llm-canary
  register: found
"""

RETURN = r"""
resources:
  description: The matching resources, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The resource's name.
      type: str
      sample: llm-canary-llamacpp-1
    zone:
      description: Its zone (zonal kinds), else empty.
      type: str
      sample: us-central1-a
    region:
      description: Its region (regional kinds), else empty.
      type: str
      sample: ""
    labels:
      description: Its labels.
      type: dict
      sample: {app: llm-canary, role: llamacpp}
"""

import re  # noqa: E402 (after the documentation, as Ansible wants)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    COMPUTE,
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)


def list_resources(module, client):
    params = module.params
    url = "{}projects/{}/aggregated/{}".format(COMPUTE, params["project"], params["collection"])
    query = {}
    if params["labels"]:
        query["filter"] = " ".join(f'(labels.{k} = "{v}")' for k, v in sorted(params["labels"].items()))
    pattern = re.compile(params["name_regex"]) if params["name_regex"] else None
    found = []
    while True:
        answer = client.call("GET", url, params=query)
        for scoped in (answer.get("items") or {}).values():
            for resource in scoped.get(params["collection"], []):
                if pattern is not None and not pattern.match(resource["name"]):
                    continue
                found.append(
                    dict(
                        name=resource["name"],
                        zone=resource.get("zone", "").rsplit("/", 1)[-1],
                        region=resource.get("region", "").rsplit("/", 1)[-1],
                        labels=resource.get("labels", {}),
                    )
                )
        if not answer.get("nextPageToken"):
            break
        query["pageToken"] = answer["nextPageToken"]
    return sorted(found, key=lambda r: r["name"])


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        collection=dict(type="str", required=True, choices=["addresses", "disks", "instances"]),
        labels=dict(type="dict", default={}),
        name_regex=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        resources = list_resources(module, GcpClient(module))
    except (GcpApiError, re.error) as err:
        module.fail_json(msg="listing {}: {}".format(module.params["collection"], err))
    module.exit_json(changed=False, resources=resources)


if __name__ == "__main__":
    main()
