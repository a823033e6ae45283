//! The stages run one after another into the output folder, resumably: see the parent module.
//!
//! [`run_adversarial`] reads as its steps: open (or start) the record, find the state the next
//! stage starts from, make the pool of the finished stages again, then per stage add the
//! previous snapshot's set, train, checkpoint, and save the snapshot.

use super::config::{AdvConfig, AdvOptions, StageRecipe};
use super::eq3::FORMULA;
use super::pool::{Pool, PoolComposition};
use super::record::{
    check_record, checkpoint_stage, holds_a_run, io_error, load_recorded_snapshot, read_record,
    snapshot_file, snapshot_meta, write_record, AdvRecord, SnapshotRecord, CHECKPOINT_FILE,
    RECORD_FILE, RECORD_FORMAT,
};
use super::AdvError;
use crate::data::Mnist;
use crate::hashing::sha256_hex;
use crate::io_safety::write_atomic;
use crate::models::file::{encode, tensors_of, ModelFileError, ModelMeta};
use crate::models::lenet::{DropoutRates, LeNet};
use crate::train::checkpoint;
use crate::train::{run, test_error_pct, Event, NoHook, Recipe, TrainError, TrainOptions};
use crate::train::{TrainState, TrainingSet};
use std::path::{Path, PathBuf};

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct AdvOutcome {
    /// `DIR/snapshot-0.safetensors`, ..., one per finished stage.
    pub snapshots: Vec<PathBuf>,
    /// `DIR/advtrain.json`.
    pub record: PathBuf,
    /// Whether every stage is done (false after `stop_after`).
    pub finished: bool,
    /// How many snapshots were reused from an earlier run after checking their hashes.
    pub reused: usize,
}

/// Progress reports from [`run_adversarial`].
#[derive(Clone, Debug)]
pub enum AdvEvent {
    /// A note for the user (e.g. where a resumed run continues).
    Note(String),
    /// Snapshot `stage` of an earlier run was found intact and is reused.
    SnapshotReused { stage: usize, path: PathBuf },
    /// Progress making the adversarial set of snapshot `from_snapshot`, used from stage
    /// `from_snapshot + 1` on (`done` of `total` images).
    MakingAdversarial {
        stage: usize,
        stages: usize,
        from_snapshot: usize,
        done: usize,
        total: usize,
    },
    /// Stage `stage` (0: the natural model) starts or resumes training, at global iteration
    /// `from`, to `to`, on `pool`.
    Training {
        stage: usize,
        stages: usize,
        from: u64,
        to: u64,
        pool: PoolComposition,
    },
    /// The generic loop's report inside stage `stage` (iterations are global).
    Train { stage: usize, event: Event },
    /// Snapshot `stage` is written.
    SnapshotSaved {
        stage: usize,
        path: PathBuf,
        sha256: String,
        test_error_pct: f64,
    },
}

/// Runs (or, with `options.resume`, continues) staged adversarial training into `dir`: see the
/// parent module's documentation. `data.train` is the natural training set; `data.test` is used for
/// the test error of each snapshot (and every `options.eval_every` iterations).
pub fn run_adversarial(
    cfg: &AdvConfig,
    data: &Mnist,
    dir: &Path,
    options: &AdvOptions,
    mut observer: impl FnMut(AdvEvent),
) -> Result<AdvOutcome, AdvError> {
    check_settings(cfg, data)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let run = RunFolder::new(cfg, data, dir);
    if !options.resume && holds_a_run(dir) {
        return Err(AdvError::EarlierRun { path: dir.into() });
    }
    let mut record = run.open_record()?;
    let done = record.snapshots.len();
    let mut snapshots: Vec<PathBuf> = (0..done).map(|k| dir.join(snapshot_file(k))).collect();
    let finish = |snapshots: Vec<PathBuf>, finished| AdvOutcome {
        snapshots,
        record: dir.join(RECORD_FILE),
        finished,
        reused: done,
    };
    if done == cfg.stages + 1 {
        // Every stage is done: check the snapshots, nothing else to do.
        for (k, path) in snapshots.iter().enumerate() {
            load_recorded_snapshot(dir, &record, k)?;
            observer(AdvEvent::SnapshotReused {
                stage: k,
                path: path.clone(),
            });
        }
        return Ok(finish(snapshots, true));
    }

    // Stage `done` is either in progress in the checkpoint, or about to start from the end of
    // stage `done - 1`, which the checkpoint holds.
    let first = done;
    let mut state = run.starting_state(first)?;
    if options.resume && (done > 0 || state.iteration > 0) {
        observer(AdvEvent::Note(format!(
            "resuming in {}: {done} snapshot(s) done, stage {first} from iteration {}",
            dir.display(),
            state.iteration
        )));
    }
    let (mut pool, mut latest) = run.rebuild_pool(&mut record, &snapshots, &mut observer)?;
    if let Some(net) = &latest {
        run.check_continues_from(net, &state, first, &snapshots)?;
    }

    for k in first..=cfg.stages {
        let holds_newest = pool
            .composition
            .adversarial
            .last()
            .is_some_and(|set| set.from_snapshot + 1 == k);
        if k > 0 && !holds_newest {
            let net = latest
                .take()
                .expect("the previous snapshot is loaded or just made");
            if cfg.variant.newest_only {
                pool.drop_adversarial();
            }
            run.add_set(&mut pool, &net, k - 1, &mut record, &mut observer)?;
        }
        if cfg.variant.restart && k > 0 && state.iteration == cfg.stage_start(k) {
            // Fine-tuning from the previous snapshot: Caffe's solver starts with zero history.
            state.velocity = LeNet::zeros();
        }
        let end = cfg.stage_end(k);
        let (trained, last_evaluation) =
            run.train_stage(k, &mut pool, state, options, &mut observer)?;
        state = trained;
        if state.iteration < end {
            return Ok(finish(snapshots, false));
        }
        let test_error = match last_evaluation {
            Some((iteration, value)) if iteration == state.iteration => value,
            _ => run.test_error(&state.net),
        };
        let path = run.save_snapshot(k, &pool, &state, test_error, &mut record, &mut observer)?;
        snapshots.push(path);
        latest = Some(state.net.clone());
        if options.stop_after.is_some_and(|s| s <= end) && k < cfg.stages {
            return Ok(finish(snapshots, false));
        }
    }
    Ok(finish(snapshots, true))
}

/// The weights that made the newest set inside a stage of the `refresh_every` variant
/// (removed at the stage's end).
pub const FRESH_FILE: &str = "advtrain.fresh.safetensors";

fn remove_if_present(path: &Path) -> Result<(), AdvError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Checks the settings, and that a batch fits in the training set.
fn check_settings(cfg: &AdvConfig, data: &Mnist) -> Result<(), AdvError> {
    cfg.validate()?;
    if cfg.batch > data.train.len() {
        return Err(AdvError::Setting {
            flag: "--batch",
            reason: format!(
                "{} is larger than the training set ({} images)",
                cfg.batch,
                data.train.len()
            ),
        });
    }
    Ok(())
}

/// One run's settings, data and files: what every step reads.
struct RunFolder<'a> {
    cfg: &'a AdvConfig,
    data: &'a Mnist,
    dir: &'a Path,
    /// `DIR/advtrain.json`.
    record_path: PathBuf,
    /// `DIR/advtrain.ckpt`.
    checkpoint: PathBuf,
}

impl<'a> RunFolder<'a> {
    fn new(cfg: &'a AdvConfig, data: &'a Mnist, dir: &'a Path) -> Self {
        RunFolder {
            cfg,
            data,
            dir,
            record_path: dir.join(RECORD_FILE),
            checkpoint: dir.join(CHECKPOINT_FILE),
        }
    }

    /// The earlier run's record, checked against this run's settings, or a new one; either way
    /// with this run's stage count.
    fn open_record(&self) -> Result<AdvRecord, AdvError> {
        let cfg = self.cfg;
        let mut record = if self.record_path.exists() {
            let r = read_record(&self.record_path)?;
            check_record(&self.record_path, &r, cfg, &self.data.sha256)?;
            r
        } else {
            AdvRecord {
                format: RECORD_FORMAT.into(),
                advmnist_version: env!("CARGO_PKG_VERSION").into(),
                config: cfg.clone(),
                data_sha256: self.data.sha256.clone(),
                formula: FORMULA.into(),
                base_model_sha256: None,
                snapshots: Vec::new(),
                adversarial_sets: Vec::new(),
            }
        };
        if record.snapshots.len() > cfg.stages + 1 {
            return Err(AdvError::Mismatch {
                path: self.record_path.clone(),
                what: "--stages".into(),
                found: (record.snapshots.len() - 1).to_string(),
                wanted: cfg.stages.to_string(),
            });
        }
        record.config.stages = cfg.stages;
        Ok(record)
    }

    /// The state stage `first` starts from: the checkpoint of stage `first` in progress, the
    /// checkpoint at the end of stage `first - 1` (its momentum carries over), or, for a run
    /// that has not begun, the initial network.
    fn starting_state(&self, first: usize) -> Result<TrainState, AdvError> {
        let (cfg, ckpt) = (self.cfg, &self.checkpoint);
        if ckpt.exists() {
            let stage = checkpoint_stage(ckpt)?;
            if stage + 1 == first {
                let recipe = StageRecipe::new(cfg, stage, cfg.stage_end(stage));
                let state = checkpoint::load(ckpt, &recipe, &self.data.sha256)?;
                if state.iteration != cfg.stage_end(stage) {
                    return Err(AdvError::Inconsistent {
                        path: ckpt.clone(),
                        reason: format!("it holds stage {stage} at iteration {}, before the end of that stage, whose snapshot is recorded", state.iteration),
                    });
                }
                Ok(state)
            } else if stage == first {
                let recipe = StageRecipe::new(cfg, stage, cfg.stage_end(stage));
                Ok(checkpoint::load(ckpt, &recipe, &self.data.sha256)?)
            } else {
                Err(AdvError::Inconsistent {
                    path: ckpt.clone(),
                    reason: format!(
                        "it holds stage {stage}, but {} records {first} finished snapshots",
                        self.record_path.display()
                    ),
                })
            }
        } else if first == 0 {
            Ok(TrainState::start(
                StageRecipe::new(cfg, 0, cfg.stage_end(0)).initial_net(),
            ))
        } else {
            Err(AdvError::Inconsistent {
                path: ckpt.clone(),
                reason: format!(
                    "the momentum at the end of stage {} is kept there, and the file is missing",
                    first - 1
                ),
            })
        }
    }

    /// Checks the snapshots already made and makes the pool they contributed to again: the
    /// natural set, then the set of every snapshot whose next stage is finished. Returns the
    /// pool and the latest snapshot's network.
    fn rebuild_pool(
        &self,
        record: &mut AdvRecord,
        snapshots: &[PathBuf],
        observer: &mut impl FnMut(AdvEvent),
    ) -> Result<(Pool, Option<LeNet<f32>>), AdvError> {
        let done = snapshots.len();
        let sets_held = if self.cfg.variant.newest_only {
            1
        } else {
            self.cfg.stages
        };
        let mut pool = Pool::natural(&self.data.train, sets_held);
        let mut latest: Option<LeNet<f32>> = None;
        for (k, path) in snapshots.iter().enumerate() {
            let net = load_recorded_snapshot(self.dir, record, k)?;
            observer(AdvEvent::SnapshotReused {
                stage: k,
                path: path.clone(),
            });
            if k + 1 < done && !self.cfg.variant.newest_only {
                // Snapshot k's set was made before stage k + 1, which is finished (with
                // `newest_only` the next stage drops it).
                self.add_set(&mut pool, &net, k, record, observer)?;
            }
            latest = Some(net);
        }
        Ok((pool, latest))
    }

    /// A checkpoint at the end of stage `first - 1` must hold that stage's snapshot's weights.
    fn check_continues_from(
        &self,
        latest: &LeNet<f32>,
        state: &TrainState,
        first: usize,
        snapshots: &[PathBuf],
    ) -> Result<(), AdvError> {
        if state.iteration == self.cfg.stage_end(first - 1) && state.net != *latest {
            return Err(AdvError::Inconsistent {
                path: self.checkpoint.clone(),
                reason: format!(
                    "its weights at the end of stage {} differ from {}",
                    first - 1,
                    snapshots[first - 1].display()
                ),
            });
        }
        Ok(())
    }

    /// The test error (%) of `net` on the run's test set.
    fn test_error(&self, net: &LeNet<f32>) -> f64 {
        test_error_pct(net, self.data.test.images.view(), &self.data.test.labels)
    }

    /// Trains stage `k` on `pool` from `state` to the stage's end (or to `options.stop_after`),
    /// checks the weights are finite, and checkpoints. Returns the state and the last test
    /// error measured on the way (its global iteration and value).
    ///
    /// With [`Variant::refresh_every`](super::Variant) `R`, the stage runs in segments of `R`
    /// iterations from its start; before each segment but the first the newest set is made
    /// again by the weights at the segment's start, which are kept in [`FRESH_FILE`] (written
    /// after the checkpoint of that iteration) so that a run resumed inside the segment makes
    /// the same set. At the stage's end the newest set is put back as its snapshot made it.
    fn train_stage(
        &self,
        k: usize,
        pool: &mut Pool,
        mut state: TrainState,
        options: &AdvOptions,
        observer: &mut impl FnMut(AdvEvent),
    ) -> Result<(TrainState, Option<(u64, f64)>), AdvError> {
        let cfg = self.cfg;
        let (start, end) = (cfg.stage_start(k), cfg.stage_end(k));
        let until = options
            .stop_after
            .map_or(end, |s| s.clamp(state.iteration, end));
        observer(AdvEvent::Training {
            stage: k,
            stages: cfg.stages,
            from: state.iteration,
            to: end,
            pool: pool.composition.clone(),
        });
        let refresh = if k > 0 { cfg.variant.refresh_every } else { 0 };
        if refresh == 0 {
            return self.train_until(k, pool, state, until, options, observer);
        }
        let made_by_snapshot = pool.newest().to_owned();
        let mut last_evaluation = None;
        loop {
            let segment = start + (state.iteration - start) / refresh * refresh;
            if segment > start && state.iteration < until {
                let net = if state.iteration == segment {
                    self.write_fresh(&state.net, segment)?;
                    state.net.clone()
                } else {
                    self.read_fresh(segment)?
                };
                let total = pool.composition.natural;
                pool.remake_newest(&net, cfg.eps, cfg.c, |done| {
                    observer(AdvEvent::MakingAdversarial {
                        stage: k,
                        stages: cfg.stages,
                        from_snapshot: k - 1,
                        done,
                        total,
                    })
                });
            }
            let stop = (segment + refresh).min(until);
            let (trained, evaluation) =
                self.train_until(k, pool, state, stop, options, observer)?;
            state = trained;
            last_evaluation = evaluation.or(last_evaluation);
            if state.iteration >= until {
                break;
            }
        }
        if state.iteration == end {
            pool.restore_newest(made_by_snapshot.view());
            remove_if_present(&self.dir.join(FRESH_FILE))?;
        }
        Ok((state, last_evaluation))
    }

    /// Trains stage `k` on `pool` from `state` to global iteration `until`, checks the weights
    /// are finite, and checkpoints.
    fn train_until(
        &self,
        k: usize,
        pool: &Pool,
        state: TrainState,
        until: u64,
        options: &AdvOptions,
        observer: &mut impl FnMut(AdvEvent),
    ) -> Result<(TrainState, Option<(u64, f64)>), AdvError> {
        let recipe = StageRecipe::new(self.cfg, k, until);
        let evaluate = |net: &LeNet<f32>| self.test_error(net);
        let mut last_evaluation = None;
        let state = run(
            &recipe,
            TrainingSet {
                data: &pool.data,
                sha256: &self.data.sha256,
            },
            state,
            &TrainOptions {
                checkpoint: Some(self.checkpoint.clone()),
                checkpoint_every: options.checkpoint_every,
                eval_every: options.eval_every,
            },
            Some(&evaluate),
            &mut NoHook,
            |event| {
                if let Event::Evaluated { iteration, value } = event {
                    last_evaluation = Some((iteration, value));
                }
                observer(AdvEvent::Train { stage: k, event })
            },
        )?;
        TrainError::check_weights(&state.net, state.iteration, None)?;
        // The checkpoint goes first: written after the snapshot, a kill in between would leave
        // a recorded snapshot without the momentum the next stage continues from.
        checkpoint::save(&self.checkpoint, &recipe, &self.data.sha256, &state)?;
        Ok((state, last_evaluation))
    }

    /// Keeps the weights that make the newest set from global iteration `iteration` on.
    fn write_fresh(&self, net: &LeNet<f32>, iteration: u64) -> Result<(), AdvError> {
        let meta = ModelMeta {
            dropout: DropoutRates::NONE,
            seed: self.cfg.seed,
            iterations: iteration,
            data_sha256: self.data.sha256.clone(),
            extra: Default::default(),
        };
        let bytes = encode(&tensors_of(net, ""), &meta.to_map());
        write_atomic(&self.dir.join(FRESH_FILE), &bytes).map_err(ModelFileError::from)?;
        Ok(())
    }

    /// The weights [`RunFolder::write_fresh`] kept at global iteration `iteration`.
    fn read_fresh(&self, iteration: u64) -> Result<LeNet<f32>, AdvError> {
        let path = self.dir.join(FRESH_FILE);
        let inconsistent = |reason: String| AdvError::Inconsistent {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            return Err(inconsistent(format!(
                "the weights that made the newest set at iteration {iteration} are kept there, and the file is missing"
            )));
        }
        let (net, meta) = crate::models::file::load_model(&path)?;
        if meta.iterations != iteration || meta.seed != self.cfg.seed {
            return Err(inconsistent(format!(
                "it holds the weights of iteration {} (seed {}), but the run continues inside the segment that began at iteration {iteration} (seed {})",
                meta.iterations, meta.seed, self.cfg.seed
            )));
        }
        Ok(net)
    }

    /// Writes snapshot `k` (the finished stage's network) and records it. Returns its path.
    fn save_snapshot(
        &self,
        k: usize,
        pool: &Pool,
        state: &TrainState,
        test_error: f64,
        record: &mut AdvRecord,
        observer: &mut impl FnMut(AdvEvent),
    ) -> Result<PathBuf, AdvError> {
        let cfg = self.cfg;
        let meta = snapshot_meta(cfg, self.data, k, &pool.composition, record);
        let bytes = encode(&tensors_of(&state.net, ""), &meta.to_map());
        let path = self.dir.join(snapshot_file(k));
        write_atomic(&path, &bytes).map_err(ModelFileError::from)?;
        let sha256 = sha256_hex(&bytes);
        if k == 0 {
            record.base_model_sha256 = Some(sha256.clone());
        }
        record.snapshots.push(SnapshotRecord {
            stage: k,
            path: snapshot_file(k),
            sha256: sha256.clone(),
            iterations: state.iteration,
            pool: pool.composition.clone(),
            eps: cfg.eps,
            c: cfg.c,
            seed: cfg.seed,
            test_error_pct: test_error,
        });
        write_record(&self.record_path, record)?;
        observer(AdvEvent::SnapshotSaved {
            stage: k,
            path: path.clone(),
            sha256,
            test_error_pct: test_error,
        });
        Ok(path)
    }

    /// Makes snapshot `k`'s adversarial set into the pool, and records it (or checks it against
    /// the record when an earlier run made it).
    fn add_set(
        &self,
        pool: &mut Pool,
        net: &LeNet<f32>,
        k: usize,
        record: &mut AdvRecord,
        observer: &mut impl FnMut(AdvEvent),
    ) -> Result<(), AdvError> {
        let cfg = self.cfg;
        let total = pool.composition.natural;
        observer(AdvEvent::MakingAdversarial {
            stage: k + 1,
            stages: cfg.stages,
            from_snapshot: k,
            done: 0,
            total,
        });
        let set = pool.add_adversarial(net, k, cfg.eps, cfg.c, |done| {
            observer(AdvEvent::MakingAdversarial {
                stage: k + 1,
                stages: cfg.stages,
                from_snapshot: k,
                done,
                total,
            })
        });
        match record.adversarial_sets.get(k) {
            Some(recorded) if *recorded != set => Err(AdvError::SetChanged {
                from_snapshot: k,
                record: self.record_path.clone(),
                found: set.sha256,
                wanted: recorded.sha256.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                record.adversarial_sets.push(set);
                write_record(&self.record_path, record)
            }
        }
    }
}
