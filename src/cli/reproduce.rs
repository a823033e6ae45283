//! `advmnist reproduce`: the command-line side of `experiments::reproduce` (progress display,
//! flags, the final gathering). Part of the binary, not the library.

use super::args::whole_number;
use super::outputs::check_output_folder;
use super::progress;
use advmnist::data;
use advmnist::experiments::reproduce::{self, RunDir, RunEvent, Scale};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct ReproduceArgs {
    /// Run folder. Models, sweeps and records go to DIR/jobs/, the report (table2.md,
    /// table2.json, figure*.svg, report.html, manifest.json) to DIR. An existing run folder is
    /// continued: finished jobs are reused when their inputs are unchanged (content hashes).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The same jobs at a small scale (a few hundred training iterations, 500 test images, 11
    /// levels): every file and row of the full run in a few minutes; the numbers mean little.
    #[arg(long)]
    quick: bool,
    /// Repeat every row with N seeds (models and noise), reporting mean and 95% CI. At most 20.
    #[arg(long, default_value_t = 1, value_name = "N", allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    seeds: usize,
    /// Print the jobs, one command line each with the jobs it needs, and exit: run them with
    /// GNU parallel or a cluster scheduler sharing DIR, then run `reproduce` once more to gather.
    #[arg(long)]
    list_jobs: bool,
    /// Run only this job (its dependencies must be finished) and exit, without the report.
    #[arg(long, value_name = "NAME", conflicts_with = "list_jobs")]
    job: Option<String>,
    /// Run a declared ablation instead of the study: `advtrain`, the grid of staged adversarial
    /// training (eps x c, a learning-rate restart, the newest set only, a refreshed set) and
    /// the on-line baseline, each measured on the same images; writes ablation-advtrain.md and
    /// .json to DIR (docs/adversarial-training.md). Shares DIR with the study's run: the
    /// default cell and the transfer source are the study's jobs.
    #[arg(long, value_enum, value_name = "WHAT")]
    ablation: Option<Ablation>,
    /// With --ablation and --seeds N: also repeat these cells with N seeds (comma-separated,
    /// e.g. eps0.1-c0.2,fresh); the default cell and the on-line baseline always are.
    #[arg(
        long,
        value_name = "CELLS",
        value_delimiter = ',',
        requires = "ablation"
    )]
    repeat: Vec<String>,
}

/// The ablations `reproduce` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Ablation {
    /// Staged adversarial training's declared grid.
    Advtrain,
}

pub fn reproduce(a: ReproduceArgs, data_dir: &Path) -> Result<()> {
    if a.seeds == 0 || a.seeds > 20 {
        bail!("--seeds must be between 1 and 20, got {}", a.seeds);
    }
    let scale = if a.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    let plan = match a.ablation {
        Some(Ablation::Advtrain) => {
            reproduce::ablation::plan(&scale, a.seeds, &a.repeat).map_err(anyhow::Error::msg)?
        }
        None => reproduce::plan(&scale, a.seeds),
    };
    if a.list_jobs {
        let flags = format!(
            "--out {}{}{}{}{}",
            a.out.display(),
            if a.quick { " --quick" } else { "" },
            if a.seeds > 1 {
                format!(" --seeds {}", a.seeds)
            } else {
                String::new()
            },
            if a.ablation.is_some() {
                " --ablation advtrain"
            } else {
                ""
            },
            if a.repeat.is_empty() {
                String::new()
            } else {
                format!(" --repeat {}", a.repeat.join(","))
            }
        );
        for job in &plan.jobs {
            let deps = job.dependencies();
            println!(
                "advmnist reproduce {flags} --job {}    # {}{}",
                job.name,
                job.about,
                if deps.is_empty() {
                    String::new()
                } else {
                    format!("; after {}", deps.join(" "))
                }
            );
        }
        println!("advmnist reproduce {flags}    # gathers the report once every job is done");
        return Ok(());
    }
    check_output_folder("--out", &a.out)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create the folder", a.out.display()))?;
    super::interrupt::how_to_go_on(format!(
        "{} keeps every finished job, and a training job's checkpoint: run the same command to \
         continue from there.",
        a.out.display()
    ));
    let data = data::load_mnist(data_dir)?;
    let dir = RunDir::new(&a.out);
    let started = Instant::now();
    let total_cost: f64 = plan.jobs.iter().map(|j| j.cost()).sum();
    let bar = progress::bar(
        total_cost.max(1.0) as u64,
        "{bar:30} {percent:>3}%  {msg}  elapsed {elapsed}  ETA {eta}",
    );
    eprintln!(
        "{} at the {} scale with {} seed(s): {} jobs in {}, {} threads",
        if a.ablation.is_some() {
            "running the declared ablation of staged adversarial training"
        } else {
            "reproducing the study"
        },
        scale.name,
        a.seeds,
        plan.jobs.len(),
        a.out.display(),
        rayon::current_num_threads()
    );
    let mut done_cost = 0.0;
    let mut current_cost = 0.0;
    let mut finished_count = 0;
    let records = reproduce::run_all(
        &plan,
        &dir,
        &data,
        a.job.as_deref(),
        &mut |event| match event {
            RunEvent::Started { job, .. } => {
                current_cost = job.cost();
                bar.set_message(format!(
                    "step {} of {}: {}",
                    finished_count + 1,
                    plan.jobs.len(),
                    job.about
                ));
            }
            RunEvent::Progress { done, total } => {
                let part = if total == 0 {
                    0.0
                } else {
                    done as f64 / total as f64
                };
                bar.set_position((done_cost + current_cost * part) as u64);
            }
            RunEvent::Finished {
                job,
                record,
                reused,
            } => {
                finished_count += 1;
                done_cost += job.cost();
                current_cost = 0.0;
                bar.set_position(done_cost as u64);
                if !reused {
                    progress::say(
                        &bar,
                        format!(
                            "[{finished_count}/{}] {} ({:.1} s): {}",
                            plan.jobs.len(),
                            job.name,
                            record.wall_s,
                            record.summary
                        ),
                    );
                }
            }
            RunEvent::Waiting { jobs } => bar.set_message(format!(
                "waiting for {} job(s) running in another process: {}",
                jobs.len(),
                jobs.join(", ")
            )),
        },
    )?;
    bar.finish_and_clear();
    if a.job.is_some() {
        eprintln!(
            "job {} finished; run `advmnist reproduce --out {}` to gather the report",
            a.job.as_deref().unwrap_or_default(),
            a.out.display()
        );
        return Ok(());
    }
    if a.ablation.is_some() {
        let ablation = reproduce::ablation::gather(&plan, &dir).map_err(anyhow::Error::msg)?;
        advmnist::report::ablation::write(&a.out, &ablation)?;
        print!("{}", advmnist::report::ablation::markdown(&ablation));
        eprintln!(
            "wrote {} in {} ({:.1} s this run)",
            advmnist::report::ablation::FILES.join(", "),
            a.out.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let gathered = reproduce::table::gather(&plan, &dir).map_err(anyhow::Error::msg)?;
    let figures = reproduce::table::figures(&plan, &dir).map_err(anyhow::Error::msg)?;
    let checksums = std::fs::read_to_string(data_dir.join(data::CHECKSUM_FILE)).unwrap_or_default();
    let manifest = advmnist::report::reproduce::manifest(
        &plan,
        &records,
        &data.sha256,
        &checksums,
        rayon::current_num_threads(),
    );
    let written =
        advmnist::report::reproduce::write_report(&a.out, &plan, &gathered, &figures, &manifest)?;
    // The two committees as committee files, for `eval`/`sweep`/`show --committee FILE`.
    let mut committees = Vec::new();
    for b in plan.base_seeds() {
        let standard: Vec<PathBuf> = (b..b + scale.committee as u64)
            .map(|s| {
                dir.job_dir(&format!("lenet-s{s}"))
                    .join("model.safetensors")
            })
            .collect();
        let adversarial: Vec<PathBuf> = (0..=scale.adv_stages)
            .map(|k| {
                dir.job_dir(&format!("adv-s{b}"))
                    .join(reproduce::plan::snapshot_file(k))
            })
            .collect();
        for (name, members) in [
            (format!("committee-standard-s{b}.json"), standard),
            (format!("committee-adversarial-s{b}.json"), adversarial),
        ] {
            advmnist::models::committee::write_committee_file(&a.out.join(&name), &members)?;
            committees.push(name);
        }
    }
    print!(
        "{}",
        advmnist::report::reproduce::table2_markdown(&gathered, &plan)
    );
    eprintln!(
        "wrote {}, {} in {} ({:.1} s this run)",
        written.join(", "),
        committees.join(", "),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
