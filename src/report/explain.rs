//! `advmnist explain`'s page: one test digit's forward pass, its backward pass from `dL/dz` to
//! `dL/dx`, and the gradient-sign attack with an eps slider, laid out from the numbers of
//! `experiments::explain` (this module never calls a model).
//!
//! # The page
//! One self-contained HTML file, as the human study's (`report::human`): no network, plain
//! JavaScript, every number inline in a `<script type="application/json">` element. The
//! JavaScript only draws: each picture is a `<canvas>` painted from the embedded values, every
//! value of a heat map is shown on hover (or tap), and each panel has a button that saves its
//! canvas as a PNG for slides. The slider picks one of the levels `explain` computed; nothing
//! is computed in the browser.
//!
//! The text around each picture (its title, one line of math in docs/math.md's notation, a
//! relative link to that document's section, for reading beside a clone) is written here, once,
//! in [`FORWARD_STEPS`], [`BACKWARD_STEPS`] and the panels of the attack.
//!
//! # Colours
//! Signed values use the diverging map of `advmnist show` (`report::digits_png::diverging_colour`):
//! white at 0, linear to ColorBrewer's RdBu blue at -max and its red at +max (Cynthia Brewer,
//! colorbrewer2.org, "RdBu", reversed so that blue is negative; a scheme ColorBrewer marks
//! colour-blind safe: its two hues differ in lightness and in the blue-yellow axis that
//! red-green colour blindness keeps). Each heat map is scaled by the largest `|value|` of its
//! own tensor, all channels of a layer on one scale, so the channels compare. Pixels in [0, 1]
//! are grey, 0 black and 1 white, as `show` draws them.

use crate::experiments::explain::attack::FgsmLevel;
use crate::experiments::explain::warm_up::LinearWarmUp;
use crate::experiments::explain::{Explanation, Tensor};
use crate::report::digits_png::{DIVERGING_NEGATIVE, DIVERGING_POSITIVE};
use crate::report::table::escape;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the page says about the model it explains.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainedModel {
    /// The model file's name (without its folder, so that no local path is written).
    pub file_name: String,
    /// SHA-256 of the model file.
    pub sha256: String,
}

/// The largest eps of the slider: the scale of the `delta` heat map, fixed so that the picture
/// grows with eps instead of being rescaled at every step.
const DELTA_SCALE: f32 = 0.3;

/// The text of one panel: the picture of a tensor, a title, one line of math and the section of
/// docs/math.md it comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepText {
    /// The name of the map it draws (a trace name, or `attack.*`, `rules.*`).
    pub map: &'static str,
    /// How it is drawn: `grey` (pixels in [0, 1]), `heat` (signed, diverging), `bars`.
    pub kind: &'static str,
    pub title: &'static str,
    /// One line of math, in docs/math.md's notation.
    pub math: &'static str,
    /// The heading of docs/math.md it links to, as a GitHub anchor.
    pub section: &'static str,
    /// What to look at, in one sentence.
    pub note: &'static str,
}

/// The forward pass, in `FORWARD_TENSORS` order.
pub const FORWARD_STEPS: [StepText; 9] = [
    StepText {
        map: "forward.input",
        kind: "grey",
        title: "x: the digit (1, 28, 28)",
        math: "x[c, i, j] = pixel / 255, in [0, 1]",
        section: "1-notation-and-the-chain-rule",
        note: "The image as LeNet sees it: 0 is the black background, 1 white ink.",
    },
    StepText {
        map: "forward.conv1",
        kind: "heat",
        title: "conv1: 20 feature maps (20, 24, 24)",
        math: "y[o, i, j] = b[o] + sum_{c, ki, kj} W[o, c, ki, kj] * x[c, i + ki, j + kj]",
        section: "7-convolution-im2col",
        note: "20 filters of 5x5, no padding, no ReLU after them (Caffe's LeNet): the blank \
               background gives each map its bias, a flat colour.",
    },
    StepText {
        map: "forward.pool1",
        kind: "heat",
        title: "pool1: 2x2 max-pooling (20, 12, 12)",
        math: "y[c, i, j] = max over q in {0, 1, 2, 3} of x[c, 2i + q/2, 2j + q%2]",
        section: "6-max-pooling",
        note: "Each output keeps the largest of four; on the flat background all four tie, \
               and the first in row-major order wins.",
    },
    StepText {
        map: "forward.conv2",
        kind: "heat",
        title: "conv2: 50 feature maps (50, 8, 8)",
        math: "y[o, i, j] = b[o] + sum_{c, ki, kj} W[o, c, ki, kj] * x[c, i + ki, j + kj]",
        section: "7-convolution-im2col",
        note: "50 filters of 20 x 5 x 5, each reading all 20 maps of pool1.",
    },
    StepText {
        map: "forward.pool2",
        kind: "heat",
        title: "pool2: 2x2 max-pooling (50, 4, 4)",
        math: "y[c, i, j] = max over q in {0, 1, 2, 3} of x[c, 2i + q/2, 2j + q%2]",
        section: "6-max-pooling",
        note: "Flattened in (C, H, W) order, x[c*16 + i*4 + j], these 800 numbers feed fc1.",
    },
    StepText {
        map: "forward.fc1",
        kind: "heat",
        title: "fc1: 500 units (500), drawn 20 x 25",
        math: "y[o] = b[o] + sum_i W[o, i] * x[i]",
        section: "3-dense",
        note: "A dense layer on the 800 flattened pool2 values.",
    },
    StepText {
        map: "forward.relu",
        kind: "heat",
        title: "ReLU (500), drawn 20 x 25",
        math: "y = max(0, x)",
        section: "4-relu-and-sigmoid",
        note: "Negative units become exactly 0: they will pass no gradient back.",
    },
    StepText {
        map: "forward.logits",
        kind: "bars",
        title: "z: the logits (10)",
        math: "z[k] = b[k] + sum_i W[k, i] * y[i]",
        section: "3-dense",
        note: "fc2, the last layer: one score per class.",
    },
    StepText {
        map: "forward.softmax",
        kind: "bars",
        title: "p: the softmax (10)",
        math: "p[k] = exp(z[k]) / sum_j exp(z[j]),   L = -log p[t]",
        section: "2-softmax-and-cross-entropy",
        note: "The class probabilities and the loss of the true label t.",
    },
];

/// The backward pass, from the loss to the pixels, in `BACKWARD_TENSORS` order.
pub const BACKWARD_STEPS: [StepText; 8] = [
    StepText {
        map: "backward.logits",
        kind: "bars",
        title: "1. dz = dL/dz (10)",
        math: "dz[k] = p[k] - [k == t]",
        section: "2-softmax-and-cross-entropy",
        note: "Negative at the true class, p[k] at the others. Every later gradient is linear \
               in dz, so a confident digit's whole gradient is tiny; its sign is not.",
    },
    StepText {
        map: "backward.relu",
        kind: "heat",
        title: "2. fc2 backward: dL/d(ReLU output) (500)",
        math: "d[i] = sum_k dz[k] * W_fc2[k, i]          (dX = dY W)",
        section: "3-dense",
        note: "The dense layer's input gradient: dz spread back through fc2's weights.",
    },
    StepText {
        map: "backward.fc1",
        kind: "heat",
        title: "3. ReLU backward: dL/d(fc1 output) (500)",
        math: "d[i] = d[i] * [y[i] > 0]",
        section: "4-relu-and-sigmoid",
        note: "Units that were off in the forward pass pass nothing: exact zeros.",
    },
    StepText {
        map: "backward.pool2",
        kind: "heat",
        title: "4. fc1 backward, un-flattened: dL/d(pool2 output) (50, 4, 4)",
        math: "d[i] = sum_o d[o] * W_fc1[o, i],   then d[c, i, j] = d[c*16 + i*4 + j]",
        section: "backward-step-by-step",
        note: "The un-flatten moves no data: it is the forward flatten read backwards.",
    },
    StepText {
        map: "backward.conv2",
        kind: "heat",
        title: "5. pool2 backward: dL/d(conv2 output) (50, 8, 8)",
        math: "dx[c, 2i + q/2, 2j + q%2] = dY[c, i, j],  q = argmax of the window; 0 elsewhere",
        section: "6-max-pooling",
        note: "Each window's gradient goes to its maximum alone: three of every four entries \
               are 0.",
    },
    StepText {
        map: "backward.pool1",
        kind: "heat",
        title: "6. conv2 backward: dL/d(pool1 output) (20, 12, 12)",
        math: "dcols = Wm^T dY,  dx = col2im(dcols):  dx[c, i, j] = sum_{o, ki, kj} \
               W[o, c, ki, kj] * dY[o, i - ki, j - kj]",
        section: "7-convolution-im2col",
        note: "Every input collects W * dY from each output whose 5x5 window covers it.",
    },
    StepText {
        map: "backward.conv1",
        kind: "heat",
        title: "7. pool1 backward: dL/d(conv1 output) (20, 24, 24)",
        math: "dx[c, 2i + q/2, 2j + q%2] = dY[c, i, j],  q = argmax of the window; 0 elsewhere",
        section: "ties",
        note: "On the blank background the four entries of a window tie and the first, \
               top-left, takes the gradient: that is why the bottom row and right column of \
               pixels get none.",
    },
    StepText {
        map: "backward.input",
        kind: "heat",
        title: "8. conv1 backward: g = dL/dx (1, 28, 28)",
        math: "dcols = Wm^T dY,  g = dL/dx = col2im(dcols)",
        section: "7-convolution-im2col",
        note: "The input gradient: how the loss changes with each pixel. This is what the \
               attack uses.",
    },
];

/// The attack's panels beside the slider and the `--compare-f32` panels.
pub const ATTACK_STEPS: [StepText; 2] = [
    StepText {
        map: "attack.sign",
        kind: "heat",
        title: "sign(g): the direction of the attack (1, 28, 28)",
        math: "sign(g) = +1 if g > 0, -1 if g < 0, 0 if g = 0",
        section: "the-fast-gradient-sign-method",
        note: "FGSM uses only the sign: every pixel moves by eps, up (red) or down (blue). \
               White pixels have g = 0 exactly and never move.",
    },
    StepText {
        map: "attack.margin_gradient",
        kind: "heat",
        title: "dm/dx: the margin's own gradient (1, 28, 28)",
        math: "m = z[t] - max_{k != t} z[k],   dm/dx = J^T (onehot(t) - onehot(j))",
        section: "square-no-gradient-at-all",
        note: "j is the runner-up class of the clean digit; this gradient is the same backward \
               pass started from onehot(t) - onehot(j) instead of dz.",
    },
];

/// The slider's pictures.
pub const SLIDER_STEPS: [StepText; 5] = [
    StepText {
        map: "level.image",
        kind: "grey",
        title: "x': the adversarial digit (1, 28, 28)",
        math: "x' = clip(x + eps sign(g), 0, 1)",
        section: "the-fast-gradient-sign-method",
        note: "Pushed below 0 or above 1, a pixel is clipped back: background with g < 0 \
               cannot move.",
    },
    StepText {
        map: "level.delta",
        kind: "heat",
        title: "delta = x' - x, the perturbation actually applied (scale 0.3)",
        math: "delta = x' - x,   distortion = 1/784 * sum |delta|",
        section: "the-fast-gradient-sign-method",
        note: "Full steps of eps, smaller ones where the clip bit, 0 where it took all.",
    },
    StepText {
        map: "level.probs",
        kind: "bars",
        title: "p(x'): the probabilities of the adversarial digit (10)",
        math: "p[k] = exp(z[k]) / sum_j exp(z[j]) at x'",
        section: "2-softmax-and-cross-entropy",
        note: "The true class's bar is outlined.",
    },
    StepText {
        map: "level.loss",
        kind: "plot",
        title: "the loss: true change against the first order g . delta",
        math: "L(x') - L(x)  ~  g . delta",
        section: "the-fast-gradient-sign-method",
        note: "For a confident digit g is tiny, so the straight line sees almost nothing while \
               the loss, about exp(-m), shoots up: linearity breaks at once.",
    },
    StepText {
        map: "level.margin",
        kind: "plot",
        title: "the margin: true change against the first order (dm/dx) . delta",
        math: "m(x') - m(x)  ~  (dm/dx) . delta",
        section: "square-no-gradient-at-all",
        note: "The margin is piecewise linear in the logits: its first order holds far longer, \
               until ReLUs, max-pool winners or the runner-up change.",
    },
];

/// The `--compare-f32` panels.
pub const RULE_STEPS: [StepText; 3] = [
    StepText {
        map: "rules.exact",
        kind: "heat",
        title: "g, exact rule (1, 28, 28)",
        math: "dz[t] = p[t] - 1 computed as -sum_{k != t} p[k]",
        section: "2-softmax-and-cross-entropy",
        note: "advmnist's gradient: the true class's term stays.",
    },
    StepText {
        map: "rules.caffe",
        kind: "heat",
        title: "g, Caffe's float32 rule (1, 28, 28)",
        math: "dz[t] = p[t] - 1 in float32: 0 once p[t] rounds to 1.0",
        section: "two-gradients-the-exact-one-and-the-one-caffe-computed",
        note: "Caffe's SoftmaxWithLoss (and PyTorch's float32 cross-entropy).",
    },
    StepText {
        map: "rules.sign_differs",
        kind: "mask",
        title: "where sign(g) differs between the two rules",
        math: "sign(g_exact) != sign(g_caffe)",
        section: "two-gradients-the-exact-one-and-the-one-caffe-computed",
        note: "Black: the two attacks push this pixel differently. Grey: the digit.",
    },
];

/// One drawable map of the page's data: its shape (the trace's, batch of one first), its
/// values, and the scale of its colours (the largest |value|; 1 if all are 0).
#[derive(serde::Serialize)]
struct MapData<'a> {
    shape: Vec<usize>,
    values: std::borrow::Cow<'a, [f32]>,
    max_abs: f32,
}

impl<'a> MapData<'a> {
    fn new(shape: Vec<usize>, values: std::borrow::Cow<'a, [f32]>) -> Self {
        let max_abs = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        MapData {
            shape,
            values,
            max_abs: if max_abs > 0.0 { max_abs } else { 1.0 },
        }
    }

    fn of(t: &'a Tensor) -> Self {
        MapData::new(t.shape.clone(), (&t.values[..]).into())
    }

    fn image(values: Vec<f32>) -> Self {
        MapData::new(vec![1, 1, 28, 28], values.into())
    }
}

/// The page's data: the maps by name, the slider's levels and the warm-up.
#[derive(serde::Serialize)]
struct PageData<'a> {
    image: usize,
    label: u8,
    predicted: u8,
    maps: BTreeMap<&'static str, MapData<'a>>,
    levels: &'a [FgsmLevel],
    delta_scale: f32,
    warm_up: &'a LinearWarmUp,
    /// The PNG files' names start with this.
    file_prefix: String,
}

fn page_data<'a>(e: &'a Explanation) -> PageData<'a> {
    let mut maps = BTreeMap::new();
    for step in FORWARD_STEPS.iter().chain(&BACKWARD_STEPS) {
        let t = e
            .tensor(step.map)
            .expect("every step's tensor is explained");
        maps.insert(step.map, MapData::of(t));
    }
    let signs = e.attack.sign.iter().map(|&s| f32::from(s)).collect();
    maps.insert("attack.sign", MapData::image(signs));
    maps.insert(
        "attack.margin_gradient",
        MapData::new(vec![1, 1, 28, 28], (&e.attack.margin_gradient[..]).into()),
    );
    if let Some(r) = &e.rules {
        maps.insert(
            "rules.exact",
            MapData::new(vec![1, 1, 28, 28], (&r.exact[..]).into()),
        );
        maps.insert(
            "rules.caffe",
            MapData::new(vec![1, 1, 28, 28], (&r.caffe[..]).into()),
        );
        let differs = r.sign_differs.iter().map(|&d| f32::from(d)).collect();
        maps.insert("rules.sign_differs", MapData::image(differs));
    }
    PageData {
        image: e.image,
        label: e.label,
        predicted: e.predicted,
        maps,
        levels: &e.attack.levels,
        delta_scale: DELTA_SCALE,
        warm_up: &e.warm_up,
        file_prefix: format!("explain-image{}", e.image),
    }
}

/// The relative link to a section of docs/math.md, for a page written in a folder directly
/// inside a clone (e.g. `pages/` or `docs/`).
pub fn math_link(section: &str) -> String {
    format!("../docs/math.md#{section}")
}

/// Every docs/math.md anchor the page links to (for the test that they exist).
pub fn math_sections() -> Vec<&'static str> {
    let mut s: Vec<&str> = FORWARD_STEPS
        .iter()
        .chain(&BACKWARD_STEPS)
        .chain(&ATTACK_STEPS)
        .chain(&SLIDER_STEPS)
        .chain(&RULE_STEPS)
        .map(|t| t.section)
        .chain(EXTRA_SECTIONS)
        .collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// Sections linked from the page's running text rather than from a panel.
const EXTRA_SECTIONS: [&str; 2] = [
    "8-the-whole-lenet-the-fast-gradient-sign-method-and-pgd",
    "3-dense",
];

/// The panel id of a map: `panel-` and the map's name with dots as dashes.
pub fn panel_id(map: &str) -> String {
    format!("panel-{}", map.replace(['.', '_'], "-"))
}

/// Every panel the page can hold, in page order of its steps: the forward, backward, attack,
/// slider and float32-rule steps' (the last only with `--compare-f32`), then the warm-up's.
pub fn panel_ids() -> Vec<String> {
    let mut ids: Vec<String> = FORWARD_STEPS
        .iter()
        .chain(&BACKWARD_STEPS)
        .chain(&ATTACK_STEPS)
        .chain(&SLIDER_STEPS)
        .chain(&RULE_STEPS)
        .map(|step| panel_id(step.map))
        .collect();
    ids.push(panel_id("warm_up"));
    ids
}

/// One panel: a canvas the script paints from map `step.map`, its caption (title, math, link,
/// note and `extra`, already HTML), a readout for hovered values and a button saving the PNG.
fn panel(step: &StepText, extra: &str) -> String {
    let id = panel_id(step.map);
    format!(
        "<figure class=\"panel panel-{kind}\" id=\"{id}\">\n\
         <canvas data-map=\"{map}\" data-kind=\"{kind}\" aria-label=\"{title}\"></canvas>\n\
         <figcaption><strong>{title}</strong><br><code>{math}</code> \
         <a href=\"{link}\">math.md</a><br><span class=\"note\">{note}</span>{extra}</figcaption>\n\
         <div class=\"tools\"><output class=\"readout\" aria-live=\"polite\"></output>\
         <button type=\"button\" class=\"save\">Save PNG</button></div>\n\
         </figure>\n",
        kind = step.kind,
        map = step.map,
        title = escape(step.title),
        math = escape(step.math),
        link = math_link(step.section),
        note = escape(step.note),
    )
}

/// A number for the page's text: 4 significant digits with trailing zeros dropped, in exponent
/// form outside 1e-3..1e4 (the page's script formats its numbers the same way).
pub fn number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        let text = format!("{v:.decimals$}");
        match text.contains('.') {
            true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
            false => text,
        }
    } else {
        format!("{v:.3e}")
    }
}

/// A probability for the page's text: 6 decimals once it is above 0.999, so that a confident
/// digit's `p` does not read as 1.
fn probability(p: f64) -> String {
    if p > 0.999 {
        format!("{p:.6}")
    } else {
        number(p)
    }
}

/// The two-pixel vector `(a, b)` in the page's text.
fn pair(v: [f64; 2]) -> String {
    format!("({}, {})", number(v[0]), number(v[1]))
}

fn signed(v: f64) -> String {
    if v < 0.0 {
        format!("({})", number(v))
    } else {
        number(v)
    }
}

/// The warm-up's steps, every number written out.
fn warm_up_html(w: &LinearWarmUp) -> String {
    let wt = &w.model.weight;
    let (x, t) = (w.x, w.label);
    let other = 1 - t;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p>Two pixels <code>x = {}</code>, two classes, true label <code>t = {t}</code>, a \
         linear model <code>z = W x + b</code> with <code>W = [[{}, {}], [{}, {}]]</code>, \
         <code>b = {}</code>: LeNet's last layer, shrunk until a pencil is enough. \
         eps = {}.</p>",
        pair(x),
        number(wt[0][0]),
        number(wt[0][1]),
        number(wt[1][0]),
        number(wt[1][1]),
        pair(w.model.bias),
        number(w.eps),
    );
    let row = |k: usize, v: [f64; 2]| {
        format!(
            "{} * {} + {} * {} + {}",
            signed(wt[k][0]),
            signed(v[0]),
            signed(wt[k][1]),
            signed(v[1]),
            signed(w.model.bias[k])
        )
    };
    let steps = [
        format!(
            "Forward: <code>z = W x + b = ({}, {}) = {}</code>",
            row(0, x),
            row(1, x),
            pair(w.logits)
        ),
        format!(
            "Softmax: <code>p = exp(z) / sum exp(z) = {}</code>; loss <code>L = -log p[{t}] = \
             {}</code>; predicted {}",
            pair(w.probs),
            number(w.loss),
            w.predicted
        ),
        format!(
            "Backward, softmax: <code>dz = p - onehot(t) = {}</code>",
            pair(w.d_logits)
        ),
        format!(
            "Backward, dense: <code>g = dL/dx = W^T dz = ({} * {} + {} * {}, {} * {} + {} * {}) \
             = {}</code>",
            signed(wt[0][0]),
            signed(w.d_logits[0]),
            signed(wt[1][0]),
            signed(w.d_logits[1]),
            signed(wt[0][1]),
            signed(w.d_logits[0]),
            signed(wt[1][1]),
            signed(w.d_logits[1]),
            pair(w.gradient)
        ),
        format!(
            "The attack's direction: <code>sign(g) = {}</code>",
            pair(w.sign)
        ),
        format!(
            "Step: <code>x + eps sign(g) = {}</code>; clip to [0, 1]: <code>x' = {}</code>, so \
             <code>delta = x' - x = {}</code>{}",
            pair(w.stepped),
            pair(w.adversarial),
            pair(w.delta),
            if w.stepped != w.adversarial {
                " (the clip took part of a step)"
            } else {
                ""
            }
        ),
        format!(
            "At <code>x'</code>: <code>z = {}</code>, <code>p = {}</code>, \
             <code>L = {}</code>; predicted {}{}",
            pair(w.adversarial_logits),
            pair(w.adversarial_probs),
            number(w.adversarial_loss),
            w.adversarial_predicted,
            if w.adversarial_predicted != t {
                ": the attack flipped it"
            } else {
                ""
            }
        ),
        format!(
            "The loss, first order: <code>g . delta = {}</code> against the true change \
             <code>L(x') - L(x) = {}</code>: the softmax bends.",
            number(w.loss_first_order),
            number(w.loss_change)
        ),
        format!(
            "The margin <code>m = z[{t}] - z[{other}]</code> goes from {} to {}; its gradient \
             <code>W^T (onehot(t) - onehot({other})) = {}</code> predicts <code>{}</code> for a \
             true change of <code>{}</code>: exact, because a linear model's margin is linear. \
             And <code>g = -p[{other}] dm/dx</code>: the loss gradient is the margin's, \
             scaled by <code>p[{other}] = {}</code>.",
            number(w.margin),
            number(w.adversarial_margin),
            pair(w.margin_gradient),
            number(w.margin_first_order),
            number(w.margin_change),
            number(w.probs[other])
        ),
    ];
    let _ = writeln!(s, "<ol class=\"steps\">");
    for step in steps {
        let _ = writeln!(s, "<li>{step}</li>");
    }
    let _ = writeln!(s, "</ol>\n<div class=\"grid\">");
    let picture = StepText {
        map: "warm_up",
        kind: "warmup",
        title: "the two pixels as a point of the unit square",
        math: "x' = clip(x + eps sign(g), 0, 1)",
        section: "the-fast-gradient-sign-method",
        note: "Shaded: where the model says t. The dashed square is every image within eps of \
               x in every pixel (the L-infinity ball); the sign step goes to its corner, and \
               the clip pulls it back into the square of valid images.",
    };
    s.push_str(&panel(&picture, ""));
    s.push_str("</div>\n");
    s
}

/// The page's header line about the digit and the model.
fn header_html(e: &Explanation, model: &ExplainedModel) -> String {
    let p = e
        .tensor("forward.softmax")
        .map(|t| f64::from(t.values[e.predicted as usize]))
        .unwrap_or(f64::NAN);
    format!(
        "<p class=\"lede\">Test image <strong>{}</strong> of MNIST, true label <strong>{}</strong>, \
         predicted <strong>{}</strong> (p = {}), loss <code>L = {}</code>. Model \
         <code>{}</code> (SHA-256 <code>{}</code>). Every number on this page was computed by \
         advmnist {}: the network in float32, as the attacks run it (the tensors of \
         <code>advmnist trace --model {} --image {}</code>), the slider's losses and \
         probabilities in float64 from its logits; the page only draws them. Hover over (or \
         tap) a picture to read its values.</p>",
        e.image,
        e.label,
        e.predicted,
        probability(p),
        number(f64::from(e.loss)),
        escape(&model.file_name),
        &model.sha256[..model.sha256.len().min(16)],
        env!("CARGO_PKG_VERSION"),
        escape(&model.file_name),
        e.image
    )
}

/// The backward section's extra note per step: counts of exact zeros where they matter.
fn backward_extra(e: &Explanation, map: &str) -> String {
    let t = e.tensor(map).expect("explained");
    match map {
        "backward.fc1" | "backward.conv2" | "backward.conv1" | "backward.input" => format!(
            " <span class=\"count\">{} of {} entries are exactly 0.</span>",
            t.zeros,
            t.values.len()
        ),
        _ => String::new(),
    }
}

fn rules_html(e: &Explanation) -> String {
    let Some(r) = &e.rules else {
        return String::new();
    };
    let t = e.label as usize;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<section id=\"compare-f32\">\n<h2>4. The float32 rule: Caffe's gradient beside the \
         exact one</h2>\n<p>The two differ only in the true class's entry of <code>dz</code>: \
         here <code>dz[{t}] = {}</code> (exact) and <code>{}</code> (Caffe's float32 \
         <code>p[t] - 1</code>). {} The signs of <strong>{} of {}</strong> pixels differ: those \
         are the pixels the two attacks push differently. <a href=\"{}\">math.md, section \
         11</a>.</p>\n<div class=\"grid\">",
        number(f64::from(r.d_logits_exact[t])),
        number(f64::from(r.d_logits_caffe[t])),
        if r.d_logits_caffe[t] == 0.0 {
            "In float32 p[t] rounded to 1.0, so Caffe's rule lost the true class's term: its \
             gradient only pushes the wrong classes up, and its direction turns."
        } else {
            "p[t] is not 1.0 in float32 here, so the two gradients agree to rounding; try a \
             digit the model is sure of."
        },
        r.comparison.pixels_sign_differs,
        r.comparison.pixels,
        math_link("two-gradients-the-exact-one-and-the-one-caffe-computed"),
    );
    for step in &RULE_STEPS {
        s.push_str(&panel(step, ""));
    }
    s.push_str("</div>\n</section>\n");
    s
}

const PAGE_TEMPLATE: &str = include_str!("explain_page.html");

/// The page of one explained digit.
pub fn explain_html(e: &Explanation, model: &ExplainedModel) -> String {
    let forward: String = FORWARD_STEPS.iter().map(|s| panel(s, "")).collect();
    let backward: String = BACKWARD_STEPS
        .iter()
        .map(|s| panel(s, &backward_extra(e, s.map)))
        .collect();
    let attack: String = ATTACK_STEPS
        .iter()
        .map(|s| {
            let extra = match s.map {
                "attack.sign" => format!(
                    " <span class=\"count\">{} of 784 pixels have g = 0.</span>",
                    e.attack.zero_gradient_pixels
                ),
                _ => format!(
                    " <span class=\"count\">Runner-up of the clean digit: j = {}.</span>",
                    e.attack.margin_runner_up
                ),
            };
            panel(s, &extra)
        })
        .collect();
    let slider: String = SLIDER_STEPS.iter().map(|s| panel(s, "")).collect();
    let data = serde_json::to_string(&page_data(e))
        .expect("plain data")
        .replace('<', "\\u003c");
    let colour = |c: (u8, u8, u8)| format!("[{}, {}, {}]", c.0, c.1, c.2);
    // The data goes in last, so that nothing inside it is taken for a placeholder.
    PAGE_TEMPLATE
        .replace("{{IMAGE}}", &e.image.to_string())
        .replace("{{HEADER}}", &header_html(e, model))
        .replace("{{WARM_UP}}", &warm_up_html(&e.warm_up))
        .replace("{{FORWARD}}", &forward)
        .replace("{{BACKWARD}}", &backward)
        .replace("{{ATTACK}}", &attack)
        .replace("{{SLIDER}}", &slider)
        .replace("{{RULES}}", &rules_html(e))
        .replace(
            "{{RULES_NAV}}",
            match e.rules {
                Some(_) => "<a href=\"#compare-f32\">4. The float32 rule</a>",
                None => "",
            },
        )
        .replace("{{MATH_FGSM}}", &math_link("the-fast-gradient-sign-method"))
        .replace(
            "{{MATH_LENET}}",
            &math_link("8-the-whole-lenet-the-fast-gradient-sign-method-and-pgd"),
        )
        .replace("{{MATH_DENSE}}", &math_link("3-dense"))
        .replace("{{NEGATIVE}}", &colour(DIVERGING_NEGATIVE))
        .replace("{{POSITIVE}}", &colour(DIVERGING_POSITIVE))
        .replace("{{DATA}}", &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_with_four_significant_digits() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1.2), "1.2");
        assert_eq!(number(-0.2), "-0.2");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.401_312_34), "-0.4013");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(2.289e-5), "2.289e-5");
        assert_eq!(number(-12_346.0), "-1.235e4");
    }

    #[test]
    fn the_steps_draw_the_explained_tensors_in_order_each_in_its_own_panel() {
        use crate::experiments::explain::{BACKWARD_TENSORS, FORWARD_TENSORS};
        let maps = |steps: &[StepText]| steps.iter().map(|s| s.map).collect::<Vec<_>>();
        assert_eq!(maps(&FORWARD_STEPS), FORWARD_TENSORS);
        assert_eq!(maps(&BACKWARD_STEPS), BACKWARD_TENSORS);
        let mut ids = panel_ids();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all, "two panels share an id");
    }

    #[test]
    fn panel_ids_are_the_map_names() {
        assert_eq!(panel_id("backward.conv1"), "panel-backward-conv1");
        assert_eq!(
            panel_id("attack.margin_gradient"),
            "panel-attack-margin-gradient"
        );
    }
}
