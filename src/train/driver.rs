//! A training run as a program carries it out, for any [`Recipe`]: the model file and the
//! checkpoint checked and locked before any work ([`RunFiles`]), the batch checked against the
//! training set and the memory ([`check_batch`]), the starting state (iteration 0, or the
//! checkpoint's on resume), the loop with its periodic evaluation, and the evaluation of the final
//! state ([`run_training`]). `advmnist train` and `advmnist dae train` are this driver with their
//! own recipes; the command line only shows its progress and saves the model.

use super::checkpoint::CheckpointError;
use super::{Evaluator, Event, NoHook, Recipe, TrainError, TrainOptions, TrainState, TrainingSet};
use crate::data::Mnist;
use crate::io_safety::{self, RunLock};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a run stopped or could not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("removing the finished run's checkpoint {}", path.display())]
    RemoveCheckpoint {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A run's model file and checkpoint, checked before any work and locked until the run ends.
pub struct RunFiles {
    checkpoint: PathBuf,
    checkpoint_every: u64,
    /// Exclusive locks on `--out` and `--checkpoint`, held until the run ends.
    _locks: [RunLock; 2],
}

impl RunFiles {
    /// Checks that the model file `out` and the checkpoint (`checkpoint`, by default `out` with
    /// `.ckpt` appended) can be written, are not the same file, and are none of the data files
    /// in `data_dir`, then locks both against a second run. The messages name the flags `--out`
    /// and `--checkpoint`. A checkpoint is written every `checkpoint_every` iterations (0: never).
    pub fn check(
        out: &Path,
        checkpoint: Option<&Path>,
        checkpoint_every: u64,
        data_dir: &Path,
    ) -> Result<Self, String> {
        let checkpoint = checkpoint
            .map(PathBuf::from)
            .unwrap_or_else(|| super::default_checkpoint_path(out));
        // Both files are written long after the start: check their places before training.
        io_safety::check_output_file("--out", out)?;
        io_safety::check_output_file("--checkpoint", &checkpoint)?;
        if io_safety::same_file(out, &checkpoint) {
            return Err(format!("--checkpoint and --out name the same file ({}): the finished run removes its checkpoint", out.display()));
        }
        let data_files = io_safety::data_inputs(data_dir);
        let inputs: Vec<(&str, &Path)> =
            data_files.iter().map(|p| ("--data", p.as_path())).collect();
        io_safety::refuse_overwrite(&[("--out", out), ("--checkpoint", &checkpoint)], &inputs)?;
        let _locks = [
            RunLock::acquire("--out", out)?,
            RunLock::acquire("--checkpoint", &checkpoint)?,
        ];
        Ok(RunFiles {
            checkpoint,
            checkpoint_every,
            _locks,
        })
    }

    /// The checkpoint file.
    pub fn checkpoint(&self) -> &Path {
        &self.checkpoint
    }

    /// Removes the finished run's checkpoint (call it after the model is saved).
    pub fn finish(&self) -> Result<(), RunError> {
        if self.checkpoint.exists() {
            std::fs::remove_file(&self.checkpoint).map_err(|source| {
                RunError::RemoveCheckpoint {
                    path: self.checkpoint.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

/// A batch larger than the training set cannot be drawn (and would ask for gigabytes); a batch
/// that fits the training set must also fit in memory (`bytes_per_image` of it, measured: see
/// [`crate::limits::LENET_TRAIN_BYTES_PER_IMAGE`]).
pub fn check_batch(batch: usize, data: &Mnist, bytes_per_image: u64) -> Result<(), String> {
    if batch > data.train.len() {
        return Err(format!(
            "--batch {batch} is larger than the training set ({} images): use at most {}",
            data.train.len(),
            data.train.len()
        ));
    }
    let needed = crate::limits::bytes_of(&[batch as u64, bytes_per_image]);
    crate::limits::check_memory(
        &format!("a training batch of {batch} images (--batch)"),
        needed,
    )
}

/// How often a run is evaluated while it trains, and how.
pub struct Evaluation<'a, N> {
    /// Every this many iterations and at the last (0: only the final state, after the loop).
    pub every: u64,
    /// The figure measured (LeNet: the test error in %; the autoencoder: its test
    /// reconstruction loss).
    pub evaluate: Evaluator<'a, N>,
}

/// What [`run_training`] reports as it goes.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// The run starts at `iteration`: 0, or the checkpoint's on resume. `note` says which
    /// checkpoint it resumes from, or that none was found.
    Started {
        iteration: u64,
        note: Option<String>,
    },
    /// An event of the training loop.
    Train(Event),
}

/// A finished run.
pub struct Trained<N> {
    pub state: TrainState<N>,
    /// Wall time of the whole run, in seconds.
    pub seconds: f64,
    /// The final state's evaluation: measured by the loop at its last iteration, or after it
    /// when the loop did not (evaluation every 0 iterations, or nothing left to train).
    pub final_evaluation: f64,
}

/// Trains any network from its recipe, with checkpoints in `files` and resumption (`resume`:
/// from the checkpoint if there is one; without it, an existing checkpoint is refused rather
/// than overwritten). `observer` sees the start and every event of the loop.
pub fn run_training<R: Recipe>(
    recipe: &R,
    data: &Mnist,
    files: &RunFiles,
    resume: bool,
    evaluation: Evaluation<'_, R::Net>,
    mut observer: impl FnMut(RunEvent),
) -> Result<Trained<R::Net>, RunError> {
    let started = Instant::now();
    let (state, note) =
        super::starting_state(recipe, &data.sha256, Some(&files.checkpoint), resume)?;
    observer(RunEvent::Started {
        iteration: state.iteration,
        note,
    });
    let options = TrainOptions {
        checkpoint: Some(files.checkpoint.clone()),
        checkpoint_every: files.checkpoint_every,
        eval_every: evaluation.every,
    };
    let mut last_evaluation = None;
    let state = super::run(
        recipe,
        TrainingSet::of(data),
        state,
        &options,
        Some(evaluation.evaluate),
        &mut NoHook,
        |event| {
            if let Event::Evaluated { iteration, value } = event {
                last_evaluation = Some((iteration, value));
            }
            observer(RunEvent::Train(event));
        },
    )?;
    let final_evaluation = match last_evaluation {
        Some((iteration, value)) if iteration == state.iteration => value,
        _ => (evaluation.evaluate)(&state.net),
    };
    Ok(Trained {
        state,
        seconds: started.elapsed().as_secs_f64(),
        final_evaluation,
    })
}

/// The process's peak resident memory so far, as Linux states it (`VmHWM` in
/// `/proc/self/status`, e.g. `1380000 kB`); `None` elsewhere.
pub fn peak_resident_memory() -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{default_data_dir, load_mnist};
    use crate::models::file::save_model;
    use crate::models::lenet::{DropoutRates, LeNet};
    use crate::train::{model_meta, test_error_pct, TrainConfig};
    use tempfile::TempDir;

    fn recipe(iterations: u64) -> TrainConfig {
        TrainConfig {
            iterations,
            ..TrainConfig::lenet(DropoutRates::INP, 5)
        }
    }

    /// Runs the driver as `advmnist train` does and saves the model; returns the model file's
    /// bytes, the run's events and its final evaluation.
    fn train_to_file(
        data: &Mnist,
        dir: &Path,
        name: &str,
        iterations: u64,
        resume: bool,
        finish: bool,
    ) -> (Vec<u8>, Vec<RunEvent>, f64) {
        let cfg = recipe(iterations);
        let out = dir.join(name);
        let checkpoint = dir.join(format!("{name}.run.ckpt"));
        let files = RunFiles::check(&out, Some(&checkpoint), 4, Path::new("no-data")).unwrap();
        let evaluate =
            |net: &LeNet<f32>| test_error_pct(net, data.test.images.view(), &data.test.labels);
        let mut events = Vec::new();
        let trained = run_training(
            &cfg,
            data,
            &files,
            resume,
            Evaluation {
                every: 0,
                evaluate: &evaluate,
            },
            |e| events.push(e),
        )
        .unwrap();
        save_model(
            &out,
            &trained.state.net,
            &model_meta(&cfg, data, trained.state.iteration),
        )
        .unwrap();
        if finish {
            files.finish().unwrap();
            assert!(!checkpoint.exists(), "finish removes the checkpoint");
        }
        let value = trained.final_evaluation;
        assert_eq!(
            value,
            evaluate(&trained.state.net),
            "the final state is evaluated"
        );
        (std::fs::read(&out).unwrap(), events, value)
    }

    /// A run stopped after its first checkpoint (here: a run of 8 iterations that never
    /// finishes, leaving its iteration-4 checkpoint) and resumed to 12 iterations writes the
    /// model file of an uninterrupted 12-iteration run, to the byte.
    #[test]
    fn a_resumed_run_writes_the_uninterrupted_runs_model_file() {
        let data = load_mnist(&default_data_dir()).expect("bundled MNIST loads");
        let dir = TempDir::new().unwrap();
        let (whole, events, value) = train_to_file(&data, dir.path(), "whole", 12, false, true);
        assert!(matches!(
            events[0],
            RunEvent::Started {
                iteration: 0,
                note: None
            }
        ));
        let iterations = events
            .iter()
            .filter(|e| matches!(e, RunEvent::Train(Event::Iteration { .. })))
            .count();
        assert_eq!(iterations, 12);

        train_to_file(&data, dir.path(), "part", 8, false, false);
        let checkpoint = dir.path().join("part.run.ckpt");
        assert!(checkpoint.exists(), "the stopped run left its checkpoint");
        // Without --resume the checkpoint of the earlier run is not overwritten.
        let refused = RunFiles::check(
            &dir.path().join("part"),
            Some(&checkpoint),
            4,
            Path::new("no-data"),
        )
        .map(|files| {
            let evaluate = |_: &LeNet<f32>| 0.0;
            run_training(
                &recipe(12),
                &data,
                &files,
                false,
                Evaluation {
                    every: 0,
                    evaluate: &evaluate,
                },
                |_| {},
            )
            .map(|_| ())
        })
        .unwrap();
        assert!(
            matches!(
                refused,
                Err(RunError::Checkpoint(CheckpointError::EarlierRun { .. }))
            ),
            "{:?}",
            refused.err()
        );

        let (resumed, events, resumed_value) =
            train_to_file(&data, dir.path(), "part", 12, true, true);
        match &events[0] {
            RunEvent::Started {
                iteration: 4,
                note: Some(note),
            } => assert!(note.contains("resuming from"), "{note}"),
            other => panic!("the resumed run started with {other:?}"),
        }
        assert_eq!(resumed, whole, "the resumed model file differs");
        assert_eq!(resumed_value, value);
    }

    #[test]
    fn the_model_and_the_checkpoint_may_not_be_one_file() {
        let dir = TempDir::new().unwrap();
        let out = dir.path().join("m.safetensors");
        let e = RunFiles::check(&out, Some(&out), 0, Path::new("no-data"))
            .err()
            .expect("refused");
        assert!(
            e.contains("--checkpoint and --out name the same file"),
            "{e}"
        );
    }
}
