//! Upper limits: sizes that cannot make sense are refused before any work,
//! and the memory a command's big buffers will take is estimated before they are allocated, so
//! that a command refuses with a message saying how much it needs instead of being killed or
//! aborting on a failed allocation half-way.
//!
//! The estimates are the buffers that grow with the flags (images x 784 x 4 bytes each); what
//! every command needs anyway (the data, a few models) is already loaded when they are checked,
//! so the system's figure of available memory accounts for it.

use crate::data::PIXELS;

/// Most levels `sweep --levels` and `show --levels` accept. Each sweep level is one pass over
/// the test set per model (100 levels take about 45 s on 2 cores, so 1,000 take about 8 minutes,
/// and PGD's cost is `--steps` times that); the curve is drawn on an 800-pixel-wide plot, where
/// 1,000 levels are already finer than a pixel. Beyond this, more levels show nothing more.
pub const MAX_LEVELS: usize = 1000;

/// Most iterations a training flag accepts (`train`/`dae train --iters`, `advtrain --base-iters`
/// and `--stage-iters`), and the longest period of `--checkpoint-every` and `--eval-every` (a
/// period past the run's end already means "never"). The study's longest run is 40,000
/// iterations (Table 1, dropout "All") and the autoencoder's default 20,000: the limit is 25 times
/// the longest, hours of training (docs/performance.md has the speed), not weeks.
pub const MAX_ITERATIONS: u64 = 1_000_000;

/// Most `advtrain --stages`. Stage K trains on K + 1 sets of the 60,000 training images (188 MB
/// each in f32), so 20 stages hold about 4 GB; the study runs 5.
pub const MAX_STAGES: usize = 20;

/// Most draws of injected noise the white-box gradient averages (`--eot`). Each draw is one more
/// gradient pass through the whole pipeline per image and level; the default is 10
/// (`models::pipeline::DEFAULT_EOT_SAMPLES`), and the spread of a mean of 1,000 draws is already
/// a tenth of that of 10.
pub const MAX_EOT_SAMPLES: usize = 1000;

/// Most PGD steps per level (`sweep --steps`): each step is one gradient pass over the test set
/// per model and level, so 1,000 steps cost 1,000 FGSM sweeps; the default is 10, and the step
/// size `2.5 eps / steps` is already below a 1/255 grey level at eps 0.1 past 64 steps.
pub const MAX_PGD_STEPS: usize = 1000;

/// Most queries per image of the Square attack (`--queries`): 20 times AutoAttack's 5,000.
pub const MAX_QUERIES: usize = 100_000;

/// Most random restarts per APGD run (`--restarts`).
pub const MAX_RESTARTS: usize = 100;

/// Most test images one evaluation attacks (`evaluate --images`): the test set.
pub const MAX_EVALUATE_IMAGES: usize = 10_000;

/// Most budgets one evaluation runs (`evaluate --eps`).
pub const MAX_BUDGETS: usize = 20;

/// Most test digits in one `show` figure (`--count`, its rows): 1,000 rows are a PNG over 100,000
/// pixels tall, past what an image viewer shows; the default is 8.
pub const MAX_FIGURE_DIGITS: usize = 1000;

/// Most test images `gradcheck` checks (`--images`): each image's input gradient takes two f64
/// forward passes per pixel (1,568), and the default is 3.
pub const MAX_GRADCHECK_IMAGES: usize = 1000;

/// Most entries `gradcheck --params` checks per parameter tensor: LeNet's largest tensor,
/// `fc1.weight` (500 x 800 = 400,000 entries). Past it every tensor is checked whole already.
pub const MAX_PARAMS_PER_TENSOR: usize = 400_000;

/// Most subjects `human-study --subjects` offers: each adds about 150-200 KB to the page, so
/// 1,000 make a page of about 200 MB, the most a browser opens comfortably; the study had 20.
pub const MAX_SUBJECTS: u32 = 1000;

/// Largest test-image index (`trace --image`, `show --first`, `gradcheck --first`) whatever the
/// `--data`: MNIST's and Fashion-MNIST's test sets hold 10,000 images, EMNIST's largest 116,323,
/// and a test set of a million would take 3.1 GB in f32. The index is also checked against the
/// test set that is loaded.
pub const MAX_IMAGE_INDEX: usize = 999_999;

/// Bytes of one image as the models take it: 28 x 28 f32.
pub const IMAGE_BYTES: u64 = (PIXELS * 4) as u64;

/// Peak memory per image of a training batch, above what a run needs anyway, measured as the
/// growth of the peak resident set (`/usr/bin/time -f %M`) between batch sizes, 2 threads,
/// commit 604fbbd: LeNet `train` 48 KB per image (batch 2,048 -> 8,192 -> 16,384), the
/// autoencoder's `dae train` 64 KB (2,048 -> 8,192), `bench` (LeNet and autoencoder workloads
/// at batch B) 80 KB (64 -> 4,096). Rounded up.
pub const LENET_TRAIN_BYTES_PER_IMAGE: u64 = 50_000;
/// See [`LENET_TRAIN_BYTES_PER_IMAGE`].
pub const DAE_TRAIN_BYTES_PER_IMAGE: u64 = 66_000;
/// See [`LENET_TRAIN_BYTES_PER_IMAGE`].
pub const BENCH_BYTES_PER_IMAGE: u64 = 84_000;

/// A sweep's big buffers: one perturbation direction per attacked model (the gradient sign, or
/// the Gaussian field), kept for all levels, plus the perturbed set of the level being measured
/// and, for PGD, its iterate and gradient: `(attackers + 3) x images x 784 x 4` bytes.
pub fn sweep_bytes(attackers: usize, images: usize) -> u64 {
    bytes_of(&[attackers as u64 + 3, images as u64, IMAGE_BYTES])
}

/// `show`'s figure: an RGB bitmap of `width x height` pixels, and about as much again while it
/// is encoded as PNG.
pub fn figure_bytes(width: u32, height: u32) -> u64 {
    bytes_of(&[2, 3, width as u64, height as u64])
}

/// Makes every flag that takes a value accept a negative number as that value (`--iters -5`),
/// so that it reaches the flag's own range check and message instead of clap's "unexpected
/// argument '-5'". A list of numbers (`--levels -0.1,0.2`, which clap does not recognise as one
/// negative number) also accepts a leading hyphen. Applied to every subcommand, so a flag added
/// later is covered without anyone remembering to.
pub fn numbers_may_be_negative(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        if !arg.get_action().takes_values() {
            return arg;
        }
        let list = arg.get_value_delimiter().is_some() && is_number(&arg);
        let arg = arg.allow_negative_numbers(true);
        if list {
            arg.allow_hyphen_values(true)
        } else {
            arg
        }
    })
    .mut_subcommands(numbers_may_be_negative)
}

/// Whether a flag's values are numbers (by the type its value parser gives).
pub fn is_number(arg: &clap::Arg) -> bool {
    use std::any::TypeId;
    let parsed = arg.get_value_parser().type_id();
    parsed == TypeId::of::<f32>() || parsed == TypeId::of::<f64>() || is_whole_number(arg)
}

/// Whether a flag's values are whole numbers (by the type its value parser gives).
pub fn is_whole_number(arg: &clap::Arg) -> bool {
    use std::any::TypeId;
    let parsed = arg.get_value_parser().type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]
    .iter()
    .any(|t| parsed == *t)
}

/// Environment variable that caps the memory a command may plan to use, in bytes with an
/// optional K, M, G or T suffix (powers of 1024): e.g. `ADVMNIST_MEMORY_LIMIT=4G` on a machine
/// shared with other work. Below what the system reports available, it wins.
pub const MEMORY_LIMIT_ENV: &str = "ADVMNIST_MEMORY_LIMIT";

/// The memory a command may use, and where that figure comes from: the smaller of
/// `MemAvailable` in `/proc/meminfo` (Linux) and [`MEMORY_LIMIT_ENV`]. `None` when neither is
/// known (then no command refuses for lack of memory).
pub fn available_memory() -> Result<Option<(u64, String)>, String> {
    let limit = match std::env::var(MEMORY_LIMIT_ENV) {
        Ok(v) if !v.trim().is_empty() => Some((
            parse_bytes(&v).ok_or_else(|| {
                format!("{MEMORY_LIMIT_ENV}={v}: expected a number of bytes, e.g. 4G or 512M")
            })?,
            format!("{MEMORY_LIMIT_ENV}={v}"),
        )),
        _ => None,
    };
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t))
        .map(|b| (b, "MemAvailable in /proc/meminfo".to_string()));
    Ok(match (limit, system) {
        (Some(l), Some(s)) => Some(if l.0 <= s.0 { l } else { s }),
        (l, s) => l.or(s),
    })
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// `123`, `512K`, `4G`, `1.5G` (powers of 1024) as bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let scale = match unit {
        'B' => 1u64,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * scale as f64) as u64)
}

/// Bytes for people: `3.1 GB` (powers of 1000, one decimal).
pub fn describe_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b >= 1e12 => format!("{:.1} TB", b / 1e12),
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} bytes"),
    }
}

/// Refuses, before any big allocation, a piece of work whose estimated memory `needed` (bytes)
/// is more than [`available_memory`]; `what` says what the memory is for, with the flags that
/// set its size, e.g. `"the perturbed images of 40 attacked models (--model)"`. When the
/// available memory is unknown nothing is refused.
pub fn check_memory(what: &str, needed: u64) -> Result<(), String> {
    let Some((available, source)) = available_memory()? else {
        return Ok(());
    };
    if needed > available {
        return Err(format!(
            "not enough memory for {what}: about {} is needed, but only {} is available ({source}); ask for less",
            describe_bytes(needed),
            describe_bytes(available)
        ));
    }
    Ok(())
}

/// The product of sizes, saturating instead of overflowing (a saturated estimate is refused).
pub fn bytes_of(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_figures_parse() {
        assert_eq!(
            mem_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(mem_available("MemTotal: 100 kB\n"), None);
        assert_eq!(parse_bytes("4G"), Some(4 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(describe_bytes(3_140_000_000), "3.1 GB");
        assert_eq!(bytes_of(&[u64::MAX, 2]), u64::MAX);
    }
}
