//! The commands, one file each (or one per family): each parses its flags into the library's
//! plain values, calls the library, and prints. What several share: `args` (argument types and
//! the numeric parsers), `outputs` (the checks of output files before any work), `progress`
//! (the progress bar).

pub mod advtrain;
pub mod advtrain_report;
pub mod args;
pub mod audit;
pub mod bench;
pub mod eval;
pub mod evaluate;
pub mod explain;
pub mod human;
pub mod interrupt;
pub mod models;
pub mod outputs;
pub mod progress;
pub mod reproduce;
pub mod show;
pub mod sweep;
pub mod train;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Train a LeNet as Caffe's lenet_solver.prototxt does (SGD, momentum 0.9, weight decay
    /// 5e-4, `inv` learning rate from 0.01, batch 64), checkpointing as it goes.
    ///
    /// Example: advmnist train --out lenet.safetensors
    Train(train::TrainArgs),
    /// Test error of one or more model files on the 10,000 test images.
    ///
    /// Example: advmnist eval --model lenet.safetensors --json
    Eval(eval::EvalArgs),
    /// Error against average distortion per pixel over evenly spaced noise levels (the study's
    /// Figures 3 and 4): writes DIR/sweep.csv, DIR/sweep.json and DIR/sweep.svg.
    ///
    /// Example: advmnist sweep --model lenet.safetensors --noise fgsm --at 0.1,0.2
    Sweep(sweep::SweepArgs),
    /// A sceptic's evaluation of one model, committee or pipeline: FGSM, PGD, APGD-CE, APGD-T
    /// (Croce and Hein 2020), the gradient-free Square attack and a transfer attack at each
    /// L-infinity budget, the worst case per image, certified bounds (interval bound
    /// propagation) and the checks of Carlini et al. (2019) as PASS/WARN verdicts. Writes
    /// DIR/evaluate.json, evaluate.md and evaluate.svg; resumes a stopped run. See
    /// docs/evaluate.md.
    ///
    /// Example: advmnist evaluate --model lenet.safetensors --eps 0.1,0.2,0.3 --out eval
    Evaluate(evaluate::EvaluateArgs),
    /// Images per second (and GFLOP/s) for a training step, the attack's input gradient and
    /// inference, on the shapes of scripts/peers/torch_lenet_bench.py, for side-by-side ratios;
    /// --report DIR measures the machine and where the time goes, --compare sets two reports side by side.
    ///
    /// Example: advmnist bench --threads 2 --json
    Bench(bench::BenchArgs),
    /// A figure of test digits, clean and perturbed at each level, with the model's prediction
    /// and confidence, each digit's input gradient as a signed heat map and the sign pattern
    /// the attack adds (the study's Figure 1).
    ///
    /// Example: advmnist show --model lenet.safetensors --noise fgsm --levels 0.1,0.2,0.3 --out fig1.png
    Show(show::ShowArgs),
    /// The human perception study's page (sections 4.2, 5.4): one self-contained HTML file in
    /// which each subject answers 205 digits, clean, with gradient-sign or Gaussian noise, or
    /// hard; it saves the answers as a JSON file. See docs/human-study.md.
    ///
    /// Example: advmnist human-study --out study.html --model lenet.safetensors
    HumanStudy(human::HumanStudyArgs),
    /// Analyses the study's results files: accuracy per noise type and level for humans and
    /// for 20 LeNet models (mean, SD, 95% CI); writes DIR/human.json, human.md, human.svg
    /// (the study's Figure 8).
    ///
    /// Example: advmnist human-report results/*.json --models m1.safetensors,m2.safetensors
    HumanReport(human::HumanReportArgs),
    /// The study's stacked denoising autoencoder (784-1000-500-250-30-250-500-1000-784), used
    /// as a preprocessing defence in front of LeNet (`--pre dae:FILE`).
    ///
    /// Example: advmnist dae train --out dae.safetensors
    Dae(train::DaeArgs),
    /// Every intermediate tensor of one test image's forward and backward pass (forward.conv1,
    /// backward.conv1, ..., backward.input, grad.<param>), in PyTorch's names and layouts:
    /// a table of statistics, or all tensors to a safetensors file (docs/walkthrough.md).
    /// --committee traces every member (member1.forward.conv1, ...) and the averaging;
    /// --pre traces the stages (pre1.output, ..., backward.pre1) around the LeNet.
    ///
    /// Example: advmnist trace --model lenet.safetensors --image 0 --noise fgsm --level 0.1
    Trace(audit::TraceArgs),
    /// One test digit explained on one self-contained HTML page, for teaching (no server, no
    /// network): the forward pass (the digit, every layer's feature maps, the logits and the
    /// softmax as bars); the backward pass layer by layer from dL/dz to dL/dx, each gradient a
    /// signed heat map with its values on hover and one line of math linking to docs/math.md;
    /// the input gradient, its sign and an eps slider (0 to 0.3 in steps of 0.01, every step
    /// computed here, with the attack `sweep` uses) showing the adversarial digit, its
    /// probabilities, the distortion and the first-order predictions g . delta of the changes
    /// in the loss and in the logit margin beside the true changes; a warm-up working the same
    /// steps by hand on a two-pixel linear model. Every picture can be saved as a PNG. The
    /// numbers are those of `advmnist trace` for the same model and image.
    ///
    /// Example: advmnist explain --model lenet.safetensors --image 0 --out pages/digit0.html
    Explain(explain::ExplainArgs),
    /// Checks the model's hand-written input gradient and a sample of its weight gradients
    /// against central finite differences in f64 on real test images; exits non-zero on FAIL.
    /// --committee checks a committee's input gradient (and its d/d(member logits)); --pre
    /// checks the white-box input gradient through preprocessing stages, noise held fixed.
    ///
    /// Example: advmnist gradcheck --model lenet.safetensors --images 3 --params 20
    Gradcheck(audit::GradcheckArgs),
    /// The whole study in one command: trains (or reuses) every model, runs every sweep, and
    /// writes Table 2 beside the study's numbers, Figures 3 to 7, report.html and
    /// manifest.json. Resumable; jobs can be split over processes (--list-jobs). See
    /// docs/reproduce.md.
    ///
    /// Example: advmnist reproduce --out run --quick
    Reproduce(reproduce::ReproduceArgs),
    /// Staged adversarial training (the study's sections 3.3 and 4.1, Eq. 3): a LeNet trained
    /// on the natural images (snapshot 0), then --stages stages; before each, the latest
    /// snapshot makes adversarial versions of all 60,000 training images,
    /// X' = clip(X_R + c grad L(X_R), 0, 1) with X_R = clip(X + eps sign(grad L(X)), 0, 1),
    /// which join the pool the stage trains on (the natural images and every earlier snapshot's
    /// set). Writes DIR/snapshot-0.safetensors ... snapshot-K.safetensors, DIR/advtrain.json
    /// (every snapshot's SHA-256 and pool) and DIR/advtrain.ckpt. Memory: stage 5's pool holds
    /// 6 x 60,000 images, 1.13 GB in f32 (1.38 GB peak resident memory, measured). Time: docs/adversarial-training.md.
    ///
    /// --mode online: Goodfellow et al.'s on-line training instead (2015, section 6): `advmnist
    /// train`'s recipe, each batch's FGSM examples made from the current weights, the loss
    /// alpha J(x) + (1 - alpha) J(x_adv) (--alpha, --eps, --random-start: Wong et al.'s random
    /// start), with clean, FGSM and PGD error on 1,000 test images every 1,000 iterations.
    /// Writes DIR/online.safetensors, DIR/online.json (record and curve) and DIR/online.svg.
    ///
    /// Example: advmnist advtrain --out adv
    ///
    /// Example: advmnist advtrain --mode online --random-start --out online
    Advtrain(advtrain::AdvtrainArgs),
    /// Diagnostics of a finished staged adversarial-training run, without training: per
    /// snapshot its clean, own-gradient FGSM (distortion 0.1, 0.2), Gaussian and PGD errors
    /// and the gradient signs it shares with the snapshot before; the transfer matrix between
    /// snapshots; and each adversarial training set made again (its distortion, the scale of
    /// Eq. 3's second step). Writes OUT/diagnostics.{json,md,svg}. See
    /// docs/adversarial-training.md, "Diagnostics".
    ///
    /// Example: advmnist advtrain-report adv --out adv-report
    AdvtrainReport(advtrain_report::AdvtrainReportArgs),
    /// How the exact and Caffe's float32 softmax cross-entropy gradients differ on the test set:
    /// images that lose the true class's term (dz_y == 0) under each, and gradient signs that
    /// differ (docs/committees.md).
    ///
    /// Example: advmnist gradients --model lenet.safetensors
    Gradients(models::GradientsArgs),
    /// Writes a committee file listing model files with their SHA-256, for --committee C.json.
    ///
    /// Example: advmnist committee --out committee.json m1.safetensors m2.safetensors
    Committee(models::CommitteeFileArgs),
}

/// Warns when a model's logits overflow to inf or NaN (finite but absurd weights): its
/// predictions, and every error measured on them, would be meaningless.
pub fn warn_if_logits_overflow(
    name: &str,
    model: &dyn advmnist::models::Classifier,
    test: &advmnist::data::Dataset,
) {
    if let Some(warning) = advmnist::models::logits_overflow(model, test.images.view()) {
        eprintln!("warning: {name}: {warning}");
    }
}

#[cfg(test)]
mod tests {
    use advmnist::limits::is_whole_number;
    use clap::CommandFactory;

    /// The command line as `main` parses it.
    fn root() -> clap::Command {
        advmnist::limits::numbers_may_be_negative(crate::Cli::command())
    }

    /// Every flag of every command, with the command's path (`["dae", "train"]`).
    fn every_flag() -> Vec<(Vec<String>, clap::Arg)> {
        let mut stack = vec![(Vec::<String>::new(), root())];
        let mut flags = Vec::new();
        while let Some((path, cmd)) = stack.pop() {
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                stack.push((p, sub.clone()));
            }
            for arg in cmd.get_arguments() {
                if arg.get_long().is_some() {
                    flags.push((path.clone(), arg.clone()));
                }
            }
        }
        flags
    }

    /// `advmnist PATH --FLAG VALUE`, parsed.
    fn parse(path: &[String], long: &str, value: &str) -> Result<clap::ArgMatches, clap::Error> {
        let mut argv = vec!["advmnist".to_string()];
        argv.extend(path.iter().cloned());
        argv.extend([format!("--{long}"), value.to_string()]);
        root().try_get_matches_from(&argv)
    }

    /// Every numeric flag of every command (including flags added later), given `-1` as a
    /// separate argument, reaches its own parser instead of clap's "unexpected argument", and a
    /// whole-number flag answers with its range.
    #[test]
    fn every_numeric_flag_takes_a_negative_number_to_its_range_check() {
        let mut checked = Vec::new();
        for (path, arg) in every_flag() {
            let long = arg.get_long().expect("a flag");
            if !advmnist::limits::is_number(&arg) {
                continue;
            }
            let outcome = parse(&path, long, "-1");
            let argv = format!("{} --{long} -1", path.join(" "));
            if let Err(e) = &outcome {
                assert_ne!(
                    e.kind(),
                    clap::error::ErrorKind::UnknownArgument,
                    "{argv}: {e}"
                );
            }
            if is_whole_number(&arg) {
                let e = outcome.expect_err("-1 is not a whole number >= 0");
                assert!(
                    e.to_string()
                        .contains("expected a whole number >= 0, got -1"),
                    "{argv}: {e}"
                );
            }
            checked.push(argv.trim().to_string());
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

    /// Whole-number flags that are not counts: a seed may be any 64-bit number.
    const SEEDS: [&str; 2] = ["seed", "pre-seed"];

    /// Counts whose limit was checked, with its own message, before limits were checked when
    /// the command line is parsed; the limit stays where it was (after parsing, before any
    /// work), stated in the help as before. `--threads`: four per core; `train`/`dae train
    /// --batch`: the training set's size; the others: fixed ranges.
    const LIMITED_AFTER_PARSING: [(&str, &str); 6] = [
        ("", "threads"),
        ("train", "batch"),
        ("dae train", "batch"),
        ("bench", "batch"),
        ("sweep", "levels"),
        ("reproduce", "seeds"),
    ];

    /// The limit a help text states as "at most N" or "At most N" (N written with thousands
    /// commas).
    fn stated_limit(help: &str) -> Option<u64> {
        let help = help.to_lowercase();
        let (_, rest) = help.split_once("at most ")?;
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// Every count flag of every command (a whole-number flag that is not a seed, including
    /// flags added later) has an upper limit: stated in its help as "at most N", accepting N and
    /// refusing N + 1 by name when the command line is parsed, before any work.
    #[test]
    fn every_count_flag_states_its_limit_and_refuses_one_past_it_when_parsed() {
        let mut checked = Vec::new();
        for (path, arg) in every_flag() {
            let long = arg.get_long().expect("a flag");
            let command = path.join(" ");
            let exempt = LIMITED_AFTER_PARSING.contains(&(command.as_str(), long));
            if !is_whole_number(&arg) || SEEDS.contains(&long) || exempt {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let limit = stated_limit(&help).unwrap_or_else(|| {
                panic!("{command} --{long}: the help states no \"at most N\": {help}")
            });
            if let Err(e) = parse(&path, long, &limit.to_string()) {
                assert_ne!(
                    e.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{command} --{long} {limit}, the stated limit, is refused: {e}"
                );
            }
            let past = (limit + 1).to_string();
            let e = parse(&path, long, &past).expect_err("one past the limit");
            let message = e.to_string();
            assert!(
                message.contains(&format!("--{long}"))
                    && message.contains(&format!("too large (at most {limit})")),
                "{command} --{long} {past}: {message}"
            );
            checked.push(format!("{command} --{long}"));
        }
        for flag in [
            "train --iters",
            "dae train --eval-every",
            "advtrain --stages",
            "sweep --eot",
            "sweep --steps",
            "show --count",
            "trace --image",
            "explain --image",
            "gradcheck --params",
            "human-study --subjects",
            "evaluate --queries",
            "evaluate --restarts",
            "evaluate --stronger-restarts",
            "evaluate --eot",
            "evaluate --iterations",
        ] {
            assert!(
                checked.iter().any(|c| c == flag),
                "{flag} not checked: {checked:?}"
            );
        }
    }
}
