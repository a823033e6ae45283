//! The two gradients: `caffe-f32` computes exactly what Caffe's
//! `SoftmaxWithLoss` computes in float32, zeros included; `exact` keeps the true class's term
//! where `caffe-f32` loses it; `compare_rules` counts what an independent count finds.

use advmnist::data::{default_data_dir, load_mnist};
use advmnist::models::gradient::compare_rules;
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::{Classifier, GradientRule, WithGradient};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
use ndarray::{s, Array2, Ix2};

/// Caffe's formula for one row, written out independently in float32 from
/// `softmax_layer.cpp` and `softmax_loss_layer.cpp` (BVLC/caffe 9b89154): max over the
/// classes, `exp(z - max)`, their sum in index order, divide, then `prob[label] -= 1`.
fn caffe_row(z: &[f32], label: usize) -> Vec<f32> {
    let mut max = z[0];
    for &v in z {
        if max < v {
            max = v;
        }
    }
    let e: Vec<f32> = z.iter().map(|&v| (v - max).exp()).collect();
    let mut sum = 0.0f32;
    for &v in &e {
        sum += v;
    }
    let mut d: Vec<f32> = e.iter().map(|&v| v / sum).collect();
    d[label] -= 1.0;
    d
}

/// Saturated and ordinary rows: a confident true class (gaps of 20 to 90, where `p_y` is 1.0
/// in f32), a confident wrong class, logits so far apart that the others' `exp` underflows to
/// 0, and random rows at three scales.
fn logits_and_labels() -> (Array2<f32>, Vec<u8>) {
    let mut rows: Vec<(Vec<f32>, u8)> = vec![];
    for (gap, label) in [(20.0, 0u8), (30.0, 3), (50.0, 9), (90.0, 5), (120.0, 1)] {
        let z = (0..10)
            .map(|k| {
                if k == label as usize {
                    gap
                } else {
                    (k as f32) * 0.37 - 1.0
                }
            })
            .collect();
        rows.push((z, label));
    }
    // Confident, but in the wrong class: p_y is tiny and p_y - 1 is about -1.
    rows.push((
        (0..10).map(|k| if k == 4 { 40.0 } else { 0.0 }).collect(),
        2,
    ));
    for (i, scale) in [1.0f32, 10.0, 40.0].iter().enumerate() {
        let r = advmnist::testutil::random_array::<f32, Ix2>((6, 10), 30 + i as u64) * *scale;
        for (n, row) in r.outer_iter().enumerate() {
            rows.push((row.to_vec(), ((n * 7 + i) % 10) as u8));
        }
    }
    let z = Array2::from_shape_fn((rows.len(), 10), |(n, k)| rows[n].0[k]);
    (z, rows.iter().map(|r| r.1).collect())
}

#[test]
fn caffe_f32_is_caffes_formula_evaluated_in_float32_zeros_included() {
    let (z, labels) = logits_and_labels();
    let (_, got) = GradientRule::CaffeF32.loss_and_logit_gradient(z.view(), &labels);
    let mut zeros = 0;
    for (n, &y) in labels.iter().enumerate() {
        let want = caffe_row(z.row(n).as_slice().unwrap(), y as usize);
        for k in 0..10 {
            assert_eq!(
                got[[n, k]].to_bits(),
                want[k].to_bits(),
                "row {n}, class {k}: got {:e}, want {:e}",
                got[[n, k]],
                want[k]
            );
        }
        zeros += usize::from(want[y as usize] == 0.0);
    }
    // The premise: the saturated rows do lose the true class's term.
    assert!(zeros >= 5, "only {zeros} rows with dz_y == 0");
}

/// Hand-worked: z = [30, 0, ..., 0], label 0. Caffe: sum = 1 + 9 e^-30 rounds to 1 in f32
/// (9 e^-30 = 8.4e-13 < 2^-24), so p_0 = 1 and dz_0 = 1 - 1 = 0 exactly, and dz_k = e^-30 for
/// the others. The exact rule keeps dz_0 = -(9 e^-30) (the sum of the others).
#[test]
fn exact_keeps_the_true_class_term_where_caffe_f32_loses_it() {
    let z = Array2::from_shape_fn((1, 10), |(_, k)| if k == 0 { 30.0f32 } else { 0.0 });
    let (_, caffe) = GradientRule::CaffeF32.loss_and_logit_gradient(z.view(), &[0]);
    let (_, exact) = GradientRule::Exact.loss_and_logit_gradient(z.view(), &[0]);
    assert_eq!(caffe[[0, 0]].to_bits(), 0.0f32.to_bits());
    assert!(caffe.iter().skip(1).all(|&v| v == (-30.0f32).exp()));
    assert!(exact[[0, 0]] < 0.0, "exact dz_0 = {}", exact[[0, 0]]);
    let want = -9.0 * (-30.0f64).exp();
    assert!(((exact[[0, 0]] as f64) - want).abs() < 1e-6 * want.abs());
}

/// A LeNet trained 300 iterations whose last layer is scaled by 8, so that most test digits
/// are saturated (logit gaps of tens), and the first 300 test digits.
fn saturated() -> (LeNet<f32>, LeNet<f32>, ndarray::Array4<f32>, Vec<u8>) {
    let data = load_mnist(&default_data_dir()).unwrap();
    let cfg = TrainConfig {
        iterations: 300,
        ..TrainConfig::lenet(DropoutRates::NONE, 1)
    };
    let net = train::train(
        &cfg,
        &data,
        TrainState::new(1),
        &TrainOptions::default(),
        |_| {},
    )
    .unwrap()
    .net;
    let mut loud = net.clone();
    loud.fc2.weight *= 8.0;
    loud.fc2.bias *= 8.0;
    (
        net,
        loud,
        data.test.images.slice(s![..300, .., .., ..]).to_owned(),
        data.test.labels[..300].to_vec(),
    )
}

/// Through a whole LeNet: where Caffe's `dz_y` is 0 the two input gradients differ (the exact
/// one still holds the true class's term), and the `caffe-f32` input gradient is the model's
/// own backward pass of Caffe's `dz`. `compare_rules` reports the counts found independently.
#[test]
fn through_lenet_and_compare_rules() {
    let (plain, loud, x, y) = saturated();
    let logits = loud.logits(x.view());
    let mut lost = vec![];
    let mut lost_exact = 0;
    for n in 0..y.len() {
        let d = caffe_row(logits.row(n).as_slice().unwrap(), y[n] as usize);
        if d[y[n] as usize] == 0.0 {
            lost.push(n);
        }
        // The exact rule's dz_y = -sum of the others is 0 only when all of them underflow.
        lost_exact += usize::from((0..10).filter(|&k| k != y[n] as usize).all(|k| d[k] == 0.0));
    }
    assert!(lost.len() >= 30, "only {} saturated digits", lost.len());
    let caffe = WithGradient {
        classifier: &loud,
        rule: GradientRule::CaffeF32,
    }
    .input_gradient(x.view(), &y)
    .1;
    let exact = WithGradient {
        classifier: &loud,
        rule: GradientRule::Exact,
    }
    .input_gradient(x.view(), &y)
    .1;
    let (_, want) = GradientRule::CaffeF32.loss_and_logit_gradient(logits.view(), &y);
    assert_eq!(caffe, loud.logits_vjp(x.view(), want.view()));
    for &n in &lost {
        assert!(
            exact.slice(s![n, .., .., ..]) != caffe.slice(s![n, .., .., ..]),
            "digit {n}: the exact gradient lost the true class's term too"
        );
    }
    let report = compare_rules(&loud, x.view(), &y);
    assert_eq!(report.images, 300);
    assert_eq!(report.true_term_lost_caffe_f32, lost.len());
    assert_eq!(report.true_term_lost_exact, lost_exact);
    assert!(report.true_term_lost_exact < report.true_term_lost_caffe_f32);
    assert!(report.images_sign_differs >= 1);
    assert!(report.pixels_sign_differs > 0 && report.max_image_fraction_sign_differs > 0.0);
    // An unsaturated model (the same LeNet, last layer scaled by 1/8): nothing is lost.
    let mut quiet = plain;
    quiet.fc2.weight /= 8.0;
    quiet.fc2.bias /= 8.0;
    let calm = compare_rules(&quiet, x.view(), &y);
    assert_eq!(calm.true_term_lost_caffe_f32, 0);
    assert_eq!(calm.true_term_lost_exact, 0);
}

#[test]
fn names_round_trip() {
    for rule in GradientRule::ALL {
        assert_eq!(GradientRule::parse(rule.name()), Ok(rule));
        assert_eq!(rule.to_string(), rule.name());
    }
    assert!(GradientRule::parse("caffe")
        .unwrap_err()
        .contains("exact or caffe-f32"));
}
