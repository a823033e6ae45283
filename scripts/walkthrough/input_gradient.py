"""docs/walkthrough.md, sections 5 and 6: the signs of the input gradient, where it is exactly 0,
and why: the tied pooling windows of the blank background.

Usage: python3 scripts/walkthrough/input_gradient.py TRACE.safetensors
"""
import sys
import numpy as np
from trace_file import load

t, _ = load(sys.argv[1])
g, x = t["backward.input"][0, 0], t["forward.input"][0, 0]
print(f"backward.input: {(g > 0).sum()} positive, {(g < 0).sum()} negative, {(g == 0).sum()} exactly 0")
zeros = np.argwhere(g == 0)
print(f"every zero in row 27 or column 27: {bool(((zeros == 27).any(1)).all())}")
background = x == 0
print(f"background pixels (x == 0): {background.sum()}, of which {(background & (g != 0)).sum()} "
      f"have a non-zero gradient")
print("signs (+, -, 0; # where x > 0.5):")
for gr, xr in zip(g, x):
    print("".join("#" if xv > 0.5 else "+" if gv > 0 else "-" if gv < 0 else "0" for gv, xv in zip(gr, xr)))
# pool1's last row of windows reads conv1 rows 22 and 23; the tie rule gives a tied window to row 22.
c1 = t["forward.conv1"][0]
windows = c1[:, 22:24, :].reshape(20, 2, 12, 2).transpose(0, 2, 1, 3).reshape(20, 12, 4)
tied = (windows == windows[:, :, :1]).all(2)
print(f"pool1's last window row: {tied.sum()} of {tied.size} windows are exact ties")
index = t["forward.pool1.indices"][0]
won = index[index // 24 == 23] % 24
print(f"conv1 row 23 wins {won.size} windows, at conv1 columns {won.min()} to {won.max()}")
row = np.flatnonzero(g[27] != 0)
print(f"pixels of row 27 with a non-zero gradient: columns {row.min()} to {row.max()}")
