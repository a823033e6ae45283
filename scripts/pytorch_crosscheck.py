"""Cross-checks an advmnist model file against PyTorch, without advmnist's code.

Loads the file with safetensors.torch.load_file, builds Caffe's LeNet from it in PyTorch
(conv1 -> maxpool2 -> conv2 -> maxpool2 -> flatten (C,H,W) -> fc1 -> ReLU -> fc2), predicts the
10,000 MNIST test images (pixel/255), and compares with `advmnist eval --predictions`.

Usage: python scripts/pytorch_crosscheck.py MODEL.safetensors [ADVMNIST_BINARY]
Needs: torch, numpy, safetensors (e.g. a venv outside this folder).
"""
import gzip, os, subprocess, sys, tempfile
import numpy as np, torch, torch.nn.functional as F
from safetensors.torch import load_file

model = sys.argv[1]
binary = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "target", "release", "advmnist")
mnist = os.path.join(os.path.dirname(__file__), "..", "mnist")
w = load_file(model)
raw = gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).read()
x = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
y = np.frombuffer(gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")).read(), np.uint8, offset=8)
with torch.no_grad():
    h = F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2)
    h = F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
    torch_pred = F.linear(h, w["fc2.weight"], w["fc2.bias"]).argmax(1).numpy()
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "pred.txt")
    subprocess.run([binary, "eval", "--model", model, "--predictions", out], check=True, stdout=subprocess.DEVNULL)
    ours = np.loadtxt(out, dtype=np.int64)
same = int((ours == torch_pred).sum())
print(f"torch {torch.__version__}: test error {100 * (torch_pred != y).mean():.2f}%, advmnist {100 * (ours != y).mean():.2f}%")
print(f"identical predictions: {same} of {len(y)}")
sys.exit(0 if same == len(y) else 1)
