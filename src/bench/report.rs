//! `advmnist bench --report DIR`: what the machine can do and where advmnist's time goes.
//!
//! Measured on the spot, each figure as [`SAMPLES`] samples after a warm-up ([`super::stats`]):
//! - **limits**: `matrixmultiply`'s sgemm at LeNet's own GEMM shapes ([`lenet_gemm_shapes`],
//!   derived from the partitions in `kernels::parallel`) and at 1024^3, and a streaming triad
//!   (`a = b + 3c`) for memory and last-level-cache bandwidth, on 1..N threads. On t threads, t single-threaded sgemm
//!   calls run side by side, each on its own output, as advmnist runs its products;
//! - **layers**: every LeNet layer's forward and backward passes at `--batch`, and the SGD
//!   update, on N threads, each against its ceiling: sgemm at the shape of its own products
//!   (layers that multiply) or the triad's bandwidth, from cache when the pass's data fits in
//!   the last-level cache, else from memory (passes that only move data);
//! - **workloads**: the six whole-network workloads of `advmnist bench` on 1..N threads (the
//!   scaling curve), as a share of sgemm at 1024^3 and, for LeNet's, of sgemm at the
//!   workload's own shapes.
//!
//! The JSON keys are documented in docs/performance.md ("bench.json"), which a test compares
//! with what [`Report`] serialises to; `format` and `version` say which layout a file has.
//! Laying the report out as Markdown and SVG is `report::bench`'s job.

use super::for_each_workload;
use super::machine::Machine;
use super::stats::{sample, spread_warning, Summary, SAMPLES};
use crate::kernels::gemm::gemm;
use crate::kernels::parallel::{images_per_product, piece_len, IMAGES_PER_SUM};
use crate::layers::{conv, dense, maxpool, relu, softmax_xent};
use crate::models::lenet::LeNet;
use crate::optim::sgd::SgdMomentum;
use crate::rng::{random_array, stream, Purpose};
use ndarray::{Array2, Axis, Ix2, Ix4};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// The `format` of every report file: what `--compare` checks first.
pub const FORMAT: &str = "advmnist-bench-report";
/// The layout's version: raised when a key changes meaning or goes away (adding keys keeps it).
pub const VERSION: u32 = 1;
/// The large square sgemm whose throughput is "the machine's peak" here.
pub const LARGE_SQUARE: usize = 1024;
/// Bytes of an f32.
const F32: f64 = 4.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub version: u32,
    pub machine: Machine,
    pub settings: Settings,
    pub ceilings: Ceilings,
    pub figures: Vec<Figure>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub seconds_per_figure: f64,
    pub samples_per_figure: usize,
    pub batch: usize,
    pub max_threads: usize,
    /// When the report started, in seconds since 1970-01-01 UTC.
    pub unix_time: u64,
}

/// The machine's measured limits on N threads (medians), which the shares refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub sgemm_peak_gflop_per_s: f64,
    pub sgemm_peak_figure: String,
    /// The triad from memory (arrays twice the largest cache).
    pub bandwidth_gb_per_s: f64,
    pub bandwidth_figure: String,
    /// The triad in the last-level cache (3 arrays of [`CACHE_TRIAD_BYTES`]).
    pub cache_bandwidth_gb_per_s: f64,
    pub cache_bandwidth_figure: String,
}

/// Bytes of each array of the in-cache triad: 3 MiB in all, inside the last-level cache of any
/// machine of the project's kind, about the size of the data a layer pass moves at batch 64.
pub const CACHE_TRIAD_BYTES: usize = 1 << 20;

/// One measured figure. `rate` is in `unit` (higher is faster); `seconds` is per call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Stable name, e.g. `sgemm/50x500x256/t2`, `layer/conv2/forward`, `workload/train/t1`.
    pub id: String,
    /// `sgemm`, `bandwidth`, `layer`, `update` or `workload`.
    pub group: String,
    pub what: String,
    pub threads: usize,
    /// `GFLOP/s`, `GB/s` or `img/s`.
    pub unit: String,
    /// One call's work in the unit's numerator (GFLOP, GB or images).
    pub work_per_call: f64,
    /// Nominal FLOPs of one call (a multiply-add counts 2); 0 for data movement.
    pub flop_per_call: f64,
    /// Bytes one call must read and write at least (each tensor once); 0 where not counted.
    pub bytes_per_call: f64,
    /// `flop_per_call / bytes_per_call`, where both are counted.
    pub intensity_flop_per_byte: Option<f64>,
    pub samples: usize,
    pub seconds: Summary,
    pub rate: Summary,
    /// (max - min) / median of the samples.
    pub spread: f64,
    pub gflop_per_s: Option<f64>,
    pub gb_per_s: Option<f64>,
    /// GFLOP/s as a share of sgemm at 1024^3 on as many threads.
    pub share_of_peak: Option<f64>,
    /// What this figure is compared with, and that figure's rate (GFLOP/s or GB/s).
    pub ceiling: Option<String>,
    pub ceiling_rate: Option<f64>,
    pub share_of_ceiling: Option<f64>,
}

/// How long to measure, and on how many threads at most.
#[derive(Clone, Copy, Debug)]
pub struct ReportConfig {
    pub batch: usize,
    pub seconds_per_figure: f64,
    pub max_threads: usize,
}

/// An sgemm shape `C (m, n) = A (m, k) x B (k, n)`, and which LeNet product it is.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmShape {
    /// `layer/pass`, as in the layer figures' ids, or `square` for the peak.
    pub product: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// How many such products one pass over the batch makes (fractional when the last of
    /// them is smaller).
    pub count: f64,
}

impl GemmShape {
    pub fn name(&self) -> String {
        format!("{}x{}x{}", self.m, self.k, self.n)
    }
    pub fn flop(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// LeNet's GEMM shapes at `batch`, as its layers cut their products (`kernels::parallel`):
/// conv2's forward in groups of `images_per_product(64)` images, the convolutions' weight
/// gradients per `IMAGES_PER_SUM` images, their input gradients per image, the dense layers
/// cut into `piece_len` pieces. conv1's forward and weight gradient no longer use a GEMM
/// (`kernels::direct`, the window sums through pool1): their shapes are those of the GEMM
/// path they replaced, to compare with.
pub fn lenet_gemm_shapes(batch: usize) -> Vec<GemmShape> {
    let net = LeNet::<f32>::zeros();
    let mut shapes = Vec::new();
    let mut push = |product: &str, m: usize, k: usize, n: usize, count: f64| {
        shapes.push(GemmShape {
            product: product.into(),
            m,
            k,
            n,
            count,
        })
    };
    // Convolutions: W (O, C*K*K) x cols (C*K*K, G*P), for P output positions per image.
    for (name, p, side) in [("conv1", &net.conv1, 28), ("conv2", &net.conv2, 12)] {
        let (o, c, k, _) = p.weight.dim();
        let positions = (side - k + 1) * (side - k + 1);
        let ckk = c * k * k;
        let group = images_per_product(positions).min(batch);
        let per_sum = IMAGES_PER_SUM.min(batch);
        push(
            &format!("{name}/forward"),
            o,
            ckk,
            group * positions,
            batch as f64 / group as f64,
        );
        // dW (O, C*K*K) = dY (O, G*P) x cols^T (G*P, C*K*K)
        push(
            &format!("{name}/weight_gradient"),
            o,
            per_sum * positions,
            ckk,
            batch as f64 / per_sum as f64,
        );
        // dcols (C*K*K, P) = W^T (C*K*K, O) x dY (O, P), per image
        push(
            &format!("{name}/input_gradient"),
            ckk,
            o,
            positions,
            batch as f64,
        );
    }
    for (name, p) in [("fc1", &net.fc1), ("fc2", &net.fc2)] {
        let (o, i) = p.weight.dim();
        let work = batch * o * i;
        // Y[:, piece] (N, o) += X (N, I) x W[piece, :]^T (I, o)
        let piece = piece_len(o, work);
        push(
            &format!("{name}/forward"),
            batch,
            i,
            piece,
            o as f64 / piece as f64,
        );
        // dW[piece, :] (o, I) += dY[:, piece]^T (o, N) x X (N, I)
        push(
            &format!("{name}/weight_gradient"),
            piece,
            batch,
            i,
            o as f64 / piece as f64,
        );
        // dX[:, piece] (N, i) = dY (N, O) x W[:, piece] (O, i)
        let piece = piece_len(i, work);
        push(
            &format!("{name}/input_gradient"),
            batch,
            o,
            piece,
            i as f64 / piece as f64,
        );
    }
    shapes
}

/// Runs `f` on a fresh pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("setting up a pool of {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

/// What a figure counts per call.
struct Work {
    unit: &'static str,
    /// In the unit's numerator.
    per_call: f64,
    flop: f64,
    bytes: f64,
}

impl Work {
    fn flop(flop: f64, bytes: f64) -> Work {
        Work {
            unit: "GFLOP/s",
            per_call: flop / 1e9,
            flop,
            bytes,
        }
    }
    fn bytes(bytes: f64) -> Work {
        Work {
            unit: "GB/s",
            per_call: bytes / 1e9,
            flop: 0.0,
            bytes,
        }
    }
}

/// Times `step` and describes it; shares are filled in later, once the ceilings are known.
fn measure(
    id: String,
    group: &str,
    what: String,
    work: Work,
    seconds: f64,
    step: impl FnMut(),
) -> Figure {
    let times = Summary::of(&sample(seconds, step));
    let per_second = |amount: f64| (amount > 0.0).then(|| amount / 1e9 / times.median);
    Figure {
        id,
        group: group.into(),
        what,
        threads: rayon::current_num_threads(),
        unit: work.unit.into(),
        work_per_call: work.per_call,
        flop_per_call: work.flop,
        bytes_per_call: work.bytes,
        intensity_flop_per_byte: (work.flop > 0.0 && work.bytes > 0.0)
            .then(|| work.flop / work.bytes),
        samples: SAMPLES,
        seconds: times,
        rate: times.as_rate(work.per_call),
        spread: times.spread(),
        gflop_per_s: per_second(work.flop),
        gb_per_s: per_second(work.bytes),
        share_of_peak: None,
        ceiling: None,
        ceiling_rate: None,
        share_of_ceiling: None,
    }
}

/// `threads` copies of one sgemm side by side, each on its own output.
fn sgemm_figure(shape: &GemmShape, seconds: f64) -> Figure {
    let t = rayon::current_num_threads();
    let (m, k, n) = (shape.m, shape.k, shape.n);
    let a = random_array::<f32, Ix2>((m, k), 1);
    let b = random_array::<f32, Ix2>((k, n), 2);
    let mut outputs: Vec<Array2<f32>> = (0..t).map(|_| Array2::zeros((m, n))).collect();
    let bytes = F32 * (m * k + k * n + m * n) as f64;
    let what = if shape.product == "square" {
        "large square sgemm (the peak)".to_string()
    } else {
        format!("sgemm at {}'s shape", shape.product)
    };
    measure(
        format!("sgemm/{}/t{t}", shape.name()),
        "sgemm",
        what,
        Work::flop(shape.flop() * t as f64, bytes * t as f64),
        seconds,
        || {
            // One product per thread: rayon hands each of the t outputs to its own worker.
            outputs
                .par_iter_mut()
                .for_each(|c| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()))
        },
    )
}

/// The streaming triad `a = b + 3 c` over three arrays of `elements` f32, cut into one
/// contiguous piece per thread. Counts 12 bytes per element (two reads, one write). `level`
/// (`memory` or `cache`) names where the arrays live.
fn triad_figure(level: &str, elements: usize, seconds: f64) -> Figure {
    let t = rayon::current_num_threads();
    let b = vec![1.0f32; elements];
    let c = vec![2.0f32; elements];
    let mut a = vec![0.0f32; elements];
    let piece = elements.div_ceil(t);
    measure(
        format!("bandwidth/{level}/t{t}"),
        "bandwidth",
        format!(
            "{level} bandwidth: a = b + 3c over 3 x {} MiB",
            (elements * 4) as f64 / f64::from(1 << 20)
        ),
        Work::bytes(3.0 * F32 * elements as f64),
        seconds,
        || {
            a.par_chunks_mut(piece)
                .zip(b.par_chunks(piece))
                .zip(c.par_chunks(piece))
                .for_each(|((a, b), c)| {
                    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + 3.0 * c;
                    }
                });
            black_box(&a);
        },
    )
}

/// Every LeNet layer's passes and the SGD update, at `batch`, on the current pool.
fn layer_figures(batch: usize, seconds: f64, progress: &(dyn Fn(&Figure) + Sync)) -> Vec<Figure> {
    let net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let b = batch;
    let labels: Vec<u8> = (0..b).map(|i| (i % 10) as u8).collect();
    let x1 = random_array::<f32, Ix4>((b, 1, 28, 28), 1).mapv(|v| 0.5 * (v + 1.0));
    let (y1, cache1) = conv::forward(x1.view(), &net.conv1);
    let (p1, pool1) = maxpool::forward(y1.view());
    let (y2, cache2) = conv::forward(p1.view(), &net.conv2);
    let (p2, pool2) = maxpool::forward(y2.view());
    let f1 = random_array::<f32, Ix2>((b, 800), 4);
    let (h1, dense1) = dense::forward(f1.view(), &net.fc1);
    let (r1, relu1) = relu::forward(h1.view());
    let (z, dense2) = dense::forward(r1.view(), &net.fc2);
    let (_, loss) = softmax_xent::forward(z.view(), &labels);
    let (dy1, dp1) = (
        random_array::<f32, Ix4>(y1.dim(), 2),
        random_array::<f32, Ix4>(p1.dim(), 3),
    );
    let (dy2, dp2) = (
        random_array::<f32, Ix4>(y2.dim(), 5),
        random_array::<f32, Ix4>(p2.dim(), 6),
    );
    let (dh, dz) = (
        random_array::<f32, Ix2>(h1.dim(), 7),
        random_array::<f32, Ix2>(z.dim(), 8),
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
    let (x1s, y1s, p1s) = (size(&[b, 784]), size(&[b, 20, 576]), size(&[b, 20, 144]));
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
        "conv2 forward (im2col + sgemm)",
        Work::flop(flop_of("conv2/forward"), p1s + w2 + y2s),
        &mut || {
            black_box(conv::forward(p1.view(), &net.conv2));
        },
    );
    add(
        "conv2/weight_gradient",
        "conv2 weight gradient (im2col + sgemm)",
        Work::flop(flop_of("conv2/weight_gradient"), y2s + p1s + 2.0 * w2),
        &mut || conv::backward_params(dy2.view(), &cache2, &mut conv2_grads),
    );
    add(
        "conv2/input_gradient",
        "conv2 input gradient (sgemm + col2im)",
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
    let mut fc1_grads = dense::DenseParams::zeros(500, 800);
    add(
        "fc1/forward",
        "fc1 forward (sgemm)",
        Work::flop(flop_of("fc1/forward"), p2s + wf1 + h1s),
        &mut || {
            black_box(dense::forward(f1.view(), &net.fc1));
        },
    );
    add(
        "fc1/weight_gradient",
        "fc1 weight gradient (sgemm, accumulated)",
        Work::flop(flop_of("fc1/weight_gradient"), h1s + p2s + 2.0 * wf1),
        &mut || dense::backward_params(dh.view(), &dense1, &mut fc1_grads),
    );
    add(
        "fc1/input_gradient",
        "fc1 input gradient (sgemm)",
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
        "fc2 forward (sgemm)",
        Work::flop(flop_of("fc2/forward"), h1s + wf2 + zs),
        &mut || {
            black_box(dense::forward(r1.view(), &net.fc2));
        },
    );
    add(
        "fc2/weight_gradient",
        "fc2 weight gradient (sgemm, accumulated)",
        Work::flop(flop_of("fc2/weight_gradient"), zs + h1s + 2.0 * wf2),
        &mut || dense::backward_params(dz.view(), &dense2, &mut fc2_grads),
    );
    add(
        "fc2/input_gradient",
        "fc2 input gradient (sgemm)",
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

/// The layer passes whose products each LeNet workload runs, per image.
fn workload_products(workload: &str) -> &'static [&'static str] {
    const FORWARD: [&str; 4] = [
        "conv1/forward",
        "conv2/forward",
        "fc1/forward",
        "fc2/forward",
    ];
    match workload {
        "train" => &[
            "conv1/forward",
            "conv2/forward",
            "fc1/forward",
            "fc2/forward",
            "conv1/weight_gradient",
            "conv2/weight_gradient",
            "fc1/weight_gradient",
            "fc2/weight_gradient",
            "conv2/input_gradient",
            "fc1/input_gradient",
            "fc2/input_gradient",
        ],
        "fgsm" => &[
            "conv1/forward",
            "conv2/forward",
            "fc1/forward",
            "fc2/forward",
            "conv1/input_gradient",
            "conv2/input_gradient",
            "fc1/input_gradient",
            "fc2/input_gradient",
        ],
        "infer" => &FORWARD,
        _ => &[],
    }
}

/// Measures a whole report. `progress` sees every figure as it is measured.
pub fn run(cfg: &ReportConfig, progress: &(dyn Fn(&Figure) + Sync)) -> Result<Report, String> {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::detect(cfg.max_threads);
    let seconds = cfg.seconds_per_figure;
    let mut shapes = lenet_gemm_shapes(cfg.batch);
    shapes.push(GemmShape {
        product: "square".into(),
        m: LARGE_SQUARE,
        k: LARGE_SQUARE,
        n: LARGE_SQUARE,
        count: 1.0,
    });
    let mut unique: Vec<GemmShape> = Vec::new();
    for s in shapes {
        if !unique.iter().any(|u| u.name() == s.name()) {
            unique.push(s);
        }
    }
    // Each array twice the largest cache (32 to 64 MiB), so that the triad streams from memory.
    let triad_elements = machine
        .largest_cache_bytes()
        .map_or(8 << 20, |b| (b as usize / 2).clamp(8 << 20, 16 << 20));
    let mut figures = Vec::new();
    for t in 1..=cfg.max_threads {
        figures.extend(on_threads(t, || {
            let mut done = Vec::new();
            for shape in &unique {
                let f = sgemm_figure(shape, seconds);
                progress(&f);
                done.push(f);
            }
            for (level, elements) in [("memory", triad_elements), ("cache", CACHE_TRIAD_BYTES / 4)]
            {
                let f = triad_figure(level, elements, seconds);
                progress(&f);
                done.push(f);
            }
            done
        })?);
    }
    figures.extend(on_threads(cfg.max_threads, || {
        layer_figures(cfg.batch, seconds, progress)
    })?);
    for t in 1..=cfg.max_threads {
        figures.extend(on_threads(t, || {
            let mut done = Vec::new();
            for_each_workload(cfg.batch, |w, step| {
                let images = w.images_per_step(cfg.batch) as f64;
                let f = measure(
                    format!("workload/{}/t{t}", w.name),
                    "workload",
                    w.what.into(),
                    Work {
                        unit: "img/s",
                        per_call: images,
                        flop: images * w.flop_per_image,
                        bytes: 0.0,
                    },
                    seconds,
                    step,
                );
                progress(&f);
                done.push(f);
            });
            done
        })?);
    }
    Ok(assemble(machine, cfg, unix_time, figures))
}

/// Fills in every figure's shares from the measured ceilings, and the warnings.
fn assemble(
    machine: Machine,
    cfg: &ReportConfig,
    unix_time: u64,
    mut figures: Vec<Figure>,
) -> Report {
    let n = cfg.max_threads;
    let rate_of =
        |figures: &[Figure], id: &str| figures.iter().find(|f| f.id == id).map(|f| f.rate.median);
    let square = format!("{LARGE_SQUARE}x{LARGE_SQUARE}x{LARGE_SQUARE}");
    let peak_id = |t: usize| format!("sgemm/{square}/t{t}");
    let shapes = lenet_gemm_shapes(cfg.batch);
    let largest_cache = machine.largest_cache_bytes().unwrap_or(0) as f64;
    let snapshot = figures.clone();
    for f in &mut figures {
        let t = f.threads;
        if let (Some(g), Some(peak)) = (f.gflop_per_s, rate_of(&snapshot, &peak_id(t))) {
            f.share_of_peak = Some(g / peak);
        }
        let ceiling: Option<(String, Option<f64>)> = match f.group.as_str() {
            "layer" | "update" => {
                let product = f.id.trim_start_matches("layer/");
                match shapes.iter().find(|s| s.product == product) {
                    Some(s) => {
                        let id = format!("sgemm/{}/t{t}", s.name());
                        Some((id.clone(), rate_of(&snapshot, &id)))
                    }
                    None => {
                        // Data that fits in the last-level cache streams at the cache's speed.
                        let level = if f.bytes_per_call <= largest_cache {
                            "cache"
                        } else {
                            "memory"
                        };
                        let id = format!("bandwidth/{level}/t{t}");
                        Some((id.clone(), rate_of(&snapshot, &id)))
                    }
                }
            }
            "workload" => {
                let name = f.id.split('/').nth(1).unwrap_or("");
                let products = workload_products(name);
                // The time the workload's products would take at bare sgemm speed.
                let mut flop = 0.0;
                let mut seconds = 0.0;
                let mut complete = !products.is_empty();
                for product in products {
                    let s = shapes.iter().find(|s| s.product == *product);
                    let rate =
                        s.and_then(|s| rate_of(&snapshot, &format!("sgemm/{}/t{t}", s.name())));
                    match (s, rate) {
                        (Some(s), Some(r)) => {
                            let per_image = s.flop() * s.count / cfg.batch as f64;
                            flop += per_image;
                            seconds += per_image / 1e9 / r;
                        }
                        _ => complete = false,
                    }
                }
                complete.then(|| {
                    (
                        format!(
                            "sgemm at the workload's own shapes on {t} threads (time-weighted)"
                        ),
                        Some(flop / 1e9 / seconds),
                    )
                })
            }
            _ => None,
        };
        if let Some((what, Some(rate))) = ceiling {
            let own = if f.unit == "GB/s" {
                f.gb_per_s
            } else {
                f.gflop_per_s
            };
            f.ceiling = Some(what);
            f.ceiling_rate = Some(rate);
            f.share_of_ceiling = own.map(|o| o / rate);
        }
    }
    let mut warnings: Vec<String> = figures
        .iter()
        .filter_map(|f| spread_warning(&f.id, &f.seconds))
        .collect();
    if let Some(load) = machine.load_average.filter(|&l| l >= 1.0) {
        warnings.insert(
            0,
            format!(
                "load average {load:.2} when the report started: other processes were running, \
                 so every figure may be low"
            ),
        );
    }
    let peak = rate_of(&figures, &peak_id(n)).unwrap_or(0.0);
    let bandwidth = rate_of(&figures, &format!("bandwidth/memory/t{n}")).unwrap_or(0.0);
    let cache_bandwidth = rate_of(&figures, &format!("bandwidth/cache/t{n}")).unwrap_or(0.0);
    Report {
        format: FORMAT.into(),
        version: VERSION,
        machine,
        settings: Settings {
            seconds_per_figure: cfg.seconds_per_figure,
            samples_per_figure: SAMPLES,
            batch: cfg.batch,
            max_threads: n,
            unix_time,
        },
        ceilings: Ceilings {
            sgemm_peak_gflop_per_s: peak,
            sgemm_peak_figure: peak_id(n),
            bandwidth_gb_per_s: bandwidth,
            bandwidth_figure: format!("bandwidth/memory/t{n}"),
            cache_bandwidth_gb_per_s: cache_bandwidth,
            cache_bandwidth_figure: format!("bandwidth/cache/t{n}"),
        },
        figures,
        warnings,
    }
}

/// Every key path of a JSON value: `a.b` for object members, `a[]` for array elements (an
/// empty array gives `a[]` itself, since its elements' keys cannot be seen).
pub fn key_paths(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &serde_json::Value, path: String, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, p, out);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                for item in items {
                    walk(item, format!("{path}[]"), out);
                }
            }
            serde_json::Value::Array(_) => {
                out.insert(format!("{path}[]"));
            }
            _ => {
                out.insert(path);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}

/// The keys documented in docs/performance.md: the first column (in backticks) of the table
/// between `<!-- bench.json keys -->` and `<!-- end bench.json keys -->`.
pub fn documented_keys(markdown: &str) -> Vec<String> {
    let Some((_, rest)) = markdown.split_once("<!-- bench.json keys -->") else {
        return Vec::new();
    };
    let table = rest
        .split_once("<!-- end bench.json keys -->")
        .map_or(rest, |(t, _)| t);
    table
        .lines()
        .filter_map(|line| {
            let cell = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let key = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(key.to_string())
        })
        .collect()
}

/// Nominal FLOPs per image of LeNet's forward pass, for the docs: the sum of the forward
/// products of [`lenet_gemm_shapes`] equals `bench::FORWARD_FLOP` (a test checks it).
pub fn forward_flop_per_image(batch: usize) -> f64 {
    lenet_gemm_shapes(batch)
        .iter()
        .filter(|s| s.product.ends_with("/forward"))
        .map(|s| s.flop() * s.count)
        .sum::<f64>()
        / batch as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{FORWARD_FLOP, TRAIN_STEP_FLOP};

    /// The shapes follow the layers' partitions at batch 64: conv2's forward 4 images per
    /// product (256 columns), its weight gradient 8 (512), fc1 cut into 4 pieces of 125
    /// outputs or 200 inputs, fc2 (320,000 multiply-adds, under 2^20) not cut.
    #[test]
    fn gemm_shapes_at_batch_64() {
        let shapes = lenet_gemm_shapes(64);
        let get = |p: &str| {
            let s = shapes.iter().find(|s| s.product == p).expect(p);
            (s.m, s.k, s.n, s.count)
        };
        assert_eq!(get("conv1/forward"), (20, 25, 576, 64.0));
        assert_eq!(get("conv1/weight_gradient"), (20, 4608, 25, 8.0));
        assert_eq!(get("conv2/forward"), (50, 500, 256, 16.0));
        assert_eq!(get("conv2/weight_gradient"), (50, 512, 500, 8.0));
        assert_eq!(get("conv2/input_gradient"), (500, 50, 64, 64.0));
        assert_eq!(get("fc1/forward"), (64, 800, 125, 4.0));
        assert_eq!(get("fc1/weight_gradient"), (125, 64, 800, 4.0));
        assert_eq!(get("fc1/input_gradient"), (64, 500, 200, 4.0));
        assert_eq!(get("fc2/forward"), (64, 500, 10, 1.0));
        assert_eq!(get("fc2/input_gradient"), (64, 10, 500, 1.0));
    }

    /// The shapes' products add up to the FLOP counts `advmnist bench` has always used.
    #[test]
    fn gemm_shapes_count_the_documented_flops() {
        for batch in [64, 50, 8] {
            assert!(
                (forward_flop_per_image(batch) - FORWARD_FLOP).abs() < 1e-6,
                "batch {batch}"
            );
        }
        let train: f64 = workload_products("train")
            .iter()
            .map(|p| {
                let s = lenet_gemm_shapes(64)
                    .into_iter()
                    .find(|s| s.product == *p)
                    .unwrap();
                s.flop() * s.count / 64.0
            })
            .sum();
        assert!((train - TRAIN_STEP_FLOP).abs() < 1e-6);
    }

    #[test]
    fn key_paths_walk_objects_and_arrays() {
        let v = serde_json::json!({"a": 1, "b": {"c": [ {"d": null}, {"d": 2} ], "e": []}});
        let keys: Vec<String> = key_paths(&v).into_iter().collect();
        assert_eq!(keys, ["a", "b.c[].d", "b.e[]"]);
    }

    #[test]
    fn documented_keys_come_from_the_marked_table_only() {
        let md = "| `outside` | x |\n<!-- bench.json keys -->\n| key | meaning |\n|---|---|\n\
                  | `format` | a |\n| `figures[].id` | b |\n<!-- end bench.json keys -->\n| `after` | c |";
        assert_eq!(documented_keys(md), ["format", "figures[].id"]);
    }
}
