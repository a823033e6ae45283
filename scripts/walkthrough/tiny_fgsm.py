"""FGSM on a two-pixel image and a linear softmax model of three classes, every step printed:
the numbers of docs/math.md, section 8, "FGSM by hand". Python's standard library only.

Usage: python3 scripts/walkthrough/tiny_fgsm.py
"""
import math

W = [[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]]  # (3 classes, 2 pixels)
b = [0.0, 0.0, 1.0]
x = [0.8, 0.9]
t = 0  # the true class
eps = 0.2


def logits(x):  # z = W x + b
    return [sum(W[k][i] * x[i] for i in range(2)) + b[k] for k in range(3)]


def softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def show(name, v):
    print(f"{name:<31}" + "  ".join(f"{a:8.4f}" for a in v))


z = logits(x)
p = softmax(z)
show("x", x)
show("z = W x + b", z)
show("p = softmax(z)", p)
print(f"{'loss = -ln p[t]':<31}{-math.log(p[t]):8.4f}")
dz = [p[k] - (1.0 if k == t else 0.0) for k in range(3)]
show("dL/dz = p - onehot(t)", dz)
g = [sum(W[k][i] * dz[k] for k in range(3)) for i in range(2)]
show("dL/dx = W^T dL/dz", g)
sign = [(g_i > 0) - (g_i < 0) for g_i in g]
show("sign(dL/dx)", sign)
step = [xi + eps * s for xi, s in zip(x, sign)]
show("x + eps sign", step)
x_adv = [min(1.0, max(0.0, v)) for v in step]
show("x' = clip(x + eps sign, 0, 1)", x_adv)
delta = [a - c for a, c in zip(x_adv, x)]
show("delta = x' - x", delta)
print(f"{'distortion = mean |delta|':<31}{sum(abs(d) for d in delta) / 2:8.4f}")
z_adv = logits(x_adv)
p_adv = softmax(z_adv)
show("z' = W x' + b", z_adv)
show("p' = softmax(z')", p_adv)
print("loss' = -ln p'[t]".ljust(31) + f"{-math.log(p_adv[t]):8.4f}")
print(f"{'prediction':<31}{z.index(max(z)):8d} -> {z_adv.index(max(z_adv))}")
print(f"{'change of the loss':<31}{-math.log(p_adv[t]) + math.log(p[t]):8.4f}")
print(f"{'its linear prediction g . delta':<31}{sum(a * d for a, d in zip(g, delta)):8.4f}")
margin = [v[t] - v[1] for v in (z, z_adv)]
print(f"{'margin z[t] - z[1]':<31}{margin[0]:8.4f} -> {margin[1]:.4f}")
