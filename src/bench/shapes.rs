//! LeNet's GEMM shapes: one table of the products its layers make at a batch size, and which
//! of them each whole-network workload runs. The profile compares every layer pass with bare
//! sgemm at the shapes of its own products, so these must be the shapes the layers use.
//!
//! The layers decide their cuts with the partition functions of `kernels::parallel`
//! (`images_per_product`, `IMAGES_PER_SUM`, `piece_len`); [`lenet_gemm_shapes`] calls the same
//! functions with the same arguments. Only one of the cuts changes arithmetic (the
//! convolutions' weight gradients, summed per group in order), so only that one can be seen
//! from outside a layer: a test checks it bit for bit against `layers::conv`, and the others'
//! FLOPs against the documented per-image counts.

use crate::data::IMAGE_SIDE;
use crate::kernels::parallel::{images_per_product, piece_len, IMAGES_PER_SUM};
use crate::models::lenet::LeNet;

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
    for (name, p, side) in [("conv1", &net.conv1, IMAGE_SIDE), ("conv2", &net.conv2, 12)] {
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

/// The layer passes whose products each LeNet workload runs, per image.
pub fn workload_products(workload: &str) -> &'static [&'static str] {
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

    /// The convolutions' weight gradient is the one cut that changes arithmetic: `dW` is summed
    /// over groups of images in group order. Summing `group_param_gradients` over groups of the
    /// table's size (its `k` over the output positions) gives `conv::backward_params`'s result
    /// bit for bit, and a group of another size does not, so the table follows the layer.
    #[test]
    fn weight_gradient_groups_are_the_layers_own() {
        use crate::layers::conv::{self, ConvParams};
        use crate::testutil::random_array;
        use ndarray::{Axis, Ix4};
        let batch = 20; // two full groups of 8 and a partial one
        let net = LeNet::<f32>::xavier(&mut crate::rng::stream(3, crate::rng::Purpose::Init, 0));
        let x = random_array::<f32, Ix4>((batch, 20, 12, 12), 11);
        let (y, cache) = conv::forward(x.view(), &net.conv2);
        let dy = random_array::<f32, Ix4>(y.dim(), 12).mapv(|v| 1e3 * v);
        let mut layer = ConvParams::zeros(50, 20, 5);
        conv::backward_params(dy.view(), &cache, &mut layer);
        let shapes = lenet_gemm_shapes(batch);
        let s = shapes
            .iter()
            .find(|s| s.product == "conv2/weight_gradient")
            .unwrap();
        let positions = 8 * 8;
        let summed_in_groups = |group: usize| {
            let mut dw = ndarray::Array2::<f32>::zeros((50, 500));
            for (dyg, xg) in dy
                .axis_chunks_iter(Axis(0), group)
                .zip(x.axis_chunks_iter(Axis(0), group))
            {
                dw += &conv::group_param_gradients(dyg, xg, 5).0;
            }
            dw.into_shape_with_order((50, 20, 5, 5)).unwrap()
        };
        assert_eq!(s.k % positions, 0);
        let table_group = s.k / positions;
        assert!(
            summed_in_groups(table_group) == layer.weight,
            "groups of {table_group} images (the table's) do not give the layer's dW"
        );
        assert!(
            summed_in_groups(2 * table_group) != layer.weight,
            "the test cannot tell group sizes apart: choose other inputs"
        );
    }
}
