//! Every LeNet layer's forward and backward passes at the profile's batch size, and the SGD
//! update, each timed on its own inputs (made once by running the network's passes in order),
//! with the work it must do: the FLOPs of its products ([`super::shapes`]) or, for passes that
//! only move data, the bytes of every tensor it reads or writes.

use super::measure::{measure, Measurement, Work, F32};
use super::shapes::lenet_gemm_shapes;
use crate::data::{IMAGE_SIDE, PIXELS};
use crate::kernels::parallel::IMAGES_PER_SUM;
use crate::layers::{conv, dense, maxpool, relu, softmax_xent};
use crate::models::lenet::LeNet;
use crate::optim::sgd::SgdMomentum;
use crate::rng::random_array;
use crate::rng::{stream, Purpose};
use ndarray::Axis;
use rayon::prelude::*;
use std::hint::black_box;

/// Every LeNet layer's passes and the SGD update, at `batch`, on the current pool.
pub fn layer_measurements(
    batch: usize,
    seconds: f64,
    progress: &(dyn Fn(&Measurement) + Sync),
) -> Vec<Measurement> {
    let net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let b = batch;
    let labels: Vec<u8> = (0..b).map(|i| (i % 10) as u8).collect();
    let x1 = random_array::<f32, _>((b, 1, IMAGE_SIDE, IMAGE_SIDE), 1).mapv(|v| 0.5 * (v + 1.0));
    let (y1, cache1) = conv::forward(x1.view(), &net.conv1);
    let (p1, pool1) = maxpool::forward(y1.view());
    let (y2, cache2) = conv::forward(p1.view(), &net.conv2);
    let (p2, pool2) = maxpool::forward(y2.view());
    let f1 = random_array::<f32, _>((b, 800), 4);
    let (h1, dense1) = dense::forward(f1.view(), &net.fc1);
    let (r1, relu1) = relu::forward(h1.view());
    let (z, dense2) = dense::forward(r1.view(), &net.fc2);
    let (_, loss) = softmax_xent::forward(z.view(), &labels);
    let (dy1, dp1) = (
        random_array::<f32, _>(y1.dim(), 2),
        random_array::<f32, _>(p1.dim(), 3),
    );
    let (dy2, dp2) = (
        random_array::<f32, _>(y2.dim(), 5),
        random_array::<f32, _>(p2.dim(), 6),
    );
    let (dh, dz) = (
        random_array::<f32, _>(h1.dim(), 7),
        random_array::<f32, _>(z.dim(), 8),
    );
    let shapes = lenet_gemm_shapes(batch);
    let flop_of = |product: &str| -> f64 {
        shapes
            .iter()
            .find(|s| s.product == product)
            .map_or(0.0, |s| s.flop() * s.count)
    };
    let size = |dims: &[usize]| F32 * dims.iter().product::<usize>() as f64;
    let mut figures = Vec::new();
    let mut add = |product: &str, what: &str, work: Work, step: &mut dyn FnMut()| {
        let figure = measure(
            format!("layer/{product}"),
            "layer",
            what.into(),
            work,
            seconds,
            step,
        );
        progress(&figure);
        figures.push(figure);
    };
    // Byte counts: every tensor a pass must read or write, once (argmax at 1 byte a value).
    let (x1s, y1s, p1s) = (size(&[b, PIXELS]), size(&[b, 20, 576]), size(&[b, 20, 144]));
    let (y2s, p2s) = (size(&[b, 50, 64]), size(&[b, 800]));
    let (w1, w2) = (size(&[20, 25]), size(&[50, 500]));
    let (wf1, wf2) = (size(&[500, 800]), size(&[10, 500]));
    let (h1s, zs) = (size(&[b, 500]), size(&[b, 10]));
    add(
        "conv1/forward",
        "conv1 forward (direct convolution)",
        Work::flop(flop_of("conv1/forward"), x1s + w1 + y1s),
        &mut || {
            black_box(conv::forward(x1.view(), &net.conv1));
        },
    );
    add(
        "conv1/weight_gradient",
        "conv1 weight gradient through pool1 (window sums, 8 images a group)",
        Work::flop(flop_of("conv1/weight_gradient"), p1s * 1.25 + x1s + w1),
        &mut || {
            let groups: Vec<_> = dp1
                .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                .into_par_iter()
                .zip(
                    pool1
                        .argmax
                        .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                        .into_par_iter(),
                )
                .zip(x1.axis_chunks_iter(Axis(0), IMAGES_PER_SUM).into_par_iter())
                .map(|((d, a), x)| conv::group_param_gradients_through_pool(d, a, x, 5))
                .collect();
            black_box(groups);
        },
    );
    add(
        "conv1/input_gradient",
        "conv1 input gradient (the attack's, not training's)",
        Work::flop(flop_of("conv1/input_gradient"), y1s + w1 + x1s),
        &mut || {
            black_box(conv::backward_input(dy1.view(), &cache1, &net.conv1));
        },
    );
    add(
        "pool1/forward",
        "pool1 forward (2x2 max)",
        Work::bytes(y1s + p1s * 1.25),
        &mut || {
            black_box(maxpool::forward(y1.view()));
        },
    );
    add(
        "pool1/backward",
        "pool1 backward",
        Work::bytes(p1s * 1.25 + y1s),
        &mut || {
            black_box(maxpool::backward(dp1.view(), &pool1));
        },
    );
    let mut conv2_grads = conv::ConvParams::zeros(50, 20, 5);
    add(
        "conv2/forward",
        if crate::kernels::conv_fma::chosen() {
            "conv2 forward (direct, conv_fma)"
        } else {
            "conv2 forward (im2col + sgemm)"
        },
        Work::flop(flop_of("conv2/forward"), p1s + w2 + y2s),
        &mut || {
            black_box(conv::forward(p1.view(), &net.conv2));
        },
    );
    add(
        "conv2/weight_gradient",
        if crate::kernels::conv_wgrad::chosen() {
            "conv2 weight gradient (direct, conv_wgrad)"
        } else {
            "conv2 weight gradient (im2col + sgemm)"
        },
        Work::flop(flop_of("conv2/weight_gradient"), y2s + p1s + 2.0 * w2),
        &mut || conv::backward_params(dy2.view(), &cache2, &mut conv2_grads),
    );
    add(
        "conv2/input_gradient",
        if crate::kernels::conv_igrad::chosen() {
            "conv2 input gradient (direct, conv_igrad)"
        } else {
            "conv2 input gradient (sgemm + col2im)"
        },
        Work::flop(flop_of("conv2/input_gradient"), y2s + w2 + p1s),
        &mut || {
            black_box(conv::backward_input(dy2.view(), &cache2, &net.conv2));
        },
    );
    add(
        "pool2/forward",
        "pool2 forward (2x2 max)",
        Work::bytes(y2s + p2s * 1.25),
        &mut || {
            black_box(maxpool::forward(y2.view()));
        },
    );
    add(
        "pool2/backward",
        "pool2 backward",
        Work::bytes(p2s * 1.25 + y2s),
        &mut || {
            black_box(maxpool::backward(dp2.view(), &pool2));
        },
    );
    // The dense layers' products: `kernels::dense_fma` at AVX2 and above, else sgemm.
    let product = if crate::kernels::dense_fma::chosen() {
        "dense_fma"
    } else {
        "sgemm"
    };
    let mut fc1_grads = dense::DenseParams::zeros(500, 800);
    add(
        "fc1/forward",
        &format!("fc1 forward ({product})"),
        Work::flop(flop_of("fc1/forward"), p2s + wf1 + h1s),
        &mut || {
            black_box(dense::forward(f1.view(), &net.fc1));
        },
    );
    add(
        "fc1/weight_gradient",
        &format!("fc1 weight gradient ({product}, accumulated)"),
        Work::flop(flop_of("fc1/weight_gradient"), h1s + p2s + 2.0 * wf1),
        &mut || dense::backward_params(dh.view(), &dense1, &mut fc1_grads),
    );
    add(
        "fc1/input_gradient",
        &format!("fc1 input gradient ({product})"),
        Work::flop(flop_of("fc1/input_gradient"), h1s + wf1 + p2s),
        &mut || {
            black_box(dense::backward_input(dh.view(), &net.fc1));
        },
    );
    add(
        "relu/forward",
        "ReLU forward (fc1's 500 outputs)",
        Work::bytes(2.0 * h1s),
        &mut || {
            black_box(relu::forward(h1.view()));
        },
    );
    add(
        "relu/backward",
        "ReLU backward",
        Work::bytes(3.0 * h1s),
        &mut || {
            black_box(relu::backward(dh.view(), &relu1));
        },
    );
    let mut fc2_grads = dense::DenseParams::zeros(10, 500);
    add(
        "fc2/forward",
        &format!("fc2 forward ({product})"),
        Work::flop(flop_of("fc2/forward"), h1s + wf2 + zs),
        &mut || {
            black_box(dense::forward(r1.view(), &net.fc2));
        },
    );
    add(
        "fc2/weight_gradient",
        &format!("fc2 weight gradient ({product}, accumulated)"),
        Work::flop(flop_of("fc2/weight_gradient"), zs + h1s + 2.0 * wf2),
        &mut || dense::backward_params(dz.view(), &dense2, &mut fc2_grads),
    );
    add(
        "fc2/input_gradient",
        &format!("fc2 input gradient ({product})"),
        Work::flop(flop_of("fc2/input_gradient"), zs + wf2 + h1s),
        &mut || {
            black_box(dense::backward_input(dz.view(), &net.fc2));
        },
    );
    add(
        "loss/forward",
        "softmax + cross-entropy forward",
        Work::bytes(3.0 * zs),
        &mut || {
            black_box(softmax_xent::forward(z.view(), &labels));
        },
    );
    add(
        "loss/backward",
        "softmax + cross-entropy backward",
        Work::bytes(2.0 * zs),
        &mut || {
            black_box(softmax_xent::backward(&loss, &labels, 1.0 / b as f32));
        },
    );
    // The SGD update reads weights, gradients and velocities and writes weights and
    // velocities: 5 values per parameter.
    let solver = SgdMomentum::LENET;
    let (mut params, grads, mut velocity) = (net.clone(), net.clone(), LeNet::zeros());
    let parameter_bytes = w1 + w2 + wf1 + wf2 + size(&[20 + 50 + 500 + 10]);
    let sgd = measure(
        "update/sgd".into(),
        "update",
        "SGD update with momentum and weight decay (all of LeNet's parameters)".into(),
        Work::bytes(5.0 * parameter_bytes),
        seconds,
        || solver.step(&mut params, &grads, &mut velocity, 1e-9),
    );
    progress(&sgd);
    figures.push(sgd);
    figures
}
