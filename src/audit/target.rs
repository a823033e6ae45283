//! What `trace` and `gradcheck` audit: one LeNet, a committee of LeNets, or preprocessing stages
//! in front of a LeNet, named by files (and stage specs) and checked before any work, then
//! loaded, traced or checked.

use super::gradcheck::GradcheckReport;
use super::{Perturbation, TestImageTrace};
use crate::models::assemble::{committee_inputs, load_lenets, parse_stages, stage_files};
use crate::models::committee::{committee_members, committee_name, CommitteeFileError};
use crate::models::file::{load_model, ModelFileError};
use crate::models::lenet::LeNet;
use crate::models::pipeline::Stage;
use ndarray::ArrayView4;
use std::path::{Path, PathBuf};

/// What is audited; its committee file and stages are read and checked when it is made.
#[derive(Debug)]
pub enum AuditTarget {
    /// One LeNet model file.
    LeNet(PathBuf),
    /// A committee: `spec` as given (model files separated by commas, or a committee file), and
    /// its member files.
    Committee { spec: String, members: Vec<PathBuf> },
    /// Stages in front of a LeNet model file; `stage_files` are the autoencoder files the
    /// stages were loaded from, `pre_seed` drives their injected noise.
    Pipeline {
        model: PathBuf,
        stages: Vec<Stage>,
        stage_files: Vec<PathBuf>,
        pre_seed: u64,
    },
}

/// Why an audit target cannot be made; each message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum AuditTargetError {
    #[error("--pre goes with --model: stages in front of one LeNet are audited, stages in front of a --committee are not")]
    StagesBeforeCommittee,
    #[error("give --model FILE or --committee FILE,FILE,...|C.json")]
    Nothing,
    #[error(transparent)]
    Committee(#[from] CommitteeFileError),
    /// A `--pre` stage that does not parse or load (the message names it).
    #[error("{0}")]
    Stage(String),
}

impl AuditTarget {
    /// A committee (`committee`: model files separated by commas or a committee file, its hashes
    /// checked now), or the LeNet `model` alone or behind the `pre` stages (as `eval --pre`
    /// writes them, `pre_seed` driving injected noise). Stages go with a model only.
    pub fn new(
        model: Option<&Path>,
        committee: Option<&str>,
        pre: &[String],
        pre_seed: u64,
    ) -> Result<Self, AuditTargetError> {
        if let Some(spec) = committee {
            if !pre.is_empty() {
                return Err(AuditTargetError::StagesBeforeCommittee);
            }
            let members = committee_members(spec)?;
            return Ok(AuditTarget::Committee {
                spec: spec.to_string(),
                members,
            });
        }
        let Some(model) = model else {
            return Err(AuditTargetError::Nothing);
        };
        if pre.is_empty() {
            return Ok(AuditTarget::LeNet(model.to_path_buf()));
        }
        let stages = parse_stages(pre, pre_seed).map_err(AuditTargetError::Stage)?;
        Ok(AuditTarget::Pipeline {
            model: model.to_path_buf(),
            stages,
            stage_files: stage_files(pre),
            pre_seed,
        })
    }

    /// Whether it is one LeNet alone (the only target whose weight gradients are checked).
    pub fn is_lenet(&self) -> bool {
        matches!(self, AuditTarget::LeNet(_))
    }

    /// The files read, each with the flag that named it: inputs no output may be written over.
    pub fn inputs(&self) -> Vec<(&'static str, PathBuf)> {
        match self {
            AuditTarget::LeNet(model) => vec![("--model", model.clone())],
            AuditTarget::Committee { spec, members } => committee_inputs(Some(spec), members)
                .into_iter()
                .map(|m| ("--committee", m))
                .collect(),
            AuditTarget::Pipeline {
                model, stage_files, ..
            } => {
                let mut inputs = vec![("--model", model.clone())];
                inputs.extend(stage_files.iter().map(|f| ("--pre dae:", f.clone())));
                inputs
            }
        }
    }

    /// The metadata keys naming what a trace file traced: `model`; or `committee` and `members`;
    /// or `model`, `pre` and `pre_seed`.
    pub fn subject(&self) -> Vec<(&'static str, String)> {
        match self {
            AuditTarget::LeNet(model) => vec![("model", model.display().to_string())],
            AuditTarget::Committee { spec, members } => vec![
                ("committee", spec.trim().to_string()),
                (
                    "members",
                    members
                        .iter()
                        .map(|m| m.display().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
            AuditTarget::Pipeline {
                model,
                stages,
                pre_seed,
                ..
            } => vec![
                ("model", model.display().to_string()),
                ("pre", describe_stages(stages)),
                ("pre_seed", pre_seed.to_string()),
            ],
        }
    }

    /// How outputs name it after the test image: nothing for one LeNet,
    /// ` through committee(...)`, ` through lowpass:5 + m.safetensors`.
    pub fn through(&self) -> String {
        match self {
            AuditTarget::LeNet(_) => String::new(),
            AuditTarget::Committee { spec, .. } => format!(" through {}", committee_name(spec)),
            AuditTarget::Pipeline { model, stages, .. } => {
                format!(" through {} + {}", describe_stages(stages), model.display())
            }
        }
    }

    /// Loads the model files and traces test image `x (1,1,28,28)` with its `label`, perturbed
    /// first if asked, in f64 if `double` (see [`super::trace_test_image`]).
    pub fn trace(
        &self,
        x: ArrayView4<f32>,
        label: u8,
        perturbation: Option<Perturbation>,
        double: bool,
    ) -> Result<TestImageTrace, ModelFileError> {
        Ok(match self {
            AuditTarget::LeNet(model) => {
                let (net, _) = load_model(model)?;
                super::trace_test_image(&net, x, label, perturbation, double)
            }
            AuditTarget::Committee { members, .. } => {
                let nets: Vec<LeNet<f32>> =
                    load_lenets(members)?.into_iter().map(|(_, n)| n).collect();
                super::trace_committee_test_image(&nets, x, label, perturbation, double)
            }
            AuditTarget::Pipeline { model, stages, .. } => {
                let (net, _) = load_model(model)?;
                super::trace_pipeline_test_image(stages, &net, x, label, perturbation, double)
            }
        })
    }

    /// Loads the model files and checks the hand-written gradients against f64 central
    /// differences on images `x` with their `labels`: a LeNet's input gradient and
    /// `params_per_tensor` entries of each weight gradient, chosen by `seed`; a committee's
    /// input gradient and d/d(member logits); a pipeline's white-box input gradient.
    pub fn gradcheck(
        &self,
        x: ArrayView4<f64>,
        labels: &[u8],
        params_per_tensor: usize,
        seed: u64,
    ) -> Result<GradcheckReport, ModelFileError> {
        Ok(match self {
            AuditTarget::LeNet(model) => {
                let (net, _) = load_model(model)?;
                super::gradcheck::gradcheck(&net.cast::<f64>(), x, labels, params_per_tensor, seed)
            }
            AuditTarget::Committee { members, .. } => {
                let nets: Vec<LeNet<f64>> = load_lenets(members)?
                    .iter()
                    .map(|(_, n)| n.cast::<f64>())
                    .collect();
                super::committee::gradcheck_committee(&nets, x, labels)
            }
            AuditTarget::Pipeline { model, stages, .. } => {
                let (net, _) = load_model(model)?;
                super::pipeline::gradcheck_pipeline(stages, &net.cast::<f64>(), x, labels)
            }
        })
    }
}

/// Stages as on the command line, joined: `lowpass:5 + dae:d.safetensors`.
fn describe_stages(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| s.describe())
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_their_files_and_refuse_stages_before_a_committee() {
        let model = Path::new("m.safetensors");
        let e = AuditTarget::new(Some(model), Some("a,b"), &["lowpass:3".into()], 1).unwrap_err();
        assert!(e.to_string().starts_with("--pre goes with --model"), "{e}");
        let e = AuditTarget::new(None, None, &[], 1).unwrap_err();
        assert!(e.to_string().contains("--model FILE"), "{e}");

        let lenet = AuditTarget::new(Some(model), None, &[], 1).unwrap();
        assert!(lenet.is_lenet());
        assert_eq!(lenet.inputs(), [("--model", model.to_path_buf())]);
        assert_eq!(lenet.through(), "");

        let pipeline = AuditTarget::new(Some(model), None, &["lowpass:3".into()], 7).unwrap();
        assert!(!pipeline.is_lenet());
        let stage = Stage::parse("lowpass:3", 7).unwrap().describe();
        assert_eq!(
            pipeline.through(),
            format!(" through {stage} + m.safetensors")
        );
        assert_eq!(
            pipeline.subject(),
            [
                ("model", "m.safetensors".to_string()),
                ("pre", stage),
                ("pre_seed", "7".to_string())
            ]
        );
    }
}
