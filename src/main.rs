//! The `advmnist` command line: parses the arguments, sets up the worker threads, and hands the
//! command to its file in `cli/`, which calls the library and prints. Nothing else.

mod cli;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use cli::Command;
use std::path::PathBuf;
use std::process::ExitCode;

/// advmnist: a hand-written LeNet on MNIST, its adversarial examples, and the study
/// "Robustness of Deep Convolutional Neural Networks for Image Recognition"
/// (Uličný, Lundström, Byttner, ISICS 2016), reproduced and audited.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Environment: ADVMNIST_KERNELS=generic|avx2|avx512|auto forces the vector \
                  instructions of advmnist's own kernels (default auto: the widest this CPU \
                  runs; a level the CPU lacks is refused). Every level gives the same bits."
)]
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
    #[arg(long, global = true, value_name = "T", allow_negative_numbers = true, value_parser = cli::args::whole_number::<usize>)]
    threads: Option<usize>,
    /// Folder of the four MNIST-format IDX files (.gz or raw), e.g. Fashion-MNIST.
    /// Default: ADVMNIST_DATA, else the bundled mnist/ folder.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

fn main() -> ExitCode {
    end_quietly_when_the_reader_goes();
    advmnist::tune_allocator();
    let (cli, command) = parse_cli();
    cli::interrupt::install(&command);
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

/// A command whose reader goes away (`advmnist reproduce --out run --list-jobs | head -5`) ends
/// there, quietly, as most Unix tools do. Rust's runtime ignores SIGPIPE, so that a write to a
/// closed pipe fails with EPIPE instead, and `println!` panics on that failure (with a backtrace
/// hint). With the signal's default action restored, the kernel ends the process at that write:
/// no message, and the shell sees the usual status 141 (128 + SIGPIPE). Chosen over handling
/// EPIPE at each print because it covers every print of every command, clap's help and the
/// progress bar alike, and stops the work the reader no longer wants. advmnist writes to no pipe
/// or socket but its standard output and error, so the signal ends nothing else.
fn end_quietly_when_the_reader_goes() {
    #[cfg(unix)]
    // SAFETY: only sets a signal's disposition, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The command line, with negative numbers reaching each flag's range check
/// (`advmnist::limits::numbers_may_be_negative`), and the command's name as typed (`train`,
/// `dae train`), for messages.
fn parse_cli() -> (Cli, String) {
    use clap::{CommandFactory, FromArgMatches};
    let matches = advmnist::limits::numbers_may_be_negative(Cli::command()).get_matches();
    let mut name = Vec::new();
    let mut level = &matches;
    while let Some((sub, m)) = level.subcommand() {
        name.push(sub.to_string());
        level = m;
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, name.join(" "))
}

fn run(cli: Cli) -> Result<()> {
    // Before any kernel runs: a level the CPU lacks, or a misspelt one, is an error here
    // rather than a panic (`kernels::isa::selected`) in the middle of the work.
    advmnist::kernels::isa::from_env().map_err(anyhow::Error::msg)?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = cli.global.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Past the core count threads only take turns (measured: 1000 threads ran
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
        .unwrap_or_else(advmnist::data::default_data_dir);
    let data = data_dir.as_path();
    // The whole command runs on one of the pool's threads. Called from outside the pool, every
    // parallel loop would be handed over to the pool and the calling thread put to sleep until
    // it finished: a wake-up and a sleep per layer call, dozens per training step (`perf` showed
    // 4-5% of the time in the kernel's futex and scheduler paths).
    pool.install(|| match cli.command {
        Command::Train(a) => cli::train::train(a, data),
        Command::Eval(a) => cli::eval::eval(a, data),
        Command::Sweep(a) => cli::sweep::sweep(a, data),
        Command::Evaluate(a) => cli::evaluate::evaluate(a, data),
        Command::Bench(a) => cli::bench::bench(a),
        Command::Show(a) => cli::show::show(a, data),
        Command::HumanStudy(a) => cli::human::human_study(a, data),
        Command::HumanReport(a) => cli::human::human_report(a, data),
        Command::Dae(a) => cli::train::dae(a, data),
        Command::Trace(a) => cli::audit::trace(a, data),
        Command::Explain(a) => cli::explain::explain_command(a, data),
        Command::Gradcheck(a) => cli::audit::gradcheck(a, data),
        Command::Reproduce(a) => cli::reproduce::reproduce(a, data),
        Command::Advtrain(a) => cli::advtrain::advtrain(a, data),
        Command::AdvtrainReport(a) => cli::advtrain_report::advtrain_report(a, data),
        Command::Gradients(a) => cli::models::gradients(a, data),
        Command::Committee(a) => cli::models::committee(a),
    })
}
