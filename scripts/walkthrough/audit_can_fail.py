"""Shows that scripts/audit_numpy.py can fail: writes copies of a trace with one thing wrong each
(one value's sign flipped in a tensor, one max-pool winner moved, the last pixel of the image
changed, the label changed) and prints which tensors the audit then reports as FAIL.

Usage: python3 scripts/walkthrough/audit_can_fail.py MODEL.safetensors TRACE.safetensors
"""
import json, os, struct, sys, tempfile
import numpy as np
import trace_file  # noqa: F401 (puts scripts/ on the path)
import audit_numpy

model, trace_path = sys.argv[1], sys.argv[2]
w = {k: v.astype(float) for k, v in audit_numpy.read_safetensors(model)[0].items()}
raw = open(trace_path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8 : 8 + n])
kind = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}


def audit_with(name, change, label=None):
    """The audit's failing tensors once `change` has been applied to tensor `name`'s values (and
    the metadata's label set to `label`, the header padded with spaces to its length)."""
    start, end = (8 + n + o for o in header[name]["data_offsets"])
    values = np.frombuffer(raw[start:end], kind[header[name]["dtype"]]).copy()
    change(values)
    head = raw[8 : 8 + n]
    if label is not None:
        meta = dict(header["__metadata__"], label=str(label))
        head = json.dumps(dict(header, __metadata__=meta), separators=(",", ":")).encode().ljust(n)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "changed.safetensors")
        open(path, "wb").write(raw[:8] + head + raw[8 + n : start] + values.tobytes() + raw[end:])
        rows, _ = audit_numpy.audit(w, path)
    return [k for k, r in rows.items() if not r[4]]


def flip_largest(v):
    v[np.argmax(np.abs(v))] *= -1


def flip_median(v):  # the non-zero value of median magnitude
    nonzero = np.flatnonzero(v)
    v[nonzero[np.argsort(np.abs(v[nonzero]))[len(nonzero) // 2]]] *= -1


print(f"unchanged: FAIL {audit_with('forward.input', lambda v: None)}")
for name in ("forward.conv2", "forward.softmax", "backward.logits", "backward.input",
             "grad.conv1.weight", "grad.fc1.weight"):
    print(f"{name}, largest value's sign flipped: FAIL {audit_with(name, flip_largest)}")
    print(f"{name}, median value's sign flipped: FAIL {audit_with(name, flip_median)}")


def move_first_winner(v):
    v[0] += 1


def brighten_last_pixel(v):
    v[-1] += 1 / 255


print(f"forward.pool1.indices, one winner moved: FAIL {audit_with('forward.pool1.indices', move_first_winner)}")
print(f"forward.input, last pixel + 1/255: FAIL {audit_with('forward.input', brighten_last_pixel)}")
wrong = (int(header["__metadata__"]["label"]) + 1) % 10
print(f"the metadata's label set to {wrong}: FAIL {audit_with('forward.input', lambda v: None, label=wrong)}")
