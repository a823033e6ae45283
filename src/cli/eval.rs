//! `advmnist eval`: the test error of models, committees and pipelines.

use super::args::{ClassifierArgs, DefenceArgs};
use super::outputs::{check_writable_target, pre_inputs, refuse_overwrite};
use super::warn_if_logits_overflow;
use advmnist::data::{self, Split};
use advmnist::models::assemble::{load_lenets, named_classifiers, with_preprocessing};
use advmnist::models::lenet::error_pct;
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// Model file(s) to evaluate.
    #[arg(
        long = "model",
        value_name = "FILE",
        required_unless_present = "committee"
    )]
    models: Vec<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    #[command(flatten)]
    defence: DefenceArgs,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Also write each test image's predicted class, one per line, to this file (one model only),
    /// e.g. to compare with PyTorch (scripts/pytorch_crosscheck.py).
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
}

pub fn eval(a: EvalArgs, data_dir: &Path) -> Result<()> {
    let committee = a.choice.committee()?;
    if a.predictions.is_some() && a.models.len() + usize::from(committee.is_some()) != 1 {
        bail!("--predictions takes exactly one classifier: one --model or one --committee");
    }
    if let Some(out) = &a.predictions {
        check_writable_target("--predictions", out)?;
        let daes = pre_inputs(&a.defence);
        let members = a.choice.committee_inputs(&committee);
        let mut inputs: Vec<(&str, &Path)> =
            a.models.iter().map(|m| ("--model", m.as_path())).collect();
        inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
        inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
        refuse_overwrite(&[("--predictions", out)], &inputs, data_dir)?;
    }
    let test = data::load_split(data_dir, Split::Test)?;
    let preprocessing = a.defence.preprocessing()?;
    let nets = load_lenets(&a.models)?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.members))?;
    let committee_name = committee.as_ref().map(|c| c.name.as_str());
    let bases = named_classifiers(&nets, committee_name, &members, a.choice.gradient);
    let mut rows = Vec::new();
    for (name, model) in with_preprocessing(&bases, &preprocessing, None) {
        warn_if_logits_overflow(&name, model.as_ref(), &test);
        let predictions = model.predict(test.images.view());
        if let Some(out) = &a.predictions {
            let text: String = predictions.iter().map(|p| format!("{p}\n")).collect();
            advmnist::io_safety::write_atomic(out, text.as_bytes())?;
        }
        let err = error_pct(&predictions, &test.labels);
        rows.push(serde_json::json!({"model": name, "test_error_pct": err, "n": test.len()}));
        if !a.json {
            println!("{name}: test error {err:.2}% on {} images", test.len());
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "models": rows }));
    }
    Ok(())
}
