"""Reading a trace or model file for the walkthrough's scripts: scripts/audit_numpy.py's reader
(safetensors parsed by hand, numpy only), with each tensor widened to float64."""
import os, signal, sys

# Piped into `head`, end quietly as command-line tools do, not with a BrokenPipeError.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from audit_numpy import read_safetensors  # noqa: E402


def load(path):
    """{name: float64 array (indices stay integers)}, metadata."""
    tensors, meta = read_safetensors(path)
    return {k: v if v.dtype.kind == "i" else v.astype(float) for k, v in tensors.items()}, meta
