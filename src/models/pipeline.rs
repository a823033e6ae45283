//! A pipeline: preprocessing stages (the study's defences: a low-pass filter, a denoising
//! autoencoder, in any order and number) followed by a classifier. It is a [`Classifier`] like
//! any other, so every attack, sweep and report works on it unchanged.
//!
//! How it is attacked is a named setting, [`AttackThrough`] (whose gradient the attack follows):
//! - `Classifier`, the study's (section 4.1): adversarial examples come from the bare
//!   classifier's gradient at the raw image; the pipeline then cleans them. The defence's own
//!   computation is invisible to the attacker.
//! - `Pipeline`, white-box: the gradient flows from the loss through the classifier and back
//!   through every stage's own backward pass (chain rule: `dL/dx = J_1^T ... J_k^T dL/dz_k`).
//!   Where a stage is random (noise injection), the gradient is the mean over `eot_samples`
//!   draws of the whole chain (expectation over transformation, Athalye et al. 2018), each draw
//!   applying the same noise in its forward and backward pass.
//!
//! Classification itself (`logits`) always uses draw 0 of any random stage, so a pipeline's
//! predictions are a fixed function of the image.

use crate::defences::lowpass::LowPassFilter;
use crate::models::autoencoder::Autoencoder;
use crate::models::{Classifier, LogitLoss, LossGradient};
use ndarray::{s, Array1, Array2, Array4, ArrayView2, ArrayView4};

/// One preprocessing stage.
#[derive(Clone, Debug)]
pub enum Stage {
    LowPass(LowPassFilter),
    /// A denoising autoencoder, with the name (file) it is shown under.
    Autoencoder {
        name: String,
        net: Box<Autoencoder>,
    },
}

impl Stage {
    /// The stage's output of draw `draw` for images `(N,1,28,28)`.
    pub fn apply(&self, x: ArrayView4<f32>, draw: u64) -> Array4<f32> {
        match self {
            Stage::LowPass(f) => f.apply(x, draw),
            Stage::Autoencoder { net, .. } => net.reconstruct(x),
        }
    }

    /// `dL/dx` from `dL/d(output)`, for the same draw.
    pub fn vjp(&self, x: ArrayView4<f32>, draw: u64, d_out: ArrayView4<f32>) -> Array4<f32> {
        match self {
            Stage::LowPass(f) => f.vjp(x, draw, d_out),
            Stage::Autoencoder { net, .. } => net.reconstruction_vjp(x, d_out),
        }
    }

    /// [`Stage::apply`], keeping what this stage's backward pass needs (the autoencoder's
    /// caches), so that a white-box gradient runs each forward pass once.
    pub fn apply_with_cache(&self, x: ArrayView4<f32>, draw: u64) -> (Array4<f32>, StageCache) {
        match self {
            Stage::LowPass(f) => (f.apply(x, draw), StageCache::Nothing),
            Stage::Autoencoder { net, .. } => {
                let (y, kept) = net.reconstruct_keeping(x);
                (y, StageCache::Autoencoder(Box::new(kept)))
            }
        }
    }

    /// [`Stage::vjp`] from what [`Stage::apply_with_cache`] kept.
    pub fn vjp_kept(
        &self,
        x: ArrayView4<f32>,
        draw: u64,
        kept: &StageCache,
        d_out: ArrayView4<f32>,
    ) -> Array4<f32> {
        match (self, kept) {
            (Stage::Autoencoder { net, .. }, StageCache::Autoencoder(k)) => {
                net.reconstruction_vjp_kept(k, d_out)
            }
            _ => self.vjp(x, draw, d_out),
        }
    }

    pub fn is_random(&self) -> bool {
        matches!(self, Stage::LowPass(f) if f.is_random())
    }

    /// Parses a stage as written on the command line: `lowpass:S` (S = 3, 5 or 7),
    /// `lowpass:S,noise=SIGMA` (noise injected before the blur; `noise` alone means
    /// [`crate::defences::lowpass::DEFAULT_NOISE`]), or `dae:FILE` (an autoencoder model file,
    /// loaded here). `seed` drives injected noise.
    pub fn parse(spec: &str, seed: u64) -> Result<Stage, String> {
        if let Some(file) = spec.strip_prefix("dae:") {
            let (net, _) =
                crate::models::file::load_network::<Autoencoder>(std::path::Path::new(file))
                    .map_err(|e| format!("--pre {spec}: {e}"))?;
            return Ok(Stage::Autoencoder {
                name: file.to_string(),
                net: Box::new(net),
            });
        }
        let Some(rest) = spec.strip_prefix("lowpass:") else {
            return Err(format!(
                "--pre {spec}: a stage is lowpass:S, lowpass:S,noise=SIGMA or dae:FILE"
            ));
        };
        let mut parts = rest.split(',');
        let size: usize = parts
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| format!("--pre {spec}: the filter size must be 3, 5 or 7"))?;
        let mut noise = 0.0f32;
        for part in parts {
            match part.trim().split_once('=') {
                Some(("noise", v)) => {
                    noise = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("--pre {spec}: noise={v} is not a number"))?;
                }
                None if part.trim() == "noise" => noise = crate::defences::lowpass::DEFAULT_NOISE,
                _ => {
                    return Err(format!(
                        "--pre {spec}: unknown option '{part}' (only noise=SIGMA)"
                    ))
                }
            }
        }
        if !(noise.is_finite() && (0.0..=1.0).contains(&noise)) {
            return Err(format!(
                "--pre {spec}: noise sigma must be in [0, 1], got {noise}"
            ));
        }
        LowPassFilter::study(size, noise, seed)
            .map(Stage::LowPass)
            .map_err(|e| format!("--pre {spec}: {e}"))
    }

    /// As written on the command line: `lowpass:5,noise=0.1`, `dae:FILE`.
    pub fn describe(&self) -> String {
        match self {
            Stage::LowPass(f) => f.describe(),
            Stage::Autoencoder { name, .. } => format!("dae:{name}"),
        }
    }
}

/// What a stage's forward pass keeps for its backward pass.
pub enum StageCache {
    Nothing,
    Autoencoder(Box<crate::models::autoencoder::ReconstructionCache<f32>>),
}

/// Whose gradient an attack follows: the one description of that choice, for a pipeline
/// (`--attack-through`) and for a `reproduce` job (whose attack adds transfer and random noise
/// around it: `experiments::reproduce::plan::AttackSetting`).
///
/// Its text form is `classifier` or `pipeline` (`Display`, `FromStr`, serde): the command line's
/// names and the labels of attacked models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackThrough {
    /// The study's setting: the bare classifier's gradient; the defence is not differentiated.
    Classifier,
    /// White-box: through every stage's backward pass (mean over draws where random).
    Pipeline,
}

impl AttackThrough {
    /// Both, in the command line's order (the default, white-box, first).
    pub const ALL: [AttackThrough; 2] = [AttackThrough::Pipeline, AttackThrough::Classifier];

    pub fn name(self) -> &'static str {
        match self {
            AttackThrough::Classifier => "classifier",
            AttackThrough::Pipeline => "pipeline",
        }
    }
}

impl std::fmt::Display for AttackThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttackThrough {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttackThrough::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown attack setting '{s}': pipeline or classifier"))
    }
}

/// For `#[arg(value_enum)]`: the names alone, in [`AttackThrough::ALL`]'s order (the help of
/// `--attack-through` says what each means).
impl clap::ValueEnum for AttackThrough {
    fn value_variants<'a>() -> &'a [Self] {
        &AttackThrough::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Default number of draws averaged by the white-box gradient through a random stage.
pub const DEFAULT_EOT_SAMPLES: usize = 10;
/// Images per piece of a white-box gradient, to bound the stages' caches in memory.
const GRADIENT_CHUNK: usize = 500;

/// Preprocessing stages, then a classifier.
pub struct Pipeline<'a> {
    pub stages: Vec<Stage>,
    pub classifier: &'a dyn Classifier,
    pub attack_through: AttackThrough,
    /// Draws averaged by the white-box gradient when a stage is random.
    pub eot_samples: usize,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        stages: Vec<Stage>,
        classifier: &'a dyn Classifier,
        attack_through: AttackThrough,
    ) -> Self {
        Pipeline {
            stages,
            classifier,
            attack_through,
            eot_samples: DEFAULT_EOT_SAMPLES,
        }
    }

    /// The stages' output of draw `draw`.
    pub fn preprocess(&self, x: ArrayView4<f32>, draw: u64) -> Array4<f32> {
        let mut h = x.to_owned();
        for stage in &self.stages {
            h = stage.apply(h.view(), draw);
        }
        h
    }

    /// `+`-joined stage names, e.g. `lowpass:5 + dae:dae.safetensors`.
    pub fn describe_stages(&self) -> String {
        self.stages
            .iter()
            .map(Stage::describe)
            .collect::<Vec<_>>()
            .join(" + ")
    }

    fn draws(&self) -> u64 {
        if self.stages.iter().any(Stage::is_random) {
            self.eot_samples.max(1) as u64
        } else {
            1
        }
    }

    /// Chain `dL/d(stage output)` back through the stages, for draw `draw`; `inputs[k]` is stage
    /// `k`'s input and `kept[k]` what its forward pass kept.
    fn back_through_stages(
        &self,
        inputs: &[Array4<f32>],
        kept: &[StageCache],
        draw: u64,
        mut g: Array4<f32>,
    ) -> Array4<f32> {
        for ((stage, input), kept) in self.stages.iter().zip(inputs).zip(kept).rev() {
            g = stage.vjp_kept(input.view(), draw, kept, g.view());
        }
        g
    }

    /// Every stage's input and what its forward pass keeps for the backward pass, and the last
    /// stage's output.
    fn stage_inputs(
        &self,
        x: ArrayView4<f32>,
        draw: u64,
    ) -> (Vec<Array4<f32>>, Vec<StageCache>, Array4<f32>) {
        let mut inputs = Vec::with_capacity(self.stages.len());
        let mut kept = Vec::with_capacity(self.stages.len());
        let mut h = x.to_owned();
        for stage in &self.stages {
            let (next, k) = stage.apply_with_cache(h.view(), draw);
            inputs.push(h);
            kept.push(k);
            h = next;
        }
        (inputs, kept, h)
    }

    /// The white-box loss and input gradient of one piece of the batch.
    fn whitebox_piece(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        let draws = self.draws();
        let mut loss = Array1::zeros(x.dim().0);
        let mut grad = Array4::zeros(x.raw_dim());
        for draw in 0..draws {
            let (inputs, kept, z) = self.stage_inputs(x, draw);
            let (l, g) = self.classifier.input_gradient(z.view(), labels);
            loss += &l;
            grad += &self.back_through_stages(&inputs, &kept, draw, g);
        }
        let k = draws as f32;
        (loss / k, grad / k)
    }
}

/// A loss handed a piece of the batch that starts at image `offset`.
struct Offset<'a> {
    loss: &'a dyn LogitLoss,
    offset: usize,
}

impl LogitLoss for Offset<'_> {
    fn loss_and_gradient(
        &self,
        first: usize,
        logits: ArrayView2<f32>,
    ) -> (Array1<f32>, Array2<f32>) {
        self.loss.loss_and_gradient(self.offset + first, logits)
    }
}

impl Pipeline<'_> {
    /// [`Classifier::loss_gradient`] of one piece of the batch, white-box: for every draw, the
    /// loss at that draw's logits and its gradient back through every stage, averaged.
    fn whitebox_loss_piece(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        let draws = self.draws();
        let mut out = LossGradient {
            logits: Array2::zeros((x.dim().0, crate::data::CLASSES)),
            loss: Array1::zeros(x.dim().0),
            grad: Array4::zeros(x.raw_dim()),
        };
        for draw in 0..draws {
            let (inputs, kept, z) = self.stage_inputs(x, draw);
            let piece = self.classifier.loss_gradient(z.view(), loss);
            if draw == 0 {
                out.logits = piece.logits;
            }
            out.loss += &piece.loss;
            out.grad += &self.back_through_stages(&inputs, &kept, draw, piece.grad);
        }
        let k = draws as f32;
        out.loss /= k;
        out.grad /= k;
        out
    }
}

impl Classifier for Pipeline<'_> {
    fn loss_gradient(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        match self.attack_through {
            AttackThrough::Classifier => {
                // The bare classifier's gradient at the raw image; the prediction stays the
                // pipeline's.
                let mut out = self.classifier.loss_gradient(x, loss);
                out.logits = self.logits(x);
                out
            }
            AttackThrough::Pipeline => {
                let n = x.dim().0;
                let mut out = LossGradient {
                    logits: Array2::zeros((n, crate::data::CLASSES)),
                    loss: Array1::zeros(n),
                    grad: Array4::zeros(x.raw_dim()),
                };
                for start in (0..n).step_by(GRADIENT_CHUNK) {
                    let r = start..(start + GRADIENT_CHUNK).min(n);
                    let piece = self.whitebox_loss_piece(
                        x.slice(s![r.clone(), .., .., ..]),
                        &Offset {
                            loss,
                            offset: start,
                        },
                    );
                    out.logits
                        .slice_mut(s![r.clone(), ..])
                        .assign(&piece.logits);
                    out.loss.slice_mut(s![r.clone()]).assign(&piece.loss);
                    out.grad.slice_mut(s![r, .., .., ..]).assign(&piece.grad);
                }
                out
            }
        }
    }

    fn eot_draws(&self) -> u64 {
        self.draws()
    }

    fn logits_of_draw(&self, x: ArrayView4<f32>, draw: u64) -> Array2<f32> {
        self.classifier.logits(self.preprocess(x, draw).view())
    }

    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        self.classifier.logits(self.preprocess(x, 0).view())
    }

    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        match self.attack_through {
            AttackThrough::Classifier => self.classifier.input_gradient(x, labels),
            AttackThrough::Pipeline => {
                let n = x.dim().0;
                let mut loss = Array1::zeros(n);
                let mut grad = Array4::zeros(x.raw_dim());
                for start in (0..n).step_by(GRADIENT_CHUNK) {
                    let r = start..(start + GRADIENT_CHUNK).min(n);
                    let (l, g) =
                        self.whitebox_piece(x.slice(s![r.clone(), .., .., ..]), &labels[r.clone()]);
                    loss.slice_mut(s![r.clone()]).assign(&l);
                    grad.slice_mut(s![r, .., .., ..]).assign(&g);
                }
                (loss, grad)
            }
        }
    }

    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
        match self.attack_through {
            AttackThrough::Classifier => self.classifier.logits_vjp(x, d_logits),
            AttackThrough::Pipeline => {
                let draws = self.draws();
                let mut grad = Array4::zeros(x.raw_dim());
                for draw in 0..draws {
                    let (inputs, kept, z) = self.stage_inputs(x, draw);
                    let g = self.classifier.logits_vjp(z.view(), d_logits);
                    grad += &self.back_through_stages(&inputs, &kept, draw, g);
                }
                grad / draws as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_through_names_round_trip_through_text_serde_and_clap() {
        use clap::ValueEnum;
        for (through, name) in [
            (AttackThrough::Pipeline, "pipeline"),
            (AttackThrough::Classifier, "classifier"),
        ] {
            assert_eq!(through.to_string(), name);
            assert_eq!(name.parse::<AttackThrough>(), Ok(through));
            assert_eq!(
                serde_json::to_string(&through).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(
                serde_json::from_str::<AttackThrough>(&format!("\"{name}\"")).unwrap(),
                through
            );
            assert_eq!(
                <AttackThrough as ValueEnum>::from_str(name, false),
                Ok(through)
            );
        }
        assert!("whole".parse::<AttackThrough>().is_err());
        // `--attack-through`'s list: the default first, no help per value.
        let listed: Vec<_> = AttackThrough::value_variants()
            .iter()
            .map(|a| {
                let v = a.to_possible_value().unwrap();
                (v.get_name().to_string(), v.get_help().is_none())
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("pipeline".to_string(), true),
                ("classifier".to_string(), true)
            ]
        );
    }

    /// `#[arg(long, value_enum, default_value = "pipeline")]` on an `AttackThrough` shows the
    /// default and the two names as `--attack-through` always has.
    #[test]
    fn the_command_line_help_lists_both_names() {
        use clap::{CommandFactory, Parser};
        #[derive(Debug, Parser)]
        struct Args {
            /// Whose gradient attacks follow.
            #[arg(long, value_enum, default_value = "pipeline")]
            attack_through: AttackThrough,
        }
        let long = Args::command().render_long_help().to_string();
        assert!(
            long.contains(
                "      --attack-through <ATTACK_THROUGH>
          Whose gradient attacks follow
          
          [default: pipeline]
          [possible values: pipeline, classifier]
"
            ),
            "{long}"
        );
        let parsed = Args::try_parse_from(["x"]).unwrap();
        assert_eq!(parsed.attack_through, AttackThrough::Pipeline);
        let parsed = Args::try_parse_from(["x", "--attack-through", "classifier"]).unwrap();
        assert_eq!(parsed.attack_through, AttackThrough::Classifier);
    }
}
