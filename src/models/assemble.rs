//! Classifiers assembled from what a user names: LeNet model files, a committee (model files, or a
//! committee file listing them), and preprocessing stages (`lowpass:S`, `dae:FILE`) in front of
//! each, every one with the name it carries in every output. `eval`, `sweep` and `show` build
//! their models here, so that a program or a test builds the same ones.

use crate::models::committee::Committee;
use crate::models::file::{load_model, ModelFileError};
use crate::models::gradient::{GradientRule, WithGradient};
use crate::models::lenet::LeNet;
use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
use crate::models::Classifier;
use std::path::PathBuf;

/// A classifier with the name it gets in every output.
pub type NamedClassifier<'a> = (String, Box<dyn Classifier + 'a>);

/// Each model file's LeNet, loaded, named by its path as given.
pub fn load_lenets(paths: &[PathBuf]) -> Result<Vec<(String, LeNet<f32>)>, ModelFileError> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), load_model(p)?.0)))
        .collect()
}

/// The files a committee reads: every member, then the committee file when `spec` names one
/// (a spec without a comma) rather than listing model files.
pub fn committee_inputs(spec: Option<&str>, members: &[PathBuf]) -> Vec<PathBuf> {
    let mut inputs = members.to_vec();
    if let Some(spec) = spec.filter(|s| !s.contains(',')) {
        inputs.push(PathBuf::from(spec.trim()));
    }
    inputs
}

/// The classifiers of a command: each LeNet of `nets`, then the committee named `committee` of
/// `members` (if named), each following `gradient`, with its name.
pub fn named_classifiers<'a>(
    nets: &'a [(String, LeNet<f32>)],
    committee: Option<&str>,
    members: &'a [(String, LeNet<f32>)],
    gradient: GradientRule,
) -> Vec<NamedClassifier<'a>> {
    let mut out: Vec<NamedClassifier<'a>> = nets
        .iter()
        .map(|(name, net)| -> NamedClassifier<'a> {
            (
                name.clone(),
                Box::new(WithGradient {
                    classifier: net,
                    rule: gradient,
                }),
            )
        })
        .collect();
    if let Some(name) = committee {
        let members = members.iter().map(|(_, n)| n as &dyn Classifier).collect();
        out.push((name.to_string(), Box::new(Committee { members, gradient })));
    }
    out
}

/// Preprocessing stages in front of every classifier, and how attacks treat them.
#[derive(Clone, Debug)]
pub struct Preprocessing {
    /// In the order they apply; none: the classifiers stand alone.
    pub stages: Vec<Stage>,
    /// Whose gradient attacks follow.
    pub attack_through: AttackThrough,
    /// Draws of injected noise averaged by the white-box gradient.
    pub eot_samples: usize,
}

/// The stages written as on the command line (`lowpass:5`, `lowpass:5,noise=0.1`, `dae:FILE`;
/// see [`Stage::parse`]), with `seed` driving injected noise. Autoencoders are loaded here.
pub fn parse_stages(specs: &[String], seed: u64) -> Result<Vec<Stage>, String> {
    specs.iter().map(|spec| Stage::parse(spec, seed)).collect()
}

/// The autoencoder files the `dae:FILE` stages among `specs` read.
pub fn stage_files(specs: &[String]) -> Vec<PathBuf> {
    specs
        .iter()
        .filter_map(|spec| spec.strip_prefix("dae:").map(PathBuf::from))
        .collect()
}

/// Each classifier of `bases` alone, or behind the stages as a pipeline, named so that every
/// output says which defence, attack setting and gradient it was: `lowpass:5 + m.safetensors
/// [attack through pipeline] [gradient exact]`. `attacked`: the gradient rule attacks follow,
/// when the output is of an attack (the attack setting and the rule are then named).
pub fn with_preprocessing<'a>(
    bases: &'a [NamedClassifier<'a>],
    preprocessing: &Preprocessing,
    attacked: Option<GradientRule>,
) -> Vec<NamedClassifier<'a>> {
    let stages = &preprocessing.stages;
    bases
        .iter()
        .map(|(name, base)| -> NamedClassifier<'a> {
            let (mut label, model): NamedClassifier<'a> = if stages.is_empty() {
                let same = WithGradient {
                    classifier: base.as_ref(),
                    rule: GradientRule::Exact,
                };
                (name.clone(), Box::new(same))
            } else {
                let mut p =
                    Pipeline::new(stages.to_vec(), base.as_ref(), preprocessing.attack_through);
                p.eot_samples = preprocessing.eot_samples;
                let mut label = format!("{} + {name}", p.describe_stages());
                if attacked.is_some() {
                    label.push_str(&format!(
                        " [attack through {}]",
                        preprocessing.attack_through.name()
                    ));
                }
                (label, Box::new(p))
            };
            if let Some(rule) = attacked {
                label.push_str(&format!(" [gradient {rule}]"));
            }
            (label, model)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::rng::{stream, Purpose};
    use ndarray::Array4;

    fn nets() -> Vec<(String, LeNet<f32>)> {
        (0..2)
            .map(|k| {
                (
                    format!("m{k}"),
                    LeNet::xavier(&mut stream(k, Purpose::Init, 0)),
                )
            })
            .collect()
    }

    #[test]
    fn classifiers_are_named_by_defence_attack_setting_and_gradient() {
        let nets = nets();
        let bases = named_classifiers(
            &nets[..1],
            Some("committee(m0,m1)"),
            &nets,
            GradientRule::Exact,
        );
        let names: Vec<&str> = bases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["m0", "committee(m0,m1)"]);
        let alone = Preprocessing {
            stages: Vec::new(),
            attack_through: AttackThrough::Pipeline,
            eot_samples: 10,
        };
        let named: Vec<String> = with_preprocessing(&bases, &alone, None)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(named, ["m0", "committee(m0,m1)"]);
        let blurred = Preprocessing {
            stages: parse_stages(&["lowpass:5".to_string()], 1).unwrap(),
            attack_through: AttackThrough::Classifier,
            eot_samples: 10,
        };
        let defended = with_preprocessing(&bases, &blurred, Some(GradientRule::CaffeF32));
        assert_eq!(
            defended[0].0,
            format!(
                "{} + m0 [attack through classifier] [gradient caffe-f32]",
                blurred.stages[0].describe()
            )
        );
        // The pipeline predicts what its classifier predicts on the blurred images.
        let x = Array4::<f32>::from_elem((2, 1, IMAGE_SIDE, IMAGE_SIDE), 0.5);
        let blurred_x = blurred.stages[0].apply(x.view(), 0);
        assert_eq!(
            defended[0].1.predict(x.view()),
            nets[0].1.predict(blurred_x.view())
        );
    }

    #[test]
    fn a_committee_file_and_dae_stages_are_inputs() {
        let members = [PathBuf::from("a"), PathBuf::from("b")];
        assert_eq!(committee_inputs(Some("a,b"), &members), members);
        assert_eq!(
            committee_inputs(Some(" c.json "), &members),
            [
                PathBuf::from("a"),
                PathBuf::from("b"),
                PathBuf::from("c.json")
            ]
        );
        assert!(committee_inputs(None, &[]).is_empty());
        let specs = ["lowpass:3".to_string(), "dae:d.safetensors".to_string()];
        assert_eq!(stage_files(&specs), [PathBuf::from("d.safetensors")]);
    }
}
