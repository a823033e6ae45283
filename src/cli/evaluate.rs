//! `advmnist evaluate`: every attack, the worst case, the checklist's verdicts and certified
//! bounds for one model, committee or pipeline (`advmnist::experiments::evaluate`).

use super::args::{at_least_one, at_most, whole_number, ClassifierArgs, DefenceArgs};
use super::outputs::{check_output_folder, pre_inputs, refuse_overwrite};
use super::{progress, warn_if_logits_overflow};
use advmnist::data::{self, Split};
use advmnist::experiments::evaluate::{self, Settings, Step, Subject};
use advmnist::io_safety::{write_atomic, RunLock};
use advmnist::limits;
use advmnist::models::assemble::{load_lenets, named_classifiers, with_preprocessing};
use advmnist::models::file::load_model;
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::pipeline::AttackThrough;
use advmnist::report;
use advmnist::train::TrainConfig;
use anyhow::{bail, Context, Result};
use clap::Args;
use ndarray::s;
use std::path::{Path, PathBuf};

/// The seed of the transfer source trained when no --source is given: `reproduce`'s independent
/// LeNet (base seed 1 + 50).
pub const SOURCE_SEED: u64 = 51;
/// The record of a run in progress, beside the report it becomes.
const PARTIAL: &str = "evaluate.partial.json";

#[derive(Args)]
pub struct EvaluateArgs {
    /// The model file to evaluate (or --committee).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "committee",
        conflicts_with = "committee"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    #[command(flatten)]
    defence: DefenceArgs,
    /// The L-infinity budgets, each in [0, 1] (the field's convention on MNIST: 0.1, 0.2,
    /// 0.3); 20 budgets or fewer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.2,0.3",
        value_name = "EPS,...",
        allow_negative_numbers = true
    )]
    eps: Vec<f32>,
    /// Attack the first N test images (at least 1), at most 10,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = at_most(limits::MAX_EVALUATE_IMAGES))]
    images: usize,
    /// The transfer attack's source, an independently trained LeNet. Default: seed 51's
    /// LeNet, trained into DIR on the first run (about a minute) and reused after.
    #[arg(long, value_name = "FILE")]
    source: Option<PathBuf>,
    /// APGD's iterations per run, at most 1,000.
    #[arg(long, default_value_t = advmnist::attacks::apgd::DEFAULT_ITERATIONS, value_name = "N", value_parser = at_most(limits::MAX_PGD_STEPS))]
    iterations: usize,
    /// APGD's runs from a random start per loss and target, at most 100.
    #[arg(long, default_value_t = advmnist::attacks::apgd::DEFAULT_RESTARTS, value_name = "N", value_parser = at_most(limits::MAX_RESTARTS))]
    restarts: usize,
    /// APGD-T's target classes (the 2nd to (N+1)-th most likely; at least 1), at most 9.
    #[arg(long, default_value_t = advmnist::attacks::apgd::DEFAULT_TARGETS, value_name = "N", value_parser = at_most(9usize))]
    targets: usize,
    /// Square's queries per image, at most 100,000.
    #[arg(long, default_value_t = advmnist::attacks::square::DEFAULT_QUERIES, value_name = "N", value_parser = at_most(limits::MAX_QUERIES))]
    queries: usize,
    /// PGD's steps (its own figure and the transfer attack's), at most 1,000.
    #[arg(long, default_value_t = advmnist::attacks::pgd::DEFAULT_STEPS, value_name = "N", value_parser = at_most(limits::MAX_PGD_STEPS))]
    steps: usize,
    /// The checklist's stronger run: APGD-CE with this many restarts on the images the worst
    /// case left right, at most 100.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = at_most(limits::MAX_RESTARTS))]
    stronger_restarts: usize,
    /// Seed of the attacks' random starts and searches.
    #[arg(long, default_value_t = 1, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Output folder: evaluate.json, evaluate.md, evaluate.svg (and the record of a run in
    /// progress, from which a stopped run resumes).
    #[arg(long, default_value = "evaluate", value_name = "DIR")]
    out: PathBuf,
    /// Exit with status 1 when a check warns.
    #[arg(long)]
    strict: bool,
}

pub fn evaluate(a: EvaluateArgs, data_dir: &Path) -> Result<()> {
    if a.eps.is_empty() || a.eps.len() > limits::MAX_BUDGETS {
        bail!(
            "--eps takes 1 to {} budgets, got {}",
            limits::MAX_BUDGETS,
            a.eps.len()
        );
    }
    if let Some(e) = a.eps.iter().find(|e| !(0.0..=1.0).contains(*e)) {
        bail!("--eps {e}: a budget is an L-infinity radius in [0, 1] (images live in [0, 1])");
    }
    let mut eps = a.eps.clone();
    eps.sort_by(f32::total_cmp);
    eps.dedup();
    at_least_one("--images", a.images)?;
    at_least_one("--iterations", a.iterations)?;
    at_least_one("--restarts", a.restarts)?;
    at_least_one("--targets", a.targets)?;
    at_least_one("--queries", a.queries)?;
    at_least_one("--steps", a.steps)?;
    at_least_one("--stronger-restarts", a.stronger_restarts)?;
    let committee = a.choice.committee()?;
    if committee.is_some() && !a.defence.pre.is_empty() {
        bail!("--pre with --committee: evaluate takes a committee alone (its members' pipelines are not supported); evaluate a pipeline with --model");
    }

    // Files: checked and locked before any work.
    check_output_folder("--out", &a.out)?;
    let written: Vec<PathBuf> = report::evaluate::EVALUATE_FILES
        .iter()
        .chain([&PARTIAL])
        .map(|f| a.out.join(f))
        .collect();
    let source_file = a.source.clone().unwrap_or_else(|| {
        a.out
            .join(format!("independent-lenet-s{SOURCE_SEED}.safetensors"))
    });
    let daes = pre_inputs(&a.defence);
    let members = a.choice.committee_inputs(&committee);
    let mut inputs: Vec<(&str, &Path)> = a.model.iter().map(|m| ("--model", m.as_path())).collect();
    inputs.extend(a.source.iter().map(|m| ("--source", m.as_path())));
    inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
    inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
    let outputs: Vec<(&str, &Path)> = written.iter().map(|w| ("--out", w.as_path())).collect();
    refuse_overwrite(&outputs, &inputs, data_dir)?;

    // The classifier.
    let preprocessing = a.defence.preprocessing()?;
    let nets = load_lenets(a.model.as_slice())?;
    let member_nets = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.members))?;
    let committee_name = committee.as_ref().map(|c| c.name.as_str());
    let bases = named_classifiers(&nets, committee_name, &member_nets, a.choice.gradient);
    let (name, model) = with_preprocessing(&bases, &preprocessing, Some(a.choice.gradient))
        .pop()
        .expect("clap requires --model or --committee");
    let test = data::load_split(data_dir, Split::Test)?;
    if a.images > test.len() {
        bail!(
            "--images {}: the test set has {} images",
            a.images,
            test.len()
        );
    }
    warn_if_logits_overflow(&name, model.as_ref(), &test);
    let x = test.images.slice(s![..a.images, .., .., ..]);
    let labels = &test.labels[..a.images];
    // Every input read and checked: now the output folder, locked against a second run.
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let _lock = RunLock::acquire("--out", &a.out.join(PARTIAL)).map_err(anyhow::Error::msg)?;
    super::interrupt::how_to_go_on(format!(
        "{} holds the attacks already finished: run the same command to continue from there.",
        a.out.join(PARTIAL).display()
    ));

    // The transfer source: given, or trained once into --out.
    if a.source.is_none() && !source_file.exists() {
        eprintln!(
            "no --source: training the independent LeNet of seed {SOURCE_SEED} into {}",
            source_file.display()
        );
        super::train::train_default_lenet(
            TrainConfig::lenet(DropoutRates::NONE, SOURCE_SEED),
            &source_file,
            data_dir,
        )?;
    }
    let (source, _) = load_model(&source_file)?;

    let mut settings = Settings::standard(eps.clone(), a.images, a.seed);
    settings.pgd_steps = a.steps;
    settings.iterations = a.iterations;
    settings.restarts = a.restarts;
    settings.targets = a.targets;
    settings.queries = a.queries;
    settings.stronger_restarts = a.stronger_restarts;
    settings.eot_draws = if preprocessing.attack_through == AttackThrough::Pipeline {
        model.eot_draws()
    } else {
        1
    };
    let partial = a.out.join(PARTIAL);
    let resumed = match std::fs::read(&partial) {
        Ok(bytes) => match serde_json::from_slice::<evaluate::Record>(&bytes) {
            Ok(r) if r.settings == settings => {
                eprintln!(
                    "resuming from {}: {} of the attacks done",
                    partial.display(),
                    r.attacks.len()
                );
                Some(r)
            }
            Ok(_) => {
                eprintln!(
                    "{} is from other settings: starting afresh",
                    partial.display()
                );
                None
            }
            Err(e) => {
                eprintln!("{} is unreadable ({e}): starting afresh", partial.display());
                None
            }
        },
        Err(_) => None,
    };

    eprintln!(
        "evaluating {name} on the first {} test images at eps {} ({} threads)",
        a.images,
        eps.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        rayon::current_num_threads()
    );
    let scale = 1000.0;
    let steps = evaluate::plan(&settings);
    let total: f64 = steps.iter().map(|(_, c)| c).sum();
    let bar = progress::bar(
        (total * scale) as u64,
        "{msg:40} {bar:30} {percent:>3}%  ETA {eta}",
    );
    let subject = Subject {
        model: model.as_ref(),
        source: &source,
    };
    let record = evaluate::evaluate(
        &subject,
        x,
        labels,
        &settings,
        resumed,
        |record, step| -> Result<()> {
            let last = match step {
                Step::Attack(..) => record.attacks.last(),
                Step::Stronger(_) => record.stronger.last(),
                Step::Unbounded => record.unbounded.as_ref(),
            };
            if let Some(last) = last {
                progress::say(
                    &bar,
                    format!(
                        "{step}: error {:.1}% in {:.1} s",
                        last.error_pct, last.seconds
                    ),
                );
            }
            let bytes = serde_json::to_vec(record).expect("a record serialises");
            write_atomic(&partial, &bytes)?;
            Ok(())
        },
        |step, done, _| {
            bar.set_message(step.to_string());
            bar.set_position((done * scale) as u64);
        },
    )?;
    bar.set_message("certified bounds and checks");
    let lenets: Vec<&LeNet<f32>> = nets.iter().chain(&member_nets).map(|(_, n)| n).collect();
    let evaluated = evaluate::Evaluated {
        model: model.as_ref(),
        lenets,
        certifiable: match (committee.is_some(), nets.first()) {
            (false, Some((_, net))) => Some(net),
            _ => None,
        },
        stages: &preprocessing.stages,
        attack_through_classifier: preprocessing.attack_through == AttackThrough::Classifier
            && !preprocessing.stages.is_empty(),
    };
    let result = evaluate::report(
        &name,
        &source_file.display().to_string(),
        record,
        &evaluated,
        x,
        labels,
    );
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&result).expect("a report serialises");
    let md = report::evaluate::markdown(&result);
    let svg = report::evaluate::svg(&result);
    advmnist::io_safety::write_set(
        &a.out,
        "evaluate",
        &[
            ("evaluate.json", json.as_bytes()),
            ("evaluate.md", md.as_bytes()),
            ("evaluate.svg", svg.as_bytes()),
        ],
    )?;
    std::fs::remove_file(&partial).with_context(|| format!("removing {}", partial.display()))?;
    for &e in &eps {
        eprintln!("eps {e}: worst case {:.1}%", result.worst_error_pct(e));
    }
    let warnings = result.warnings();
    for w in &warnings {
        eprintln!("WARN {}: {}", w.check, w.evidence);
    }
    eprintln!(
        "wrote {} ({} of {} checks pass)",
        a.out.join("evaluate.md").display(),
        result.verdicts.len() - warnings.len(),
        result.verdicts.len()
    );
    if a.strict && !warnings.is_empty() {
        bail!("{} check(s) warn and --strict is given", warnings.len());
    }
    Ok(())
}
