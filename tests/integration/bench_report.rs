//! `advmnist bench --report` and `--compare` as a user runs them: one report at the shortest
//! setting (a few seconds), its files, its JSON against the keys documented in
//! docs/performance.md, and `--compare` on it and a copy with known ratios. Nothing here
//! asserts a speed: speed is shown in the report, not tested.

use crate::common::{advmnist, s};
use advmnist::bench::profile::{documented_keys, key_paths, FORMAT, VERSION};
use std::collections::BTreeSet;
use tempfile::TempDir;

/// Whether documented key `key` is accounted for by the keys `found` in a report: present
/// itself, an array of objects that has members, or inside an array that happened to be empty.
fn accounted(key: &str, found: &BTreeSet<String>) -> bool {
    found.contains(key)
        || (key.ends_with("[]") && found.iter().any(|f| f.starts_with(&format!("{key}."))))
        || key
            .match_indices("[]")
            .any(|(i, _)| found.contains(&key[..i + 2]))
}

#[test]
fn report_has_every_documented_key_and_compares_with_a_copy() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("report");
    let run = advmnist(&[
        "bench",
        "--report",
        s(&out),
        "--seconds",
        "0.1",
        "--threads",
        "2",
    ]);
    assert!(
        run.status.success(),
        "bench --report failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in ["bench.json", "bench.md", "roofline.svg", "scaling.svg"] {
        let text =
            std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!text.is_empty(), "{file} is empty");
    }
    for svg in ["roofline.svg", "scaling.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(text.matches("<circle").count() >= 3, "{svg} has no points");
    }

    // Every documented key is in the report, and every key of the report is documented.
    let json_text = std::fs::read_to_string(out.join("bench.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    let found = key_paths(&json);
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/performance.md"))
        .unwrap();
    let documented = documented_keys(&docs);
    assert!(
        documented.len() > 40,
        "the key table was not found in docs/performance.md"
    );
    let missing: Vec<&String> = documented
        .iter()
        .filter(|k| !accounted(k, &found))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not in bench.json: {missing:?}"
    );
    let undocumented: Vec<&String> = found
        .iter()
        .filter(|f| !documented.iter().any(|d| d == *f))
        .collect();
    assert!(
        undocumented.is_empty(),
        "in bench.json but not documented: {undocumented:?}"
    );
    assert_eq!(json["format"], FORMAT);
    assert_eq!(json["version"], VERSION);

    // The figures the docs promise: the limits and the workloads on 1 and 2 threads, layers.
    let ids: Vec<&str> = json["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    for id in [
        "fma/t1",
        "fma/t2",
        "sgemm/1024x1024x1024/t1",
        "sgemm/1024x1024x1024/t2",
        "sgemm/50x500x256/t2",
        "bandwidth/memory/t1",
        "bandwidth/cache/t2",
        "layer/conv2/forward",
        "layer/conv1/weight_gradient",
        "layer/pool1/backward",
        "layer/fc1/input_gradient",
        "update/sgd",
        "workload/train/t1",
        "workload/train/t2",
        "workload/pipeline_fgsm/t2",
        "workload/dae_infer/t1",
    ] {
        assert!(ids.contains(&id), "no figure {id} in {ids:?}");
    }
    // Every GFLOP/s figure's share of the FMA peak is its rate over `fma/tT`'s.
    let figures = json["figures"].as_array().unwrap();
    let rate = |id: &str| {
        figures.iter().find(|f| f["id"] == id).unwrap()["rate"]["median"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        json["ceilings"]["fma_peak_gflop_per_s"].as_f64(),
        Some(rate("fma/t2"))
    );
    for f in figures.iter().filter(|f| f["gflop_per_s"].is_number()) {
        let t = f["threads"].as_u64().unwrap();
        let want = f["gflop_per_s"].as_f64().unwrap() / rate(&format!("fma/t{t}"));
        let got = f["share_of_fma_peak"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "{}: {got} vs {want}",
            f["id"]
        );
    }
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    for part in [
        "## The machine",
        "## Its limits",
        "## Where the time goes",
        "## Thread scaling",
    ] {
        assert!(md.contains(part), "bench.md has no {part}");
    }

    // --compare against a copy whose rates are all doubled, but conv2's forward tripled:
    // ratios 2.00 and 3.00.
    let mut faster = json.clone();
    for f in faster["figures"].as_array_mut().unwrap() {
        let factor = if f["id"] == "layer/conv2/forward" {
            3.0
        } else {
            2.0
        };
        for k in ["median", "min", "max"] {
            let v = f["rate"][k].as_f64().unwrap();
            f["rate"][k] = serde_json::json!(v * factor);
        }
    }
    let b = dir.path().join("faster.json");
    std::fs::write(&b, serde_json::to_string(&faster).unwrap()).unwrap();
    let a = out.join("bench.json");
    let cmp = advmnist(&["bench", "--compare", s(&a), s(&b)]);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let table = String::from_utf8(cmp.stdout).unwrap();
    // A good report against what `--json` prints: refused, naming the second file.
    let quick = dir.path().join("quick.json");
    std::fs::write(
        &quick,
        r#"{"threads":2,"batch":64,"train_img_per_s":9000.0}"#,
    )
    .unwrap();
    let refused = advmnist(&["bench", "--compare", s(&a), s(&quick)]);
    assert!(!refused.status.success(), "a --json result is not a report");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("quick.json") && err.contains("not a bench report"),
        "{err}"
    );
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.starts_with("| sgemm/")
                || l.starts_with("| fma/")
                || l.starts_with("| layer/")
                || l.starts_with("| workload/")
                || l.starts_with("| bandwidth/")
                || l.starts_with("| update/")
        })
        .collect();
    assert_eq!(rows.len(), ids.len(), "one row per shared figure:\n{table}");
    for row in rows {
        let want = if row.starts_with("| layer/conv2/forward |") {
            "| 3.00 |"
        } else {
            "| 2.00 |"
        };
        assert!(row.ends_with(want), "{row}");
    }
}

#[test]
fn compare_refuses_a_file_that_is_not_a_report_naming_it() {
    let dir = TempDir::new().unwrap();
    // What `advmnist bench --json` prints: a bench result, not a report.
    let json = dir.path().join("quick.json");
    std::fs::write(
        &json,
        r#"{"threads":2,"batch":64,"train_img_per_s":9000.0}"#,
    )
    .unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        format!(r#"{{"format":"{FORMAT}","version":{VERSION}}}"#),
    )
    .unwrap();
    let out = advmnist(&["bench", "--compare", s(&json), s(&other)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quick.json") && err.contains("not a bench report"),
        "{err}"
    );
    // The right format and version but nothing else: damaged, and named too.
    let out = advmnist(&["bench", "--compare", s(&other), s(&other)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other.json") && err.contains("damaged"),
        "{err}"
    );
    let out = advmnist(&["bench", "--compare", s(&json)]);
    assert!(!out.status.success(), "--compare takes two files");
    let out = advmnist(&["bench", "--json", "--report", s(dir.path())]);
    assert!(!out.status.success(), "--json and --report conflict");
}
