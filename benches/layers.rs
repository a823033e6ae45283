//! Criterion benchmarks: each layer's forward and backward at LeNet's shapes (batch 64), and
//! the three whole-network figures of `advmnist bench` (training step, input gradient,
//! inference at batch 1000). Run with `cargo bench`; `--threads` is RAYON_NUM_THREADS here.

use advmnist::data::IMAGE_SIDE;
use advmnist::kernels::parallel::IMAGES_PER_SUM;
use advmnist::layers::{conv, dense, maxpool};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::rng::{stream, Purpose};
use advmnist::testutil::random_array;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, Array2, ArrayView4, Axis, Ix1, Ix2, Ix4};
use std::hint::black_box;

const BATCH: usize = 64;

fn layers(c: &mut Criterion) {
    advmnist::tune_allocator();
    let net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let mut g = c.benchmark_group("layers");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, p, shape) in [
        ("conv1", &net.conv1, (BATCH, 1, IMAGE_SIDE, IMAGE_SIDE)),
        ("conv2", &net.conv2, (BATCH, 20, 12, 12)),
    ] {
        let x = random_array::<f32, Ix4>(shape, 1);
        g.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| black_box(conv::forward(x.view(), p)))
        });
        let (y, cache) = conv::forward(x.view(), p);
        let dy = random_array::<f32, Ix4>(y.dim(), 2);
        let mut grads = conv::ConvParams::zeros(p.weight.dim().0, p.weight.dim().1, 5);
        g.bench_function(BenchmarkId::new("backward_params", name), |b| {
            b.iter(|| conv::backward_params(dy.view(), &cache, &mut grads))
        });
        g.bench_function(BenchmarkId::new("backward_input", name), |b| {
            b.iter(|| black_box(conv::backward_input(dy.view(), &cache, p)))
        });
        // The im2col + GEMM paths that `kernels::conv_fma` (forward) and `kernels::conv_wgrad`
        // (weight gradient) replace for conv2 with the same bits, to show what the direct
        // kernels gain on this machine: the weight gradient group by group as
        // `backward_params` runs it, through the GEMM and through the dispatching function.
        if name == "conv2" {
            g.bench_function(BenchmarkId::new("forward_gemm", name), |b| {
                b.iter(|| black_box(conv::infer_gemm(x.view(), p)))
            });
            type GroupGradients =
                fn(ArrayView4<f32>, ArrayView4<f32>, usize) -> (Array2<f32>, Array1<f32>);
            let paths: [(&str, GroupGradients); 2] = [
                ("backward_params_gemm", conv::group_param_gradients_gemm),
                ("group_param_gradients", conv::group_param_gradients),
            ];
            for (id, path) in paths {
                g.bench_function(BenchmarkId::new(id, name), |b| {
                    b.iter(|| {
                        for (dyg, xg) in dy
                            .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                            .zip(x.axis_chunks_iter(Axis(0), IMAGES_PER_SUM))
                        {
                            black_box(path(dyg, xg, 5));
                        }
                    })
                });
            }
        }
    }
    for (name, shape) in [("pool1", (BATCH, 20, 24, 24)), ("pool2", (BATCH, 50, 8, 8))] {
        let x = random_array::<f32, Ix4>(shape, 3);
        g.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| black_box(maxpool::forward(x.view())))
        });
        let (y, cache) = maxpool::forward(x.view());
        g.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| black_box(maxpool::backward(y.view(), &cache)))
        });
    }
    // conv1's weight gradient as LeNet computes it: from pool1's gradient and argmax, per
    // group of 8 images (`conv::group_param_gradients_through_pool`).
    let x = random_array::<f32, Ix4>((BATCH, 1, IMAGE_SIDE, IMAGE_SIDE), 1);
    let (pooled, pool) = maxpool::forward(conv::forward(x.view(), &net.conv1).0.view());
    let d_pool = random_array::<f32, Ix4>(pooled.dim(), 2);
    g.bench_function(
        BenchmarkId::new("backward_params_through_pool", "conv1"),
        |b| {
            b.iter(|| {
                for ((dg, ag), xg) in d_pool
                    .axis_chunks_iter(Axis(0), IMAGES_PER_SUM)
                    .zip(pool.argmax.axis_chunks_iter(Axis(0), IMAGES_PER_SUM))
                    .zip(x.axis_chunks_iter(Axis(0), IMAGES_PER_SUM))
                {
                    black_box(conv::group_param_gradients_through_pool(dg, ag, xg, 5));
                }
            })
        },
    );
    let p = &net.fc1;
    let x = random_array::<f32, Ix2>((BATCH, 800), 4);
    g.bench_function(BenchmarkId::new("forward", "fc1"), |b| {
        b.iter(|| black_box(dense::forward(x.view(), p)))
    });
    let (y, cache) = dense::forward(x.view(), p);
    let dy = random_array::<f32, Ix2>(y.dim(), 5);
    let mut grads = dense::DenseParams {
        weight: random_array::<f32, Ix2>((500, 800), 6),
        bias: random_array::<f32, Ix1>(500, 7),
    };
    g.bench_function(BenchmarkId::new("backward_params", "fc1"), |b| {
        b.iter(|| dense::backward_params(dy.view(), &cache, &mut grads))
    });
    g.bench_function(BenchmarkId::new("backward_input", "fc1"), |b| {
        b.iter(|| black_box(dense::backward_input(dy.view(), p)))
    });
    g.finish();
}

fn network(c: &mut Criterion) {
    let net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let x =
        random_array::<f32, Ix4>((BATCH, 1, IMAGE_SIDE, IMAGE_SIDE), 8).mapv(|v| 0.5 * (v + 1.0));
    let labels: Vec<u8> = (0..BATCH).map(|i| (i % 10) as u8).collect();
    let mut g = c.benchmark_group("network");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("train_step_gradients", |b| {
        let mut rngs: Vec<_> = (0..BATCH as u64)
            .map(|i| stream(0, Purpose::Dropout, i))
            .collect();
        b.iter(|| {
            black_box(net.loss_and_gradients(x.view(), &labels, &DropoutRates::NONE, &mut rngs))
        })
    });
    g.bench_function("sgd_step", |b| {
        let solver = advmnist::optim::sgd::SgdMomentum::LENET;
        let (mut params, grads, mut velocity) = (net.clone(), net.clone(), LeNet::zeros());
        b.iter(|| solver.step(&mut params, &grads, &mut velocity, 1e-9))
    });
    g.bench_function("input_gradient", |b| {
        b.iter(|| black_box(net.input_gradient(x.view(), &labels)))
    });
    let xb = random_array::<f32, Ix4>((1000, 1, IMAGE_SIDE, IMAGE_SIDE), 9);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("inference_1000", |b| {
        b.iter(|| black_box(net.logits(xb.view())))
    });
    g.finish();
}

/// Plain sgemm at a large square size (the machine's GEMM peak) and at the shapes of LeNet's
/// grouped products, to tell how far each layer is from what the GEMM itself can do.
fn gemm_peak(c: &mut Criterion) {
    use advmnist::kernels::gemm::gemm;
    let mut g = c.benchmark_group("sgemm");
    for (m, k, n) in [
        (1024, 1024, 1024),
        (50, 500, 512),
        (50, 500, 64),
        (20, 25, 4608),
        (64, 800, 500),
        (500, 50, 512),
        (500, 50, 64),
    ] {
        let a = random_array::<f32, Ix2>((m, k), 1);
        let b = random_array::<f32, Ix2>((k, n), 2);
        let mut out = ndarray::Array2::<f32>::zeros((m, n));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64)); // FLOPs: read "elem/s" as FLOP/s
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| gemm(1.0, a.view(), b.view(), 0.0, out.view_mut()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = gemm_peak, layers, network
}
/// `criterion_main!` with one difference: every benchmark runs on a thread of the rayon pool, as
/// `advmnist` runs its commands (see `run` in `src/main.rs`), so that no parallel loop pays for
/// being handed over from a thread outside the pool.
fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a rayon thread pool");
    pool.install(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
