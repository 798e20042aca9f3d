"""hyperws_server.py with `inline_reads=False` (every connection read on the I/O threads, the default before
2026-12-06): the `hyperws-ioreads` entry of compare.py, for A/B runs against the default."""

import os
import runpy
import sys

os.environ["HYPERWS_BENCH_IO_READS"] = "1"
sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hyperws_server.py")
runpy.run_path(sys.argv[0], run_name="__main__")
