//! Bounds through the affine layers: dense layers, convolutions, the low-pass filter's two
//! passes, and LeNet's last layer taken straight to the margins `z_y - z_j`.
//!
//! **Centre/radius form** (Gowal et al. 2018, section 3, eq. 6). For `x` in the box `[l, u]`,
//! with centre `c = (l + u)/2` and radius `r = (u - l)/2`, the affine map `y = W x + b` lies in
//! `[W c - |W| r + b, W c + |W| r + b]`, and each end is attained at a corner of the box (the
//! corner taking `u_i` where `w_i > 0` and `l_i` elsewhere, and its mirror), so the box is the
//! tightest one for a single affine layer. The sums are formed without halving first,
//! `W (l + u)` and `|W| (u - l)`, then halved: two products per layer on the same operand
//! shapes as the network's own, plus a third, `|W| max(|l|, |u|)`, for the rounding widening
//! (parent module, steps 2 and 3; [`Rounding::finish`]).
//!
//! The naive twins ([`dense_bound_naive`], [`conv_bound_naive`], [`margin_bounds_naive`]) use
//! the other classical form, `W` split into its positive and negative parts
//! (`lower = W+ l + W- u + b`), in plain loops: the same real numbers by another route.
//!
//! Dimension legend: `N` images, `I` inputs, `O` outputs, `C` channels, `H, W` height and width,
//! `K` kernel size, `P = OH * OW` output positions, `G` images per product, `S` filter size.

use super::interval::{Interval, Rounding};
use crate::kernels::gemm::gemm;
use crate::kernels::im2col::{im2col_group, out_size};
use crate::kernels::parallel::{images_per_product, piece_len};
use crate::layers::conv::ConvParams;
use crate::layers::dense::DenseParams;
use ndarray::{s, Array1, Array2, Array4, ArrayView1, ArrayView2, Axis, Ix2, Ix4, Zip};
use rayon::prelude::*;

/// An affine map `y = W x + b` of the float32 network, widened exactly to f64, with `|W|` and the
/// rounding widening of an output that sums `I` products and a bias.
#[derive(Clone, Debug)]
pub struct AffineMap {
    pub weight: Array2<f64>,     // (O, I)
    pub weight_abs: Array2<f64>, // (O, I): |W|
    pub bias: Array1<f64>,       // (O)
    pub rounding: Rounding,      // for I products and the bias
}

impl AffineMap {
    /// From f32 weights `(O, I)` and bias `(O)` (every f32 is an f64: the widening is exact).
    pub fn new(weight: ArrayView2<f32>, bias: ArrayView1<f32>) -> Self {
        assert_eq!(weight.nrows(), bias.len(), "one bias per output");
        let weight = weight.mapv(f64::from);
        AffineMap {
            weight_abs: weight.mapv(f64::abs),
            rounding: Rounding::for_products(weight.ncols()),
            weight,
            bias: bias.mapv(f64::from),
        }
    }

    /// A dense layer (`layers::dense`, weight `(O, I)`).
    pub fn dense(p: &DenseParams<f32>) -> Self {
        AffineMap::new(p.weight.view(), p.bias.view())
    }

    pub fn inputs(&self) -> usize {
        self.weight.ncols()
    }

    pub fn outputs(&self) -> usize {
        self.weight.nrows()
    }
}

/// A convolution (`layers::conv`: valid, stride 1) as the affine map on im2col's columns:
/// `W (O, C*K*K)`.
#[derive(Clone, Debug)]
pub struct ConvMap {
    pub map: AffineMap,
    pub kernel: usize,
}

impl ConvMap {
    pub fn new(p: &ConvParams<f32>) -> Self {
        ConvMap {
            map: AffineMap::new(p.weight_matrix(), p.bias.view()),
            kernel: p.kernel(),
        }
    }
}

/// A dense layer's box `(N, O)` for inputs in `x (N, I)`:
/// `M (N, O) = (l + u) W^T`, `R = (u - l) |W|^T`, `A = max(|l|, |u|) |W|^T`, then
/// [`Rounding::finish`] per output. Cut into fixed pieces of outputs (as `layers::dense`), in
/// parallel: a cut never runs through a sum, so the result is the same for any thread count.
pub fn dense_bound(map: &AffineMap, x: &Interval<Ix2>) -> Interval<Ix2> {
    let (n, inputs) = x.lower.dim();
    assert_eq!(inputs, map.inputs(), "dense bound: input width");
    let outputs = map.outputs();
    let (sum, difference, magnitude) = x.sum_difference_magnitude();
    let mut lower = Array2::zeros((n, outputs));
    let mut upper = Array2::zeros((n, outputs));
    let piece = piece_len(outputs, n * inputs * outputs);
    lower
        .axis_chunks_iter_mut(Axis(1), piece)
        .into_par_iter()
        .zip(upper.axis_chunks_iter_mut(Axis(1), piece).into_par_iter())
        .enumerate()
        .for_each(|(k, (mut lo, mut hi))| {
            let rows = k * piece..(k * piece + piece).min(outputs);
            let w = map.weight.slice(s![rows.clone(), ..]);
            let w_abs = map.weight_abs.slice(s![rows.clone(), ..]);
            let bias = map.bias.slice(s![rows]);
            let width = bias.len();
            let mut m = Array2::zeros((n, width));
            let mut r = Array2::zeros((n, width));
            let mut a = Array2::zeros((n, width));
            // M (N, o) = (l + u) (N, I) x W^T (I, o); R and A likewise with |W|.
            gemm(1.0, sum.view(), w.t(), 0.0, m.view_mut());
            gemm(1.0, difference.view(), w_abs.t(), 0.0, r.view_mut());
            gemm(1.0, magnitude.view(), w_abs.t(), 0.0, a.view_mut());
            Zip::from(&mut lo)
                .and(&mut hi)
                .and(&m)
                .and(&r)
                .and(&a)
                .and_broadcast(bias)
                .for_each(|lo, hi, &m, &r, &a, &b| {
                    (*lo, *hi) = map.rounding.finish(m, r, a, b);
                });
        });
    Interval::new(lower, upper)
}

/// The naive twin of [`dense_bound`]: per output, `W` split into its positive and negative
/// parts, `lower = sum_i (w_i > 0 ? w_i l_i : w_i u_i) + b - slack` and the mirror, in loops.
pub fn dense_bound_naive(map: &AffineMap, x: &Interval<Ix2>) -> Interval<Ix2> {
    let (n, inputs) = x.lower.dim();
    assert_eq!(inputs, map.inputs(), "dense bound: input width");
    let mut lower = Array2::zeros((n, map.outputs()));
    let mut upper = Array2::zeros((n, map.outputs()));
    for p in 0..n {
        for o in 0..map.outputs() {
            let (lo, hi) = split_sums(
                map.weight.row(o),
                x.lower.row(p),
                x.upper.row(p),
                map.bias[o],
                &map.rounding,
            );
            lower[[p, o]] = lo;
            upper[[p, o]] = hi;
        }
    }
    Interval::new(lower, upper)
}

/// `(sum_i w_i- u_i + w_i+ l_i + b - slack, sum_i w_i+ u_i + w_i- l_i + b + slack)` for one
/// output: the positive/negative split, with the same slack as [`Rounding::finish`].
fn split_sums(
    w: ArrayView1<f64>,
    l: ArrayView1<f64>,
    u: ArrayView1<f64>,
    b: f64,
    rounding: &Rounding,
) -> (f64, f64) {
    let (mut lo, mut hi, mut magnitude) = (b, b, b.abs());
    for ((&w, &l), &u) in w.iter().zip(&l).zip(&u) {
        if w > 0.0 {
            lo += w * l;
            hi += w * u;
        } else {
            lo += w * u;
            hi += w * l;
        }
        magnitude += w.abs() * l.abs().max(u.abs());
    }
    // `finish` with a zero-width box around the centre gives the bare slack.
    let (s_lo, s_hi) = rounding.finish(0.0, 0.0, magnitude, 0.0);
    (lo + s_lo, hi + s_hi)
}

/// A convolution's box `(N, O, OH, OW)` for inputs in `x (N, C, H, W)`: per group of `G` images
/// (`kernels::parallel::images_per_product`, as the network's own GEMM path), im2col of
/// `l + u`, `u - l` and `max(|l|, |u|)` into `(C*K*K, G*P)`, then
/// `M (O, G*P) = W x cols(l + u)`, `R = |W| x cols(u - l)`, `A = |W| x cols(max)`, and
/// [`Rounding::finish`] per output. im2col only copies, so the columns of a box are a box.
/// Groups in parallel; each image's outputs are its own sums whatever the grouping.
pub fn conv_bound(conv: &ConvMap, x: &Interval<Ix4>) -> Interval<Ix4> {
    let (n, c, h, w) = x.lower.dim();
    let k = conv.kernel;
    let map = &conv.map;
    assert_eq!(c * k * k, map.inputs(), "conv bound: input channels");
    let o = map.outputs();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let positions = oh * ow;
    let group = images_per_product(positions);
    let (sum, difference, magnitude) = x.sum_difference_magnitude();
    let mut lower = Array4::zeros((n, o, oh, ow));
    let mut upper = Array4::zeros((n, o, oh, ow));
    lower
        .axis_chunks_iter_mut(Axis(0), group)
        .into_par_iter()
        .zip(upper.axis_chunks_iter_mut(Axis(0), group).into_par_iter())
        .enumerate()
        .for_each(|(g, (mut lower, mut upper))| {
            let images = g * group..(g * group + group).min(n);
            let columns = images.len() * positions;
            let product = |operand: &Array4<f64>, weight: ArrayView2<f64>| {
                let mut buffer = vec![0.0; c * k * k * columns];
                let cols = im2col_group(
                    operand.slice(s![images.clone(), .., .., ..]),
                    k,
                    &mut buffer,
                );
                let mut y = Array2::zeros((o, columns));
                // Y (O, G*P) = W (O, C*K*K) x cols (C*K*K, G*P)
                gemm(1.0, weight, cols.view(), 0.0, y.view_mut());
                y
            };
            let m = product(&sum, map.weight.view());
            let r = product(&difference, map.weight_abs.view());
            let a = product(&magnitude, map.weight_abs.view());
            for ((i, oc, y, x), lo) in lower.indexed_iter_mut() {
                // Image i's outputs are the column block i of the group's product.
                let col = i * positions + y * ow + x;
                let (l, u) =
                    map.rounding
                        .finish(m[[oc, col]], r[[oc, col]], a[[oc, col]], map.bias[oc]);
                *lo = l;
                upper[[i, oc, y, x]] = u;
            }
        });
    Interval::new(lower, upper)
}

/// The naive twin of [`conv_bound`]: direct loops over the output positions, the positive and
/// negative parts of each weight (as `kernels::im2col::conv2d_naive`).
pub fn conv_bound_naive(conv: &ConvMap, x: &Interval<Ix4>) -> Interval<Ix4> {
    let (n, c, h, w) = x.lower.dim();
    let k = conv.kernel;
    let map = &conv.map;
    let o = map.outputs();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let mut lower = Array4::zeros((n, o, oh, ow));
    let mut upper = Array4::zeros((n, o, oh, ow));
    for i in 0..n {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    // The patch's inputs in im2col's row order (c, ki, kj), as the weight row.
                    let patch = |end: &Array4<f64>| -> Array1<f64> {
                        let mut v = Vec::with_capacity(c * k * k);
                        for ch in 0..c {
                            for ki in 0..k {
                                for kj in 0..k {
                                    v.push(end[[i, ch, y + ki, xx + kj]]);
                                }
                            }
                        }
                        Array1::from(v)
                    };
                    let (lo, hi) = split_sums(
                        map.weight.row(oc),
                        patch(&x.lower).view(),
                        patch(&x.upper).view(),
                        map.bias[oc],
                        &map.rounding,
                    );
                    lower[[i, oc, y, xx]] = lo;
                    upper[[i, oc, y, xx]] = hi;
                }
            }
        }
    }
    Interval::new(lower, upper)
}

/// The box of the low-pass filter's blur (`defences::lowpass`: a row pass then a column pass
/// of the 1-D kernel `k (S)`, "same" size, zero padding) for inputs in `x (N, C, H, W)`. Each
/// pass is an affine map whose outputs sum at most `S` products (the taps inside the image;
/// no bias), summed in f32 from 0 in tap order, so each pass is bounded as a layer of its own,
/// widened for `S` products, and the column pass starts from the row pass's box.
pub fn blur_bound(kernel_1d: ArrayView1<f32>, x: &Interval<Ix4>) -> Interval<Ix4> {
    let k = kernel_1d.mapv(f64::from);
    let rounding = Rounding::for_products(k.len());
    let rows = blur_pass(&k, &rounding, x, Axis(3));
    blur_pass(&k, &rounding, &rows, Axis(2))
}

/// One 1-D same-size pass of `k` along `axis` (3: along each row, 2: along each column) of
/// every plane, in centre/radius form, images in parallel (independent).
fn blur_pass(k: &Array1<f64>, rounding: &Rounding, x: &Interval<Ix4>, axis: Axis) -> Interval<Ix4> {
    let (sum, difference, magnitude) = x.sum_difference_magnitude();
    let (_, _, h, w) = sum.dim();
    let radius = (k.len() / 2) as isize;
    let mut lower = Array4::zeros(sum.raw_dim());
    let mut upper = Array4::zeros(sum.raw_dim());
    Zip::from(lower.outer_iter_mut())
        .and(upper.outer_iter_mut())
        .and(sum.outer_iter())
        .and(difference.outer_iter())
        .and(magnitude.outer_iter())
        .par_for_each(|mut lo, mut hi, s, d, a| {
            for ((c, i, j), lo) in lo.indexed_iter_mut() {
                let (mut m, mut r, mut mag) = (0.0, 0.0, 0.0);
                for (t, &kv) in k.iter().enumerate() {
                    let offset = t as isize - radius;
                    let (ii, jj) = if axis == Axis(3) {
                        (i as isize, j as isize + offset)
                    } else {
                        (i as isize + offset, j as isize)
                    };
                    if ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w {
                        let at = [c, ii as usize, jj as usize];
                        m += kv * s[at];
                        r += kv.abs() * d[at];
                        mag += kv.abs() * a[at];
                    }
                }
                let (l, u) = rounding.finish(m, r, mag, 0.0);
                *lo = l;
                hi[[c, i, j]] = u;
            }
        });
    Interval::new(lower, upper)
}

/// Lower bounds `(N, O)` on the margins `fl(z_y) - fl(z_j)` of the float32 network's last layer
/// `z = W h + b` (the logits, each rounded to f32 on its own), for `h` in `x (N, I)` and labels
/// `y`; `+inf` at `j = y`. Gowal et al.'s elision of the last layer (section 3, "Elision of the
/// last layer"): the margin is itself affine in `h`, with row `w_y - w_j` and bias `b_y - b_j`,
/// so its box is bounded directly, which is tighter than `lower(z_y) - upper(z_j)`. The f32
/// logits are rounded separately, so the widening is the sum of both logits' slacks:
/// `fl(z_y) - fl(z_j) >= (w_y - w_j) h + (b_y - b_j) - slack_y - slack_j`, with
/// `slack_k = coefficient (|w_k| a + |b_k|) + underflow` (parent module, step 4).
pub fn margin_bounds(map: &AffineMap, x: &Interval<Ix2>, labels: &[u8]) -> Array2<f64> {
    let (n, inputs) = x.lower.dim();
    assert_eq!(inputs, map.inputs(), "margin bound: input width");
    assert_eq!(labels.len(), n, "one label per row");
    let o = map.outputs();
    let (sum, difference, magnitude) = x.sum_difference_magnitude();
    // A (N, O) = max(|l|, |u|) (N, I) x |W|^T (I, O): each logit's magnitude, then its slack.
    let mut a = Array2::zeros((n, o));
    gemm(1.0, magnitude.view(), map.weight_abs.t(), 0.0, a.view_mut());
    let mut margins = Array2::zeros((n, o));
    Zip::from(margins.outer_iter_mut())
        .and(sum.outer_iter())
        .and(difference.outer_iter())
        .and(a.outer_iter())
        .and(labels)
        .par_for_each(|mut row, s, d, a, &y| {
            let y = usize::from(y);
            assert!(y < o, "label {y} of a network with {o} outputs");
            let slack_y = slack(map, a[y], map.bias[y]);
            for (j, margin) in row.iter_mut().enumerate() {
                if j == y {
                    *margin = f64::INFINITY;
                    continue;
                }
                let (mut m, mut r) = (0.0, 0.0);
                for ((&wy, &wj), (&s, &d)) in map
                    .weight
                    .row(y)
                    .iter()
                    .zip(map.weight.row(j))
                    .zip(s.iter().zip(d.iter()))
                {
                    let v = wy - wj;
                    m += v * s;
                    r += v.abs() * d;
                }
                let lower = 0.5 * (m - r) + (map.bias[y] - map.bias[j])
                    - slack_y
                    - slack(map, a[j], map.bias[j]);
                // NaN (from an infinite box) certifies nothing.
                *margin = if lower.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    lower
                };
            }
        });
    margins
}

/// The slack of one logit: `finish`'s, infinite where `finish` gives up.
fn slack(map: &AffineMap, magnitude: f64, b: f64) -> f64 {
    let (lo, _) = map.rounding.finish(0.0, 0.0, magnitude, b);
    // finish(0, 0, A, b) = b - slack (or -inf): recover the slack.
    if lo == f64::NEG_INFINITY {
        f64::INFINITY
    } else {
        b - lo
    }
}

/// The naive twin of [`margin_bounds`]: the positive/negative split of each row `w_y - w_j`, in
/// loops, with the same two slacks.
pub fn margin_bounds_naive(map: &AffineMap, x: &Interval<Ix2>, labels: &[u8]) -> Array2<f64> {
    let (n, _) = x.lower.dim();
    let o = map.outputs();
    let mut margins = Array2::from_elem((n, o), f64::INFINITY);
    for (p, &y) in labels.iter().enumerate() {
        let y = usize::from(y);
        let magnitude_of = |k: usize| -> f64 {
            map.weight
                .row(k)
                .iter()
                .zip(x.lower.row(p).iter().zip(x.upper.row(p)))
                .map(|(w, (l, u))| w.abs() * l.abs().max(u.abs()))
                .sum()
        };
        for j in (0..o).filter(|&j| j != y) {
            let v = &map.weight.row(y) - &map.weight.row(j);
            let mut lower = map.bias[y] - map.bias[j];
            for ((&v, &l), &u) in v.iter().zip(x.lower.row(p)).zip(x.upper.row(p)) {
                lower += if v > 0.0 { v * l } else { v * u };
            }
            margins[[p, j]] = lower
                - slack(map, magnitude_of(y), map.bias[y])
                - slack(map, magnitude_of(j), map.bias[j]);
        }
    }
    margins
}

/// An image batch `(N, C, H, W)` of boxes as rows `(N, C*H*W)` (the network's flatten, in
/// (C, H, W) order) and back: both only reshape.
pub fn flatten(x: Interval<Ix4>) -> Interval<Ix2> {
    let (n, c, h, w) = x.lower.dim();
    let to_rows = |a: Array4<f64>| {
        a.as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, c * h * w))
            .expect("standard layout")
    };
    Interval::new(to_rows(x.lower), to_rows(x.upper))
}

/// The inverse of [`flatten`] to `(N, C, H, W)`.
pub fn unflatten(x: Interval<Ix2>, shape: (usize, usize, usize)) -> Interval<Ix4> {
    let n = x.lower.nrows();
    let to_images = |a: Array2<f64>| {
        a.as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, shape.0, shape.1, shape.2))
            .expect("C*H*W columns")
    };
    Interval::new(to_images(x.lower), to_images(x.upper))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{conv, dense, relu};
    use crate::testutil::random_array;
    use ndarray::{Array, ArrayView4, Dimension, Ix1};

    /// A box around random centres with random radii, its ends f32 values (so a point clamped
    /// to them in f32 stays inside).
    fn random_box<D: Dimension>(shape: D, scale: f64, seed: u64) -> Interval<D> {
        let centre = random_array::<f64, D>(shape.clone(), seed) * scale;
        let radius = random_array::<f64, D>(shape, seed + 1).mapv(f64::abs) * 0.3 * scale;
        let to_f32 = |a: Array<f64, D>| a.mapv(|v| f64::from(v as f32));
        Interval::new(to_f32(&centre - &radius), to_f32(&centre + &radius))
    }

    /// A random f32 point of the box.
    fn sample<D: Dimension>(x: &Interval<D>, seed: u64) -> Array<f32, D> {
        let t = random_array::<f64, D>(x.lower.raw_dim(), seed);
        Zip::from(&x.lower)
            .and(&x.upper)
            .and(&t)
            .map_collect(|&l, &u, &t| ((l + u) / 2.0 + t * (u - l) / 2.0).clamp(l, u) as f32)
    }

    fn dense_params(o: usize, i: usize, seed: u64) -> DenseParams<f32> {
        DenseParams {
            weight: random_array::<f32, Ix2>((o, i), seed),
            bias: random_array::<f32, Ix1>(o, seed + 1),
        }
    }

    fn assert_boxes_close<D: Dimension>(name: &str, got: &Interval<D>, want: &Interval<D>) {
        for (end, g, w) in [
            ("lower", &got.lower, &want.lower),
            ("upper", &got.upper, &want.upper),
        ] {
            crate::testutil::assert_close(
                &format!("{name} {end}"),
                g.view().into_dyn(),
                w.view().into_dyn(),
                1e-12,
                1e-12,
            );
        }
    }

    #[test]
    fn dense_bound_matches_its_naive_twin() {
        let map = AffineMap::dense(&dense_params(37, 53, 1));
        let x = random_box(Ix2(9, 53), 2.0, 3);
        assert_boxes_close(
            "dense",
            &dense_bound(&map, &x),
            &dense_bound_naive(&map, &x),
        );
    }

    #[test]
    fn conv_bound_matches_its_naive_twin() {
        // Two shapes: conv1's grouping (P = 576: one image per product) and a small one that
        // groups several images per product (P = 20: 13 images), with a batch that leaves a
        // partial group.
        for (c, o, k, h, w, n, seed) in [(1, 4, 5, 28, 28, 2, 10), (3, 5, 3, 6, 7, 15, 20)] {
            let p = ConvParams {
                weight: random_array::<f32, Ix4>((o, c, k, k), seed),
                bias: random_array::<f32, Ix1>(o, seed + 1),
            };
            let map = ConvMap::new(&p);
            let x = random_box(Ix4(n, c, h, w), 1.0, seed + 2);
            assert_boxes_close(
                &format!("conv {c}x{h}x{w}, k {k}"),
                &conv_bound(&map, &x),
                &conv_bound_naive(&map, &x),
            );
        }
    }

    #[test]
    fn margin_bounds_match_their_naive_twin() {
        let map = AffineMap::dense(&dense_params(10, 40, 30));
        let x = random_box(Ix2(12, 40), 1.0, 32);
        let labels: Vec<u8> = (0..12).map(|i| (i * 7 % 10) as u8).collect();
        let (mut fast, mut naive) = (
            margin_bounds(&map, &x, &labels),
            margin_bounds_naive(&map, &x, &labels),
        );
        for (i, &y) in labels.iter().enumerate() {
            let y = usize::from(y);
            assert_eq!(
                (fast[[i, y]], naive[[i, y]]),
                (f64::INFINITY, f64::INFINITY)
            );
            // The label's own entry is +inf in both; compared apart, as inf - inf is NaN.
            (fast[[i, y]], naive[[i, y]]) = (0.0, 0.0);
        }
        crate::testutil::assert_close(
            "margins",
            fast.view().into_dyn(),
            naive.view().into_dyn(),
            1e-12,
            1e-12,
        );
    }

    /// A single affine layer's bounds are tight: the f64 value at the extreme corner (u_i where
    /// w_i > 0, else l_i; and its mirror) is within the rounding slack of each end, and the f32
    /// layer's outputs at every corner of a 3-input box lie inside.
    #[test]
    fn a_single_dense_layer_is_tight_and_holds_at_every_corner() {
        let params = dense_params(4, 3, 40);
        let map = AffineMap::dense(&params);
        let x = random_box(Ix2(1, 3), 1.0, 42);
        let b = dense_bound(&map, &x);
        for o in 0..4 {
            let (mut best, mut worst) = (map.bias[o], map.bias[o]);
            for i in 0..3 {
                let w = map.weight[[o, i]];
                let (l, u) = (x.lower[[0, i]], x.upper[[0, i]]);
                best += if w > 0.0 { w * u } else { w * l };
                worst += if w > 0.0 { w * l } else { w * u };
            }
            // Attained: the ends are the extreme corners' values, widened by the slack alone.
            let (slack_lo, _) = map.rounding.finish(0.0, 0.0, 1e3, 0.0);
            assert!(b.upper[[0, o]] >= best && b.upper[[0, o]] - best < -slack_lo);
            assert!(b.lower[[0, o]] <= worst && worst - b.lower[[0, o]] < -slack_lo);
        }
        for corner in 0..8u32 {
            let point = Array2::from_shape_fn((1, 3), |(_, i)| {
                let end = if corner >> i & 1 == 1 {
                    &x.upper
                } else {
                    &x.lower
                };
                end[[0, i]] as f32
            });
            let y = dense::infer(point.view(), &params);
            assert_eq!(b.first_outside(y.view()), None, "corner {corner:03b}");
        }
    }

    /// The tiny composite: 3 inputs -> dense 5 -> ReLU -> dense 2, in f32. Every point of a
    /// 21 x 21 x 21 grid over the box (corners included) gives outputs inside the bounds, and
    /// the grid's extremes come close to the bounds (interval bounds through a ReLU are not
    /// tight in general, but not vacuous either).
    #[test]
    fn a_tiny_composite_holds_on_a_grid() {
        let (first, second) = (dense_params(5, 3, 50), dense_params(2, 5, 52));
        let (m1, m2) = (AffineMap::dense(&first), AffineMap::dense(&second));
        let x = random_box(Ix2(1, 3), 1.0, 54);
        let bound = dense_bound(&m2, &relu_bound_rows(&dense_bound(&m1, &x)));
        const STEPS: usize = 20;
        let mut points = Array2::<f32>::zeros(((STEPS + 1).pow(3), 3));
        for (p, mut row) in points.outer_iter_mut().enumerate() {
            for i in 0..3 {
                let t = (p / (STEPS + 1).pow(i as u32)) % (STEPS + 1);
                let (l, u) = (x.lower[[0, i]], x.upper[[0, i]]);
                row[i] = (l + (u - l) * t as f64 / STEPS as f64).clamp(l, u) as f32;
            }
        }
        let h = relu::infer(dense::infer(points.view(), &first).view());
        let y = dense::infer(h.view(), &second);
        for (p, row) in y.outer_iter().enumerate() {
            for (o, &v) in row.iter().enumerate() {
                let (l, u) = (bound.lower[[0, o]], bound.upper[[0, o]]);
                assert!(
                    l <= f64::from(v) && f64::from(v) <= u,
                    "grid point {p}, output {o}: {v} outside [{l}, {u}]"
                );
            }
        }
        for o in 0..2 {
            let column = y.column(o);
            let hi = column.iter().fold(f32::MIN, |a, &b| a.max(b));
            let lo = column.iter().fold(f32::MAX, |a, &b| a.min(b));
            let width = bound.upper[[0, o]] - bound.lower[[0, o]];
            assert!(
                f64::from(hi - lo) > 0.2 * width,
                "output {o}: grid range {} of bound width {width}",
                hi - lo
            );
        }
    }

    fn widen(x: ArrayView4<f32>) -> Array4<f64> {
        x.mapv(f64::from)
    }

    fn relu_bound_rows(x: &Interval<Ix2>) -> Interval<Ix2> {
        super::super::monotone::relu_bound(x)
    }

    /// Points of a box through a real f32 convolution (`layers::conv::infer`, on LeNet's conv1
    /// and conv2 shapes, so the direct and fused kernels are the ones checked) lie in the bounds.
    #[test]
    fn conv_bound_holds_for_the_f32_convolution() {
        for (c, o, h, seed) in [(1, 20, 28, 60), (20, 50, 12, 62)] {
            let p = ConvParams {
                weight: random_array::<f32, Ix4>((o, c, 5, 5), seed) * 0.3,
                bias: random_array::<f32, Ix1>(o, seed + 1),
            };
            let map = ConvMap::new(&p);
            let x = random_box(Ix4(3, c, h, h), 1.0, seed + 2);
            let b = conv_bound(&map, &x);
            for t in 0..5 {
                let point = sample(&x, 100 + t);
                let y = conv::infer(point.view(), &p);
                assert_eq!(b.first_outside(y.view()), None, "conv {c}->{o}, sample {t}");
            }
            // At a point box the bound is the exact sum within the slack.
            let point = sample(&x, 200);
            let exact = crate::kernels::im2col::conv2d_naive(
                widen(point.view()).view(),
                p.weight.mapv(f64::from).view(),
                p.bias.mapv(f64::from).view(),
            );
            let at = conv_bound(&map, &Interval::point(point.view()));
            assert!(at.lower.iter().zip(&exact).all(|(l, e)| l <= e));
            assert!(at.upper.iter().zip(&exact).all(|(u, e)| u >= e));
        }
    }

    /// The blur's bounds: sampled points through the f32 filter lie inside; at a point box the
    /// bounds enclose the exact blur; with the study's (positive) kernels the bounds are the
    /// f64 blur of each end within the slack (no loss from the centre/radius form).
    #[test]
    fn blur_bound_holds_and_is_tight_for_positive_kernels() {
        use crate::defences::lowpass::{blur_naive, LowPassFilter};
        for size in [3, 5, 7] {
            let f = LowPassFilter::study(size, 0.0, 1).unwrap();
            let x = random_box(Ix4(2, 1, 28, 28), 0.5, 70 + size as u64);
            let b = blur_bound(f.kernel_1d(), &x);
            for t in 0..5 {
                let point = sample(&x, 300 + t);
                let y = f.apply(point.view(), 0);
                assert_eq!(b.first_outside(y.view()), None, "size {size}, sample {t}");
            }
            let lower_end = x.lower.mapv(|v| v as f32);
            let blurred = blur_naive(lower_end.view(), f.kernel().view());
            for (&l, &e) in b.lower.iter().zip(&blurred) {
                assert!(
                    (l - f64::from(e)).abs() < 1e-5,
                    "size {size}: lower end {l} against the blur of the lower end {e}"
                );
            }
        }
    }
}
