#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_container_image
short_description: Build a container image with Cloud Build into Artifact Registry, once per source
version_added: 0.2.0
description:
  - Ensures an Artifact Registry (v1) Docker repository exists, creating it when missing.
  - Tags the image with a hash of the source files (O(source_dir), limited to O(include)); when the
    repository already holds that tag, nothing is built and the existing digest is returned.
  - Otherwise uploads the source as a tarball to a Cloud Storage staging bucket (created when
    missing), runs a Cloud Build (v1) build with O(steps), waits for it, and returns the image by digest.
  - O(state=absent) deletes the repository with its images, and the staging bucket with its objects.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports whether the repository would be created and the image built.
  diff_mode:
    support: partial
    description: What would be created or built.
options:
  location:
    description: The Artifact Registry location, such as V(us-central1).
    type: str
    required: true
  repository:
    description: The repository ID.
    type: str
    required: true
  image:
    description: The image name inside the repository. Required when O(state=present).
    type: str
  source_dir:
    description: The build context. Required when O(state=present).
    type: path
  include:
    description: Paths below O(source_dir) that make up the context (default all of it).
    type: list
    elements: str
  steps:
    description:
      - Cloud Build steps (C(name), C(args), optional C(entrypoint), C(env)), run in the unpacked
        source. C($_IMAGE) in them is the full image reference with its tag.
      - Default one C(docker build) of the context's Dockerfile.
    type: list
    elements: dict
  bucket:
    description: The staging bucket for the source tarball.
    type: str
    required: true
  build_timeout:
    description: Seconds the build may take.
    type: int
    default: 1200
  state:
    description: Whether the repository (and its image) should exist.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Build the gateway image unless this source was built before
  llm_canary.cloud.gcp_container_image:
    project: example-project
    location: us-central1
    repository: llm-canary
    image: gateway
    source_dir: "{{ playbook_dir }}/../gateway"
    include: [Dockerfile, pyproject.toml, README.md, src]
    bucket: example-project-llm-canary-builds
  register: gateway_image

- name: Remove the repository and the staging bucket
  llm_canary.cloud.gcp_container_image:
    project: example-project
    location: us-central1
    repository: llm-canary
    bucket: example-project-llm-canary-builds
    state: absent
"""

RETURN = r"""
image:
  description: The image by digest (in check mode before a build, by tag).
  returned: when O(state=present)
  type: str
  sample: us-central1-docker.pkg.dev/example-project/llm-canary/gateway@sha256:0123...
tag:
  description: The source hash the image is tagged with.
  returned: when O(state=present)
  type: str
  sample: 3f2a9c0d1e4b
built:
  description: Whether this run built the image (or would, in check mode).
  returned: when O(state=present)
  type: bool
  sample: false
"""

import gzip  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import tarfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_errors import explain  # noqa: E402

REGISTRY = "https://artifactregistry.googleapis.com/v1/"
BUILD = "https://cloudbuild.googleapis.com/v1/"
STORAGE = "https://storage.googleapis.com/storage/v1/"
UPLOAD = "https://storage.googleapis.com/upload/storage/v1/"
SKIPPED = ("__pycache__", ".egg-info", ".pytest_cache", ".ruff_cache", ".venv")


def source_files(root, include):
    """Sorted relative paths of the context's files."""
    found = []
    for top in include or ["."]:
        path = os.path.join(root, top)
        if os.path.isfile(path):
            found.append(os.path.normpath(top))
            continue
        if not os.path.isdir(path):
            raise GcpApiError("ARGS", "include", "-", f"{path} does not exist")
        for directory, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.endswith(SKIPPED))
            found += [
                os.path.relpath(os.path.join(directory, f), root) for f in files if not f.endswith(".pyc")
            ]
    return sorted(set(found))


def source_hash(root, files):
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(root, name), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()[:12]


def tarball(root, files):
    """A reproducible .tar.gz of the files (fixed owners, times and modes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in files:
            info = tar.gettarinfo(os.path.join(root, name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            with open(os.path.join(root, name), "rb") as handle:
                tar.addfile(info, handle)
    return gzip.compress(raw.getvalue(), mtime=0)


def upload(client, bucket, name, data):
    url = f"{UPLOAD}b/{bucket}/o"
    response = client.session.request(
        "POST",
        url,
        params={"uploadType": "media", "name": name},
        data=data,
        headers={"Content-Type": "application/gzip"},
        timeout=300,
    )
    if response.status_code >= 300:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {"message": response.text[:500]}
        raise GcpApiError(
            "POST", url, response.status_code, error.get("message", ""), error.get("status", "")
        )


def absent(module, client):
    params = module.params
    repo_url = "{}projects/{}/locations/{}/repositories/{}".format(
        REGISTRY, params["project"], params["location"], params["repository"]
    )
    changed = []
    if client.call("GET", repo_url, allow_missing=True) is not None:
        changed.append("repository")
        if not module.check_mode:
            client.wait_done(REGISTRY, client.call("DELETE", repo_url))
    bucket_url = "{}b/{}".format(STORAGE, params["bucket"])
    if client.call("GET", bucket_url, allow_missing=True) is not None:
        changed.append("bucket")
        if not module.check_mode:
            for item in client.call("GET", bucket_url + "/o").get("items", []):
                client.call("DELETE", "{}/o/{}".format(bucket_url, item["name"].replace("/", "%2F")))
            client.call("DELETE", bucket_url)
    return dict(changed=bool(changed), diff=dict(before={"deleted": changed}, after={}))


def present(module, client):
    params = module.params
    for option in ("image", "source_dir"):
        if not params[option]:
            raise GcpApiError("ARGS", option, "-", f"{option} is required with state=present")
    project, location, repository = params["project"], params["location"], params["repository"]
    files = source_files(params["source_dir"], params["include"])
    tag = source_hash(params["source_dir"], files)
    registry = f"{location}-docker.pkg.dev/{project}/{repository}/{params['image']}"
    parent = f"{REGISTRY}projects/{project}/locations/{location}"
    repo_url = f"{parent}/repositories/{repository}"
    made = []
    existing = None
    if client.call("GET", repo_url, allow_missing=True) is None:
        made.append("repository")
        if not module.check_mode:
            operation = client.call(
                "POST",
                parent + "/repositories",
                body={"format": "DOCKER", "description": "llm-canary images"},
                params={"repositoryId": repository},
            )
            client.wait_done(REGISTRY, operation)
    else:
        existing = client.call(
            "GET", "{}/packages/{}/tags/{}".format(repo_url, params["image"], tag), allow_missing=True
        )
    if existing is not None:
        digest = existing["version"].rsplit("/", 1)[1]
        return dict(changed=bool(made), image=f"{registry}@{digest}", tag=tag, built=False)
    made.append("image")
    if module.check_mode:
        return dict(
            changed=True,
            image=f"{registry}:{tag}",
            tag=tag,
            built=True,
            diff=dict(before={}, after={"create": made}),
        )
    bucket_url = "{}b/{}".format(STORAGE, params["bucket"])
    if client.call("GET", bucket_url, allow_missing=True) is None:
        client.call(
            "POST",
            STORAGE + "b",
            body={"name": params["bucket"], "location": location.upper()},
            params={"project": project},
        )
    obj = "source/{}-{}.tar.gz".format(params["image"], tag)
    upload(client, params["bucket"], obj, tarball(params["source_dir"], files))
    image = f"{registry}:{tag}"
    steps = params["steps"] or [
        {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", "$_IMAGE", "."]}
    ]
    build = {
        "source": {"storageSource": {"bucket": params["bucket"], "object": obj}},
        "steps": [
            {k: ([a.replace("$_IMAGE", image) for a in v] if k == "args" else v) for k, v in step.items()}
            for step in steps
        ],
        "images": [image],
        "timeout": "{}s".format(params["build_timeout"]),
        "tags": ["llm-canary"],
    }
    operation = client.call("POST", f"{BUILD}projects/{project}/builds", body=build)
    done = client.wait_done(BUILD, operation, timeout=params["build_timeout"] + 60)
    results = done.get("response", {}).get("results", {}).get("images", [])
    digest = next((r["digest"] for r in results if r.get("name") == image), "")
    if not digest:
        raise GcpApiError("BUILD", image, "-", "the build finished without pushing " + image)
    return dict(
        changed=True,
        image=f"{registry}@{digest}",
        tag=tag,
        built=True,
        diff=dict(before={}, after={"create": made}),
    )


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        location=dict(type="str", required=True),
        repository=dict(type="str", required=True),
        image=dict(type="str"),
        source_dir=dict(type="path"),
        include=dict(type="list", elements="str"),
        steps=dict(type="list", elements="dict"),
        bucket=dict(type="str", required=True),
        build_timeout=dict(type="int", default=1200),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    what = "image {} in Artifact Registry repository {}".format(
        module.params["image"], module.params["repository"]
    )
    try:
        client = GcpClient(module)
        result = present(module, client) if module.params["state"] == "present" else absent(module, client)
    except GcpApiError as err:
        module.fail_json(
            msg=explain(
                what,
                err,
                "roles/artifactregistry.admin, roles/cloudbuild.builds.editor and roles/storage.admin",
            ),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
