# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gcp_secret and gcp_container_image against (gcp_secret.yaml, gcp_container_image.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.llm_canary.cloud.plugins.modules import gcp_container_image, gcp_secret
from gcp_cases import load, run_case

SECRET = load("gcp_secret")
IMAGE = load("gcp_container_image")
SOURCE = Path(__file__).parent / "fixtures" / "image_src"


@pytest.mark.parametrize("case", SECRET[2], ids=[c["id"] for c in SECRET[2]])
def test_gcp_secret(case, run_module, monkeypatch):
    result = run_case(gcp_secret, run_module, monkeypatch, SECRET[0], SECRET[1], case)
    assert "key-one" not in repr(result)


def _with_hash(value, digest):
    if isinstance(value, dict):
        return {k: _with_hash(v, digest) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_hash(v, digest) for v in value]
    return value.replace("SRCHASH", digest) if isinstance(value, str) else value


@pytest.mark.parametrize("case", IMAGE[2], ids=[c["id"] for c in IMAGE[2]])
def test_gcp_container_image(case, run_module, monkeypatch):
    files = gcp_container_image.source_files(str(SOURCE), None)
    digest = gcp_container_image.source_hash(str(SOURCE), files)
    case = _with_hash(case, digest)
    defaults = dict(IMAGE[1], source_dir=str(SOURCE))
    run_case(gcp_container_image, run_module, monkeypatch, IMAGE[0], defaults, case)


def test_source_hash_ignores_caches_and_follows_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    first = gcp_container_image.source_hash(
        str(tmp_path), gcp_container_image.source_files(str(tmp_path), None)
    )
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert (
        gcp_container_image.source_hash(str(tmp_path), gcp_container_image.source_files(str(tmp_path), None))
        == first
    )
    (tmp_path / "Dockerfile").write_text("FROM scratch\nUSER 1\n")
    assert (
        gcp_container_image.source_hash(str(tmp_path), gcp_container_image.source_files(str(tmp_path), None))
        != first
    )


def test_tarball_is_reproducible():
    files = gcp_container_image.source_files(str(SOURCE), None)
    assert gcp_container_image.tarball(str(SOURCE), files) == gcp_container_image.tarball(str(SOURCE), files)
