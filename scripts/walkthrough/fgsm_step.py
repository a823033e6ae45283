"""docs/walkthrough.md, section 7: what FGSM does to one digit at each level, from the clean trace
and the `--noise fgsm --level EPS` traces of the same image (a Markdown table), then which
pixels do not move and how far the first-order predictions of the loss and the margin go.

Usage: python3 scripts/walkthrough/fgsm_step.py CLEAN.safetensors FGSM.safetensors [FGSM ...]
"""
import sys
import numpy as np
from trace_file import load

clean, meta = load(sys.argv[1])
label = int(meta["label"])
p = clean["forward.softmax"][0]
rival = int(np.argmax(np.where(np.arange(10) == label, -1, p)))
g, x = clean["backward.input"][0, 0], clean["forward.input"][0, 0]
z = clean["forward.logits"][0]
rows = {k: [] for k in ("eps", "moved by the whole step (x' = x + eps or x - eps in f32)",
                        "moved by less (clipped at 0 or 1 on the way)",
                        "not moved at all", "distortion per pixel, mean of abs(delta)",
                        f"loss (clean: {clean['forward.loss'][0]:.3e})",
                        f"logit margin `z_{label} - z_{rival}` (clean: {z[label] - z[rival]:.3f})", "prediction")}
notes = []
for path in sys.argv[2:]:
    t, m = load(path)
    eps = np.float32(m["level"])
    before, after = (t[k][0, 0].astype(np.float32) for k in ("image.clean", "image.perturbed"))
    whole = (after == before + eps) | (after == before - eps)  # in f32, as the step was taken
    delta = after.astype(float) - before
    moved = np.abs(delta)
    za, pa = t["forward.logits"][0], t["forward.softmax"][0]
    values = [f"eps {m['level']}", whole.sum(), ((moved > 0) & ~whole).sum(), (moved == 0).sum(),
              f"{moved.mean():.4f}", f"{t['forward.loss'][0]:.4g}", f"{za[label] - za[rival]:.3f}",
              f"{za.argmax()} ({pa.max():.1%})"]
    for row, v in zip(rows.values(), values):
        row.append(str(v))
    linear = float((g * delta).sum())
    notes.append(f"eps {m['level']}: g . delta = {linear:.3g} against a loss change of "
                 f"{t['forward.loss'][0] - clean['forward.loss'][0]:.4g}; the margin's prediction "
                 f"-g . delta / p[{rival}] = {-linear / p[rival]:.3g} against "
                 f"{(za[label] - za[rival]) - (z[label] - z[rival]):.3g}; "
                 f"exactly 0 after the step: {(t['image.perturbed'][0, 0] == 0).sum()} pixels")
print("| | " + " | ".join(rows.pop("eps")) + " |")
print("|---|" + "---:|" * (len(sys.argv) - 2))
for name, values in rows.items():
    print(f"| {name} | " + " | ".join(values) + " |")
background = x == 0
print(f"sign(g) = 0: {(g == 0).sum()} pixels; background (x == 0) with g < 0: {(background & (g < 0)).sum()}, "
      f"with g > 0: {(background & (g > 0)).sum()}; background pixels: {background.sum()}")
print("\n".join(notes))
