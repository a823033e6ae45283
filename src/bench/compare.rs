//! `advmnist bench --compare A.json B.json`: two reports of `advmnist bench --report` side by
//! side, for two machines or two commits. Every figure both files have (matched by `id`) gets
//! its median rate from each and the ratio B/A: above 1, B was faster.

use super::report::{Report, FORMAT, VERSION};
use std::path::Path;

/// One figure both reports have.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    pub unit: String,
    pub a: f64,
    pub b: f64,
    /// b / a.
    pub ratio: f64,
}

/// Reads a report, with errors that name the file.
pub fn load(path: &Path) -> Result<Report, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{name} is not a bench report: not JSON ({e})"))?;
    let hint = "`advmnist bench --report DIR` writes one as DIR/bench.json";
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        _ => {
            return Err(format!(
                "{name} is not a bench report (it has no \"format\": \"{FORMAT}\"; {hint})"
            ))
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        v => {
            return Err(format!(
                "{name} is a bench report of version {}, this advmnist reads version {VERSION}",
                v.map_or("(none)".to_string(), |v| v.to_string())
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("{name} is a damaged bench report: {e}"))
}

/// The shared figures, in A's order, and how many figures only A or only B has.
pub fn compare(a: &Report, b: &Report) -> (Vec<Row>, usize, usize) {
    let rows: Vec<Row> = a
        .figures
        .iter()
        .filter_map(|fa| {
            let fb = b
                .figures
                .iter()
                .find(|fb| fb.id == fa.id && fb.unit == fa.unit)?;
            Some(Row {
                id: fa.id.clone(),
                unit: fa.unit.clone(),
                a: fa.rate.median,
                b: fb.rate.median,
                ratio: fb.rate.median / fa.rate.median,
            })
        })
        .collect();
    let only_a = a.figures.len() - rows.len();
    let only_b = b.figures.len() - rows.len();
    (rows, only_a, only_b)
}

/// Three significant digits, without exponent for the sizes seen here.
fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The side-by-side table as Markdown, headed by what each report was measured on.
pub fn markdown(a_name: &str, a: &Report, b_name: &str, b: &Report) -> String {
    let (rows, only_a, only_b) = compare(a, b);
    let mut md = String::new();
    md.push_str(&format!(
        "# advmnist bench: {b_name} (B) against {a_name} (A)\n\n"
    ));
    md.push_str("| | A | B |\n|---|---|---|\n");
    let line = |md: &mut String, what: &str, fa: String, fb: String| {
        md.push_str(&format!("| {what} | {fa} | {fb} |\n"));
    };
    line(&mut md, "file", a_name.into(), b_name.into());
    line(
        &mut md,
        "CPU",
        a.machine.cpu_model.clone(),
        b.machine.cpu_model.clone(),
    );
    line(
        &mut md,
        "threads (max)",
        a.settings.max_threads.to_string(),
        b.settings.max_threads.to_string(),
    );
    line(
        &mut md,
        "caches",
        a.machine.describe_caches(),
        b.machine.describe_caches(),
    );
    line(
        &mut md,
        "advmnist",
        format!("{} {}", a.machine.advmnist_version, a.machine.git_commit),
        format!("{} {}", b.machine.advmnist_version, b.machine.git_commit),
    );
    line(
        &mut md,
        "rustc",
        a.machine.rustc.clone(),
        b.machine.rustc.clone(),
    );
    line(
        &mut md,
        "warnings",
        a.warnings.len().to_string(),
        b.warnings.len().to_string(),
    );
    md.push_str("\nMedians; B/A above 1 means B was faster.\n\n");
    md.push_str("| figure | unit | A | B | B/A |\n|---|---|---:|---:|---:|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} |\n",
            r.id,
            r.unit,
            number(r.a),
            number(r.b),
            r.ratio
        ));
    }
    if only_a + only_b > 0 {
        md.push_str(&format!(
            "\nNot compared: {only_a} figures only in A, {only_b} only in B (other thread counts or \
             shapes).\n"
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::machine::Machine;
    use crate::bench::report::{Ceilings, Figure, Settings};
    use crate::bench::stats::Summary;

    fn figure(id: &str, rate: f64) -> Figure {
        let seconds = Summary::of(&[1.0 / rate]);
        Figure {
            id: id.into(),
            group: "workload".into(),
            what: id.into(),
            threads: 1,
            unit: "img/s".into(),
            work_per_call: 1.0,
            flop_per_call: 0.0,
            bytes_per_call: 0.0,
            intensity_flop_per_byte: None,
            samples: 1,
            seconds,
            rate: seconds.as_rate(1.0),
            spread: 0.0,
            gflop_per_s: None,
            gb_per_s: None,
            share_of_peak: None,
            ceiling: None,
            ceiling_rate: None,
            share_of_ceiling: None,
        }
    }

    fn report(figures: Vec<Figure>) -> Report {
        let mut machine = Machine::detect(1);
        machine.load_average = None;
        Report {
            format: FORMAT.into(),
            version: VERSION,
            machine,
            settings: Settings {
                seconds_per_figure: 1.0,
                samples_per_figure: 1,
                batch: 64,
                max_threads: 1,
                unix_time: 0,
            },
            ceilings: Ceilings {
                sgemm_peak_gflop_per_s: 1.0,
                sgemm_peak_figure: "x".into(),
                bandwidth_gb_per_s: 1.0,
                bandwidth_figure: "y".into(),
                cache_bandwidth_gb_per_s: 1.0,
                cache_bandwidth_figure: "z".into(),
            },
            figures,
            warnings: vec![],
        }
    }

    /// B is twice as fast on `train`, half as fast on `infer`; `fgsm` and `dae` are in one only.
    #[test]
    fn ratios_are_b_over_a_on_shared_figures() {
        let a = report(vec![
            figure("workload/train/t1", 1000.0),
            figure("workload/infer/t1", 4000.0),
            figure("workload/fgsm/t1", 10.0),
        ]);
        let b = report(vec![
            figure("workload/infer/t1", 2000.0),
            figure("workload/train/t1", 2000.0),
            figure("workload/dae/t1", 5.0),
        ]);
        let (rows, only_a, only_b) = compare(&a, &b);
        let got: Vec<(&str, f64)> = rows.iter().map(|r| (r.id.as_str(), r.ratio)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "workload/train/t1");
        assert!((got[0].1 - 2.0).abs() < 1e-9, "{got:?}");
        assert!((got[1].1 - 0.5).abs() < 1e-9, "{got:?}");
        assert_eq!((only_a, only_b), (1, 1));
        let md = markdown("a.json", &a, "b.json", &b);
        assert!(
            md.contains("| workload/train/t1 | img/s | 1000 | 2000 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| workload/infer/t1 | img/s | 4000 | 2000 | 0.50 |"),
            "{md}"
        );
    }

    #[test]
    fn load_refuses_files_that_are_not_reports_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let bench_json = dir.path().join("bench-json.json");
        std::fs::write(
            &bench_json,
            r#"{"threads":2,"batch":64,"train_img_per_s":1.0}"#,
        )
        .unwrap();
        let e = load(&bench_json).unwrap_err();
        assert!(
            e.contains("bench-json.json") && e.contains("not a bench report"),
            "{e}"
        );
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let e = load(&text).unwrap_err();
        assert!(e.contains("notes.txt") && e.contains("not JSON"), "{e}");
        let missing = dir.path().join("missing.json");
        assert!(load(&missing).unwrap_err().contains("missing.json"));
        let future = dir.path().join("future.json");
        std::fs::write(&future, format!(r#"{{"format":"{FORMAT}","version":99}}"#)).unwrap();
        let e = load(&future).unwrap_err();
        assert!(e.contains("future.json") && e.contains("version 99"), "{e}");
        let good = dir.path().join("good.json");
        let r = report(vec![figure("workload/train/t1", 4.0)]); // 0.25 s: exact in JSON
        std::fs::write(&good, serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(load(&good).unwrap(), r);
    }
}
