"""A short run of benches/soak.py (the full run is `python benches/soak.py --minutes 10`): churned
connections leave no connection, subscription, Websocket object or fd behind, and RSS comes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parent.parent / "benches" / "soak.py"
SAFETY = 120.0  # seconds: 15 s of churn, the warm-up and the settling, on a loaded machine


def test_a_short_soak_returns_to_the_baseline():
    run = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.25", "--interval", "3"],
        capture_output=True,
        text=True,
        timeout=SAFETY,
    )
    print(run.stdout, run.stderr)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK:" in run.stdout
