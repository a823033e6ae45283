//! The fixed partitions every parallel loop uses.
//!
//! Rayon runs the pieces of a partition on however many threads there are, but the pieces
//! themselves are fixed sizes, never derived from the thread count. Each piece is computed the
//! same way on any thread, and wherever pieces are summed (weight gradients over a batch) the
//! sum runs afterwards in piece order. So every result is bit-identical whatever the thread
//! count. (llm.c's `matmul_backward` makes the same choice: no two threads write one place.)

/// Images per task when a layer's work is split over the batch and then summed (the
/// convolutions' weight gradients): also the granularity of the fixed-order reduction.
pub const IMAGES_PER_SUM: usize = 8;

/// Columns a convolution's forward product should have at least: `matrixmultiply` packs the
/// weights afresh for every call, which a product of fewer columns does not repay.
pub const MIN_PRODUCT_COLUMNS: usize = 256;

/// Images per task (and per GEMM) in a convolution's forward pass, for `positions` output
/// positions per image: enough for [`MIN_PRODUCT_COLUMNS`] columns (conv2, 64 positions: 4;
/// conv1, 576: 1). Depends on the shape only, never on the thread count; nothing is summed
/// across groups, so the grouping changes no arithmetic either.
pub fn images_per_product(positions: usize) -> usize {
    MIN_PRODUCT_COLUMNS.div_ceil(positions.max(1)).max(1)
}

/// Pieces a dense layer's GEMM is cut into, along a dimension of its *output* (never along the
/// dimension its sums run over), so the cut changes no arithmetic. The piece that stays whole is
/// the big weight matrix: `matrixmultiply` packs each piece's operands afresh, and cutting along
/// the batch instead (as an earlier version did, 16 rows a piece) re-packed all 400,000 weights
/// of fc1 once per piece: cutting through `W` made fc1's three products 22-35% faster at batch
/// 64 (`cargo bench -- fc1`, 1 thread).
pub const DENSE_PIECES: usize = 4;
/// ... but no piece narrower than this, so that fc2 (10 outputs) stays one product.
pub const MIN_PIECE: usize = 64;

/// Products smaller than this many multiply-adds are not cut at all: handing pieces to other
/// threads costs more than it saves (fc2's input gradient, 64 x 10 x 500 = 320,000, was three
/// times slower in four pieces on 2 threads than whole on 1: docs/performance.md).
pub const MIN_SPLIT_WORK: usize = 1 << 20;

/// The length of each piece (the last may be shorter) when `len` columns or rows of a product
/// of `multiply_adds` are cut into [`DENSE_PIECES`] pieces of at least [`MIN_PIECE`], or one
/// piece when the product is below [`MIN_SPLIT_WORK`]. Depends on the shapes only, never on the
/// thread count.
pub fn piece_len(len: usize, multiply_adds: usize) -> usize {
    if multiply_adds < MIN_SPLIT_WORK {
        return len.max(1);
    }
    len.div_ceil(DENSE_PIECES).max(MIN_PIECE)
}

thread_local! {
    /// Set while this thread runs a [`serial`] closure.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the layers' own parallel loops turned into plain loops on this thread: for
/// work that is already one of many pieces run side by side (a chunk of the batch through
/// several layers), where splitting it further only hands its data to another core. The
/// pieces and their order are the same either way, so results do not change.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let result = f();
    SERIAL.with(|s| s.set(before));
    result
}

/// The `with_min_len` every parallel loop of the layers passes to rayon: 1 normally (rayon may
/// split the pieces as it likes), and inside [`serial`] more pieces than any loop has, so rayon
/// does not split the loop at all and runs it in order on the calling thread.
pub fn min_pieces_per_job() -> usize {
    if SERIAL.with(|s| s.get()) {
        usize::MAX
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside `serial`, a layer's parallel loop runs every piece on the calling thread, in
    /// order; the flag is restored afterwards (also when nested).
    #[test]
    fn serial_runs_the_pieces_in_order_on_the_calling_thread() {
        use std::sync::Mutex;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            let me = rayon::current_thread_index();
            let seen = Mutex::new(Vec::new());
            serial(|| {
                serial(|| ());
                assert_eq!(
                    min_pieces_per_job(),
                    usize::MAX,
                    "still serial after a nested call"
                );
                let _: ndarray::Array1<f32> =
                    crate::kernels::par_build::par_build(64, 1, |i, _| {
                        seen.lock()
                            .unwrap()
                            .push((i, rayon::current_thread_index()))
                    });
            });
            assert_eq!(min_pieces_per_job(), 1);
            let want: Vec<_> = (0..64).map(|i| (i, me)).collect();
            assert_eq!(seen.into_inner().unwrap(), want);
        });
    }

    #[test]
    fn pieces_cover_the_length_and_stay_at_least_min_piece_wide() {
        let fc1 = 64 * 800 * 500;
        assert_eq!(piece_len(500, fc1), 125); // fc1's outputs: 4 pieces
        assert_eq!(piece_len(800, fc1), 200); // fc1's inputs: 4 pieces
        assert_eq!(piece_len(500, 64 * 10 * 500), 500); // fc2: too small to cut
        assert_eq!(piece_len(10, fc1), 64);
        assert_eq!(piece_len(0, 0), 1);
        for len in 1..300 {
            let p = piece_len(len, MIN_SPLIT_WORK);
            assert!(len.div_ceil(p) <= DENSE_PIECES && (p >= MIN_PIECE || p >= len));
        }
        assert_eq!(images_per_product(64), 4); // conv2
        assert_eq!(images_per_product(576), 1); // conv1
        assert_eq!(images_per_product(42), 7); // the tests' small shapes
    }
}
