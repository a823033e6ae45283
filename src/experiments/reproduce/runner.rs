//! Running the plan's jobs in a run folder, each once, keyed by content.
//!
//! Layout of a run folder:
//! ```text
//! DIR/jobs/NAME/           one folder per job
//!     record.json          written last, atomically: the job's key, its outputs' SHA-256s,
//!                          wall time, threads (the job is done iff this verifies)
//!     model.safetensors    (or dae.safetensors, snapshot-K.safetensors, sweep.json)
//!     train.ckpt           a training job's checkpoint while it runs
//! ```
//! A job's key is the SHA-256 of its specification, the data's hash and the output hashes of the
//! jobs it reads: a finished job is reused only if its record's key is the key computed now and
//! every output still has its recorded hash. Otherwise it runs again (a training job resumes from
//! its checkpoint when the checkpoint's recipe is the same).
//!
//! Several processes may share one run folder (GNU parallel, a Slurm array, or two shells): each
//! job holds an exclusive lock (`io_safety::RunLock` on its record) while it runs, and a process
//! skips a job another one holds, coming back to it later.

use super::logits_cache::{Cached, LogitsCache, Use};
use super::plan::{Job, JobSpec, ModelRef, PreSpec, SoundnessSpec, SweepSpec, SOUNDNESS_FILE};
use crate::attacks::Noise;
use crate::data::Mnist;
use crate::experiments::evaluate;
use crate::experiments::sweep::{self, NamedModel, SweepConfig, SweepResult};
use crate::hashing::file_sha256;
use crate::io_safety::{write_atomic, RunLock};
use crate::models::committee::Committee;
use crate::models::file::{load_model, save_model};
use crate::models::gradient::{compare_rules, GradientRule, RuleComparison, WithGradient};
use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
use crate::models::{Classifier, DropoutRates, LeNet};
use crate::train::adversarial::AdvConfig;
use crate::train::online::OnlineConfig;
use crate::train::{self, Event, Recipe, TrainOptions, TrainState, TrainingSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A failed job or an unreadable run folder, with the job or file named.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReproduceError(pub String);

fn fail(job: &str, e: impl std::fmt::Display) -> ReproduceError {
    ReproduceError(format!("job {job}: {e}"))
}

/// What a finished job left: written last, as `record.json` in its folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: String,
    pub key: String,
    pub spec: JobSpec,
    /// Output file name -> SHA-256 (hex).
    pub outputs: BTreeMap<String, String>,
    pub wall_s: f64,
    pub threads: usize,
    pub advmnist_version: String,
    /// A one-line summary (e.g. a model's clean test error), for the manifest.
    pub summary: String,
}

pub const RECORD: &str = "record.json";
const CHECKPOINT: &str = "train.ckpt";

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        RunDir { root: root.into() }
    }

    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.root.join("jobs").join(job)
    }

    /// The finished record of `job`, if it exists, parses, has `key` (when given) and every
    /// output still has its recorded hash.
    pub fn verified_record(&self, job: &Job, key: Option<&str>) -> Option<JobRecord> {
        let dir = self.job_dir(&job.name);
        let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
        let record: JobRecord = serde_json::from_str(&text).ok()?;
        if record.job != job.name || record.spec != job.spec {
            return None;
        }
        if key.is_some_and(|k| k != record.key) {
            return None;
        }
        for file in job.outputs() {
            let want = record.outputs.get(&file)?;
            if file_sha256(&dir.join(&file)).ok()? != *want {
                return None;
            }
        }
        Some(record)
    }
}

/// The content key of `job`, given the records of the jobs it reads (all must be finished).
pub fn job_key(job: &Job, data_sha256: &str, deps: &BTreeMap<String, JobRecord>) -> String {
    let inputs: BTreeMap<&str, &BTreeMap<String, String>> = job
        .dependencies()
        .iter()
        .map(|d| {
            let r = deps.get(d).expect("dependencies finished before the key");
            (r.job.as_str(), &r.outputs)
        })
        .collect();
    let text = serde_json::to_string(&serde_json::json!({
        "spec": job.spec,
        "data_sha256": data_sha256,
        "inputs": inputs,
    }))
    .expect("plain data");
    crate::hashing::sha256_hex(text.as_bytes())
}

/// Progress of the job being run.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Where the job currently stands.
pub enum Status {
    Done(Box<JobRecord>),
    /// All dependencies are done; its key.
    Ready(String),
    /// Waiting for these jobs.
    Blocked(Vec<String>),
}

/// The status of `job`, given the verified records of the jobs finished so far.
pub fn status(
    dir: &RunDir,
    job: &Job,
    data_sha256: &str,
    finished: &BTreeMap<String, JobRecord>,
) -> Status {
    let missing: Vec<String> = job
        .dependencies()
        .into_iter()
        .filter(|d| !finished.contains_key(d))
        .collect();
    if !missing.is_empty() {
        return Status::Blocked(missing);
    }
    let key = job_key(job, data_sha256, finished);
    match dir.verified_record(job, Some(&key)) {
        Some(r) => Status::Done(Box::new(r)),
        None => Status::Ready(key),
    }
}

/// Takes `job`'s lock, or `None` when another process holds it.
pub fn try_lock(dir: &RunDir, job: &Job) -> Result<Option<RunLock>, ReproduceError> {
    let jd = dir.job_dir(&job.name);
    std::fs::create_dir_all(&jd)
        .map_err(|e| fail(&job.name, format!("cannot create {}: {e}", jd.display())))?;
    Ok(RunLock::acquire("--out", &jd.join(RECORD)).ok())
}

/// Runs `job` (its dependencies finished, its lock held) and writes its record last.
///
/// `shared` names the models whose Gaussian-noise logits a committee's sweep will read
/// ([`Plan::shared_gaussian_logits`](super::plan::Plan::shared_gaussian_logits)): a sweep of one
/// of them alone writes its logits to the run's [`LogitsCache`].
pub fn run_job(
    dir: &RunDir,
    job: &Job,
    key: &str,
    data: &Mnist,
    shared: &HashSet<ModelRef>,
    progress: Progress<'_>,
) -> Result<JobRecord, ReproduceError> {
    let started = std::time::Instant::now();
    let jd = dir.job_dir(&job.name);
    std::fs::create_dir_all(&jd)
        .map_err(|e| fail(&job.name, format!("cannot create {}: {e}", jd.display())))?;
    // A stale record (another key) must not survive a half-finished rerun.
    let _ = std::fs::remove_file(jd.join(RECORD));
    let summary = match &job.spec {
        JobSpec::Lenet {
            dropout,
            iterations,
            seed,
        } => {
            let rates = DropoutRates::parse(dropout).map_err(|e| fail(&job.name, e))?;
            let mut cfg = train::TrainConfig::lenet(rates, *seed);
            cfg.iterations = *iterations;
            let state = train_with_checkpoint(&cfg, data, &jd, &job.name, progress)?;
            save_model(
                &jd.join("model.safetensors"),
                &state.net,
                &train::model_meta(&cfg, data, state.iteration),
            )
            .map_err(|e| fail(&job.name, e))?;
            let error =
                train::test_error_pct(&state.net, data.test.images.view(), &data.test.labels);
            format!("clean test error {error:.2}%")
        }
        JobSpec::Dae { iterations, seed } => {
            let mut cfg = train::dae::DaeConfig::new(*seed);
            cfg.iterations = *iterations;
            let state = train_with_checkpoint(&cfg, data, &jd, &job.name, progress)?;
            save_model(
                &jd.join("dae.safetensors"),
                &state.net,
                &cfg.model_meta(&data.sha256, state.iteration),
            )
            .map_err(|e| fail(&job.name, e))?;
            let loss = state.net.reconstruction_loss(data.test.images.view());
            format!("test reconstruction cross-entropy {loss:.2} per image")
        }
        JobSpec::Advtrain {
            base_iterations,
            stages,
            stage_iterations,
            train_images,
            eps,
            c,
            seed,
            variant,
        } => super::adversarial_job(
            &job.name,
            AdvConfig {
                seed: *seed,
                base_iterations: *base_iterations,
                stages: *stages,
                stage_iterations: *stage_iterations,
                eps: *eps,
                c: *c,
                variant: variant.clone(),
                ..AdvConfig::default()
            },
            *train_images,
            data,
            &jd,
            progress,
        )?,
        JobSpec::Online {
            iterations,
            alpha,
            eps,
            random_start,
            eval_every,
            eval_images,
            seed,
        } => super::online_job(
            &job.name,
            &OnlineConfig {
                iterations: *iterations,
                alpha: *alpha,
                eps: *eps,
                random_start: *random_start,
                eval_every: *eval_every,
                eval_images: *eval_images,
                ..OnlineConfig::new(*seed)
            },
            data,
            &jd,
            progress,
        )?,
        JobSpec::Sweep(spec) => {
            let (result, comparison) = run_sweep(dir, spec, data, &job.name, shared, progress)?;
            let json = serde_json::to_string_pretty(&result).expect("plain data");
            write_atomic(&jd.join("sweep.json"), json.as_bytes())
                .map_err(|e| fail(&job.name, e))?;
            if let Some(c) = comparison {
                let json = serde_json::to_string_pretty(&c).expect("plain data");
                write_atomic(&jd.join("gradients.json"), json.as_bytes())
                    .map_err(|e| fail(&job.name, e))?;
            }
            let at: Vec<String> = result
                .at
                .iter()
                .map(|a| match a.error_pct {
                    Some(e) => format!("{e:.2}% at {}", a.distortion),
                    None => format!("- at {}", a.distortion),
                })
                .collect();
            at.join(", ")
        }
        JobSpec::Soundness(spec) => {
            let report = run_soundness(dir, spec, data, &job.name, key, progress)?;
            let json = serde_json::to_string_pretty(&report).expect("plain data");
            write_atomic(&jd.join(SOUNDNESS_FILE), json.as_bytes())
                .map_err(|e| fail(&job.name, e))?;
            let _ = std::fs::remove_file(jd.join(SOUNDNESS_PARTIAL));
            let worst: Vec<String> = spec
                .eps
                .iter()
                .map(|&e| format!("worst case {:.1}% at eps {e}", report.worst_error_pct(e)))
                .collect();
            format!(
                "{}; {} of {} checks pass",
                worst.join(", "),
                report.verdicts.len() - report.warnings().len(),
                report.verdicts.len()
            )
        }
    };
    let mut outputs = BTreeMap::new();
    for file in job.outputs() {
        let hash = file_sha256(&jd.join(&file))
            .map_err(|e| fail(&job.name, format!("reading its output {file}: {e}")))?;
        outputs.insert(file, hash);
    }
    let record = JobRecord {
        job: job.name.clone(),
        key: key.into(),
        spec: job.spec.clone(),
        outputs,
        wall_s: started.elapsed().as_secs_f64(),
        threads: rayon::current_num_threads(),
        advmnist_version: env!("CARGO_PKG_VERSION").into(),
        summary,
    };
    let json = serde_json::to_string_pretty(&record).expect("plain data");
    write_atomic(&jd.join(RECORD), json.as_bytes()).map_err(|e| fail(&job.name, e))?;
    Ok(record)
}

/// Trains `recipe` in `jd`, resuming from `jd/train.ckpt` when it holds the same recipe, and
/// checkpointing about every twentieth of the run; removes the checkpoint at the end.
fn train_with_checkpoint<R: Recipe>(
    recipe: &R,
    data: &Mnist,
    jd: &Path,
    job: &str,
    progress: Progress<'_>,
) -> Result<TrainState<R::Net>, ReproduceError> {
    let ckpt = jd.join(CHECKPOINT);
    let (state, _) = match train::starting_state(recipe, &data.sha256, Some(&ckpt), true) {
        Ok(s) => s,
        // A checkpoint this job cannot continue from (another recipe after the job's
        // specification changed, other data, a damaged file): the job's own folder holds
        // nothing else of value, so it starts afresh, and says why rather than silently.
        Err(e) => {
            // (The error names the checkpoint file.)
            eprintln!("{job}: cannot resume: {e}; starting the job afresh");
            let _ = std::fs::remove_file(&ckpt);
            train::starting_state(recipe, &data.sha256, Some(&ckpt), true)
                .map_err(|e| fail(job, e))?
        }
    };
    let total = recipe.iterations();
    let options = TrainOptions {
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: (total / 20).max(100),
        eval_every: 0,
    };
    let state = train::run(
        recipe,
        TrainingSet::of(data),
        state,
        &options,
        None,
        &mut train::NoHook,
        |event| {
            if let Event::Iteration { iteration, .. } = event {
                progress(iteration, total)
            }
        },
    )
    .map_err(|e| fail(job, e))?;
    let _ = std::fs::remove_file(&ckpt);
    Ok(state)
}

/// A model file made by another job.
fn model_path(dir: &RunDir, m: &super::plan::ModelRef) -> PathBuf {
    dir.job_dir(&m.job).join(&m.file)
}

/// Runs a sweep; with the `caffe-f32` gradient also compares the two gradients on its images.
///
/// Under Gaussian noise without preprocessing, the members named in `shared` go through the
/// run's [`LogitsCache`]: a sweep of one of them alone writes its logits there, a committee's
/// sweep reads them (module `logits_cache`: the same bits either way).
fn run_sweep(
    dir: &RunDir,
    spec: &SweepSpec,
    data: &Mnist,
    job: &str,
    shared: &HashSet<ModelRef>,
    progress: Progress<'_>,
) -> Result<(SweepResult, Option<RuleComparison>), ReproduceError> {
    let nets = load_members(dir, &spec.members, job)?;
    let rule = GradientRule::parse(&spec.gradient).map_err(|e| fail(job, e))?;
    let stages = load_stages(dir, &spec.pre, spec.seed, job)?;
    let cache = LogitsCache::new(&dir.root);
    let use_cache = matches!(spec.noise, Noise::Gaussian) && stages.is_empty();
    let mode = if spec.members.len() == 1 {
        Use::ReadWrite
    } else {
        Use::Read
    };
    let cached: Vec<Option<Cached<'_>>> = nets
        .iter()
        .zip(&spec.members)
        .map(|(net, m)| {
            (use_cache && shared.contains(m))
                .then(|| Cached::new(net, &model_path(dir, m), &cache, mode))
                .transpose()
                .map_err(|e| {
                    fail(
                        job,
                        format!("cannot read {}: {e}", model_path(dir, m).display()),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let members: Vec<&dyn Classifier> = nets
        .iter()
        .zip(&cached)
        .map(|(n, c)| match c {
            Some(c) => c as &dyn Classifier,
            None => n as &dyn Classifier,
        })
        .collect();
    // One model, with the gradient rule; or a committee (averaged softmax), with it too.
    let single;
    let committee;
    let classifier: &dyn Classifier = if members.len() == 1 {
        single = WithGradient {
            classifier: members[0],
            rule,
        };
        &single
    } else {
        let mut c = Committee::new(members);
        c.gradient = rule;
        committee = c;
        &committee
    };
    let pipeline;
    let model: &dyn Classifier = if stages.is_empty() {
        classifier
    } else {
        pipeline = Pipeline::new(stages, classifier, spec.attack.through());
        &pipeline
    };
    let source_net = spec
        .source
        .as_ref()
        .map(|m| load_members(dir, std::slice::from_ref(m), job).map(|mut v| v.remove(0)))
        .transpose()?;
    let source = source_net.as_ref().map(|n| NamedModel {
        name: "source".into(),
        model: n,
    });
    let test = data.test.subset(0..spec.test_images.min(data.test.len()));
    let cfg = SweepConfig {
        noise: spec.noise,
        levels: sweep::levels(spec.levels, spec.max),
        seed: spec.seed,
        at: vec![0.0, 0.1, 0.2],
    };
    let models = [NamedModel {
        name: job.into(),
        model,
    }];
    let result = sweep::sweep(&models, source.as_ref(), &test, &cfg, |done, total| {
        progress(done as u64, total as u64)
    })
    .map_err(|e| fail(job, e))?;
    let comparison = rule_comparison(&nets, spec.pre.is_empty(), rule, &test);
    Ok((result, comparison))
}

/// The LeNets of `members`, made by other jobs.
fn load_members(
    dir: &RunDir,
    members: &[ModelRef],
    job: &str,
) -> Result<Vec<LeNet<f32>>, ReproduceError> {
    members
        .iter()
        .map(|m| {
            load_model(&model_path(dir, m))
                .map(|(n, _)| n)
                .map_err(|e| fail(job, e))
        })
        .collect()
}

/// The preprocessing stages of `pre`, their noise seeded by `seed`.
fn load_stages(
    dir: &RunDir,
    pre: &[PreSpec],
    seed: u64,
    job: &str,
) -> Result<Vec<Stage>, ReproduceError> {
    pre.iter()
        .map(|p| {
            let text = match p {
                PreSpec::Lowpass { size, noise } if *noise > 0.0 => {
                    format!("lowpass:{size},noise={noise}")
                }
                PreSpec::Lowpass { size, .. } => format!("lowpass:{size}"),
                PreSpec::Dae { model } => format!("dae:{}", model_path(dir, model).display()),
            };
            Stage::parse(&text, seed).map_err(|e| fail(job, e))
        })
        .collect()
}

/// The record of a soundness job in progress, in its folder: the evaluation's record after each
/// attack, with the job's key, so that a killed job resumes only from its own partial results.
const SOUNDNESS_PARTIAL: &str = "evaluate.partial.json";

#[derive(Serialize, Deserialize)]
struct SoundnessPartial {
    key: String,
    record: evaluate::Record,
}

/// Evaluates one Table 2 row (`experiments::evaluate`) white-box through everything it does,
/// resuming from the partial record a killed run of the same job left.
fn run_soundness(
    dir: &RunDir,
    spec: &SoundnessSpec,
    data: &Mnist,
    job: &str,
    key: &str,
    progress: Progress<'_>,
) -> Result<evaluate::Report, ReproduceError> {
    let nets = load_members(dir, &spec.members, job)?;
    let source = load_members(dir, std::slice::from_ref(&spec.source), job)?.remove(0);
    let stages = load_stages(dir, &spec.pre, spec.seed, job)?;
    let members: Vec<&dyn Classifier> = nets.iter().map(|n| n as &dyn Classifier).collect();
    let committee;
    let classifier: &dyn Classifier = if members.len() == 1 {
        members[0]
    } else {
        committee = Committee::new(members);
        &committee
    };
    let pipeline;
    let model: &dyn Classifier = if stages.is_empty() {
        classifier
    } else {
        let mut p = Pipeline::new(stages.clone(), classifier, AttackThrough::Pipeline);
        p.eot_samples = spec.scale.eot_draws;
        pipeline = p;
        &pipeline
    };
    let settings = spec.settings();
    if settings.eot_draws != model.eot_draws() {
        return Err(fail(
            job,
            format!(
                "the plan averages over {} draws, the model draws {}",
                settings.eot_draws,
                model.eot_draws()
            ),
        ));
    }
    let images = spec.scale.images.min(data.test.len());
    let x = data.test.images.slice(ndarray::s![..images, .., .., ..]);
    let labels = &data.test.labels[..images];
    let partial = dir.job_dir(job).join(SOUNDNESS_PARTIAL);
    let resumed = std::fs::read(&partial)
        .ok()
        .and_then(|b| serde_json::from_slice::<SoundnessPartial>(&b).ok())
        .filter(|p| p.key == key)
        .map(|p| p.record);
    let subject = evaluate::Subject {
        model,
        source: &source,
    };
    const SCALE: f64 = 1000.0;
    let record = evaluate::evaluate(
        &subject,
        x,
        labels,
        &settings,
        resumed,
        |record, _| {
            let p = SoundnessPartial {
                key: key.into(),
                record: record.clone(),
            };
            let json = serde_json::to_vec(&p).expect("plain data");
            write_atomic(&partial, &json).map_err(|e| fail(job, e))
        },
        |_, done, total| progress((done * SCALE) as u64, (total * SCALE) as u64),
    )?;
    let evaluated = evaluate::Evaluated {
        model,
        lenets: nets.iter().collect(),
        certifiable: (nets.len() == 1).then(|| &nets[0]),
        stages: &stages,
        attack_through_classifier: false,
    };
    Ok(evaluate::report(
        job,
        &format!("the independent LeNet of job {}", spec.source.job),
        record,
        &evaluated,
        x,
        labels,
    ))
}

/// `gradients.json` of a `caffe-f32` sweep: the two rules compared on the bare model, never on
/// the model the sweep attacks. `compare_rules` wraps what it is given in each rule itself, and
/// a model already wrapped in `caffe-f32` answers both with Caffe's gradient (every sign the
/// same: what the first full-scale run wrote, 0 differing pixels where `advmnist gradients`
/// counts 249,035). The plan's `caffe-f32` sweeps are of one model without preprocessing; for
/// anything else there is no comparison.
fn rule_comparison(
    nets: &[LeNet<f32>],
    no_preprocessing: bool,
    rule: GradientRule,
    test: &crate::data::Dataset,
) -> Option<RuleComparison> {
    (rule == GradientRule::CaffeF32 && nets.len() == 1 && no_preprocessing)
        .then(|| compare_rules(&nets[0], test.images.view(), &test.labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::models::lenet::DropoutRates;
    use crate::train::TrainConfig;

    /// A soundness job resumes from the partial record a killed run of the same job (same key)
    /// left, and ignores one another job's key left: a partial record whose first attack was
    /// altered shows which happened.
    #[test]
    fn a_soundness_job_resumes_only_from_its_own_partial_record() {
        use crate::experiments::reproduce::plan::{ModelRef, SoundnessScale};
        use crate::models::file::ModelMeta;
        use crate::rng::{stream, Purpose};
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = RunDir::new(tmp.path());
        let meta = ModelMeta {
            dropout: DropoutRates::NONE,
            seed: 0,
            iterations: 0,
            data_sha256: "test".into(),
            extra: Default::default(),
        };
        for (job, seed) in [("model", 4), ("source", 5)] {
            let jd = dir.job_dir(job);
            std::fs::create_dir_all(&jd).unwrap();
            let net = LeNet::<f32>::xavier(&mut stream(seed, Purpose::Init, 0));
            save_model(&jd.join("model.safetensors"), &net, &meta).unwrap();
        }
        let model = ModelRef {
            job: "model".into(),
            file: "model.safetensors".into(),
        };
        let images =
            crate::testutil::random_array::<f32, ndarray::Ix4>((8, 1, IMAGE_SIDE, IMAGE_SIDE), 6)
                .mapv(f32::abs);
        let net: LeNet<f32> = load_model(&model_path(&dir, &model)).unwrap().0;
        let labels = net.predict(images.view());
        let test = crate::data::Dataset { images, labels };
        let data = Mnist {
            train: test.clone(),
            test,
            sha256: "test".into(),
        };
        let spec = SoundnessSpec {
            members: vec![model],
            pre: vec![],
            source: ModelRef {
                job: "source".into(),
                file: "model.safetensors".into(),
            },
            eps: vec![0.02],
            scale: SoundnessScale {
                images: 8,
                pgd_steps: 2,
                iterations: 4,
                targets: 1,
                queries: 10,
                stronger_restarts: 1,
                eot_draws: 2,
            },
            restarts: 1,
            seed: 3,
        };
        let job = "soundness-test";
        std::fs::create_dir_all(dir.job_dir(job)).unwrap();
        let run = |key: &str| run_soundness(&dir, &spec, &data, job, key, &mut |_, _| {}).unwrap();
        let timeless = |mut r: evaluate::Report| {
            for a in r.record.attacks.iter_mut().chain(&mut r.record.stronger) {
                a.seconds = 0.0;
            }
            r.record.unbounded.as_mut().unwrap().seconds = 0.0;
            r
        };
        let fresh = timeless(run("k1"));
        // The partial record of a finished run, its first attack altered.
        let partial = dir.job_dir(job).join(SOUNDNESS_PARTIAL);
        let mut left: SoundnessPartial =
            serde_json::from_slice(&std::fs::read(&partial).unwrap()).unwrap();
        left.record.attacks[0].found = 999;
        std::fs::write(&partial, serde_json::to_vec(&left).unwrap()).unwrap();
        assert_eq!(
            timeless(run("k2")),
            fresh,
            "another key's partial record is ignored"
        );
        std::fs::write(&partial, serde_json::to_vec(&left).unwrap()).unwrap();
        let resumed = run("k1");
        assert_eq!(resumed.record.attacks[0].found, 999, "its own is resumed");
        assert_eq!(resumed.record.attacks.len(), fresh.record.attacks.len());
    }

    /// On a model whose logits saturate (fc2 scaled up, so `p_y` rounds to 1 in f32 for images
    /// labelled with their top class), the sweep's comparison finds the sign differences that
    /// `compare_rules` on the bare model finds, and there are some: it does not compare
    /// Caffe's gradient with itself.
    #[test]
    fn the_comparison_is_of_the_bare_model_and_finds_differing_signs() {
        let mut net = TrainConfig::lenet(DropoutRates::NONE, 3).initial_net();
        net.fc2.weight.mapv_inplace(|w| w * 2000.0);
        // Each image labelled with the model's own prediction: the top class is the label.
        let images =
            crate::testutil::random_array::<f32, ndarray::Ix4>((64, 1, IMAGE_SIDE, IMAGE_SIDE), 5)
                .mapv(f32::abs);
        let labels = net.predict(images.view());
        let data = crate::data::Dataset { images, labels };
        let got = rule_comparison(
            std::slice::from_ref(&net),
            true,
            GradientRule::CaffeF32,
            &data,
        )
        .expect("a caffe-f32 sweep of one model compares");
        let want = compare_rules(&net, data.images.view(), &data.labels);
        assert_eq!(got, want);
        assert!(got.true_term_lost_caffe_f32 > 0, "{got:?}");
        assert!(got.pixels_sign_differs > 0, "{got:?}");
        assert!(rule_comparison(&[net], true, GradientRule::Exact, &data).is_none());
    }
}
