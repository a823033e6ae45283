"""docs/walkthrough.md, section 10: in the trace of a pipeline with a noisy low-pass filter,
which pixels the injected noise clipped, and where the white-box gradient stops.

Usage: python3 scripts/walkthrough/pipeline_clipping.py TRACE.safetensors
"""
import sys
import numpy as np
from trace_file import load

t, meta = load(sys.argv[1])
noisy, g = t["pre1.noisy"], t["backward.pre1"]
clipped = (noisy == 0) | (noisy == 1)
print(f"{meta['pre']}: pre1.noisy clipped to 0: {(noisy == 0).sum()}, to 1: {(noisy == 1).sum()} "
      f"of {noisy.size} pixels")
print(f"zeros of backward.pre1: {(g == 0).sum()}, exactly at the clipped pixels: "
      f"{np.array_equal(g == 0, clipped)}")
print(f"exact zeros of pre1.output: {(t['pre1.output'] == 0).sum()}")
