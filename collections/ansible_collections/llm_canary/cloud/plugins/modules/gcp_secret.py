#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_secret
short_description: A Secret Manager secret whose latest version holds a value, readable only by named members
version_added: 0.2.0
description:
  - Ensures a Secret Manager (v1) secret exists and that its latest version holds O(value). A new
    version is added only when the value differs from the latest one, which is read to compare.
  - With O(accessors), exactly those members hold C(roles/secretmanager.secretAccessor) on the
    secret; every other binding is left alone.
  - The value never appears in the module's output or diff.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports whether a version would be added.
  diff_mode:
    support: partial
    description: Whether the secret, a new version and the accessors would change; never the value.
options:
  name:
    description: The secret ID.
    type: str
    required: true
  value:
    description: The secret's value. Required when O(state=present).
    type: str
  accessors:
    description:
      - Members (V(serviceAccount:EMAIL), ...) given C(roles/secretmanager.secretAccessor), exactly.
      - Omitted, the secret's IAM policy is left alone.
    type: list
    elements: str
  labels:
    description: Labels set when the secret is created.
    type: dict
    default: {}
  state:
    description: V(absent) deletes the secret with every version.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Keep the gateway's client keys in Secret Manager, readable by its service account only
  llm_canary.cloud.gcp_secret:
    project: example-project
    name: gateway-api-keys
    value: "{{ gateway_api_keys }}"
    accessors:
      - serviceAccount:gateway@example-project.iam.gserviceaccount.com
  register: keys
  no_log: true

- name: Refer to the exact version, so that a new key makes a new Cloud Run revision
  ansible.builtin.debug:
    msg: "GATEWAY_API_KEYS from gateway-api-keys version {{ keys.version }}"
"""

RETURN = r"""
version:
  description: The number of the version that holds the value (in check mode, the one that would).
  returned: when O(state=present)
  type: str
  sample: "3"
secret:
  description: The secret's resource name.
  returned: always
  type: str
  sample: projects/123456789012/secrets/gateway-api-keys
"""

import base64  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_errors import explain  # noqa: E402

SECRET_MANAGER = "https://secretmanager.googleapis.com/v1/"
ACCESSOR = "roles/secretmanager.secretAccessor"


def _version_number(name):
    return (name or "").rsplit("/", 1)[-1]


def ensure(module, client):
    params = module.params
    parent = "{}projects/{}/secrets".format(SECRET_MANAGER, params["project"])
    url = "{}/{}".format(parent, params["name"])
    current = client.call("GET", url, allow_missing=True)
    name = (current or {}).get("name", "projects/{}/secrets/{}".format(params["project"], params["name"]))
    if params["state"] == "absent":
        if current is None:
            return dict(changed=False, secret=name)
        if not module.check_mode:
            client.call("DELETE", url)
        return dict(changed=True, secret=name, diff=dict(before={"secret": name}, after={}))

    changes = {}
    latest = None
    if current is None:
        changes["secret"] = "created"
        if not module.check_mode:
            current = client.call(
                "POST",
                parent,
                body={"replication": {"automatic": {}}, "labels": params["labels"]},
                params={"secretId": params["name"]},
            )
            name = current["name"]
    else:
        latest = client.call("GET", url + "/versions/latest:access", allow_missing=True)
    held = base64.b64decode(latest["payload"]["data"]).decode("utf-8", "replace") if latest else None
    version = _version_number(latest["name"]) if latest else ""
    if held != params["value"]:
        changes["version"] = "added"
        if module.check_mode:
            version = str(int(version or 0) + 1)
        else:
            added = client.call(
                "POST",
                url + ":addVersion",
                body={"payload": {"data": base64.b64encode(params["value"].encode()).decode()}},
            )
            version = _version_number(added["name"])
    if params["accessors"] is not None and accessors(module, client, url, current is None):
        changes["accessors"] = sorted(set(params["accessors"]))
    return dict(
        changed=bool(changes),
        secret=name,
        version=version,
        diff=dict(before={}, after=changes),
    )


def accessors(module, client, url, missing):
    """Give the accessor role to exactly `accessors`; True when it was (or would be) changed."""
    wanted = sorted(set(module.params["accessors"]))
    if missing:  # check mode, before the secret exists
        return bool(wanted)
    policy = client.call("GET", url + ":getIamPolicy")
    bindings = policy.get("bindings", [])
    have = sorted(
        {
            m
            for b in bindings
            if b.get("role") == ACCESSOR and not b.get("condition")
            for m in b.get("members", [])
        }
    )
    if have == wanted:
        return False
    if not module.check_mode:
        kept = [b for b in bindings if b.get("role") != ACCESSOR or b.get("condition")]
        if wanted:
            kept.append({"role": ACCESSOR, "members": wanted})
        policy["bindings"] = kept
        client.call("POST", url + ":setIamPolicy", body={"policy": policy})
    return True


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        value=dict(type="str", no_log=True),
        accessors=dict(type="list", elements="str"),
        labels=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("value",))],
        supports_check_mode=True,
    )
    try:
        result = ensure(module, GcpClient(module))
    except GcpApiError as err:
        module.fail_json(
            msg=explain(
                "Secret Manager secret {}".format(module.params["name"]),
                err,
                "roles/secretmanager.admin",
            ),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
