"""docs/walkthrough.md, section 2: the logits, the softmax and d_logits = p - onehot of one trace,
the true class's entry two ways, and the share of the largest rival.

Usage: python3 scripts/walkthrough/softmax_gradient.py TRACE.safetensors
"""
import sys
import numpy as np
from trace_file import load

t, meta = load(sys.argv[1])
label = int(meta["label"])
z, p, dz = t["forward.logits"][0], t["forward.softmax"][0], t["backward.logits"][0]
np.set_printoptions(precision=3, linewidth=120)
print(f"label {label}, loss {t['forward.loss'][0]:.3e}, {meta['precision']}")
print("logits  ", z)
print("softmax ", p)
print("d_logits", dz)
others = np.delete(p, label)
print(f"1 - p[{label}] from the stored p[{label}]: {1 - p[label]:.4e}; "
      f"the sum of the other nine: {others.sum():.4e}; apart by {1 - (1 - p[label]) / others.sum():.2%}")
print(f"d_logits[{label}] = {dz[label]:.4e}")
rival = int(np.argmax(np.where(np.arange(10) == label, -1, p)))
print(f"largest rival: class {rival}, p = {p[rival]:.3e}, "
      f"{p[rival] / others.sum():.0%} of the {others.sum():.3e} left over")
