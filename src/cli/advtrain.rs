//! `advmnist advtrain`: staged adversarial training (`train::adversarial`), with a progress bar
//! per phase.

use super::args::{at_most, whole_number};
use super::outputs::{check_output_folder, refuse_overwrite};
use super::progress;
use advmnist::data;
use advmnist::limits::{MAX_ITERATIONS, MAX_STAGES};
use advmnist::train::adversarial::{self as adv, AdvConfig, AdvEvent, AdvOptions};
use advmnist::train::Event;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct AdvtrainArgs {
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Adversarial stages after the natural model (the study: 5); K stages give K + 1 snapshots.
    /// At most 20.
    #[arg(long, default_value_t = AdvConfig::default().stages, value_name = "K", allow_negative_numbers = true, value_parser = at_most(MAX_STAGES))]
    stages: usize,
    /// Iterations per stage (the study: 5,000), at most 1,000,000.
    #[arg(long, default_value_t = AdvConfig::default().stage_iterations, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    stage_iters: u64,
    /// Iterations of the natural model, Caffe's LeNet recipe (the study: 10,000), at most
    /// 1,000,000.
    #[arg(long, default_value_t = AdvConfig::default().base_iterations, value_name = "N", allow_negative_numbers = true, value_parser = at_most(MAX_ITERATIONS))]
    base_iters: u64,
    /// Gradient-sign step of the adversarial images, in (0, 1]. The study gives none; 0.25 is
    /// Goodfellow et al.'s MNIST value (docs/adversarial-training.md).
    #[arg(long, default_value_t = AdvConfig::DEFAULT_EPS, value_name = "E", allow_negative_numbers = true)]
    eps: f32,
    /// Scale of the gradient step from the gradient-sign image (>= 0). The study gives none;
    /// 0.2 makes the step move the median image's most sensitive pixel by about eps (measured).
    #[arg(long, default_value_t = AdvConfig::DEFAULT_C, value_name = "C", allow_negative_numbers = true)]
    c: f32,
    /// Seed of every random draw (initial weights, shuffling).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Continue the run in --out: recorded snapshots are reused after checking their SHA-256,
    /// the stage in progress continues from DIR/advtrain.ckpt, to the bytes of an uninterrupted run.
    #[arg(long)]
    resume: bool,
    /// Checkpoint every N iterations (0: only at the end of each stage), at most 1,000,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = at_most(MAX_ITERATIONS))]
    checkpoint_every: u64,
}

pub fn advtrain(a: AdvtrainArgs, data_dir: &Path) -> Result<()> {
    let cfg = AdvConfig {
        seed: a.seed,
        base_iterations: a.base_iters,
        stages: a.stages,
        stage_iterations: a.stage_iters,
        eps: a.eps,
        c: a.c,
        ..AdvConfig::default()
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
    let data = data::load_mnist(data_dir)?;
    eprintln!(
        "adversarial training into {}: natural model {} iterations, then {} stages of {}; eps {}, c {}, seed {}, {} threads; the last pool holds {} images ({:.2} GB)",
        a.out.display(), cfg.base_iterations, cfg.stages, cfg.stage_iterations, cfg.eps, cfg.c, cfg.seed,
        rayon::current_num_threads(),
        (cfg.stages + 1) * data.train.len(),
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
