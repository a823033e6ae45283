//! advmnist: a hand-written LeNet on MNIST, with hand-written backward passes, for studying
//! adversarial robustness (Uličný, Lundström, Byttner, "Robustness of Deep Convolutional Neural
//! Networks for Image Recognition", ISICS 2016).
//!
//! Data flows one way: `data` -> `models` (built from `layers`, which are built on `kernels`)
//! -> `attacks` -> `experiments` -> `report`. The command line (`main.rs`) is a thin shell.

pub mod attacks;
pub mod audit;
pub mod bench;
pub mod data;
pub mod defences;
pub mod experiments;
pub mod io_safety;
pub mod kernels;
pub mod layers;
pub mod limits;
pub mod models;
pub mod optim;
pub mod report;
pub mod rng;
pub mod scalar;
pub mod statistics;
pub mod testutil;
pub mod train;

/// Keeps glibc's allocator from returning large blocks to the kernel after every use.
///
/// A training step allocates and frees the same few multi-megabyte activation buffers every
/// iteration. By default glibc serves blocks above its mmap threshold with fresh `mmap`s and
/// unmaps them on `free`, so each iteration page-faults its buffers back in (measured with
/// `perf record` on `advmnist bench`: about 15% of the time in page faults and their locks).
/// Raising the mmap and trim thresholds makes freed blocks stay in the heap for reuse. Only
/// speed changes, never a result. A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread runs.
    unsafe {
        // 32 MiB is the largest mmap threshold every glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit
        // systems); every per-iteration buffer is smaller. Only if that call succeeds is the
        // trim threshold raised too: on its own it would freeze the mmap threshold at 128 KiB.
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
