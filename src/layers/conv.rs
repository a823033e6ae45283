//! 2-D convolution: valid (no padding), stride 1, as in Caffe's LeNet
//! (`examples/mnist/lenet_train_test.prototxt`: `convolution_param { kernel_size: 5 stride: 1 }`).
//!
//! Dimension legend: `N` batch, `C` input channels, `O` output channels, `H, W` input size,
//! `K` kernel size, `OH = H - K + 1`, `OW = W - K + 1`, `P = OH * OW` output positions.
//!
//! Forward, per image: `cols = im2col(x)`, then `Y (O, P) = W (O, C*K*K) x cols (C*K*K, P) + b`.
//! Backward, per image (derivation in docs/math.md, "Convolution"):
//!   `dW (O, C*K*K) += dY (O, P) x cols^T (P, C*K*K)`,   `db[o] += sum_p dY[o, p]`,
//!   `dcols (C*K*K, P) = W^T (C*K*K, O) x dY (O, P)`,    `dx = col2im(dcols)`.
//! The naive direct loops in `kernels::im2col` are the reference this GEMM path is tested against.

use crate::kernels::gemm::gemm;
use crate::kernels::im2col::{col2im_add, im2col_group, out_size};
use crate::kernels::par_build::{par_build, par_build_uninit, par_zeros};
use crate::kernels::parallel::{images_per_product, min_pieces_per_job, IMAGES_PER_SUM};
use crate::kernels::scalar::{as_f32, as_f32_mut, as_f32_uninit, Scalar};
use crate::kernels::scratch::with_scratch;
use crate::kernels::window_sums::{window_sums_5, window_sums_any_k, PAD};
use crate::kernels::{conv_fma, conv_igrad, conv_wgrad, direct};
use ndarray::{
    s, Array1, Array2, Array4, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2, ArrayViewMut3,
    Axis, CowArray, Ix4,
};
use rayon::prelude::*;
use std::sync::OnceLock;

/// The learnable parameters of a convolution, in PyTorch's and Caffe's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams<T> {
    pub weight: Array4<T>, // (O, C, K, K)
    pub bias: Array1<T>,   // (O)
}

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct ConvCache<T> {
    /// (N, C, H, W): the input. The backward pass rebuilds each group's `cols` from it rather
    /// than keeping the whole batch's `cols`, which is 18x (conv1) or 11x (conv2) larger: at
    /// batch 64 that is 8 MB for conv2, and writing then re-reading it from memory cost more
    /// than the im2col itself (measured with `cargo bench`, layers/forward/conv2).
    pub input: Array4<T>,
}

impl<T: Scalar> ConvParams<T> {
    /// All-zero parameters of the given shape (for gradient accumulators).
    pub fn zeros(out_channels: usize, in_channels: usize, kernel: usize) -> Self {
        ConvParams {
            weight: par_zeros((out_channels, in_channels, kernel, kernel)),
            bias: Array1::zeros(out_channels),
        }
    }

    pub fn kernel(&self) -> usize {
        self.weight.dim().2
    }

    /// The weight seen as the GEMM operand `W (O, C*K*K)`.
    pub fn weight_matrix(&self) -> ArrayView2<'_, T> {
        let (o, c, k, _) = self.weight.dim();
        self.weight
            .view()
            .into_shape_with_order((o, c * k * k))
            .expect("conv weight must be in standard layout")
    }
}

/// `y (N, O, OH, OW)` for `x (N, C, H, W)`, keeping the input for the backward pass.
///
/// `x` may be a view (copied into the cache) or an owned array (moved into it, no copy: what
/// the network passes, since it has no further use for a layer's input).
pub fn forward<'a, T: Scalar>(
    x: impl Into<CowArray<'a, T, Ix4>>,
    p: &ConvParams<T>,
) -> (Array4<T>, ConvCache<T>) {
    forward_prepared(x, &Prepared::new(p))
}

/// [`forward`] with the weights' layout prepared once for several calls ([`Prepared`]).
pub fn forward_prepared<'a, T: Scalar>(
    x: impl Into<CowArray<'a, T, Ix4>>,
    prepared: &Prepared<'_, T>,
) -> (Array4<T>, ConvCache<T>) {
    let x = x.into();
    let y = infer_prepared(x.view(), prepared);
    (
        y,
        ConvCache {
            input: x.into_owned(),
        },
    )
}

/// The forward pass, on the fastest path that applies to the shape: LeNet's conv1 (one input
/// channel, 5x5, 28 columns) takes `kernels::direct`, image by image; a convolution with
/// output rows of 8 (LeNet's conv2), on a CPU with AVX2 + FMA (`conv_fma::chosen`), takes
/// `kernels::conv_fma` (its AVX-512 or its AVX2 kernel), which gives
/// [`infer_gemm`]'s bits without building `cols` or packing; every other shape takes
/// [`infer_gemm`].
pub fn infer<T: Scalar>(x: ArrayView4<T>, p: &ConvParams<T>) -> Array4<T> {
    infer_prepared(x, &Prepared::new(p))
}

/// The parameters of one convolution with what its forward pass derives from the weights
/// alone, made once for all the calls that share it: today `conv_fma`'s layout of the weights
/// (at the AVX-512 level, blocks of 5 channels interleaved), which the training step's forward
/// pass, one call per chunk of 8 images, had rebuilt per chunk (2.5% of a training profile).
/// The first call that needs it fills it (the others wait for it); only the layout is shared,
/// so the bits do not depend on which call made it. Holding the parameters by reference, it
/// cannot be used with other weights, and the weights cannot change while it lives.
pub struct Prepared<'p, T> {
    pub params: &'p ConvParams<T>,
    fma: OnceLock<conv_fma::Weights<'p>>,
}

impl<'p, T> Prepared<'p, T> {
    pub fn new(params: &'p ConvParams<T>) -> Self {
        Prepared {
            params,
            fma: OnceLock::new(),
        }
    }
}

/// [`infer`] with the weights' layout prepared once for several calls ([`Prepared`]).
pub fn infer_prepared<T: Scalar>(x: ArrayView4<T>, prepared: &Prepared<'_, T>) -> Array4<T> {
    let p = prepared.params;
    let (n, c, h, w) = x.dim();
    let k = p.kernel();
    let o = p.weight.dim().0;
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let positions = oh * ow;
    if direct::applies(c, h, w, o, k) {
        // conv1's shape: a direct convolution per image instead (`kernels::direct`).
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (weight, bias) = (
            p.weight.as_slice().expect("standard layout"),
            p.bias.as_slice().expect("standard layout"),
        );
        // SAFETY: `conv_image` writes every element of its image's output (`direct::
        // writes_every_output`), and each piece is one image's output.
        return unsafe {
            par_build_uninit((n, o, oh, ow), o * positions, |i, out| {
                direct::conv_image(&xs[i * h * w..][..h * w], weight, bias, out)
            })
        };
    }
    if conv_fma::applies(c, h, w, o, k) && conv_fma::chosen() {
        let x = x.as_standard_layout();
        let (xs, weight, bias) = (
            as_f32(x.as_slice().expect("standard layout")),
            as_f32(p.weight.as_slice().expect("standard layout")),
            as_f32(p.bias.as_slice().expect("standard layout")),
        );
        if let (Some(xs), Some(weight), Some(bias)) = (xs, weight, bias) {
            let shape = conv_fma::Shape { c, h, w, k };
            let weights = prepared
                .fma
                .get_or_init(|| conv_fma::Weights::for_selected(weight, o));
            // SAFETY: `conv_image` writes every element of its image's output (`conv_fma::
            // writes_every_output`), and each piece is one image's output.
            return unsafe {
                par_build_uninit((n, o, oh, ow), o * positions, |i, out| {
                    let out = as_f32_uninit(out).expect("T is f32: x was");
                    conv_fma::conv_image(
                        &xs[i * c * h * w..][..c * h * w],
                        shape,
                        weights,
                        bias,
                        out,
                    )
                })
            };
        }
    }
    infer_gemm(x, p)
}

/// The forward pass through im2col and GEMM, in fixed groups of `G` images
/// ([`images_per_product`]), in parallel. Per group `Y_g (O, G*P) = W (O, C*K*K) x cols_g
/// (C*K*K, G*P) + b`. `matrixmultiply` packs `W`
/// afresh for every call, so conv2 (P = 64) takes 4 images per product, then copies each
/// image's columns to its NCHW place (`cargo bench -- forward/conv2`: -9% against one product
/// per image); a convolution with P = 576 is wide enough alone and writes straight into NCHW
/// (grouping it cost +10%). Each worker takes its `cols_g` and `Y_g` buffers from
/// `kernels::scratch`; the output is not zero-filled first (`kernels::par_build`).
pub fn infer_gemm<T: Scalar>(x: ArrayView4<T>, p: &ConvParams<T>) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    let k = p.kernel();
    let o = p.weight.dim().0;
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let positions = oh * ow;
    let group = images_per_product(positions);
    par_build((n, o, oh, ow), group * o * positions, |g, out| {
        let xg = x.slice(s![g * group..(g * group + group).min(n), .., .., ..]);
        let columns = xg.dim().0 * positions;
        with_scratch(c * k * k * columns, |buffer| {
            let cols = im2col_group(xg, k, buffer);
            // Y_g (O, G*P) = W (O, C*K*K) x cols_g (C*K*K, G*P) + b: the bias first, then
            // the GEMM accumulates on top of it (beta = 1).
            let product = |target: &mut [T]| {
                let mut yg = ArrayViewMut2::from_shape((o, columns), target).expect("o rows");
                for (mut row, &b) in yg.rows_mut().into_iter().zip(p.bias.iter()) {
                    row.fill(b);
                }
                gemm(T::one(), p.weight_matrix(), cols.view(), T::one(), yg);
            };
            if group == 1 {
                product(out); // one image: straight into its output
                return;
            }
            with_scratch(o * columns, |y_group: &mut [T]| {
                product(y_group);
                // Image i's output (O, P) is Y_g's column block i.
                for (i, yi) in out.chunks_exact_mut(o * positions).enumerate() {
                    for (dst, src) in yi
                        .chunks_exact_mut(positions)
                        .zip(y_group.chunks_exact(columns))
                    {
                        dst.copy_from_slice(&src[i * positions..][..positions]);
                    }
                }
            });
        });
    })
}

/// One group's parameter gradients, for `d_out (G, O, OH, OW)` and the group's input
/// `x (G, C, H, W)`: `dW_g (O, C*K*K) = dY_g (O, G*P) x cols_g^T (G*P, C*K*K)` and
/// `db_g[o] = sum` of `dY_g`'s row `o` (the bias is added at every position of every image).
/// Used per fixed group of [`IMAGES_PER_SUM`] images, whose results are then summed in order.
///
/// A convolution with output rows of 8 and at most 64 output channels (LeNet's conv2) takes
/// `kernels::conv_wgrad` for `dW_g` in f32 at the AVX2 level and above (`conv_wgrad::chosen`):
/// the same bits as the GEMM without building `cols` or copying it into panels. Every other
/// case takes [`group_param_gradients_gemm`].
pub fn group_param_gradients<T: Scalar>(
    d_out: ArrayView4<T>,
    x: ArrayView4<T>,
    k: usize,
) -> (Array2<T>, Array1<T>) {
    let (o, c) = (d_out.dim().1, x.dim().1);
    if !takes_wgrad_kernel::<T>(x.dim(), o, k) {
        return group_param_gradients_gemm(d_out, x, k); // its own new arrays, not copied
    }
    let mut dw = Array2::<T>::zeros((o, c * k * k));
    let mut db = Array1::<T>::zeros(o);
    group_param_gradients_into(
        d_out,
        x,
        k,
        dw.as_slice_mut().expect("standard layout"),
        db.as_slice_mut().expect("standard layout"),
    );
    (dw, db)
}

/// [`group_param_gradients`] into `dw (O*C*K*K)` and `db (O)`, whose contents are overwritten
/// (they may hold anything before: a scratch block).
pub fn group_param_gradients_into<T: Scalar>(
    d_out: ArrayView4<T>,
    x: ArrayView4<T>,
    k: usize,
    dw: &mut [T],
    db: &mut [T],
) {
    let (g, o, oh, ow) = d_out.dim();
    let (_, c, h, w) = x.dim();
    assert_eq!(dw.len(), o * c * k * k, "dw is (O, C*K*K)");
    assert_eq!(db.len(), o, "db is (O)");
    if takes_wgrad_kernel::<T>(x.dim(), o, k) {
        let (d_out, x) = (d_out.as_standard_layout(), x.as_standard_layout());
        let f32s = "T is f32 (takes_wgrad_kernel)";
        let dys = as_f32(d_out.as_slice().expect("standard layout")).expect(f32s);
        let xs = as_f32(x.as_slice().expect("standard layout")).expect(f32s);
        let shape = conv_wgrad::Shape { g, c, h, w, o, k };
        // Writes every element of dw (its test fills the output with NaN first).
        conv_wgrad::weight_gradient(dys, xs, shape, as_f32_mut(dw).expect(f32s));
        let bias = bias_gradient(d_out.view(), o, oh * ow);
        db.copy_from_slice(bias.as_slice().expect("a new array"));
        return;
    }
    let (gw, gb) = group_param_gradients_gemm(d_out, x, k);
    dw.copy_from_slice(gw.as_slice().expect("a new array"));
    db.copy_from_slice(gb.as_slice().expect("a new array"));
}

/// Whether [`group_param_gradients_into`] takes `kernels::conv_wgrad` for input `(G, C, H, W)`,
/// `o` output channels and kernel `k`: a shape it handles, a level that has it, and f32.
fn takes_wgrad_kernel<T: Scalar>(
    (_, c, h, w): (usize, usize, usize, usize),
    o: usize,
    k: usize,
) -> bool {
    conv_wgrad::applies(c, h, w, o, k) && conv_wgrad::chosen() && as_f32::<T>(&[]).is_some()
}

/// `db_g[o] = sum` of `dY_g`'s row `o`, with `dY_g (O, G*P)` laid out as the GEMM path lays it
/// out and summed by the same call, so both paths give the same bits.
fn bias_gradient<T: Scalar>(d_out: ArrayView4<T>, o: usize, p: usize) -> Array1<T> {
    let g = d_out.dim().0;
    with_scratch(o * g * p, |dy_buffer| {
        let mut dy = ArrayViewMut2::from_shape((o, g * p), dy_buffer).expect("sizes agree");
        lay_out_group(d_out, &mut dy, p);
        dy.sum_axis(Axis(1))
    })
}

/// `dY_g (O, G*P)`: image i's (O, P) block is column block i, as in `cols`.
fn lay_out_group<T: Scalar>(d_out: ArrayView4<T>, dy: &mut ArrayViewMut2<T>, p: usize) {
    let o = d_out.dim().1;
    for (i, dyi) in d_out.outer_iter().enumerate() {
        dy.slice_mut(s![.., i * p..(i + 1) * p])
            .assign(&dyi.into_shape_with_order((o, p)).expect("contiguous d_out"));
    }
}

/// [`group_param_gradients`] through im2col and `matrixmultiply`, for every shape.
pub fn group_param_gradients_gemm<T: Scalar>(
    d_out: ArrayView4<T>,
    x: ArrayView4<T>,
    k: usize,
) -> (Array2<T>, Array1<T>) {
    let (g, o, oh, ow) = d_out.dim();
    let c = x.dim().1;
    let p = oh * ow;
    with_scratch(c * k * k * g * p, |buffer| {
        let cols = im2col_group(x, k, buffer);
        with_scratch(o * g * p, |dy_buffer| {
            let mut dy = ArrayViewMut2::from_shape((o, g * p), dy_buffer).expect("sizes agree");
            lay_out_group(d_out, &mut dy, p);
            let mut dw = Array2::zeros((o, c * k * k));
            // beta = 0: dW_g is written, not accumulated.
            gemm(T::one(), dy.view(), cols.t(), T::zero(), dw.view_mut());
            (dw, dy.sum_axis(Axis(1)))
        })
    })
}

/// [`group_param_gradients`] of a convolution whose output goes straight into 2x2/2 max-pooling
/// (`layers::maxpool`), from the *pool's* output gradient `d_pool (G, O, OH/2, OW/2)` and its
/// `argmax` (same shape): the sums `maxpool::backward` followed by [`group_param_gradients`]
/// form, without building the convolution's output gradient, three quarters of which are zeros
/// (only a window's maximum receives its gradient). Per image, channel `o` and window with
/// gradient `g` whose maximum sat at output position `(y, x)`:
/// `dW[o, c, ki, kj] += g * x[c, y + ki, x + kj]` and `db[o] += g` (docs/math.md, "Convolution
/// through max-pooling"). Each image's sums start from zero and are added to `dW` in image
/// order, so the result does not depend on the thread count.
pub fn group_param_gradients_through_pool<T: Scalar>(
    d_pool: ArrayView4<T>,
    argmax: ArrayView4<u8>,
    x: ArrayView4<T>,
    k: usize,
) -> (Array2<T>, Array1<T>) {
    let (g, o, ph, pw) = d_pool.dim();
    assert_eq!(argmax.dim(), d_pool.dim(), "d_pool and argmax disagree");
    let (_, c, h, w) = x.dim();
    assert_eq!(
        (out_size(h, k), out_size(w, k)),
        (2 * ph, 2 * pw),
        "the pooled convolution output must be twice the pool's size"
    );
    let (d_pool, argmax, x) = (
        d_pool.as_standard_layout(),
        argmax.as_standard_layout(),
        x.as_standard_layout(),
    );
    let (dps, ams, xs) = (
        d_pool.as_slice().expect("standard layout"),
        argmax.as_slice().expect("standard layout"),
        x.as_slice().expect("standard layout"),
    );
    let windows = ph * pw;
    let mut dw = Array2::<T>::zeros((o, c * k * k));
    let mut db = Array1::zeros(o);
    let dw_rows = dw.as_slice_mut().expect("standard layout");
    // A plane padded to `w + PAD` columns, so that each 5-wide patch row can be read as 8 values.
    let padded_width = w + PAD;
    with_scratch(h * padded_width, |padded: &mut [T]| {
        for i in 0..g {
            for (ci, xc) in xs[i * c * h * w..][..c * h * w]
                .chunks_exact(h * w)
                .enumerate()
            {
                if k == 5 {
                    for (dst, src) in padded
                        .chunks_exact_mut(padded_width)
                        .zip(xc.chunks_exact(w))
                    {
                        dst[..w].copy_from_slice(src);
                        dst[w..].fill(T::zero());
                    }
                }
                for (oc, dw_row) in dw_rows.chunks_exact_mut(c * k * k).enumerate() {
                    let plane = (i * o + oc) * windows;
                    let (gs, am) = (&dps[plane..][..windows], &ams[plane..][..windows]);
                    let dw_c = &mut dw_row[ci * k * k..][..k * k];
                    // LeNet's 5x5 kernels read 8-wide rows of the padded plane; other sizes
                    // the same sums from the plane itself.
                    match k {
                        5 => {
                            let mut sums = [[T::zero(); 8]; 5];
                            window_sums_5(gs, am, padded, padded_width, pw, &mut sums);
                            for (d_row, s_row) in dw_c.chunks_exact_mut(5).zip(&sums) {
                                for (d, &v) in d_row.iter_mut().zip(&s_row[..5]) {
                                    *d += v;
                                }
                            }
                        }
                        _ => window_sums_any_k(gs, am, xc, w, pw, k, dw_c),
                    }
                }
            }
            for (b, gs) in db
                .iter_mut()
                .zip(dps[i * o * windows..][..o * windows].chunks_exact(windows))
            {
                *b += gs.iter().fold(T::zero(), |acc, &gv| acc + gv);
            }
        }
    });
    (dw, db)
}

/// Accumulates the parameter gradients: `grads.weight += dL/dW`, `grads.bias += dL/db`.
///
/// `dW = sum_n dY_n cols_n^T`: per fixed group of [`IMAGES_PER_SUM`] images one
/// [`group_param_gradients_into`], the groups in parallel, each into its own piece of one
/// scratch block (on the GEMM path each rebuilding its `cols_g` from the cached input); the
/// pieces are then added in group order. A scratch block rather than a new array per group:
/// conv2 at batch 64 makes 8 pieces of 100 KB, and newly zeroed ones showed in the pass's time
/// (docs/performance.md, "conv2's weight gradient with its leftover channels packed"). LeNet's
/// training step does not come here: it takes [`group_param_gradients`] per chunk
/// (`models::lenet`); `advmnist bench` times this pass on its own.
pub fn backward_params<T: Scalar>(
    d_out: ArrayView4<T>,
    cache: &ConvCache<T>,
    grads: &mut ConvParams<T>,
) {
    let (o, c, k, _) = grads.weight.dim();
    let inner = c * k * k;
    let piece = o * inner + o; // dW_g (O, C*K*K), then db_g (O)
    let groups = d_out.dim().0.div_ceil(IMAGES_PER_SUM);
    with_scratch(groups * piece, |pieces: &mut [T]| {
        pieces
            .par_chunks_mut(piece)
            .zip(
                d_out
                    .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                    .into_par_iter(),
            )
            .zip(
                cache
                    .input
                    .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                    .into_par_iter(),
            )
            .with_min_len(min_pieces_per_job())
            .for_each(|((out, dyg), xg)| {
                let (dw, db) = out.split_at_mut(o * inner);
                group_param_gradients_into(dyg, xg, k, dw, db);
            });
        let mut dw = grads
            .weight
            .view_mut()
            .into_shape_with_order((o, inner))
            .expect("standard layout");
        for out in pieces.chunks_exact(piece) {
            let (gw, gb) = out.split_at(o * inner);
            dw += &ArrayView2::from_shape((o, inner), gw).expect("o * inner values");
            grads.bias += &ArrayView1::from(gb);
        }
    })
}

/// The input gradient `dL/dx (N, C, H, W)`: per image `dcols = W^T dY`, then `dx = col2im(dcols)`;
/// images in parallel, each worker reusing one `dcols` buffer. A convolution with 8 x 8 outputs
/// (LeNet's conv2) takes `kernels::conv_igrad` at the AVX-512 level (`conv_igrad::chosen`):
/// the same bits without building `dcols` or packing.
pub fn backward_input<T: Scalar>(
    d_out: ArrayView4<T>,
    cache: &ConvCache<T>,
    p: &ConvParams<T>,
) -> Array4<T> {
    let (_, o, oh, ow) = d_out.dim();
    let (_, c, k, _) = p.weight.dim();
    let (n, _, h, w) = cache.input.dim();
    if conv_igrad::applies(c, h, w, o, k) && conv_igrad::chosen() {
        let d_out = d_out.as_standard_layout();
        let (dys, weight) = (
            as_f32(d_out.as_slice().expect("standard layout")),
            as_f32(p.weight.as_slice().expect("standard layout")),
        );
        if let (Some(dys), Some(weight)) = (dys, weight) {
            let shape = conv_igrad::Shape { c, h, w, o, k };
            // dx is zeroed piece by piece in the workers, then the kernel adds into it.
            return par_build((n, c, h, w), c * h * w, |i, dxi| {
                let dxi = as_f32_mut(dxi).expect("T is f32: dy was");
                conv_igrad::input_gradient(&dys[i * o * 64..][..o * 64], weight, shape, dxi)
            });
        }
    }
    // dx is zeroed piece by piece in the workers (`kernels::par_build`), then col2im adds into it.
    par_build((n, c, h, w), c * h * w, |i, dxi| {
        with_scratch(c * k * k * oh * ow, |buffer| {
            let mut dcols =
                ArrayViewMut2::from_shape((c * k * k, oh * ow), buffer).expect("sizes agree");
            let dy = d_out
                .index_axis(Axis(0), i)
                .into_shape_with_order((o, oh * ow))
                .expect("contiguous d_out");
            // dcols (C*K*K, P) = W^T (C*K*K, O) x dY (O, P)
            gemm(
                T::one(),
                p.weight_matrix().t(),
                dy,
                T::zero(),
                dcols.view_mut(),
            );
            let dxi = ArrayViewMut3::from_shape((c, h, w), dxi).expect("one image");
            col2im_add(dcols.view(), k, dxi);
        })
    })
}

/// Both gradients: accumulates the parameter gradients and returns the input gradient.
pub fn backward<T: Scalar>(
    d_out: ArrayView4<T>,
    cache: &ConvCache<T>,
    p: &ConvParams<T>,
    grads: &mut ConvParams<T>,
) -> Array4<T> {
    backward_params(d_out, cache, grads);
    backward_input(d_out, cache, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::{conv2d_naive, conv2d_naive_backward};
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Ix1, Ix4};

    fn params(o: usize, c: usize, k: usize, seed: u64) -> ConvParams<f64> {
        ConvParams {
            weight: random_array::<f64, Ix4>((o, c, k, k), seed),
            bias: random_array::<f64, Ix1>(o, seed + 1),
        }
    }

    /// The im2col + GEMM path against the naive direct loops, forward and backward, in f64
    /// (same products summed in another order: equal to 1e-12) for a batch of `n` images.
    fn check_against_naive(n: usize, seed: u64) {
        let p = params(4, 3, 3, seed);
        let x = random_array::<f64, Ix4>((n, 3, 8, 7), seed + 2);
        let (y, cache) = forward(x.view(), &p);
        let naive_y = conv2d_naive(x.view(), p.weight.view(), p.bias.view());
        assert_close(
            &format!("conv y ({n} images)"),
            y.view().into_dyn(),
            naive_y.view().into_dyn(),
            1e-12,
            1e-12,
        );
        assert_close(
            "conv infer",
            infer(x.view(), &p).view().into_dyn(),
            y.view().into_dyn(),
            0.0,
            0.0,
        );
        let dy = random_array::<f64, Ix4>(y.dim(), seed + 3);
        let mut grads = ConvParams::zeros(4, 3, 3);
        let dx = backward(dy.view(), &cache, &p, &mut grads);
        let (ndx, ndw, ndb) = conv2d_naive_backward(dy.view(), x.view(), p.weight.view());
        for (name, got, want) in [
            ("dx", dx.view().into_dyn(), ndx.view().into_dyn()),
            ("dW", grads.weight.view().into_dyn(), ndw.view().into_dyn()),
            ("db", grads.bias.view().into_dyn(), ndb.view().into_dyn()),
        ] {
            assert_close(
                &format!("conv {name} ({n} images)"),
                got,
                want,
                1e-12,
                1e-12,
            );
        }
    }

    #[test]
    fn gemm_path_matches_naive_loops() {
        check_against_naive(2, 10);
    }

    /// 19 images span three groups of `IMAGES_PER_SUM` (8, 8, 3), so the group-wise products
    /// and the in-order sum of the group partials are checked too.
    #[test]
    fn several_groups_match_naive_loops() {
        check_against_naive(19, 14);
    }

    /// The weight gradient through max-pooling against its two-step twin (`maxpool::backward`,
    /// then `group_param_gradients`), in f64: the same products summed in another order.
    #[test]
    fn param_gradients_through_pool_match_pool_then_conv() {
        use crate::layers::maxpool;
        for (n, c, k, h, seed) in [(3, 2, 3, 10, 40), (2, 1, 5, 12, 41), (1, 3, 2, 7, 42)] {
            let p = params(4, c, k, seed);
            let x = random_array::<f64, Ix4>((n, c, h, h), seed + 1);
            let (y, _) = forward(x.view(), &p);
            let (pooled, pool) = maxpool::forward(y.view());
            let d_pool = random_array::<f64, Ix4>(pooled.dim(), seed + 2);
            let d_conv = maxpool::backward(d_pool.view(), &pool);
            let (want_w, want_b) = group_param_gradients(d_conv.view(), x.view(), k);
            let (got_w, got_b) =
                group_param_gradients_through_pool(d_pool.view(), pool.argmax.view(), x.view(), k);
            let what = format!("through pool, {n}x{c}x{h}x{h}, k {k}");
            assert_close(
                &what,
                got_w.into_dyn().view(),
                want_w.into_dyn().view(),
                1e-12,
                1e-12,
            );
            assert_close(
                &what,
                got_b.into_dyn().view(),
                want_b.into_dyn().view(),
                1e-12,
                1e-12,
            );
        }
    }

    /// The point of `kernels::conv_fma`: [`infer_gemm`]'s im2col + `matrixmultiply` path,
    /// called directly, gives the bits of the kernel's reference (which the kernel matches:
    /// `conv_fma::tests::kernel_and_reference_agree_bit_for_bit`) on a CPU whose
    /// `matrixmultiply` kernel is fused.
    #[test]
    fn gemm_path_gives_the_conv_fma_reference_bits() {
        use crate::kernels::conv_fma::tests::{params, run, SHAPES};
        use crate::testutil::differing_bits;
        if !conv_fma::available() {
            eprintln!("skipped: no AVX2 + FMA on this CPU (nor a fused matrixmultiply kernel)");
            return;
        }
        for (c, h, k, o, seed) in SHAPES {
            let x = random_array::<f32, Ix4>((5, c, h, k + 7), seed);
            let (w, b) = params(c, k, o, seed);
            let reference = run(&x, &w, &b, conv_fma::conv_image_reference);
            let gemm = infer_gemm(
                x.view(),
                &ConvParams {
                    weight: w.clone(),
                    bias: b.clone(),
                },
            );
            let differ = differing_bits(&gemm, &reference);
            assert_eq!(
                differ, 0,
                "{c}x{h}, k={k}: GEMM path: {differ} outputs differ in bits"
            );
        }
    }

    /// The point of `kernels::conv_wgrad`: [`group_param_gradients_gemm`] (im2col +
    /// `matrixmultiply`) gives the bits of the kernel's reference (which the kernel matches:
    /// `conv_wgrad::tests::kernel_and_reference_agree_bit_for_bit`), for groups of 8 images
    /// (two KC blocks, as in training) and 3, and the dispatching function gives them too,
    /// bias gradient included.
    #[test]
    fn gemm_weight_gradient_gives_the_conv_wgrad_reference_bits() {
        use crate::kernels::conv_wgrad::{weight_gradient_reference, Shape};
        use crate::testutil::differing_bits;
        if !conv_fma::available() {
            eprintln!("skipped: no AVX2 + FMA on this CPU (nor a fused matrixmultiply kernel)");
            return;
        }
        for (g, c, h, k, o, seed) in [(8, 20, 12, 5, 50, 60), (3, 4, 12, 5, 9, 61)] {
            let w = k + 7;
            let x = random_array::<f32, Ix4>((g, c, h, w), seed);
            let dy = random_array::<f32, Ix4>((g, o, h - k + 1, 8), seed + 1);
            let mut reference = Array2::<f32>::zeros((o, c * k * k));
            weight_gradient_reference(
                dy.as_slice().unwrap(),
                x.as_slice().unwrap(),
                Shape { g, c, h, w, o, k },
                reference.as_slice_mut().unwrap(),
            );
            let (gemm_w, gemm_b) = group_param_gradients_gemm(dy.view(), x.view(), k);
            let differ = differing_bits(&gemm_w, &reference);
            assert_eq!(
                differ, 0,
                "{g} images, {o} channels: GEMM path: {differ} differ"
            );
            let (w_any, b_any) = group_param_gradients(dy.view(), x.view(), k);
            assert_eq!(differing_bits(&w_any, &reference), 0, "dispatched dW");
            assert_eq!(differing_bits(&b_any, &gemm_b), 0, "dispatched db");
        }
    }

    /// `backward_params` sums its groups' gradients, made in pieces of a scratch block, in
    /// group order: the bits of [`group_param_gradients`] per group of 8 added in order onto
    /// the accumulator, for conv2's shape at 19 images (two full groups and one of 3), with the
    /// scratch block NaN-filled first so that a piece left unwritten would show.
    #[test]
    fn backward_params_sums_its_groups_in_order() {
        use crate::testutil::differing_bits;
        let (n, c, h, k, o) = (19, 20, 12, 5, 50);
        let x = random_array::<f32, Ix4>((n, c, h, h), 80);
        let dy = random_array::<f32, Ix4>((n, o, h - k + 1, h - k + 1), 81);
        let start = ConvParams {
            weight: random_array::<f32, Ix4>((o, c, k, k), 82),
            bias: random_array::<f32, Ix1>(o, 83),
        };
        let mut want = start.clone();
        for (dyg, xg) in dy
            .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
            .zip(x.axis_chunks_iter(Axis(0), IMAGES_PER_SUM))
        {
            let (gw, gb) = group_param_gradients(dyg, xg, k);
            let mut w = want
                .weight
                .view_mut()
                .into_shape_with_order((o, c * k * k))
                .unwrap();
            w += &gw;
            want.bias += &gb;
        }
        let pieces = n.div_ceil(IMAGES_PER_SUM) * (o * c * k * k + o);
        with_scratch(pieces, |b: &mut [f32]| b.fill(f32::NAN));
        let mut got = start.clone();
        let cache = ConvCache { input: x.clone() };
        backward_params(dy.view(), &cache, &mut got);
        assert_eq!(differing_bits(&got.weight, &want.weight), 0, "dW");
        assert_eq!(differing_bits(&got.bias, &want.bias), 0, "db");
    }

    /// The point of `kernels::conv_igrad`: the GEMM + col2im path gives the bits of the
    /// kernel's reference (which the kernel matches), and `backward_input` does too.
    #[test]
    fn gemm_input_gradient_gives_the_conv_igrad_reference_bits() {
        use crate::kernels::conv_igrad::{input_gradient_reference, Shape};
        use crate::testutil::differing_bits;
        if !conv_fma::available() {
            eprintln!("skipped: no AVX2 + FMA on this CPU (nor a fused matrixmultiply kernel)");
            return;
        }
        for (n, c, k, o, seed) in [(3, 20, 5, 50, 70), (2, 3, 4, 9, 71)] {
            let side = k + 7;
            let weight = random_array::<f32, Ix4>((o, c, k, k), seed);
            let p = ConvParams {
                weight,
                bias: Array1::zeros(o),
            };
            let cache = ConvCache {
                input: Array4::<f32>::zeros((n, c, side, side)),
            };
            let dy = random_array::<f32, Ix4>((n, o, 8, 8), seed + 1);
            let mut reference = Array4::<f32>::zeros((n, c, side, side));
            for (dyi, mut dxi) in dy.outer_iter().zip(reference.outer_iter_mut()) {
                input_gradient_reference(
                    dyi.as_standard_layout().as_slice().unwrap(),
                    p.weight.as_slice().unwrap(),
                    Shape {
                        c,
                        h: side,
                        w: side,
                        o,
                        k,
                    },
                    dxi.as_slice_mut().unwrap(),
                );
            }
            // The GEMM + col2im path, image by image as `backward_input` runs it there.
            let mut gemm_dx = Array4::<f32>::zeros((n, c, side, side));
            for (dyi, dxi) in dy.outer_iter().zip(gemm_dx.outer_iter_mut()) {
                let mut dcols = Array2::<f32>::zeros((c * k * k, 64));
                let dyi = dyi.into_shape_with_order((o, 64)).unwrap();
                gemm(1.0, p.weight_matrix().t(), dyi, 0.0, dcols.view_mut());
                col2im_add(dcols.view(), k, dxi);
            }
            let differ = differing_bits(&gemm_dx, &reference);
            assert_eq!(differ, 0, "{c} channels, k {k}: GEMM path: {differ} differ");
            let dispatched = backward_input(dy.view(), &cache, &p);
            assert_eq!(differing_bits(&dispatched, &reference), 0, "dispatched dx");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let p = params(3, 2, 3, 20);
        let x = random_array::<f64, Ix4>((2, 2, 5, 6), 22);
        let (y, cache) = forward(x.view(), &p);
        let dy = random_array::<f64, Ix4>(y.dim(), 23);
        let mut grads = ConvParams::zeros(3, 2, 3);
        let dx = backward(dy.view(), &cache, &p, &mut grads);
        let num_dx = numeric_gradient(&x, &dy, |x| forward(x.view(), &p).0);
        assert_gradient_matches("conv dx", &dx.into_dyn(), &num_dx);
        let num_dw = numeric_gradient(&p.weight, &dy, |w| {
            forward(
                x.view(),
                &ConvParams {
                    weight: w.clone(),
                    bias: p.bias.clone(),
                },
            )
            .0
        });
        assert_gradient_matches("conv dW", &grads.weight.clone().into_dyn(), &num_dw);
        let num_db = numeric_gradient(&p.bias, &dy, |b| {
            forward(
                x.view(),
                &ConvParams {
                    weight: p.weight.clone(),
                    bias: b.clone(),
                },
            )
            .0
        });
        assert_gradient_matches("conv db", &grads.bias.clone().into_dyn(), &num_db);
    }

    #[test]
    fn parameter_gradients_accumulate() {
        let p = params(2, 1, 2, 30);
        let x = random_array::<f64, Ix4>((1, 1, 4, 4), 31);
        let (y, cache) = forward(x.view(), &p);
        let dy = random_array::<f64, Ix4>(y.dim(), 32);
        let mut once = ConvParams::zeros(2, 1, 2);
        backward_params(dy.view(), &cache, &mut once);
        let mut twice = ConvParams::zeros(2, 1, 2);
        backward_params(dy.view(), &cache, &mut twice);
        backward_params(dy.view(), &cache, &mut twice);
        assert_close(
            "2 x dW",
            twice.weight.view().into_dyn(),
            (&once.weight * 2.0).view().into_dyn(),
            1e-12,
            1e-12,
        );
    }

    #[test]
    fn hand_worked_case() {
        // x = [[1 2] [3 4]], one 2x2 filter [[1 0] [0 -1]], bias 0.5: y = 1*1 + 4*(-1) + 0.5 = -2.5.
        // dL/dy = 2 -> dW = 2 * x = [[2 4] [6 8]], db = 2, dx = 2 * W = [[2 0] [0 -2]].
        let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let p = ConvParams {
            weight: Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 0.0, 0.0, -1.0]).unwrap(),
            bias: ndarray::arr1(&[0.5]),
        };
        let (y, cache) = forward(x.view(), &p);
        assert_eq!(y.into_raw_vec_and_offset().0, vec![-2.5]);
        let mut g = ConvParams::zeros(1, 1, 2);
        let dx = backward(
            Array4::from_elem((1, 1, 1, 1), 2.0).view(),
            &cache,
            &p,
            &mut g,
        );
        assert_eq!(
            g.weight.into_raw_vec_and_offset().0,
            vec![2.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(g.bias.to_vec(), vec![2.0]);
        assert_eq!(dx.into_raw_vec_and_offset().0, vec![2.0, 0.0, 0.0, -2.0]);
    }
}
