//! The run, resumably: see the parent module.
//!
//! [`run_online`] reads as its steps: check the folder (a finished run is reused, an earlier
//! one is refused without `--resume`), find the starting state (iteration 0, or the
//! checkpoint's) and the curve up to it, train with the generic loop while evaluating and
//! keeping the curve on disk, then evaluate the final weights and assemble the model file and
//! the record. Writing them (with the curve's figure) as one set is `report::online::write`;
//! then [`remove_run_files`] removes the checkpoint and the progress file.

use super::curve::{evaluate, CurvePoint};
use super::objective::{OnlineConfig, OBJECTIVE};
use super::record::{
    check_settings, examples_of, io_error, model_meta, read_progress, read_record, write_progress,
    OnlineRecord, Progress, CHECKPOINT_FILE, MODEL_FILE, PROGRESS_FILE, PROGRESS_FORMAT,
    RECORD_FILE, RECORD_FORMAT, SET_NAME,
};
use super::OnlineError;
use crate::data::Mnist;
use crate::hashing::sha256_hex;
use crate::io_safety::{check_set, set_manifest};
use crate::models::file::{encode, tensors_of};
use crate::models::lenet::LeNet;
use crate::train::{checkpoint, run, starting_state, test_error_pct, Event, NoHook};
use crate::train::{TrainError, TrainOptions, TrainState, TrainingSet};
use ndarray::s;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How a run is driven: resumption, checkpoints, and an optional early stop.
#[derive(Clone, Debug)]
pub struct OnlineOptions {
    /// Continue the run found in the folder (without it, a folder holding a run is refused).
    pub resume: bool,
    /// Checkpoint every N iterations (0: never).
    pub checkpoint_every: u64,
    /// Stop once this iteration is reached, with a checkpoint, as a run killed right after its
    /// checkpoint; `--resume` continues it.
    pub stop_after: Option<u64>,
}

impl Default for OnlineOptions {
    fn default() -> Self {
        OnlineOptions {
            resume: false,
            checkpoint_every: 1000,
            stop_after: None,
        }
    }
}

/// Progress reports from [`run_online`].
#[derive(Clone, Debug)]
pub enum OnlineEvent {
    /// A note for the user (where a resumed run continues).
    Note(String),
    /// Training starts (or resumes) at `iteration`, to `to`.
    Started { iteration: u64, to: u64 },
    /// The generic loop's report (its `Evaluated` value is the clean error on the curve's
    /// images).
    Train(Event),
    /// A point of the curve was measured.
    Evaluated(CurvePoint),
}

/// A finished run, ready to be written: the model file's bytes and the record.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    pub net: LeNet<f32>,
    /// `online.safetensors`, as its bytes.
    pub model: Vec<u8>,
    pub record: OnlineRecord,
}

/// What [`run_online`] did.
#[derive(Clone, Debug)]
pub enum OnlineOutcome {
    /// The run trained to its end: write it (`report::online::write`), then
    /// [`remove_run_files`].
    Trained(Box<FinishedRun>),
    /// The run stopped at `iteration` (`OnlineOptions::stop_after`), its checkpoint written.
    Stopped { iteration: u64 },
    /// The folder already holds this run, finished and complete (its set checked): nothing to
    /// do but [`remove_run_files`] (a run killed between writing its set and removing them).
    AlreadyDone(Box<OnlineRecord>),
}

/// Runs (or, with `options.resume`, continues) on-line adversarial training into `dir`: see the
/// parent module. `data.train` is the training set; the curve is measured on the first
/// `cfg.eval_images` images of `data.test` and the final clean error on all of them.
pub fn run_online(
    cfg: &OnlineConfig,
    data: &Mnist,
    dir: &Path,
    options: &OnlineOptions,
    mut observer: impl FnMut(OnlineEvent),
) -> Result<OnlineOutcome, OnlineError> {
    cfg.validate()?;
    if cfg.batch > data.train.len() {
        return Err(OnlineError::Setting {
            flag: "--batch",
            reason: format!(
                "{} is larger than the training set ({} images)",
                cfg.batch,
                data.train.len()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let progress_path = dir.join(PROGRESS_FILE);
    if !options.resume && holds_a_run(dir) {
        return Err(OnlineError::EarlierRun { path: dir.into() });
    }
    if options.resume && check_set(dir, SET_NAME).is_ok() {
        let path = dir.join(RECORD_FILE);
        let record = read_record(&path)?;
        check_settings(
            &path,
            &record.config,
            &record.data_sha256,
            cfg,
            &data.sha256,
        )?;
        if record.config.iterations != cfg.iterations {
            return Err(OnlineError::Mismatch {
                path,
                what: "--iterations".into(),
                found: record.config.iterations.to_string(),
                wanted: cfg.iterations.to_string(),
            });
        }
        return Ok(OnlineOutcome::AlreadyDone(Box::new(record)));
    }

    let recipe = cfg.recipe(cfg.iterations);
    let (state, note) = starting_state(
        &recipe,
        &data.sha256,
        Some(&checkpoint_path),
        options.resume,
    )?;
    if let Some(note) = note {
        observer(OnlineEvent::Note(note));
    }
    let curve = curve_up_to(cfg, &data.sha256, &progress_path, state.iteration)?;

    let until = options
        .stop_after
        .map_or(cfg.iterations, |s| s.clamp(state.iteration, cfg.iterations));
    observer(OnlineEvent::Started {
        iteration: state.iteration,
        to: cfg.iterations,
    });
    let n = cfg.eval_images.min(data.test.len());
    let (x, labels) = (
        data.test.images.slice(s![..n, .., .., ..]),
        &data.test.labels[..n],
    );
    let is_curve_point =
        |t: u64| t == cfg.iterations || (cfg.eval_every > 0 && t.is_multiple_of(cfg.eval_every));
    // The generic loop's evaluator sees only the weights: the observer hands it the iteration
    // (the loop reports an iteration before evaluating it), and it hands back the point.
    let current = AtomicU64::new(state.iteration);
    let measured: Mutex<Option<CurvePoint>> = Mutex::new(None);
    let evaluator = |net: &LeNet<f32>| {
        let t = current.load(Ordering::SeqCst);
        if !is_curve_point(t) {
            // The loop's evaluation at an early stop: not a point of the curve.
            return f64::NAN;
        }
        let point = evaluate(net, x, labels, cfg.seed, t);
        let clean = point.clean_error_pct;
        *measured.lock().expect("not poisoned") = Some(point);
        clean
    };
    let mut progress = Progress {
        format: PROGRESS_FORMAT.into(),
        config: cfg.clone(),
        data_sha256: data.sha256.clone(),
        curve,
    };
    let mut write_error: Option<OnlineError> = None;
    let state = run(
        &cfg.recipe(until),
        TrainingSet::of(data),
        state,
        &TrainOptions {
            checkpoint: Some(checkpoint_path.clone()),
            checkpoint_every: options.checkpoint_every,
            eval_every: cfg.eval_every,
        },
        Some(&evaluator),
        &mut NoHook,
        |event| {
            match &event {
                Event::Iteration { iteration, .. } => current.store(*iteration, Ordering::SeqCst),
                Event::Evaluated { .. } => {
                    if let Some(point) = measured.lock().expect("not poisoned").take() {
                        progress.curve.push(point.clone());
                        // Written before the loop's checkpoint of the same iteration, so a
                        // checkpoint never holds an iteration whose curve is not on disk.
                        if let Err(e) = write_progress(&progress_path, &progress) {
                            write_error.get_or_insert(e);
                        }
                        observer(OnlineEvent::Evaluated(point));
                    }
                }
                Event::Checkpointed { .. } => {}
            }
            observer(OnlineEvent::Train(event));
        },
    )?;
    if let Some(e) = write_error {
        return Err(e);
    }
    TrainError::check_weights(&state.net, state.iteration, None)?;
    if state.iteration < cfg.iterations {
        // Stopped early: the checkpoint a kill right after it would leave.
        checkpoint::save(&checkpoint_path, &cfg.recipe(until), &data.sha256, &state)?;
        return Ok(OnlineOutcome::Stopped {
            iteration: state.iteration,
        });
    }
    let mut curve = progress.curve;
    if curve.last().map(|p| p.iteration) != Some(state.iteration) {
        // No evaluation inside the loop (eval_every 0, or nothing left to train).
        let point = evaluate(&state.net, x, labels, cfg.seed, state.iteration);
        observer(OnlineEvent::Evaluated(point.clone()));
        curve.push(point);
    }
    Ok(OnlineOutcome::Trained(Box::new(finished(
        cfg, data, state, curve, n,
    ))))
}

/// The model file and the record of the final state.
fn finished(
    cfg: &OnlineConfig,
    data: &Mnist,
    state: TrainState,
    curve: Vec<CurvePoint>,
    curve_images: usize,
) -> FinishedRun {
    let meta = model_meta(cfg, &data.sha256);
    let model = encode(&tensors_of(&state.net, ""), &meta.to_map());
    let record = OnlineRecord {
        format: RECORD_FORMAT.into(),
        advmnist_version: env!("CARGO_PKG_VERSION").into(),
        config: cfg.clone(),
        recipe: cfg.lenet(),
        objective: OBJECTIVE.into(),
        examples: examples_of(cfg).into(),
        data_sha256: data.sha256.clone(),
        model: MODEL_FILE.into(),
        model_sha256: sha256_hex(&model),
        test_error_pct: test_error_pct(&state.net, data.test.images.view(), &data.test.labels),
        curve_images,
        curve,
    };
    FinishedRun {
        net: state.net,
        model,
        record,
    }
}

/// The curve an earlier run measured up to `iteration` (where its checkpoint is), read from
/// its progress file and checked: its settings must be this run's, and it must hold exactly
/// the points up to `iteration` (points after it are dropped: the resumed run measures them
/// again, to the same values).
fn curve_up_to(
    cfg: &OnlineConfig,
    data_sha256: &str,
    path: &Path,
    iteration: u64,
) -> Result<Vec<CurvePoint>, OnlineError> {
    let wanted: Vec<u64> = match cfg.eval_every {
        0 => Vec::new(),
        every => (1..=iteration / every).map(|k| k * every).collect(),
    };
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    if !path.exists() {
        return Err(OnlineError::Inconsistent {
            path: path.into(),
            reason: format!(
                "missing, but the checkpoint is at iteration {iteration}, after evaluations whose curve it holds"
            ),
        });
    }
    let progress = read_progress(path)?;
    check_settings(
        path,
        &progress.config,
        &progress.data_sha256,
        cfg,
        data_sha256,
    )?;
    let curve: Vec<CurvePoint> = progress
        .curve
        .into_iter()
        .filter(|p| p.iteration <= iteration)
        .collect();
    let found: Vec<u64> = curve.iter().map(|p| p.iteration).collect();
    if found != wanted {
        return Err(OnlineError::Inconsistent {
            path: path.into(),
            reason: format!(
                "its curve up to the checkpoint's iteration {iteration} has points at {found:?}, not at {wanted:?}"
            ),
        });
    }
    Ok(curve)
}

/// Whether `dir` holds any file of a run.
fn holds_a_run(dir: &Path) -> bool {
    [
        CHECKPOINT_FILE,
        PROGRESS_FILE,
        RECORD_FILE,
        MODEL_FILE,
        super::record::FIGURE_FILE,
    ]
    .iter()
    .any(|f| dir.join(f).exists())
        || set_manifest(dir, SET_NAME).exists()
}

/// Removes a finished run's checkpoint and progress file (call it once the set is written).
pub fn remove_run_files(dir: &Path) -> Result<(), OnlineError> {
    for file in [CHECKPOINT_FILE, PROGRESS_FILE] {
        let path: PathBuf = dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    Ok(())
}
