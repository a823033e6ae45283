//! Reports: CSV, JSON and SVG/PNG figures of experiment results. Every file is written
//! atomically (temporary file, then rename), so a crash never leaves half a report.

pub mod bench;
pub mod human;
pub mod plot;
pub mod show;

use crate::experiments::sweep::SweepResult;
use crate::models::file::{write_atomic, ModelFileError};
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

/// Writes `sweep.csv`, `sweep.json` and `sweep.svg` into `dir` (created if missing).
pub fn write_sweep(dir: &Path, result: &SweepResult, title: &str) -> Result<(), ModelFileError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelFileError::Io {
        path: dir.into(),
        source,
    })?;
    write_atomic(&dir.join("sweep.csv"), sweep_csv(result).as_bytes())?;
    let json = serde_json::to_string_pretty(result).expect("plain data");
    write_atomic(&dir.join("sweep.json"), json.as_bytes())?;
    let svg = plot::error_vs_distortion_svg(result, title);
    write_atomic(&dir.join("sweep.svg"), svg.as_bytes())
}
