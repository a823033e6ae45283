//! Checks a model's hand-written gradients on real test images against central finite
//! differences in f64: `advmnist gradcheck`.
//!
//! What is checked, in two links of the chain rule:
//!
//! 1. **`d_logits`**, `softmax_xent::backward`, against central differences of each image's
//!    loss as a function of its logits, computed by an independent formula,
//!    `l(z) = ln(1 + sum_{k != y} exp(z_k - z_y))` (`f64::ln_1p`). A confident digit's loss is
//!    tiny (2.3e-5 for test image 0 under the default model); `ln_1p` keeps its relative
//!    accuracy where the library's `logsumexp(z) - z_y`, a difference of two numbers near
//!    `z_y` (14.4 there), would not.
//! 2. **Everything from the logits down**: the input gradient (`LeNet::input_gradient`, the
//!    path every attack uses, all 784 pixels of every image) and a seeded sample of entries of
//!    every parameter tensor (`LeNet::loss_and_gradients`, the path training uses), against
//!    central differences of `F = sum_n <g_n, z_n>`, the logits `z_n` weighted by the fixed
//!    `g_n = dL/dz_n` of link 1. By the chain rule `dF/dx = dL/dx` at the point of the check.
//!    Differencing `F` rather than the loss avoids the cancellation described in link 1: the
//!    loss's own rounding, about 1e-16 x |z_y| ~ 1e-15, divided by `2h = 2e-4` is 5e-12, while
//!    a confident digit's input gradient has components of 1e-9 and less (its largest is
//!    1.4e-7 for test image 1 under the default model): relative errors of 5e-3 and more.
//!
//! The step, [`STEP`] `= 1e-4`: LeNet's logits are *piecewise linear* in the pixels and in any
//! one weight (convolutions, max-pooling with its winners fixed, dense layers, ReLU with its
//! signs fixed), so within one piece the central difference of `F` has no truncation error at
//! all and only rounding is left, which shrinks as `1/h`. Measured with `advmnist gradcheck`
//! on the default model (3 images, 20 entries per tensor): the worst relative error was 4.9e-6
//! with `h = 1e-6` and 5.7e-8 with `h = 1e-4`, a hundredth, as rounding predicts; the number of
//! kinks was the same (they are exact ties, not near-ties the step crosses). Kinks are handled
//! on their piece (below), so the step need not be tiny to avoid them. The one smooth
//! nonlinearity, the softmax of link 1, has truncation error `h^2/6` relative, 2e-9.
//!
//! Kinks: where the step crosses from one piece into another (a max-pool window whose winner
//! changes, a ReLU input changing sign), or starts on a border between two (a tied window,
//! which on a real digit's blank background is the rule, not the exception: conv1's output
//! there is its bias in all four places of a window), the loss has no derivative, and its
//! central difference averages two one-sided slopes that no analytic gradient can match. Such
//! coordinates are **detected**: a coordinate is a kink when the pattern of max-pool winners
//! (pool1, pool2) and ReLU signs (fc1) of any image at `+h` or at `-h` differs from the
//! pattern at the point itself. (At an exact tie whose candidates move at different rates, the
//! winners at `+h` and `-h` differ, so every such coordinate is caught.) A kink is not simply
//! skipped, since on a digit four in five pixels are kinks: it is checked against the central
//! difference of the *piece* the tie rule picked, the network with the point's winners and
//! ReLU signs held fixed ([`logits_on_piece`], an independent forward pass that gathers each
//! window's value at the recorded winner). That is the function whose gradient the backward
//! pass computes at a tie (docs/math.md, section 6), and PyTorch's. The report counts the
//! smooth coordinates and the kinks separately, with the worst error of each.
//!
//! The tolerance, [`TOL`] `= 1e-5`, on the relative error `|a - n| / max(|a|, |n|, floor)`,
//! `floor = FLOOR x` the largest `|a|` or `|n|` of that tensor: about 170 times the worst
//! error measured above, so rounding does not fail a correct gradient; entries far smaller
//! than the tensor's largest are held to the floor's absolute scale rather than to a relative
//! error their rounding cannot meet.
//! Any real mistake (a wrong sign, a gradient routed to the wrong pixel, a missing term) gives
//! an error of order 1 (`tests/integration/audit.rs` checks that such mistakes FAIL).
//!
//! Committees and pipelines (`advmnist gradcheck --committee`, `--model --pre`) are checked by
//! [`crate::audit::committee`] and [`crate::audit::pipeline`] with the same two links, the same
//! step, tolerance and report, and the same kink rule, through
//! [`numeric_input_gradient_through`]: several LeNets (a committee's members) behind a common
//! [`InputStages`] (preprocessing stages, or [`NoStages`]), `F = sum_m sum_n <g_mn, z_mn>`, and a
//! coordinate is a kink when any member's piece or the front's own piece (where injected
//! noise clipped) changes at `+h` or `-h`.

use crate::layers::{conv, dense, softmax_xent};
use crate::models::lenet::{DropoutRates, LeNet, LeNetCache};
use ndarray::{s, Array2, Array4, ArrayView2, ArrayView4, Axis};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Step of the central differences (see the module comment for why).
pub const STEP: f64 = 1e-4;
/// Largest relative error that passes (see the module comment for why).
pub const TOL: f64 = 1e-5;
/// Entries smaller than `FLOOR` times the tensor's largest are compared at that absolute scale.
pub const FLOOR: f64 = 1e-3;

/// The worst coordinate of a tensor's check.
#[derive(Clone, Debug, PartialEq)]
pub struct Worst {
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
    pub relative_error: f64,
}

/// The check of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorCheck {
    pub name: String,
    /// Coordinates where the loss is smooth over the step, checked against its central difference.
    pub smooth: usize,
    /// Coordinates at a kink, checked against the central difference of the tie rule's piece.
    pub kinks: usize,
    pub worst_smooth: Option<Worst>,
    pub worst_kink: Option<Worst>,
    pub pass: bool,
}

/// Compares an analytic gradient with a numeric one, coordinate by coordinate; `kinks` marks
/// the coordinates whose numeric value is that of the tie rule's piece. Passes when every
/// coordinate's relative error is at most [`TOL`] and there was at least one. NaN never passes.
pub fn compare(name: &str, analytic: &[f64], numeric: &[f64], kinks: &[bool]) -> TensorCheck {
    assert_eq!(analytic.len(), numeric.len(), "{name}: lengths differ");
    assert_eq!(analytic.len(), kinks.len(), "{name}: lengths differ");
    let scale = analytic
        .iter()
        .chain(numeric)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = FLOOR * scale;
    let mut worst = [None::<Worst>, None::<Worst>];
    let mut pass = !analytic.is_empty();
    for (index, ((&a, &n), &kink)) in analytic.iter().zip(numeric).zip(kinks).enumerate() {
        let denominator = a.abs().max(n.abs()).max(floor);
        let relative_error = if a == n {
            0.0
        } else {
            (a - n).abs() / denominator
        };
        // NaN fails, and counts as the worst.
        if relative_error.is_nan() || relative_error > TOL {
            pass = false;
        }
        let slot = &mut worst[usize::from(kink)];
        if slot.as_ref().is_none_or(|w| {
            !w.relative_error.is_nan()
                && (relative_error.is_nan() || relative_error > w.relative_error)
        }) {
            *slot = Some(Worst {
                index,
                analytic: a,
                numeric: n,
                relative_error,
            });
        }
    }
    let kink_count = kinks.iter().filter(|&&k| k).count();
    let [worst_smooth, worst_kink] = worst;
    TensorCheck {
        name: name.into(),
        smooth: analytic.len() - kink_count,
        kinks: kink_count,
        worst_smooth,
        worst_kink,
        pass,
    }
}

/// The piece of the loss a batch lies on: which input won each max-pool window, and which of
/// fc1's ReLU inputs were positive. Within one piece the logits are linear in the pixels and
/// in any single weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub pool1: Array4<u8>, // (N, 20, 12, 12): winner 0..4 of each window, row-major
    pub pool2: Array4<u8>, // (N, 50, 4, 4)
    pub relu: Array2<bool>, // (N, 500): fc1's output > 0
}

impl Piece {
    fn of(cache: &LeNetCache<f64>) -> Piece {
        let cat = |parts: Vec<ndarray::ArrayView4<u8>>| {
            ndarray::concatenate(Axis(0), &parts).expect("chunks of one batch")
        };
        Piece {
            pool1: cat(cache
                .features
                .iter()
                .map(|f| f.pool1.argmax.view())
                .collect()),
            pool2: cat(cache
                .features
                .iter()
                .map(|f| f.pool2.argmax.view())
                .collect()),
            relu: cache.relu.output.mapv(|v| v > 0.0),
        }
    }

    /// Whether image `n` lies on the same piece in both.
    fn same_for(&self, other: &Piece, n: usize) -> bool {
        self.pool1.index_axis(Axis(0), n) == other.pool1.index_axis(Axis(0), n)
            && self.pool2.index_axis(Axis(0), n) == other.pool2.index_axis(Axis(0), n)
            && self.relu.row(n) == other.relu.row(n)
    }

    /// The piece of `times` copies of the batch, one after the other.
    fn tiled(&self, times: usize) -> Piece {
        Piece {
            pool1: tile(self.pool1.view(), times),
            pool2: tile(self.pool2.view(), times),
            relu: tile(self.relu.view(), times),
        }
    }
}

/// `times` copies of `a` along axis 0, one after the other: row `c N + n` is row `n`.
pub fn tile<A: Clone, D: ndarray::RemoveAxis>(
    a: ndarray::ArrayView<A, D>,
    times: usize,
) -> ndarray::Array<A, D> {
    ndarray::concatenate(Axis(0), &vec![a; times]).expect("copies of one array")
}

/// The logits and the piece of a batch.
fn logits_and_piece(net: &LeNet<f64>, x: ArrayView4<f64>) -> (Array2<f64>, Piece) {
    let (logits, cache) = net.forward(x, None);
    (logits, Piece::of(&cache))
}

/// Each window's value at its recorded winner: max-pooling with the winners held fixed.
fn gather(h: ArrayView4<f64>, winners: ArrayView4<u8>) -> Array4<f64> {
    Array4::from_shape_fn(winners.dim(), |(n, c, i, j)| {
        let q = winners[[n, c, i, j]] as usize;
        h[[n, c, 2 * i + q / 2, 2 * j + q % 2]]
    })
}

/// LeNet's logits on a fixed piece: the forward pass with every max-pool window's winner and
/// every ReLU's sign taken from `piece` rather than from the values. Equals `net.logits(x)`
/// wherever `x` lies on `piece`; written with plain loops for pooling and ReLU, independent of
/// `layers::maxpool` and `layers::relu`.
pub fn logits_on_piece(net: &LeNet<f64>, x: ArrayView4<f64>, piece: &Piece) -> Array2<f64> {
    let n = x.dim().0;
    let h = gather(conv::infer(x, &net.conv1).view(), piece.pool1.view());
    let h = gather(conv::infer(h.view(), &net.conv2).view(), piece.pool2.view());
    let flat = h.into_shape_with_order((n, 800)).expect("contiguous");
    let mut h = dense::infer(flat.view(), &net.fc1);
    ndarray::Zip::from(&mut h)
        .and(&piece.relu)
        .for_each(|v, &on| *v = if on { *v } else { 0.0 });
    dense::infer(h.view(), &net.fc2)
}

/// `sum_k g[k] * (plus[k] - minus[k]) / 2h` for one image's logits.
fn weighted_difference(
    g: ndarray::ArrayView1<f64>,
    plus: ndarray::ArrayView1<f64>,
    minus: ndarray::ArrayView1<f64>,
) -> f64 {
    g.iter()
        .zip(plus.iter().zip(minus.iter()))
        .map(|(&g, (&p, &m))| g * (p - m))
        .sum::<f64>()
        / (2.0 * STEP)
}

/// A member's odds against the true class `y`, `S = sum_{k != y} exp(z_k - z_y) = 1/p_y - 1`,
/// from its logits `row`: a sum of positive terms, accurate however small.
pub fn odds_against(row: &[f64], y: usize) -> f64 {
    row.iter()
        .enumerate()
        .filter(|&(k, _)| k != y)
        .map(|(_, &v)| (v - row[y]).exp())
        .sum()
}

/// Central differences of each image's loss with respect to its logits `z (N, 10)`, by the
/// independent formula `l(z) = ln(1 + sum_{k != y} exp(z_k - z_y))`.
pub fn numeric_logit_gradient(z: ArrayView2<f64>, labels: &[u8]) -> Array2<f64> {
    let loss = |row: &[f64], y: usize| -> f64 { odds_against(row, y).ln_1p() };
    let mut out = Array2::zeros(z.raw_dim());
    for (n, &y) in labels.iter().enumerate() {
        let mut row = z.row(n).to_vec();
        for k in 0..row.len() {
            let orig = row[k];
            row[k] = orig + STEP;
            let plus = loss(&row, y as usize);
            row[k] = orig - STEP;
            let minus = loss(&row, y as usize);
            row[k] = orig;
            out[[n, k]] = (plus - minus) / (2.0 * STEP);
        }
    }
    out
}

/// What lies between the pixels and the LeNets in a check of the input gradient: nothing
/// ([`NoStages`]), or a pipeline's preprocessing stages (`audit::pipeline`). Like LeNet, a front
/// may be piecewise (injected noise that clips): its piece at a point, and its output with
/// that piece held fixed, let [`numeric_input_gradient_through`] treat its kinks as LeNet's.
pub trait InputStages {
    /// Which piece the front is on for a batch (`()` for a smooth or linear front).
    type Piece;
    /// The front's output for images `x (N,1,28,28)` (the LeNets' input), and its piece.
    fn apply(&self, x: ArrayView4<f64>) -> (Array4<f64>, Self::Piece);
    /// The output with the piece held fixed at `piece`: equals `apply(x).0` wherever `x` lies
    /// on `piece`. Only called when [`InputStages::has_pieces`].
    fn apply_on_piece(&self, x: ArrayView4<f64>, piece: &Self::Piece) -> Array4<f64>;
    /// Whether image `n` lies on the same piece in both.
    fn same_for(&self, a: &Self::Piece, b: &Self::Piece, n: usize) -> bool;
    /// Whether the front has more than one piece at all.
    fn has_pieces(&self) -> bool;
    /// The front for `times` copies of its batch, one after the other (row `c N + n` is image
    /// `n`), so that one batch probes several pixels; and a piece for such a batch.
    fn tiled(&self, times: usize) -> Self
    where
        Self: Sized;
    fn tiled_piece(&self, piece: &Self::Piece, times: usize) -> Self::Piece;
}

/// No front: the LeNets see the pixels.
pub struct NoStages;

impl InputStages for NoStages {
    type Piece = ();
    fn apply(&self, x: ArrayView4<f64>) -> (Array4<f64>, ()) {
        (x.to_owned(), ())
    }
    fn apply_on_piece(&self, x: ArrayView4<f64>, _: &()) -> Array4<f64> {
        x.to_owned()
    }
    fn same_for(&self, _: &(), _: &(), _: usize) -> bool {
        true
    }
    fn has_pieces(&self) -> bool {
        false
    }
    fn tiled(&self, _: usize) -> NoStages {
        NoStages
    }
    fn tiled_piece(&self, _: &(), _: usize) {}
}

/// Central differences of `F = sum_n <g_n, z_n(x)>` with respect to every pixel of every
/// image `x (N,1,28,28)`, with `g = d_logits (N, 10)` fixed; and which coordinates are kinks,
/// whose difference is then taken on the point's piece ([`logits_on_piece`]).
/// Pixel `i` of all `N` images moves at once: in evaluation mode no image affects another's
/// logits, so one batch gives each image's own difference.
pub fn numeric_input_gradient(
    net: &LeNet<f64>,
    x: ArrayView4<f64>,
    d_logits: ArrayView2<f64>,
) -> (Array4<f64>, Array4<bool>) {
    numeric_input_gradient_through(&NoStages, &[net], x, &[d_logits])
}

/// Images per batch of probes: [`numeric_input_gradient_through`] moves one pixel per copy of
/// the `N` images, `PROBE_IMAGES / N` pixels (at most a row) per forward pass. Batching does
/// not change any image's numbers (in evaluation mode each image's logits are computed alone:
/// tested bit for bit against three pixels per pass, and the default model's report was the
/// same before and after), but the weights are read once per batch instead of once per pixel:
/// the autoencoder's 2.8 million f64 weights (22 MB) dominated a one-image check. LeNet's f64
/// forward pass holds at most about 0.15 MB an image at once (conv1's output, 92 KB, is the
/// largest tensor), so a batch of 96 stays near 15 MB.
pub const PROBE_IMAGES: usize = 96;

/// One member's logits at a batch of probes, its piece, and its logits on the point's piece.
struct AtProbe {
    logits: Array2<f64>,
    piece: Piece,
    on_piece: Array2<f64>,
}

/// [`numeric_input_gradient`] for LeNets `nets` (a committee's members; one for a single
/// model) behind `front`: central differences of `F = sum_n sum_m <g_mn, z_mn(front(x))>` with
/// `g_m = d_members[m] (N, 10)` fixed, the members' terms added in member order starting from
/// the first (so that one member gives [`numeric_input_gradient`]'s numbers bit for bit). A
/// coordinate of image `n` is a kink when, at `+h` or `-h`, the front's piece or any member's
/// piece differs from the point's; its difference is then taken with the front and every
/// member on the point's pieces. Several pixels are probed per batch ([`PROBE_IMAGES`]).
pub fn numeric_input_gradient_through<F: InputStages>(
    front: &F,
    nets: &[&LeNet<f64>],
    x: ArrayView4<f64>,
    d_members: &[ArrayView2<f64>],
) -> (Array4<f64>, Array4<bool>) {
    let copies = (PROBE_IMAGES / x.dim().0.max(1)).clamp(1, x.dim().3);
    probe_in_batches(front, nets, x, d_members, copies)
}

/// [`numeric_input_gradient_through`] with `copies` pixels probed per batch.
fn probe_in_batches<F: InputStages>(
    front: &F,
    nets: &[&LeNet<f64>],
    x: ArrayView4<f64>,
    d_members: &[ArrayView2<f64>],
    copies: usize,
) -> (Array4<f64>, Array4<bool>) {
    assert!(!nets.is_empty(), "at least one LeNet");
    assert_eq!(nets.len(), d_members.len(), "one d_logits per LeNet");
    let (n, _, h, w) = x.dim();
    let (h0, front_base) = front.apply(x);
    let bases: Vec<Piece> = nets
        .iter()
        .map(|net| logits_and_piece(net, h0.view()).1)
        .collect();
    // Copy c of the N images has pixel `start + c` moved; the last batch may use fewer copies.
    let front = front.tiled(copies);
    let front_base = front.tiled_piece(&front_base, copies);
    let bases: Vec<Piece> = bases.iter().map(|b| b.tiled(copies)).collect();
    let tiled_x = tile(x, copies);
    let mut numeric = Array4::zeros(x.raw_dim());
    let mut kinks = Array4::from_elem(x.raw_dim(), false);
    for start in (0..h * w).step_by(copies) {
        let moved = copies.min(h * w - start);
        let at = |step: f64| {
            let mut probe = tiled_x.clone();
            for c in 0..moved {
                let (i, j) = ((start + c) / w, (start + c) % w);
                probe
                    .slice_mut(s![c * n..(c + 1) * n, 0, i, j])
                    .mapv_inplace(|v| v + step);
            }
            let (out, front_piece) = front.apply(probe.view());
            let out_on_piece = front
                .has_pieces()
                .then(|| front.apply_on_piece(probe.view(), &front_base));
            let members: Vec<AtProbe> = nets
                .iter()
                .zip(&bases)
                .map(|(net, base)| {
                    let (logits, piece) = logits_and_piece(net, out.view());
                    let on_piece =
                        logits_on_piece(net, out_on_piece.as_ref().unwrap_or(&out).view(), base);
                    AtProbe {
                        logits,
                        piece,
                        on_piece,
                    }
                })
                .collect();
            (front_piece, members)
        };
        let (plus_front, plus) = at(STEP);
        let (minus_front, minus) = at(-STEP);
        for c in 0..moved {
            let (i, j) = ((start + c) / w, (start + c) % w);
            for image in 0..n {
                let row = c * n + image;
                let kink = !(front.same_for(&plus_front, &front_base, row)
                    && front.same_for(&minus_front, &front_base, row)
                    && plus.iter().zip(&minus).zip(&bases).all(|((p, m), base)| {
                        p.piece.same_for(base, row) && m.piece.same_for(base, row)
                    }));
                let mut sum = None::<f64>;
                for ((p, m), g) in plus.iter().zip(&minus).zip(d_members) {
                    let (p, m) = if kink {
                        (&p.on_piece, &m.on_piece)
                    } else {
                        (&p.logits, &m.logits)
                    };
                    let d = weighted_difference(g.row(image), p.row(row), m.row(row));
                    sum = Some(sum.map_or(d, |s| s + d));
                }
                numeric[[image, 0, i, j]] = sum.expect("at least one LeNet");
                kinks[[image, 0, i, j]] = kink;
            }
        }
    }
    (numeric, kinks)
}

/// Central differences of `F = sum_n <g_n, z_n>` with respect to the given flat `entries` of
/// parameter tensor number `tensor` (in `PARAMETER_SHAPES` order), `g = d_logits (N, 10)`
/// fixed; and which entries are kinks (any image leaves its piece), whose difference is then
/// taken on the point's piece.
pub fn numeric_parameter_gradient(
    net: &LeNet<f64>,
    x: ArrayView4<f64>,
    d_logits: ArrayView2<f64>,
    tensor: usize,
    entries: &[usize],
) -> (Vec<f64>, Vec<bool>) {
    let n = x.dim().0;
    let (_, base) = logits_and_piece(net, x);
    let mut probe = net.clone();
    let mut numeric = Vec::with_capacity(entries.len());
    let mut kinks = Vec::with_capacity(entries.len());
    for &e in entries {
        let orig = net.parameters()[tensor]
            .data
            .as_slice_memory_order()
            .expect("contiguous")[e];
        let at = |probe: &mut LeNet<f64>, v: f64| {
            probe.parameters_mut()[tensor]
                .data
                .as_slice_memory_order_mut()
                .expect("contiguous")[e] = v;
            let (logits, piece) = logits_and_piece(probe, x);
            (logits, piece, logits_on_piece(probe, x, &base))
        };
        let (plus, plus_piece, plus_on) = at(&mut probe, orig + STEP);
        let (minus, minus_piece, minus_on) = at(&mut probe, orig - STEP);
        at(&mut probe, orig);
        let kink =
            (0..n).any(|i| !(plus_piece.same_for(&base, i) && minus_piece.same_for(&base, i)));
        let (p, m) = if kink {
            (&plus_on, &minus_on)
        } else {
            (&plus, &minus)
        };
        numeric.push(
            d_logits
                .outer_iter()
                .zip(p.outer_iter().zip(m.outer_iter()))
                .map(|(g, (p, m))| weighted_difference(g, p, m))
                .sum(),
        );
        kinks.push(kink);
    }
    (numeric, kinks)
}

/// `count` distinct flat indices below `len` (all of them if `count >= len`), in increasing
/// order, drawn from a ChaCha8 stream seeded by `seed` and the tensor's number.
pub fn sample_entries(len: usize, count: usize, seed: u64, tensor: usize) -> Vec<usize> {
    if count >= len {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(tensor as u64);
    let mut picked = ndarray_rand::rand::seq::index::sample(&mut rng, len, count).into_vec();
    picked.sort_unstable();
    picked
}

/// Every tensor's check, and whether all passed.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    pub images: usize,
    pub tensors: Vec<TensorCheck>,
    /// Lines printed between the table and the verdict: what was checked, where it is not
    /// one LeNet (a committee's members, a pipeline's stages and how its noise was held).
    pub notes: Vec<String>,
}

impl GradcheckReport {
    pub fn pass(&self) -> bool {
        self.tensors.iter().all(|t| t.pass)
    }
}

/// Checks `net`'s gradients on the images `x (N,1,28,28)` with their true `labels`: `d_logits`
/// and the input gradient of each image's own loss, and `params_per_tensor` seeded entries of
/// each parameter tensor's gradient of the batch-mean loss (all entries of a smaller tensor).
pub fn gradcheck(
    net: &LeNet<f64>,
    x: ArrayView4<f64>,
    labels: &[u8],
    params_per_tensor: usize,
    seed: u64,
) -> GradcheckReport {
    let n = x.dim().0;
    assert_eq!(labels.len(), n, "one label per image");
    let logits = net.logits(x);
    let (_, xent) = softmax_xent::forward(logits.view(), labels);
    let mut tensors = Vec::new();

    // Link 1: d_logits of each image's own loss.
    let d_logits = softmax_xent::backward(&xent, labels, 1.0);
    let numeric = numeric_logit_gradient(logits.view(), labels);
    tensors.push(compare(
        "d_logits",
        d_logits.as_slice().expect("contiguous"),
        numeric.as_slice().expect("contiguous"),
        &vec![false; numeric.len()],
    ));

    // Link 2a: the input gradient, as the attacks get it.
    let (_, analytic) = net.input_gradient(x, labels);
    let (numeric, kinks) = numeric_input_gradient(net, x, d_logits.view());
    tensors.push(compare(
        "input",
        analytic.as_slice().expect("contiguous"),
        numeric.as_slice().expect("contiguous"),
        kinks.as_slice().expect("contiguous"),
    ));

    // Link 2b: parameter gradients of the batch-mean loss, as training gets them.
    let mut rngs: Vec<ChaCha8Rng> = (0..n)
        .map(|i| ChaCha8Rng::seed_from_u64(i as u64))
        .collect();
    let (_, grads) = net.loss_and_gradients(x, labels, &DropoutRates::NONE, &mut rngs);
    let d_mean = d_logits.mapv(|v| v / n as f64);
    for (t, g) in grads.parameters().iter().enumerate() {
        let entries = sample_entries(g.data.len(), params_per_tensor, seed, t);
        let flat = g.data.as_slice_memory_order().expect("contiguous");
        let analytic: Vec<f64> = entries.iter().map(|&e| flat[e]).collect();
        let (numeric, kinks) = numeric_parameter_gradient(net, x, d_mean.view(), t, &entries);
        let mut check = compare(g.name, &analytic, &numeric, &kinks);
        for w in [&mut check.worst_smooth, &mut check.worst_kink]
            .into_iter()
            .flatten()
        {
            w.index = entries[w.index]; // the tensor's own flat index
        }
        tensors.push(check);
    }
    GradcheckReport {
        images: n,
        tensors,
        notes: Vec::new(),
    }
}

/// The report as `advmnist gradcheck` prints it.
pub fn format_report(report: &GradcheckReport) -> String {
    let worst = |w: &Option<Worst>| match w {
        Some(w) => format!("{:.2e} @{}", w.relative_error, w.index),
        None => "-".into(),
    };
    // The name column fits the longest name (14 wide at least, as for one LeNet's tensors).
    let width = report
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(14);
    let mut out = format!(
        "{:<width$} {:>7} {:>18} {:>7} {:>18}  {}\n",
        "tensor", "smooth", "worst rel err @i", "kinks", "worst rel err @i", "result"
    );
    for t in &report.tensors {
        out.push_str(&format!(
            "{:<width$} {:>7} {:>18} {:>7} {:>18}  {}\n",
            t.name,
            t.smooth,
            worst(&t.worst_smooth),
            t.kinks,
            worst(&t.worst_kink),
            if t.pass { "PASS" } else { "FAIL" }
        ));
    }
    for note in &report.notes {
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} images, f64, central differences with step {STEP:e}; kinks checked on the tie rule's piece; \
         tolerance {TOL:e} on |a - n| / max(|a|, |n|, {FLOOR:e} x the tensor's largest): {}\n",
        report.images,
        if report.pass() { "PASS" } else { "FAIL" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;

    #[test]
    fn compare_hand_worked() {
        // a = [1, -2, 0.5], n = [1, -2.00001, -0.5]: errors 0, 1e-5/2.00001 ~ 5e-6, and
        // 1/0.5 = 2 for the flipped sign, which fails, as a smooth coordinate or as a kink.
        let a = [1.0, -2.0, 0.5];
        let n = [1.0, -2.00001, -0.5];
        for kinks in [[false, false, false], [false, false, true]] {
            let fail = compare("t", &a, &n, &kinks);
            assert!(!fail.pass);
            let w = if kinks[2] {
                fail.worst_kink
            } else {
                fail.worst_smooth
            }
            .unwrap();
            assert_eq!((w.index, w.relative_error), (2, 2.0));
        }
        let c = compare("t", &a[..2], &n[..2], &[false, true]);
        assert!(c.pass, "{c:?}");
        assert_eq!((c.smooth, c.kinks), (1, 1));
        assert!((c.worst_kink.unwrap().relative_error - 1e-5 / 2.00001).abs() < 1e-15);
        // Nothing checked is no pass; NaN never passes.
        assert!(!compare("t", &[], &[], &[]).pass);
        assert!(!compare("t", &[f64::NAN], &[1.0], &[false]).pass);
    }

    #[test]
    fn floor_holds_tiny_entries_to_the_tensors_scale() {
        // Largest 1.0, so floor 1e-3: an entry of 1e-12 off by 1e-12 has error 1e-9, passes.
        let c = compare("t", &[1.0, 1e-12], &[1.0, 2e-12], &[false, false]);
        assert!(c.pass, "{c:?}");
    }

    #[test]
    fn logit_gradient_formula_matches_softmax_backward() {
        let z = ndarray::arr2(&[[1.0, -2.0, 0.5, 3.0, 0.0, 0.0, -1.0, 2.0, 0.1, -0.3]]);
        let (_, cache) = softmax_xent::forward(z.view(), &[3]);
        let analytic = softmax_xent::backward(&cache, &[3], 1.0);
        let numeric = numeric_logit_gradient(z.view(), &[3]);
        let c = compare(
            "d_logits",
            analytic.as_slice().unwrap(),
            numeric.as_slice().unwrap(),
            &[false; 10],
        );
        assert!(c.pass, "{c:?}");
    }

    /// Probing many pixels per batch gives every image's numbers bit for bit as a few pixels
    /// per batch do (3, with a last batch of one: 784 = 261 x 3 + 1): an image with blank rows
    /// (ties, kinks) under a random LeNet.
    #[test]
    fn batched_probes_change_no_bit() {
        use crate::testutil::random_array;
        let net = LeNet::<f64>::xavier(&mut ChaCha8Rng::seed_from_u64(1));
        let mut x =
            random_array::<f64, ndarray::Ix4>((1, 1, IMAGE_SIDE, IMAGE_SIDE), 9).mapv(f64::abs);
        x.slice_mut(s![.., .., ..6, ..]).fill(0.0);
        let g = random_array::<f64, ndarray::Ix2>((1, 10), 10);
        let few = probe_in_batches(&NoStages, &[&net], x.view(), &[g.view()], 3);
        let many = numeric_input_gradient(&net, x.view(), g.view());
        assert!(
            few.1.iter().any(|&k| k),
            "no kinks: the blank rows should tie"
        );
        assert_eq!(few.1, many.1);
        let bits = |a: &Array4<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(&few.0) == bits(&many.0));
    }

    #[test]
    fn sampled_entries_are_distinct_sorted_and_seeded() {
        let a = sample_entries(1000, 20, 7, 2);
        assert_eq!(a.len(), 20);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, sample_entries(1000, 20, 7, 2));
        assert_ne!(a, sample_entries(1000, 20, 8, 2));
        assert_ne!(a, sample_entries(1000, 20, 7, 3));
        assert_eq!(sample_entries(10, 20, 7, 0), (0..10).collect::<Vec<_>>());
    }
}
