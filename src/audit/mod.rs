//! Auditing a model, tensor by tensor: [`trace`] records every intermediate tensor of one
//! image's forward and backward pass (`advmnist trace`), and [`gradcheck`] checks a model's
//! hand-written gradients against central finite differences on real test images
//! (`advmnist gradcheck`). docs/walkthrough.md walks through a real trace from loss to pixel.
//! [`committee`] and [`pipeline`] do both for a committee of LeNets (`--committee`) and for
//! preprocessing stages in front of a LeNet (`--model FILE --pre STAGE`).

pub mod committee;
pub mod gradcheck;
pub mod pipeline;
pub mod target;
pub mod trace;

use crate::attacks::Noise;
use ndarray::{Array4, ArrayView4};

/// The perturbation of one traced test image: a noise at a level, made by
/// [`attacks::Perturbation`](crate::attacks::Perturbation) as `sweep` and `show` make it (in
/// f32, with the classifier's own f32 input gradient for FGSM: a committee's, a pipeline's
/// white-box one), clipped to [0, 1].
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
    /// The perturbed image `(1,1,28,28)`. Not checked by `attacks::validate`: the trace
    /// records whatever the attack makes.
    pub fn apply(
        &self,
        model: &dyn crate::models::Classifier,
        x: ArrayView4<f32>,
        label: u8,
    ) -> Array4<f32> {
        let (seed, image) = match *self {
            // FGSM draws no random numbers.
            Perturbation::Fgsm { .. } => (0, 0),
            Perturbation::Gaussian { seed, image, .. } => (seed, image),
        };
        crate::attacks::Perturbation::starting_at(self.noise(), model, x, &[label], seed, image)
            .unchecked_at(self.level())
    }

    /// The noise, [`Noise::Fgsm`] or [`Noise::Gaussian`].
    pub fn noise(&self) -> Noise {
        match self {
            Perturbation::Fgsm { .. } => Noise::Fgsm,
            Perturbation::Gaussian { .. } => Noise::Gaussian,
        }
    }

    /// `fgsm` or `gaussian`, for file metadata.
    pub fn name(&self) -> &'static str {
        self.noise().name()
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

    /// The predicted class: the first largest logit, as `lenet::argmax_rows`, of
    /// `forward.logits` (one LeNet, a pipeline) or `committee.logits`.
    pub fn predicted(&self) -> u8 {
        let logits = |name: &str| match self {
            TestImageTrace::F32(t) => t.get(name).map(|a| a.mapv(f64::from)),
            TestImageTrace::F64(t) => t.get(name).cloned(),
        };
        let logits: Vec<f64> = logits("forward.logits")
            .or_else(|| logits("committee.logits"))
            .expect("every trace has forward.logits or committee.logits")
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
    let wide = double.then(|| model.cast::<f64>());
    trace_test_image_with(
        model,
        clean,
        label,
        perturbation,
        double,
        |x| trace::trace(model, x, label),
        |x| trace::trace(wide.as_ref().expect("f64 model"), x, label),
    )
}

/// [`trace_test_image`] for a committee of `members` (`committee::trace_committee`); FGSM
/// follows the committee's exact gradient.
pub fn trace_committee_test_image(
    members: &[crate::models::LeNet<f32>],
    clean: ArrayView4<f32>,
    label: u8,
    perturbation: Option<Perturbation>,
    double: bool,
) -> TestImageTrace {
    let classifiers = members
        .iter()
        .map(|m| m as &dyn crate::models::Classifier)
        .collect();
    let wide: Vec<_> = if double {
        members.iter().map(|m| m.cast::<f64>()).collect()
    } else {
        Vec::new()
    };
    trace_test_image_with(
        &crate::models::Committee::new(classifiers),
        clean,
        label,
        perturbation,
        double,
        |x| committee::trace_committee(members, x, label),
        |x| committee::trace_committee(&wide, x, label),
    )
}

/// [`trace_test_image`] for `stages` in front of `model` (`pipeline::trace_pipeline`); FGSM
/// follows the pipeline's white-box gradient, averaged over
/// [`DEFAULT_EOT_SAMPLES`](crate::models::pipeline::DEFAULT_EOT_SAMPLES) draws where a stage is
/// random, as `sweep`'s default.
pub fn trace_pipeline_test_image(
    stages: &[crate::models::pipeline::Stage],
    model: &crate::models::LeNet<f32>,
    clean: ArrayView4<f32>,
    label: u8,
    perturbation: Option<Perturbation>,
    double: bool,
) -> TestImageTrace {
    use crate::models::pipeline::{AttackThrough, Pipeline};
    let wide = double.then(|| model.cast::<f64>());
    trace_test_image_with(
        &Pipeline::new(stages.to_vec(), model, AttackThrough::Pipeline),
        clean,
        label,
        perturbation,
        double,
        |x| pipeline::trace_pipeline(stages, model, x, label),
        |x| pipeline::trace_pipeline(stages, wide.as_ref().expect("f64 model"), x, label),
    )
}

/// The perturbed image (by `attacked`'s gradient), then the trace in f32 or f64.
fn trace_test_image_with(
    attacked: &dyn crate::models::Classifier,
    clean: ArrayView4<f32>,
    label: u8,
    perturbation: Option<Perturbation>,
    double: bool,
    trace_f32: impl FnOnce(ArrayView4<f32>) -> trace::Trace<f32>,
    trace_f64: impl FnOnce(ArrayView4<f64>) -> trace::Trace<f64>,
) -> TestImageTrace {
    let perturbed = perturbation.map(|p| p.apply(attacked, clean, label));
    let input = perturbed.as_ref().map_or(clean, |p| p.view());
    fn with_images<T: crate::kernels::scalar::Scalar>(
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
        let t = trace_f64(input.mapv(f64::from).view());
        TestImageTrace::F64(with_images(t, clean, perturbed.as_ref()))
    } else {
        let t = trace_f32(input);
        TestImageTrace::F32(with_images(t, clean, perturbed.as_ref()))
    }
}

/// The metadata of a trace file: what was traced (`subject`: `model`, or `committee` and
/// `members`, and `pre` with `pre_seed` for a pipeline), the test image and the perturbation.
pub fn trace_metadata(
    subject: &[(&str, String)],
    image: usize,
    perturbation: Option<Perturbation>,
) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for (key, value) in subject {
        m.insert(key.to_string(), value.clone());
    }
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
