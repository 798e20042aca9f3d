"""Prints what the fuzzing client found: the count per behaviour, the case ids that were not OK, and
last `autobahn: N ok, N non-strict, N informational, N unimplemented, N failed`. Exits 1 if a case
FAILED or did not run (the server died, wstest was stopped).

Usage: python3 report.py OUT_DIR AGENT   (reads OUT_DIR/cases.txt and OUT_DIR/reports/index.json)
"""

import json
import sys
from collections import Counter
from pathlib import Path

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def grouped(ids: list[str]) -> str:
    """'12.1.* (18), 12.2.* (18)': long lists by their first two numbers."""
    groups = Counter(".".join(case_id.split(".")[:2]) + ".*" for case_id in ids)
    return ", ".join(f"{group} ({count})" for group, count in groups.items())


def main() -> int:
    out, agent = Path(sys.argv[1]), sys.argv[2]
    expected = sorted((out / "cases.txt").read_text().split(), key=case_key)
    index = out / "reports" / "index.json"
    try:
        results = json.loads(index.read_text()).get(agent, {})
    except (OSError, ValueError) as error:
        print(f"autobahn: no report at {index} ({error})")
        results = {}
    by_behaviour: dict[str, list[str]] = {behaviour: [] for behaviour in BEHAVIOURS}
    for case_id in sorted(results, key=case_key):
        behaviour = results[case_id].get("behavior")
        by_behaviour[behaviour if behaviour in by_behaviour else "FAILED"].append(case_id)
    missing = [case_id for case_id in expected if case_id not in results]

    print(
        f"autobahn: {len(results)} of {len(expected)} cases ran; report {index.with_suffix('.html')}"
    )
    for behaviour in BEHAVIOURS:
        print(f"  {behaviour:<14} {len(by_behaviour[behaviour]):4}")
    for behaviour in ["FAILED", "NON-STRICT", "INFORMATIONAL"]:
        if by_behaviour[behaviour]:
            print(f"{behaviour}: {', '.join(by_behaviour[behaviour])}")
    if by_behaviour["UNIMPLEMENTED"]:
        print(f"UNIMPLEMENTED: {grouped(by_behaviour['UNIMPLEMENTED'])}")
    odd_closes = [
        f"{case_id} ({result.get('behaviorClose')}, code {result.get('remoteCloseCode')})"
        for case_id, result in sorted(results.items(), key=lambda item: case_key(item[0]))
        if result.get("behavior") != "UNIMPLEMENTED"
        and result.get("behaviorClose") not in ("OK", "INFORMATIONAL")
    ]
    if odd_closes:
        print(f"close behaviour not OK (shown, not counted): {', '.join(odd_closes)}")
    if missing:
        print(f"DID NOT RUN (counted as failed): {len(missing)} cases: {grouped(missing)}")
    failed = len(by_behaviour["FAILED"]) + len(missing)
    counts = ", ".join(
        f"{len(by_behaviour[behaviour])} {behaviour.lower()}" for behaviour in BEHAVIOURS[:-1]
    )
    print(f"autobahn: {counts}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
