//! `advmnist reproduce`: the whole study from one command.
//!
//! - [`plan`](mod@plan): the jobs (models to train, sweeps to run) and their dependencies.
//! - [`runner`]: runs a job once in a run folder, keyed by content, resumable, lockable, so that
//!   several processes (or machines sharing the folder) can split the work.
//! - [`logits_cache`]: logits one sweep computed and a committee's sweep needs again, kept in
//!   the run folder, keyed by model and images.
//! - [`table`]: gathers the finished sweeps into the study's Table 2 and the figures' curves.
//! - [`ablation`]: the declared ablation of staged adversarial training, as jobs of the same
//!   kind, and its gathering (`reproduce --ablation advtrain`).
//!
//! `report::reproduce` lays the gathered results out (Markdown, JSON, SVG, one HTML page).

pub mod ablation;
pub mod logits_cache;
pub mod plan;
pub mod runner;
pub mod table;

pub use plan::{plan, Job, JobSpec, Plan, Scale};
pub use runner::{JobRecord, ReproduceError, RunDir, Status};

use crate::data::Mnist;
use std::collections::BTreeMap;
use std::path::Path;

/// What [`run_all`] reports as it goes.
pub enum RunEvent<'a> {
    /// `job` (the `index`-th of `total`) starts running here.
    Started {
        index: usize,
        total: usize,
        job: &'a Job,
    },
    /// Progress within the running job.
    Progress { done: u64, total: u64 },
    /// `job` is finished: run here now, or found finished (`reused`).
    Finished {
        job: &'a Job,
        record: &'a JobRecord,
        reused: bool,
    },
    /// Nothing can run now: these jobs are running in other processes (or wait for them).
    Waiting { jobs: Vec<String> },
}

/// The verified records of the plan's finished jobs, without running anything.
pub fn finished_jobs(plan: &Plan, dir: &RunDir, data_sha256: &str) -> BTreeMap<String, JobRecord> {
    let mut finished = BTreeMap::new();
    for job in &plan.jobs {
        if let Status::Done(r) = runner::status(dir, job, data_sha256, &finished) {
            finished.insert(job.name.clone(), *r);
        }
    }
    finished
}

/// Runs every job of the plan not yet finished (or only `only`), in plan order, skipping jobs
/// that another process holds and coming back to them; returns every job's record.
pub fn run_all(
    plan: &Plan,
    dir: &RunDir,
    data: &Mnist,
    only: Option<&str>,
    observer: &mut dyn FnMut(RunEvent<'_>),
) -> Result<BTreeMap<String, JobRecord>, ReproduceError> {
    let mut finished: BTreeMap<String, JobRecord> = BTreeMap::new();
    if let Some(name) = only {
        let job = plan.job(name).ok_or_else(|| {
            ReproduceError(format!(
                "--job {name}: no such job in this plan (see --list-jobs)"
            ))
        })?;
        finished = finished_jobs(plan, dir, &data.sha256);
        if let Some(r) = finished.get(name) {
            observer(RunEvent::Finished {
                job,
                record: r,
                reused: true,
            });
            return Ok(finished);
        }
        return match runner::status(dir, job, &data.sha256, &finished) {
            Status::Blocked(missing) => Err(ReproduceError(format!(
                "--job {name}: it needs the jobs {} to finish first",
                missing.join(", ")
            ))),
            Status::Done(r) => {
                finished.insert(name.into(), *r);
                Ok(finished)
            }
            Status::Ready(key) => {
                let Some(_lock) = runner::try_lock(dir, job)? else {
                    return Err(ReproduceError(format!(
                        "--job {name}: another process is running this job"
                    )));
                };
                let record = run_here(dir, plan, job, &key, data, (1, 1), observer)?;
                finished.insert(name.into(), record);
                Ok(finished)
            }
        };
    }
    let total = plan.jobs.len();
    while finished.len() < total {
        let mut progressed = false;
        let mut held = Vec::new();
        for (index, job) in plan.jobs.iter().enumerate() {
            if finished.contains_key(&job.name) {
                continue;
            }
            match runner::status(dir, job, &data.sha256, &finished) {
                Status::Done(r) => {
                    observer(RunEvent::Finished {
                        job,
                        record: &r,
                        reused: true,
                    });
                    finished.insert(job.name.clone(), *r);
                    progressed = true;
                }
                Status::Blocked(_) => {}
                Status::Ready(key) => {
                    let Some(_lock) = runner::try_lock(dir, job)? else {
                        held.push(job.name.clone());
                        continue;
                    };
                    // Another process may have finished it between our check and our lock.
                    if let Some(r) = dir.verified_record(job, Some(&key)) {
                        observer(RunEvent::Finished {
                            job,
                            record: &r,
                            reused: true,
                        });
                        finished.insert(job.name.clone(), r);
                        progressed = true;
                        continue;
                    }
                    let record =
                        run_here(dir, plan, job, &key, data, (index + 1, total), observer)?;
                    finished.insert(job.name.clone(), record);
                    progressed = true;
                }
            }
        }
        if !progressed {
            if held.is_empty() {
                // Every remaining job is blocked by a job that is neither done nor held: cannot
                // happen with a plan in dependency order, but never spin on it.
                return Err(ReproduceError(
                    "no job can run and none is running elsewhere".into(),
                ));
            }
            observer(RunEvent::Waiting { jobs: held });
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }
    Ok(finished)
}

/// Runs `job` in this process (its lock held), reporting its start, progress and end;
/// `(index, total)` places it in the run.
fn run_here(
    dir: &RunDir,
    plan: &Plan,
    job: &Job,
    key: &str,
    data: &Mnist,
    (index, total): (usize, usize),
    observer: &mut dyn FnMut(RunEvent<'_>),
) -> Result<JobRecord, ReproduceError> {
    observer(RunEvent::Started { index, total, job });
    let shared = plan.shared_gaussian_logits();
    let record = runner::run_job(dir, job, key, data, &shared, &mut |d, t| {
        observer(RunEvent::Progress { done: d, total: t })
    })?;
    observer(RunEvent::Finished {
        job,
        record: &record,
        reused: false,
    });
    Ok(record)
}

/// The adversarial-training job: `train::adversarial` into the job's folder, which then holds
/// `snapshot-0.safetensors` .. `snapshot-K.safetensors` and `advtrain.json`. With
/// `train_images`, the stages see only the first N training images (quick runs), and the data's
/// identity recorded in the files says so.
fn adversarial_job(
    job: &str,
    cfg: crate::train::adversarial::AdvConfig,
    train_images: Option<usize>,
    data: &Mnist,
    dir: &Path,
    progress: runner::Progress<'_>,
) -> Result<String, ReproduceError> {
    use crate::train::adversarial::{run_adversarial, AdvError, AdvEvent, AdvOptions};
    let subset;
    let data = match train_images {
        Some(n) if n < data.train.len() => {
            subset = Mnist {
                train: data.train.subset(0..n),
                test: data.test.clone(),
                sha256: crate::hashing::sha256_hex(
                    format!("{} first {n} training images", data.sha256).as_bytes(),
                ),
            };
            &subset
        }
        _ => data,
    };
    let total = cfg.base_iterations + cfg.stages as u64 * cfg.stage_iterations;
    let options = AdvOptions {
        resume: true,
        ..AdvOptions::default()
    };
    let run = |observer: &mut dyn FnMut(AdvEvent)| {
        run_adversarial(&cfg, data, dir, &options, &mut *observer)
    };
    let mut observe = |e: AdvEvent| {
        if let AdvEvent::Train {
            event: crate::train::Event::Iteration { iteration, .. },
            ..
        } = e
        {
            progress(iteration, total)
        }
    };
    let outcome = match run(&mut observe) {
        // The folder holds a run of other settings (another scale): start it afresh.
        Err(
            AdvError::Mismatch { .. }
            | AdvError::BadRecord { .. }
            | AdvError::SnapshotChanged { .. },
        ) => {
            clear_folder(dir).map_err(|e| fail_job(job, e))?;
            run(&mut observe)
        }
        other => other,
    }
    .map_err(|e| fail_job(job, e))?;
    // The summary goes into the job's record, which states the result and must be the same
    // bytes however often the job was interrupted (`tests/integration/faults.rs`): how many
    // snapshots an earlier, stopped run had already made (`outcome.reused`) is the run's
    // history, not its result, and stays out of it.
    Ok(format!("{} snapshots", outcome.snapshots.len()))
}

/// The on-line training job: `train::online` into the job's folder, which then holds
/// `online.safetensors` and `online.json` (written as one set with `online.sha256`; the
/// command's curve figure is left to `advmnist advtrain --mode online`). A killed job resumes
/// from its checkpoint to the same bytes.
fn online_job(
    job: &str,
    cfg: &crate::train::online::OnlineConfig,
    data: &Mnist,
    dir: &Path,
    progress: runner::Progress<'_>,
) -> Result<String, ReproduceError> {
    use crate::train::online::{
        remove_run_files, run_online, to_json, OnlineError, OnlineEvent, OnlineOptions,
        OnlineOutcome, MODEL_FILE, RECORD_FILE, SET_NAME,
    };
    let total = cfg.iterations;
    let options = OnlineOptions {
        resume: true,
        ..OnlineOptions::default()
    };
    let mut run = || {
        run_online(cfg, data, dir, &options, |e| {
            if let OnlineEvent::Train(crate::train::Event::Iteration { iteration, .. }) = e {
                progress(iteration, total)
            }
        })
    };
    let outcome = match run() {
        // The folder holds a run of other settings (another scale): start it afresh.
        Err(
            OnlineError::Mismatch { .. }
            | OnlineError::BadRecord { .. }
            | OnlineError::Checkpoint(_),
        ) => {
            clear_folder(dir).map_err(|e| fail_job(job, e))?;
            run()
        }
        other => other,
    }
    .map_err(|e| fail_job(job, e))?;
    let record = match outcome {
        OnlineOutcome::Trained(run) => {
            crate::io_safety::write_set(
                dir,
                SET_NAME,
                &[
                    (MODEL_FILE, run.model.as_slice()),
                    (RECORD_FILE, to_json(&run.record).as_bytes()),
                ],
            )
            .map_err(|e| fail_job(job, e))?;
            run.record
        }
        OnlineOutcome::AlreadyDone(record) => *record,
        OnlineOutcome::Stopped { iteration } => {
            return Err(fail_job(job, format!("stopped at iteration {iteration}")))
        }
    };
    remove_run_files(dir).map_err(|e| fail_job(job, e))?;
    Ok(format!("clean test error {:.2}%", record.test_error_pct))
}

fn fail_job(job: &str, e: impl std::fmt::Display) -> ReproduceError {
    ReproduceError(format!("job {job}: {e}"))
}

/// Removes every file of a job's folder except its lock.
fn clear_folder(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".lock") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
