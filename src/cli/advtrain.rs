//! `advmnist advtrain`: staged adversarial training (`train::adversarial`, the default) or
//! on-line adversarial training (`train::online`, `--mode online`), with a progress bar.

use super::args::{at_most, whole_number};
use super::outputs::{check_output_folder, refuse_overwrite};
use super::progress;
use advmnist::data;
use advmnist::limits::{MAX_ITERATIONS, MAX_STAGES};
use advmnist::train::adversarial::{self as adv, AdvConfig, AdvEvent, AdvOptions};
use advmnist::train::online::{self, OnlineConfig, OnlineEvent, OnlineOptions, OnlineOutcome};
use advmnist::train::Event;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which adversarial training `advtrain` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The study's staged training (sections 3.3, 4.1, Eq. 3): snapshots trained in stages on
    /// a growing pool of adversarial sets
    Staged,
    /// Goodfellow et al.'s on-line training (2015, section 6): every batch's FGSM examples from
    /// the current weights, loss alpha J(x) + (1 - alpha) J(x_adv)
    Online,
}

#[derive(Args)]
pub struct AdvtrainArgs {
    /// Which adversarial training: staged (the study's, the default) or online (Goodfellow et
    /// al. 2015, section 6; docs/adversarial-training.md).
    #[arg(long, value_enum, default_value = "staged")]
    mode: Mode,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Staged mode: adversarial stages after the natural model (default and the study: 5); K
    /// stages give K + 1 snapshots. At most 20.
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = at_most(MAX_STAGES))]
    stages: Option<usize>,
    /// Staged mode: iterations per stage (default and the study: 5,000), at most 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    stage_iters: Option<u64>,
    /// Staged mode: iterations of the natural model, Caffe's LeNet recipe (default and the
    /// study: 10,000), at most 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    base_iters: Option<u64>,
    /// Staged mode: scale of the gradient step from the gradient-sign image (>= 0; default
    /// 0.2, which makes the step move the median image's most sensitive pixel by about eps,
    /// measured). The study gives none.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    c: Option<f32>,
    /// Staged mode, the declared ablation's variant: each stage restarts Caffe's learning rate
    /// at 0.01 with zero momentum, as `caffe train --weights` from the previous snapshot would
    /// (the study's procedure, and the default, continues one run across stages).
    #[arg(long)]
    restart: bool,
    /// Staged mode, the declared ablation's variant: each stage trains on the natural images
    /// and the newest adversarial set only (the default pools every earlier set).
    #[arg(long)]
    newest_only: bool,
    /// Staged mode, the declared ablation's variant: every N iterations of a stage, its newest
    /// adversarial set is made again by the current weights (default 0: never), at most
    /// 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    refresh_every: Option<u64>,
    /// Online mode: iterations (batches) of Caffe's LeNet recipe, as `advmnist train`
    /// (default 10,000), at most 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    iterations: Option<u64>,
    /// Online mode: weight of the natural images' loss, in [0, 1] (default 0.5, Goodfellow et
    /// al.'s): alpha J(x) + (1 - alpha) J(x_adv).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    alpha: Option<f32>,
    /// Online mode: start each example at a uniform point of the eps-ball and take a sign step
    /// of 1.25 eps (Wong, Rice and Kolter 2020), against catastrophic overfitting.
    #[arg(long)]
    random_start: bool,
    /// Online mode: measure clean, FGSM and PGD error on the first 1,000 test images every N
    /// iterations and at the end (default 1,000; 0: only at the end), at most 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    eval_every: Option<u64>,
    /// Radius of the adversarial examples (the gradient-sign step), in (0, 1]. The study gives
    /// none; 0.25 is Goodfellow et al.'s MNIST value (docs/adversarial-training.md).
    #[arg(long, default_value_t = AdvConfig::DEFAULT_EPS, value_name = "E", allow_negative_numbers = true)]
    eps: f32,
    /// Seed of every random draw (initial weights, shuffling, random starts).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Continue the run in --out, to the bytes of an uninterrupted run. Staged: recorded
    /// snapshots are reused after checking their SHA-256, the stage in progress continues from
    /// DIR/advtrain.ckpt. Online: continues from DIR/online.ckpt and DIR/online.progress.json.
    #[arg(long)]
    resume: bool,
    /// Checkpoint every N iterations (0: staged, only at the end of each stage; online,
    /// never), at most 1,000,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = at_most(MAX_ITERATIONS))]
    checkpoint_every: u64,
}

impl AdvtrainArgs {
    /// Refuses the flags of the other mode, naming the first one given.
    fn refuse_other_modes_flags(&self) -> Result<()> {
        let (given, other, own) = match self.mode {
            Mode::Staged => (
                vec![
                    ("--iterations", self.iterations.is_some()),
                    ("--alpha", self.alpha.is_some()),
                    ("--random-start", self.random_start),
                    ("--eval-every", self.eval_every.is_some()),
                ],
                "on-line training (--mode online)",
                "staged training (--mode staged, the default) takes --stages, --stage-iters, --base-iters, --eps, --c, --restart, --newest-only and --refresh-every",
            ),
            Mode::Online => (
                vec![
                    ("--stages", self.stages.is_some()),
                    ("--stage-iters", self.stage_iters.is_some()),
                    ("--base-iters", self.base_iters.is_some()),
                    ("--c", self.c.is_some()),
                    ("--restart", self.restart),
                    ("--newest-only", self.newest_only),
                    ("--refresh-every", self.refresh_every.is_some()),
                ],
                "staged training (--mode staged, the default)",
                "on-line training (--mode online) takes --iterations, --alpha, --eps, --random-start and --eval-every",
            ),
        };
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            bail!("{flag} belongs to {other}; {own}");
        }
        Ok(())
    }
}

/// `advmnist advtrain`: the mode's training.
pub fn advtrain(a: AdvtrainArgs, data_dir: &Path) -> Result<()> {
    a.refuse_other_modes_flags()?;
    match a.mode {
        Mode::Staged => staged(a, data_dir),
        Mode::Online => online_training(a, data_dir),
    }
}

/// Staged adversarial training (`train::adversarial`).
fn staged(a: AdvtrainArgs, data_dir: &Path) -> Result<()> {
    let defaults = AdvConfig::default();
    let cfg = AdvConfig {
        seed: a.seed,
        base_iterations: a.base_iters.unwrap_or(defaults.base_iterations),
        stages: a.stages.unwrap_or(defaults.stages),
        stage_iterations: a.stage_iters.unwrap_or(defaults.stage_iterations),
        eps: a.eps,
        c: a.c.unwrap_or(AdvConfig::DEFAULT_C),
        variant: adv::Variant {
            restart: a.restart,
            newest_only: a.newest_only,
            refresh_every: a.refresh_every.unwrap_or(0),
        },
        ..defaults
    };
    cfg.validate()?;
    check_output_folder("--out", &a.out)?;
    let mut outputs = vec![
        a.out.join(adv::RECORD_FILE),
        a.out.join(adv::CHECKPOINT_FILE),
    ];
    outputs.extend((0..=cfg.stages).map(|k| a.out.join(adv::snapshot_file(k))));
    let outputs: Vec<(&str, &Path)> = outputs.iter().map(|p| ("--out", p.as_path())).collect();
    refuse_overwrite(&outputs, &[], data_dir)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let _lock = advmnist::io_safety::RunLock::acquire("--out", &a.out.join(adv::RECORD_FILE))
        .map_err(anyhow::Error::msg)?;
    super::interrupt::how_to_go_on(format!(
        "{} keeps the finished snapshots and the stage in progress up to its last checkpoint: \
         run the same command with --resume to continue from there.",
        a.out.display()
    ));
    let data = data::load_mnist(data_dir)?;
    eprintln!(
        "adversarial training into {}: natural model {} iterations, then {} stages of {}; eps {}, c {}, variant {}, seed {}, {} threads; the last pool holds {} images ({:.2} GB)",
        a.out.display(), cfg.base_iterations, cfg.stages, cfg.stage_iterations, cfg.eps, cfg.c, cfg.variant.name(), cfg.seed,
        rayon::current_num_threads(),
        cfg.pool_images(cfg.stages, data.train.len()),
        cfg.pool_bytes(cfg.stages, data.train.len()) as f64 / 1e9
    );
    let started = Instant::now();
    let mut bar = ProgressBar::hidden();
    let mut phase_started = Instant::now();
    let new_bar = |len: u64, position: u64, prefix: String, unit: &str| {
        let template =
            format!("{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}");
        progress::bar(len, &template)
            .with_position(position)
            .with_prefix(prefix)
    };
    let say = progress::say;
    let outcome = adv::run_adversarial(
        &cfg,
        &data,
        &a.out,
        &AdvOptions {
            resume: a.resume,
            checkpoint_every: a.checkpoint_every,
            ..AdvOptions::default()
        },
        |event| match event {
            AdvEvent::Note(line) => say(&bar, line),
            AdvEvent::SnapshotReused { stage, path } => say(
                &bar,
                format!(
                    "stage {stage}: reusing {} (SHA-256 checked)",
                    path.display()
                ),
            ),
            AdvEvent::MakingAdversarial {
                stage,
                stages,
                from_snapshot,
                done,
                total,
            } => {
                if done == 0 {
                    bar.finish_and_clear();
                    phase_started = Instant::now();
                    let prefix = format!("stage {stage} of {stages}: making adversarial images with snapshot {from_snapshot}");
                    bar = new_bar(total as u64, 0, prefix, "images");
                } else {
                    bar.set_position(done as u64);
                }
                if done == total {
                    bar.finish_and_clear();
                    eprintln!("stage {stage} of {stages}: made {total} adversarial images with snapshot {from_snapshot} in {:.1} s", phase_started.elapsed().as_secs_f64());
                }
            }
            AdvEvent::Training {
                stage,
                stages,
                from,
                to,
                pool,
            } => {
                bar.finish_and_clear();
                phase_started = Instant::now();
                let sets = pool
                    .adversarial
                    .iter()
                    .map(|s| format!("{} from snapshot {}", s.images, s.from_snapshot))
                    .collect::<Vec<_>>();
                let what = if sets.is_empty() {
                    format!("{} natural images", pool.natural)
                } else {
                    format!(
                        "{} natural + {} adversarial images",
                        pool.natural,
                        sets.join(" + ")
                    )
                };
                bar = new_bar(
                    to,
                    from,
                    format!("stage {stage} of {stages}: training on {what}"),
                    "it",
                );
            }
            AdvEvent::Train {
                event:
                    Event::Iteration {
                        iteration,
                        loss,
                        lr,
                    },
                ..
            } => {
                bar.set_position(iteration);
                if iteration % 10 == 0 {
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.5}"));
                }
            }
            AdvEvent::Train {
                event: Event::Evaluated { iteration, value },
                stage,
            } => say(
                &bar,
                format!("stage {stage}, iteration {iteration}: test error {value:.2}%"),
            ),
            AdvEvent::Train { .. } => {}
            AdvEvent::SnapshotSaved {
                stage,
                path,
                test_error_pct,
                ..
            } => {
                bar.finish_and_clear();
                let peak_memory = advmnist::train::driver::peak_resident_memory()
                    .map_or(String::new(), |v| format!("; peak memory so far {v}"));
                eprintln!(
                    "stage {stage} of {}: wrote {} (test error {test_error_pct:.2}%), trained in {:.1} s{peak_memory}",
                    cfg.stages, path.display(), phase_started.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    bar.finish_and_clear();
    if outcome.finished {
        eprintln!(
            "done in {:.1} s: {} snapshots ({} reused), record {}",
            started.elapsed().as_secs_f64(),
            outcome.snapshots.len(),
            outcome.reused,
            outcome.record.display()
        );
    }
    Ok(())
}

/// On-line adversarial training (`train::online`): trains, then writes the model, the record
/// and the curve's figure as one set and removes the checkpoint and the progress file.
fn online_training(a: AdvtrainArgs, data_dir: &Path) -> Result<()> {
    let defaults = OnlineConfig::new(a.seed);
    let cfg = OnlineConfig {
        iterations: a.iterations.unwrap_or(defaults.iterations),
        alpha: a.alpha.unwrap_or(defaults.alpha),
        eps: a.eps,
        random_start: a.random_start,
        eval_every: a.eval_every.unwrap_or(defaults.eval_every),
        ..defaults
    };
    cfg.validate()?;
    check_output_folder("--out", &a.out)?;
    let outputs: Vec<PathBuf> = [
        online::MODEL_FILE,
        online::RECORD_FILE,
        online::FIGURE_FILE,
        online::CHECKPOINT_FILE,
        online::PROGRESS_FILE,
    ]
    .iter()
    .map(|f| a.out.join(f))
    .chain([advmnist::io_safety::set_manifest(&a.out, online::SET_NAME)])
    .collect();
    let outputs: Vec<(&str, &Path)> = outputs.iter().map(|p| ("--out", p.as_path())).collect();
    refuse_overwrite(&outputs, &[], data_dir)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let _lock = advmnist::io_safety::RunLock::acquire("--out", &a.out.join(online::RECORD_FILE))
        .map_err(anyhow::Error::msg)?;
    super::interrupt::how_to_go_on(format!(
        "{} holds its checkpoint: run the same command with --resume to continue from there.",
        a.out.join(online::CHECKPOINT_FILE).display()
    ));
    let data = data::load_mnist(data_dir)?;
    eprintln!(
        "on-line adversarial training into {}: {} iterations of batch {} + its {} adversarial examples; alpha {}, eps {}, {}seed {}, {} threads",
        a.out.display(),
        cfg.iterations,
        cfg.batch,
        cfg.batch,
        cfg.alpha,
        cfg.eps,
        if cfg.random_start { "random start, " } else { "" },
        cfg.seed,
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let mut bar = ProgressBar::hidden();
    let say = progress::say;
    let outcome = online::run_online(
        &cfg,
        &data,
        &a.out,
        &OnlineOptions {
            resume: a.resume,
            checkpoint_every: a.checkpoint_every,
            stop_after: None,
        },
        |event| match event {
            OnlineEvent::Note(line) => say(&bar, line),
            OnlineEvent::Started { iteration, to } => {
                bar = progress::bar(to, "{bar:30} {pos}/{len} it  {msg}  {per_sec}  ETA {eta}")
                    .with_position(iteration);
            }
            OnlineEvent::Train(Event::Iteration {
                iteration,
                loss,
                lr,
            }) => {
                bar.set_position(iteration);
                if iteration % 10 == 0 {
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.5}"));
                }
            }
            OnlineEvent::Train(_) => {}
            OnlineEvent::Evaluated(point) => {
                let at = |attack: &str, eps: f32| {
                    point
                        .error_at(attack, eps)
                        .map_or("-".to_string(), |e| format!("{e:.1}%"))
                };
                let mut line = format!(
                    "iteration {}: clean error {:.2}%",
                    point.iteration, point.clean_error_pct
                );
                for eps in online::CURVE_EPS {
                    line.push_str(&format!(
                        "; eps {eps}: FGSM {}, PGD {}",
                        at("fgsm", eps),
                        at("pgd", eps)
                    ));
                }
                say(&bar, line);
            }
        },
    );
    bar.finish_and_clear();
    match outcome? {
        OnlineOutcome::Trained(run) => {
            advmnist::report::online::write(&a.out, &run)?;
            online::remove_run_files(&a.out)?;
            eprintln!(
                "wrote {}, {} and {} (test error {:.2}% on all {} test images) in {:.1} s",
                a.out.join(online::MODEL_FILE).display(),
                online::RECORD_FILE,
                online::FIGURE_FILE,
                run.record.test_error_pct,
                data.test.len(),
                started.elapsed().as_secs_f64()
            );
        }
        OnlineOutcome::AlreadyDone(record) => {
            online::remove_run_files(&a.out)?;
            eprintln!(
                "{} already holds this run, finished (test error {:.2}%): nothing to do",
                a.out.display(),
                record.test_error_pct
            );
        }
        OnlineOutcome::Stopped { iteration } => {
            bail!("the run stopped at iteration {iteration} without being asked to")
        }
    }
    Ok(())
}
