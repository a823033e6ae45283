//! New arrays whose pieces are zeroed by the worker that fills them, rather than all at once.
//!
//! `Array::zeros` writes the whole array before any worker starts. For a layer's output of a
//! few megabytes (conv1's is 2.9 MB at batch 64) that is a pass over memory which leaves the
//! start of the array out of cache by the time the first worker fills it, and it runs on one
//! thread. Here the array is allocated uninitialised and each piece (one image's worth) is
//! zeroed by the worker that is about to fill it, while the piece is hot in its cache: the
//! result is the same array `Array::zeros` followed by the fills would give. In `perf`, the
//! memset of new arrays was 13% of conv1's forward and 5% of the whole `advmnist bench`.

use crate::kernels::parallel::min_pieces_per_job;
use ndarray::{Array, Dimension, ShapeBuilder};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// An array of `shape` built in parallel pieces of `piece` elements (in memory order, row-major
/// for the layers' shapes; the last piece may be shorter): each worker first sets its piece to
/// `T::default()` (zero for numbers), then calls `fill(index, piece)`. Which thread fills which
/// piece never changes the result. (Working buffers come from `kernels::scratch`.)
pub fn par_build<T, D>(
    shape: impl ShapeBuilder<Dim = D>,
    piece: usize,
    fill: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Array<T, D>
where
    T: Copy + Default + Send + Sync,
    D: Dimension,
{
    let mut a = Array::<T, D>::uninit(shape);
    let pieces = a
        .as_slice_memory_order_mut()
        .expect("a new array is contiguous");
    pieces
        .par_chunks_mut(piece.max(1))
        .enumerate()
        .with_min_len(min_pieces_per_job())
        .for_each(|(i, chunk)| fill(i, zeroed(chunk)));
    // SAFETY: the pieces of `par_chunks_mut` cover the whole array and each was initialised by
    // `zeroed` before `fill` ran (a panic in `fill` unwinds out of `for_each`, so this line
    // is never reached with a piece left uninitialised).
    unsafe { a.assume_init() }
}

/// [`par_build`] without the zeroing, for a `fill` that writes every element of its piece (a
/// kernel whose every output is stored, such as `kernels::direct::conv_image`).
///
/// # Safety
/// `fill(index, piece)` must initialise every element of `piece` before it returns; the array
/// is then taken as initialised.
pub unsafe fn par_build_uninit<T, D>(
    shape: impl ShapeBuilder<Dim = D>,
    piece: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Array<T, D>
where
    T: Copy + Send + Sync,
    D: Dimension,
{
    let mut a = Array::<T, D>::uninit(shape);
    a.as_slice_memory_order_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(piece.max(1))
        .enumerate()
        .with_min_len(min_pieces_per_job())
        .for_each(|(i, chunk)| fill(i, chunk));
    // SAFETY: the pieces cover the array, and the caller guarantees `fill` initialised each.
    unsafe { a.assume_init() }
}

/// [`par_build`] for two arrays with the same number of pieces, filled together (an output and
/// its side result, such as max-pooling's values and argmaxes): piece `i` of `a` has `piece_a`
/// elements, piece `i` of `b` has `piece_b`.
pub fn par_build_pair<A, B, DA, DB>(
    shape_a: impl ShapeBuilder<Dim = DA>,
    piece_a: usize,
    shape_b: impl ShapeBuilder<Dim = DB>,
    piece_b: usize,
    fill: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) -> (Array<A, DA>, Array<B, DB>)
where
    A: Copy + Default + Send + Sync,
    B: Copy + Default + Send + Sync,
    DA: Dimension,
    DB: Dimension,
{
    let mut a = Array::<A, DA>::uninit(shape_a);
    let mut b = Array::<B, DB>::uninit(shape_b);
    let (sa, sb) = (
        a.as_slice_memory_order_mut()
            .expect("a new array is contiguous"),
        b.as_slice_memory_order_mut()
            .expect("a new array is contiguous"),
    );
    assert_eq!(
        sa.len().div_ceil(piece_a.max(1)),
        sb.len().div_ceil(piece_b.max(1)),
        "par_build_pair: the two arrays must have the same number of pieces"
    );
    sa.par_chunks_mut(piece_a.max(1))
        .zip(sb.par_chunks_mut(piece_b.max(1)))
        .enumerate()
        .with_min_len(min_pieces_per_job())
        .for_each(|(i, (ca, cb))| fill(i, zeroed(ca), zeroed(cb)));
    // SAFETY: as in `par_build`; the equal piece counts (asserted above) mean the zip leaves
    // no piece of either array out.
    unsafe { (a.assume_init(), b.assume_init()) }
}

/// Elements per piece of [`par_zeros`].
const ZERO_PIECE: usize = 1 << 14;

/// A zeroed array, zeroed in parallel pieces of 16,384 elements: fc1's weight gradient (400,000
/// values, zeroed for every training step) zeroed on one thread kept the other waiting
/// (measured in docs/performance.md, "What was done").
pub fn par_zeros<T, D>(shape: impl ShapeBuilder<Dim = D>) -> Array<T, D>
where
    T: Copy + Default + Send + Sync,
    D: Dimension,
{
    par_build(shape, ZERO_PIECE, |_, _| {})
}

/// Sets every element to `T::default()` and returns the slice as initialised.
fn zeroed<T: Copy + Default>(chunk: &mut [MaybeUninit<T>]) -> &mut [T] {
    for v in chunk.iter_mut() {
        v.write(T::default());
    }
    // SAFETY: every element was initialised just above, and `MaybeUninit<T>` has the same
    // layout as `T`.
    unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn equals_zeros_then_fills_whatever_the_piece_size() {
        for piece in [1, 5, 12, 60, 1000] {
            let a: Array3<f64> = par_build((3, 4, 5), piece, |i, chunk| {
                // Fill only every other element: the others must be exactly zero.
                for (j, v) in chunk.iter_mut().enumerate().step_by(2) {
                    *v = (i * 1000 + j) as f64;
                }
            });
            let mut want = Array3::<f64>::zeros((3, 4, 5));
            for (k, v) in want.as_slice_mut().unwrap().iter_mut().enumerate() {
                let (i, j) = (k / piece, k % piece);
                if j % 2 == 0 {
                    *v = (i * 1000 + j) as f64;
                }
            }
            assert_eq!(a, want, "piece {piece}");
        }
    }

    #[test]
    fn pair_fills_matching_pieces() {
        let (a, b) = par_build_pair((4, 3), 3, 8, 2, |i, ca: &mut [f32], cb: &mut [u8]| {
            ca.fill(i as f32);
            cb[0] = i as u8;
        });
        assert_eq!(a.column(0).to_vec(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(b.to_vec(), vec![0, 0, 1, 0, 2, 0, 3, 0]);
    }
}
