//! The study's Eq. 3 example maker: from each natural image `X`, the gradient-sign example
//! `X_R` of Eq. 1, then one scaled gradient step from it (see the parent module for the
//! clipping between the two). Made in fixed pieces, in parallel, so that every image's result
//! is the same whatever the thread count.

use crate::attacks::fgsm;
use crate::models::Classifier;
use ndarray::{s, Array4, ArrayView4, ArrayViewMut4, Axis, Zip};
use rayon::prelude::*;

/// Images per piece of work when making adversarial images: each piece is two input-gradient
/// passes of [`crate::models::lenet::INPUT_GRADIENT_CHUNK`] images, and the pieces run in
/// parallel. The partition is fixed from the start of the set, so which images share a pass
/// never depends on the thread count.
pub const ADVERSARIAL_CHUNK: usize = crate::models::lenet::INPUT_GRADIENT_CHUNK;
/// Images between two progress reports while making adversarial images (a multiple of
/// [`ADVERSARIAL_CHUNK`], so reports never split a piece).
const PROGRESS_BLOCK: usize = 16 * ADVERSARIAL_CHUNK;

/// The formula, as recorded in the record and in every snapshot's metadata.
pub const FORMULA: &str = "X' = clip(X_R + c * grad_X L(theta, X_R, y), 0, 1), X_R = clip(X + eps * sign(grad_X L(theta, X, y)), 0, 1), sign(0) = 0";

/// Eq. 3's second step for a batch: `clip(x_r + c * g, 0, 1)`, `g` the gradient at `x_r`.
pub fn gradient_step(x_r: ArrayView4<f32>, g: ArrayView4<f32>, c: f32) -> Array4<f32> {
    Zip::from(&x_r)
        .and(&g)
        .par_map_collect(|&x, &g| (x + c * g).clamp(0.0, 1.0))
}

/// The adversarial versions (Eq. 3, see the parent module's documentation) of one piece of images,
/// written into `out`: two input-gradient passes of `model`.
fn adversarial_piece(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
    mut out: ArrayViewMut4<f32>,
) {
    let x_r = fgsm::fgsm(model, x, labels, eps);
    let (_, g) = model.input_gradient(x_r.view(), labels);
    out.assign(&gradient_step(x_r.view(), g.view(), c));
}

/// Fills `out` (`(N, 1, 28, 28)`) with the adversarial versions of `x` under `model`, pieces of
/// [`ADVERSARIAL_CHUNK`] images in parallel, calling `progress(done)` after every block of
/// pieces. Every image's result is the same whatever the thread count: the pieces are fixed,
/// and each piece's passes are.
pub(super) fn fill_adversarial(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
    mut out: ArrayViewMut4<f32>,
    mut progress: impl FnMut(usize),
) {
    let n = x.dim().0;
    assert_eq!(labels.len(), n, "one label per image");
    assert_eq!(out.dim(), x.dim(), "one output per image");
    for block in (0..n).step_by(PROGRESS_BLOCK) {
        let end = (block + PROGRESS_BLOCK).min(n);
        // The pieces are independent (no image's result depends on another piece), so they run
        // in parallel; each writes only its own rows of `out`.
        out.slice_mut(s![block..end, .., .., ..])
            .axis_chunks_iter_mut(Axis(0), ADVERSARIAL_CHUNK)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, piece)| {
                let start = block + i * ADVERSARIAL_CHUNK;
                let range = start..start + piece.dim().0;
                adversarial_piece(
                    model,
                    x.slice(s![range.clone(), .., .., ..]),
                    &labels[range],
                    eps,
                    c,
                    piece,
                );
            });
        progress(end);
    }
}

/// The adversarial versions of `x` under `model` (Eq. 3 with the clipping described in the
/// parent module's documentation), made as a stage makes them.
pub fn adversarial_examples(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
) -> Array4<f32> {
    let mut out = Array4::zeros(x.raw_dim());
    fill_adversarial(model, x, labels, eps, c, out.view_mut(), |_| {});
    out
}
