"""docs/walkthrough.md, section 8: the numbers behind `advmnist show`'s figure, from the traces
of the first eight test digits (clean, then `--noise fgsm --level 0.1`).

Usage: python3 scripts/walkthrough/eight_digits.py CLEAN0 ... CLEAN7 FGSM0 ... FGSM7
"""
import sys
import numpy as np
from trace_file import load

paths = sys.argv[1:]
half = len(paths) // 2
print(f"{'digit':>5} {'label':>5} {'g == 0':>6} {'in row/col 27':>13} {'max |g|':>8} {'p[label]':>9}")
for path in paths[:half]:
    t, meta = load(path)
    g = t["backward.input"][0, 0]
    zeros = np.argwhere(g == 0)
    p = t["forward.softmax"][0, int(meta["label"])]
    print(f"{meta['image']:>5} {meta['label']:>5} {len(zeros):>6} {str(bool((zeros == 27).any(1).all())):>13} "
          f"{np.abs(g).max():>8.1e} {p:>9.6f}")
distortion = [np.abs(t["image.perturbed"] - t["image.clean"]).mean() for t, _ in map(load, paths[half:])]
print(f"mean |image.perturbed - image.clean| of the {len(distortion)} FGSM traces: {np.mean(distortion):.4f}")
