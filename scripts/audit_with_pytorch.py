"""Recomputes every tensor of an `advmnist trace --out` file in PyTorch, without advmnist's code.

Rebuilds Caffe's LeNet from the model file (conv1 -> maxpool2 -> conv2 -> maxpool2 -> flatten
(C,H,W) -> fc1 -> ReLU -> fc2), and around it what the trace was made with: a committee of
several such models (`--committee`: L = -log of the mean of the members' softmax, docs/math.md
section 11) or low-pass filter stages in front (`--pre lowpass:S[,noise=SIGMA]`: the separable
Gaussian blur with zero padding of docs/defences.md, after clip(x + sigma z, 0, 1) for a noisy
one). The test image and its label come from the MNIST files (checked against
mnist/SHA256SUMS), not from the trace. For `--noise fgsm` the attack step is recomputed from the
clean image: the sign of the classifier's own input gradient (taken in float64, so that it is
the exact sign), then clip(x + eps sign, 0, 1) in float32 as advmnist takes it. Then the image
goes forward in the trace's precision (float32, or float64 for a `--f64` trace), back from the
loss with autograd, a hook catching every intermediate gradient, and for each traced tensor the
script prints the largest absolute difference and that difference over the tensor's largest
PyTorch value; for max-pool indices, how many differ.

Not recomputed (said so in the table, and taken from the trace where the rest needs them):
the injected noise `pre{k}.noise` and a Gaussian `--noise` image (advmnist's own random draws),
the FGSM image of a noisy filter (its gradient averages 10 draws, of which the trace holds one),
and autoencoder stages (`dae:FILE`: scripts/peers has a PyTorch autoencoder, not this one).

Names (docs/walkthrough.md, sections 1 and 10): forward.X is stage X's output, backward.X =
dL/d(forward.X), grad.P = dL/dP; memberK.X for committee member K; preK.output and
backward.preK = dL/d(input of stage K) for a pipeline.

Usage: python scripts/audit_with_pytorch.py MODEL[,MODEL...] TRACE.safetensors
(several models, comma-separated in member order, for a committee's trace).
Needs torch, numpy and safetensors: python3 -m venv venv && venv/bin/pip install torch numpy safetensors
"""
import gzip, hashlib, math, os, sys
import numpy as np, torch, torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

if len(sys.argv) != 3:
    sys.exit(__doc__)
model_paths, trace_path = sys.argv[1].split(","), sys.argv[2]
trace = load_file(trace_path)
with safe_open(trace_path, "pt") as f:
    meta = f.metadata() or {}
if meta.get("format") != "advmnist-trace":
    sys.exit(f"{trace_path}: not an advmnist trace file")
members = [load_file(p) for p in model_paths]
committee = "members" in meta
if len(members) != (len(meta["members"].split(",")) if committee else 1):
    sys.exit(f"{trace_path}: traced {meta.get('members', 'one model')}; give as many model files")
dtype = trace["forward.input"].dtype
stages = [s.strip() for s in meta["pre"].split(" + ")] if "pre" in meta else []
not_recomputed = {}  # trace name: why

# The test image (pixel/255 in float32, as advmnist reads it) and its label, from the files.
mnist = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist")
sums = dict(line.split()[::-1] for line in open(os.path.join(mnist, "SHA256SUMS")))
raw = {}
for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    gz = open(os.path.join(mnist, name), "rb").read()
    if hashlib.sha256(gz).hexdigest() != sums[name]:
        sys.exit(f"mnist/{name}: its SHA-256 is not the one in mnist/SHA256SUMS")
    raw[name] = gzip.decompress(gz)
n = int(meta["image"])
pixels = np.frombuffer(raw["t10k-images-idx3-ubyte.gz"], np.uint8, 784, 16 + 784 * n).astype(np.float32)
clean = torch.from_numpy(pixels / np.float32(255)).reshape(1, 1, 28, 28)
label = raw["t10k-labels-idx1-ubyte.gz"][8 + n]


def lowpass_kernel(size):
    """advmnist's 1-D kernel (defences/lowpass.rs, kernel_1d): exp(-u^2 / (2 var)) at `size`
    points over [-3, 3], normalised in float64, then rounded to float32; the study's variances."""
    variance = {3: 7.0, 5: 1.3, 7: 0.6}[size]
    points = [math.exp(-u * u / (2.0 * variance)) for u in (-3.0 + 6.0 * i / (size - 1) for i in range(size))]
    return torch.tensor([v / sum(points) for v in points], dtype=torch.float32)


def run(x, dtype, keep):
    """The traced classifier's loss at image x; keep(name, tensor) records a value by trace name."""
    x = keep("pre.input" if stages else "forward.input", x.to(dtype).requires_grad_(True))
    h = x
    for k, stage in enumerate(stages, 1):
        if stage.startswith("dae:"):  # its output from the trace; the gradient stops here
            not_recomputed[f"pre{k}.output"] = "autoencoder stage"
            not_recomputed.update({f"backward.pre{j}": "gradient through an autoencoder" for j in range(1, k + 1)})
            h = trace[f"pre{k}.output"].to(dtype).requires_grad_(True)
            continue
        keep(f"backward.pre{k}", h)  # dL/d(input of stage k)
        size, *options = stage.removeprefix("lowpass:").split(",")
        sigma = next((float(o.split("=")[1]) if "=" in o else 0.1 for o in options if o.startswith("noise")), 0.0)
        if sigma > 0:  # x' = clip(x + sigma z, 0, 1), gradient 0 where clipped (ends included)
            z = trace[f"pre{k}.noise"].to(dtype)  # advmnist's draw 0, held
            not_recomputed[f"pre{k}.noise"] = "advmnist's own random draw"
            v = h + torch.tensor(np.float32(sigma), dtype=dtype) * z
            h = keep(f"pre{k}.noisy", torch.where((v > 0) & (v < 1), v, v.detach().clamp(0, 1)))
        kernel, r = lowpass_kernel(int(size)).to(dtype), int(size) // 2
        h = F.conv2d(h, kernel.view(1, 1, 1, -1), padding=(0, r))  # row pass, then column pass
        h = keep(f"pre{k}.output", F.conv2d(h, kernel.view(1, 1, -1, 1), padding=(r, 0)))
    if stages:
        keep("forward.input", h)
    log_probs = []
    for m, w in enumerate(members, 1):
        prefix = f"member{m}." if committee else ""
        p = {key: v.to(dtype).requires_grad_(True) for key, v in w.items()}
        for key, v in p.items():
            keep(prefix + "grad." + key, v)
        hm = keep(prefix + "backward.input", h.clone()) if committee else h
        hm = keep(prefix + "forward.conv1", F.conv2d(hm, p["conv1.weight"], p["conv1.bias"]))
        hm, i1 = F.max_pool2d(hm, 2, return_indices=True)
        keep(prefix + "forward.pool1", hm), keep(prefix + "forward.pool1.indices", i1)
        hm = keep(prefix + "forward.conv2", F.conv2d(hm, p["conv2.weight"], p["conv2.bias"]))
        hm, i2 = F.max_pool2d(hm, 2, return_indices=True)
        keep(prefix + "forward.pool2", hm), keep(prefix + "forward.pool2.indices", i2)
        hm = keep(prefix + "forward.flatten", hm.flatten(1))
        hm = keep(prefix + "forward.fc1", F.linear(hm, p["fc1.weight"], p["fc1.bias"]))
        hm = keep(prefix + "forward.relu", F.relu(hm))
        z = keep(prefix + "forward.logits", F.linear(hm, p["fc2.weight"], p["fc2.bias"]))
        keep(prefix + "forward.softmax", F.softmax(z, 1))
        log_probs.append(F.log_softmax(z, 1))
    if not committee:
        return keep("forward.loss", F.cross_entropy(z, torch.tensor([label]), reduction="none")).sum()
    s = torch.stack(log_probs)  # (M, 1, 10): the members' log-softmax
    c = keep("committee.logits", torch.logsumexp(s, 0) - math.log(len(members)))  # log pbar
    keep("committee.probs", c.exp())
    keep("committee.weights", torch.softmax(s[:, 0, label], 0))  # w_m = p_m[y] / sum_m' p_m'[y]
    return keep("committee.loss", -c[:, label]).sum()


ours = {"image.clean": clean.to(dtype)}
x = clean
if meta.get("noise") == "fgsm":
    if any("noise" in s or s.startswith("dae:") for s in stages):
        why = "its gradient averages 10 noise draws" if any("noise" in s for s in stages) else "autoencoder"
        not_recomputed["image.perturbed"] = why
        x = trace["image.perturbed"]
    else:  # the sign of the float64 gradient at the clean image, the step in float32
        x64 = clean.double().requires_grad_(True)
        run(x64, torch.float64, lambda name, t: t).backward()
        sign = torch.sign(x64.grad).float()
        eps = torch.tensor(np.float32(meta["level"]))
        x = ours["image.perturbed"] = torch.clamp(clean + eps * sign, 0, 1).to(dtype)
elif "noise" in meta:
    not_recomputed["image.perturbed"] = "advmnist's own random draw"
    x = trace["image.perturbed"]

grads = {}


def keep(name, t):
    """Records a forward value, and hooks its gradient under the trace's backward name."""
    if name.startswith("backward.") or ".backward." in name or ".grad." in name or name.startswith("grad."):
        t.register_hook(lambda g: grads.__setitem__(name, g))
    else:
        ours[name] = t
        if t.requires_grad and (name.startswith("forward.") or ".forward." in name):
            t.register_hook(lambda g: grads.__setitem__(name.replace("forward.", "backward."), g))
    return t


run(x, dtype, keep).backward()
ours.update(grads)

print(f"torch {torch.__version__}, {dtype}, label {label} (labels file; trace: {meta['label']}),")
print(f"models {','.join(model_paths)}, trace {trace_path}")
print(f"{'tensor':<30} {'shape':<15} {'max |diff|':>11} {'rel. to max':>11}")
worst = 0.0
for name, theirs in trace.items():
    if name not in ours:
        print(f"{name:<30} (not recomputed: {not_recomputed.get(name, 'unknown to this script')})")
        continue
    mine = ours[name].detach().reshape(theirs.shape)
    shape = "(" + ",".join(str(d) for d in theirs.shape) + ")"
    if name.endswith(".indices"):
        differ = int((mine != theirs).sum())
        print(f"{name:<30} {shape:<15} {differ:>11} {'of ' + str(theirs.numel()):>11}  indices that differ")
        continue
    diff = (mine.double() - theirs.double()).abs().max().item()
    scale = mine.double().abs().max().item()
    rel = diff / scale if scale > 0 else float(diff > 0)
    worst = max(worst, rel)
    print(f"{name:<30} {shape:<15} {diff:>11.3e} {rel:>11.3e}")
print(f"largest difference relative to its tensor's largest value: {worst:.3e}")
if label != int(meta["label"]):
    sys.exit(f"the trace's label {meta['label']} is not the labels file's {label}")
