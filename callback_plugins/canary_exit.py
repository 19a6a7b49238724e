# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The canary's exit status (CONTRACTS §5): 0 passed, 1 the canary failed, 2 the deploy failed.

ansible-playbook exits 2 whenever a task fails, so a failed deploy already gives 2; the canary
play itself fails no task for a failed verdict (so its table is printed whole), and records
`canary_verdict` with ansible.builtin.set_stats instead. This callback turns a recorded `fail`
into exit status 1 once the run is over and its recap printed. Runs without that record are
left alone.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: canary_exit
type: aggregate
short_description: Exit status 1 when the canary play recorded a failed verdict
description:
  - After the recap, ends ansible-playbook with exit status 1 when a play recorded
    C(canary_verdict=fail) with M(ansible.builtin.set_stats) and no host failed (a failed host
    already gives Ansible's status 2, the canary's "deploy failed").
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "canary_exit"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_stats(self, stats):
        verdict = (stats.custom.get("_run") or {}).get("canary_verdict")
        if verdict != "fail":
            return
        if any(stats.failures.values()) or any(stats.dark.values()):
            return
        # Raised past Ansible's callback error handling (it catches Exception only): the process
        # ends with this status once ansible-playbook has cleaned up.
        raise SystemExit(1)
