"""Peer run: advmnist's on-line adversarial training recipe, re-implemented in PyTorch.

`advmnist advtrain --mode online --random-start` (src/train/online/, docs/adversarial-training.md,
section "On-line adversarial training") trains Caffe's LeNet on Goodfellow, Shlens and Szegedy's
objective (ICLR 2015, section 6) with Wong, Rice and Kolter's random start (ICLR 2020,
Algorithm 3). This script runs the same recipe without advmnist's code, from the same initial
weights, and measures the trained model with the same attacks, so that the project can check
that an independent implementation of the recipe ends near advmnist's own figures.

The recipe, as advmnist runs it (each point read from the file named):
  - Initial weights: an advmnist model file (--init), written by
    `cargo run --release --example initial_lenet -- --seed S --out init.safetensors`: Caffe's
    xavier filler from the seed's init stream, iteration 0 of `advmnist train --seed S` and of
    `advtrain --mode online --seed S` (src/train/mod.rs, TrainConfig::initial_net).
  - The network: conv1 20@5x5 -> maxpool 2x2/2 -> conv2 50@5x5 -> maxpool 2x2/2 -> flatten
    (C,H,W) -> fc1 500 -> ReLU -> fc2 10; no ReLU after the convolutions, no dropout
    (Caffe's lenet_train_test.prototxt; src/models/lenet.rs). Max-pool ties go to the first
    maximum in row-major order in both (src/layers/maxpool.rs; PyTorch's CPU kernel).
  - 10,000 iterations of 64 natural training images (src/train/online/objective.rs,
    OnlineConfig::new), pixel/255 in float32 (src/data/idx.rs).
  - Each iteration's adversarial examples come from the CURRENT weights, in evaluation mode
    (the same as training mode here: no dropout), with each image's own loss (the gradient of
    the sum of per-image losses; OnlineRecipe::adversarial_examples):
      random start (the default): x0 = clip(x + U(-eps, eps), 0, 1),
                                  x_adv = clip(clamp(x0 + 1.25 eps sign(grad J(x0)), x - eps, x + eps), 0, 1)
      --no-random-start (plain FGSM): x_adv = clip(x + eps sign(grad J(x)), 0, 1)
    with sign(0) = 0 (src/models/gradient.rs; torch.sign agrees), eps 0.25. The examples are
    constants of the objective (detached).
  - The loss: softmax cross-entropy over the batch [x; x_adv] of 128 images, weights alpha/64
    for the natural images and (1 - alpha)/64 for the adversarial ones (OnlineRecipe::weights),
    alpha 0.5: the plain mean over the 128.
  - A loss that is not finite stops the run with an error naming the iteration, as advmnist's
    training loop stops with TrainError::Diverged (src/train/mod.rs, `run`).
  - Caffe's SGD (src/optim/sgd.rs, Caffe's sgd_solver.cpp), by hand on the tensors, float32:
      g' = g + 5e-4 w          (weights and biases alike)
      v  = 0.9 v + lr lr_mult g'   (lr_mult 1 for weights, 2 for biases)
      w  = w - v
    with Caffe's `inv` rate lr = 0.01 (1 + 1e-4 t)^-0.75, t the updates already made, computed
    in double and rounded to float32 after the multiplier (src/optim/lr.rs). torch.optim.SGD is
    not used: it keeps v = m v + g' and steps w -= lr v, which differs once the rate moves.
  - The evaluation (src/train/online/curve.rs; advmnist `sweep --noise fgsm` and
    `--noise pgd --steps 10 --random-start`), every attack with the trained weights' own
    gradient and the true labels, on the 10,000 test images and on the first 2,000 of them:
      clean error;
      FGSM at eps 0.1 and 0.25: clip(x + eps sign(grad J(x)), 0, 1) (src/attacks/fgsm.rs);
      PGD at eps 0.1 and 0.25 (src/attacks/pgd.rs): start clip(x + U(-eps, eps), 0, 1), then
      10 steps X <- clip(clamp(X + a sign(grad J(X)), x - eps, x + eps), 0, 1) with
      a = 2.5 eps / 10 in float32; the error is that of the last iterate (not the worst one).
    An image is an error if the model misclassifies the image it is shown (a clean error that
    an attack happens to fix is not counted), as advmnist's error_pct counts.

What cannot match advmnist's run, and so makes the two runs differ as two seeds do:
  - The batch order. advmnist shuffles each epoch with a ChaCha8 stream (src/rng.rs,
    BatchSampler in src/train/mod.rs); this script shuffles with numpy's PCG64, one permutation
    per epoch seeded by (--seed, epoch), and takes iteration t's batch from positions
    64 t .. 64 t + 63 of the endless sequence of epoch permutations, as advmnist does (a batch
    may straddle two epochs). Same structure, different permutations.
  - The random starts, in training and in the evaluation's PGD: advmnist draws image j's start
    at iteration t from its own ChaCha8 stream; here they come from torch generators seeded by
    --seed (one for training, one for the evaluation). The evaluation draws one U(-1, 1) field
    per test image and scales it by each eps, as advmnist draws each image's start from one
    stream per image at every eps.
  - Floating-point summation order (PyTorch's convolution and matrix kernels against
    advmnist's im2col and GEMM): the same sums, rounded differently. Over 10,000 iterations
    these differences grow into different weights, like the differences above.

Usage (from the repository's root, a venv with torch, numpy and safetensors; see README.md):
  CARGO_TARGET_DIR=target cargo run --release --example initial_lenet -- --seed 1 --out init-1.safetensors
  torchenv/bin/python scripts/peers/torch_online_advtrain.py --init init-1.safetensors \\
      --mnist mnist --seed 1 --threads 1 --out torch-online-1.json
advmnist's own run to compare with: `advmnist advtrain --mode online --random-start --seed 1
--out online-1`, then `advmnist sweep --model online-1/online.safetensors --noise fgsm ...` and
`--noise pgd --steps 10 --random-start` (docs/adversarial-training.md).

The JSON summary goes to stdout (and to --out, written atomically); progress goes to stderr.
"""
import argparse
import gzip
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

# Caffe's LeNet (examples/mnist/lenet_train_test.prototxt), as advmnist's model files hold it.
LENET_SHAPES = {
    "conv1.weight": (20, 1, 5, 5),
    "conv1.bias": (20,),
    "conv2.weight": (50, 20, 5, 5),
    "conv2.bias": (50,),
    "fc1.weight": (500, 800),
    "fc1.bias": (500,),
    "fc2.weight": (10, 500),
    "fc2.bias": (10,),
}

# Caffe's lenet_solver.prototxt (src/optim/sgd.rs SgdMomentum::LENET, src/optim/lr.rs InvPolicy::LENET).
BASE_LR = 0.01
LR_GAMMA = 1e-4
LR_POWER = 0.75
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
BIAS_LR_MULT = 2.0
BATCH = 64  # natural images per iteration (TrainConfig::lenet)

# The random start's sign step, in units of eps (src/train/online/objective.rs RANDOM_START_STEP:
# Wong, Rice and Kolter's alpha = 10/255 at eps = 8/255).
RANDOM_START_STEP = 1.25

# The evaluation (src/train/online/curve.rs): CURVE_EPS, CURVE_PGD_STEPS, and PgdConfig::new's
# step of 2.5 eps / steps (src/attacks/pgd.rs).
EVAL_EPS = (0.1, 0.25)  # used as float32 values, as advmnist's CURVE_EPS
PGD_STEPS = 10
PGD_STEP_FACTOR = 2.5
FIRST_IMAGES = 2000  # the first N test images, reported beside the whole test set
EVAL_CHUNK = 250  # test images per gradient pass in the evaluation; the draws are made in test-set order, so it does not change them

# Purposes of the numpy seed sequences from which every random draw is derived, so the draws of
# one purpose never depend on how many draws another made.
SHUFFLE, TRAIN_START, EVAL_START = 1, 2, 3


def fail(message):
    print(f"torch_online_advtrain: {message}", file=sys.stderr)
    sys.exit(2)


def seed_of(seed, purpose, index=0):
    """A 63-bit seed for (seed, purpose, index), from numpy's SeedSequence (a hash of the three)."""
    state = np.random.SeedSequence([seed, purpose, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def lenet(w, x):
    """Caffe's LeNet: no ReLU after the convolutions, ReLU after fc1 only."""
    h = F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2)
    h = F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
    return F.linear(h, w["fc2.weight"], w["fc2.bias"])


def load_init(path):
    """The file's eight LeNet tensors (float32, checked by name and shape) and its metadata."""
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a bad file
        fail(f"--init {path}: cannot read as safetensors ({e})")
    weights = {}
    for name, shape in LENET_SHAPES.items():
        if name not in stored:
            fail(f"--init {path}: no tensor named {name}")
        t = stored[name]
        if tuple(t.shape) != shape:
            fail(f"--init {path}: {name} has shape {tuple(t.shape)}, LeNet needs {shape}")
        if t.dtype != torch.float32:
            fail(f"--init {path}: {name} is {t.dtype}, advmnist's files hold float32")
        if not torch.isfinite(t).all():
            fail(f"--init {path}: {name} holds a value that is not finite")
        weights[name] = t.contiguous().clone()
    extra = sorted(set(stored) - set(LENET_SHAPES))
    if extra:
        fail(f"--init {path}: unexpected tensors {extra} (a LeNet file holds only {list(LENET_SHAPES)})")
    if metadata.get("iterations", "0") != "0":
        print(f"torch_online_advtrain: warning: --init {path} says iterations {metadata['iterations']}, "
              "not the initial weights (0)", file=sys.stderr)
    return weights, metadata


def read_idx(folder, name, magic):
    """An IDX file's payload: NAME.gz first, else NAME raw (as advmnist's loader looks)."""
    for path, opener in ((os.path.join(folder, name + ".gz"), gzip.open), (os.path.join(folder, name), open)):
        if os.path.exists(path):
            try:
                with opener(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                fail(f"--mnist: cannot read {path} ({e})")
            if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
                fail(f"--mnist: {path} is not an IDX file of magic {magic:#010x}")
            count = int.from_bytes(data[4:8], "big")
            header = 16 if magic == 0x803 else 8
            payload = np.frombuffer(data, np.uint8, offset=header)
            return count, payload, path
    fail(f"--mnist: neither {name}.gz nor {name} in {folder}")


def load_split(folder, prefix):
    """A split's images (N,1,28,28), pixel/255 in float32 as advmnist's pixel_to_unit, and labels."""
    count, pixels, path = read_idx(folder, f"{prefix}-images-idx3-ubyte", 0x803)
    lcount, labels, lpath = read_idx(folder, f"{prefix}-labels-idx1-ubyte", 0x801)
    if pixels.size != count * 784:
        fail(f"--mnist: {path} does not hold {count} images of 28x28")
    if labels.size != lcount or lcount != count:
        fail(f"--mnist: {lpath} holds {labels.size} labels for {count} images")
    if labels.max() > 9:
        fail(f"--mnist: {lpath} holds a label above 9")
    x = torch.from_numpy(pixels.reshape(count, 1, 28, 28).astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class BatchSampler:
    """Iteration t's batch: positions B t .. B t + B - 1 of the endless sequence of epoch
    permutations (advmnist's BatchSampler; the permutations are numpy's, not its ChaCha8's)."""

    def __init__(self, seed, n):
        self.seed, self.n, self.epoch, self.order = seed, n, None, None

    def indices(self, t, batch):
        out = np.empty(batch, np.int64)
        for j in range(batch):
            pos = t * batch + j
            epoch = pos // self.n
            if epoch != self.epoch:
                self.order = np.random.default_rng(seed_of(self.seed, SHUFFLE, epoch)).permutation(self.n)
                self.epoch = epoch
            out[j] = self.order[pos % self.n]
        return torch.from_numpy(out)


def input_gradient(w, x, y):
    """grad_x of the sum of per-image losses: each image's own gradient (evaluation mode)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(lenet(w, x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def project(stepped, x, eps):
    """clamp into the eps-ball around x, then into [0, 1] (src/attacks/pgd.rs, in that order)."""
    return torch.minimum(torch.maximum(stepped, x - eps), x + eps).clamp(0.0, 1.0)


def adversarial_examples(w, x, y, eps, random_start, generator):
    """The batch's training examples from the current weights (OnlineRecipe::adversarial_examples)."""
    if not random_start:
        return (x + eps * torch.sign(input_gradient(w, x, y))).clamp(0.0, 1.0)
    u = torch.rand(x.shape, generator=generator) * (2 * eps) - eps  # U(-eps, eps)
    x0 = (x + u).clamp(0.0, 1.0)
    step = np.float32(RANDOM_START_STEP) * np.float32(eps)  # float32, as advmnist's f32 product
    return project(x0 + float(step) * torch.sign(input_gradient(w, x0, y)), x, eps)


def sgd_step(w, grads, velocity, t):
    """Caffe's SGD with momentum and weight decay (src/optim/sgd.rs), in place; returns lr."""
    lr = BASE_LR * (1.0 + LR_GAMMA * t) ** (-LR_POWER)
    with torch.no_grad():
        for name, p in w.items():
            mult = BIAS_LR_MULT if name.endswith(".bias") else 1.0
            rate = float(np.float32(lr * mult))  # advmnist: T::of(lr * lr_mult), f64 -> f32
            decayed = grads[name].add(p, alpha=WEIGHT_DECAY)  # g' = g + wd w
            velocity[name].mul_(MOMENTUM).add_(decayed, alpha=rate)  # v = m v + rate g'
            p.sub_(velocity[name])  # w = w - v
    return lr


def train(w, x_train, y_train, a, log):
    velocity = {k: torch.zeros_like(v) for k, v in w.items()}
    for v in w.values():
        v.requires_grad_(True)
    sampler = BatchSampler(a.seed, len(x_train))
    generator = torch.Generator().manual_seed(seed_of(a.seed, TRAIN_START))
    weights = torch.cat([
        torch.full((BATCH,), np.float32(a.alpha) / np.float32(BATCH)),
        torch.full((BATCH,), np.float32(1.0 - np.float32(a.alpha)) / np.float32(BATCH)),
    ])
    curve, window = [], []
    start = time.perf_counter()
    for t in range(a.iterations):
        idx = sampler.indices(t, BATCH)
        x, y = x_train[idx], y_train[idx]
        x_adv = adversarial_examples(w, x, y, a.eps, a.random_start, generator).detach()
        both = torch.cat([x, x_adv])
        labels = torch.cat([y, y])
        loss = (weights * F.cross_entropy(lenet(w, both), labels, reduction="none")).sum()
        if not torch.isfinite(loss):
            # advmnist's loop stops here (TrainError::Diverged), its weights unchanged.
            print(f"torch_online_advtrain: training diverged at iteration {t}: the loss is {float(loss)}",
                  file=sys.stderr)
            sys.exit(1)
        grads = dict(zip(w, torch.autograd.grad(loss, list(w.values()))))
        lr = sgd_step(w, grads, velocity, t)
        window.append(float(loss.detach()))
        if (t + 1) % a.log_every == 0 or t + 1 == a.iterations:
            point = {"iteration": t + 1, "mean_loss": float(np.mean(window)), "lr": lr,
                     "seconds": time.perf_counter() - start}
            curve.append(point)
            window = []
            log(f"iteration {t + 1:6d}  mean loss {point['mean_loss']:.4f}  lr {lr:.6f}  "
                f"{point['seconds']:7.1f} s")
    for v in w.values():
        v.requires_grad_(False)
    return curve, time.perf_counter() - start


def evaluate(w, x, y, seed):
    """Per-image error flags (0/1, test-set order): clean, FGSM and PGD at each eps of EVAL_EPS."""
    generator = torch.Generator().manual_seed(seed_of(seed, EVAL_START))
    flags = {"clean": [], **{f"fgsm_{e}": [] for e in EVAL_EPS}, **{f"pgd_{e}": [] for e in EVAL_EPS}}

    def wrong(images, labels):
        with torch.no_grad():
            return (lenet(w, images).argmax(1) != labels).to(torch.int64)

    radii = {e: float(np.float32(e)) for e in EVAL_EPS}
    for i in range(0, len(x), EVAL_CHUNK):
        xc, yc = x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]
        flags["clean"].append(wrong(xc, yc))
        direction = torch.sign(input_gradient(w, xc, yc))  # one gradient serves every eps
        u = torch.rand(xc.shape, generator=generator) * 2 - 1  # one U(-1, 1) field per image
        for name, eps in radii.items():
            flags[f"fgsm_{name}"].append(wrong((xc + eps * direction).clamp(0.0, 1.0), yc))
            step = float(np.float32(PGD_STEP_FACTOR) * np.float32(eps) / np.float32(PGD_STEPS))
            adv = (xc + eps * u).clamp(0.0, 1.0)
            for _ in range(PGD_STEPS):
                adv = project(adv + step * torch.sign(input_gradient(w, adv, yc)), xc, eps)
            flags[f"pgd_{name}"].append(wrong(adv, yc))
    return {k: torch.cat(v) for k, v in flags.items()}


def summary(flags, n):
    pct = lambda k: 100.0 * float(flags[k][:n].double().mean())
    return {
        "images": n,
        "clean_error_pct": pct("clean"),
        "fgsm_error_pct": {str(e): pct(f"fgsm_{e}") for e in EVAL_EPS},
        "pgd_error_pct": {str(e): pct(f"pgd_{e}") for e in EVAL_EPS},
    }


def write_json_atomically(path, obj):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", required=True, help="advmnist model file of the initial weights (examples/initial_lenet.rs)")
    p.add_argument("--mnist", required=True, help="folder holding the four MNIST IDX files (.gz or raw)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the batch order and the random starts (default: the --init file's seed, else 1)")
    p.add_argument("--iterations", type=int, default=10_000, help="iterations of 64 images (default 10000)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the natural images' loss (default 0.5)")
    p.add_argument("--eps", type=float, default=0.25, help="L-infinity radius of the training examples (default 0.25)")
    p.add_argument("--no-random-start", dest="random_start", action="store_false",
                   help="train on plain FGSM examples (advmnist advtrain --mode online without --random-start)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--log-every", type=int, default=1000, help="iterations between progress lines (default 1000)")
    p.add_argument("--out", help="also write the JSON summary to this file")
    a = p.parse_args()
    if not os.path.isfile(a.init):
        fail(f"--init {a.init}: no such file")
    if not os.path.isdir(a.mnist):
        fail(f"--mnist {a.mnist}: no such folder")
    if a.seed is not None and a.seed < 0:
        fail(f"--seed {a.seed}: a whole number, 0 or more")
    if a.iterations < 1:
        fail(f"--iterations {a.iterations}: at least 1")
    if not (0.0 <= a.alpha <= 1.0):
        fail(f"--alpha {a.alpha}: in [0, 1]")
    if not (0.0 < a.eps <= 1.0):
        fail(f"--eps {a.eps}: in (0, 1]")
    if a.threads < 1:
        fail(f"--threads {a.threads}: at least 1")
    if a.log_every < 1:
        fail(f"--log-every {a.log_every}: at least 1")
    a.eps = float(np.float32(a.eps))  # advmnist's eps is an f32
    if a.out and not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        fail(f"--out {a.out}: its folder does not exist")
    return a


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    log = lambda message: print(message, file=sys.stderr, flush=True)
    w, metadata = load_init(a.init)
    if a.seed is None:
        try:
            a.seed = int(metadata.get("seed", "1"))
        except ValueError:
            fail(f"--init {a.init}: its seed metadata '{metadata['seed']}' is not a whole number; give --seed")
    with open(a.init, "rb") as f:
        init_sha256 = hashlib.sha256(f.read()).hexdigest()
    wall = time.perf_counter()
    x_train, y_train = load_split(a.mnist, "train")
    x_test, y_test = load_split(a.mnist, "t10k")
    log(f"torch {torch.__version__}, {a.threads} thread(s); seed {a.seed}, {a.iterations} iterations, "
        f"alpha {a.alpha}, eps {a.eps}, random start {a.random_start}")
    curve, train_seconds = train(w, x_train, y_train, a, log)
    start = time.perf_counter()
    flags = evaluate(w, x_test, y_test, a.seed)
    eval_seconds = time.perf_counter() - start
    result = {
        "peer": "torch_online_advtrain",
        "recipe": "advmnist advtrain --mode online" + (" --random-start" if a.random_start else ""),
        "init": os.path.basename(a.init),
        "init_sha256": init_sha256,
        "init_metadata": {k: metadata[k] for k in ("seed", "iterations", "format") if k in metadata},
        "seed": a.seed,
        "iterations": a.iterations,
        "batch": BATCH,
        "alpha": a.alpha,
        "eps": a.eps,
        "random_start": a.random_start,
        "threads": a.threads,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "pgd": {"steps": PGD_STEPS, "step": f"{PGD_STEP_FACTOR} eps / {PGD_STEPS}", "random_start": True},
        "test": summary(flags, len(x_test)),
        "first": summary(flags, min(FIRST_IMAGES, len(x_test))),
        "training_curve": curve,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - wall,
    }
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if a.out:
        write_json_atomically(a.out, result)


if __name__ == "__main__":
    main()
