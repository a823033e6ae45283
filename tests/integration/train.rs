//! Training: bit-identical results across thread counts, exact resumption from a checkpoint,
//! and a clean stop on divergence.

use advmnist::data::{default_data_dir, load_mnist, Mnist};
use advmnist::models::lenet::DropoutRates;
use advmnist::train::{self, checkpoint, TrainConfig, TrainOptions, TrainState};
use std::sync::OnceLock;
use tempfile::TempDir;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| load_mnist(&default_data_dir()).expect("bundled MNIST loads"))
}

fn run(cfg: &TrainConfig, threads: usize, options: &TrainOptions) -> TrainState {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| train::train(cfg, mnist(), TrainState::new(cfg.seed), options, |_| {}).unwrap())
}

fn short(dropout: DropoutRates, iterations: u64) -> TrainConfig {
    TrainConfig {
        iterations,
        ..TrainConfig::lenet(dropout, 5)
    }
}

#[test]
fn one_and_three_threads_give_bit_identical_weights_with_dropout() {
    // Dropout everywhere exercises the per-image random streams; three threads gives chunks an
    // uneven split across workers.
    let cfg = short(DropoutRates::ALL, 12);
    let a = run(&cfg, 1, &TrainOptions::default());
    let b = run(&cfg, 3, &TrainOptions::default());
    assert_eq!(a, b, "weights or momentum differ between 1 and 3 threads");
    assert_ne!(
        a.net,
        TrainState::new(5).net,
        "training changed the weights"
    );
}

#[test]
fn resuming_from_a_checkpoint_gives_the_uninterrupted_result() {
    let dir = TempDir::new().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let cfg = short(DropoutRates::INP, 30);
    let options = TrainOptions {
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: 20,
        eval_every: 0,
    };
    let uninterrupted = run(&cfg, 2, &options);
    // The run left its iteration-20 checkpoint; a new process would start from it.
    let (state, note) = train::starting_state(&cfg, &mnist().sha256, Some(&ckpt), true).unwrap();
    assert_eq!(state.iteration, 20);
    assert!(note.unwrap().contains("iteration 20"));
    let resumed = train::train(&cfg, mnist(), state, &TrainOptions::default(), |_| {}).unwrap();
    assert_eq!(resumed, uninterrupted);
}

#[test]
fn resuming_with_other_settings_is_refused_by_name() {
    let dir = TempDir::new().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let cfg = short(DropoutRates::NONE, 3);
    checkpoint::save(&ckpt, &cfg, &mnist().sha256, &TrainState::new(cfg.seed)).unwrap();
    let other_seed = TrainConfig {
        seed: 6,
        ..cfg.clone()
    };
    let e = train::starting_state(&other_seed, &mnist().sha256, Some(&ckpt), true).unwrap_err();
    assert!(
        e.to_string().contains("--seed") && e.to_string().contains("run.ckpt"),
        "{e}"
    );
    let other_dropout = TrainConfig {
        dropout: DropoutRates::ALL,
        ..cfg.clone()
    };
    let e = train::starting_state(&other_dropout, &mnist().sha256, Some(&ckpt), true).unwrap_err();
    assert!(e.to_string().contains("--dropout"), "{e}");
    // Without --resume an existing checkpoint is not silently overwritten.
    let e = train::starting_state(&cfg, &mnist().sha256, Some(&ckpt), false).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
}

#[test]
fn divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint() {
    let dir = TempDir::new().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let mut cfg = short(DropoutRates::NONE, 200);
    // A learning rate of 3 with momentum 0.9 blows LeNet's loss up within a few dozen steps.
    cfg.lr.base_lr = 3.0;
    let options = TrainOptions {
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: 2,
        eval_every: 0,
    };
    let e = train::train(&cfg, mnist(), TrainState::new(cfg.seed), &options, |_| {}).unwrap_err();
    let train::TrainError::Diverged {
        iteration,
        last_checkpoint,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    let (path, saved_at) = last_checkpoint
        .clone()
        .expect("a checkpoint was written before divergence");
    assert!(saved_at <= *iteration && path == ckpt, "{e}");
    assert!(
        e.to_string().contains("diverged") && e.to_string().contains("run.ckpt"),
        "{e}"
    );
    let state = checkpoint::load(&ckpt, &cfg, &mnist().sha256).unwrap();
    assert_eq!(state.iteration, saved_at);
    assert!(
        state.net.first_non_finite().is_none(),
        "the kept checkpoint is finite"
    );
}

#[test]
fn batches_cover_each_epoch_exactly_once() {
    let mut sampler = train::BatchSampler::new(9, 100);
    // Batch 30 over 100 images: iterations 0..10 cover epochs 0, 1, 2 exactly.
    let mut seen: Vec<usize> = (0..10).flat_map(|t| sampler.batch(t, 30)).collect();
    let epoch0: std::collections::HashSet<_> = seen[..100].iter().collect();
    assert_eq!(epoch0.len(), 100);
    seen.sort();
    assert_eq!(seen, (0..100).flat_map(|i| [i, i, i]).collect::<Vec<_>>());
}

/// The bytes of a 300-iteration model file, pinned: `advmnist train --out m.safetensors
/// --iters 300` (seed 1, no dropout, the bundled MNIST) wrote this file with the code of
/// 2026-12-06 (commit bb6dd9c) on a 2-core AVX-512 Xeon, and the same bytes on an AVX2 EPYC.
/// A change of a single weight bit anywhere in training (data order, initialisation, a kernel's
/// order of sums, the optimiser) changes the hash. The kernels' bits are defined for x86-64
/// CPUs with AVX2 and FMA (the GEMM's fused multiply-add kernels); elsewhere the test says so
/// and checks nothing, since another rounding is not a fault there.
const TRAIN_300_SHA256: &str = "153cae5bcad9311c5bf2d9411b91cdc885c112772175cb63f9ddef126115a34f";

/// Under every level of vector instructions this CPU runs (`ADVMNIST_KERNELS`), since each
/// kernel path must give the same bits.
#[test]
fn a_300_iteration_model_keeps_its_pinned_bytes() {
    use advmnist::kernels::isa::{self, Isa};
    if isa::detected() < Isa::Avx2 {
        eprintln!("skipped: the pinned bytes are those of x86-64 CPUs with AVX2 and FMA");
        return;
    }
    let dir = TempDir::new().unwrap();
    for level in Isa::ALL.into_iter().filter(|&l| l <= isa::detected()) {
        let out = dir.path().join(format!("m-{level}.safetensors"));
        let args = ["train", "--out", crate::common::s(&out), "--iters", "300"];
        let run = crate::common::advmnist_with(&args, &[(isa::VARIABLE, level.name())]);
        assert!(
            run.status.success(),
            "{level}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got = advmnist::hashing::sha256_hex(&std::fs::read(&out).unwrap());
        assert_eq!(
            got, TRAIN_300_SHA256,
            "a 300-iteration `train` at level {level} changed its bytes: every result of the crate may have changed"
        );
    }
}

/// A level the CPU lacks, or a misspelt one, is refused before any work, naming the variable.
#[test]
fn a_kernel_level_the_cpu_lacks_is_refused() {
    use advmnist::kernels::isa::{self, Isa};
    let args = ["eval", "--model", "no-such-file.safetensors"];
    let mut refused = vec!["sse9"];
    if isa::detected() < Isa::Avx512 {
        refused.push("avx512");
    }
    for value in refused {
        let run = crate::common::advmnist_with(&args, &[(isa::VARIABLE, value)]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{value} was accepted");
        assert!(
            stderr.contains(&format!("ADVMNIST_KERNELS={value}"))
                && !stderr.contains("no-such-file"),
            "{value}: {stderr}"
        );
    }
}
