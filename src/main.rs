//! The `advmnist` command line: parses arguments, calls the library, prints. Nothing else.

use advmnist::data::{self, Split};
use advmnist::experiments::sweep::{self, NamedModel, Noise, SweepConfig};
use advmnist::models::committee;
use advmnist::models::file::{load_model, save_model};
use advmnist::models::lenet::{error_pct, DropoutRates, LeNet};
use advmnist::models::{Classifier, Committee, GradientRule, WithGradient};
use advmnist::report;
use advmnist::train::{self, Event, TrainConfig, TrainOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[path = "cli/reproduce.rs"]
mod reproduce_cli;

/// advmnist: a hand-written LeNet on MNIST, its adversarial examples, and the study
/// "Robustness of Deep Convolutional Neural Networks for Image Recognition"
/// (Uličný, Lundström, Byttner, ISICS 2016), reproduced and audited.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core). Results are
    /// bit-identical whatever the count.
    /// At least 1; more than one per core only slows the work down (warned), and more than
    /// four per core is refused.
    #[arg(long, global = true, value_name = "T", allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    threads: Option<usize>,
    /// Folder of the four MNIST-format IDX files (.gz or raw), e.g. Fashion-MNIST.
    /// Default: ADVMNIST_DATA, else the bundled mnist/ folder.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a LeNet as Caffe's lenet_solver.prototxt does (SGD, momentum 0.9, weight decay
    /// 5e-4, `inv` learning rate from 0.01, batch 64), checkpointing as it goes.
    ///
    /// Example: advmnist train --out lenet.safetensors
    Train(TrainArgs),
    /// Test error of one or more model files on the 10,000 test images.
    ///
    /// Example: advmnist eval --model lenet.safetensors --json
    Eval(EvalArgs),
    /// Error against average distortion per pixel over evenly spaced noise levels (the study's
    /// Figures 3 and 4): writes DIR/sweep.csv, DIR/sweep.json and DIR/sweep.svg.
    ///
    /// Example: advmnist sweep --model lenet.safetensors --noise fgsm --at 0.1,0.2
    Sweep(SweepArgs),
    /// Images per second (and GFLOP/s) for a training step, the attack's input gradient and
    /// inference, on the shapes of scripts/peers/torch_lenet_bench.py, for side-by-side ratios;
    /// --report DIR measures the machine and where the time goes, --compare sets two reports side by side.
    ///
    /// Example: advmnist bench --threads 2 --json
    Bench(BenchArgs),
    /// A figure of test digits, clean and perturbed at each level, with the model's prediction
    /// and confidence, each digit's input gradient as a signed heat map and the sign pattern
    /// the attack adds (the study's Figure 1).
    ///
    /// Example: advmnist show --model lenet.safetensors --noise fgsm --levels 0.1,0.2,0.3 --out fig1.png
    Show(ShowArgs),
    /// The human perception study's page (sections 4.2, 5.4): one self-contained HTML file in
    /// which each subject answers 205 digits, clean, with gradient-sign or Gaussian noise, or
    /// hard; it saves the answers as a JSON file. See docs/human-study.md.
    ///
    /// Example: advmnist human-study --out study.html --model lenet.safetensors
    HumanStudy(HumanStudyArgs),
    /// Analyses the study's results files: accuracy per noise type and level for humans and
    /// for 20 LeNet models (mean, SD, 95% CI); writes DIR/human.json, human.md, human.svg
    /// (the study's Figure 8).
    ///
    /// Example: advmnist human-report results/*.json --models m1.safetensors,m2.safetensors
    HumanReport(HumanReportArgs),
    /// The study's stacked denoising autoencoder (784-1000-500-250-30-250-500-1000-784), used
    /// as a preprocessing defence in front of LeNet (`--pre dae:FILE`).
    ///
    /// Example: advmnist dae train --out dae.safetensors
    Dae(DaeArgs),
    /// Every intermediate tensor of one test image's forward and backward pass (forward.conv1,
    /// backward.conv1, ..., backward.input, grad.<param>), in PyTorch's names and layouts:
    /// a table of statistics, or all tensors to a safetensors file (docs/walkthrough.md).
    /// --committee traces every member (member1.forward.conv1, ...) and the averaging;
    /// --pre traces the stages (pre1.output, ..., backward.pre1) around the LeNet.
    ///
    /// Example: advmnist trace --model lenet.safetensors --image 0 --noise fgsm --level 0.1
    Trace(TraceArgs),
    /// Checks the model's hand-written input gradient and a sample of its weight gradients
    /// against central finite differences in f64 on real test images; exits non-zero on FAIL.
    /// --committee checks a committee's input gradient (and its d/d(member logits)); --pre
    /// checks the white-box input gradient through preprocessing stages, noise held fixed.
    ///
    /// Example: advmnist gradcheck --model lenet.safetensors --images 3 --params 20
    Gradcheck(GradcheckArgs),
    /// The whole study in one command: trains (or reuses) every model, runs every sweep, and
    /// writes Table 2 beside the study's numbers, Figures 3 to 7, report.html and
    /// manifest.json. Resumable; jobs can be split over processes (--list-jobs). See
    /// docs/reproduce.md.
    ///
    /// Example: advmnist reproduce --out run --quick
    Reproduce(reproduce_cli::ReproduceArgs),
    /// Staged adversarial training (the study's sections 3.3 and 4.1, Eq. 3): a LeNet trained
    /// on the natural images (snapshot 0), then --stages stages; before each, the latest
    /// snapshot makes adversarial versions of all 60,000 training images,
    /// X' = clip(X_R + c grad L(X_R), 0, 1) with X_R = clip(X + eps sign(grad L(X)), 0, 1),
    /// which join the pool the stage trains on (the natural images and every earlier snapshot's
    /// set). Writes DIR/snapshot-0.safetensors ... snapshot-K.safetensors, DIR/advtrain.json
    /// (every snapshot's SHA-256 and pool) and DIR/advtrain.ckpt. Memory: stage 5's pool holds
    /// 6 x 60,000 images, 1.13 GB in f32 (1.38 GB peak resident memory, measured). Time: docs/adversarial-training.md.
    ///
    /// Example: advmnist advtrain --out adv
    Advtrain(AdvtrainArgs),
    /// How the exact and Caffe's float32 softmax cross-entropy gradients differ on the test set:
    /// images that lose the true class's term (dz_y == 0) under each, and gradient signs that
    /// differ (docs/committees.md).
    ///
    /// Example: advmnist gradients --model lenet.safetensors
    Gradients(GradientsArgs),
    /// Writes a committee file listing model files with their SHA-256, for --committee C.json.
    ///
    /// Example: advmnist committee --out committee.json m1.safetensors m2.safetensors
    Committee(CommitteeFileArgs),
}

#[derive(Args)]
struct AdvtrainArgs {
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Adversarial stages after the natural model (the study: 5); K stages give K + 1 snapshots.
    #[arg(long, default_value_t = advmnist::train::adversarial::AdvConfig::default().stages, value_name = "K", allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    stages: usize,
    /// Iterations per stage (the study: 5,000).
    #[arg(long, default_value_t = advmnist::train::adversarial::AdvConfig::default().stage_iterations, value_name = "N", allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    stage_iters: u64,
    /// Iterations of the natural model, Caffe's LeNet recipe (the study: 10,000).
    #[arg(long, default_value_t = advmnist::train::adversarial::AdvConfig::default().base_iterations, value_name = "N", allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    base_iters: u64,
    /// Gradient-sign step of the adversarial images, in (0, 1]. The study gives none; 0.25 is
    /// Goodfellow et al.'s MNIST value (docs/adversarial-training.md).
    #[arg(long, default_value_t = advmnist::train::adversarial::AdvConfig::DEFAULT_EPS, value_name = "E", allow_negative_numbers = true)]
    eps: f32,
    /// Scale of the gradient step from the gradient-sign image (>= 0). The study gives none;
    /// 0.2 makes the step move the median image's most sensitive pixel by about eps (measured).
    #[arg(long, default_value_t = advmnist::train::adversarial::AdvConfig::DEFAULT_C, value_name = "C", allow_negative_numbers = true)]
    c: f32,
    /// Seed of every random draw (initial weights, shuffling).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Continue the run in --out: recorded snapshots are reused after checking their SHA-256,
    /// the stage in progress continues from DIR/advtrain.ckpt, to the bytes of an uninterrupted run.
    #[arg(long)]
    resume: bool,
    /// Checkpoint every N iterations (0: only at the end of each stage).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = whole_number::<u64>)]
    checkpoint_every: u64,
}

#[derive(Args)]
struct DaeArgs {
    #[command(subcommand)]
    command: DaeCommand,
}

#[derive(Subcommand)]
enum DaeCommand {
    /// Train the autoencoder as Caffe's mnist_autoencoder example does (Nesterov, momentum
    /// 0.95, weight decay 5e-4, learning rate 0.01 divided by 10 every 10,000 iterations), with
    /// dropout on the input as the corruption and the clean image as the target.
    ///
    /// Example: advmnist dae train --out dae.safetensors
    Train(DaeTrainArgs),
}

#[derive(Args)]
struct DaeTrainArgs {
    /// Where to write the trained autoencoder (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Iterations (batches).
    #[arg(long, value_name = "N", default_value_t = advmnist::train::dae::DaeConfig::DEFAULT_ITERATIONS, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    iters: u64,
    /// Seed of every random draw (initial weights, shuffling, corruption masks).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Input dropout rate: the corruption the autoencoder learns to undo.
    #[arg(long, default_value_t = advmnist::train::dae::DaeConfig::DEFAULT_CORRUPTION, value_name = "R")]
    dropout: f64,
    /// Images per batch: from 1 to the training set's size.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    batch: usize,
    /// Checkpoint file. Default: the --out path with .ckpt appended.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every N iterations (0: never).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = whole_number::<u64>)]
    checkpoint_every: u64,
    /// Measure the test set's reconstruction error every N iterations (0: only at the end).
    #[arg(long, default_value_t = 2000, value_name = "N", value_parser = whole_number::<u64>)]
    eval_every: u64,
    /// Continue the run saved in the checkpoint file, to the same model an uninterrupted run
    /// gives.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct ShowArgs {
    /// Model file (with --noise and --levels).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["dae", "committee"], conflicts_with = "committee")]
    model: Option<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    /// The perturbation (fgsm or gaussian).
    #[arg(long, value_enum, required_unless_present = "dae")]
    noise: Option<NoiseArg>,
    /// Noise levels (eps or sigma), one column each.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "L1,L2,...",
        required_unless_present = "dae"
    )]
    levels: Vec<f32>,
    /// Instead: draw test digits clean, corrupted by input dropout (--dropout), and
    /// reconstructed by this denoising autoencoder.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "noise", "levels", "committee"])]
    dae: Option<PathBuf>,
    /// With --dae: the input dropout rate of the corrupted column.
    #[arg(long, default_value_t = 0.2, value_name = "R")]
    dropout: f64,
    #[command(flatten)]
    defence: DefenceArgs,
    /// Output PNG file.
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
    /// How many test digits (rows), at least 1.
    #[arg(long, default_value_t = 8, value_parser = whole_number::<usize>)]
    count: usize,
    /// Index of the first test digit shown.
    #[arg(long, default_value_t = 0, value_parser = whole_number::<usize>)]
    first: usize,
    /// Seed of the Gaussian noise.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
}

#[derive(Args)]
struct BenchArgs {
    /// Images per batch for the training step and the input gradient (inference uses 1000):
    /// from 1 to 60,000 (MNIST's training set).
    #[arg(long, default_value_t = 64, value_parser = whole_number::<usize>)]
    batch: usize,
    /// Seconds of measurement per workload, after a warm-up: from 0.1 to 3600. Default 5;
    /// with --report, per figure (about 60 figures on 2 threads), default 1.
    #[arg(long, allow_negative_numbers = true)]
    seconds: Option<f64>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, conflicts_with_all = ["report", "compare"])]
    json: bool,
    /// Measure the machine's limits (sgemm, memory bandwidth), every layer's passes and the
    /// workloads on 1..N threads, and write DIR/bench.json, bench.md, roofline.svg, scaling.svg.
    #[arg(long, value_name = "DIR", conflicts_with = "compare")]
    report: Option<PathBuf>,
    /// Print a Markdown table of every figure two reports (bench.json) share, with B/A.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<PathBuf>>,
}

#[derive(Args)]
struct TrainArgs {
    /// Where to write the trained model (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Iterations (batches). Default: 10,000; 35,000 for --dropout inp; 40,000 for --dropout all
    /// (the study's Table 1).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    iters: Option<u64>,
    /// Seed of every random draw (initial weights, shuffling, dropout masks).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Dropout: none, inp (0.2 on the input), all (0.2,0.2,0.2,0.5,0.5), or five rates
    /// input,conv1,conv2,fc1,output (each applied to that layer's output).
    #[arg(long, default_value = "none", value_parser = DropoutRates::parse)]
    dropout: DropoutRates,
    /// Images per batch: from 1 to the training set's size.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    batch: usize,
    /// Checkpoint file. Default: the --out path with .ckpt appended.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every N iterations (0: never).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = whole_number::<u64>)]
    checkpoint_every: u64,
    /// Measure the test error every N iterations (0: only at the end).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = whole_number::<u64>)]
    eval_every: u64,
    /// Continue the run saved in the checkpoint file, to the same model an uninterrupted
    /// run gives.
    #[arg(long)]
    resume: bool,
}

/// Defences in front of every model, and how attacks treat them.
#[derive(Args)]
struct DefenceArgs {
    /// A preprocessing stage in front of every model, in the order given (repeat the flag for
    /// more): lowpass:S (the study's Gaussian blur, S = 3, 5 or 7), lowpass:S,noise=SIGMA
    /// (inject Gaussian noise first; plain `noise` means 0.1), or dae:FILE (a denoising
    /// autoencoder from `advmnist dae train`).
    #[arg(long = "pre", value_name = "STAGE")]
    pre: Vec<String>,
    /// Whose gradient attacks follow when --pre is given: pipeline (white-box, through every
    /// stage's backward pass, averaged over --eot draws of injected noise) or classifier (the
    /// study's setting: the bare model's gradient, then the defence cleans the examples).
    #[arg(long, value_enum, default_value = "pipeline")]
    attack_through: AttackThroughArg,
    /// Draws of injected noise averaged by the white-box gradient (expectation over
    /// transformation).
    #[arg(long, default_value_t = advmnist::models::pipeline::DEFAULT_EOT_SAMPLES, value_name = "K", value_parser = whole_number::<usize>)]
    eot: usize,
    /// Seed of the injected noise.
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = whole_number::<u64>)]
    pre_seed: u64,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum AttackThroughArg {
    Pipeline,
    Classifier,
}

impl DefenceArgs {
    fn stages(&self) -> Result<Vec<advmnist::models::pipeline::Stage>> {
        if self.eot == 0 {
            bail!("--eot must be at least 1");
        }
        self.pre
            .iter()
            .map(|spec| {
                advmnist::models::pipeline::Stage::parse(spec, self.pre_seed)
                    .map_err(anyhow::Error::msg)
            })
            .collect()
    }

    fn attack_through(&self) -> advmnist::models::pipeline::AttackThrough {
        match self.attack_through {
            AttackThroughArg::Pipeline => advmnist::models::pipeline::AttackThrough::Pipeline,
            AttackThroughArg::Classifier => advmnist::models::pipeline::AttackThrough::Classifier,
        }
    }
}

/// A whole number >= 0 for a count or a seed. With `allow_negative_numbers` on the flag, a
/// negative number reaches this parser, which states the range, instead of clap taking it for
/// an unknown flag.
fn whole_number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse::<T>()
        .map_err(|_| format!("expected a whole number >= 0, got {s}"))
}

/// Each model file's LeNet, loaded, with its name.
fn load_lenets(paths: &[PathBuf]) -> Result<Vec<(String, LeNet<f32>)>> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), load_model(p)?.0)))
        .collect()
}

/// A committee and the gradient attacks follow, shared by eval, sweep and show.
#[derive(Args)]
struct ClassifierArgs {
    /// A committee, evaluated and attacked as one classifier (white-box through its averaged
    /// softmax): model files separated by commas, or a committee file C.json (members with
    /// their SHA-256; see `advmnist committee`). Behind --pre stages like any model.
    #[arg(long, value_name = "FILE,FILE,...|C.json")]
    committee: Option<String>,
    /// The softmax cross-entropy gradient attacks follow: exact, or caffe-f32 (Caffe's float32
    /// SoftmaxWithLoss, whose p_y - 1 rounds to 0 for confident images). Named in every
    /// attacked label; predictions, and so eval, do not depend on it.
    #[arg(long, default_value = "exact", value_parser = GradientRule::parse)]
    gradient: GradientRule,
}

impl ClassifierArgs {
    /// The committee's name and member files (a committee file is read and its hashes checked
    /// here, before any work, so that its members count as inputs).
    fn committee(&self) -> Result<Option<(String, Vec<PathBuf>)>> {
        let Some(spec) = &self.committee else {
            return Ok(None);
        };
        let members = committee::committee_members(spec)?;
        Ok(Some((committee::committee_name(spec), members)))
    }
}

/// The committee file (if `--committee` names one) and every member: inputs of the command.
fn committee_inputs(
    choice: &ClassifierArgs,
    committee: &Option<(String, Vec<PathBuf>)>,
) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = committee.iter().flat_map(|(_, m)| m.clone()).collect();
    if let Some(spec) = choice.committee.as_deref().filter(|s| !s.contains(',')) {
        inputs.push(PathBuf::from(spec.trim()));
    }
    inputs
}

/// A classifier with the name it gets in every output.
type Named<'a> = (String, Box<dyn Classifier + 'a>);

/// The classifiers of a command: each LeNet, and the committee named `committee` of `members`,
/// each following `gradient`, with its name.
fn classifiers<'a>(
    nets: &'a [(String, LeNet<f32>)],
    committee: Option<&str>,
    members: &'a [(String, LeNet<f32>)],
    gradient: GradientRule,
) -> Vec<Named<'a>> {
    let mut out: Vec<Named<'a>> = nets
        .iter()
        .map(|(name, net)| -> Named<'a> {
            (
                name.clone(),
                Box::new(WithGradient {
                    classifier: net,
                    rule: gradient,
                }),
            )
        })
        .collect();
    if let Some(name) = committee {
        let members = members.iter().map(|(_, n)| n as &dyn Classifier).collect();
        out.push((name.to_string(), Box::new(Committee { members, gradient })));
    }
    out
}

/// The classifiers to evaluate: each alone, or behind the --pre stages as a pipeline,
/// named so that every output says which defence, attack setting and gradient it was.
fn defended<'a>(
    bases: &'a [Named<'a>],
    stages: &[advmnist::models::pipeline::Stage],
    defence: &DefenceArgs,
    attacked: Option<GradientRule>,
) -> Vec<Named<'a>> {
    use advmnist::models::pipeline::Pipeline;
    bases
        .iter()
        .map(|(name, base)| -> Named<'a> {
            let (mut label, model): Named<'a> = if stages.is_empty() {
                let same = WithGradient {
                    classifier: base.as_ref(),
                    rule: GradientRule::Exact,
                };
                (name.clone(), Box::new(same))
            } else {
                let mut p = Pipeline::new(stages.to_vec(), base.as_ref(), defence.attack_through());
                p.eot_samples = defence.eot;
                let mut label = format!("{} + {name}", p.describe_stages());
                if attacked.is_some() {
                    label.push_str(&format!(
                        " [attack through {}]",
                        defence.attack_through().name()
                    ));
                }
                (label, Box::new(p))
            };
            if let Some(rule) = attacked {
                label.push_str(&format!(" [gradient {rule}]"));
            }
            (label, model)
        })
        .collect()
}

#[derive(Args)]
struct EvalArgs {
    /// Model file(s) to evaluate.
    #[arg(
        long = "model",
        value_name = "FILE",
        required_unless_present = "committee"
    )]
    models: Vec<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    #[command(flatten)]
    defence: DefenceArgs,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Also write each test image's predicted class, one per line, to this file (one model only),
    /// e.g. to compare with PyTorch (scripts/pytorch_crosscheck.py).
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum NoiseArg {
    /// Fast gradient sign: eps * sign(dL/dx), one gradient pass for all levels.
    Fgsm,
    /// Gaussian noise N(0, sigma^2), the same draw scaled at every level.
    Gaussian,
    /// Iterative gradient sign in the L-infinity ball (--steps per level).
    Pgd,
}

#[derive(Args)]
struct SweepArgs {
    /// Model file(s) to evaluate (each attacked through its own gradient unless --source).
    #[arg(
        long = "model",
        value_name = "FILE",
        required_unless_present = "committee"
    )]
    models: Vec<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    #[command(flatten)]
    defence: DefenceArgs,
    /// The perturbation.
    #[arg(long, value_enum)]
    noise: NoiseArg,
    /// Number of levels, evenly spaced from 0 to --max, both included: from 2 to 1,000.
    #[arg(long, default_value_t = 100, value_parser = whole_number::<usize>)]
    levels: usize,
    /// Largest level (eps or sigma). Default: 0.5 for fgsm and pgd, 1.0 for gaussian.
    #[arg(long, value_name = "X")]
    max: Option<f32>,
    /// Craft the examples on this model and evaluate every --model on them (transfer attack).
    #[arg(long, value_name = "FILE")]
    source: Option<PathBuf>,
    /// Report each model's error at these distortions, interpolated between levels (Table 2):
    /// each a finite number >= 0.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "D1,D2,...",
        allow_negative_numbers = true
    )]
    at: Vec<f64>,
    /// PGD: gradient steps per level (step size 2.5 eps / steps).
    #[arg(long, default_value_t = 10, value_parser = whole_number::<usize>)]
    steps: usize,
    /// PGD: start from a uniformly random point of the eps-ball.
    #[arg(long)]
    random_start: bool,
    /// Seed of the Gaussian noise and of PGD's random start.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "sweep", value_name = "DIR")]
    out: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    advmnist::tune_allocator();
    let cli = parse_cli();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, each once: several error types already quote their cause.
            let mut message = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, with negative numbers reaching each flag's range check
/// (`advmnist::limits::numbers_may_be_negative`).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = advmnist::limits::numbers_may_be_negative(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn run(cli: Cli) -> Result<()> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = cli.global.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Past the core count threads only take turns (measured in issue 12: 1000 threads ran
        // 17x slower and took 940 MB); far past it is surely a mistake.
        if t > 4 * cores {
            bail!(
                "--threads {t} is more than four per core ({cores} cores): use at most {}",
                4 * cores
            );
        }
        if t > cores {
            eprintln!("warning: --threads {t} is more than the {cores} cores; the work will be slower, not faster");
        }
        pool = pool.num_threads(t);
    }
    let pool = pool.build().context("setting up the thread pool")?;
    let data_dir = cli
        .global
        .data
        .clone()
        .unwrap_or_else(data::default_data_dir);
    // The whole command runs on one of the pool's threads. Called from outside the pool, every
    // parallel loop would be handed over to the pool and the calling thread put to sleep until
    // it finished: a wake-up and a sleep per layer call, dozens per training step (`perf` showed
    // 4-5% of the time in the kernel's futex and scheduler paths).
    pool.install(|| match cli.command {
        Command::Train(a) => cmd_train(a, data_dir),
        Command::Eval(a) => cmd_eval(a, data_dir),
        Command::Sweep(a) => cmd_sweep(a, data_dir),
        Command::Bench(a) => cmd_bench(a),
        Command::Show(a) => cmd_show(a, data_dir),
        Command::HumanStudy(a) => cmd_human_study(a, data_dir),
        Command::HumanReport(a) => cmd_human_report(a, data_dir),
        Command::Dae(a) => cmd_dae(a, data_dir),
        Command::Trace(a) => cmd_trace(a, data_dir),
        Command::Gradcheck(a) => cmd_gradcheck(a, data_dir),
        Command::Reproduce(a) => reproduce_cli::cmd_reproduce(a, data_dir),
        Command::Advtrain(a) => cmd_advtrain(a, data_dir),
        Command::Gradients(a) => cmd_gradients(a, data_dir),
        Command::Committee(a) => cmd_committee(a),
    })
}

fn cmd_train(a: TrainArgs, data_dir: PathBuf) -> Result<()> {
    let mut cfg = TrainConfig::lenet(a.dropout, a.seed);
    if let Some(n) = a.iters {
        if n == 0 {
            bail!("--iters must be at least 1");
        }
        cfg.iterations = n;
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    cfg.batch = a.batch;
    let run = RunFiles::check(
        &a.out,
        a.checkpoint.as_deref(),
        a.checkpoint_every,
        &data_dir,
    )?;
    let data = data::load_mnist(&data_dir)?;
    check_batch(
        cfg.batch,
        &data,
        advmnist::limits::LENET_TRAIN_BYTES_PER_IMAGE,
    )?;
    let headline = format!(
        "training LeNet: {} iterations, batch {}, dropout {}, seed {}, {} threads",
        cfg.iterations,
        cfg.batch,
        cfg.dropout.describe(),
        cfg.seed,
        rayon::current_num_threads()
    );
    let evaluate =
        |net: &LeNet<f32>| train::test_error_pct(net, data.test.images.view(), &data.test.labels);
    let (state, elapsed, final_value) = run_training(
        &cfg,
        &data,
        &run,
        a.resume,
        Evaluation {
            every: a.eval_every,
            evaluate: &evaluate,
            describe: |v| format!("test error {v:.2}%"),
        },
        &headline,
    )?;
    save_model(
        &a.out,
        &state.net,
        &train::model_meta(&cfg, &data, state.iteration),
    )
    .with_context(|| format!("saving the model to {}", a.out.display()))?;
    run.finish()?;
    eprintln!(
        "wrote {} ({} iterations, test error {final_value:.2}%) in {elapsed:.1} s",
        a.out.display(),
        state.iteration
    );
    Ok(())
}

fn cmd_dae(a: DaeArgs, data_dir: PathBuf) -> Result<()> {
    match a.command {
        DaeCommand::Train(a) => cmd_dae_train(a, data_dir),
    }
}

fn cmd_dae_train(a: DaeTrainArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::train::dae::DaeConfig;
    let mut cfg = DaeConfig::new(a.seed);
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    cfg.iterations = a.iters;
    if !(0.0..1.0).contains(&a.dropout) {
        bail!("--dropout must be in [0, 1), got {}", a.dropout);
    }
    cfg.corruption = a.dropout;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    cfg.batch = a.batch;
    let run = RunFiles::check(
        &a.out,
        a.checkpoint.as_deref(),
        a.checkpoint_every,
        &data_dir,
    )?;
    let data = data::load_mnist(&data_dir)?;
    check_batch(
        cfg.batch,
        &data,
        advmnist::limits::DAE_TRAIN_BYTES_PER_IMAGE,
    )?;
    let headline = format!(
        "training the denoising autoencoder: {} iterations, batch {}, input dropout {}, seed {}, {} threads",
        cfg.iterations,
        cfg.batch,
        cfg.corruption,
        cfg.seed,
        rayon::current_num_threads()
    );
    let evaluate = |net: &advmnist::models::Autoencoder| {
        net.reconstruction_loss(data.test.images.view()) as f64
    };
    let (state, elapsed, final_value) = run_training(
        &cfg,
        &data,
        &run,
        a.resume,
        Evaluation {
            every: a.eval_every,
            evaluate: &evaluate,
            describe: |v| format!("test reconstruction cross-entropy {v:.2} per image"),
        },
        &headline,
    )?;
    let meta = cfg.model_meta(&data.sha256, state.iteration);
    save_model(&a.out, &state.net, &meta)
        .with_context(|| format!("saving the autoencoder to {}", a.out.display()))?;
    run.finish()?;
    eprintln!(
        "wrote {} ({} iterations, test reconstruction cross-entropy {:.2} per image) in {elapsed:.1} s",
        a.out.display(),
        state.iteration,
        final_value
    );
    Ok(())
}

fn cmd_advtrain(a: AdvtrainArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::train::adversarial::{self as adv, AdvConfig, AdvEvent, AdvOptions};
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
    advmnist::io_safety::check_output_folder("--out", &a.out).map_err(anyhow::Error::msg)?;
    let mut outputs = vec![
        a.out.join(adv::RECORD_FILE),
        a.out.join(adv::CHECKPOINT_FILE),
    ];
    outputs.extend((0..=cfg.stages).map(|k| a.out.join(adv::snapshot_file(k))));
    let outputs: Vec<(&str, &std::path::Path)> =
        outputs.iter().map(|p| ("--out", p.as_path())).collect();
    refuse_overwrite(&outputs, &[], &data_dir)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let _lock = advmnist::io_safety::RunLock::acquire("--out", &a.out.join(adv::RECORD_FILE))
        .map_err(anyhow::Error::msg)?;
    let data = data::load_mnist(&data_dir)?;
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
        let bar = ProgressBar::new(len)
            .with_position(position)
            .with_prefix(prefix);
        let template =
            format!("{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    };
    let say = |bar: &ProgressBar, line: String| {
        if bar.is_hidden() {
            eprintln!("{line}")
        } else {
            bar.println(line)
        }
    };
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
                eprintln!(
                    "stage {stage} of {}: wrote {} (test error {test_error_pct:.2}%), trained in {:.1} s{}",
                    cfg.stages, path.display(), phase_started.elapsed().as_secs_f64(), peak_memory()
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

/// The process's peak resident memory so far (Linux's VmHWM), as a note; empty elsewhere.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .map_or(String::new(), |v| format!("; peak memory so far {v}"))
}

/// A batch larger than the training set cannot be drawn (and would ask for gigabytes); a batch
/// that fits the training set must also fit in memory (`bytes_per_image` of it, measured).
fn check_batch(batch: usize, data: &data::Mnist, bytes_per_image: u64) -> Result<()> {
    if batch > data.train.len() {
        bail!(
            "--batch {batch} is larger than the training set ({} images): use at most {}",
            data.train.len(),
            data.train.len()
        );
    }
    let needed = advmnist::limits::bytes_of(&[batch as u64, bytes_per_image]);
    advmnist::limits::check_memory(
        &format!("a training batch of {batch} images (--batch)"),
        needed,
    )
    .map_err(anyhow::Error::msg)
}

/// A run's model file and checkpoint, checked before any work.
struct RunFiles {
    checkpoint: PathBuf,
    every: u64,
    /// Exclusive locks on --out and --checkpoint, held until the run ends.
    _locks: [advmnist::io_safety::RunLock; 2],
}

impl RunFiles {
    fn check(
        out: &std::path::Path,
        checkpoint: Option<&std::path::Path>,
        every: u64,
        data_dir: &std::path::Path,
    ) -> Result<Self> {
        let checkpoint = checkpoint
            .map(PathBuf::from)
            .unwrap_or_else(|| train::default_checkpoint_path(out));
        // Both files are written long after the start: check their places before training.
        check_writable_target("--out", out)?;
        check_writable_target("--checkpoint", &checkpoint)?;
        if advmnist::io_safety::same_file(out, &checkpoint) {
            bail!("--checkpoint and --out name the same file ({}): the finished run removes its checkpoint", out.display());
        }
        refuse_overwrite(
            &[("--out", out), ("--checkpoint", &checkpoint)],
            &[],
            data_dir,
        )?;
        let lock = |flag, path| {
            advmnist::io_safety::RunLock::acquire(flag, path).map_err(anyhow::Error::msg)
        };
        let _locks = [lock("--out", out)?, lock("--checkpoint", &checkpoint)?];
        Ok(RunFiles {
            checkpoint,
            every,
            _locks,
        })
    }

    /// Removes the finished run's checkpoint (after its model was saved).
    fn finish(&self) -> Result<()> {
        if self.checkpoint.exists() {
            std::fs::remove_file(&self.checkpoint).with_context(|| {
                format!(
                    "removing the finished run's checkpoint {}",
                    self.checkpoint.display()
                )
            })?;
        }
        Ok(())
    }
}

/// How and how often a run is evaluated while it trains.
struct Evaluation<'a, N, D: Fn(f64) -> String> {
    every: u64,
    evaluate: &'a (dyn Fn(&N) -> f64 + Sync),
    describe: D,
}

/// Trains any network from its recipe with a progress bar, checkpoints and resumption; returns
/// the final state, the wall time in seconds, and the final state's evaluation (measured by the
/// loop at its last iteration, or now when the loop did not: `--eval-every 0`, nothing left).
fn run_training<R: train::Recipe>(
    recipe: &R,
    data: &data::Mnist,
    files: &RunFiles,
    resume: bool,
    evaluation: Evaluation<'_, R::Net, impl Fn(f64) -> String>,
    headline: &str,
) -> Result<(train::TrainState<R::Net>, f64, f64)> {
    let started = Instant::now();
    let mut last_evaluation = None;
    let (state, note) =
        train::starting_state(recipe, &data.sha256, Some(&files.checkpoint), resume)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    eprintln!("{headline}");
    let bar = ProgressBar::new(recipe.iterations()).with_position(state.iteration);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} it  {msg}  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let say = |bar: &ProgressBar, line: String| {
        if bar.is_hidden() {
            eprintln!("{line}")
        } else {
            bar.println(line)
        }
    };
    let options = TrainOptions {
        checkpoint: Some(files.checkpoint.clone()),
        checkpoint_every: files.every,
        eval_every: evaluation.every,
    };
    let result = train::run(
        recipe,
        train::TrainingSet::of(data),
        state,
        &options,
        Some(evaluation.evaluate),
        &mut train::NoHook,
        |event| match event {
            Event::Iteration {
                iteration,
                loss,
                lr,
            } => {
                bar.set_position(iteration);
                if iteration % 10 == 0 {
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.5}"));
                }
            }
            Event::Evaluated { iteration, value } => {
                last_evaluation = Some((iteration, value));
                say(
                    &bar,
                    format!("iteration {iteration}: {}", (evaluation.describe)(value)),
                )
            }
            Event::Checkpointed { .. } => {}
        },
    );
    bar.finish_and_clear();
    let state = result?;
    let value = match last_evaluation {
        Some((iteration, value)) if iteration == state.iteration => value,
        _ => (evaluation.evaluate)(&state.net),
    };
    Ok((state, started.elapsed().as_secs_f64(), value))
}

/// Every command's file checks, before any work (`advmnist::io_safety`): no output may be one of
/// the inputs, and the data folder's files are always inputs.
fn refuse_overwrite(
    outputs: &[(&str, &std::path::Path)],
    inputs: &[(&str, &std::path::Path)],
    data_dir: &std::path::Path,
) -> Result<()> {
    let data_files = advmnist::io_safety::data_inputs(data_dir);
    let mut all: Vec<(&str, &std::path::Path)> = inputs.to_vec();
    all.extend(data_files.iter().map(|p| ("--data", p.as_path())));
    advmnist::io_safety::refuse_overwrite(outputs, &all).map_err(anyhow::Error::msg)
}

/// The autoencoder files named by `--pre dae:FILE` stages: inputs too.
fn pre_inputs(defence: &DefenceArgs) -> Vec<PathBuf> {
    defence
        .pre
        .iter()
        .filter_map(|spec| spec.strip_prefix("dae:").map(PathBuf::from))
        .collect()
}

/// Warns when a model's logits overflow to inf or NaN (finite but absurd weights): its
/// predictions, and every error measured on them, would be meaningless.
fn warn_if_logits_overflow(
    name: &str,
    model: &dyn advmnist::models::Classifier,
    test: &data::Dataset,
) {
    if let Some(warning) = advmnist::models::logits_overflow(model, test.images.view()) {
        eprintln!("warning: {name}: {warning}");
    }
}

fn check_writable_target(flag: &str, path: &std::path::Path) -> Result<()> {
    advmnist::io_safety::check_output_file(flag, path).map_err(anyhow::Error::msg)
}

fn cmd_eval(a: EvalArgs, data_dir: PathBuf) -> Result<()> {
    let committee = a.choice.committee()?;
    if a.predictions.is_some() && a.models.len() + usize::from(committee.is_some()) != 1 {
        bail!("--predictions takes exactly one classifier: one --model or one --committee");
    }
    if let Some(out) = &a.predictions {
        check_writable_target("--predictions", out)?;
        let daes = pre_inputs(&a.defence);
        let members = committee_inputs(&a.choice, &committee);
        let mut inputs: Vec<(&str, &std::path::Path)> =
            a.models.iter().map(|m| ("--model", m.as_path())).collect();
        inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
        inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
        refuse_overwrite(&[("--predictions", out)], &inputs, &data_dir)?;
    }
    let test = data::load_split(&data_dir, Split::Test)?;
    let stages = a.defence.stages()?;
    let nets = load_lenets(&a.models)?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.1))?;
    let committee_name = committee.as_ref().map(|c| c.0.as_str());
    let bases = classifiers(&nets, committee_name, &members, a.choice.gradient);
    let mut rows = Vec::new();
    for (name, model) in defended(&bases, &stages, &a.defence, None) {
        warn_if_logits_overflow(&name, model.as_ref(), &test);
        let predictions = model.predict(test.images.view());
        if let Some(out) = &a.predictions {
            let text: String = predictions.iter().map(|p| format!("{p}\n")).collect();
            advmnist::io_safety::write_atomic(out, text.as_bytes())?;
        }
        let err = error_pct(&predictions, &test.labels);
        rows.push(serde_json::json!({"model": name, "test_error_pct": err, "n": test.len()}));
        if !a.json {
            println!("{name}: test error {err:.2}% on {} images", test.len());
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "models": rows }));
    }
    Ok(())
}

fn cmd_sweep(a: SweepArgs, data_dir: PathBuf) -> Result<()> {
    if !(2..=advmnist::limits::MAX_LEVELS).contains(&a.levels) {
        bail!(
            "--levels must be from 2 (0 and --max) to {}, got {}: more levels take longer without showing more",
            advmnist::limits::MAX_LEVELS,
            a.levels
        );
    }
    if let Some(d) = a.at.iter().find(|d| !(d.is_finite() && **d >= 0.0)) {
        bail!("--at distortions must be finite numbers >= 0, got {d}");
    }
    let noise = match a.noise {
        NoiseArg::Fgsm => Noise::Fgsm,
        NoiseArg::Gaussian => Noise::Gaussian,
        NoiseArg::Pgd => {
            if a.steps == 0 {
                bail!("--steps must be at least 1");
            }
            Noise::Pgd {
                steps: a.steps,
                random_start: a.random_start,
            }
        }
    };
    if a.source.is_some() && noise == Noise::Gaussian {
        bail!("--source makes no sense with --noise gaussian: random noise does not come from a model");
    }
    let max = a
        .max
        .unwrap_or(if noise == Noise::Gaussian { 1.0 } else { 0.5 });
    if !(max > 0.0 && max.is_finite()) {
        bail!("--max must be a positive number, got {max}");
    }
    advmnist::io_safety::check_output_folder("--out", &a.out).map_err(anyhow::Error::msg)?;
    let written = report::SWEEP_FILES.map(|f| a.out.join(f));
    let daes = pre_inputs(&a.defence);
    let committee = a.choice.committee()?;
    let members = committee_inputs(&a.choice, &committee);
    let mut inputs: Vec<(&str, &std::path::Path)> =
        a.models.iter().map(|m| ("--model", m.as_path())).collect();
    inputs.extend(a.source.iter().map(|m| ("--source", m.as_path())));
    inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
    inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
    let outputs: Vec<(&str, &std::path::Path)> =
        written.iter().map(|w| ("--out", w.as_path())).collect();
    refuse_overwrite(&outputs, &inputs, &data_dir)?;
    let stages = a.defence.stages()?;
    let test = data::load_split(&data_dir, Split::Test)?;
    let attackers = if a.source.is_some() {
        1
    } else {
        a.models.len()
    };
    advmnist::limits::check_memory(
        &format!("the perturbed test images of {attackers} attacked models (--model, --source)"),
        advmnist::limits::sweep_bytes(attackers, test.len()),
    )
    .map_err(anyhow::Error::msg)?;
    let nets = load_lenets(&a.models)?;
    let sources = load_lenets(a.source.as_slice())?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.1))?;
    let committee_name = committee.as_ref().map(|c| c.0.as_str());
    let bases = classifiers(&nets, committee_name, &members, a.choice.gradient);
    // Labels name the gradient of every attack that follows one (not Gaussian noise).
    let attacked = (a.source.is_none() && noise != Noise::Gaussian).then_some(a.choice.gradient);
    let defended_models = defended(&bases, &stages, &a.defence, attacked);
    let models: Vec<NamedModel> = defended_models
        .iter()
        .map(|(n, m)| NamedModel {
            name: n.clone(),
            model: m.as_ref(),
        })
        .collect();
    // A transfer attack's examples come from the bare source model's own gradient.
    let source_model = sources.first().map(|(_, m)| WithGradient {
        classifier: m,
        rule: a.choice.gradient,
    });
    let source = sources
        .iter()
        .zip(&source_model)
        .map(|((n, _), m)| NamedModel {
            name: n.clone(),
            model: m,
        })
        .next();
    for m in models.iter().chain(source.as_ref()) {
        warn_if_logits_overflow(&m.name, m.model, &test);
    }
    let cfg = SweepConfig {
        noise,
        levels: sweep::levels(a.levels, max as f64),
        seed: a.seed,
        at: a.at.clone(),
    };
    let bar = ProgressBar::new((cfg.levels.len() * models.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} evaluations  ETA {eta}")
            .expect("valid template"),
    );
    bar.set_message(format!("{} sweep", noise.name()));
    let result = sweep::sweep(&models, source.as_ref(), &test, &cfg, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let title = match &a.source {
        Some(s) => format!(
            "{} examples crafted on {} [gradient {}]",
            noise.name(),
            s.display(),
            a.choice.gradient
        ),
        None => format!("{} noise", noise.name()),
    };
    report::write_sweep(&a.out, &result, &title)?;
    if a.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        for r in &result.at {
            match r.error_pct {
                Some(e) => println!("{}: error {e:.2}% at distortion {}", r.model, r.distortion),
                None => println!(
                    "{}: distortion {} is outside the swept range",
                    r.model, r.distortion
                ),
            }
        }
        println!(
            "wrote {}/sweep.csv, sweep.json, sweep.svg in {:.1} s",
            a.out.display(),
            result.wall_s
        );
    }
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use advmnist::bench::{compare, measure::Measurement, profile};
    if let Some([a_file, b_file]) = a.compare.as_deref() {
        let (ra, rb) = (compare::load(a_file), compare::load(b_file));
        let (ra, rb) = (
            ra.map_err(anyhow::Error::msg)?,
            rb.map_err(anyhow::Error::msg)?,
        );
        let name = |p: &std::path::Path| p.display().to_string();
        print!(
            "{}",
            advmnist::report::bench_page::comparison_markdown(
                &name(a_file),
                &ra,
                &name(b_file),
                &rb
            )
        );
        return Ok(());
    }
    if !(1..=60_000).contains(&a.batch) {
        bail!(
            "--batch must be from 1 to 60000 (MNIST's training set), got {}",
            a.batch
        );
    }
    advmnist::limits::check_memory(
        &format!("batches of {} images (--batch)", a.batch),
        advmnist::limits::bytes_of(&[a.batch as u64, advmnist::limits::BENCH_BYTES_PER_IMAGE]),
    )
    .map_err(anyhow::Error::msg)?;
    let seconds = a
        .seconds
        .unwrap_or(if a.report.is_some() { 1.0 } else { 5.0 });
    // Below 0.1 s a workload may not finish one timed batch (reported as 0 images/s); above an
    // hour is a typo. NaN fails the range test too.
    if !(0.1..=3600.0).contains(&seconds) {
        bail!("--seconds must be from 0.1 to 3600, got {seconds}");
    }
    if let Some(dir) = &a.report {
        advmnist::io_safety::check_output_folder("--report", dir).map_err(anyhow::Error::msg)?;
        let cfg = profile::ProfileConfig {
            batch: a.batch,
            seconds_per_figure: seconds,
            max_threads: rayon::current_num_threads(),
        };
        eprintln!(
            "measuring about 60 figures of {seconds} s each on 1 to {} threads...",
            cfg.max_threads
        );
        let progress =
            |f: &Measurement| eprintln!("  {:<34} {:>10.2} {}", f.id, f.rate.median, f.unit);
        let r = profile::run(&cfg, &progress).map_err(anyhow::Error::msg)?;
        advmnist::report::bench_page::write_bench_report(dir, &r)?;
        if let Some(first) = r.warnings.first() {
            eprintln!(
                "warning: {first} ({} warnings in all, in bench.md)",
                r.warnings.len()
            );
        }
        println!(
            "wrote {0}/bench.json, bench.md, roofline.svg, scaling.svg",
            dir.display()
        );
        return Ok(());
    }
    if !a.json {
        eprintln!(
            "measuring {} s per workload on {} threads...",
            seconds,
            rayon::current_num_threads()
        );
    }
    let r = advmnist::bench::run(a.batch, seconds);
    if a.json {
        let v = serde_json::json!({
            "threads": r.threads, "batch": r.batch,
            "train_img_per_s": r.train_img_per_s, "fgsm_img_per_s": r.fgsm_img_per_s, "infer_img_per_s": r.infer_img_per_s,
            "train_gflop_per_s": r.train_gflop_per_s, "fgsm_gflop_per_s": r.fgsm_gflop_per_s, "infer_gflop_per_s": r.infer_gflop_per_s,
            "dae_train_img_per_s": r.dae_train_img_per_s, "dae_infer_img_per_s": r.dae_infer_img_per_s,
            "pipeline_fgsm_img_per_s": r.pipeline_fgsm_img_per_s,
        });
        println!("{v}");
    } else {
        println!("threads {}  batch {}", r.threads, r.batch);
        println!(
            "train_img_per_s {:.0}  ({:.1} GFLOP/s)",
            r.train_img_per_s, r.train_gflop_per_s
        );
        println!(
            "fgsm_img_per_s  {:.0}  ({:.1} GFLOP/s)",
            r.fgsm_img_per_s, r.fgsm_gflop_per_s
        );
        println!(
            "infer_img_per_s {:.0}  ({:.1} GFLOP/s, batch 1000)",
            r.infer_img_per_s, r.infer_gflop_per_s
        );
        println!(
            "dae_train_img_per_s {:.0}  ({:.1} GFLOP/s)",
            r.dae_train_img_per_s,
            r.dae_train_img_per_s * 3.0 * advmnist::bench::DAE_FORWARD_FLOP / 1e9
        );
        println!(
            "dae_infer_img_per_s {:.0}  ({:.1} GFLOP/s, batch 1000)",
            r.dae_infer_img_per_s,
            r.dae_infer_img_per_s * advmnist::bench::DAE_FORWARD_FLOP / 1e9
        );
        println!("pipeline_fgsm_img_per_s {:.0}", r.pipeline_fgsm_img_per_s);
    }
    Ok(())
}

fn cmd_show(a: ShowArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::experiments::perturbed_digits::{perturbed_digits, ShowConfig};
    use advmnist::report::digits_png::{check_png_path, render_show_png};
    check_writable_target("--out", &a.out)?;
    let daes = pre_inputs(&a.defence);
    let committee = a.choice.committee()?;
    let members = committee_inputs(&a.choice, &committee);
    let mut inputs: Vec<(&str, &std::path::Path)> =
        a.model.iter().map(|m| ("--model", m.as_path())).collect();
    inputs.extend(a.dae.iter().map(|d| ("--dae", d.as_path())));
    inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
    inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
    refuse_overwrite(&[("--out", &a.out)], &inputs, &data_dir)?;
    if a.count == 0 {
        bail!("--count must be at least 1 (the number of test digits drawn)");
    }
    if let Some(l) = a.levels.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
        bail!("--levels must be finite numbers >= 0, got {l}");
    }
    if a.levels.len() > advmnist::limits::MAX_LEVELS {
        bail!(
            "--levels lists {} levels, more than {}",
            a.levels.len(),
            advmnist::limits::MAX_LEVELS
        );
    }
    let test = data::load_split(&data_dir, Split::Test)?;
    if a.first
        .checked_add(a.count)
        .is_none_or(|end| end > test.len())
    {
        bail!(
            "--first {} --count {} asks for test digits past the {} available",
            a.first,
            a.count,
            test.len()
        );
    }
    let (width, height) = match a.dae {
        // clean, corrupted, reconstructed
        Some(_) => advmnist::report::digits_png::dae_figure_size(a.count, 3),
        None => advmnist::report::digits_png::figure_size(a.count, a.levels.len()),
    };
    advmnist::limits::check_memory(
        &format!("a figure of {width} x {height} pixels (--count, --levels)"),
        advmnist::limits::figure_bytes(width, height),
    )
    .map_err(anyhow::Error::msg)?;
    let digits = test.subset(a.first..a.first + a.count);
    if let Some(dae_path) = &a.dae {
        let (dae, _) =
            advmnist::models::file::load_network::<advmnist::models::Autoencoder>(dae_path)?;
        let figure = advmnist::experiments::perturbed_digits::reconstructed_digits(
            &dae,
            digits.images.view(),
            &digits.labels,
            a.dropout,
            a.seed,
        )?;
        advmnist::report::digits_png::render_dae_png(&figure, &a.out)?;
        eprintln!("wrote {}", a.out.display());
        return Ok(());
    }
    let stages = a.defence.stages()?;
    let nets = load_lenets(a.model.as_slice())?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.1))?;
    let committee_name = committee.as_ref().map(|c| c.0.as_str());
    let bases = classifiers(&nets, committee_name, &members, a.choice.gradient);
    let (name, model) = defended(&bases, &stages, &a.defence, Some(a.choice.gradient))
        .pop()
        .expect("clap requires --model or --committee without --dae");
    warn_if_logits_overflow(&name, model.as_ref(), &test);

    let noise = match a.noise.expect("clap requires --noise without --dae") {
        NoiseArg::Fgsm => Noise::Fgsm,
        NoiseArg::Gaussian => Noise::Gaussian,
        NoiseArg::Pgd => bail!("show draws fgsm and gaussian noise; use sweep for pgd"),
    };
    let cfg = ShowConfig {
        noise,
        levels: a.levels.clone(),
        seed: a.seed,
    };
    check_png_path(&a.out)?;
    let figure = perturbed_digits(model.as_ref(), digits.images.view(), &digits.labels, &cfg)?;
    render_show_png(&figure, &a.out)?;
    eprintln!("wrote {} ({name})", a.out.display());
    Ok(())
}

#[derive(Args)]
struct TraceArgs {
    /// Model file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "committee",
        conflicts_with = "committee"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    audited: AuditedArgs,
    /// Index of the test image (0 to 9,999).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>)]
    image: usize,
    /// Trace the image perturbed by this noise (computed in f32, as `sweep` does, with the
    /// traced classifier's own gradient) instead of the clean image.
    #[arg(long, value_enum, requires = "level")]
    noise: Option<TraceNoiseArg>,
    /// The noise level: eps for fgsm, sigma for gaussian.
    #[arg(
        long,
        value_name = "X",
        requires = "noise",
        allow_negative_numbers = true
    )]
    level: Option<f32>,
    /// Seed of the Gaussian noise (the draw `sweep --seed` makes for this test image).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Run the whole trace in f64 (the model's f32 weights widened exactly).
    #[arg(long = "f64")]
    double: bool,
    /// Write every tensor to this safetensors file instead of printing the table.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// What `trace` and `gradcheck` audit besides one LeNet: a committee, or stages in front of
/// the --model.
#[derive(Args)]
struct AuditedArgs {
    /// Audit a committee instead of one model: model files separated by commas, or a
    /// committee file C.json (docs/committees.md).
    #[arg(long, value_name = "FILE,FILE,...|C.json")]
    committee: Option<String>,
    /// A preprocessing stage in front of the --model, in the order given (repeat the flag for
    /// more), as eval's --pre: lowpass:S, lowpass:S,noise=SIGMA or dae:FILE. The white-box
    /// gradient through every stage is audited, injected noise held at draw 0.
    #[arg(long = "pre", value_name = "STAGE")]
    pre: Vec<String>,
    /// Seed of the injected noise (eval's --pre-seed).
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = whole_number::<u64>)]
    pre_seed: u64,
}

/// What is audited, its files checked by name before any work.
enum Audited {
    Model(PathBuf),
    Committee {
        spec: String,
        members: Vec<PathBuf>,
    },
    Pipeline {
        model: PathBuf,
        stages: Vec<advmnist::models::pipeline::Stage>,
    },
}

impl AuditedArgs {
    /// One LeNet, a committee or a pipeline. `--pre` goes with `--model` only.
    fn audited(&self, model: &Option<PathBuf>) -> Result<Audited> {
        if let Some(spec) = &self.committee {
            if !self.pre.is_empty() {
                bail!(
                    "--pre goes with --model: stages in front of one LeNet are audited, stages in front of a --committee are not"
                );
            }
            let members = committee::committee_members(spec)?;
            return Ok(Audited::Committee {
                spec: spec.clone(),
                members,
            });
        }
        let Some(model) = model.clone() else {
            bail!("give --model FILE or --committee FILE,FILE,...|C.json");
        };
        if self.pre.is_empty() {
            return Ok(Audited::Model(model));
        }
        let stages = self
            .pre
            .iter()
            .map(|spec| {
                advmnist::models::pipeline::Stage::parse(spec, self.pre_seed)
                    .map_err(anyhow::Error::msg)
            })
            .collect::<Result<_>>()?;
        Ok(Audited::Pipeline { model, stages })
    }
}

impl Audited {
    /// The files read: inputs no output may be written over.
    fn inputs(&self, args: &AuditedArgs) -> Vec<(&'static str, PathBuf)> {
        match self {
            Audited::Model(model) => vec![("--model", model.clone())],
            Audited::Committee { spec, members } => {
                let mut inputs: Vec<_> =
                    members.iter().map(|m| ("--committee", m.clone())).collect();
                if !spec.contains(',') {
                    inputs.push(("--committee", PathBuf::from(spec.trim())));
                }
                inputs
            }
            Audited::Pipeline { model, .. } => {
                let mut inputs = vec![("--model", model.clone())];
                inputs.extend(
                    args.pre
                        .iter()
                        .filter_map(|spec| spec.strip_prefix("dae:"))
                        .map(|f| ("--pre dae:", PathBuf::from(f))),
                );
                inputs
            }
        }
    }

    /// The metadata keys naming what a trace file traced.
    fn subject(&self, args: &AuditedArgs) -> Vec<(&'static str, String)> {
        match self {
            Audited::Model(model) => vec![("model", model.display().to_string())],
            Audited::Committee { spec, members } => vec![
                ("committee", spec.trim().to_string()),
                (
                    "members",
                    members
                        .iter()
                        .map(|m| m.display().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
            Audited::Pipeline { model, stages } => vec![
                ("model", model.display().to_string()),
                (
                    "pre",
                    stages
                        .iter()
                        .map(|s| s.describe())
                        .collect::<Vec<_>>()
                        .join(" + "),
                ),
                ("pre_seed", args.pre_seed.to_string()),
            ],
        }
    }

    /// How outputs name it after the test image: nothing for one LeNet.
    fn through(&self) -> String {
        match self {
            Audited::Model(_) => String::new(),
            Audited::Committee { spec, .. } => {
                format!(" through {}", committee::committee_name(spec))
            }
            Audited::Pipeline { model, stages } => format!(
                " through {} + {}",
                stages
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>()
                    .join(" + "),
                model.display()
            ),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TraceNoiseArg {
    /// Fast gradient sign: clip(x + eps * sign(dL/dx), 0, 1).
    Fgsm,
    /// Gaussian noise: clip(x + sigma * Z, 0, 1).
    Gaussian,
}

#[derive(Args)]
struct GradcheckArgs {
    /// Model file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "committee",
        conflicts_with = "committee"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    audited: AuditedArgs,
    /// How many test images (from --first on).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = whole_number::<usize>)]
    images: usize,
    /// Index of the first test image.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = whole_number::<usize>)]
    first: usize,
    /// Entries checked per parameter tensor (all of a smaller tensor); default 20. One LeNet
    /// only: a committee's members and a pipeline's LeNet are checked with --model each.
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>)]
    params: Option<usize>,
    /// Seed of the choice of parameter entries.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
}

/// Entries per parameter tensor `gradcheck` checks by default.
const DEFAULT_GRADCHECK_PARAMS: usize = 20;

fn cmd_trace(a: TraceArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::audit::trace::format_table;
    use advmnist::audit::{
        trace_committee_test_image, trace_metadata, trace_pipeline_test_image, trace_test_image,
        Perturbation,
    };
    // Every check before any work.
    let audited = a.audited.audited(&a.model)?;
    if let Some(out) = &a.out {
        check_writable_target("--out", out)?;
        let inputs = audited.inputs(&a.audited);
        let inputs: Vec<(&str, &std::path::Path)> =
            inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
        refuse_overwrite(&[("--out", out)], &inputs, &data_dir)?;
    }
    let perturbation = match (a.noise, a.level) {
        (Some(noise), Some(level)) => {
            if !(level >= 0.0 && level.is_finite()) {
                bail!("--level must be a number >= 0, got {level}");
            }
            Some(match noise {
                TraceNoiseArg::Fgsm => Perturbation::Fgsm { eps: level },
                TraceNoiseArg::Gaussian => Perturbation::Gaussian {
                    sigma: level,
                    seed: a.seed,
                    image: a.image as u64,
                },
            })
        }
        _ => None,
    };
    let test = data::load_split(&data_dir, Split::Test)?;
    if a.image >= test.len() {
        bail!(
            "--image {} is out of range: the test set has {} images (0 to {})",
            a.image,
            test.len(),
            test.len() - 1
        );
    }
    let digit = test.subset(a.image..a.image + 1);
    let label = digit.labels[0];
    let x = digit.images.view();
    let t = match &audited {
        Audited::Model(model) => {
            let (net, _) = load_model(model)?;
            trace_test_image(&net, x, label, perturbation, a.double)
        }
        Audited::Committee { members, .. } => {
            let nets: Vec<LeNet<f32>> = load_lenets(members)?.into_iter().map(|(_, n)| n).collect();
            trace_committee_test_image(&nets, x, label, perturbation, a.double)
        }
        Audited::Pipeline { model, stages } => {
            let (net, _) = load_model(model)?;
            trace_pipeline_test_image(stages, &net, x, label, perturbation, a.double)
        }
    };
    let predicted = t.predicted();
    let stats = t.stats();
    let what = match perturbation {
        Some(p) => format!("{} at level {}", p.name(), p.level()),
        None => "clean".to_string(),
    };
    let what = format!("{what}){}", audited.through());
    let precision = if a.double { "f64" } else { "f32" };
    match &a.out {
        Some(out) => {
            let subject = audited.subject(&a.audited);
            let bytes = t.to_safetensors(&trace_metadata(&subject, a.image, perturbation));
            advmnist::io_safety::write_atomic(out, &bytes)?;
            eprintln!(
                "test image {} ({what}, label {label}, predicted {predicted}: wrote {} tensors ({precision}) to {}",
                a.image,
                stats.len(),
                out.display()
            );
        }
        None => {
            println!(
                "test image {} ({what}, label {label}, predicted {predicted}, {precision}",
                a.image
            );
            print!("{}", format_table(&stats));
        }
    }
    Ok(())
}

fn cmd_gradcheck(a: GradcheckArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::audit::committee::gradcheck_committee;
    use advmnist::audit::gradcheck::{format_report, gradcheck};
    use advmnist::audit::pipeline::gradcheck_pipeline;
    if a.images == 0 || a.params == Some(0) {
        bail!("--images and --params must be at least 1");
    }
    let audited = a.audited.audited(&a.model)?;
    if a.params.is_some() && !matches!(audited, Audited::Model(_)) {
        bail!(
            "--params: parameter gradients are checked for one LeNet (--model FILE without --pre); check a committee's members, or a pipeline's LeNet, each with --model FILE"
        );
    }
    let test = data::load_split(&data_dir, Split::Test)?;
    if a.first
        .checked_add(a.images)
        .is_none_or(|end| end > test.len())
    {
        bail!(
            "--first {} --images {} asks for test images past the {} available",
            a.first,
            a.images,
            test.len()
        );
    }
    let digits = test.subset(a.first..a.first + a.images);
    let x = digits.images.mapv(|v| v as f64);
    let report = match &audited {
        Audited::Model(model) => {
            let (net, _) = load_model(model)?;
            gradcheck(
                &net.cast::<f64>(),
                x.view(),
                &digits.labels,
                a.params.unwrap_or(DEFAULT_GRADCHECK_PARAMS),
                a.seed,
            )
        }
        Audited::Committee { members, .. } => {
            let nets: Vec<LeNet<f64>> = load_lenets(members)?
                .iter()
                .map(|(_, n)| n.cast::<f64>())
                .collect();
            gradcheck_committee(&nets, x.view(), &digits.labels)
        }
        Audited::Pipeline { model, stages } => {
            let (net, _) = load_model(model)?;
            gradcheck_pipeline(stages, &net.cast::<f64>(), x.view(), &digits.labels)
        }
    };
    print!("{}", format_report(&report));
    if !report.pass() {
        bail!("gradcheck FAILED: a hand-written gradient disagrees with finite differences (see the table)");
    }
    Ok(())
}

#[derive(Args)]
struct HumanStudyArgs {
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
    /// Subjects offered: ids 1 to N (each adds about 150-200 KB to the page).
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = whole_number::<u32>)]
    subjects: u32,
}

#[derive(Args)]
struct HumanReportArgs {
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
    let bar = ProgressBar::new(REFERENCE_ITERATIONS * seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} it  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
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

fn cmd_human_study(a: HumanStudyArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::experiments::human_study::make_study;
    use advmnist::models::Classifier;
    if a.subjects == 0 {
        bail!("--subjects must be at least 1");
    }
    check_writable_target("--out", &a.out)?;
    let mut inputs: Vec<(&str, &std::path::Path)> =
        a.model.iter().map(|p| ("--model", p.as_path())).collect();
    inputs.extend(
        a.reference_models
            .iter()
            .map(|p| ("--reference-models", p.as_path())),
    );
    refuse_overwrite(&[("--out", &a.out)], &inputs, &data_dir)?;
    let (model, mut reference): (LeNet<f32>, Vec<LeNet<f32>>) = match &a.model {
        Some(path) => (load_model(path)?.0, Vec::new()),
        None => {
            eprintln!("no --model: training the standard LeNet (seed 1) and 4 reference models (seeds 2-5) for the hard digits");
            let data = data::load_mnist(&data_dir)?;
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
    let test = data::load_split(&data_dir, Split::Test)?;
    let mut voters: Vec<&dyn Classifier> = vec![&model];
    voters.extend(reference.iter().map(|n| n as &dyn Classifier));
    let bar = ProgressBar::new(a.subjects as u64);
    bar.set_style(
        ProgressStyle::with_template("making subjects' images {bar:30} {pos}/{len}")
            .expect("valid template"),
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

fn cmd_human_report(a: HumanReportArgs, data_dir: PathBuf) -> Result<()> {
    use advmnist::experiments::human_study::{
        analyse, load_results, weights_sha256, NamedModel, REFERENCE_MODELS,
    };
    advmnist::io_safety::check_output_folder("--out", &a.out).map_err(anyhow::Error::msg)?;
    let written = advmnist::report::human::REPORT_FILES.map(|f| a.out.join(f));
    let mut inputs: Vec<(&str, &std::path::Path)> = a
        .results
        .iter()
        .map(|p| ("results file", p.as_path()))
        .collect();
    inputs.extend(a.models.iter().map(|p| ("--models", p.as_path())));
    inputs.extend(a.study_model.iter().map(|p| ("--study-model", p.as_path())));
    let outputs: Vec<(&str, &std::path::Path)> =
        written.iter().map(|w| ("--out", w.as_path())).collect();
    refuse_overwrite(&outputs, &inputs, &data_dir)?;
    let test = data::load_split(&data_dir, Split::Test)?;
    // Every file is checked before any model is trained.
    let subjects = load_results(&a.results, &test.labels)?;
    let wanted = subjects[0].results.study.model_sha256.clone();
    let nets: Vec<(String, LeNet<f32>)> = if a.models.is_empty() {
        eprintln!(
            "no --models: training {REFERENCE_MODELS} standard LeNets (seeds 1-{REFERENCE_MODELS})"
        );
        let data = data::load_mnist(&data_dir)?;
        let seeds: Vec<u64> = (1..=REFERENCE_MODELS).collect();
        train_lenets_with_progress(&data, &seeds)?
    } else {
        a.models
            .iter()
            .map(|p| Ok((p.display().to_string(), load_model(p)?.0)))
            .collect::<Result<_>>()?
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
    let bar = ProgressBar::new((subjects.len() * models.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("scoring models {bar:30} {pos}/{len} (subject, model)")
            .expect("valid template"),
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

#[derive(Args)]
struct GradientsArgs {
    /// Model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Counts what Caffe's float32 rounding does to the model's gradients on the test set.
fn cmd_gradients(a: GradientsArgs, data_dir: PathBuf) -> Result<()> {
    let test = data::load_split(&data_dir, Split::Test)?;
    let (net, _) = load_model(&a.model)?;
    let r = advmnist::models::gradient::compare_rules(&net, test.images.view(), &test.labels);
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = a.model.display().to_string().into();
        println!("{v}");
    } else {
        println!("{} on {} test images:", a.model.display(), r.images);
        println!(
            "  true class's term lost (dz_y == 0): exact {}, caffe-f32 {}",
            r.true_term_lost_exact, r.true_term_lost_caffe_f32
        );
        println!(
            "  gradient signs that differ: {} of {} pixels ({:.3}%), in {} images; at most {:.1}% of one image",
            r.pixels_sign_differs,
            r.pixels,
            100.0 * r.pixels_sign_differs as f64 / r.pixels.max(1) as f64,
            r.images_sign_differs,
            100.0 * r.max_image_fraction_sign_differs
        );
    }
    Ok(())
}

#[derive(Args)]
struct CommitteeFileArgs {
    /// The committee file to write (JSON; member paths relative to its folder).
    #[arg(long, value_name = "C.json")]
    out: PathBuf,
    /// The members' model files.
    #[arg(value_name = "FILE", required = true)]
    members: Vec<PathBuf>,
}

fn cmd_committee(a: CommitteeFileArgs) -> Result<()> {
    check_writable_target("--out", &a.out)?;
    // Each member must be a LeNet model file: checked now rather than when the committee is used.
    load_lenets(&a.members)?;
    committee::write_committee_file(&a.out, &a.members)?;
    eprintln!("wrote {} ({} members)", a.out.display(), a.members.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Whether a flag's values are whole numbers (by the type its value parser gives).
    fn is_whole_number(arg: &clap::Arg) -> bool {
        use std::any::TypeId;
        let parsed = arg.get_value_parser().type_id();
        [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
        ]
        .iter()
        .any(|t| parsed == *t)
    }

    /// Every numeric flag of every command (including flags added later), given `-1` as a
    /// separate argument, reaches its own parser instead of clap's "unexpected argument", and a
    /// whole-number flag answers with its range (issue 12, item 8).
    #[test]
    fn every_numeric_flag_takes_a_negative_number_to_its_range_check() {
        let root = advmnist::limits::numbers_may_be_negative(Cli::command());
        let mut stack = vec![(Vec::<String>::new(), root.clone())];
        let mut checked = Vec::new();
        while let Some((path, cmd)) = stack.pop() {
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                stack.push((p, sub.clone()));
            }
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if !advmnist::limits::is_number(arg) {
                    continue;
                }
                let mut argv = vec!["advmnist".to_string()];
                argv.extend(path.iter().cloned());
                argv.extend([format!("--{long}"), "-1".to_string()]);
                let outcome = root.clone().try_get_matches_from(&argv);
                if let Err(e) = &outcome {
                    assert_ne!(
                        e.kind(),
                        clap::error::ErrorKind::UnknownArgument,
                        "{argv:?}: {e}"
                    );
                }
                if is_whole_number(arg) {
                    let e = outcome.expect_err("-1 is not a whole number >= 0");
                    assert!(
                        e.to_string()
                            .contains("expected a whole number >= 0, got -1"),
                        "{argv:?}: {e}"
                    );
                }
                checked.push(argv[1..].join(" "));
            }
        }
        // The walk reached the commands' flags (a test that checks nothing cannot fail).
        for flag in [
            "--threads -1",
            "show --count -1",
            "dae train --iters -1",
            "sweep --at -1",
        ] {
            assert!(
                checked.iter().any(|c| c == flag),
                "{flag} not checked: {checked:?}"
            );
        }
    }
}
