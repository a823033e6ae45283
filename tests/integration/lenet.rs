//! Whole-network checks: LeNet's forward pass, loss, input gradient and weight gradients against
//! the frozen PyTorch computation in `tests/fixtures/lenet_reference.safetensors`, and the input
//! gradient against central finite differences.
//!
//! The fixture was made by `tests/fixtures/make_lenet_reference.py` (PyTorch, float64):
//! ```python
//! h = F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2)
//! h = F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2)
//! h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
//! logits = F.linear(h, w["fc2.weight"], w["fc2.bias"])
//! loss = F.cross_entropy(logits, y)
//! grads = torch.autograd.grad(loss, [x] + list(w.values()))
//! ```

use advmnist::data::IMAGE_SIDE;
use advmnist::layers::softmax_xent;
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::testutil::assert_close;
use advmnist::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
use ndarray::{Array1, Array4, ArrayD, Ix4};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;

fn fixture() -> HashMap<String, ArrayD<f64>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lenet_reference.safetensors"
    );
    let bytes = std::fs::read(path).expect("fixture present");
    let st = SafeTensors::deserialize(&bytes).expect("fixture parses");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), Dtype::F64, "{name}");
            let vals = v
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (
                name,
                ArrayD::from_shape_vec(v.shape().to_vec(), vals).unwrap(),
            )
        })
        .collect()
}

fn fixture_net(f: &HashMap<String, ArrayD<f64>>) -> LeNet<f64> {
    let mut net = LeNet::<f64>::zeros();
    for mut p in net.parameters_mut() {
        p.data.assign(&f[p.name]);
    }
    net
}

fn labels(f: &HashMap<String, ArrayD<f64>>) -> Vec<u8> {
    f["label"].iter().map(|&v| v as u8).collect()
}

/// f64 against PyTorch's f64: the same sums in a different order, so the two agree to rounding,
/// about 1e-15 relative per operation; 1e-10 (the fixture README's figure) leaves ample room.
const F64_TOL: f64 = 1e-10;

#[test]
fn forward_loss_and_all_gradients_match_pytorch_in_f64() {
    let f = fixture();
    let net = fixture_net(&f);
    let x = f["input"].clone().into_dimensionality::<Ix4>().unwrap();
    let y = labels(&f);
    let (logits, cache) = net.forward(x.view(), None);
    assert_close(
        "logits",
        logits.view().into_dyn(),
        f["logits"].view(),
        F64_TOL,
        F64_TOL,
    );
    let (losses, xent) = softmax_xent::forward(logits.view(), &y);
    let loss = losses.mean().unwrap();
    assert!(
        (loss - f["loss"].first().unwrap()).abs() < F64_TOL,
        "loss {loss} vs {}",
        f["loss"]
    );
    let d_logits = softmax_xent::backward(&xent, &y, 1.0 / y.len() as f64);
    let mut grads = LeNet::zeros();
    let dx = net
        .backward(d_logits.view(), &cache, Some(&mut grads), true)
        .unwrap();
    assert_close(
        "input_grad",
        dx.view().into_dyn(),
        f["input_grad"].view(),
        F64_TOL,
        F64_TOL,
    );
    for p in grads.parameters() {
        assert_close(
            &format!("grad.{}", p.name),
            p.data.view(),
            f[&format!("grad.{}", p.name)].view(),
            F64_TOL,
            F64_TOL,
        );
    }
    // The batch-level entry points give the same numbers.
    let (batch_loss, batch_grads) =
        net.loss_and_gradients(x.view(), &y, &DropoutRates::NONE, &mut rngs(4));
    assert!((batch_loss - loss).abs() < 1e-14);
    for (a, b) in batch_grads.parameters().iter().zip(grads.parameters()) {
        assert_close(a.name, a.data.view(), b.data.view(), 1e-14, 1e-12);
    }
    // input_gradient returns each image's own loss gradient: N times the mean's.
    let (per_image, dx_each) = net.input_gradient(x.view(), &y);
    assert_close(
        "per-image losses",
        per_image.view().into_dyn(),
        losses.view().into_dyn(),
        1e-14,
        0.0,
    );
    assert_close(
        "per-image input grad",
        (dx_each / 4.0).view().into_dyn(),
        f["input_grad"].view(),
        F64_TOL,
        F64_TOL,
    );
}

/// The f32 path against the same PyTorch numbers: f32 rounding (2^-24 ~ 6e-8 per operation, over
/// sums of up to 800 terms) puts differences near 1e-5 relative; the README's 1e-4 is the bound.
#[test]
fn f32_forward_and_input_gradient_match_pytorch() {
    let f = fixture();
    let net = fixture_net(&f).cast::<f32>();
    let x = f["input"]
        .mapv(|v| v as f32)
        .into_dimensionality::<Ix4>()
        .unwrap();
    let y = labels(&f);
    let logits = net.logits(x.view()).mapv(|v| v as f64);
    let scale = f["logits"].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(
        "f32 logits",
        logits.view().into_dyn(),
        f["logits"].view(),
        1e-4 * scale,
        1e-4,
    );
    let (_, dx) = net.input_gradient(x.view(), &y);
    let dx = dx.mapv(|v| v as f64 / 4.0);
    let gscale = f["input_grad"].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(
        "f32 input_grad",
        dx.view().into_dyn(),
        f["input_grad"].view(),
        1e-4 * gscale,
        1e-4,
    );
}

fn rngs(n: usize) -> Vec<ChaCha8Rng> {
    (0..n)
        .map(|i| ChaCha8Rng::seed_from_u64(i as u64))
        .collect()
}

/// Two random images with pixels uniform in [0, 1]. Not real digits: their blank background
/// makes conv1's outputs exactly equal across whole pooling windows, and at such a tie the loss
/// has a kink (the one-sided derivatives differ), where a central difference averages the two
/// sides and no analytic gradient can match it. Random pixels make ties have probability zero.
fn random_images() -> Array4<f64> {
    advmnist::testutil::random_array::<f64, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 7)
        .mapv(|v| 0.5 * (v + 1.0))
}

/// The whole chain from the loss to every pixel, against central differences (f64, see
/// `testutil::gradcheck` for the step and tolerance). The loss is each image's own
/// cross-entropy summed over the two images, so d/dx of that sum is `input_gradient`.
#[test]
fn input_gradient_matches_finite_differences() {
    let f = fixture();
    let net = fixture_net(&f);
    let x = random_images();
    let y = &labels(&f)[..2];
    let (_, analytic) = net.input_gradient(x.view(), y);
    let one = Array1::from_elem(1, 1.0);
    let numeric = numeric_gradient(&x, &one, |x| {
        let (losses, _) = softmax_xent::forward(net.logits(x.view()).view(), y);
        Array1::from_elem(1, losses.sum())
    });
    assert_gradient_matches("LeNet dL/dx", &analytic.into_dyn(), &numeric);
}

/// Every parameter gradient with dropout on at all five places (masks fixed by the seeds), on
/// a sample of entries of each tensor (all 431,080 would take minutes).
#[test]
fn parameter_gradients_with_dropout_match_finite_differences() {
    let f = fixture();
    let net = fixture_net(&f);
    let x = random_images();
    let y = &labels(&f)[..2];
    let rates = DropoutRates::ALL;
    let (_, grads) = net.loss_and_gradients(x.view(), y, &rates, &mut rngs(2));
    let loss_at = |net: &LeNet<f64>| net.loss_and_gradients(x.view(), y, &rates, &mut rngs(2)).0;
    let h = advmnist::testutil::gradcheck::STEP;
    for (t, g) in grads.parameters().iter().enumerate() {
        let len = g.data.len();
        for k in 0..12 {
            let i = (k * 7919 + 13) % len; // spread over the tensor
            let mut plus = net.clone();
            let mut minus = net.clone();
            plus.parameters_mut()[t]
                .data
                .as_slice_memory_order_mut()
                .unwrap()[i] += h;
            minus.parameters_mut()[t]
                .data
                .as_slice_memory_order_mut()
                .unwrap()[i] -= h;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h);
            let analytic = g.data.as_slice_memory_order().unwrap()[i];
            let tol = advmnist::testutil::gradcheck::TOL * (1.0 + numeric.abs());
            assert!(
                (analytic - numeric).abs() <= tol,
                "{}[{i}]: analytic {analytic:e}, numeric {numeric:e}",
                g.name
            );
        }
    }
}

/// A batch of 19 images (three convolution groups, two dense row pieces) gives the mean of the
/// 19 one-image gradients: the batch-level sums over images are checked against the simplest
/// possible reference, in f64 (same products, other order: equal to 1e-12 relative).
#[test]
fn batch_gradient_is_the_mean_of_single_image_gradients() {
    let f = fixture();
    let net = fixture_net(&f);
    let x = advmnist::testutil::random_array::<f64, Ix4>((19, 1, IMAGE_SIDE, IMAGE_SIDE), 11)
        .mapv(|v| 0.5 * (v + 1.0));
    let y: Vec<u8> = (0..19).map(|i| (i * 7 % 10) as u8).collect();
    let (loss, grads) = net.loss_and_gradients(x.view(), &y, &DropoutRates::NONE, &mut rngs(19));
    let mut mean = LeNet::<f64>::zeros();
    let mut mean_loss = 0.0;
    for i in 0..19 {
        let (l, g) = net.loss_and_gradients(
            x.slice(ndarray::s![i..i + 1, .., .., ..]),
            &y[i..i + 1],
            &DropoutRates::NONE,
            &mut rngs(1),
        );
        mean_loss += l / 19.0;
        for (mut m, gi) in mean.parameters_mut().into_iter().zip(g.parameters()) {
            m.data.scaled_add(1.0 / 19.0, &gi.data);
        }
    }
    assert!(
        (loss - mean_loss).abs() < 1e-12 * mean_loss.abs(),
        "{loss} vs {mean_loss}"
    );
    for (a, b) in grads.parameters().iter().zip(mean.parameters()) {
        let scale = b.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(a.name, a.data.view(), b.data.view(), 1e-12 * scale, 1e-10);
    }
}
