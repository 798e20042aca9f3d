"""hyperws_server.py with `inline_reads=True` (plain connections read on the asyncio thread): the `hyperws-inline`
entry of compare.py, for A/B runs against the default."""

import os
import runpy
import sys

os.environ["HYPERWS_BENCH_INLINE_READS"] = "1"
sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hyperws_server.py")
runpy.run_path(sys.argv[0], run_name="__main__")
