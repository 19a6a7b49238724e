# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compare a wanted Compute Engine resource with the live one, the way the API echoes it back.

Only the fields the caller asked for count. GCE answers partial URLs with full ones, int64 with
strings, and leaves out empty lists and false booleans; none of those is a difference. Fields GCE
takes at creation but never returns (C(initializeParams)) are not compared.
"""

from __future__ import annotations

CREATE_ONLY = frozenset({"initializeParams"})
_URL_MARKER = "/compute/v1/"


def differences(desired, current, path=""):
    """A list of {field, current, desired} for each wanted field the live resource does not match."""
    found = []
    for key, want in desired.items():
        if key in CREATE_ONLY or want is None:
            continue
        field = f"{path}.{key}" if path else key
        have = current.get(key) if isinstance(current, dict) else None
        if isinstance(want, dict) and isinstance(have, dict):
            found += differences(want, have, field)
        elif isinstance(want, list) and isinstance(have, list) and want and isinstance(want[0], dict):
            if len(want) != len(have):
                found.append(dict(field=field, current=have, desired=want))
            else:
                for index, (w, h) in enumerate(zip(want, have, strict=False)):
                    found += differences(w, h, f"{field}[{index}]")
        elif not same(want, have):
            found.append(dict(field=field, current=have, desired=want))
    return found


def same(want, have):
    if _empty(want) and _empty(have):
        return True
    if isinstance(want, list) and isinstance(have, list):
        return sorted(_scalar(w) for w in want) == sorted(_scalar(h) for h in have)
    if isinstance(want, dict) or isinstance(have, dict):
        return not differences(want, have) if isinstance(want, dict) and isinstance(have, dict) else False
    return _scalar(want) == _scalar(have)


def _empty(value):
    return value is None or value is False or value == [] or value == {} or value == ""


def _scalar(value):
    """A comparable form: references cut to their path below the project (GCE takes
    V(zones/z/machineTypes/m) and answers with the full URL), numbers as strings."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if _URL_MARKER in text:
        text = text.split(_URL_MARKER, 1)[1]
    if text.startswith("projects/") and text.count("/") >= 3:
        text = text.split("/", 2)[2]
    return text
