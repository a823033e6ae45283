//! Scratch buffers kept by each thread from one call to the next.
//!
//! A convolution needs working space per image or group (the `cols` matrix of im2col, a GEMM's
//! output before it is copied into place). Allocating it afresh for every call means a zeroing
//! pass over up to a megabyte each time (conv2's weight-gradient `cols` for 8 images is
//! 500 x 512 values), and once the network runs its convolutional half chunk by chunk that is
//! once per chunk and layer. Here a thread keeps the buffers it used and hands them out again:
//! the zeroing happens only when a buffer first grows.
//!
//! A buffer's contents on entry are *unspecified* (zeros, or whatever its last user left), so a
//! user must write every element before reading it: im2col writes its whole output, and a GEMM
//! with `beta = 0` never reads its destination. Nothing here can change a result.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    /// The spare buffers of this thread, each a `Vec<T>` of some element type.
    static SPARE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` elements of unspecified contents, borrowed from this thread's
/// spares (or newly allocated if there is none of type `T`), and returns the buffer afterwards.
/// Calls may nest (each takes its own buffer) and may run on any thread.
pub fn with_scratch<T, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R
where
    T: Copy + Default + 'static,
{
    let mut buffer = take::<T>();
    if buffer.len() < len {
        buffer.resize(len, T::default());
    }
    let result = f(&mut buffer[..len]);
    SPARE.with(|spare| spare.borrow_mut().push(Box::new(buffer)));
    result
}

/// The largest spare `Vec<T>` of this thread, removed from the spares; an empty one if none.
fn take<T: 'static>() -> Vec<T> {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let best = spare
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.downcast_ref::<Vec<T>>().map(|v| (v.len(), i)))
            .max();
        match best {
            Some((_, i)) => *spare
                .swap_remove(i)
                .downcast::<Vec<T>>()
                .expect("checked just above"),
            None => Vec::new(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_back_the_buffer_and_nests() {
        let first = with_scratch::<f32, _>(10, |b| {
            assert_eq!(b.len(), 10);
            b.fill(7.0);
            b.as_ptr() as usize
        });
        // The same buffer comes back (shortened), with what its last user left.
        let again = with_scratch::<f32, _>(4, |b| {
            assert_eq!(b, &[7.0; 4]);
            b.as_ptr() as usize
        });
        assert_eq!(first, again);
        // A nested call gets a buffer of its own; another type gets another buffer.
        with_scratch::<f32, _>(3, |outer| {
            with_scratch::<f32, _>(3, |inner| assert_ne!(outer.as_ptr(), inner.as_ptr()));
            with_scratch::<f64, _>(5, |d| assert_eq!(d.len(), 5));
        });
        // Growing keeps the old contents and zero-fills the rest.
        with_scratch::<f32, _>(12, |b| assert_eq!(&b[10..], &[0.0, 0.0]));
    }
}
