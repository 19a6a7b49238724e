# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Case tables for the gcp_* modules (community.general's habit): each case is its input, the HTTP
calls the module must make, in order, with the answers they get, and the output expected.

A call is `{method, url, params?, body?, status?, answer?}`: `url` is relative to the API root the
table names, `body` and `params` must be contained in what the module sends (a subset, recursively),
`answer` is the JSON Google sends back (status 200 unless given). A call the table does not list, or
one missing at the end, fails the case, so "unchanged: no write" is a list of GETs and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).parent


def load(name):
    """(ids, cases) of `name`.yaml beside this file."""
    table = yaml.safe_load((HERE / f"{name}.yaml").read_text())
    return table["root"], table["defaults"], table["cases"]


def contains(want, have, where="body"):
    """Problems where `have` lacks something of `want`."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [f"{where}: expected an object, got {have!r}"]
        problems = []
        for key, value in want.items():
            if key not in have:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += contains(value, have[key], f"{where}.{key}")
        return problems
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return [f"{where}: expected {len(want)} items, got {have!r}"]
        return [
            p
            for i, (w, h) in enumerate(zip(want, have, strict=True))
            for p in contains(w, h, f"{where}[{i}]")
        ]
    return [] if want == have else [f"{where}: expected {want!r}, got {have!r}"]


class _Response:
    def __init__(self, status, answer):
        self.status_code = status
        self.content = json.dumps(answer).encode() if answer is not None else b""
        self.reason = "reason"
        self.text = self.content.decode()
        self._answer = answer

    def json(self):
        return self._answer


class ScriptedSession:
    """Stands in for google-auth's AuthorizedSession: answers the table's calls in order."""

    def __init__(self, root, calls):
        self.root = root
        self.calls = list(calls)
        self.seen = []

    def __call__(self, credentials):
        return self

    def request(self, method, url, json=None, params=None, data=None, headers=None, timeout=None):
        self.seen.append(f"{method} {url}")
        assert self.calls, (
            f"unexpected call {method} {url} (params {params}, body {json}); calls so far: {self.seen}"
        )
        call = self.calls.pop(0)
        expected_url = call["url"] if call["url"].startswith("https://") else self.root + call["url"]
        assert (method, url) == (call["method"], expected_url), (
            f"call {len(self.seen)}: {method} {url}, expected {call['method']} {expected_url}"
        )
        problems = contains(call.get("params", {}), params or {}, "params")
        if "body" in call:
            problems += contains(call["body"], json if data is None else data, "body")
        if "body_absent" in call:
            problems += [f"body.{k}: should not be sent" for k in call["body_absent"] if k in (json or {})]
        assert not problems, f"{method} {url}: " + "; ".join(problems)
        return _Response(call.get("status", 200), call.get("answer", {}))


def run_case(module, run_module, monkeypatch, root, defaults, case):
    from ansible_collections.llm_canary.cloud.plugins.module_utils import gcp_api

    session = ScriptedSession(root, case.get("calls", []))
    monkeypatch.setattr(gcp_api, "AuthorizedSession", session)
    monkeypatch.setattr(gcp_api.time, "sleep", lambda s: None)
    if hasattr(module, "time"):
        monkeypatch.setattr(module.time, "sleep", lambda s: None)
    args = {
        "project": "canary-test",
        "auth_kind": "accesstoken",
        "access_token": "t",
        "api_retries": 0,
        **defaults,
        **case["input"],
    }
    result = run_module(module, args, check_mode=case.get("check_mode", False))
    assert not session.calls, (
        f"calls the module did not make: {[c['method'] + ' ' + c['url'] for c in session.calls]}"
    )
    problems = contains(case.get("output", {}), result, "result")
    for text in case.get("msg_contains", []):
        if text not in result.get("msg", ""):
            problems.append(f"msg lacks {text!r}: {result.get('msg')}")
    assert not problems, "; ".join(problems) + f"\nresult: {result}"
    return result
