"""Recomputes an `advmnist trace --out` file of one LeNet with numpy and the standard library alone.

Reads the model file and the trace (safetensors, parsed by hand) and the MNIST test files
(checked against mnist/SHA256SUMS), takes the label from the labels file, and recomputes in
float64 (docs/math.md, sections 2 to 8), twice:
- end to end: the test image forward and back, and for a `--noise fgsm` trace first the FGSM
  image from the clean one. Column "end to end": the largest |difference| over the tensor's
  largest |value|; an f64 trace must agree to 1e-12.
- stage by stage: each tensor from the trace's own inputs to its stage. Each must be within the
  rounding bound of that stage in the trace's precision (docs/math.md, section 10, "The
  rounding bound of a stage"): column "stage", on the same scale as "bound". Max-pool indices
  and the FGSM image must be equal.

Usage: python3 scripts/audit_numpy.py MODEL.safetensors TRACE.safetensors [TRACE ...]
Needs numpy: python3 -m venv venv && venv/bin/pip install numpy
"""
import gzip, hashlib, json, math, os, struct, sys
import numpy as np

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist")
U = {"f32": 2.0**-24 + 2.0**-53, "f64": 2 * 2.0**-53}  # the trace's unit roundoff plus numpy's


def read_safetensors(path):
    """8-byte little-endian header length, a JSON header, then raw little-endian tensors."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    kind = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    get = lambda v: raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]]
    return {k: np.frombuffer(get(v), kind[v["dtype"]]).reshape(v["shape"]) for k, v in header.items()}, meta


def mnist_test(image):
    """Test image `image` as float32 pixel/255 (as advmnist reads it) and its label."""
    sums = dict(line.split()[::-1] for line in open(os.path.join(MNIST, "SHA256SUMS")))
    files = []
    for name, magic in (("t10k-images-idx3-ubyte", 2051), ("t10k-labels-idx1-ubyte", 2049)):
        gz = open(os.path.join(MNIST, name + ".gz"), "rb").read()
        if hashlib.sha256(gz).hexdigest() != sums[name + ".gz"]:
            sys.exit(f"mnist/{name}.gz: its SHA-256 is not the one in mnist/SHA256SUMS")
        raw = gzip.decompress(gz)
        assert struct.unpack(">II", raw[:8]) == (magic, 10000), f"{name}: not an MNIST test file"
        files.append(raw)
    pixels = np.frombuffer(files[0], np.uint8, 784, 16 + 784 * image).astype(np.float32)
    return (pixels / np.float32(255)).reshape(1, 28, 28), files[1][8 + image]


def gamma(n, u):  # n roundings of relative size <= u: Higham, "Accuracy and Stability ...", eq. 3.8
    return n * u / (1 - n * u)


def rounded(f, a, b, n, u, bias=0.0):
    """f(a, b) + bias, each output a sum of n products (f bilinear with coefficients 0 and 1), and
    the bound on its rounding in any order of summation, FMA or not: gamma_{n+1} (f(|a|,|b|) + |bias|)."""
    return f(a, b) + bias, gamma(n + 1, u) * (f(abs(a), abs(b)) + abs(bias))


def conv(w, x):  # y[o,i,j] = sum_{c,ki,kj} w[o,c,ki,kj] x[c,i+ki,j+kj], the same order everywhere
    O, C, K, _ = w.shape
    y = np.zeros((O, x.shape[1] - K + 1, x.shape[2] - K + 1))
    for c, ki, kj in np.ndindex(C, K, K):
        y += w[:, c, ki, kj, None, None] * x[c, ki : ki + y.shape[1], kj : kj + y.shape[2]]
    return y


def conv_input_grad(w, dy):  # dx[c,i+ki,j+kj] += w[o,c,ki,kj] dy[o,i,j]
    O, C, K, _ = w.shape
    dx = np.zeros((C, dy.shape[1] + K - 1, dy.shape[2] + K - 1))
    for c, ki, kj in np.ndindex(C, K, K):
        dx[c, ki : ki + dy.shape[1], kj : kj + dy.shape[2]] += np.tensordot(w[:, c, ki, kj], dy, 1)
    return dx


def conv_weight_grad(dy, x):  # dw[o,c,ki,kj] = sum_{i,j} dy[o,i,j] x[c,i+ki,j+kj]
    (O, H, W), C, K = dy.shape, x.shape[0], x.shape[1] - dy.shape[1] + 1
    dw = np.zeros((O, C, K, K))
    for c, ki, kj in np.ndindex(C, K, K):
        dw[:, c, ki, kj] = (dy * x[c, ki : ki + H, kj : kj + W]).sum((1, 2))
    return dw


def maxpool(x):
    """2x2 windows, stride 2, advmnist's tie rule (src/layers/maxpool.rs): the candidates in
    row-major order, a strict > keeps the first maximum, so a blank, tied window's top-left wins.
    The maxima, and PyTorch's indices: the flat position h*W + w in the input plane."""
    C, H, W = x.shape
    candidates = [x[:, a::2, b::2] for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    y, at = candidates[0], np.zeros(candidates[0].shape, int)
    for q in (1, 2, 3):
        wins = candidates[q] > y
        y, at = np.where(wins, candidates[q], y), np.where(wins, q, at)
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
    c1 = keep("forward.conv1", *rounded(conv, w["conv1.weight"], x, 25, u, w["conv1.bias"][:, None, None]))
    p1, i1 = maxpool(c1)
    p1, i1 = keep("forward.pool1", p1), keep("forward.pool1.indices", i1)
    c2 = keep("forward.conv2", *rounded(conv, w["conv2.weight"], p1, 500, u, w["conv2.bias"][:, None, None]))
    p2, i2 = maxpool(c2)
    p2, i2 = keep("forward.pool2", p2), keep("forward.pool2.indices", i2)
    f = keep("forward.flatten", p2.reshape(800))
    h = keep("forward.fc1", *rounded(np.matmul, w["fc1.weight"], f, 800, u, w["fc1.bias"]))
    r = keep("forward.relu", np.maximum(h, 0))
    z = keep("forward.logits", *rounded(np.matmul, w["fc2.weight"], r, 500, u, w["fc2.bias"]))
    # Softmax exp(d) / sum exp(d), d = z - max z: d_k rounds once (relative u |d_k| in exp's
    # result), exp within one ulp (2u), the sum of ten positive terms gamma_9, the quotient u.
    d = z - z.max()
    p = keep("forward.softmax", np.exp(d) / np.exp(d).sum(), np.exp(d) / np.exp(d).sum() * u * (-d - d.min() + 14))
    # The loss as advmnist computes it, max + ln(sum in index order) - z[label], with libm's exp
    # and ln, so that an f64 trace's loss (a difference of two numbers near z[label]) is matched.
    l = math.log(sum(math.exp(v) for v in d))
    loss = l + z.max() - z[label]
    keep("forward.loss", np.array([loss]), u * (13 - d.min() + 2 * l + abs(l + z.max()) + abs(loss)))
    others = [k for k in range(10) if k != label]
    dz = p.copy()
    dz[label] = -sum(p[k] for k in others)  # p_y - 1 as -(sum of the others): docs/math.md, section 2
    dz = keep("backward.logits", dz, np.where(np.arange(10) == label, gamma(8, u) * p[others].sum(), 0))
    keep("grad.fc2.bias", dz)
    keep("grad.fc2.weight", *rounded(np.outer, dz, r, 1, u))
    dr = keep("backward.relu", *rounded(np.matmul, dz, w["fc2.weight"], 10, u))
    dh = keep("backward.fc1", dr * (r > 0))
    keep("grad.fc1.bias", dh)
    keep("grad.fc1.weight", *rounded(np.outer, dh, f, 1, u))
    df = keep("backward.flatten", *rounded(np.matmul, dh, w["fc1.weight"], 500, u))
    dp2 = keep("backward.pool2", df.reshape(50, 4, 4))
    dc2 = keep("backward.conv2", unpool(dp2, i2, c2.shape))
    keep("grad.conv2.weight", *rounded(conv_weight_grad, dc2, p1, 64, u))
    keep("grad.conv2.bias", *rounded(lambda a, one: a.sum((1, 2)) * one, dc2, 1.0, 64, u))
    dp1 = keep("backward.pool1", *rounded(conv_input_grad, w["conv2.weight"], dc2, 50 * 25, u))
    dc1 = keep("backward.conv1", unpool(dp1, i1, c1.shape))
    keep("grad.conv1.weight", *rounded(conv_weight_grad, dc1, x, 576, u))
    keep("grad.conv1.bias", *rounded(lambda a, one: a.sum((1, 2)) * one, dc1, 1.0, 576, u))
    keep("backward.input", *rounded(conv_input_grad, w["conv1.weight"], dc1, 20 * 25, u))
    return t


def relative(theirs, mine):  # largest |difference| over the tensor's largest |value|
    return abs(theirs - mine).max() / (abs(mine).max() or 1.0)


def audit(w, path):
    """{tensor: (end-to-end rel. difference, stage rel. difference, stage rel. bound, pass)}."""
    trace, meta = read_safetensors(path)
    if meta.get("format") != "advmnist-trace" or "forward.conv1" not in trace:
        sys.exit(f"{path}: not the trace of one LeNet (committees, pipelines: audit_with_pytorch.py)")
    if meta.get("noise", "fgsm") != "fgsm":
        sys.exit(f"{path}: its {meta['noise']} noise is advmnist's own draw, not recomputed here")
    clean, label = mnist_test(int(meta["image"]))
    x, u = clean.astype(float), U[meta["precision"]]
    images = {"image.clean": x}
    if "noise" in meta:  # FGSM from the clean image, the step in f32 as advmnist takes it
        g = lenet(w, x, label, u)["backward.input"][0]
        step = np.float32(meta["level"]) * np.sign(g).astype(np.float32)
        x = images["image.perturbed"] = np.clip(clean + step, 0, 1).astype(float)
    # Without the batch axis of forward.* and backward.*; indices stay integers.
    theirs = {k: (v if v.dtype.kind == "i" else v.astype(float)).reshape(v.shape[k[0] in "fb" :]) for k, v in trace.items()}
    ends = lenet(w, x, label, u)
    stages = lenet(w, x, label, u, given=lambda name, value: theirs[name])
    rows = {"label (labels file)": (0.0, 0.0, 0.0, label == int(meta["label"]))}
    for name, t in theirs.items():
        mine, bound = stages[name] if name in stages else (images[name], 0.0)
        end = relative(t, ends[name][0] if name in ends else mine)
        scale = abs(mine).max() or 1.0
        ok = (abs(t - mine) <= bound).all() and (meta["precision"] == "f32" or end <= 1e-12)
        rows[name] = (end, relative(t, mine), np.max(bound) / scale, bool(ok))
    what = f"image {meta['image']} ({meta.get('noise', 'clean')} {meta.get('level', '')}".strip()
    return rows, f"{what}), {meta['precision']}, label {label}"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    w = {k: v.astype(float) for k, v in read_safetensors(sys.argv[1])[0].items()}
    worst = {}
    for path in sys.argv[2:]:
        rows, what = audit(w, path)
        failed = [k for k, r in rows.items() if not r[3]]
        print(f"{path}: {what}: " + ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"))
        for k, r in rows.items():
            old = worst.get(k, (0.0, 0.0, 0.0, True))
            worst[k] = (*(max(a, b) for a, b in zip(r[:3], old[:3])), r[3] and old[3])
    print(f"{'tensor':<22} {'end to end':>10} {'stage':>10} {'bound':>10}  (the largest of {len(sys.argv) - 2})")
    for k, (end, stage, bound, ok) in sorted(worst.items()):
        print(f"{k:<22} {end:>10.2e} {stage:>10.2e} {bound:>10.2e}  {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if all(r[3] for r in worst.values()) else 1)
