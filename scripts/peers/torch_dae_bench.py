# PyTorch peer of advmnist's benchmark, copied unchanged (but for these two lines) from the project's
# shared benchmark folder (shared/bench/torch_dae_bench.py, 2026-12-01), so a clone alone can run it.
"""Peer baseline: the study's stacked denoising autoencoder 784-1000-500-250-30-250-500-1000-784
in PyTorch (CPU), alone and in front of Caffe's LeNet.

Logistic hidden units, a linear 30-unit code, logistic output, cross-entropy reconstruction loss,
Nesterov momentum, dropout 0.2 on the input as the corruption (as in the study). Prints images/second
for: a DAE training step (batch B), DAE reconstruction (batch 1000), and the input gradient of
LeNet's loss through DAE + LeNet (the white-box attack on the pipeline, batch B).
Usage: python torch_dae_bench.py [--threads 2] [--batch 64] [--seconds 5]
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

SIZES = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]

class DAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(SIZES, SIZES[1:]))
    def logits(s, x):
        h = x.flatten(1)
        for k, l in enumerate(s.layers):
            h = l(h)
            if k != 3 and k != len(s.layers) - 1:   # code layer (30) linear, output handled by caller
                h = torch.sigmoid(h)
        return h
    def forward(s, x):
        return torch.sigmoid(s.logits(x)).view(-1, 1, 28, 28)

class LeNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(1, 20, 5); s.c2 = nn.Conv2d(20, 50, 5)
        s.f1 = nn.Linear(800, 500); s.f2 = nn.Linear(500, 10)
    def forward(s, x):
        x = F.max_pool2d(s.c1(x), 2); x = F.max_pool2d(s.c2(x), 2)
        return s.f2(F.relu(s.f1(x.flatten(1))))

dae, net = DAE(), LeNet()
opt = torch.optim.SGD(dae.parameters(), lr=0.01, momentum=0.9, nesterov=True)
x = torch.rand(a.batch, 1, 28, 28); y = torch.randint(0, 10, (a.batch,))
xb = torch.rand(1000, 1, 28, 28)

def rate(step, n):
    for _ in range(5): step()
    t = time.perf_counter(); k = 0
    while time.perf_counter() - t < a.seconds:
        step(); k += 1
    return n * k / (time.perf_counter() - t)

def train():
    opt.zero_grad()
    corrupted = F.dropout(x, 0.2, training=True)
    F.binary_cross_entropy_with_logits(dae.logits(corrupted), x.flatten(1)).backward()
    opt.step()
def reconstruct():
    with torch.no_grad(): dae(xb)
def pipeline_grad():
    xi = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(net(dae(xi)), y), xi)
    return g.sign()

print(f"torch {torch.__version__} threads={a.threads} batch={a.batch}")
# Reconstruction last: in PyTorch 2.15 on this CPU, the batch-1000 no-grad pass made every later
# step of the same process ~15x slower (measured), which would flatter advmnist unfairly.
print(f"dae_train_img_per_s {rate(train, a.batch):.0f}")
print(f"pipeline_fgsm_img_per_s {rate(pipeline_grad, a.batch):.0f}")
print(f"dae_infer_img_per_s {rate(reconstruct, 1000):.0f}")
