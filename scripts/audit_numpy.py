"""Recomputes `advmnist trace --out` files of one LeNet with numpy and the standard library alone.

Reads the model and the traces (safetensors, parsed by hand) and the bundled MNIST test files
(checked against mnist/SHA256SUMS; the label from the labels file: a trace made with `--data`
fails), and recomputes in float64 twice
(docs/math.md, sections 2 to 8):
- end to end: the test image forward and back, for a `--noise fgsm` trace the FGSM image first,
  from the clean one. Column "end to end": the largest |difference| over the tensor's largest
  |value|. An f64 trace must agree to 1e-12.
- stage by stage: each tensor from the trace's own inputs to its stage (column "stage", same
  scale), which must be within that stage's rounding bound in the trace's precision (column
  "bound": docs/math.md, section 10, "The rounding bound of one stage"), element by element:
  column "used", the largest |difference| over its element's bound, must be at most 1.
  Max-pool indices, the images and the label must be equal.
Usage: python3 scripts/audit_numpy.py MODEL.safetensors TRACE.safetensors [TRACE ...]
Needs numpy: python3 -m venv venv && venv/bin/pip install numpy
"""
import gzip, hashlib, json, math, os, struct, sys
import numpy as np

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist")
U = {"f32": 2.0**-24 + 2.0**-53, "f64": 2.0**-53 + 2.0**-53}  # unit roundoff: the trace's + numpy's


def read_safetensors(path):  # 8-byte little-endian header length, JSON header, little-endian data
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta, kind = header.pop("__metadata__", {}), {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    data = lambda v: raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]]
    tensors = {k: np.frombuffer(data(v), kind[v["dtype"]]).reshape(v["shape"])
               for k, v in header.items()}
    return tensors, meta


def mnist_test(image):  # the test image as float32 pixel/255, as advmnist reads it, and its label
    sums = dict(line.split()[::-1] for line in open(os.path.join(MNIST, "SHA256SUMS")))
    files = []
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        gz = open(os.path.join(MNIST, name), "rb").read()
        if hashlib.sha256(gz).hexdigest() != sums[name]:
            sys.exit(f"mnist/{name}: its SHA-256 is not the one in mnist/SHA256SUMS")
        files.append(gzip.decompress(gz))
    images, labels = files  # IDX headers of 16 and 8 bytes (mnist/README.md)
    pixels = np.frombuffer(images, np.uint8, 784, 16 + 784 * image).astype(np.float32)
    return (pixels / np.float32(255)).reshape(1, 28, 28), labels[8 + image]


def gamma(n, u):  # n roundings of relative size <= u: Higham, Accuracy and Stability, eq. 3.8
    return n * u / (1 - n * u)


def rounded(f, a, b, n, u, bias=0.0):
    """f(a, b) + bias, f bilinear, each output a sum of n products: with the bound on its rounding
    in any order of summation, FMA or not, gamma_{n+1} (f(|a|, |b|) + |bias|)."""
    return f(a, b) + bias, gamma(n + 1, u) * (f(abs(a), abs(b)) + abs(bias))


def conv(w, x):  # y[o,i,j] = sum_{c,ki,kj} w[o,c,ki,kj] x[c,i+ki,j+kj], every output in one order
    O, C, K, _ = w.shape
    y = np.zeros((O, x.shape[1] - K + 1, x.shape[2] - K + 1))
    for c, ki, kj in np.ndindex(C, K, K):
        y += w[:, c, ki, kj, None, None] * x[c, ki : ki + y.shape[1], kj : kj + y.shape[2]]
    return y


def conv_input_grad(w, dy):  # the full convolution with the flipped kernels (math.md, section 7)
    m = w.shape[2] - 1
    return conv(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], np.pad(dy, ((0, 0), (m, m), (m, m))))


def conv_weight_grad(dy, x):  # dw[o,c,ki,kj] = sum_{i,j} dy[o,i,j] x[c,i+ki,j+kj]
    return np.stack([conv(dy[:, None], x[c : c + 1]) for c in range(len(x))], 1)


def maxpool(x):
    """2x2 windows, stride 2, advmnist's tie rule (src/layers/maxpool.rs): the candidates in
    row-major order, a strict > keeps the first maximum, so a blank, tied window's top-left wins.
    The maxima, and PyTorch's indices: the flat position h*W + w in the input plane."""
    C, H, W = x.shape
    candidates = [x[:, a::2, b::2] for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    y, at = candidates[0], np.zeros(candidates[0].shape, int)
    for q in (1, 2, 3):
        y, at = np.where(candidates[q] > y, candidates[q], y), np.where(candidates[q] > y, q, at)
    return y, (2 * np.arange(H // 2)[:, None] + at // 2) * W + 2 * np.arange(W // 2) + at % 2


def unpool(dy, index, shape):  # each window's winner gets dy, the other three inputs 0
    dx = np.zeros((shape[0], shape[1] * shape[2]))
    np.put_along_axis(dx, index.reshape(shape[0], -1), dy.reshape(shape[0], -1), 1)
    return dx.reshape(shape)


def lenet(w, x, label, u, given=lambda name, value: value):
    """One image's pass: {trace name: (value, rounding bound of its stage alone)}. Each stage reads
    given(name, value) of the stages before it: our values (end to end) or the trace's."""
    t = {}

    def keep(name, value, bound=0.0):
        t[name] = (value, bound)
        return given(name, value)

    x = keep("forward.input", x)
    b1, b2 = w["conv1.bias"][:, None, None], w["conv2.bias"][:, None, None]
    c1 = keep("forward.conv1", *rounded(conv, w["conv1.weight"], x, 25, u, b1))
    p1, i1 = maxpool(c1)
    p1, i1 = keep("forward.pool1", p1), keep("forward.pool1.indices", i1)
    c2 = keep("forward.conv2", *rounded(conv, w["conv2.weight"], p1, 500, u, b2))
    p2, i2 = maxpool(c2)
    p2, i2 = keep("forward.pool2", p2), keep("forward.pool2.indices", i2)
    f = keep("forward.flatten", p2.reshape(800))
    h = keep("forward.fc1", *rounded(np.matmul, w["fc1.weight"], f, 800, u, w["fc1.bias"]))
    r = keep("forward.relu", np.maximum(h, 0))
    z = keep("forward.logits", *rounded(np.matmul, w["fc2.weight"], r, 500, u, w["fc2.bias"]))
    # Softmax and loss as advmnist computes them (libm's exp and ln, as Rust's), the loss as
    # max + ln(sum in index order) - z[label], so that an f64 trace's loss, a difference of two
    # numbers near z[label], is matched. Their rounding bounds: math.md, section 10.
    d = z - z.max()
    e = np.array([math.exp(v) for v in d])
    p = keep("forward.softmax", e / e.sum(), e / e.sum() * u * (14 - d - d.min()))
    l = math.log(sum(e))
    loss = l + z.max() - z[label]
    bound = u * (11 - d.min() + 2 * l + abs(l + z.max()) + abs(loss))
    keep("forward.loss", np.array([loss]), bound)
    others = [k for k in range(10) if k != label]
    dz = p.copy()
    dz[label] = -sum(p[k] for k in others)  # p_y - 1 as -(sum of the others): math.md, section 2
    bound = np.where(np.arange(10) == label, gamma(8, u) * p[others].sum(), 0)
    dz = keep("backward.logits", dz, bound)
    keep("grad.fc2.bias", dz)
    keep("grad.fc2.weight", *rounded(np.outer, dz, r, 1, u))
    dr = keep("backward.relu", *rounded(np.matmul, dz, w["fc2.weight"], 10, u))
    dh = keep("backward.fc1", dr * (r > 0))
    keep("grad.fc1.bias", dh)
    keep("grad.fc1.weight", *rounded(np.outer, dh, f, 1, u))
    df = keep("backward.flatten", *rounded(np.matmul, dh, w["fc1.weight"], 500, u))
    dc2 = keep("backward.conv2", unpool(keep("backward.pool2", df.reshape(50, 4, 4)), i2, c2.shape))
    keep("grad.conv2.weight", *rounded(conv_weight_grad, dc2, p1, 64, u))
    keep("grad.conv2.bias", *rounded(lambda a, one: a.sum((1, 2)) * one, dc2, 1.0, 64, u))
    dp1 = keep("backward.pool1", *rounded(conv_input_grad, w["conv2.weight"], dc2, 50 * 25, u))
    dc1 = keep("backward.conv1", unpool(dp1, i1, c1.shape))
    keep("grad.conv1.weight", *rounded(conv_weight_grad, dc1, x, 576, u))
    keep("grad.conv1.bias", *rounded(lambda a, one: a.sum((1, 2)) * one, dc1, 1.0, 576, u))
    keep("backward.input", *rounded(conv_input_grad, w["conv1.weight"], dc1, 20 * 25, u))
    return t


def audit(w, path):  # {tensor: (end to end, stage, bound, used, PASS)}, and what the trace is
    trace, meta = read_safetensors(path)
    one_lenet = meta.get("format") == "advmnist-trace" and "forward.conv1" in trace
    if not one_lenet or meta.get("noise", "fgsm") != "fgsm":
        sys.exit(f"{path}: not a clean or FGSM trace of one LeNet (others: audit_with_pytorch.py)")
    clean, label = mnist_test(int(meta["image"]))
    x, u = clean.astype(float), U[meta["precision"]]
    images = {"image.clean": x}
    if "noise" in meta:  # the FGSM step in f32, as advmnist takes it
        sign = np.sign(lenet(w, x, label, u)["backward.input"][0]).astype(np.float32)
        perturbed = np.clip(clean + np.float32(meta["level"]) * sign, 0, 1)  # f32 arithmetic
        x = images["image.perturbed"] = perturbed.astype(float)
    # Without the batch axis of forward.* and backward.*; indices stay integers.
    theirs = {k: (v if v.dtype.kind == "i" else v.astype(float)) for k, v in trace.items()}
    theirs = {k: v.reshape(v.shape[k[0] in "fb" :]) for k, v in theirs.items()}
    ends = lenet(w, x, label, u)
    stages = lenet(w, x, label, u, given=lambda name, value: theirs[name])
    rows = {"label (labels file)": (0.0, 0.0, 0.0, 0.0, label == int(meta["label"]))}
    for name, t in theirs.items():
        mine, bound = stages.get(name, (images.get(name), 0.0))
        diff, bound = abs(t - mine), np.broadcast_to(bound, np.shape(mine))
        used = np.divide(diff, bound, out=np.where(diff > 0, np.inf, 0.0), where=bound > 0).max()
        scale = abs(mine).max() or 1.0
        end = abs(t - ends.get(name, (mine,))[0]).max() / scale
        ok = used <= 1 and (meta["precision"] == "f32" or end <= 1e-12)
        rows[name] = (end, diff.max() / scale, bound.max() / scale, used, bool(ok))
    what = f"{meta.get('noise', 'clean')} {meta.get('level', '')}".strip()
    return rows, f"image {meta['image']} ({what}), {meta['precision']}, label {label}"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model, meta = read_safetensors(sys.argv[1])
    if meta.get("format") != "advmnist-lenet":
        sys.exit(f"{sys.argv[1]}: not a LeNet model file of advmnist")
    w, worst = {k: v.astype(float) for k, v in model.items()}, {}
    for path in sys.argv[2:]:
        rows, what = audit(w, path)
        failed = [k for k, r in rows.items() if not r[4]]
        print(f"{path}: {what}: " + ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"))
        for k, r in rows.items():
            old = worst.get(k, (0.0, 0.0, 0.0, 0.0, True))
            worst[k] = (*(max(a, b) for a, b in zip(r[:4], old[:4])), r[4] and old[4])
    print(f"{'tensor':<22} {'end to end':>10} {'stage':>9} {'bound':>9} {'used':>9}", end="")
    print(f"  (largest of {len(sys.argv) - 2})")
    for k, (end, stage, bound, used, ok) in sorted(worst.items()):
        print(f"{k:<22} {end:>10.2e} {stage:>9.2e} {bound:>9.2e} {used:>9.2e}  {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if all(r[4] for r in worst.values()) else 1)
