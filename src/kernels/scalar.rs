//! The element type of every tensor: `f32` for training, attacks and benchmarks, `f64` for the
//! finite-difference gradient checks (whose truncation and rounding errors would swamp an f32
//! comparison; see `testutil::gradcheck`).
//!
//! The trait is where each type picks its kernels: f32 its vectorised logistic
//! (`kernels::logistic`) and `matrixmultiply::sgemm`, f64 the plain formula and `dgemm`; and
//! [`as_f32`] is how generic code reaches a kernel written for f32 alone.

use std::any::TypeId;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::mem::MaybeUninit;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point element type with a GEMM kernel from `matrixmultiply`.
pub trait Scalar:
    num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// `"F32"` or `"F64"`, for messages.
    const NAME: &'static str;

    /// Converts from f64 (constants, hyper-parameters). Rounds to nearest for f32.
    fn of(x: f64) -> Self;

    /// Widens to f64 (for reporting and comparisons).
    fn f64(self) -> f64;

    /// The logistic function `1 / (1 + exp(-x))` of every element, in place. f32 takes the
    /// vectorised path of `kernels::logistic`; f64 (gradient checks) the plain formula.
    fn logistic_in_place(v: &mut [Self]) {
        for x in v {
            *x = Self::one() / (Self::one() + (-*x).exp());
        }
    }

    /// `C = alpha * A B + beta * C`, with `A` (m, k), `B` (k, n), `C` (m, n) given by pointers
    /// and element strides (row stride, column stride). When `beta` is zero, `C` is not read.
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for `C`) memory of the
    /// stated shapes, as `matrixmultiply::sgemm` requires.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Scalar for f32 {
    const NAME: &'static str = "F32";
    fn logistic_in_place(v: &mut [f32]) {
        super::logistic::logistic(v)
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "F64";
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// The slice as f32 if `T` is f32, else `None`: how a kernel written for f32 alone
/// (`kernels::conv_fma`) is reached from generic code (f64 takes the generic path). Decided
/// by the type's identity, not by a trait method an implementation could get wrong.
pub fn as_f32<T: Scalar>(v: &[T]) -> Option<&[f32]> {
    // SAFETY: when T is f32 the slice already is a `[f32]` of that length.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) })
}

/// [`as_f32`] for an output to be overwritten.
pub fn as_f32_mut<T: Scalar>(v: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: when T is f32 the slice already is a `[f32]` of that length.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len()) })
}

/// [`as_f32`] for an output that is still to be written.
pub fn as_f32_uninit<T: Scalar>(v: &mut [MaybeUninit<T>]) -> Option<&mut [MaybeUninit<f32>]> {
    // SAFETY: when T is f32 the slice already is a `[MaybeUninit<f32>]` of that length.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut MaybeUninit<f32>, v.len())
    })
}

/// A view of `T` as a view of f32 if `T` is f32 (the same elements, shape and strides), else
/// `None`: [`as_f32`] for views that are not contiguous (a layer's parallel piece).
pub fn as_f32_view<'a, T: Scalar, D: ndarray::Dimension>(
    v: ndarray::ArrayView<'a, T, D>,
) -> Option<ndarray::ArrayView<'a, f32, D>> {
    // SAFETY: when T is f32 the two types are the same type; a view owns nothing, so reading
    // it as the other type and forgetting the original moves it.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe {
        let v = std::mem::ManuallyDrop::new(v);
        std::ptr::read(
            &*v as *const ndarray::ArrayView<'a, T, D> as *const ndarray::ArrayView<'a, f32, D>,
        )
    })
}

/// [`as_f32_view`] for a mutable view.
pub fn as_f32_view_mut<'a, T: Scalar, D: ndarray::Dimension>(
    v: ndarray::ArrayViewMut<'a, T, D>,
) -> Option<ndarray::ArrayViewMut<'a, f32, D>> {
    // SAFETY: as in `as_f32_view`; the mutable borrow moves with the view.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe {
        let v = std::mem::ManuallyDrop::new(v);
        std::ptr::read(
            &*v as *const ndarray::ArrayViewMut<'a, T, D>
                as *const ndarray::ArrayViewMut<'a, f32, D>,
        )
    })
}
