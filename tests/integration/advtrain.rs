//! Staged adversarial training (`train::adversarial`): Eq. 3 on hand-worked pixels and on real
//! images recomputed one by one, the pool's growth and order (the whole procedure re-derived
//! from the generic training loop), bit-identical files across thread counts, exact resumption
//! inside a stage and at a stage boundary, hash checks of reused snapshots, the snapshot
//! metadata, the command line's refusals, and the declared ablation's variants (restart, newest
//! set only, a refreshed newest set), each re-derived by hand and resumed to the same bytes.
//!
//! Runs are small (a 512-image training set, stages of a few dozen iterations), so the file
//! stays well under a minute.

use advmnist::data::IMAGE_SIDE;
use advmnist::data::{default_data_dir, load_mnist, Dataset, Mnist};
use advmnist::models::file::{load_model, read_archive};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::Classifier;
use advmnist::train::adversarial::{
    adversarial_examples, images_sha256, run_adversarial, snapshot_file, AdvConfig, AdvError,
    AdvEvent, AdvOptions, AdvOutcome, AdvRecord, PoolComposition, Variant, CHECKPOINT_FILE,
    FRESH_FILE, RECORD_FILE,
};
use advmnist::train::{self, Recipe, TrainConfig, TrainOptions, TrainState, TrainingSet};
use ndarray::{concatenate, s, Array1, Array2, Array4, ArrayView2, ArrayView4, Axis};
use std::path::Path;
use std::sync::OnceLock;
use tempfile::TempDir;

/// 512 training images (two pieces of `ADVERSARIAL_CHUNK`) and 300 test images.
fn small() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let full = load_mnist(&default_data_dir()).expect("bundled MNIST loads");
        Mnist {
            train: full.train.subset(0..512),
            test: full.test.subset(0..300),
            sha256: full.sha256.clone(),
        }
    })
}

/// A natural model of 30 iterations, then 2 stages of 20.
fn cfg() -> AdvConfig {
    AdvConfig {
        seed: 3,
        base_iterations: 30,
        stages: 2,
        stage_iterations: 20,
        ..AdvConfig::default()
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn run(dir: &Path, threads: usize, options: &AdvOptions) -> Result<AdvOutcome, AdvError> {
    in_pool(threads, || {
        run_adversarial(&cfg(), small(), dir, options, |_| {})
    })
}

fn options(resume: bool, stop_after: Option<u64>) -> AdvOptions {
    AdvOptions {
        resume,
        checkpoint_every: 7,
        stop_after,
        ..AdvOptions::default()
    }
}

/// The uninterrupted run on 2 threads, made once and shared by the tests that compare with it.
fn reference() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let outcome = run(dir.path(), 2, &options(false, None)).unwrap();
        assert!(outcome.finished);
        assert_eq!(outcome.snapshots.len(), 3);
        dir
    })
    .path()
}

fn record(dir: &Path) -> AdvRecord {
    serde_json::from_str(&std::fs::read_to_string(dir.join(RECORD_FILE)).unwrap()).unwrap()
}

/// Every file a finished run leaves, as bytes, to compare two runs.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = (0..=cfg().stages).map(snapshot_file).collect();
    names.extend([RECORD_FILE.to_string(), CHECKPOINT_FILE.to_string()]);
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, bytes)
        })
        .collect()
}

fn assert_same_files(a: &Path, b: &Path, what: &str) {
    for ((name, x), (_, y)) in files(a).iter().zip(files(b)) {
        assert!(*x == y, "{what}: {name} differs");
    }
}

fn sha256(bytes: &[u8]) -> String {
    advmnist::hashing::sha256_hex(bytes)
}

/// A stand-in classifier with a gradient chosen by hand: `L(x) = -sum (b - x)^2 / 2`, so
/// `dL/dx = b - x` pixel by pixel.
struct KnownGradient {
    b: Array4<f32>,
}

impl Classifier for KnownGradient {
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        Array2::zeros((x.dim().0, 10))
    }
    fn input_gradient(&self, x: ArrayView4<f32>, _: &[u8]) -> (Array1<f32>, Array4<f32>) {
        let b = self.b.slice(s![..x.dim().0, .., .., ..]);
        (Array1::zeros(x.dim().0), &b - &x)
    }
    fn logits_vjp(&self, _: ArrayView4<f32>, _: ArrayView2<f32>) -> Array4<f32> {
        unimplemented!("not used by adversarial_examples")
    }
}

#[test]
fn eq3_hand_worked_clips_the_sign_step_before_the_gradient_step() {
    // eps 0.25, c 0.5, dL/dx = b - x. Pixel by pixel (x, b):
    //  p0 (0.0, 0.5):  g = 0.5 > 0 -> X_R = 0.25; g(X_R) = 0.25 -> 0.25 + 0.125 = 0.375
    //  p1 (0.9, 0.95): g = 0.05 > 0 -> X + R = 1.15, clipped X_R = 1; g(X_R) = -0.05
    //                  -> 1 - 0.025 = 0.975. (Unclipped, as Eq. 3 reads literally: g(1.15) = -0.2,
    //                  1.15 - 0.1 = 1.05 -> 1. The two readings differ here, and only where
    //                  X + R leaves [0, 1].)
    //  p2 (0.1, 0.0):  g = -0.1 < 0 -> X + R = -0.15, X_R = 0; g(X_R) = 0 -> 0
    //  p3 (0.5, 0.5):  g = 0, sign(0) = 0 -> X_R = 0.5; g(X_R) = 0 -> 0.5 (left alone)
    //  p4 (0.2, 3.0):  g = 2.8 > 0 -> X_R = 0.45; g(X_R) = 2.55 -> 0.45 + 1.275 = 1.725 -> clip 1
    //  every other pixel (0, 0): g = 0 -> 0
    let mut x = Array4::<f32>::zeros((1, 1, IMAGE_SIDE, IMAGE_SIDE));
    let mut b = Array4::<f32>::zeros((1, 1, IMAGE_SIDE, IMAGE_SIDE));
    for (i, (xi, bi)) in [(0.0, 0.5), (0.9, 0.95), (0.1, 0.0), (0.5, 0.5), (0.2, 3.0)]
        .into_iter()
        .enumerate()
    {
        x[[0, 0, 0, i]] = xi;
        b[[0, 0, 0, i]] = bi;
    }
    let out = adversarial_examples(&KnownGradient { b }, x.view(), &[0], 0.25, 0.5);
    let got: Vec<f32> = out.slice(s![0, 0, 0, ..5]).to_vec();
    let want = [0.375, 0.975, 0.0, 0.5, 1.0];
    // p1 carries f32 rounding of 0.95 - 1 (a few ulps); the others are exact.
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "pixel {i}: got {g}, want {w}; all: {got:?}"
        );
    }
    assert_eq!([got[0], got[2], got[3], got[4]], [0.375, 0.0, 0.5, 1.0]);
    assert!(
        out.slice(s![0, 0, 1.., ..]).iter().all(|&v| v == 0.0),
        "untouched pixels stay 0"
    );
}

/// `sign` with `sign(0) = 0`, written here again so the check below does not lean on the crate.
fn sign(g: f32) -> f32 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[test]
fn a_stage_adversarial_images_are_eq3_of_the_previous_snapshot_recomputed_image_by_image() {
    let dir = reference();
    let data = small();
    let rec = record(dir);
    let c = cfg();
    for k in 0..c.stages {
        let (net, _) = load_model(&dir.join(snapshot_file(k))).unwrap();
        let adv = adversarial_examples(
            &net,
            data.train.images.view(),
            &data.train.labels,
            c.eps,
            c.c,
        );
        assert_eq!(
            images_sha256(adv.view()),
            rec.adversarial_sets[k].sha256,
            "snapshot {k}'s set as the run made it"
        );
        assert!(
            adv.iter().all(|v| (0.0..=1.0).contains(v)),
            "clipped to [0, 1]"
        );
        assert!(adv != data.train.images, "the images moved");
        // A few images, each on its own through the snapshot's input gradient.
        for i in [0, 255, 256, 511] {
            let x = data.train.images.slice(s![i..i + 1, .., .., ..]);
            let y = &data.train.labels[i..i + 1];
            let (_, g0) = net.input_gradient(x, y);
            let x_r = ndarray::Zip::from(&x)
                .and(&g0)
                .map_collect(|&x, &g| (x + c.eps * sign(g)).clamp(0.0, 1.0));
            let (_, g1) = net.input_gradient(x_r.view(), y);
            let want = ndarray::Zip::from(&x_r)
                .and(&g1)
                .map_collect(|&x, &g| (x + c.c * g).clamp(0.0, 1.0));
            let got = adv.slice(s![i..i + 1, .., .., ..]);
            let bad: Vec<_> = got
                .iter()
                .zip(want.iter())
                .filter(|(a, b)| a != b)
                .take(3)
                .collect();
            assert!(
                bad.is_empty(),
                "snapshot {k}, image {i}: (got, want) {bad:?}"
            );
        }
    }
}

#[test]
fn the_pool_grows_as_specified_and_the_run_equals_the_procedure_done_by_hand() {
    let dir = reference();
    let data = small();
    let c = cfg();
    let rec = record(dir);
    let n = data.train.len();
    // Composition: snapshot k trained on the natural set and the sets of snapshots 0..k-1.
    assert_eq!(rec.snapshots.len(), c.stages + 1);
    assert_eq!(rec.adversarial_sets.len(), c.stages);
    for (k, s) in rec.snapshots.iter().enumerate() {
        assert_eq!(s.pool.natural, n);
        let from: Vec<usize> = s.pool.adversarial.iter().map(|a| a.from_snapshot).collect();
        assert_eq!(from, (0..k).collect::<Vec<_>>(), "snapshot {k}'s pool");
        assert!(s.pool.adversarial.iter().all(|a| a.images == n));
        assert_eq!(s.pool.adversarial, rec.adversarial_sets[..k]);
        assert_eq!(s.pool.images(), (k + 1) * n);
        assert_eq!(
            s.iterations,
            c.base_iterations + k as u64 * c.stage_iterations
        );
        let bytes = std::fs::read(dir.join(&s.path)).unwrap();
        assert_eq!(sha256(&bytes), s.sha256, "{}", s.path);
    }
    assert_eq!(
        rec.base_model_sha256.as_deref(),
        Some(rec.snapshots[0].sha256.as_str())
    );

    // The procedure by hand with the generic loop: Caffe's recipe on the natural set, then
    // each stage on natural ++ adv(snapshot 0) ++ ... ++ adv(snapshot k-1), the learning rate
    // and the momentum running on.
    let recipe = |iterations| TrainConfig {
        iterations,
        ..TrainConfig::lenet(DropoutRates::NONE, c.seed)
    };
    let mut pool = data.train.clone();
    let mut state = TrainState::start(LeNet::xavier(&mut advmnist::rng::stream(
        c.seed,
        advmnist::rng::Purpose::Init,
        0,
    )));
    for k in 0..=c.stages {
        if k > 0 {
            let adv = adversarial_examples(
                &state.net,
                data.train.images.view(),
                &data.train.labels,
                c.eps,
                c.c,
            );
            pool = Dataset {
                images: concatenate![Axis(0), pool.images, adv],
                labels: [pool.labels.clone(), data.train.labels.clone()].concat(),
            };
        }
        assert_eq!(pool.len(), (k + 1) * n);
        let set = TrainingSet {
            data: &pool,
            sha256: &data.sha256,
        };
        state = train::run(
            &recipe(c.stage_end(k)),
            set,
            state,
            &TrainOptions::default(),
            None,
            &mut train::NoHook,
            |_| {},
        )
        .unwrap();
        let (file_net, meta) = load_model(&dir.join(snapshot_file(k))).unwrap();
        assert!(
            file_net == state.net,
            "snapshot {k} differs from the procedure done by hand"
        );
        assert_eq!(meta.iterations, state.iteration);
    }
}

#[test]
fn snapshots_carry_their_provenance_in_the_metadata() {
    let dir = reference();
    let rec = record(dir);
    let c = cfg();
    for (k, s) in rec.snapshots.iter().enumerate() {
        let meta = read_archive(&dir.join(&s.path)).unwrap().metadata;
        let get = |key: &str| {
            meta.get(&format!("advtrain.{key}"))
                .unwrap_or_else(|| panic!("{}: no advtrain.{key}", s.path))
                .clone()
        };
        assert_eq!(get("stage"), k.to_string());
        assert_eq!(get("eps"), c.eps.to_string());
        assert_eq!(get("c"), c.c.to_string());
        let pool: PoolComposition = serde_json::from_str(&get("pool")).unwrap();
        assert_eq!(pool, s.pool);
        if k > 0 {
            assert_eq!(get("base_model_sha256"), rec.snapshots[0].sha256);
            assert_eq!(get("previous_snapshot_sha256"), rec.snapshots[k - 1].sha256);
        } else {
            assert!(get("base_model_sha256").starts_with("self"));
        }
        assert!(get("formula").contains("clip"));
        assert_eq!(meta["seed"], c.seed.to_string());
        assert_eq!(meta["iterations"], s.iterations.to_string());
        assert_eq!(
            meta["format"], "advmnist-lenet",
            "a snapshot loads as a LeNet model file"
        );
    }
}

#[test]
fn one_and_two_threads_write_the_same_bytes() {
    let dir = TempDir::new().unwrap();
    let outcome = run(dir.path(), 1, &options(false, None)).unwrap();
    assert!(outcome.finished);
    assert_same_files(dir.path(), reference(), "1 thread against 2");
}

#[test]
fn a_stopped_run_resumes_inside_a_stage_and_at_a_boundary_to_the_same_bytes() {
    let c = cfg();
    // Inside stage 1 (iteration 40 of 30..50), then inside stage 2 (60 of 50..70): the second
    // resume makes the pool of two sets again from the snapshots and checks their hashes.
    let dir = TempDir::new().unwrap();
    let first = run(dir.path(), 2, &options(false, Some(40))).unwrap();
    assert!(!first.finished);
    assert_eq!(first.snapshots.len(), 1);
    let mut events = Vec::new();
    let second = in_pool(2, || {
        run_adversarial(&c, small(), dir.path(), &options(true, Some(60)), |e| {
            events.push(e)
        })
    })
    .unwrap();
    assert_eq!(
        (second.finished, second.snapshots.len(), second.reused),
        (false, 2, 1)
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, AdvEvent::SnapshotReused { stage: 0, .. })));
    assert!(
        events.iter().any(|e| matches!(
            e,
            AdvEvent::Training {
                stage: 1,
                from: 40,
                ..
            }
        )),
        "stage 1 continued at iteration 40, not from its start"
    );
    let third = run(dir.path(), 1, &options(true, None)).unwrap();
    assert_eq!((third.finished, third.reused), (true, 2));
    assert_same_files(dir.path(), reference(), "resumed inside stages");

    // At the end of stage 1: snapshot 1 written, the next set not made yet.
    let dir = TempDir::new().unwrap();
    let stopped = run(dir.path(), 2, &options(false, Some(c.stage_end(1)))).unwrap();
    assert_eq!((stopped.finished, stopped.snapshots.len()), (false, 2));
    run(dir.path(), 2, &options(true, None)).unwrap();
    assert_same_files(dir.path(), reference(), "resumed at a stage boundary");

    // A finished run resumed again only checks its snapshots.
    let again = run(dir.path(), 2, &options(true, None)).unwrap();
    assert_eq!((again.finished, again.reused), (true, 3));
}

#[test]
fn reused_snapshots_are_checked_and_earlier_runs_are_not_overwritten() {
    let dir = TempDir::new().unwrap();
    run(dir.path(), 2, &options(false, Some(40))).unwrap();
    // Without --resume the folder is refused, naming it.
    let e = run(dir.path(), 2, &options(false, None)).unwrap_err();
    assert!(matches!(e, AdvError::EarlierRun { .. }), "{e}");
    assert!(e.to_string().contains("--resume"), "{e}");
    // A snapshot changed after it was recorded is not reused.
    let path = dir.path().join(snapshot_file(0));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = run(dir.path(), 2, &options(true, None)).unwrap_err();
    assert!(
        matches!(e, AdvError::SnapshotChanged { .. })
            && e.to_string().contains("snapshot-0.safetensors"),
        "{e}"
    );
    // Other settings are refused by flag.
    let e = in_pool(2, || {
        let other = AdvConfig { eps: 0.1, ..cfg() };
        run_adversarial(&other, small(), dir.path(), &options(true, None), |_| {})
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("--eps") && e.to_string().contains(RECORD_FILE),
        "{e}"
    );
}

#[test]
fn settings_are_checked_by_flag() {
    for (cfg, flag) in [
        (AdvConfig { eps: 0.0, ..cfg() }, "--eps"),
        (AdvConfig { eps: 1.5, ..cfg() }, "--eps"),
        (AdvConfig { c: -1.0, ..cfg() }, "--c"),
        (
            AdvConfig {
                c: f32::NAN,
                ..cfg()
            },
            "--c",
        ),
        (
            AdvConfig {
                stage_iterations: 0,
                ..cfg()
            },
            "--stage-iters",
        ),
        (
            AdvConfig {
                base_iterations: 0,
                ..cfg()
            },
            "--base-iters",
        ),
    ] {
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().starts_with(flag), "{e}");
    }
    assert!(AdvConfig::default().validate().is_ok());
    // The default's memory figure, as the docs and --help state it: 6 x 60,000 images.
    assert_eq!(AdvConfig::default().pool_bytes(5, 60_000), 1_128_960_000);
}

#[test]
fn the_command_line_explains_and_refuses_bad_flags_before_any_work() {
    let bin = env!("CARGO_BIN_EXE_advmnist");
    let out = std::process::Command::new(bin)
        .args(["advtrain", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--stages",
        "--stage-iters",
        "--base-iters",
        "--eps",
        "--c",
        "--resume",
        "1.13 GB",
        "snapshot-0.safetensors",
        "advtrain.json",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for (args, needle) in [
        (
            vec!["--out", dir.path().to_str().unwrap(), "--eps", "0"],
            "--eps",
        ),
        (
            vec!["--out", dir.path().to_str().unwrap(), "--c", "-2"],
            "--c",
        ),
        (vec!["--out", file.to_str().unwrap()], "is a file"),
    ] {
        let out = std::process::Command::new(bin)
            .arg("advtrain")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    assert!(
        !dir.path().join(RECORD_FILE).exists(),
        "nothing was written"
    );
}

/// The declared ablation's variants of `cfg()`: restart, newest only, and the newest set made
/// again every 8 iterations (segments of 8, 8 and 4 in each 20-iteration stage).
fn variant_cfg(variant: Variant) -> AdvConfig {
    AdvConfig { variant, ..cfg() }
}

fn restart() -> Variant {
    Variant {
        restart: true,
        ..Variant::default()
    }
}

fn newest() -> Variant {
    Variant {
        newest_only: true,
        ..Variant::default()
    }
}

fn fresh(every: u64) -> Variant {
    Variant {
        refresh_every: every,
        ..Variant::default()
    }
}

/// Caffe's LeNet recipe with the `inv` rate restarted at global iteration `start`: the
/// `restart` variant's stage written out by hand.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Restarted {
    lenet: TrainConfig,
    start: u64,
}

impl Recipe for Restarted {
    type Net = LeNet<f32>;
    fn iterations(&self) -> u64 {
        self.lenet.iterations
    }
    fn seed(&self) -> u64 {
        self.lenet.seed
    }
    fn batch(&self) -> usize {
        self.lenet.batch
    }
    fn initial_net(&self) -> LeNet<f32> {
        self.lenet.initial_net()
    }
    fn loss_and_gradients(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [rand_chacha::ChaCha8Rng],
    ) -> (f32, LeNet<f32>) {
        self.lenet.loss_and_gradients(net, x, labels, rngs)
    }
    fn update(
        &self,
        net: &mut LeNet<f32>,
        grads: &LeNet<f32>,
        velocity: &mut LeNet<f32>,
        t: u64,
    ) -> f64 {
        self.lenet.update(net, grads, velocity, t - self.start)
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        self.lenet.settings()
    }
}

/// The staged procedure with `c.variant`, written out with the generic loop and
/// `adversarial_examples`: the networks at the end of each stage.
fn variant_by_hand(c: &AdvConfig) -> Vec<LeNet<f32>> {
    let data = small();
    let natural = &data.train;
    let adv = |net: &LeNet<f32>| {
        adversarial_examples(net, natural.images.view(), &natural.labels, c.eps, c.c)
    };
    let pool_of = |sets: &[Array4<f32>]| {
        let mut images = natural.images.clone();
        let mut labels = natural.labels.clone();
        for set in sets {
            images = concatenate![Axis(0), images, *set];
            labels.extend_from_slice(&natural.labels);
        }
        Dataset { images, labels }
    };
    let recipe = |iterations| TrainConfig {
        iterations,
        ..TrainConfig::lenet(DropoutRates::NONE, c.seed)
    };
    let train_to = |pool: &Dataset, state: TrainState, until: u64, start: Option<u64>| {
        let set = TrainingSet {
            data: pool,
            sha256: &data.sha256,
        };
        let (options, mut hook) = (TrainOptions::default(), train::NoHook);
        match start {
            Some(start) => train::run(
                &Restarted {
                    lenet: recipe(until),
                    start,
                },
                set,
                state,
                &options,
                None,
                &mut hook,
                |_| {},
            ),
            None => train::run(
                &recipe(until),
                set,
                state,
                &options,
                None,
                &mut hook,
                |_| {},
            ),
        }
        .unwrap()
    };
    let mut state = TrainState::start(LeNet::xavier(&mut advmnist::rng::stream(
        c.seed,
        advmnist::rng::Purpose::Init,
        0,
    )));
    let mut sets: Vec<Array4<f32>> = Vec::new();
    let mut nets = Vec::new();
    for k in 0..=c.stages {
        let (start, end) = (c.stage_start(k), c.stage_end(k));
        let v = &c.variant;
        if k > 0 {
            if v.newest_only {
                sets.clear();
            }
            sets.push(adv(&state.net));
        }
        let restart_at = (v.restart && k > 0).then_some(start);
        if restart_at.is_some() {
            state.velocity = LeNet::zeros();
        }
        if k > 0 && v.refresh_every > 0 {
            let made_by_snapshot = sets.last().unwrap().clone();
            let mut segment = start;
            while segment < end {
                if segment > start {
                    *sets.last_mut().unwrap() = adv(&state.net);
                }
                let stop = (segment + v.refresh_every).min(end);
                state = train_to(&pool_of(&sets), state, stop, restart_at);
                segment = stop;
            }
            *sets.last_mut().unwrap() = made_by_snapshot;
        } else {
            state = train_to(&pool_of(&sets), state, end, restart_at);
        }
        nets.push(state.net.clone());
    }
    nets
}

#[test]
fn each_variant_of_the_ablation_equals_its_procedure_done_by_hand() {
    for variant in [restart(), newest(), fresh(8)] {
        let c = variant_cfg(variant.clone());
        let dir = TempDir::new().unwrap();
        let outcome = in_pool(2, || {
            run_adversarial(&c, small(), dir.path(), &options(false, None), |_| {})
        })
        .unwrap();
        assert!(outcome.finished);
        let hand = variant_by_hand(&c);
        let rec = record(dir.path());
        assert_eq!(rec.config.variant, variant);
        for (k, net) in hand.iter().enumerate() {
            let (file_net, _) = load_model(&dir.path().join(snapshot_file(k))).unwrap();
            assert!(
                file_net == *net,
                "{}: snapshot {k} differs from the procedure done by hand",
                variant.name()
            );
            let from: Vec<usize> = rec.snapshots[k]
                .pool
                .adversarial
                .iter()
                .map(|a| a.from_snapshot)
                .collect();
            let wanted: Vec<usize> = if variant.newest_only {
                k.checked_sub(1).into_iter().collect()
            } else {
                (0..k).collect()
            };
            assert_eq!(from, wanted, "{}: snapshot {k}'s pool", variant.name());
        }
        assert!(
            !dir.path().join(FRESH_FILE).exists(),
            "{}: the refresh's weights are removed at the stage's end",
            variant.name()
        );
        // Every variant changes the result from stage 1 on, none before it.
        let (study_0, _) = load_model(&reference().join(snapshot_file(0))).unwrap();
        let (study_2, _) = load_model(&reference().join(snapshot_file(2))).unwrap();
        assert!(
            hand[0] == study_0 && hand[2] != study_2,
            "{}",
            variant.name()
        );
    }
}

#[test]
fn a_refresh_as_long_as_the_stage_is_the_study_s_procedure() {
    let c = variant_cfg(fresh(cfg().stage_iterations));
    for (k, net) in variant_by_hand(&c).iter().enumerate() {
        let (study, _) = load_model(&reference().join(snapshot_file(k))).unwrap();
        assert!(*net == study, "snapshot {k}");
    }
    // And the run itself, the variant named in its files: the same weights.
    let dir = TempDir::new().unwrap();
    in_pool(1, || {
        run_adversarial(&c, small(), dir.path(), &options(false, None), |_| {})
    })
    .unwrap();
    for k in 0..=c.stages {
        let (run, meta) = load_model(&dir.path().join(snapshot_file(k))).unwrap();
        let (study, _) = load_model(&reference().join(snapshot_file(k))).unwrap();
        assert!(run == study, "snapshot {k}");
        assert_eq!(
            meta.extra.get("advtrain.variant").map(String::as_str),
            Some("fresh20")
        );
    }
}

#[test]
fn the_variants_resume_inside_a_stage_to_the_same_bytes() {
    // Stopped at iteration 43, inside stage 1's second segment (38..46): the resumed run makes
    // the newest set again from the weights kept at 38; then inside stage 2 and at its start.
    for (variant, stops) in [
        (fresh(8), vec![43, 50, 61]),
        (restart(), vec![40, 50]),
        (newest(), vec![50, 60]),
    ] {
        let c = variant_cfg(variant.clone());
        let whole = TempDir::new().unwrap();
        in_pool(2, || {
            run_adversarial(&c, small(), whole.path(), &options(false, None), |_| {})
        })
        .unwrap();
        let dir = TempDir::new().unwrap();
        for (i, stop) in stops.iter().enumerate() {
            let outcome = in_pool(1 + i % 2, || {
                run_adversarial(
                    &c,
                    small(),
                    dir.path(),
                    &options(i > 0, Some(*stop)),
                    |_| {},
                )
            })
            .unwrap();
            assert!(!outcome.finished, "{}: stopped at {stop}", variant.name());
        }
        in_pool(1, || {
            run_adversarial(&c, small(), dir.path(), &options(true, None), |_| {})
        })
        .unwrap();
        for name in (0..=c.stages)
            .map(snapshot_file)
            .chain([RECORD_FILE.to_string()])
        {
            let (a, b) = (
                std::fs::read(whole.path().join(&name)).unwrap(),
                std::fs::read(dir.path().join(&name)).unwrap(),
            );
            assert!(a == b, "{}: {name} differs after resuming", variant.name());
        }
    }
}

#[test]
fn a_resumed_refresh_without_its_weights_is_refused_by_name() {
    let c = variant_cfg(fresh(8));
    let dir = TempDir::new().unwrap();
    in_pool(2, || {
        run_adversarial(&c, small(), dir.path(), &options(false, Some(43)), |_| {})
    })
    .unwrap();
    std::fs::remove_file(dir.path().join(FRESH_FILE)).unwrap();
    let err = in_pool(2, || {
        run_adversarial(&c, small(), dir.path(), &options(true, None), |_| {})
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(FRESH_FILE) && err.contains("iteration 38"),
        "{err}"
    );
    // Another variant's run in the folder is refused, naming the setting.
    let err = in_pool(2, || {
        run_adversarial(
            &variant_cfg(newest()),
            small(),
            dir.path(),
            &options(true, None),
            |_| {},
        )
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the variant") && err.contains("fresh8"),
        "{err}"
    );
}
