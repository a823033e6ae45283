"""docs/walkthrough.md, section 3: fc2's backward against the one-rival approximation
p[rival] (W_fc2[rival] - W_fc2[label]), and where the ReLU stops the gradient.

Usage: python3 scripts/walkthrough/fc_and_relu.py MODEL.safetensors TRACE.safetensors
"""
import sys
import numpy as np
from trace_file import load

w, _ = load(sys.argv[1])
t, meta = load(sys.argv[2])
label = int(meta["label"])
p, d_relu = t["forward.softmax"][0], t["backward.relu"][0]
rival = int(np.argmax(np.where(np.arange(10) == label, -1, p)))
approx = p[rival] * (w["fc2.weight"][rival] - w["fc2.weight"][label])
print(f"backward.relu against p[{rival}] (W_fc2[{rival}] - W_fc2[{label}]):")
print(f"  correlation {np.corrcoef(d_relu, approx)[0, 1]:.4f}, "
      f"relative L2 difference {np.linalg.norm(d_relu - approx) / np.linalg.norm(d_relu):.3f}")
off = t["forward.relu"][0] <= 0
d_fc1 = t["backward.fc1"][0]
print(f"fc1 units off (forward.relu == 0): {off.sum()} of {off.size}; live: {(~off).sum()}")
print(f"zeros of backward.fc1: {(d_fc1 == 0).sum()}, exactly at the units that are off: "
      f"{np.array_equal(d_fc1 == 0, off)}")
print(f"zeros of grad.fc1.bias: {(t['grad.fc1.bias'] == 0).sum()}; "
      f"zero rows of grad.fc1.weight: {(t['grad.fc1.weight'] == 0).all(1).sum()}, "
      f"zero entries: {(t['grad.fc1.weight'] == 0).sum():,}")
