//! `advmnist evaluate` as a user runs it: bad input refused by name before any work, and a
//! small evaluation end to end (report files, the worst-case rule, the verdicts and `--strict`).

use crate::common::{advmnist, err, ok, s};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tempfile::TempDir;

/// Two briefly trained LeNets (the evaluated model and the transfer source), in a folder kept
/// for the whole test run.
fn models() -> &'static (TempDir, PathBuf, PathBuf) {
    static M: OnceLock<(TempDir, PathBuf, PathBuf)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let model = dir.path().join("m.safetensors");
        let source = dir.path().join("source.safetensors");
        for (path, seed) in [(&model, "1"), (&source, "2")] {
            ok(&[
                "train",
                "--iters",
                "200",
                "--seed",
                seed,
                "--eval-every",
                "0",
                "--out",
                s(path),
            ]);
        }
        (dir, model, source)
    })
}

/// `evaluate --model M --source S` with small settings and the given extra flags.
fn small(out: &Path, extra: &[&str]) -> std::process::Output {
    let (_, model, source) = models();
    let mut args = vec![
        "evaluate",
        "--model",
        s(model),
        "--source",
        s(source),
        "--images",
        "40",
        "--eps",
        "0.05,0.3",
        "--iterations",
        "8",
        "--targets",
        "2",
        "--queries",
        "60",
        "--steps",
        "3",
        "--stronger-restarts",
        "2",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    advmnist(&args)
}

#[test]
fn bad_input_is_refused_by_name_before_any_work() {
    let (dir, model, source) = models();
    let m = s(model);
    let out = dir.path().join("never");
    let o = s(&out);
    for (args, wanted) in [
        (
            vec!["--eps", "1.5"],
            "--eps 1.5: a budget is an L-infinity radius in [0, 1]",
        ),
        (
            vec!["--eps", "-0.1"],
            "--eps -0.1: a budget is an L-infinity radius in [0, 1]",
        ),
        (vec!["--images", "0"], "--images must be at least 1"),
        (vec!["--images", "10001"], "too large (at most 10000)"),
        (vec!["--queries", "100001"], "too large (at most 100000)"),
        (vec!["--restarts", "101"], "too large (at most 100)"),
        (vec!["--targets", "10"], "too large (at most 9)"),
    ] {
        let mut argv = vec!["evaluate", "--model", m, "--source", s(source), "--out", o];
        argv.extend(&args);
        let e = err(&argv);
        assert!(e.contains(wanted), "{args:?}: {e}");
    }
    // A file that is not a model, named by its flag's file.
    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, "not a model").unwrap();
    let e = err(&[
        "evaluate",
        "--model",
        s(&text),
        "--source",
        s(source),
        "--out",
        o,
    ]);
    assert!(e.contains("notes.safetensors"), "{e}");
    // A committee behind stages.
    let members = format!("{m},{}", s(source));
    let e = err(&[
        "evaluate",
        "--committee",
        &members,
        "--pre",
        "lowpass:5",
        "--out",
        o,
    ]);
    assert!(e.contains("--pre with --committee"), "{e}");
    assert!(!out.exists(), "nothing is written for refused input");
}

#[test]
fn a_small_evaluation_writes_its_report_with_verdicts() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("eval");
    let run = small(&out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    for f in [
        "evaluate.json",
        "evaluate.md",
        "evaluate.svg",
        "evaluate.sha256",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(
        !out.join("evaluate.partial.json").exists(),
        "the record of the run in progress is gone"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evaluate.json")).unwrap()).unwrap();
    let attacks = report["record"]["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 12, "6 attacks at 2 budgets");
    // The worst case at each budget is at least every attack's error and at most their sum.
    let md = std::fs::read_to_string(out.join("evaluate.md")).unwrap();
    for (column, eps) in [(1, 0.05), (2, 0.3)] {
        let errors: Vec<f64> = attacks
            .iter()
            .filter(|a| (a["eps"].as_f64().unwrap() - eps).abs() < 1e-6)
            .map(|a| a["error_pct"].as_f64().unwrap())
            .collect();
        let worst_row = md
            .lines()
            .find(|l| l.starts_with("| **worst case**"))
            .unwrap();
        let cell = worst_row
            .split('|')
            .nth(column + 1)
            .unwrap()
            .trim()
            .trim_matches('*');
        let worst: f64 = cell.parse().unwrap();
        assert!(
            errors.iter().all(|&e| e <= worst + 1e-9),
            "{errors:?} {worst}"
        );
        assert!(worst <= errors.iter().sum::<f64>() + 1e-9);
    }
    // At eps 0.3 a LeNet of 200 iterations is broken: every attack but FGSM near 100%.
    assert!(md.contains("| apgd-t |"), "{md}");
    let verdicts = report["verdicts"].as_array().unwrap();
    assert!(verdicts.len() >= 8, "{verdicts:?}");
    let warns = verdicts.iter().filter(|v| v["mark"] == "WARN").count();
    for v in verdicts {
        assert!(v["mark"] == "PASS" || v["mark"] == "WARN");
        assert!(!v["evidence"].as_str().unwrap().is_empty());
    }
    // Every WARN is printed; --strict turns a WARN into exit status 1, and no WARN into 0.
    assert_eq!(stderr.matches("WARN ").count(), warns, "{stderr}");
    let strict = small(&dir.path().join("strict"), &["--strict"]);
    assert_eq!(
        strict.status.success(),
        warns == 0,
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}
