//! `advmnist human-study` and `advmnist human-report`: the human perception study's page, and
//! the analysis of its results (`experiments::human_study`).

use super::args::{at_most, whole_number};
use super::outputs::{check_output_folder, check_writable_target, refuse_overwrite};
use super::progress;
use advmnist::data::{self, Split};
use advmnist::models::file::load_model;
use advmnist::models::lenet::LeNet;
use advmnist::report;
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct HumanStudyArgs {
    /// The page to write (one self-contained HTML file).
    #[arg(long, value_name = "FILE.html")]
    out: PathBuf,
    /// The model the gradient-sign images are made on. Default: a standard LeNet (seed 1,
    /// 10,000 iterations), trained now, with reference models of seeds 2-5 for the hard digits.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Models whose disagreement picks the hard digits. Default: the --model alone if given.
    #[arg(long, value_delimiter = ',', value_name = "FILE,...")]
    reference_models: Vec<PathBuf>,
    /// Seed of the subjects' image sets and Gaussian noise.
    #[arg(long, default_value_t = 1, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Subjects offered: ids 1 to N (each adds about 150-200 KB to the page), at most 1,000.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = at_most(advmnist::limits::MAX_SUBJECTS))]
    subjects: u32,
}

#[derive(Args)]
pub struct HumanReportArgs {
    /// The subjects' results files (the JSON files the page saves).
    #[arg(required = true, value_name = "RESULTS.json")]
    results: Vec<PathBuf>,
    /// The LeNet models compared with the humans. Default: 20 standard LeNets, seeds 1-20,
    /// trained now (about 70 s each on 2 cores).
    #[arg(long, value_delimiter = ',', value_name = "FILE,...")]
    models: Vec<PathBuf>,
    /// The model the study's adversarial images were made on (human-study --model). Default:
    /// whichever of the models has the weights the results name.
    #[arg(long, value_name = "FILE")]
    study_model: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "human", value_name = "DIR")]
    out: PathBuf,
}

/// Standard LeNets of the given seeds, trained now with one progress bar.
fn train_lenets_with_progress(
    data: &advmnist::data::Mnist,
    seeds: &[u64],
) -> Result<Vec<(String, LeNet<f32>)>> {
    use advmnist::experiments::human_study::{train_reference_lenet, REFERENCE_ITERATIONS};
    let bar = progress::bar(
        REFERENCE_ITERATIONS * seeds.len() as u64,
        "{msg} {bar:30} {pos}/{len} it  ETA {eta}",
    );
    let mut nets = Vec::new();
    for (k, &seed) in seeds.iter().enumerate() {
        bar.set_message(format!(
            "training LeNet seed {seed} ({}/{})",
            k + 1,
            seeds.len()
        ));
        let base = REFERENCE_ITERATIONS * k as u64;
        let net = train_reference_lenet(data, seed, REFERENCE_ITERATIONS, |i| {
            bar.set_position(base + i)
        })?;
        nets.push((
            format!(
                "lenet-seed-{seed} ({REFERENCE_ITERATIONS} iterations, trained by human-study)"
            ),
            net,
        ));
    }
    bar.finish_and_clear();
    Ok(nets)
}

pub fn human_study(a: HumanStudyArgs, data_dir: &Path) -> Result<()> {
    use advmnist::experiments::human_study::make_study;
    use advmnist::models::Classifier;
    if a.subjects == 0 {
        bail!("--subjects must be at least 1");
    }
    check_writable_target("--out", &a.out)?;
    let mut inputs: Vec<(&str, &Path)> = a.model.iter().map(|p| ("--model", p.as_path())).collect();
    inputs.extend(
        a.reference_models
            .iter()
            .map(|p| ("--reference-models", p.as_path())),
    );
    refuse_overwrite(&[("--out", &a.out)], &inputs, data_dir)?;
    let (model, mut reference): (LeNet<f32>, Vec<LeNet<f32>>) = match &a.model {
        Some(path) => (load_model(path)?.0, Vec::new()),
        None => {
            eprintln!("no --model: training the standard LeNet (seed 1) and 4 reference models (seeds 2-5) for the hard digits");
            let data = data::load_mnist(data_dir)?;
            let mut nets = train_lenets_with_progress(&data, &[1, 2, 3, 4, 5])?.into_iter();
            let model = nets.next().expect("five models").1;
            (model, nets.map(|n| n.1).collect())
        }
    };
    for path in &a.reference_models {
        reference.push(load_model(path)?.0);
    }
    if a.model.is_some() && a.reference_models.is_empty() {
        eprintln!("hard digits: the digits --model finds least likely (no --reference-models to disagree)");
    }
    let test = data::load_split(data_dir, Split::Test)?;
    let mut voters: Vec<&dyn Classifier> = vec![&model];
    voters.extend(reference.iter().map(|n| n as &dyn Classifier));
    let bar = progress::bar(
        a.subjects as u64,
        "making subjects' images {bar:30} {pos}/{len}",
    );
    let study = make_study(&model, &voters, &test, a.seed, a.subjects, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let html = report::human::study_html(&study);
    advmnist::io_safety::write_atomic(&a.out, html.as_bytes())?;
    eprintln!(
        "wrote {} (study {}, subjects 1-{}, {:.1} MB)",
        a.out.display(),
        study.design.id(),
        a.subjects,
        html.len() as f64 / 1e6
    );
    Ok(())
}

pub fn human_report(a: HumanReportArgs, data_dir: &Path) -> Result<()> {
    use advmnist::experiments::human_study::{
        analyse, load_results, weights_sha256, NamedModel, REFERENCE_MODELS,
    };
    check_output_folder("--out", &a.out)?;
    let written = advmnist::report::human::REPORT_FILES.map(|f| a.out.join(f));
    let mut inputs: Vec<(&str, &Path)> = a
        .results
        .iter()
        .map(|p| ("results file", p.as_path()))
        .collect();
    inputs.extend(a.models.iter().map(|p| ("--models", p.as_path())));
    inputs.extend(a.study_model.iter().map(|p| ("--study-model", p.as_path())));
    let outputs: Vec<(&str, &Path)> = written.iter().map(|w| ("--out", w.as_path())).collect();
    refuse_overwrite(&outputs, &inputs, data_dir)?;
    let test = data::load_split(data_dir, Split::Test)?;
    // Every file is checked before any model is trained.
    let subjects = load_results(&a.results, &test.labels)?;
    let wanted = subjects[0].results.study.model_sha256.clone();
    let nets: Vec<(String, LeNet<f32>)> = if a.models.is_empty() {
        eprintln!(
            "no --models: training {REFERENCE_MODELS} standard LeNets (seeds 1-{REFERENCE_MODELS})"
        );
        let data = data::load_mnist(data_dir)?;
        let seeds: Vec<u64> = (1..=REFERENCE_MODELS).collect();
        train_lenets_with_progress(&data, &seeds)?
    } else {
        advmnist::models::assemble::load_lenets(&a.models)?
    };
    let source: (String, LeNet<f32>) = match &a.study_model {
        Some(p) => {
            let net = load_model(p)?.0;
            if weights_sha256(&net) != wanted {
                bail!("--study-model {}: its weights (SHA-256 {}) are not those the results were made with ({wanted})", p.display(), weights_sha256(&net));
            }
            (p.display().to_string(), net)
        }
        None => match nets.iter().find(|(_, n)| weights_sha256(n) == wanted) {
            Some((name, net)) => (name.clone(), net.clone()),
            None => bail!(
                "none of the models has the weights the study's adversarial images were made with (SHA-256 {wanted}): pass that model with --study-model"
            ),
        },
    };
    let models: Vec<NamedModel> = nets
        .iter()
        .map(|(name, net)| NamedModel {
            name: name.clone(),
            model: net,
        })
        .collect();
    let bar = progress::bar(
        (subjects.len() * models.len()) as u64,
        "scoring models {bar:30} {pos}/{len} (subject, model)",
    );
    let analysis = analyse(
        &subjects,
        &models,
        (&source.0, &source.1),
        &test,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    report::human::write_human_report(&a.out, &analysis)?;
    for c in &analysis.conditions {
        println!(
            "{:>13} {:<5} humans {:5.1}%  models white-box {:5.1}%  transfer {:5.1}%",
            c.noise.name(),
            c.level,
            c.humans.summary.mean,
            c.models_white_box.summary.mean,
            c.models_transfer.summary.mean
        );
    }
    println!(
        "wrote {}/human.json, human.md, human.svg ({} subjects, {} models)",
        a.out.display(),
        subjects.len(),
        models.len()
    );
    Ok(())
}
