//! `advmnist bench`: images per second of the workloads, a report of where the time goes
//! (`--report`), or two reports side by side (`--compare`).

use super::args::whole_number;
use super::outputs::check_output_folder;
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BenchArgs {
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

pub fn bench(a: BenchArgs) -> Result<()> {
    use advmnist::bench::{compare, measure::Measurement, profile};
    if let Some([a_file, b_file]) = a.compare.as_deref() {
        let (ra, rb) = (compare::load(a_file), compare::load(b_file));
        let (ra, rb) = (
            ra.map_err(anyhow::Error::msg)?,
            rb.map_err(anyhow::Error::msg)?,
        );
        let name = |p: &Path| p.display().to_string();
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
        check_output_folder("--report", dir)?;
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
