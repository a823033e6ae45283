"""FGSM on an advmnist model file in PyTorch, float32 and float64, without advmnist's code:
the reference for `advmnist sweep --gradient caffe-f32` (docs/committees.md).

Loads the file with safetensors.torch.load_file, builds Caffe's LeNet from it (conv1 -> maxpool2
-> conv2 -> maxpool2 -> flatten (C,H,W) -> fc1 -> ReLU -> fc2), and for each precision takes the
gradient of F.cross_entropy(logits, y, reduction="sum") with respect to the 10,000 MNIST test
images (each image's own loss: the sum does not scale it), then x' = clip(x + eps sign(g), 0, 1)
and the error on x'. Also counts the images whose logit gradient at the true class is exactly 0
(p_y - 1 rounded to 0), and the signs that differ between the float32 and float64 gradients.

Usage: python scripts/pytorch_fgsm_gradients.py MODEL.safetensors [EPS ...]   (default eps 0.2)
Needs: torch, numpy, safetensors.
"""
import gzip, os, sys
import numpy as np, torch, torch.nn.functional as F
from safetensors.torch import load_file

model = sys.argv[1]
levels = [float(e) for e in sys.argv[2:]] or [0.2]
mnist = os.path.join(os.path.dirname(__file__), "..", "mnist")
raw = gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).read()
x32 = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
y = torch.from_numpy(np.frombuffer(gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")).read(), np.uint8, offset=8).astype(np.int64))
torch.set_num_threads(int(os.environ.get("THREADS", "2")))


def lenet(w, x):
    h = F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2)
    h = F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
    return F.linear(h, w["fc2.weight"], w["fc2.bias"])


signs = {}
for dtype in (torch.float32, torch.float64):
    w = {k: v.to(dtype) for k, v in load_file(model).items()}
    x = x32.to(dtype).clone().requires_grad_(True)
    logits = lenet(w, x)
    logits.retain_grad()
    F.cross_entropy(logits, y, reduction="sum").backward()
    lost = int((logits.grad[torch.arange(len(y)), y] == 0).sum())
    signs[dtype] = x.grad.sign()
    with torch.no_grad():
        clean = 100 * (lenet(w, x).argmax(1) != y).float().mean().item()
        line = [f"{str(dtype).split('.')[1]}: clean {clean:.2f}%, dz_y == 0 on {lost} images"]
        for eps in levels:
            # eps in the images' precision, as advmnist applies it (f32 pixels).
            adv = (x + torch.tensor(eps, dtype=torch.float32).to(dtype) * x.grad.sign()).clamp(0, 1)
            line.append(f"FGSM eps {eps}: {100 * (lenet(w, adv).argmax(1) != y).float().mean().item():.2f}%")
    print("; ".join(line))
differ = (signs[torch.float32] != signs[torch.float64]).flatten(1).sum(1)
print(f"signs differing between float32 and float64: {int(differ.sum())} pixels in {int((differ > 0).sum())} images; at most {100 * differ.max().item() / 784:.1f}% of one image")
print(f"torch {torch.__version__}")
