"""Peer evaluation: attacks an advmnist LeNet model file with torchattacks, without advmnist's code.

torchattacks (PyPI `torchattacks`) ports APGD, APGD-T and Square from Croce and Hein's AutoAttack
code (https://github.com/fra31/auto-attack; F. Croce, M. Hein, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020), so its figures are a
reference for advmnist's own APGD-CE, APGD-T and Square on the same images, image by image.

The model: the file's eight tensors (names `conv1.weight` ... `fc2.bias`, optionally under a
common prefix such as `model.`) rebuilt as Caffe's LeNet, exactly as the frozen PyTorch fixture
of the project's tests (tests/fixtures/make_lenet_reference.py) computes it: conv1 -> maxpool 2x2/2 -> conv2 -> maxpool 2x2/2 -> flatten
(C,H,W) -> fc1 -> ReLU -> fc2, no ReLU after the convolutions, no dropout at test time. Float32,
the precision the file stores.

The images: the first N of the MNIST test set (t10k-images-idx3-ubyte, .gz or raw), pixel/255 in
float32, as advmnist's loader scales them (not Caffe's 1/256 = 0.00390625: with /255 full ink is
exactly 1.0, the top of the [0, 1] box that every attack clips to).

Attacks, each in torchattacks' port of AutoAttack's "standard" configuration, L-infinity, one
attack object per (attack, eps), all images in one batch unless --batch says otherwise. The
constructor signatures were read in torchattacks 3.5.1 (attacks/apgd.py, apgdt.py, square.py,
autoattack.py, wrappers/multiattack.py); `build_attack` names every parameter it relies on.

  apgd-ce     APGD(norm='Linf', eps, steps=100, n_restarts=1, seed, loss='ce', eot_iter=1, rho=0.75)
  apgd-t      APGDT(norm='Linf', eps, steps=100, n_restarts=1, seed, eot_iter=1, rho=0.75,
              n_classes=10): targeted DLR loss, 9 target classes, one run of 100 steps each
  square      Square(norm='Linf', eps, n_queries=5000, n_restarts=1, p_init=0.8, loss='margin',
              resc_schedule=True, seed)
  multi       MultiAttack([apgd-ce, apgd-t, square] as above): each attack only on the images
              that the ones before it left correctly classified, so an image counts as an error
              if any of the three fools it (the worst case per image)
  autoattack  AutoAttack(norm='Linf', eps, version='standard', n_classes=10, seed): torchattacks'
              own ensemble APGD-CE, APGD-T, FAB-T, Square. Beware: it builds APGD, APGD-T and FAB
              without `steps`, so they run torchattacks' default of 10 steps, not the 100 of
              AutoAttack's standard version; `multi` is the 100-step ensemble (without FAB-T).

torchattacks' behaviours that matter when comparing image by image:
  - Every attack calls torch.random.manual_seed(seed) when it starts, and draws its random
    numbers for the whole batch at once, so an image's result depends on the batch it is in.
  - APGD and APGD-T attack only the images classified correctly at the start; an image counts as
    fooled if any iterate (the random start included) is misclassified, and the image returned is
    the last misclassified iterate. A misclassified clean image is returned unchanged.
  - APGD-T's targets: for target number k = 2..10 it sorts the clean logits of the images still
    unfooled and attacks towards the k-th largest (for a correctly classified image: the runners-up
    in order); every target gets a fresh random start, drawn from the one seeded generator.
  - Square (L-infinity) starts every image at x + eps * (random sign per image column), then per
    iteration draws ONE square position, ONE size (from the p schedule, rescaled to 5000 queries)
    and ONE sign for the whole batch of still-unfooled images (as in AutoAttack's square.py;
    the original Square attack code draws them per image). Positions are drawn in [0, 28 - s),
    never at the last row or column offset. Its margin is on logits.
  - MultiAttack decides "fooled" by running the model on each attack's output, and passes only
    the rest to the next attack.

For each (attack, eps) the JSON holds: the robust error in % over the N images (an image is an
error if it is misclassified clean or after the attack), the per-image flags `error` and `fooled`
(0/1, in test-set order; fooled = correct clean and misclassified after the attack), the class
predicted on each returned image, the mean L-infinity distance and the mean average absolute
distortion per pixel (1/(c h w) sum |x' - x|, the study's measure, section 3.2) over the fooled
images, the largest L-infinity distance over all images (a check that the attack stayed within
eps), the wall time, and torchattacks' own description of the attack object. The file is
rewritten atomically (temporary file, then rename) after every (attack, eps), with "complete":
false until the last one is done.

Usage:
  python scripts/peers/torchattacks_eval.py --model lenet.safetensors --mnist mnist \\
      --images 1000 --eps 0.1,0.3 --threads 2 --seed 0 \\
      --attacks apgd-ce,apgd-t,square,multi,autoattack --out results.json
  Add --advmnist BINARY to compare the clean predictions with `BINARY eval --predictions`.
Needs: torch, numpy, safetensors, torchattacks (a venv outside the repository; see README.md).
"""
import argparse
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

import torchattacks

ATTACKS = ["apgd-ce", "apgd-t", "square", "multi", "autoattack"]

# Caffe's LeNet (examples/mnist/lenet_train_test.prototxt), as the project's model files hold it.
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

# AutoAttack's standard version (autoattack/autoattack.py, set_version('standard')): 100 steps for
# APGD and APGD-T, one restart, 9 target classes, Square with 5000 queries.
APGD_STEPS = 100
N_RESTARTS = 1
RHO = 0.75  # step-size checkpoint threshold, AutoAttack's default (Croce and Hein, section 3.1)
N_CLASSES = 10  # APGD-T attacks the n_classes - 1 = 9 other classes
SQUARE_QUERIES = 5000
SQUARE_P_INIT = 0.8  # AutoAttack's p_init for L-infinity Square

# |x' - x| may exceed eps by a rounding of x + eps in float32: tolerated up to this much.
LINF_SLACK = 1e-6


def fail(message):
    print(f"torchattacks_eval: {message}", file=sys.stderr)
    sys.exit(2)


class CaffeLeNet(nn.Module):
    """The network of tests/fixtures/make_lenet_reference.py, weights frozen.

    Given that fixture's float64 weights and input it reproduces the fixture's logits exactly.
    """

    def __init__(self, tensors):
        super().__init__()
        # Parameters (not buffers) so that torchattacks finds the device through
        # model.parameters(); requires_grad off because only the input gradient is wanted.
        self.w = nn.ParameterDict(
            {k.replace(".", "_"): nn.Parameter(v, requires_grad=False) for k, v in tensors.items()}
        )

    def forward(self, x):
        w = self.w
        h = F.max_pool2d(F.conv2d(x, w["conv1_weight"], w["conv1_bias"]), 2)
        h = F.max_pool2d(F.conv2d(h, w["conv2_weight"], w["conv2_bias"]), 2)
        h = F.relu(F.linear(h.flatten(1), w["fc1_weight"], w["fc1_bias"]))
        return F.linear(h, w["fc2_weight"], w["fc2_bias"])


def load_lenet(path):
    """The model file's LeNet tensors, found under a common prefix if any, checked by shape."""
    try:
        stored = load_file(path)
    except Exception as e:  # safetensors raises several types for a bad file
        fail(f"--model {path}: cannot read as safetensors ({e})")
    tensors = {}
    for name, shape in LENET_SHAPES.items():
        hits = [k for k in stored if k == name or k.endswith("." + name)]
        if len(hits) != 1:
            fail(f"--model {path}: expected one tensor named {name} (or *.{name}), found {hits or 'none'}")
        t = stored[hits[0]]
        if tuple(t.shape) != shape:
            fail(f"--model {path}: {hits[0]} has shape {tuple(t.shape)}, LeNet needs {shape}")
        tensors[name] = t.to(torch.float32).contiguous()
    return CaffeLeNet(tensors).eval()


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


def load_test_images(folder, n):
    count, pixels, path = read_idx(folder, "t10k-images-idx3-ubyte", 0x803)
    lcount, labels, lpath = read_idx(folder, "t10k-labels-idx1-ubyte", 0x801)
    if pixels.size != count * 784:
        fail(f"--mnist: {path} does not hold {count} images of 28x28")
    if n > min(count, lcount):
        fail(f"--images {n}: the test set has {min(count, lcount)} images")
    # pixel/255 in float32: advmnist's pixel_to_unit (src/data/idx.rs), torchvision's ToTensor.
    x = torch.from_numpy(pixels[: n * 784].reshape(n, 1, 28, 28).astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(labels[:n].astype(np.int64))
    return x, y


def build_attack(name, model, eps, seed):
    """One torchattacks object, every parameter named (checked against torchattacks 3.5.1)."""
    apgd_ce = lambda: torchattacks.APGD(
        model, norm="Linf", eps=eps, steps=APGD_STEPS, n_restarts=N_RESTARTS, seed=seed,
        loss="ce", eot_iter=1, rho=RHO,
    )
    apgd_t = lambda: torchattacks.APGDT(
        model, norm="Linf", eps=eps, steps=APGD_STEPS, n_restarts=N_RESTARTS, seed=seed,
        eot_iter=1, rho=RHO, n_classes=N_CLASSES,
    )
    square = lambda: torchattacks.Square(
        model, norm="Linf", eps=eps, n_queries=SQUARE_QUERIES, n_restarts=N_RESTARTS,
        p_init=SQUARE_P_INIT, loss="margin", resc_schedule=True, seed=seed,
    )
    if name == "apgd-ce":
        return apgd_ce()
    if name == "apgd-t":
        return apgd_t()
    if name == "square":
        return square()
    if name == "multi":
        return torchattacks.MultiAttack([apgd_ce(), apgd_t(), square()])
    if name == "autoattack":
        return torchattacks.AutoAttack(
            model, norm="Linf", eps=eps, version="standard", n_classes=N_CLASSES, seed=seed
        )
    raise ValueError(name)


def predict(model, x, batch):
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])


def run_attack(model, name, eps, seed, x, y, batch):
    """Attacks all images, batch by batch; returns the adversarial images, time and description."""
    adv = torch.empty_like(x)
    description = None
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        attack = build_attack(name, model, eps, seed)
        description = repr(attack)
        adv[i : i + batch] = attack(x[i : i + batch], y[i : i + batch]).detach()
    return adv, time.perf_counter() - start, description


def summarise(model, x, y, clean_pred, adv, eps, batch):
    adv_pred = predict(model, adv, batch)
    clean_ok = clean_pred == y
    error = (~clean_ok) | (adv_pred != y)
    fooled = clean_ok & (adv_pred != y)
    delta = (adv.double() - x.double()).flatten(1)
    linf = delta.abs().max(1).values
    per_pixel = delta.abs().mean(1)
    if (adv.min() < 0) or (adv.max() > 1):
        fail(f"eps {eps}: an adversarial image left [0, 1] (torchattacks changed?)")
    if linf.max() > eps + LINF_SLACK:
        fail(f"eps {eps}: an adversarial image moved {linf.max().item()} > eps (torchattacks changed?)")
    n_fooled = int(fooled.sum())
    return {
        "robust_error_pct": 100.0 * float(error.double().mean()),
        "n_errors": int(error.sum()),
        "n_fooled": n_fooled,
        "mean_linf_fooled": float(linf[fooled].mean()) if n_fooled else None,
        "mean_distortion_per_pixel_fooled": float(per_pixel[fooled].mean()) if n_fooled else None,
        "max_linf_all": float(linf.max()),
        "error": error.int().tolist(),
        "fooled": fooled.int().tolist(),
        "adv_pred": adv_pred.tolist(),
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


def compare_with_advmnist(binary, model_path, mnist, clean_pred, y):
    """advmnist's own predictions on the test set, compared with ours on the first N images."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "predictions.txt")
        cmd = [binary, "eval", "--model", model_path, "--data", mnist, "--predictions", out, "--json"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"--advmnist {binary}: eval failed: {run.stderr.strip()}")
        theirs = np.loadtxt(out, dtype=np.int64)
    ours = clean_pred.numpy()
    theirs = theirs[: len(ours)]
    differ = np.nonzero(theirs != ours)[0]
    return {
        "binary": os.path.basename(binary),
        "advmnist_clean_error_pct": 100.0 * float(np.mean(theirs != y.numpy())),
        "identical_predictions": int(len(ours) - len(differ)),
        "of": int(len(ours)),
        "first_differing_images": differ[:20].tolist(),
        "eval_json": json.loads(run.stdout),
    }


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="advmnist LeNet model file (.safetensors)")
    p.add_argument("--mnist", required=True, help="folder holding t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)")
    p.add_argument("--images", type=int, default=1000, help="the first N test images (default 1000)")
    p.add_argument("--eps", default="0.1,0.3", help="L-infinity radii, comma-separated (default 0.1,0.3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="every attack's seed (default 0)")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, of {','.join(ATTACKS)}")
    p.add_argument("--batch", type=int, default=0, help="images per attack call; 0 (default) = all in one")
    p.add_argument("--advmnist", help="advmnist binary: compare clean predictions with its `eval --predictions`")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args()
    if not os.path.isfile(a.model):
        fail(f"--model {a.model}: no such file")
    if not os.path.isdir(a.mnist):
        fail(f"--mnist {a.mnist}: no such folder")
    if a.images < 1:
        fail(f"--images {a.images}: at least 1")
    if a.threads < 1:
        fail(f"--threads {a.threads}: at least 1")
    if a.batch < 0:
        fail(f"--batch {a.batch}: 0 (all images) or more")
    try:
        a.eps = [float(e) for e in a.eps.split(",")]
    except ValueError:
        fail(f"--eps {a.eps}: comma-separated numbers, e.g. 0.1,0.3")
    if any(not (0.0 < e <= 1.0) for e in a.eps):
        fail(f"--eps {a.eps}: each radius in (0, 1]")
    a.attacks = [s.strip() for s in a.attacks.split(",")]
    unknown = [s for s in a.attacks if s not in ATTACKS]
    if unknown:
        fail(f"--attacks: unknown {unknown}; known: {ATTACKS}")
    if a.advmnist and not os.access(a.advmnist, os.X_OK):
        fail(f"--advmnist {a.advmnist}: not an executable file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        fail(f"--out {a.out}: its folder does not exist")
    return a


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = load_lenet(a.model)
    x, y = load_test_images(a.mnist, a.images)
    batch = a.batch or len(x)
    clean_pred = predict(model, x, batch)
    clean_error = clean_pred != y
    with open(a.model, "rb") as f:
        model_sha256 = hashlib.sha256(f.read()).hexdigest()
    result = {
        "complete": False,
        "model": os.path.basename(a.model),
        "model_sha256": model_sha256,
        "images": len(x),
        "pixel_scale": "byte/255, float32",
        "eps": a.eps,
        "attacks": a.attacks,
        "seed": a.seed,
        "threads": a.threads,
        "batch": batch,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchattacks": torchattacks.__version__,
            "numpy": np.__version__,
        },
        "clean_error_pct": 100.0 * float(clean_error.double().mean()),
        "clean_error": clean_error.int().tolist(),
        "clean_pred": clean_pred.tolist(),
        "results": [],
    }
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {a.threads} threads; "
          f"{len(x)} images, clean error {result['clean_error_pct']:.2f}%", flush=True)
    if a.advmnist:
        check = compare_with_advmnist(a.advmnist, a.model, a.mnist, clean_pred, y)
        result["advmnist_check"] = check
        print(f"advmnist eval: clean error {check['advmnist_clean_error_pct']:.2f}% on the same images, "
              f"identical predictions on {check['identical_predictions']} of {check['of']}", flush=True)
        if check["identical_predictions"] != check["of"]:
            fail(f"clean predictions differ from advmnist's on images {check['first_differing_images']}")
    write_json_atomically(a.out, result)
    for name in a.attacks:
        for eps in a.eps:
            adv, seconds, description = run_attack(model, name, eps, a.seed, x, y, batch)
            row = {"attack": name, "eps": eps, "wall_seconds": seconds, "torchattacks": description}
            row.update(summarise(model, x, y, clean_pred, adv, eps, batch))
            result["results"].append(row)
            print(f"{name:10s} eps {eps:<5g} robust error {row['robust_error_pct']:6.2f}%  "
                  f"fooled {row['n_fooled']:4d}  mean Linf {row['mean_linf_fooled'] or 0:.4f}  "
                  f"dist/pixel {row['mean_distortion_per_pixel_fooled'] or 0:.4f}  {seconds:8.1f} s", flush=True)
            write_json_atomically(a.out, result)
    result["complete"] = True
    write_json_atomically(a.out, result)


if __name__ == "__main__":
    main()
