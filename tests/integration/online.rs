//! On-line adversarial training (`train::online`, `advtrain --mode online`): the examples are
//! FGSM of the current weights (the loop re-derived by hand), alpha = 1 is plain training to
//! the bit, alpha = 0.5 is the mean loss of the batch `[x; x_adv]`, the random start's
//! examples stay in the ball, bit-identical files on 1 and 2 threads, exact resumption (also
//! when the curve on disk runs past the checkpoint), and the command line's refusals.
//!
//! Runs are small (512 training images, batches of 16, 24 iterations, curves on 40 test
//! images), so the file takes a few seconds.

use advmnist::attacks::{fgsm::fgsm, pgd, validate};
use advmnist::data::{default_data_dir, load_mnist, Mnist};
use advmnist::hashing::sha256_hex;
use advmnist::io_safety::{check_set, set_manifest};
use advmnist::models::file::{encode, load_model, tensors_of};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::optim::{lr::InvPolicy, sgd::SgdMomentum};
use advmnist::rng::{stream, Purpose};
use advmnist::train::checkpoint::CheckpointError;
use advmnist::train::online::record::read_record;
use advmnist::train::online::{
    remove_run_files, run_online, OnlineConfig, OnlineError, OnlineOptions, OnlineOutcome,
    CHECKPOINT_FILE, FIGURE_FILE, MODEL_FILE, PROGRESS_FILE, RECORD_FILE, SET_NAME,
};
use advmnist::train::{self, BatchSampler, Recipe, TrainConfig, TrainOptions, TrainState};
use advmnist::train::{NoHook, TrainingSet};
use ndarray::{concatenate, Array4, Axis};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::OnceLock;
use tempfile::TempDir;

/// 512 training images and 100 test images.
fn small() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let full = load_mnist(&default_data_dir()).expect("bundled MNIST loads");
        Mnist {
            train: full.train.subset(0..512),
            test: full.test.subset(0..100),
            sha256: full.sha256.clone(),
        }
    })
}

/// 24 iterations of 16 images, with the random start; the curve every 8 on 40 test images.
fn cfg() -> OnlineConfig {
    OnlineConfig {
        iterations: 24,
        batch: 16,
        random_start: true,
        eval_every: 8,
        eval_images: 40,
        ..OnlineConfig::new(4)
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn options(resume: bool, stop_after: Option<u64>) -> OnlineOptions {
    OnlineOptions {
        resume,
        checkpoint_every: 5,
        stop_after,
    }
}

/// Runs `cfg()` into `dir` as the command does: trains, and once finished writes the set and
/// removes the run files.
fn run(dir: &Path, threads: usize, opts: &OnlineOptions) -> Result<OnlineOutcome, OnlineError> {
    in_pool(threads, || {
        let outcome = run_online(&cfg(), small(), dir, opts, |_| {})?;
        if let OnlineOutcome::Trained(finished) = &outcome {
            advmnist::report::online::write(dir, finished).unwrap();
            remove_run_files(dir)?;
        }
        Ok(outcome)
    })
}

/// The uninterrupted run on 2 threads, made once and shared.
fn reference() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let outcome = run(dir.path(), 2, &options(false, None)).unwrap();
        assert!(matches!(outcome, OnlineOutcome::Trained(_)));
        dir
    })
    .path()
}

/// The files of a finished run, as bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let manifest = set_manifest(dir, SET_NAME);
    [MODEL_FILE, RECORD_FILE, FIGURE_FILE]
        .iter()
        .map(|f| dir.join(f))
        .chain([manifest])
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

fn assert_same_files(a: &Path, b: &Path, what: &str) {
    for ((name, x), (_, y)) in files(a).iter().zip(files(b)) {
        assert!(*x == y, "{what}: {name} differs");
    }
    for leftover in [CHECKPOINT_FILE, PROGRESS_FILE] {
        assert!(!b.join(leftover).exists(), "{what}: {leftover} left behind");
    }
}

/// The weights as the bytes of their tensors: equal bytes, equal bits (`==` on floats would
/// take -0 for 0).
fn weight_bytes(net: &LeNet<f32>) -> Vec<u8> {
    encode(&tensors_of(net, ""), &Default::default())
}

/// A batch of `b` training images with their labels and the loop's random streams of
/// iteration `t`.
fn batch(seed: u64, t: u64, b: usize) -> (Array4<f32>, Vec<u8>, Vec<ChaCha8Rng>) {
    let data = small();
    let idx = BatchSampler::new(seed, data.train.len()).batch(t, b);
    let x = data.train.images.select(Axis(0), &idx);
    let labels = idx.iter().map(|&i| data.train.labels[i]).collect();
    let rngs = (0..b as u64)
        .map(|j| stream(seed, Purpose::Dropout, t * b as u64 + j))
        .collect();
    (x, labels, rngs)
}

#[test]
fn the_record_holds_the_curve_and_the_models_hash() {
    let dir = reference();
    check_set(dir, SET_NAME).expect("a complete set");
    let record = read_record(&dir.join(RECORD_FILE)).unwrap();
    assert_eq!(record.config, cfg());
    let iterations: Vec<u64> = record.curve.iter().map(|p| p.iteration).collect();
    assert_eq!(iterations, [8, 16, 24]);
    assert_eq!(record.curve_images, 40);
    for p in &record.curve {
        for attack in ["fgsm", "pgd"] {
            for eps in [0.1, 0.25] {
                let e = p
                    .error_at(attack, eps)
                    .expect("every attack at every radius");
                // Images the model gets wrong clean count as errors under attack too.
                assert!((0.0..=100.0).contains(&e) && e >= p.clean_error_pct);
            }
        }
    }
    let model = std::fs::read(dir.join(MODEL_FILE)).unwrap();
    assert_eq!(sha256_hex(&model), record.model_sha256);
    let (net, meta) = load_model(&dir.join(MODEL_FILE)).unwrap();
    assert_eq!(meta.iterations, 24);
    assert_eq!(meta.extra["online.alpha"], "0.5");
    assert_eq!(meta.extra["online.random_start"], "true");
    let last = record.curve.last().unwrap();
    let again = advmnist::train::online::evaluate(
        &net,
        small().test.images.slice(ndarray::s![..40, .., .., ..]),
        &small().test.labels[..40],
        cfg().seed,
        24,
    );
    assert_eq!(*last, again, "the last point is the saved model's");
    let svg = std::fs::read_to_string(dir.join(FIGURE_FILE)).unwrap();
    assert!(svg.contains("FGSM eps 0.25") && svg.contains("PGD eps 0.1"));
}

#[test]
fn one_and_two_threads_write_the_same_bytes() {
    let dir = TempDir::new().unwrap();
    run(dir.path(), 1, &options(false, None)).unwrap();
    assert_same_files(reference(), dir.path(), "1 thread against 2");
}

#[test]
fn a_stopped_run_resumes_to_the_same_bytes() {
    // Stopped at 13: the loop checkpointed at 5 and 10, the stop at 13; the curve holds 8.
    let dir = TempDir::new().unwrap();
    let stopped = run(dir.path(), 2, &options(false, Some(13))).unwrap();
    assert!(matches!(stopped, OnlineOutcome::Stopped { iteration: 13 }));
    let earlier = run(dir.path(), 2, &options(false, None));
    assert!(
        matches!(earlier, Err(OnlineError::EarlierRun { .. })),
        "{earlier:?}"
    );
    run(dir.path(), 2, &options(true, None)).unwrap();
    assert_same_files(reference(), dir.path(), "resumed at 13");

    // The curve on disk runs past the checkpoint (a kill after an evaluation, before the next
    // checkpoint): the checkpoint at 10 with the curve at 8 and 16.
    let dir = TempDir::new().unwrap();
    run(dir.path(), 2, &options(false, Some(10))).unwrap();
    let at_10 = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
    run(dir.path(), 1, &options(true, Some(20))).unwrap();
    std::fs::write(dir.path().join(CHECKPOINT_FILE), at_10).unwrap();
    // Without the curve the checkpoint's iteration needs, the run refuses to go on.
    let progress = dir.path().join(PROGRESS_FILE);
    let aside = dir.path().join("aside.json");
    std::fs::rename(&progress, &aside).unwrap();
    match run(dir.path(), 2, &options(true, None)) {
        Err(OnlineError::Inconsistent { path, .. }) => assert_eq!(path, progress),
        other => panic!("resumed without its curve: {other:?}"),
    }
    std::fs::rename(&aside, &progress).unwrap();
    run(dir.path(), 2, &options(true, None)).unwrap();
    assert_same_files(
        reference(),
        dir.path(),
        "resumed at 10 with the curve at 16",
    );

    // A finished run is not trained again, and other settings are refused by flag.
    let again = run(dir.path(), 2, &options(true, None)).unwrap();
    assert!(matches!(again, OnlineOutcome::AlreadyDone(_)));
    let other = OnlineConfig {
        alpha: 0.3,
        ..cfg()
    };
    match run_online(&other, small(), dir.path(), &options(true, None), |_| {}) {
        Err(OnlineError::Mismatch { what, .. }) => assert_eq!(what, "--alpha"),
        other => panic!("{other:?}"),
    }
    let stopped = TempDir::new().unwrap();
    run(stopped.path(), 2, &options(false, Some(6))).unwrap();
    match run_online(
        &other,
        small(),
        stopped.path(),
        &options(true, None),
        |_| {},
    ) {
        Err(OnlineError::Checkpoint(CheckpointError::Mismatch { what, .. })) => {
            assert_eq!(what, "--alpha")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_random_start_the_examples_are_fgsm_of_the_current_weights() {
    let c = OnlineConfig {
        random_start: false,
        ..cfg()
    };
    let recipe = c.recipe(3);
    let (net, _) = load_model(&reference().join(MODEL_FILE)).unwrap();
    let (x, labels, mut rngs) = batch(c.seed, 5, c.batch);
    let examples = recipe.adversarial_examples(&net, x.view(), &labels, &mut rngs);
    let want = fgsm(&net, x.view(), &labels, c.eps);
    assert!(
        examples
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the examples differ from attacks::fgsm"
    );
    assert!(examples != x, "the examples moved");

    // The generic loop with the recipe, against the procedure by hand: at every iteration the
    // examples are FGSM of the weights of that iteration, the loss alpha J(x) + (1 - alpha)
    // J(x_adv), the update Caffe's.
    let data = small();
    let looped = train::run(
        &recipe,
        TrainingSet::of(data),
        TrainState::start(recipe.initial_net()),
        &TrainOptions::default(),
        None,
        &mut NoHook,
        |_| {},
    )
    .unwrap();
    let mut net = LeNet::xavier(&mut stream(c.seed, Purpose::Init, 0));
    let mut velocity = LeNet::zeros();
    for t in 0..3 {
        let (x, labels, _) = batch(c.seed, t, c.batch);
        let x_adv = fgsm(&net, x.view(), &labels, c.eps);
        let both = concatenate(Axis(0), &[x.view(), x_adv.view()]).unwrap();
        let b = c.batch as f32;
        let mut weights = vec![c.alpha / b; c.batch];
        weights.extend(vec![(1.0 - c.alpha) / b; c.batch]);
        let (_, grads) = net.weighted_loss_and_gradients(
            both.view(),
            &[labels.clone(), labels].concat(),
            &weights,
            None,
        );
        SgdMomentum::LENET.step(&mut net, &grads, &mut velocity, InvPolicy::LENET.rate(t));
    }
    assert_eq!(
        weight_bytes(&looped.net),
        weight_bytes(&net),
        "the loop's run differs from the procedure by hand"
    );
}

#[test]
fn the_random_starts_examples_stay_in_the_ball_and_come_from_the_images_streams() {
    let c = cfg();
    let recipe = c.recipe(c.iterations);
    let (net, _) = load_model(&reference().join(MODEL_FILE)).unwrap();
    let (x, labels, mut rngs) = batch(c.seed, 7, c.batch);
    let examples = recipe.adversarial_examples(&net, x.view(), &labels, &mut rngs);
    validate(x.view(), examples.view(), Some(c.eps)).expect("in [0, 1] and within eps");
    assert!(examples != fgsm(&net, x.view(), &labels, c.eps));
    // By hand: image j starts from its stream (seed, t B + j) of the iteration, then one PGD
    // step of 1.25 eps.
    let (_, _, mut rngs) = batch(c.seed, 7, c.batch);
    let mut start = x.clone();
    for (image, rng) in start.axis_iter_mut(Axis(0)).zip(rngs.iter_mut()) {
        pgd::uniform_start(image, c.eps, rng);
    }
    let by_hand = pgd::steps_from(&net, x.view(), &labels, start, c.eps, 1, 1.25 * c.eps);
    assert_eq!(examples, by_hand);
    // Another iteration's streams give other starts.
    let (_, _, mut other) = batch(c.seed, 8, c.batch);
    assert!(recipe.adversarial_examples(&net, x.view(), &labels, &mut other) != examples);
}

/// Plain training's weights after 20 iterations of `batch` images, and the on-line recipe's
/// with `alpha` and `random_start`.
fn plain_and_online(alpha: f32, random_start: bool) -> (Vec<u8>, Vec<u8>) {
    let data = small();
    let c = OnlineConfig {
        iterations: 20,
        alpha,
        random_start,
        ..cfg()
    };
    let plain = TrainConfig {
        iterations: 20,
        batch: c.batch,
        ..TrainConfig::lenet(DropoutRates::NONE, c.seed)
    };
    let trained = |recipe: &dyn Fn() -> TrainState| weight_bytes(&recipe().net);
    let plain = trained(&|| {
        train::run(
            &plain,
            TrainingSet::of(data),
            TrainState::start(plain.initial_net()),
            &TrainOptions::default(),
            None,
            &mut NoHook,
            |_| {},
        )
        .unwrap()
    });
    let recipe = c.recipe(c.iterations);
    let online = trained(&|| {
        train::run(
            &recipe,
            TrainingSet::of(data),
            TrainState::start(recipe.initial_net()),
            &TrainOptions::default(),
            None,
            &mut NoHook,
            |_| {},
        )
        .unwrap()
    });
    (plain, online)
}

#[test]
fn alpha_one_is_plain_training_to_the_bit_and_alpha_half_the_mean_of_both_batches() {
    // alpha = 1: the adversarial half weighs 0, so the weighted objective is plain training's
    // loss, and its weights are `advmnist train`'s (same initial weights, batches, updates).
    for random_start in [false, true] {
        let (plain, online) = plain_and_online(1.0, random_start);
        assert!(
            plain == online,
            "alpha 1 (random start {random_start}) differs from plain training"
        );
    }
    let (plain, online) = plain_and_online(0.5, true);
    assert!(plain != online, "alpha 0.5 trains on the examples");

    // alpha = 0.5: the weighted loss of [x; x_adv] is the plain mean over the 2B images, its
    // gradient bit for bit (every weight is 1 / 2B, the mean's scale).
    let c = cfg();
    let (net, _) = load_model(&reference().join(MODEL_FILE)).unwrap();
    let (x, labels, mut rngs) = batch(c.seed, 2, c.batch);
    let x_adv = c
        .recipe(1)
        .adversarial_examples(&net, x.view(), &labels, &mut rngs);
    let both = concatenate(Axis(0), &[x.view(), x_adv.view()]).unwrap();
    let both_labels = [labels.clone(), labels].concat();
    let (weighted_loss, weighted) = net.weighted_loss_and_gradients(
        both.view(),
        &both_labels,
        &c.recipe(1).weights(c.batch),
        None,
    );
    let mut no_rngs: Vec<ChaCha8Rng> = (0..2 * c.batch as u64)
        .map(|j| stream(0, Purpose::Dropout, j))
        .collect();
    let (mean_loss, mean) =
        net.loss_and_gradients(both.view(), &both_labels, &DropoutRates::NONE, &mut no_rngs);
    assert_eq!(weight_bytes(&weighted), weight_bytes(&mean));
    assert!(
        (weighted_loss - mean_loss).abs() <= 1e-6 * mean_loss.abs(),
        "{weighted_loss} vs {mean_loss}"
    );
}

#[test]
fn the_command_line_refuses_bad_values_and_the_other_modes_flags_by_name() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--mode", "online", "--alpha", "1.5"],
            "--alpha must be in [0, 1], got 1.5",
        ),
        (
            vec!["--mode", "online", "--alpha", "-0.1"],
            "--alpha must be in [0, 1]",
        ),
        (
            vec!["--mode", "online", "--alpha", "NaN"],
            "--alpha must be in [0, 1]",
        ),
        (
            vec!["--mode", "online", "--eps", "0"],
            "--eps must be in (0, 1], got 0",
        ),
        (
            vec!["--mode", "online", "--eps", "1.5"],
            "--eps must be in (0, 1]",
        ),
        (
            vec!["--mode", "online", "--iterations", "0"],
            "--iterations must be at least 1",
        ),
        (
            vec!["--mode", "online", "--iterations", "1000001"],
            "too large (at most 1000000)",
        ),
        (
            vec!["--mode", "online", "--stages", "3"],
            "--stages belongs to staged training",
        ),
        (
            vec!["--mode", "online", "--stage-iters", "3"],
            "--stage-iters belongs to staged",
        ),
        (
            vec!["--mode", "online", "--base-iters", "3"],
            "--base-iters belongs to staged",
        ),
        (
            vec!["--mode", "online", "--c", "0.1"],
            "--c belongs to staged training",
        ),
        (
            vec!["--alpha", "0.3"],
            "--alpha belongs to on-line training (--mode online)",
        ),
        (
            vec!["--mode", "staged", "--random-start"],
            "--random-start belongs to on-line",
        ),
        (
            vec!["--iterations", "100"],
            "--iterations belongs to on-line",
        ),
        (
            vec!["--eval-every", "100"],
            "--eval-every belongs to on-line",
        ),
        (
            vec!["--mode", "adversarial"],
            "invalid value 'adversarial' for '--mode",
        ),
    ] {
        let mut argv = vec!["advtrain", "--out", out];
        argv.extend(&args);
        let e = crate::common::err(&argv);
        assert!(e.contains(needle), "{argv:?}: {e}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing was written"
    );
    let help = String::from_utf8(crate::common::ok(&["advtrain", "--help"]).stdout).unwrap();
    for needle in [
        "--mode",
        "--alpha",
        "--random-start",
        "--iterations",
        "online.json",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn the_command_writes_the_set_and_resumes_a_finished_run_as_done() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let args = [
        "advtrain",
        "--mode",
        "online",
        "--out",
        o,
        "--iterations",
        "2",
    ];
    crate::common::ok(&[&args[..], &["--eval-every", "0"]].concat());
    let files = check_set(&out, SET_NAME).expect("a complete set");
    assert_eq!(files.len(), 3);
    for leftover in [CHECKPOINT_FILE, PROGRESS_FILE] {
        assert!(!out.join(leftover).exists(), "{leftover} left behind");
    }
    let record = read_record(&out.join(RECORD_FILE)).unwrap();
    assert_eq!(record.curve.len(), 1, "eval every 0: the end alone");
    assert_eq!((record.curve[0].iteration, record.curve_images), (2, 1000));
    assert_eq!((record.config.alpha, record.config.eps), (0.5, 0.25));
    assert!(!record.config.random_start);

    let again = crate::common::err(&[&args[..], &["--eval-every", "0"]].concat());
    assert!(again.contains("pass --resume"), "{again}");
    let done = crate::common::ok(&[&args[..], &["--eval-every", "0", "--resume"]].concat());
    assert!(String::from_utf8_lossy(&done.stderr).contains("nothing to do"));
    let other = crate::common::err(
        &[
            &args[..],
            &["--eval-every", "0", "--resume", "--alpha", "0.2"],
        ]
        .concat(),
    );
    assert!(
        other.contains("--alpha 0.5, but this run asks for 0.2"),
        "{other}"
    );
}
