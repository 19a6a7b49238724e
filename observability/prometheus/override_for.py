#!/usr/bin/env python3
"""Test-only: copy a rule file with shorter `for:` durations, so a test sees alerts fire in seconds.

    override_for.py SRC DEST --for 10s [--alert LLMModelNotLoaded ...]

Every alert of SRC (or only those named with --alert) gets `for: DURATION` in DEST; recording rules
and everything else are copied unchanged. The shipped rules (observability/prometheus/alerts.yaml)
keep their real durations: DEST may not be SRC, nor any file in this folder.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def override(rules: dict, duration: str, alerts: set[str] | None) -> list[str]:
    """Set `for:` on the chosen alerts in place; return the names changed (once each)."""
    changed: list[str] = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if name is None or (alerts is not None and name not in alerts):
                continue
            rule["for"] = duration
            if name not in changed:
                changed.append(name)
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--for", dest="duration", required=True, help="a Prometheus duration, e.g. 10s")
    parser.add_argument("--alert", action="append", help="an alert name (repeat); default: every alert")
    args = parser.parse_args(argv)
    if not DURATION.match(args.duration):
        parser.error(f"--for must be a Prometheus duration such as 10s or 1m, got {args.duration!r}")
    dest = args.dest.resolve()
    if dest == args.src.resolve() or dest.parent == HERE:
        parser.error(f"refusing to write {args.dest}: the shipped rules keep their real durations")
    rules = yaml.safe_load(args.src.read_text())
    wanted = set(args.alert) if args.alert else None
    changed = override(rules, args.duration, wanted)
    missing = (wanted or set()) - set(changed)
    if missing:
        parser.error(f"no alert named {', '.join(sorted(missing))} in {args.src}")
    dest.write_text(
        f"# Test copy of {args.src.name}: for: {args.duration} on {', '.join(changed)}. Never ship this.\n"
        + yaml.safe_dump(rules, sort_keys=False, width=1000)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
