# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Failure messages for the serverless gcp_* modules: the resource, what was called and what
Google answered, with the usual cause of a permission or quota error said in words."""

from __future__ import annotations

_QUOTA_REASONS = ("quota", "rateLimitExceeded", "RESOURCE_EXHAUSTED")


def explain(what, err, role=""):
    """`what` names the resource (`Cloud Run service gateway`); `err` is a GcpApiError."""
    status = str(err.status)
    reason = str(err.reason)
    hint = ""
    if (
        status == "403"
        and not any(q in reason for q in _QUOTA_REASONS)
        and "SERVICE_DISABLED" not in reason
        and "accessNotConfigured" not in reason
    ):
        hint = "permission denied: the identity Ansible runs as needs {} in project".format(
            role or "a role that allows this call"
        )
    elif status == "429" or any(q.lower() in (reason + " " + err.message).lower() for q in _QUOTA_REASONS):
        hint = "quota exceeded: raise the quota (Cloud console, IAM & Admin > Quotas) or ask for less"
    elif "accessNotConfigured" in reason or "SERVICE_DISABLED" in reason:
        hint = "the API is not enabled in the project"
    return "{}: {}{}".format(what, hint + ": " if hint else "", err)
