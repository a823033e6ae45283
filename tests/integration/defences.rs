//! The study's preprocessing defences (low-pass filter, denoising autoencoder) as pipelines in
//! front of LeNet: their whole-pipeline input gradient, how they are attacked, their model files,
//! and the generic training loop that trains the autoencoder.

use crate::common::advmnist;
use advmnist::attacks::Noise;
use advmnist::data::{default_data_dir, load_mnist, Dataset, Mnist};
use advmnist::defences::lowpass::LowPassFilter;
use advmnist::experiments::sweep::{self, NamedModel, SweepConfig};
use advmnist::models::file::{load_model, load_network, save_model, ModelFileError, ModelMeta};
use advmnist::models::pipeline::{AttackThrough, Pipeline, Stage};
use advmnist::models::{Autoencoder, Classifier, DropoutRates, LeNet};
use advmnist::rng::{stream, Purpose};
use advmnist::train::dae::DaeConfig;
use advmnist::train::{self, BatchHook, TrainConfig, TrainOptions, TrainState, TrainingSet};
use ndarray::{s, Array4};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tempfile::TempDir;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| load_mnist(&default_data_dir()).expect("bundled MNIST loads"))
}

/// A LeNet trained for 400 iterations (about 2% test error), as tests/integration/attacks.rs uses.
fn lenet() -> &'static LeNet<f32> {
    static NET: OnceLock<LeNet<f32>> = OnceLock::new();
    NET.get_or_init(|| {
        let cfg = TrainConfig {
            iterations: 400,
            ..TrainConfig::lenet(DropoutRates::NONE, 1)
        };
        train::train(
            &cfg,
            mnist(),
            TrainState::new(1),
            &TrainOptions::default(),
            |_| {},
        )
        .unwrap()
        .net
    })
}

fn test_images(n: usize) -> Dataset {
    mnist().test.subset(0..n)
}

#[test]
fn whole_pipeline_input_gradient_matches_central_differences() {
    // lowpass:5 -> autoencoder (random weights uniform in +-sqrt(6 / fan_in), so its logistic
    // units are neither saturated nor flat and the reconstruction depends strongly on the
    // input) -> LeNet (xavier weights times 3, so its logits spread and the loss's gradient is
    // far above f32's noise floor).
    // The pipeline is f32 throughout, so the check is of directional derivatives
    // d/dt L(x + t v) by central differences along random directions v, with t = 4e-2: measured
    // on these images, the f32 rounding of the loss makes the quotient wander by ~1e-3 at
    // t = 1e-2 and below (t = 1e-3 even flipped signs), while at t = 4e-2 it agreed with the
    // analytic value to 0.2%. Each quotient is also taken at t/2; where the two disagree by more
    // than the tolerance (3% plus 1e-3 absolute: quotients of one pair were seen to differ by
    // 5e-4 from rounding alone) the pair is
    // skipped. A wrong chain rule (a dropped stage, a missing transpose) changes the value by
    // O(1) on every pair.
    let mut dae = Autoencoder::<f32>::zeros();
    for (l, layer) in dae.layers.iter_mut().enumerate() {
        let a = (6.0 / layer.weight.ncols() as f32).sqrt();
        layer.weight = advmnist::testutil::random_array(layer.weight.raw_dim(), 50 + l as u64)
            .mapv(|w: f32| a * w);
    }
    let mut net = LeNet::<f32>::xavier(&mut stream(6, Purpose::Init, 0));
    for mut p in net.parameters_mut() {
        p.data.mapv_inplace(|w| 3.0 * w);
    }
    let stages = vec![
        Stage::LowPass(LowPassFilter::study(5, 0.0, 1).unwrap()),
        Stage::Autoencoder {
            name: "random".into(),
            net: Box::new(dae),
        },
    ];
    let pipeline = Pipeline::new(stages, &net, AttackThrough::Pipeline);
    let data = test_images(3);
    let (_, grad) = pipeline.input_gradient(data.images.view(), &data.labels);
    let loss = |x: &Array4<f32>| pipeline.input_gradient(x.view(), &data.labels).0;
    let t = 4e-2f32;
    let quotient = |v: &Array4<f32>, t: f32| {
        let plus = loss(&(&data.images + &(v * t)));
        let minus = loss(&(&data.images - &(v * t)));
        (plus - minus) / (2.0 * t)
    };
    let (mut checked, mut largest) = (0, 0.0f32);
    for k in 0..6u64 {
        let v = advmnist::attacks::gaussian::standard_normal_like(data.images.view(), 100 + k);
        let (coarse, fine) = (quotient(&v, t), quotient(&v, t / 2.0));
        for n in 0..3 {
            // A pair whose two quotients disagree crossed a kink or sits in rounding noise:
            // no finite difference can judge it, so it is skipped (and counted).
            if (coarse[n] - fine[n]).abs() > 0.03 * coarse[n].abs() + 1e-3 {
                continue;
            }
            let analytic = (&grad.slice(s![n, .., .., ..]) * &v.slice(s![n, .., .., ..])).sum();
            assert!(
                (analytic - coarse[n]).abs() <= 0.03 * coarse[n].abs() + 1e-3,
                "image {n}, direction {k}: analytic {analytic}, numeric {} (t) and {} (t/2)",
                coarse[n],
                fine[n]
            );
            checked += 1;
            largest = largest.max(coarse[n].abs());
        }
    }
    // The check means something only if enough pairs were judged, with derivatives well above
    // f32's noise floor.
    assert!(
        checked >= 9,
        "only {checked} of 18 pairs were smooth enough to check"
    );
    assert!(largest > 1e-2, "largest directional derivative {largest}");
    eprintln!("{checked} of 18 pairs checked, largest directional derivative {largest}");
    // The study's setting ignores the stages: it is the bare classifier's gradient.
    let study = Pipeline::new(pipeline.stages.clone(), &net, AttackThrough::Classifier);
    assert_eq!(
        study.input_gradient(data.images.view(), &data.labels).1,
        net.input_gradient(data.images.view(), &data.labels).1
    );
}

#[test]
fn attacking_through_the_pipeline_is_at_least_as_strong_at_every_eps() {
    let test = test_images(1000);
    for spec in ["lowpass:5", "lowpass:3,noise=0.1"] {
        let stage = Stage::parse(spec, 1).unwrap();
        let errors = |through| {
            let p = Pipeline::new(vec![stage.clone()], lenet(), through);
            let models = [NamedModel {
                name: spec.into(),
                model: &p,
            }];
            let cfg = SweepConfig {
                noise: Noise::Fgsm,
                levels: sweep::levels(5, 0.2),
                seed: 1,
                at: vec![],
            };
            sweep::sweep(&models, None, &test, &cfg, |_, _| {})
                .unwrap()
                .rows
                .iter()
                .map(|r| r.error_pct)
                .collect::<Vec<f64>>()
        };
        let study = errors(AttackThrough::Classifier);
        let whitebox = errors(AttackThrough::Pipeline);
        assert_eq!(
            study[0], whitebox[0],
            "{spec}: eps 0 is the clean error either way"
        );
        for (i, (s, w)) in study.iter().zip(&whitebox).enumerate() {
            assert!(
                w >= s,
                "{spec} at level {i}: white-box error {w}% below the study's setting's {s}%"
            );
        }
        assert!(
            whitebox[4] > study[4],
            "{spec}: the white-box attack should be strictly stronger at eps 0.2 ({whitebox:?} vs {study:?})"
        );
    }
}

#[test]
fn stage_specs_parse_and_bad_ones_are_named() {
    assert_eq!(
        Stage::parse("lowpass:7", 1).unwrap().describe(),
        "lowpass:7"
    );
    assert_eq!(
        Stage::parse("lowpass:5,noise", 1).unwrap().describe(),
        "lowpass:5,noise=0.1"
    );
    assert_eq!(
        Stage::parse("lowpass:3,noise=0.25", 1).unwrap().describe(),
        "lowpass:3,noise=0.25"
    );
    for (bad, says) in [
        ("lowpass:4", "3, 5 and 7"),
        ("lowpass:x", "3, 5 or 7"),
        ("lowpass:5,noise=abc", "not a number"),
        ("lowpass:5,noise=-1", "[0, 1]"),
        ("lowpass:5,blur=2", "unknown option"),
        ("median:3", "lowpass:S"),
        (
            "dae:/nonexistent/dae.safetensors",
            "/nonexistent/dae.safetensors",
        ),
    ] {
        let e = Stage::parse(bad, 1).unwrap_err();
        assert!(e.contains(bad) && e.contains(says), "{bad}: {e}");
    }
}

fn meta() -> ModelMeta {
    ModelMeta {
        dropout: DropoutRates::INP,
        seed: 4,
        iterations: 9,
        data_sha256: "abc".into(),
        extra: BTreeMap::new(),
    }
}

#[test]
fn files_of_each_kind_round_trip_and_the_wrong_kind_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let dae_path = dir.path().join("dae.safetensors");
    let lenet_path = dir.path().join("lenet.safetensors");
    let dae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(2, Purpose::Init, 0));
    let net = LeNet::<f32>::xavier(&mut stream(2, Purpose::Init, 0));
    save_model(&dae_path, &dae, &meta()).unwrap();
    save_model(&lenet_path, &net, &meta()).unwrap();
    let (back, m) = load_network::<Autoencoder>(&dae_path).unwrap();
    assert_eq!(back, dae);
    assert_eq!(m, meta());
    assert_eq!(load_model(&lenet_path).unwrap().0, net);

    let e = load_model(&dae_path).unwrap_err();
    assert!(matches!(e, ModelFileError::WrongKind { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("dae.safetensors")
            && text.contains("denoising autoencoder")
            && text.contains("a LeNet is expected"),
        "{text}"
    );
    let e = load_network::<Autoencoder>(&lenet_path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds a LeNet") && e.contains("a denoising autoencoder is expected"),
        "{e}"
    );
    let e = Stage::parse(&format!("dae:{}", lenet_path.display()), 1).unwrap_err();
    assert!(e.contains("holds a LeNet"), "{e}");
}

fn dae_cfg(iterations: u64) -> DaeConfig {
    DaeConfig {
        iterations,
        ..DaeConfig::new(3)
    }
}

fn run_dae(cfg: &DaeConfig, threads: usize, options: &TrainOptions) -> TrainState<Autoencoder> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        train::run(
            cfg,
            TrainingSet::of(mnist()),
            TrainState::start(train::Recipe::initial_net(cfg)),
            options,
            None,
            &mut train::NoHook,
            |_| {},
        )
        .unwrap()
    })
}

#[test]
fn autoencoder_training_is_bit_identical_across_threads_and_resumes_exactly() {
    let dir = TempDir::new().unwrap();
    let ckpt = dir.path().join("dae.ckpt");
    let cfg = dae_cfg(8);
    let options = TrainOptions {
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: 5,
        eval_every: 0,
    };
    let one = run_dae(&cfg, 1, &TrainOptions::default());
    let three = run_dae(&cfg, 3, &options);
    assert_eq!(
        one, three,
        "weights or momentum differ between 1 and 3 threads"
    );
    assert_ne!(
        one.net,
        train::Recipe::initial_net(&cfg),
        "training changed the weights"
    );
    let (state, _) = train::starting_state(&cfg, &mnist().sha256, Some(&ckpt), true).unwrap();
    assert_eq!(state.iteration, 5);
    let resumed = train::run(
        &cfg,
        TrainingSet::of(mnist()),
        state,
        &TrainOptions::default(),
        None,
        &mut train::NoHook,
        |_| {},
    )
    .unwrap();
    assert_eq!(resumed, one);
    // A LeNet run refuses the autoencoder's checkpoint by name.
    let lenet_cfg = TrainConfig::lenet(DropoutRates::NONE, 3);
    let e = train::starting_state(&lenet_cfg, &mnist().sha256, Some(&ckpt), true).unwrap_err();
    assert!(e.to_string().contains("denoising autoencoder"), "{e}");
}

#[test]
fn autoencoder_learns_to_reconstruct() {
    // 150 iterations from Caffe's sparse init: the test loss must fall below half the loss of
    // the initial weights (`advmnist dae train --iters 150 --seed 3` measured 188 nats per image
    // on the whole test set; one iteration from seed 1 leaves it at 286).
    let cfg = dae_cfg(150);
    let before =
        train::Recipe::initial_net(&cfg).reconstruction_loss(test_images(500).images.view());
    let after = run_dae(&cfg, 2, &TrainOptions::default())
        .net
        .reconstruction_loss(test_images(500).images.view());
    assert!(after < 0.5 * before, "loss {before} -> {after}");
}

/// A hook that adds a constant to every pixel of a batch and counts the batches it saw: its
/// count is its state, which a checkpoint must carry.
struct Brighten {
    batches: u64,
}

impl BatchHook<LeNet<f32>> for Brighten {
    fn transform(&mut self, _: &LeNet<f32>, _: u64, x: &mut Array4<f32>, _: &mut [u8]) {
        self.batches += 1;
        x.mapv_inplace(|v| (v + 0.1 * (self.batches % 3) as f32).min(1.0));
    }
    fn state(&self) -> BTreeMap<String, String> {
        [("batches".to_string(), self.batches.to_string())].into()
    }
    fn restore(&mut self, state: &BTreeMap<String, String>) -> Result<(), String> {
        self.batches = match state.get("batches") {
            Some(v) => v.parse().map_err(|_| format!("batches '{v}'"))?,
            None => 0,
        };
        Ok(())
    }
}

#[test]
fn a_batch_hook_changes_training_and_its_state_survives_a_resume() {
    let dir = TempDir::new().unwrap();
    let ckpt = dir.path().join("hook.ckpt");
    let cfg = TrainConfig {
        iterations: 9,
        ..TrainConfig::lenet(DropoutRates::NONE, 4)
    };
    let set = TrainingSet::of(mnist());
    let go = |state, options: &TrainOptions, hook: &mut Brighten| {
        train::run(&cfg, set, state, options, None, hook, |_| {}).unwrap()
    };
    let options = TrainOptions {
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: 4,
        eval_every: 0,
    };
    let whole = go(TrainState::new(4), &options, &mut Brighten { batches: 0 });
    assert_eq!(whole.hook_state["batches"], "9");
    let plain = train::run(
        &cfg,
        set,
        TrainState::new(4),
        &TrainOptions::default(),
        None,
        &mut train::NoHook,
        |_| {},
    )
    .unwrap();
    assert_ne!(
        whole.net, plain.net,
        "the hook's transformed batches were trained on"
    );
    // The checkpoint at iteration 8 carries the hook's count; resuming with a fresh hook
    // restores it and ends in the same weights.
    let (state, _) = train::starting_state(&cfg, set.sha256, Some(&ckpt), true).unwrap();
    assert_eq!(state.iteration, 8);
    assert_eq!(state.hook_state["batches"], "8");
    let resumed = go(
        state,
        &TrainOptions::default(),
        &mut Brighten { batches: 0 },
    );
    assert_eq!(resumed, whole);
}

/// The study's thresholds on the default models (clean error with the defence in front):
/// low-pass + LeNet under 1.5%, DAE + LeNet under 2%. Training both default models takes about
/// 10 minutes on 2 cores, too long for every CI run: run with
/// `cargo test --release --test defences -- --ignored`. Measured values are in docs/defences.md.
#[test]
#[ignore = "trains the default LeNet and autoencoder (about 10 minutes on 2 cores)"]
fn default_models_keep_clean_error_within_the_study_thresholds() {
    let data = mnist();
    let net = train::train(
        &TrainConfig::lenet(DropoutRates::NONE, 1),
        data,
        TrainState::new(1),
        &TrainOptions::default(),
        |_| {},
    )
    .unwrap()
    .net;
    let dae = run_dae(&DaeConfig::new(1), 2, &TrainOptions::default()).net;
    let error = |stage: Stage| {
        let p = Pipeline::new(vec![stage], &net, AttackThrough::Pipeline);
        advmnist::models::lenet::error_pct(&p.predict(data.test.images.view()), &data.test.labels)
    };
    let lowpass = error(Stage::parse("lowpass:5", 1).unwrap());
    assert!(lowpass < 1.5, "lowpass:5 + LeNet: {lowpass}%");
    let with_dae = error(Stage::Autoencoder {
        name: "default".into(),
        net: Box::new(dae),
    });
    assert!(with_dae < 2.0, "DAE + LeNet: {with_dae}%");
}

#[test]
fn dae_figure_shows_clean_corrupted_and_rebuilt_digits() {
    let dae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(2, Purpose::Init, 0));
    let digits = test_images(3);
    let fig = advmnist::experiments::perturbed_digits::reconstructed_digits(
        &dae,
        digits.images.view(),
        &digits.labels,
        0.2,
        1,
    )
    .unwrap();
    assert_eq!(fig.columns.len(), 4);
    assert_eq!(fig.columns[0].1, digits.images);
    // About a fifth of the ink dropped, the rest scaled by 1/(1 - 0.2) = 1.25.
    let (clean, corrupted) = (&fig.columns[0].1, &fig.columns[1].1);
    let ink = clean.iter().filter(|&&v| v > 0.0).count() as f64;
    let dropped = clean
        .iter()
        .zip(corrupted.iter())
        .filter(|(&c, &d)| c > 0.0 && d == 0.0)
        .count() as f64;
    assert!(
        (dropped / ink - 0.2).abs() < 0.05,
        "dropped {dropped} of {ink}"
    );
    assert_eq!(fig.columns[3].1, dae.reconstruct(digits.images.view()));
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("dae.png");
    advmnist::report::digits_png::render_dae_png(&fig, &png).unwrap();
    let (w, h) = image_size(&png);
    assert_eq!(
        (w, h),
        advmnist::report::digits_png::dae_figure_size(3, 4),
        "the PNG has the figure's size"
    );
    let e = advmnist::report::digits_png::render_dae_png(&fig, &dir.path().join("dae.jpg"))
        .unwrap_err();
    assert!(e.to_string().contains(".png"), "{e}");
}

fn image_size(path: &std::path::Path) -> (u32, u32) {
    // PNG: 8-byte signature, then the IHDR chunk: length, "IHDR", width, height (big-endian).
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_command_line_names_a_wrong_model_kind_and_a_bad_stage() {
    let dir = TempDir::new().unwrap();
    let dae_path = dir.path().join("dae.safetensors");
    let lenet_path = dir.path().join("lenet.safetensors");
    let dae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(2, Purpose::Init, 0));
    save_model(&dae_path, &dae, &meta()).unwrap();
    save_model(&lenet_path, lenet(), &meta()).unwrap();
    let (dae_s, lenet_s) = (dae_path.to_str().unwrap(), lenet_path.to_str().unwrap());
    let out = advmnist(&["eval", "--model", dae_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("denoising autoencoder"),
        "{err}"
    );
    let pre = format!("dae:{lenet_s}");
    let out = advmnist(&["eval", "--model", lenet_s, "--pre", &pre]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds a LeNet"),
        "{err}"
    );
    let out = advmnist(&["eval", "--model", lenet_s, "--pre", "lowpass:9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--pre lowpass:9"),
        "{err}"
    );
    // A defended model is named with its stages in every output.
    let out = advmnist(&["eval", "--model", lenet_s, "--pre", "lowpass:5", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name = json["models"][0]["model"].as_str().unwrap();
    assert!(
        name.starts_with("lowpass:5 + ") && name.ends_with("lenet.safetensors"),
        "{name}"
    );
}
