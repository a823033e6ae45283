"""Recomputes every tensor of an `advmnist trace --out` file in PyTorch, without advmnist's code.

Loads the model file with safetensors.torch.load_file, rebuilds Caffe's LeNet from it in
PyTorch (conv1 -> maxpool2 -> conv2 -> maxpool2 -> flatten (C,H,W) -> fc1 -> ReLU -> fc2), runs
the trace's `forward.input` through it in the trace's precision (float32, or float64 for a
`--f64` trace), takes the gradient of the image's own cross-entropy with autograd, catching
every intermediate gradient with a hook, and prints, per traced tensor, the largest absolute
difference and that difference relative to the tensor's largest PyTorch value; for max-pool
indices, how many differ. With the image number from the trace's metadata it also checks the
traced clean image against the MNIST test file (pixel/255 in float32, as advmnist reads it).

Names (docs/walkthrough.md): forward.X is stage X's output, backward.X = dL/d(forward.X),
grad.P = dL/dP; forward.poolK.indices as max_pool2d(return_indices=True).

Usage: python scripts/audit_with_pytorch.py MODEL.safetensors TRACE.safetensors
Needs: torch, numpy, safetensors (e.g. a venv outside this folder).
"""
import gzip, os, sys
import numpy as np, torch, torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

model_path, trace_path = sys.argv[1], sys.argv[2]
w = load_file(model_path)
trace = load_file(trace_path)
with safe_open(trace_path, "pt") as f:
    meta = f.metadata() or {}
dtype = trace["forward.input"].dtype
label = int(meta["label"])

ours = {}  # the PyTorch values, by trace name
grads = {}  # dL/d(forward.X), caught by hooks


def keep(name, t):
    """Records a forward value and hooks its gradient under the same stage name."""
    ours["forward." + name] = t
    if t.requires_grad:
        t.register_hook(lambda g: grads.__setitem__("backward." + name, g))
    return t


params = {k: v.to(dtype).clone().requires_grad_(True) for k, v in w.items()}
x = trace["forward.input"].clone().requires_grad_(True)
keep("input", x)
h = keep("conv1", F.conv2d(x, params["conv1.weight"], params["conv1.bias"]))
h, i1 = F.max_pool2d(h, 2, return_indices=True)
keep("pool1", h)
ours["forward.pool1.indices"] = i1
h = keep("conv2", F.conv2d(h, params["conv2.weight"], params["conv2.bias"]))
h, i2 = F.max_pool2d(h, 2, return_indices=True)
keep("pool2", h)
ours["forward.pool2.indices"] = i2
h = keep("flatten", h.flatten(1))
h = keep("fc1", F.linear(h, params["fc1.weight"], params["fc1.bias"]))
h = keep("relu", F.relu(h))
logits = keep("logits", F.linear(h, params["fc2.weight"], params["fc2.bias"]))
ours["forward.softmax"] = F.softmax(logits, 1)
loss = F.cross_entropy(logits, torch.tensor([label]), reduction="none")
ours["forward.loss"] = loss
loss.sum().backward()
ours.update(grads)
for k, p in params.items():
    ours["grad." + k] = p.grad

if "image" in meta:
    mnist = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist")
    raw = gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).read()
    n = int(meta["image"])
    # pixel/255 in float32, as advmnist reads images (a --f64 trace widens those f32 pixels).
    img = np.frombuffer(raw, np.uint8, offset=16 + 784 * n, count=784).astype(np.float32) / np.float32(255)
    clean = torch.from_numpy(img.reshape(1, 1, 28, 28)).to(dtype)
    ours["image.clean" if "image.clean" in trace else "forward.input"] = clean
    if "image.perturbed" in trace:
        ours["image.perturbed"] = trace["forward.input"]  # the network's input, by definition

print(f"torch {torch.__version__}, {dtype}, label {label}, model {model_path}, trace {trace_path}")
print(f"{'tensor':<22} {'shape':<15} {'max |diff|':>11} {'rel. to max':>11}")
worst = 0.0
for name, theirs in trace.items():
    if name not in ours:
        print(f"{name:<22} (not recomputed)")
        continue
    mine = ours[name].detach()
    shape = "(" + ",".join(str(d) for d in theirs.shape) + ")"
    if name.endswith(".indices"):
        differ = int((mine != theirs).sum())
        print(f"{name:<22} {shape:<15} {differ:>11} {'of ' + str(theirs.numel()):>11}  indices that differ")
        continue
    diff = (mine.double() - theirs.double()).abs().max().item()
    scale = mine.double().abs().max().item()
    rel = diff / scale if scale > 0 else float(diff > 0)
    worst = max(worst, rel)
    print(f"{name:<22} {shape:<15} {diff:>11.3e} {rel:>11.3e}")
print(f"largest difference relative to its tensor's largest value: {worst:.3e}")
