//! Staged adversarial training (`train::adversarial`): Eq. 3 on hand-worked pixels and on real
//! images recomputed one by one, the pool's growth and order (the whole procedure re-derived
//! from the generic training loop), bit-identical files across thread counts, exact resumption
//! inside a stage and at a stage boundary, hash checks of reused snapshots, the snapshot
//! metadata, and the command line's refusals.
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
    AdvEvent, AdvOptions, AdvOutcome, AdvRecord, PoolComposition, CHECKPOINT_FILE, RECORD_FILE,
};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState, TrainingSet};
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
