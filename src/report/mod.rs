//! Reports: CSV, JSON and SVG/PNG figures of experiment results. Every file is written
//! atomically (temporary file, then rename), so a crash never leaves half a report, and a
//! report of several files is written as one set with a manifest written last
//! ([`crate::io_safety::write_set`]), so a reader can tell a complete set from a mix of two runs.

pub mod ablation;
pub mod advtrain_diagnostics;
pub mod bench_page;
pub mod bench_plots;
pub mod digits_png;
pub mod evaluate;
pub mod explain;
pub mod human;
pub mod online;
pub mod plot;
pub mod reproduce;
pub mod soundness;
pub mod table;

use crate::experiments::sweep::SweepResult;
use crate::io_safety::WriteError;
use std::path::Path;

/// `sweep.csv`: one row per (level, model): `noise,level,distortion,model,error_pct`.
pub fn sweep_csv(result: &SweepResult) -> String {
    let mut s = String::from("noise,level,distortion,model,error_pct\n");
    for r in &result.rows {
        // Model names are file paths: quote them, doubling any quote, as RFC 4180 says.
        s.push_str(&format!(
            "{},{},{},\"{}\",{}\n",
            r.noise,
            r.level,
            r.distortion,
            r.model.replace('"', "\"\""),
            r.error_pct
        ));
    }
    s
}

/// The files `sweep` writes into its folder: the set and its manifest.
pub const SWEEP_FILES: [&str; 4] = ["sweep.csv", "sweep.json", "sweep.svg", "sweep.sha256"];

/// Writes `sweep.csv`, `sweep.json` and `sweep.svg` into `dir` (created if missing) as one set,
/// with its manifest `sweep.sha256` written last ([`crate::io_safety::write_set`]).
pub fn write_sweep(dir: &Path, result: &SweepResult, title: &str) -> Result<(), WriteError> {
    let csv = sweep_csv(result);
    let json = serde_json::to_string_pretty(result).expect("plain data");
    let svg = plot::error_vs_distortion_svg(result, title);
    crate::io_safety::write_set(
        dir,
        "sweep",
        &[
            ("sweep.csv", csv.as_bytes()),
            ("sweep.json", json.as_bytes()),
            ("sweep.svg", svg.as_bytes()),
        ],
    )
}
