"""Writes the fuzzing client's spec and the ids of the cases it will run (one a line).

Runs under the suite's Python 2.7, whose case list it uses: a pattern that matches nothing fails here,
where wstest would wait forever. Usage: python2.7 spec.py URL CASES EXCLUDE AGENT REPORTS_DIR OUT_DIR
"""

import json
import os
import sys

from autobahntestsuite.case import (
    CaseBasename,
    CaseCategories,
    Cases,
    CaseSetname,
    CaseSubCategories,
)
from autobahntestsuite.caseset import CaseSet


def patterns(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def main():
    url, cases, exclude, agent, reports, out = sys.argv[1:7]
    spec = {
        "outdir": reports,
        "servers": [{"agent": agent, "url": url, "options": {"version": 18}}],
        "cases": patterns(cases),
        "exclude-cases": patterns(exclude),
        "exclude-agent-cases": {},
    }
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    ids = case_set.parseSpecCases(spec)
    if not ids:
        sys.exit("autobahn: no case matches '" + cases + "' minus '" + exclude + "'")
    with open(os.path.join(out, "fuzzingclient.json"), "w") as spec_file:
        json.dump(spec, spec_file, indent=2)
    with open(os.path.join(out, "cases.txt"), "w") as ids_file:
        ids_file.write("\n".join(ids) + "\n")


main()
