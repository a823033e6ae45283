"""docs/walkthrough.md, section 4: fc1's backward mixes the live units into every feature, and
max-pooling routes each window's gradient to its winner (forward.poolK.indices).

Usage: python3 scripts/walkthrough/pooling.py TRACE.safetensors
"""
import sys
import numpy as np
from trace_file import load

t, _ = load(sys.argv[1])
print(f"zeros of backward.flatten: {(t['backward.flatten'] == 0).sum()} of {t['backward.flatten'].size}")
for k, conv in ((2, "conv2"), (1, "conv1")):
    d_pool, d_conv = t[f"backward.pool{k}"][0], t[f"backward.{conv}"][0]
    index = t[f"forward.pool{k}.indices"][0]  # (C, OH, OW): h*W + w in the input plane
    flat = d_conv.reshape(len(d_conv), -1)
    received = np.take_along_axis(flat, index.reshape(len(index), -1), 1).reshape(d_pool.shape)
    winners = np.zeros(flat.shape, bool)
    np.put_along_axis(winners, index.reshape(len(index), -1), True, 1)
    print(f"backward.{conv}: {(d_conv == 0).sum()} zeros of {d_conv.size}; the {winners.sum()} winners "
          f"receive backward.pool{k} unchanged: {np.array_equal(received, d_pool)}; every other "
          f"input gets 0: {(flat[~winners] == 0).all()}")
