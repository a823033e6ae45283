//! `advmnist bench --compare A.json B.json`: two profiles of `advmnist bench --report` side by
//! side, for two machines or two commits. Every figure both files have (matched by `id`) gets
//! its median rate from each and the ratio B/A: above 1, B was faster. `report::bench_page`
//! lays the rows out.

use super::profile::{Profile, FORMAT, VERSION};
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
pub fn load(path: &Path) -> Result<Profile, String> {
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
pub fn compare(a: &Profile, b: &Profile) -> (Vec<Row>, usize, usize) {
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

#[cfg(test)]
pub(crate) mod tests {
    /// Two small profiles for the tests of `--compare` and of its page.
    pub(crate) mod fixtures {
        use crate::bench::machine::Machine;
        use crate::bench::measure::Measurement;
        use crate::bench::profile::{Ceilings, Profile, Settings, FORMAT, VERSION};
        use crate::bench::stats::MedianRange;

        pub fn figure(id: &str, rate: f64) -> Measurement {
            let seconds = MedianRange::of(&[1.0 / rate]);
            Measurement {
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
                share_of_fma_peak: None,
                ceiling: None,
                ceiling_rate: None,
                share_of_ceiling: None,
            }
        }

        pub fn report(figures: Vec<Measurement>) -> Profile {
            let mut machine = Machine::detect(1);
            machine.load_average = None;
            Profile {
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
                    fma_peak_gflop_per_s: 1.0,
                    fma_peak_figure: "f".into(),
                    bandwidth_gb_per_s: 1.0,
                    bandwidth_figure: "y".into(),
                    cache_bandwidth_gb_per_s: 1.0,
                    cache_bandwidth_figure: "z".into(),
                },
                figures,
                warnings: vec![],
            }
        }

        /// A and B for the tests of `--compare` and its page: B is twice as fast on `train`,
        /// half as fast on `infer`; `fgsm` is in A only, `dae` in B only.
        pub fn two_profiles() -> (Profile, Profile) {
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
            (a, b)
        }
    }

    use super::*;
    use fixtures::{figure, report, two_profiles};

    /// B is twice as fast on `train`, half as fast on `infer`; `fgsm` and `dae` are in one only.
    #[test]
    fn ratios_are_b_over_a_on_shared_figures() {
        let (a, b) = two_profiles();
        let (rows, only_a, only_b) = compare(&a, &b);
        let got: Vec<(&str, f64)> = rows.iter().map(|r| (r.id.as_str(), r.ratio)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "workload/train/t1");
        assert!((got[0].1 - 2.0).abs() < 1e-9, "{got:?}");
        assert!((got[1].1 - 0.5).abs() < 1e-9, "{got:?}");
        assert_eq!((only_a, only_b), (1, 1));
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
