//! The audit tools: `trace` against the frozen PyTorch fixture and bit for bit against the
//! network's own entry points; `gradcheck` passing on real models and failing on deliberately
//! wrong gradients; the `trace` and `gradcheck` commands, their files and their errors.
//!
//! The fixture (`tests/fixtures/lenet_reference.safetensors`, made by
//! `tests/fixtures/make_lenet_reference.py`, PyTorch float64) holds LeNet's logits, the mean
//! loss, its input gradient and every parameter gradient for the first four MNIST test images:
//! ```python
//! h = F.max_pool2d(F.conv2d(x, w["conv1.weight"], w["conv1.bias"]), 2)
//! h = F.max_pool2d(F.conv2d(h, w["conv2.weight"], w["conv2.bias"]), 2)
//! h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
//! logits = F.linear(h, w["fc2.weight"], w["fc2.bias"])
//! loss = F.cross_entropy(logits, y)
//! grads = torch.autograd.grad(loss, [x] + list(w.values()))
//! ```
//! A trace is of one image and its own loss, so the fixture's mean-loss gradients are the mean
//! of the four traces' gradients.

use crate::common::{err, ok, s};
use advmnist::audit::gradcheck::{self, compare, numeric_input_gradient};
use advmnist::audit::trace::{tensor_names, trace, Trace};
use advmnist::audit::Perturbation;
use advmnist::layers::{conv, maxpool, softmax_xent};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::Classifier;
use advmnist::testutil::assert_close;
use ndarray::{s, Array4, ArrayD, Ix4};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;
use tempfile::TempDir;

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

fn fixture_images(f: &HashMap<String, ArrayD<f64>>) -> (Array4<f64>, Vec<u8>) {
    let x = f["input"].clone().into_dimensionality::<Ix4>().unwrap();
    (x, f["label"].iter().map(|&v| v as u8).collect())
}

fn image<T: Clone>(x: &Array4<T>, i: usize) -> Array4<T> {
    x.slice(s![i..i + 1, .., .., ..]).to_owned()
}

/// The fixture test's tolerance for f64 against PyTorch's f64 (`tests/integration/lenet.rs`, `F64_TOL`).
const F64_TOL: f64 = 1e-10;

#[test]
fn f64_traces_reproduce_every_tensor_of_the_pytorch_fixture() {
    let f = fixture();
    let net = fixture_net(&f);
    let (x, labels) = fixture_images(&f);
    let traces: Vec<Trace<f64>> = (0..4)
        .map(|i| trace(&net, image(&x, i).view(), labels[i]))
        .collect();
    let n = traces.len() as f64;
    // Per image: its row of logits, and its input (all four together make the fixture's input).
    for (i, t) in traces.iter().enumerate() {
        let row = f["logits"].slice(s![i..i + 1, ..]).to_owned().into_dyn();
        let name = format!("image {i} forward.logits");
        assert_close(
            &name,
            t.get("forward.logits").unwrap().view(),
            row.view(),
            F64_TOL,
            F64_TOL,
        );
        assert_eq!(t.get("forward.input").unwrap(), &image(&x, i).into_dyn());
    }
    // The mean loss, and the mean-loss gradients: the mean of the per-image ones.
    let mean = |name: &str| {
        traces
            .iter()
            .map(|t| t.get(name).unwrap().clone())
            .reduce(|a, b| a + b)
            .unwrap()
            / n
    };
    let loss = mean("forward.loss")[0];
    assert!(
        (loss - f["loss"].first().unwrap()).abs() < F64_TOL,
        "loss {loss} vs {}",
        f["loss"]
    );
    let input_grad = ndarray::concatenate(
        ndarray::Axis(0),
        &traces
            .iter()
            .map(|t| t.get("backward.input").unwrap().view())
            .collect::<Vec<_>>(),
    )
    .unwrap()
        / n;
    assert_close(
        "input_grad",
        input_grad.view(),
        f["input_grad"].view(),
        F64_TOL,
        F64_TOL,
    );
    for p in net.parameters() {
        let name = format!("grad.{}", p.name);
        assert_close(&name, mean(&name).view(), f[&name].view(), F64_TOL, F64_TOL);
    }
}

#[test]
fn f32_traces_match_the_fixture_within_its_f32_tolerance() {
    // The fixture test's f32 bound (`tests/integration/lenet.rs`): 1e-4 of the tensor's largest value.
    let f = fixture();
    let net = fixture_net(&f).cast::<f32>();
    let (x, labels) = fixture_images(&f);
    let x = x.mapv(|v| v as f32);
    let lscale = f["logits"].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gscale = f["input_grad"].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, &label) in labels.iter().enumerate() {
        let t = trace(&net, image(&x, i).view(), label);
        let logits = t.get("forward.logits").unwrap().mapv(|v| v as f64);
        let want = f["logits"].slice(s![i..i + 1, ..]).to_owned().into_dyn();
        assert_close(
            "f32 logits",
            logits.view(),
            want.view(),
            1e-4 * lscale,
            1e-4,
        );
        let dx = t.get("backward.input").unwrap().mapv(|v| v as f64 / 4.0);
        let want = f["input_grad"]
            .slice(s![i..i + 1, .., .., ..])
            .to_owned()
            .into_dyn();
        assert_close(
            "f32 input_grad",
            dx.view(),
            want.view(),
            1e-4 * gscale,
            1e-4,
        );
    }
}

/// The trace calls the network's layer functions in the network's order, so its input gradient
/// is the Classifier's, and its parameter gradients `loss_and_gradients`'s, bit for bit.
#[test]
fn trace_input_and_parameter_gradients_are_bit_identical_to_the_network() {
    let f = fixture();
    let (x, labels) = fixture_images(&f);
    let net64 = fixture_net(&f);
    let net32 = net64.cast::<f32>();
    let x32 = x.mapv(|v| v as f32);
    for (i, &digit) in labels.iter().enumerate() {
        let label = [digit];
        // f32, through the Classifier trait every attack uses.
        let xi = image(&x32, i);
        let t = trace(&net32, xi.view(), digit);
        let (loss, dx) = Classifier::input_gradient(&net32, xi.view(), &label);
        assert_eq!(
            t.get("backward.input").unwrap(),
            &dx.into_dyn(),
            "image {i}"
        );
        assert_eq!(
            t.get("forward.loss").unwrap(),
            &loss.into_dyn(),
            "image {i}"
        );
        let (_, grads) =
            net32.loss_and_gradients(xi.view(), &label, &DropoutRates::NONE, &mut rngs(1));
        for p in grads.parameters() {
            let name = format!("grad.{}", p.name);
            assert_eq!(
                t.get(&name).unwrap(),
                &p.data.to_owned(),
                "image {i} {name}"
            );
        }
        // f64 likewise.
        let xi = image(&x, i);
        let t = trace(&net64, xi.view(), digit);
        let (_, dx) = net64.input_gradient(xi.view(), &label);
        assert_eq!(
            t.get("backward.input").unwrap(),
            &dx.into_dyn(),
            "f64 image {i}"
        );
    }
}

fn rngs(n: usize) -> Vec<ChaCha8Rng> {
    (0..n)
        .map(|i| ChaCha8Rng::seed_from_u64(i as u64))
        .collect()
}

#[test]
fn pool_indices_and_zeros_tell_where_the_gradient_stops() {
    let f = fixture();
    let (x, labels) = fixture_images(&f);
    let t = trace(&fixture_net(&f), image(&x, 0).view(), labels[0]);
    // Each pool's backward is zero except at its window's winner: exactly one in four.
    for (stage, windows) in [("conv1", 20 * 12 * 12), ("conv2", 50 * 4 * 4)] {
        let d = t.get(&format!("backward.{stage}")).unwrap();
        let pool = if stage == "conv1" { "pool1" } else { "pool2" };
        let indices = t.get_indices(&format!("forward.{pool}.indices")).unwrap();
        let conv = t.get(&format!("forward.{stage}")).unwrap();
        let (c, w) = (d.shape()[1], d.shape()[3]);
        let mut winners = 0;
        for ch in 0..c {
            for (k, &index) in indices.slice(s![0, ch, .., ..]).iter().enumerate() {
                let (i, j) = (k / (w / 2), k % (w / 2));
                let (r, col) = (index as usize / w, index as usize % w);
                assert!(
                    r / 2 == i && col / 2 == j,
                    "{pool} index {index} outside window ({i},{j})"
                );
                // The winner holds the window's maximum.
                let window = conv.slice(s![0, ch, 2 * i..2 * i + 2, 2 * j..2 * j + 2]);
                let max = window.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(conv[[0, ch, r, col]], max);
                winners += 1;
            }
        }
        assert_eq!(winners, windows);
        let nonzero = d.iter().filter(|&&v| v != 0.0).count();
        assert!(
            nonzero <= windows,
            "{stage}: {nonzero} non-zeros for {windows} windows"
        );
    }
}

#[test]
fn gradcheck_passes_on_the_fixture_model_and_real_digits() {
    let f = fixture();
    let (x, labels) = fixture_images(&f);
    let report = gradcheck::gradcheck(&fixture_net(&f), x.view(), &labels, 8, 1);
    let text = gradcheck::format_report(&report);
    assert!(report.pass(), "{text}");
    let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[..2], ["d_logits", "input"]);
    assert_eq!(names.len(), 10);
    let input = &report.tensors[1];
    assert_eq!(input.smooth + input.kinks, 4 * 784);
    // Real digits: most background pixels sit on tied pooling windows.
    assert!(input.kinks > 0 && input.smooth > 0, "{text}");
}

/// One image of the fixture (a real digit) with the network's input gradient and the numeric one.
struct OneImage {
    net: LeNet<f64>,
    x: Array4<f64>, // (1,1,28,28)
    label: u8,
    analytic: Array4<f64>, // LeNet::input_gradient
    numeric: Array4<f64>,  // central differences, kinks on their piece
    kinks: Array4<bool>,
}

fn one_image_check() -> OneImage {
    let f = fixture();
    let net = fixture_net(&f);
    let (x, labels) = fixture_images(&f);
    let xi = image(&x, 1);
    let (_, xent) = softmax_xent::forward(net.logits(xi.view()).view(), &labels[1..2]);
    let d_logits = softmax_xent::backward(&xent, &labels[1..2], 1.0);
    let (_, analytic) = net.input_gradient(xi.view(), &labels[1..2]);
    let (numeric, kinks) = numeric_input_gradient(&net, xi.view(), d_logits.view());
    OneImage {
        net,
        x: xi,
        label: labels[1],
        analytic,
        numeric,
        kinks,
    }
}

fn check(
    analytic: &Array4<f64>,
    numeric: &Array4<f64>,
    kinks: &Array4<bool>,
) -> gradcheck::TensorCheck {
    compare(
        "input",
        analytic.as_slice().unwrap(),
        numeric.as_slice().unwrap(),
        kinks.as_slice().unwrap(),
    )
}

#[test]
fn gradcheck_fails_when_one_component_has_the_wrong_sign() {
    let OneImage {
        analytic,
        numeric,
        kinks,
        ..
    } = one_image_check();
    assert!(check(&analytic, &numeric, &kinks).pass);
    // Flip the largest smooth component, then (separately) the largest kink component, then
    // a middling one: each must fail.
    let magnitude_rank = |want_kink: bool| {
        let mut v: Vec<(usize, f64)> = analytic
            .iter()
            .zip(kinks.iter())
            .enumerate()
            .filter(|(_, (_, &k))| k == want_kink)
            .map(|(i, (&a, _))| (i, a.abs()))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    };
    let smooth = magnitude_rank(false);
    let kink = magnitude_rank(true);
    for (what, index) in [
        ("largest smooth", smooth[0].0),
        ("largest kink", kink[0].0),
        ("median smooth", smooth[smooth.len() / 2].0),
    ] {
        let mut wrong = analytic.clone();
        let flat = wrong.as_slice_mut().unwrap();
        assert!(flat[index] != 0.0, "{what}: a zero cannot change sign");
        flat[index] = -flat[index];
        let c = check(&wrong, &numeric, &kinks);
        assert!(!c.pass, "{what}: sign flip at {index} passed: {c:?}");
        let worst = if kinks.as_slice().unwrap()[index] {
            c.worst_kink
        } else {
            c.worst_smooth
        };
        assert_eq!(worst.unwrap().index, index, "{what}");
    }
}

#[test]
fn gradcheck_fails_when_a_pool_routes_the_gradient_to_the_wrong_pixel() {
    let OneImage {
        net,
        x: xi,
        label,
        analytic,
        numeric,
        kinks,
    } = one_image_check();
    // The backward chain from pool1's gradient down, as the trace and LeNet run it, but with
    // the winner of the window with the largest gradient moved to the next position.
    let t = trace(&net, xi.view(), label);
    let d_pool1 = t
        .get("backward.pool1")
        .unwrap()
        .clone()
        .into_dimensionality::<Ix4>()
        .unwrap();
    let (conv1_out, conv1_cache) = conv::forward(xi.view(), &net.conv1);
    let (_, mut pool1) = maxpool::forward(conv1_out.view());
    let right = maxpool::backward(d_pool1.view(), &pool1);
    let rebuilt = conv::backward_input(right.view(), &conv1_cache, &net.conv1);
    assert_eq!(rebuilt, analytic, "the rebuilt chain is the network's");
    let (window, _) = d_pool1
        .indexed_iter()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    pool1.argmax[window] = (pool1.argmax[window] + 1) % 4;
    let wrong = maxpool::backward(d_pool1.view(), &pool1);
    let wrong = conv::backward_input(wrong.view(), &conv1_cache, &net.conv1);
    let c = check(&wrong, &numeric, &kinks);
    assert!(!c.pass, "wrong routing at {window:?} passed: {c:?}");
}

#[test]
fn gradcheck_fails_on_a_wrong_weight_gradient() {
    let f = fixture();
    let net = fixture_net(&f);
    let (x, labels) = fixture_images(&f);
    let (_, grads) = net.loss_and_gradients(x.view(), &labels, &DropoutRates::NONE, &mut rngs(4));
    let (_, xent) = softmax_xent::forward(net.logits(x.view()).view(), &labels);
    let d_mean = softmax_xent::backward(&xent, &labels, 0.25);
    // conv2.weight (tensor 2): 6 entries, one with its sign flipped.
    let entries = gradcheck::sample_entries(25_000, 6, 3, 2);
    let (numeric, kinks) =
        gradcheck::numeric_parameter_gradient(&net, x.view(), d_mean.view(), 2, &entries);
    let flat = grads.conv2.weight.as_slice().unwrap();
    let mut analytic: Vec<f64> = entries.iter().map(|&e| flat[e]).collect();
    assert!(compare("conv2.weight", &analytic, &numeric, &kinks).pass);
    analytic[4] = -analytic[4];
    assert!(!compare("conv2.weight", &analytic, &numeric, &kinks).pass);
}

#[test]
fn perturbations_are_the_ones_sweep_makes() {
    let test = advmnist::data::load_split(
        &advmnist::data::default_data_dir(),
        advmnist::data::Split::Test,
    )
    .unwrap();
    let f = fixture();
    let net = fixture_net(&f).cast::<f32>();
    let set = test.subset(0..3);
    // Gaussian: test image 2's draw within the set is the one traced for image 2.
    let whole = advmnist::attacks::gaussian::gaussian(set.images.view(), 0.3, 9);
    let one = Perturbation::Gaussian {
        sigma: 0.3,
        seed: 9,
        image: 2,
    }
    .apply(&net, image(&set.images, 2).view(), set.labels[2]);
    assert_eq!(one, image(&whole, 2));
    // FGSM: the image's own gradient sign.
    let whole = advmnist::attacks::fgsm::fgsm(&net, set.images.view(), &set.labels, 0.1);
    let one =
        Perturbation::Fgsm { eps: 0.1 }.apply(&net, image(&set.images, 1).view(), set.labels[1]);
    assert_eq!(one, image(&whole, 1));
}

// ---- the commands ----

/// A briefly trained model (200 iterations: test error about 5%), made once per test run.
fn trained_model(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join("m.safetensors");
    ok(&[
        "train",
        "--iters",
        "200",
        "--eval-every",
        "0",
        "--out",
        s(&path),
    ]);
    path
}

#[test]
fn trace_and_gradcheck_commands_work_and_refuse_bad_input() {
    let dir = TempDir::new().unwrap();
    let model = trained_model(&dir);

    // The table: one row per tensor, in order.
    let out = ok(&["trace", "--model", s(&model), "--image", "3"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for name in tensor_names() {
        assert!(
            text.contains(&format!("\n{name} ")),
            "no row for {name}:\n{text}"
        );
    }

    // The file: every tensor, F32 and I64, the metadata; equal runs give equal bytes.
    let file = dir.path().join("t.safetensors");
    let again = dir.path().join("t2.safetensors");
    let noisy = [
        "--noise",
        "fgsm",
        "--level",
        "0.1",
        "--image",
        "3",
        "--model",
        s(&model),
    ];
    ok(&[&["trace", "--out", s(&file)], &noisy[..]].concat());
    ok(&[&["trace", "--out", s(&again)], &noisy[..]].concat());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes, std::fs::read(&again).unwrap(), "trace files differ");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in tensor_names()
        .into_iter()
        .chain(["image.clean", "image.perturbed"])
    {
        let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} missing"));
        let want = if name.ends_with(".indices") {
            Dtype::I64
        } else {
            Dtype::F32
        };
        assert_eq!(t.dtype(), want, "{name}");
    }
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format"], "advmnist-trace");
    assert_eq!(
        (meta["noise"].as_str(), meta["level"].as_str()),
        ("fgsm", "0.1")
    );
    let wide = dir.path().join("t64.safetensors");
    ok(&[
        "trace",
        "--f64",
        "--model",
        s(&model),
        "--image",
        "3",
        "--out",
        s(&wide),
    ]);
    let bytes = std::fs::read(&wide).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("backward.input").unwrap().dtype(), Dtype::F64);

    // A model saved elsewhere: only the eight tensors in PyTorch's names, no metadata (as
    // `safetensors.torch.save_file(model.state_dict())` writes them).
    let f = fixture();
    let foreign = dir.path().join("from_pytorch.safetensors");
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = fixture_net(&f)
        .parameters()
        .iter()
        .map(|p| {
            let data = p
                .data
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect();
            (p.name.to_string(), p.data.shape().to_vec(), data)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).unwrap();
        (name.clone(), view)
    });
    std::fs::write(
        &foreign,
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
    let out = ok(&[
        "gradcheck",
        "--model",
        s(&foreign),
        "--images",
        "1",
        "--params",
        "3",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().ends_with("PASS"), "{text}");
    ok(&["trace", "--model", s(&foreign), "--image", "9999"]);

    // gradcheck passes on a trained model (exit code 0) and prints PASS per tensor.
    let out = ok(&[
        "gradcheck",
        "--model",
        s(&model),
        "--images",
        "2",
        "--params",
        "5",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("PASS").count(), 11, "{text}");

    // Bad input, each named, each before any work.
    let e = err(&["trace", "--model", s(&model), "--image", "10000"]);
    assert!(e.contains("--image 10000 is out of range"), "{e}");
    // Files of the wrong kind: a trace (its I64 indices are refused first), and a file of f32
    // tensors that are not LeNet's (as an autoencoder's would be).
    let e = err(&["trace", "--model", s(&file), "--image", "0"]);
    assert!(
        e.contains("t.safetensors") && e.contains("dtype I64"),
        "{e}"
    );
    let e = err(&["gradcheck", "--model", s(&wide)]);
    assert!(
        e.contains("t64.safetensors") && e.contains("dtype F64"),
        "{e}"
    );
    let other = dir.path().join("encoder.safetensors");
    let weight = vec![0u8; 4 * 6];
    let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 3], &weight).unwrap();
    std::fs::write(
        &other,
        safetensors::tensor::serialize([("encoder.weight", view)], None).unwrap(),
    )
    .unwrap();
    let e = err(&["trace", "--model", s(&other), "--image", "0"]);
    assert!(
        e.contains("encoder.safetensors") && e.contains("'conv1.weight' is missing"),
        "{e}"
    );
    let nowhere = dir.path().join("no/such/folder/t.safetensors");
    let e = err(&[
        "trace",
        "--model",
        s(&model),
        "--image",
        "0",
        "--out",
        s(&nowhere),
    ]);
    assert!(e.contains("--out") && e.contains("does not exist"), "{e}");
    let e = err(&[
        "trace",
        "--model",
        s(&model),
        "--image",
        "0",
        "--noise",
        "fgsm",
    ]);
    assert!(e.contains("--level"), "{e}");
    let e = err(&[
        "trace",
        "--model",
        s(&model),
        "--image",
        "0",
        "--noise",
        "fgsm",
        "--level",
        "-1",
    ]);
    assert!(e.contains("--level must be a number >= 0"), "{e}");
    let e = err(&[
        "gradcheck",
        "--model",
        s(&model),
        "--first",
        "9999",
        "--images",
        "3",
    ]);
    assert!(e.contains("--first 9999 --images 3"), "{e}");
    let e = err(&["gradcheck", "--model", s(&model), "--images", "0"]);
    assert!(e.contains("--images"), "{e}");
}

// ---- committees and pipelines ----

use advmnist::audit::committee::{
    committee_input_gradient, committee_tensor_names, gradcheck_committee,
    numeric_member_logit_gradient, trace_committee,
};
use advmnist::audit::gradcheck::{numeric_input_gradient_through, NoStages};
use advmnist::audit::pipeline::{gradcheck_pipeline, trace_pipeline, StagesAt};
use advmnist::defences::lowpass::LowPassFilter;
use advmnist::models::committee::member_logit_gradients_exact;
use advmnist::models::pipeline::{AttackThrough, Pipeline, Stage};
use advmnist::models::{Autoencoder, Committee};
use std::sync::OnceLock;

/// Two LeNets trained 30 iterations, seeds 1 and 2 (test errors 15.77% and 18.43%, measured
/// with `advmnist train --iters 30 --seed 1|2`: unsure enough that their softmaxes, and so
/// their weights in the committee, differ), and the first four test images.
struct Quick {
    members: Vec<LeNet<f32>>,
    test: advmnist::data::Dataset,
}

fn quick() -> &'static Quick {
    static Q: OnceLock<Quick> = OnceLock::new();
    Q.get_or_init(|| {
        let data = advmnist::data::load_mnist(&advmnist::data::default_data_dir()).unwrap();
        let members = (1..=2)
            .map(|seed| {
                let cfg = advmnist::train::TrainConfig {
                    iterations: 30,
                    ..advmnist::train::TrainConfig::lenet(DropoutRates::NONE, seed)
                };
                advmnist::train::train(
                    &cfg,
                    &data,
                    advmnist::train::TrainState::new(seed),
                    &advmnist::train::TrainOptions::default(),
                    |_| {},
                )
                .unwrap()
                .net
            })
            .collect();
        Quick {
            members,
            test: data.test.subset(0..4),
        }
    })
}

/// Test image `i` of [`quick`] in f64, and its label.
fn quick_digit(i: usize) -> (Array4<f64>, [u8; 1]) {
    let q = quick();
    (image(&q.test.images, i).mapv(f64::from), [q.test.labels[i]])
}

fn quick_members_f64() -> Vec<LeNet<f64>> {
    quick().members.iter().map(|m| m.cast()).collect()
}

/// A random autoencoder (training one until its reconstruction follows its input takes
/// minutes): weights uniform in +-3 sqrt(6 / fan_in), biases 0. With
/// `tests/integration/defences.rs`'s +-sqrt(6 / fan_in) each of the seven logistic layers
/// shrinks the Jacobian (the logistic's slope is at most 1/4), so the reconstruction hardly
/// depends on the pixels: measured through the default LeNet on test image 3, the largest input
/// gradient was 8.7e-5 and the check's worst error 4.5e-5, F's own rounding (1e-15 / 2h = 5e-12)
/// against gradients at the floor's scale (1e-3 x 8.7e-5), over the tolerance. Three times
/// larger weights: largest gradient 0.13, worst error 1.8e-7, as with a trained autoencoder
/// (the default one of `advmnist dae train`: 1.1e-7 on the same image).
fn random_dae() -> Autoencoder<f32> {
    let mut dae = Autoencoder::<f32>::zeros();
    for (l, layer) in dae.layers.iter_mut().enumerate() {
        let a = 3.0 * (6.0 / layer.weight.ncols() as f32).sqrt();
        layer.weight = advmnist::testutil::random_array(layer.weight.raw_dim(), 50 + l as u64)
            .mapv(|w: f32| a * w);
    }
    dae
}

fn report_text(r: &gradcheck::GradcheckReport) -> String {
    gradcheck::format_report(r)
}

#[test]
fn gradcheck_passes_on_a_committee_of_two_trained_members() {
    let (x, y) = quick_digit(0);
    let r = gradcheck_committee(&quick_members_f64(), x.view(), &y);
    let text = report_text(&r);
    assert!(r.pass(), "{text}");
    let names: Vec<&str> = r.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["committee.d_member_logits", "committee.logits_vjp", "input"]
    );
    assert_eq!(r.tensors[0].smooth, 2 * 10);
    let input = &r.tensors[2];
    assert_eq!(input.smooth + input.kinks, 784);
    assert!(input.kinks > 0 && input.smooth > 0, "{text}");
    assert!(text.contains("committee of 2 members"), "{text}");
}

/// The committee's pieces on test image 1: members, the right logit gradients and input
/// gradient, the numeric ones (computed once: they are the expensive part).
struct CommitteeCase {
    members: Vec<LeNet<f64>>,
    x: Array4<f64>,
    y: [u8; 1],
    d: Vec<ndarray::Array2<f64>>,
    numeric_d: Vec<f64>,
    numeric: Array4<f64>,
    kinks: Array4<bool>,
}

fn committee_case() -> &'static CommitteeCase {
    static C: OnceLock<CommitteeCase> = OnceLock::new();
    C.get_or_init(|| {
        let members = quick_members_f64();
        let (x, y) = quick_digit(1);
        let logits: Vec<_> = members.iter().map(|m| m.logits(x.view())).collect();
        let (_, d) = member_logit_gradients_exact(&logits, &y);
        let numeric_d = numeric_member_logit_gradient(&logits, &y)
            .iter()
            .flat_map(|a| a.iter().copied().collect::<Vec<_>>())
            .collect();
        let nets: Vec<&LeNet<f64>> = members.iter().collect();
        let views: Vec<_> = d.iter().map(|d| d.view()).collect();
        let (numeric, kinks) = numeric_input_gradient_through(&NoStages, &nets, x.view(), &views);
        CommitteeCase {
            members,
            x,
            y,
            d,
            numeric_d,
            numeric,
            kinks,
        }
    })
}

/// A committee gradient with one member's weight wrong (member 1's `w_1 (p_1 - e_y)` doubled,
/// as if its share of `pbar_y` were counted twice) FAILS, in the logit link and at the pixels;
/// the right one passes against the same differences.
#[test]
fn gradcheck_fails_on_a_committee_gradient_with_a_wrong_member_weight() {
    let c = committee_case();
    let flat = |d: &[ndarray::Array2<f64>]| -> Vec<f64> {
        d.iter().flat_map(|a| a.iter().copied()).collect()
    };
    let none = vec![false; c.numeric_d.len()];
    let right = committee_input_gradient(&c.members, c.x.view(), &c.d);
    assert!(compare("d", &flat(&c.d), &c.numeric_d, &none).pass);
    assert!(check(&right, &c.numeric, &c.kinks).pass);
    let mut wrong = c.d.clone();
    wrong[0] *= 2.0;
    assert!(!compare("d", &flat(&wrong), &c.numeric_d, &none).pass);
    let wrong_input = committee_input_gradient(&c.members, c.x.view(), &wrong);
    let result = check(&wrong_input, &c.numeric, &c.kinks);
    assert!(!result.pass, "{result:?}");
    // And with the members' weights swapped, as if each were the other's share.
    let logits: Vec<_> = c.members.iter().map(|m| m.logits(c.x.view())).collect();
    let w = advmnist::models::committee::member_weights(
        &advmnist::models::committee::log_probs(&logits),
        &c.y,
    );
    let mut swapped = c.d.clone();
    swapped[0] *= w[1][0] / w[0][0];
    swapped[1] *= w[0][0] / w[1][0];
    assert!(
        (w[0][0] - w[1][0]).abs() > 0.05,
        "the members' weights {} and {} are too close for a swap to matter",
        w[0][0],
        w[1][0]
    );
    let swapped_input = committee_input_gradient(&c.members, c.x.view(), &swapped);
    assert!(!check(&swapped_input, &c.numeric, &c.kinks).pass);
}

/// A committee of one is its member: its `committee.d_member_logits` and `input` checks are
/// one LeNet's `d_logits` and `input` checks, number for number.
#[test]
fn gradcheck_of_a_committee_of_one_is_the_single_models() {
    let f = fixture();
    let net = fixture_net(&f);
    let (x, labels) = fixture_images(&f);
    let (xi, y) = (image(&x, 2), &labels[2..3]);
    let single = gradcheck::gradcheck(&net, xi.view(), y, 1, 1);
    let one = gradcheck_committee(std::slice::from_ref(&net), xi.view(), y);
    assert!(one.pass(), "{}", report_text(&one));
    let renamed = |t: &gradcheck::TensorCheck, name: &str| gradcheck::TensorCheck {
        name: name.into(),
        ..t.clone()
    };
    assert_eq!(renamed(&one.tensors[0], "d_logits"), single.tensors[0]);
    assert_eq!(one.tensors[2], single.tensors[1]);
    assert!(one.tensors[2].kinks > 0);
    assert!(report_text(&one).contains("committee of 1 member,"));
}

#[test]
fn gradcheck_passes_on_noisy_lowpass_and_lenet() {
    let (x, y) = quick_digit(2);
    let stages = vec![Stage::LowPass(LowPassFilter::study(5, 0.2, 1).unwrap())];
    let r = gradcheck_pipeline(&stages, &quick().members[0].cast(), x.view(), &y);
    let text = report_text(&r);
    assert!(r.pass(), "{text}");
    assert_eq!(r.tensors[1].smooth + r.tensors[1].kinks, 784);
    // The blur leaves the far background at exactly 0: tied pooling windows, kinks.
    assert!(r.tensors[1].kinks > 0, "{text}");
    assert!(text.contains("lowpass:5,noise=0.2") && text.contains("held fixed"));
}

#[test]
fn gradcheck_passes_on_an_autoencoder_and_lenet() {
    let (x, y) = quick_digit(3);
    let stages = vec![Stage::Autoencoder {
        name: "random".into(),
        net: Box::new(random_dae()),
    }];
    let r = gradcheck_pipeline(&stages, &quick().members[1].cast(), x.view(), &y);
    let text = report_text(&r);
    assert!(r.pass(), "{text}");
    // The gradient reaches the pixels through the autoencoder: far from zero everywhere it
    // matters (a check of zeros against zeros would pass anything).
    let worst = r.tensors[1].worst_smooth.as_ref().unwrap();
    assert!(worst.analytic != 0.0 || worst.numeric != 0.0, "{text}");
    assert!(text.contains("dae:random"), "{text}");
}

/// An asymmetric filter kernel tells the correlation (the forward) from its transpose (the
/// backward): the library's backward passes, and a backward that forgets to flip the kernel
/// (the blur applied to the upstream gradient, right only for a symmetric kernel) FAILS.
#[test]
fn gradcheck_fails_on_a_lowpass_backward_with_an_unflipped_kernel() {
    let f = LowPassFilter::custom(ndarray::arr1(&[0.55, 0.3, 0.15]), 0.0, 1).unwrap();
    let stages = vec![Stage::LowPass(f.clone())];
    let (x, y) = quick_digit(0);
    let net = quick().members[0].cast::<f64>();
    let at = StagesAt::<f64>::at(&stages, x.view());
    let (d_logits, right) =
        advmnist::audit::pipeline::pipeline_input_gradient(&at, &net, x.view(), &y);
    let (numeric, kinks) =
        numeric_input_gradient_through(&at, &[&net], x.view(), &[d_logits.view()]);
    let good = check(&right, &numeric, &kinks);
    assert!(good.pass, "{good:?}");
    let (_, g) = net.input_gradient(at.forward(x.view()).output.view(), &y);
    let unflipped = f.blur(g.view());
    let bad = check(&unflipped, &numeric, &kinks);
    assert!(!bad.pass, "{bad:?}");
    assert!(bad.worst_smooth.unwrap().relative_error > 0.1);
}

/// The f32 traces end with the gradient the library's classifiers give, bit for bit: the
/// committee's `backward.input` is `Committee::input_gradient`, the pipeline's `backward.pre1`
/// the white-box `Pipeline::input_gradient` of draw 0 (one EOT draw).
#[test]
fn committee_and_pipeline_traces_end_with_the_classifiers_gradients() {
    let q = quick();
    let x = image(&q.test.images, 1);
    let y = [q.test.labels[1]];
    let t = trace_committee(&q.members, x.view(), y[0]);
    let names: Vec<&str> = t.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, committee_tensor_names(2));
    let committee = Committee::new(q.members.iter().map(|m| m as &dyn Classifier).collect());
    let (loss, dx) = committee.input_gradient(x.view(), &y);
    assert_eq!(t.get("backward.input").unwrap(), &dx.into_dyn());
    assert_eq!(t.get("committee.loss").unwrap(), &loss.into_dyn());
    // A committee of one: member1's backward is LeNet's own trace's, bit for bit.
    let one = trace_committee(&q.members[..1], x.view(), y[0]);
    let alone = trace(&q.members[0], x.view(), y[0]);
    for name in ["backward.logits", "backward.input", "grad.conv1.weight"] {
        assert_eq!(
            one.get(&format!("member1.{name}")),
            alone.get(name),
            "{name}"
        );
    }
    assert_eq!(one.get("backward.input"), alone.get("backward.input"));

    let stages = vec![
        Stage::LowPass(LowPassFilter::study(5, 0.2, 3).unwrap()),
        Stage::Autoencoder {
            name: "random".into(),
            net: Box::new(random_dae()),
        },
    ];
    let t = trace_pipeline(&stages, &q.members[0], x.view(), y[0]);
    let mut pipeline = Pipeline::new(stages.clone(), &q.members[0], AttackThrough::Pipeline);
    pipeline.eot_samples = 1;
    let (_, dx) = pipeline.input_gradient(x.view(), &y);
    assert_eq!(t.get("backward.pre1").unwrap(), &dx.into_dyn());
    assert_eq!(
        t.get("forward.input").unwrap(),
        &pipeline.preprocess(x.view(), 0).into_dyn()
    );
    assert_eq!(t.get("pre1.noisy").unwrap().shape(), &[1, 1, 28, 28]);
}

/// Two model files of the [`quick`] members and a random autoencoder's file.
fn quick_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use advmnist::models::file::{save_model, ModelMeta};
    let meta = ModelMeta {
        dropout: DropoutRates::NONE,
        seed: 1,
        iterations: 30,
        data_sha256: "test".into(),
        extra: Default::default(),
    };
    let paths = [
        dir.join("m1.safetensors"),
        dir.join("m2.safetensors"),
        dir.join("dae.safetensors"),
    ];
    save_model(&paths[0], &quick().members[0], &meta).unwrap();
    save_model(&paths[1], &quick().members[1], &meta).unwrap();
    save_model(&paths[2], &random_dae(), &meta).unwrap();
    let [a, b, c] = paths;
    (a, b, c)
}

#[test]
fn gradcheck_and_trace_commands_take_committees_and_pipelines_and_refuse_bad_input() {
    let dir = TempDir::new().unwrap();
    let (m1, m2, dae) = quick_files(dir.path());
    let spec = format!("{},{}", s(&m1), s(&m2));

    let out = ok(&["gradcheck", "--committee", &spec, "--images", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("PASS").count(), 4, "{text}");
    assert!(text.contains("committee.d_member_logits"), "{text}");

    let out = ok(&[
        "gradcheck",
        "--model",
        s(&m1),
        "--pre",
        "lowpass:5",
        "--images",
        "1",
        "--first",
        "1",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("PASS").count(), 3, "{text}");
    assert!(text.contains("pipeline lowpass:5 + LeNet"), "{text}");

    // trace: every member's and the committee's rows; the stages' in a file, with metadata.
    let out = ok(&["trace", "--committee", &spec, "--image", "0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("test image 0 (clean) through committee:"),
        "{text}"
    );
    for name in committee_tensor_names(2) {
        assert!(
            text.contains(&format!("\n{name} ")),
            "no row for {name}:\n{text}"
        );
    }
    let file = dir.path().join("p.safetensors");
    let dae_stage = format!("dae:{}", s(&dae));
    ok(&[
        "trace",
        "--model",
        s(&m1),
        "--pre",
        "lowpass:3,noise=0.1",
        "--pre",
        &dae_stage,
        "--image",
        "5",
        "--noise",
        "fgsm",
        "--level",
        "0.1",
        "--out",
        s(&file),
    ]);
    let bytes = std::fs::read(&file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in [
        "image.clean",
        "image.perturbed",
        "pre.input",
        "pre1.noise",
        "pre1.noisy",
        "pre1.output",
        "pre2.output",
        "forward.input",
        "backward.input",
        "backward.pre2",
        "backward.pre1",
    ] {
        assert!(st.tensor(name).is_ok(), "{name} missing");
    }
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["pre"], format!("lowpass:3,noise=0.1 + {dae_stage}"));

    // Bad input, each named, each before any work.
    let e = err(&["gradcheck", "--committee", &spec, "--model", s(&m1)]);
    assert!(e.contains("--committee") && e.contains("--model"), "{e}");
    let e = err(&["gradcheck", "--pre", "lowpass:5"]);
    assert!(e.contains("--model"), "{e}");
    let e = err(&["gradcheck", "--committee", &spec, "--pre", "lowpass:5"]);
    assert!(e.contains("--pre goes with --model"), "{e}");
    let e = err(&[
        "trace",
        "--committee",
        &spec,
        "--pre",
        "lowpass:5",
        "--image",
        "0",
    ]);
    assert!(e.contains("--pre goes with --model"), "{e}");
    let e = err(&["gradcheck", "--committee", &spec, "--params", "5"]);
    assert!(e.contains("--params"), "{e}");
    // An autoencoder's file where a LeNet is expected: as the model, as a member; and a LeNet
    // where an autoencoder is expected.
    let e = err(&["gradcheck", "--model", s(&dae)]);
    assert!(
        e.contains("dae.safetensors") && e.contains("denoising autoencoder"),
        "{e}"
    );
    let e = err(&[
        "gradcheck",
        "--committee",
        &format!("{},{}", s(&m1), s(&dae)),
    ]);
    assert!(
        e.contains("dae.safetensors") && e.contains("denoising autoencoder"),
        "{e}"
    );
    let e = err(&[
        "trace",
        "--model",
        s(&dae),
        "--pre",
        "lowpass:5",
        "--image",
        "0",
    ]);
    assert!(
        e.contains("dae.safetensors") && e.contains("denoising autoencoder"),
        "{e}"
    );
    let e = err(&[
        "gradcheck",
        "--model",
        s(&m1),
        "--pre",
        &format!("dae:{}", s(&m2)),
    ]);
    assert!(
        e.contains("--pre dae:") && e.contains("m2.safetensors"),
        "{e}"
    );
    let e = err(&["gradcheck", "--model", s(&m1), "--pre", "lowpass:4"]);
    assert!(e.contains("--pre lowpass:4"), "{e}");
    // The trace file may not overwrite a member or the autoencoder.
    let e = err(&[
        "trace",
        "--committee",
        &spec,
        "--image",
        "0",
        "--out",
        s(&m2),
    ]);
    assert!(e.contains("--out") && e.contains("m2.safetensors"), "{e}");
    let e = err(&[
        "trace",
        "--model",
        s(&m1),
        "--pre",
        &dae_stage,
        "--image",
        "0",
        "--out",
        s(&dae),
    ]);
    assert!(e.contains("--out") && e.contains("dae.safetensors"), "{e}");
}
