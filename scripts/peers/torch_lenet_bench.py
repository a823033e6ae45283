# PyTorch peer of advmnist's benchmark, copied unchanged (but for these two lines) from the project's
# shared benchmark folder (shared/bench/torch_lenet_bench.py, 2026-12-01), so a clone alone can run it.
"""Peer baseline: Caffe-style LeNet on MNIST-shaped data in PyTorch (CPU).

Prints images/second for: a training step (forward+backward+SGD momentum, batch B),
FGSM input-gradient (forward+backward to the input, batch B), and inference (batch 1000).
Usage: python torch_lenet_bench.py [--threads 2] [--batch 64] [--seconds 5]
"""
import argparse, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seconds", type=float, default=5.0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

class LeNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(1, 20, 5); s.c2 = nn.Conv2d(20, 50, 5)
        s.f1 = nn.Linear(800, 500); s.f2 = nn.Linear(500, 10)
    def forward(s, x):
        x = F.max_pool2d(s.c1(x), 2); x = F.max_pool2d(s.c2(x), 2)
        return s.f2(F.relu(s.f1(x.flatten(1))))

m = LeNet()
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
x = torch.rand(a.batch, 1, 28, 28); y = torch.randint(0, 10, (a.batch,))

def rate(step, n):
    for _ in range(5): step()
    t = time.perf_counter(); k = 0
    while time.perf_counter() - t < a.seconds:
        step(); k += 1
    return n * k / (time.perf_counter() - t)

def train():
    opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
def fgsm():
    xi = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(m(xi), y), xi)
    return (xi + 0.1 * g.sign()).clamp(0, 1)
xb = torch.rand(1000, 1, 28, 28)
def infer():
    with torch.no_grad(): m(xb).argmax(1)

print(f"torch {torch.__version__} threads={a.threads} batch={a.batch}")
print(f"train_img_per_s {rate(train, a.batch):.0f}")
print(f"fgsm_img_per_s {rate(fgsm, a.batch):.0f}")
print(f"infer_img_per_s {rate(infer, 1000):.0f}")
