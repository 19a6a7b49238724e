"""The canary's verdict: every smoke test (JUnit XML) and SLO objective (slo.py's JSON) as a row
of a table, pass or fail with its figure; written as JSON beside them.

    python tools/deploy/ci/verdict.py --junit outputs/canary/*.xml --slo outputs/canary/slo.json \\
        --out outputs/canary/verdict.json

Exits 0 when every check passed, 1 otherwise (naming each failed check). A suite or SLO file
that is missing counts as a failed check: what was not measured was not proven.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    figure: str


def junit_checks(path: Path) -> list[Check]:
    """One check per test case; a file that is missing or unreadable is one failed check."""
    suite = path.stem
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        return [Check(f"{suite}: smoke tests ran", False, f"no report ({type(error).__name__})")]
    checks = []
    for case in root.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            figure = (problem.get("message") or "failed").splitlines()[0][:100]
        elif skipped is not None:
            figure = "skipped: " + (skipped.get("message") or "")[:90]
        else:
            figure = f"{float(case.get('time', 0)):.2f} s"
        checks.append(Check(f"{suite}: {case.get('name')}", problem is None and skipped is None, figure))
    if not checks:
        checks.append(Check(f"{suite}: smoke tests ran", False, "no test case in the report"))
    return checks


def slo_checks(path: Path) -> list[Check]:
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return [Check("slo: measured", False, f"no figures ({type(error).__name__})")]
    failures = ", ".join(figures["failures"])
    return [
        Check(
            f"slo: availability >= {figures['availability_objective']:.1%}",
            figures["availability_met"],
            f"{figures['availability']:.1%} of {figures['requests']}"
            + (f" ({failures})" if failures else ""),
        ),
        Check(
            f"slo: p95 < {figures['p95_objective_s']:g} s",
            figures["p95_met"],
            f"p95 {figures['p95_s']:.2f} s",
        ),
    ]


def render(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = [f"{'check':<{width}}  result  figure", f"{'-' * width}  ------  ------"]
    lines += [
        f"{check.name:<{width}}  {'pass' if check.passed else 'FAIL':<6}  {check.figure}" for check in checks
    ]
    failed = [check.name for check in checks if not check.passed]
    lines.append("")
    lines.append(f"canary FAILED: {', '.join(failed)}" if failed else f"canary passed: {len(checks)} checks")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--junit", type=Path, nargs="+", required=True)
    parser.add_argument("--slo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    checks = [check for path in args.junit for check in junit_checks(path)] + slo_checks(args.slo)
    passed = all(check.passed for check in checks)
    args.out.write_text(
        json.dumps({"passed": passed, "checks": [asdict(check) for check in checks]}, indent=2) + "\n"
    )
    print(render(checks))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
