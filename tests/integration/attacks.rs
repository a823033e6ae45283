//! The study's perturbation experiments on a briefly trained LeNet: what the sweeps must show.
//! The model trains for 400 iterations (about 2% test error, a few seconds); the sweeps use the
//! first 1,000 test images.

use advmnist::attacks::distortion::distortion_per_pixel;
use advmnist::attacks::fgsm::{fgsm, perturb};
use advmnist::attacks::gaussian::{gaussian, standard_normal_like};
use advmnist::attacks::pgd::{pgd, PgdConfig};
use advmnist::attacks::validate;
use advmnist::data::{default_data_dir, load_mnist, Dataset};
use advmnist::experiments::sweep::{self, NamedModel, Noise, SweepConfig, SweepResult};
use advmnist::models::lenet::{error_pct, DropoutRates, LeNet};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
use std::sync::OnceLock;

struct Setup {
    net: LeNet<f32>,
    other: LeNet<f32>,
    test: Dataset,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let data = load_mnist(&default_data_dir()).unwrap();
        let fit = |seed| {
            let cfg = TrainConfig {
                iterations: 400,
                ..TrainConfig::lenet(DropoutRates::NONE, seed)
            };
            train::train(
                &cfg,
                &data,
                TrainState::new(seed),
                &TrainOptions::default(),
                |_| {},
            )
            .unwrap()
            .net
        };
        Setup {
            net: fit(1),
            other: fit(2),
            test: data.test.subset(0..1000),
        }
    })
}

fn run(
    noise: Noise,
    levels: usize,
    max: f32,
    at: &[f64],
    source: Option<&NamedModel<'_>>,
) -> SweepResult {
    let s = setup();
    let models = [NamedModel {
        name: "lenet".into(),
        model: &s.net,
    }];
    let cfg = SweepConfig {
        noise,
        levels: sweep::levels(levels, max as f64),
        seed: 3,
        at: at.to_vec(),
    };
    sweep::sweep(&models, source, &s.test, &cfg, |_, _| {}).unwrap()
}

#[test]
fn level_zero_gives_exactly_the_clean_error() {
    let s = setup();
    let clean = error_pct(&s.net.predict(s.test.images.view()), &s.test.labels);
    assert!(clean < 5.0, "the briefly trained model works: {clean}%");
    for noise in [
        Noise::Fgsm,
        Noise::Gaussian,
        Noise::Pgd {
            steps: 2,
            random_start: false,
        },
    ] {
        let r = run(noise, 2, 0.3, &[], None);
        assert_eq!(r.rows[0].level, 0.0);
        assert_eq!(r.rows[0].distortion, 0.0, "{noise:?}");
        assert_eq!(r.rows[0].error_pct, clean, "{noise:?}");
    }
}

#[test]
fn gradient_sign_is_far_more_harmful_than_gaussian_noise_at_the_same_distortion() {
    // The study's Table 2: 73.6% against a few percent at distortion 0.1.
    let f = run(Noise::Fgsm, 21, 0.5, &[0.1], None);
    let g = run(Noise::Gaussian, 21, 1.0, &[0.1], None);
    let (fe, ge) = (f.at[0].error_pct.unwrap(), g.at[0].error_pct.unwrap());
    assert!(
        fe > 50.0 && fe > ge + 40.0 && fe > 3.0 * ge,
        "fgsm {fe}% vs gaussian {ge}% at distortion 0.1"
    );
}

#[test]
fn pgd_is_at_least_as_strong_as_one_step_and_error_rises_towards_100() {
    let f = run(Noise::Fgsm, 4, 0.3, &[], None);
    let p = run(
        Noise::Pgd {
            steps: 10,
            random_start: false,
        },
        4,
        0.3,
        &[],
        None,
    );
    for (fr, pr) in f.rows.iter().zip(&p.rows) {
        assert_eq!(fr.level, pr.level);
        assert!(
            pr.error_pct >= fr.error_pct,
            "eps {}: pgd {}% < fgsm {}%",
            pr.level,
            pr.error_pct,
            fr.error_pct
        );
    }
    let errors: Vec<f64> = p.rows.iter().map(|r| r.error_pct).collect();
    assert!(
        errors.windows(2).all(|w| w[1] >= w[0]),
        "error grows with eps: {errors:?}"
    );
    assert!(
        *errors.last().unwrap() > 95.0,
        "eps 0.3 breaks an undefended model: {errors:?}"
    );
}

#[test]
fn every_perturbed_set_is_valid_and_distortion_matches_the_formula() {
    let s = setup();
    let x = s.test.images.slice(ndarray::s![..50, .., .., ..]);
    let y = &s.test.labels[..50];
    let by_hand = |a: &ndarray::Array4<f32>| {
        let mut sum = 0.0f64;
        for (p, q) in a.iter().zip(x.iter()) {
            sum += (*p as f64 - *q as f64).abs();
        }
        sum / (50.0 * 784.0)
    };
    let adv = fgsm(&s.net, x, y, 0.25);
    validate(x, adv.view(), Some(0.25)).unwrap();
    assert!((distortion_per_pixel(x, adv.view()) - by_hand(&adv)).abs() < 1e-12);
    // Clipping: dist < eps because pixels at 0 or 1 cannot move outward.
    assert!(distortion_per_pixel(x, adv.view()) < 0.25);
    let noisy = gaussian(x, 0.3, 9);
    validate(x, noisy.view(), None).unwrap();
    assert_eq!(noisy, perturb(x, standard_normal_like(x, 9).view(), 0.3));
    assert!((distortion_per_pixel(x, noisy.view()) - by_hand(&noisy)).abs() < 1e-12);
    let p = pgd(
        &s.net,
        x,
        y,
        &PgdConfig {
            random_start: Some(4),
            ..PgdConfig::new(0.2, 5)
        },
    );
    validate(x, p.view(), Some(0.2)).unwrap();
    assert!(
        validate(x, p.view(), Some(0.1)).is_err(),
        "a 0.2-ball attack does move pixels past 0.1"
    );
}

#[test]
fn transfer_from_a_source_uses_the_source_gradient() {
    let s = setup();
    // Crafted on the model itself, "transfer" is the white-box attack.
    let own = NamedModel {
        name: "self".into(),
        model: &s.net,
    };
    assert_eq!(
        run(Noise::Fgsm, 3, 0.2, &[], Some(&own)).rows,
        run(Noise::Fgsm, 3, 0.2, &[], None).rows
    );
    // Crafted on another model, the examples are weaker against this one than its own.
    let other = NamedModel {
        name: "other".into(),
        model: &s.other,
    };
    let transfer = run(Noise::Fgsm, 3, 0.2, &[], Some(&other));
    let white_box = run(Noise::Fgsm, 3, 0.2, &[], None);
    assert!(
        transfer.rows[1].error_pct < white_box.rows[1].error_pct,
        "{:?} vs {:?}",
        transfer.rows[1],
        white_box.rows[1]
    );
}
