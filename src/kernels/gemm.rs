//! General matrix multiply on ndarray views, through `matrixmultiply`, and its naive twin.
//!
//! Dimension legend: `A` is (m, k), `B` is (k, n), `C` is (m, n).
//! Views may be transposed or strided (`.t()`, slices): the strides go straight to
//! `matrixmultiply`, which packs its operands itself, so no copy is made here.
//!
//! `matrixmultiply` runs single-threaded here (its `threading` feature is off): all parallelism
//! is over the fixed pieces of `kernels::parallel`, each a separate GEMM call, so results never
//! depend on the thread count.

use crate::kernels::scalar::Scalar;
use ndarray::{ArrayView2, ArrayViewMut2};

/// `C = alpha * A B + beta * C`. When `beta` is zero, `C`'s old contents are ignored (NaN included).
pub fn gemm<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    let (rsa, csa) = (a.strides()[0], a.strides()[1]);
    let (rsb, csb) = (b.strides()[0], b.strides()[1]);
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the views guarantee that every (row, col) reached through these strides from the
    // first element's pointer lies inside its array, and `c` is a unique mutable borrow, so it
    // cannot alias `a` or `b`.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

/// `(m, k, n)` for `A (m, k)`, `B (k, n)`, `C (m, n)`; panics naming the mismatch otherwise.
fn check_shapes<T>(
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    c: &ArrayViewMut2<T>,
) -> (usize, usize, usize) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "gemm: A is ({m}, {k}) but B is ({k2}, {n})");
    assert_eq!(
        c.dim(),
        (m, n),
        "gemm: C is {:?}, expected ({m}, {n})",
        c.dim()
    );
    (m, k, n)
}

/// The naive twin of [`gemm`]: three loops, one dot product per output element.
pub fn gemm_naive<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    for i in 0..m {
        for j in 0..n {
            let mut dot = T::zero();
            for p in 0..k {
                dot += a[[i, p]] * b[[p, j]];
            }
            // beta == 0 overwrites, as in `gemm`, so that garbage (even NaN) in C is ignored.
            c[[i, j]] = if beta == T::zero() {
                alpha * dot
            } else {
                alpha * dot + beta * c[[i, j]]
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array2, Ix2};

    /// f32 GEMM against the naive loop. The two sum the same products in different orders (and
    /// `gemm` may use FMA), so they differ by rounding only: each sum of k terms of size <= 1 has
    /// an error below k * 2^-24 ~ 1e-5 for k <= 160, hence an absolute tolerance of 1e-4.
    #[test]
    fn gemm_matches_naive_loops_for_plain_and_transposed_views() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (20, 25, 576),
            (50, 64, 33),
            (17, 160, 9),
        ] {
            let a: Array2<f32> = random_array::<f32, Ix2>((m, k), 1);
            let bt: Array2<f32> = random_array::<f32, Ix2>((n, k), 2); // B^T, to test strided views
            let c0: Array2<f32> = random_array::<f32, Ix2>((m, n), 3);
            for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                let mut fast = c0.clone();
                let mut naive = c0.clone();
                gemm(alpha, a.view(), bt.t(), beta, fast.view_mut());
                gemm_naive(alpha, a.view(), bt.t(), beta, naive.view_mut());
                assert_close(
                    "gemm C",
                    fast.view().into_dyn(),
                    naive.view().into_dyn(),
                    1e-4,
                    0.0,
                );
            }
        }
    }

    #[test]
    fn gemm_with_beta_zero_ignores_nan_in_c() {
        let a = Array2::<f64>::eye(3);
        let b = random_array::<f64, Ix2>((3, 4), 4);
        let mut c = Array2::<f64>::from_elem((3, 4), f64::NAN);
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        assert_eq!(c, b); // I x B = B exactly: each sum has one non-zero term
    }

    #[test]
    fn gemm_small_hand_worked_case() {
        // [1 2] x [5 6] = [1*5+2*7  1*6+2*8] = [19 22]
        // [3 4]   [7 8]   [3*5+4*7  3*6+4*8]   [43 50]
        let a = ndarray::arr2(&[[1.0f64, 2.0], [3.0, 4.0]]);
        let b = ndarray::arr2(&[[5.0f64, 6.0], [7.0, 8.0]]);
        let mut c = Array2::<f64>::zeros((2, 2));
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        assert_eq!(c, ndarray::arr2(&[[19.0, 22.0], [43.0, 50.0]]));
    }
}
