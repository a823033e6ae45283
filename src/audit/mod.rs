//! Auditing a model, tensor by tensor: [`trace`] records every intermediate tensor of one
//! image's forward and backward pass (`advmnist trace`), and [`gradcheck`] checks a model's
//! hand-written gradients against central finite differences on real test images
//! (`advmnist gradcheck`). docs/walkthrough.md walks through a real trace from loss to pixel.

pub mod gradcheck;
pub mod trace;

use crate::attacks::fgsm;
use crate::rng::{stream, Purpose};
use ndarray::{Array4, ArrayView4};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;

/// A perturbation of the traced image, computed as `sweep` and `show` compute it: in f32, with
/// the model's own f32 input gradient for FGSM, clipped to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Perturbation {
    /// `clip(x + eps sign(dL/dx), 0, 1)`, the true label (`attacks::fgsm`).
    Fgsm { eps: f32 },
    /// `clip(x + sigma Z, 0, 1)`, `Z` standard normal from the stream
    /// `(seed, GaussianNoise, image)` of test image number `image`: the draw `sweep` makes for
    /// that image when it perturbs the whole test set (`attacks::gaussian`).
    Gaussian { sigma: f32, seed: u64, image: u64 },
}

impl Perturbation {
    /// The perturbed image `(1,1,28,28)`.
    pub fn apply(
        &self,
        model: &crate::models::LeNet<f32>,
        x: ArrayView4<f32>,
        label: u8,
    ) -> Array4<f32> {
        match *self {
            Perturbation::Fgsm { eps } => fgsm::fgsm(model, x, &[label], eps),
            Perturbation::Gaussian { sigma, seed, image } => {
                let z = ndarray::Array3::<f32>::random_using(
                    (1, 28, 28),
                    StandardNormal,
                    &mut stream(seed, Purpose::GaussianNoise, image),
                )
                .insert_axis(ndarray::Axis(0));
                fgsm::perturb(x, z.view(), sigma)
            }
        }
    }

    /// `fgsm` or `gaussian`, for file metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Perturbation::Fgsm { .. } => "fgsm",
            Perturbation::Gaussian { .. } => "gaussian",
        }
    }

    /// eps or sigma.
    pub fn level(&self) -> f32 {
        match *self {
            Perturbation::Fgsm { eps } => eps,
            Perturbation::Gaussian { sigma, .. } => sigma,
        }
    }
}

/// One test image's trace in the precision asked for, with the clean and perturbed images in
/// front when there is a perturbation: what `advmnist trace` prints or writes.
pub enum TestImageTrace {
    F32(trace::Trace<f32>),
    F64(trace::Trace<f64>),
}

impl TestImageTrace {
    pub fn stats(&self) -> Vec<trace::TensorStats> {
        match self {
            TestImageTrace::F32(t) => t.stats(),
            TestImageTrace::F64(t) => t.stats(),
        }
    }

    pub fn to_safetensors(&self, metadata: &std::collections::BTreeMap<String, String>) -> Vec<u8> {
        match self {
            TestImageTrace::F32(t) => t.to_safetensors(metadata),
            TestImageTrace::F64(t) => t.to_safetensors(metadata),
        }
    }

    /// The predicted class: the first largest logit, as `lenet::argmax_rows`.
    pub fn predicted(&self) -> u8 {
        let logits: Vec<f64> = match self {
            TestImageTrace::F32(t) => t.get("forward.logits").map(|a| a.mapv(f64::from)),
            TestImageTrace::F64(t) => t.get("forward.logits").cloned(),
        }
        .expect("every trace has forward.logits")
        .iter()
        .copied()
        .collect();
        let best = logits
            .iter()
            .enumerate()
            .fold(0, |best, (k, &v)| if v > logits[best] { k } else { best });
        best as u8
    }
}

/// Traces test image `clean (1,1,28,28)` with its `label` through `model`, perturbed first if
/// asked (in f32, as the attacks do), in f64 if `double` (the f32 weights and pixels widened
/// exactly). With a perturbation the trace starts with `image.clean` and `image.perturbed`.
pub fn trace_test_image(
    model: &crate::models::LeNet<f32>,
    clean: ArrayView4<f32>,
    label: u8,
    perturbation: Option<Perturbation>,
    double: bool,
) -> TestImageTrace {
    let perturbed = perturbation.map(|p| p.apply(model, clean, label));
    let input = perturbed.as_ref().map_or(clean, |p| p.view());
    fn with_images<T: crate::scalar::Scalar>(
        mut t: trace::Trace<T>,
        clean: ArrayView4<f32>,
        perturbed: Option<&Array4<f32>>,
    ) -> trace::Trace<T> {
        if let Some(p) = perturbed {
            t.insert_front("image.perturbed", p.mapv(|v| T::of(v.into())).into_dyn());
            t.insert_front("image.clean", clean.mapv(|v| T::of(v.into())).into_dyn());
        }
        t
    }
    if double {
        let t = trace::trace(&model.cast::<f64>(), input.mapv(f64::from).view(), label);
        TestImageTrace::F64(with_images(t, clean, perturbed.as_ref()))
    } else {
        let t = trace::trace(model, input, label);
        TestImageTrace::F32(with_images(t, clean, perturbed.as_ref()))
    }
}

/// The metadata of a trace file: the model, the test image and the perturbation.
pub fn trace_metadata(
    model: &std::path::Path,
    image: usize,
    perturbation: Option<Perturbation>,
) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("model".to_string(), model.display().to_string());
    m.insert("image".to_string(), image.to_string());
    if let Some(p) = perturbation {
        m.insert("noise".to_string(), p.name().to_string());
        m.insert("level".to_string(), p.level().to_string());
        if let Perturbation::Gaussian { seed, .. } = p {
            m.insert("seed".to_string(), seed.to_string());
        }
    }
    m
}
