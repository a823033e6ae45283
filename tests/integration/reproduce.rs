//! `advmnist reproduce --quick` end to end: every output file, every Table 2 row,
//! every job run exactly once when two processes share the run folder, nothing rerun when the
//! run is repeated, and clear errors.

use std::process::{Command, Output};

fn advmnist(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_advmnist"));
    c.args(args).env_remove("ADVMNIST_DATA");
    c
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn job_names(dir: &str) -> Vec<String> {
    let out = ok(
        advmnist(&["reproduce", "--out", dir, "--quick", "--list-jobs"])
            .output()
            .unwrap(),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(" --job ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// The lines `[k/n] JOB (...)` a run prints for each job it ran itself.
fn ran(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}

#[test]
fn quick_reproduction_writes_every_file_and_row_and_splits_over_two_processes() {
    let tmp = tempfile::TempDir::new().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let jobs = job_names(run_s);
    assert!(jobs.len() > 30, "{jobs:?}");
    assert!(jobs.iter().any(|j| j == "adv-s1") && jobs.iter().any(|j| j == "dae-s1"));

    // A job whose dependencies have not run is refused, naming them.
    let sweep = jobs
        .iter()
        .find(|j| j.starts_with("sweep-committee"))
        .unwrap();
    let out = advmnist(&["reproduce", "--out", run_s, "--quick", "--job", sweep])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("lenet-s1") && e.contains("finish first"), "{e}");

    // Two processes on one run folder: each job runs exactly once, in one of them.
    let a = advmnist(&["reproduce", "--out", run_s, "--quick"]).spawn_output_later();
    let b = advmnist(&["reproduce", "--out", run_s, "--quick"]).spawn_output_later();
    let (a, b) = (
        ok(a.wait_with_output().unwrap()),
        ok(b.wait_with_output().unwrap()),
    );
    let mut all: Vec<String> = ran(&a.stderr);
    all.extend(ran(&b.stderr));
    all.sort();
    let mut want = jobs.clone();
    want.sort();
    assert_eq!(
        all, want,
        "every job ran exactly once over the two processes"
    );

    for file in [
        "table2.json",
        "table2.md",
        "gaussian.json",
        "beyond.json",
        "soundness.json",
        "soundness.md",
        "report.html",
        "manifest.json",
        "figure3.svg",
        "figure4.svg",
        "figure5.svg",
        "figure5-whitebox.svg",
        "figure6.svg",
        "figure7.svg",
        "beyond.svg",
        "report.sha256",
    ] {
        let p = run.join(file);
        assert!(p.is_file(), "{file} missing");
        assert!(
            std::fs::metadata(&p).unwrap().len() > 100,
            "{file} is nearly empty"
        );
    }
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("table2.json")).unwrap()).unwrap();
    let rows = table.as_array().unwrap();
    let study_rows: Vec<&serde_json::Value> =
        rows.iter().filter(|r| !r["paper"].is_null()).collect();
    assert_eq!(
        study_rows.len(),
        9,
        "Table 2's nine rows in the study's setting"
    );
    for (r, label) in study_rows.iter().zip([
        "No method",
        "Dropout",
        "Low-pass filter",
        "DAE",
        "Low-pass filter + dropout",
        "DAE + dropout",
        "Standard committee",
        "Adversarial training after 5 stages",
        "Committee of models trained on adv. examples",
    ]) {
        assert_eq!(r["method"], label);
        for col in ["0", "0.1", "0.2"] {
            assert!(r["paper"][col].is_number(), "{label} paper {col}");
            assert!(r["error_pct"].get(col).is_some(), "{label} {col}");
        }
        let clean = r["error_pct"]["0"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&clean), "{label}: {clean}");
        assert!(r["attack"].is_string() && r["gradient"] == "exact");
    }
    // The other settings are named: white-box through the preprocessing, and Caffe's gradient.
    assert!(rows
        .iter()
        .any(|r| r["method"] == "DAE" && r["attack"].as_str().unwrap().contains("white-box")));
    assert!(rows
        .iter()
        .any(|r| r["method"] == "No method" && r["gradient"] == "caffe-f32"));
    let beyond = std::fs::read_to_string(run.join("beyond.json")).unwrap();
    for what in [
        "PGD",
        "transfer from an independent LeNet",
        "each single member",
    ] {
        assert!(beyond.contains(what), "{what} missing from beyond.json");
    }
    // The soundness table: every Table 2 row evaluated by every attack at eps 0.1 and 0.3, with
    // the distortion produced, the bounds and the verdicts.
    let soundness: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("soundness.json")).unwrap())
            .unwrap();
    let sound_rows = soundness.as_array().unwrap();
    assert_eq!(sound_rows.len(), 9, "one evaluation per Table 2 row");
    for (r, study) in sound_rows.iter().zip(&study_rows) {
        assert_eq!(r["method"], study["method"]);
        let report = &r["report"];
        assert_eq!(
            report["record"]["settings"]["eps"],
            serde_json::json!([0.1, 0.3])
        );
        assert_eq!(report["record"]["attacks"].as_array().unwrap().len(), 12);
        // A certificate for one LeNet without injected noise, none for the rest; the check of
        // the certified bound against the attacks only where there is one.
        let certified = report["certification"]["unavailable"].is_null();
        assert_eq!(
            report["verdicts"].as_array().unwrap().len(),
            8 + certified as usize
        );
        let one_model = ["none", "dropout", "dae", "dae+dropout", "adv"];
        assert_eq!(
            certified,
            one_model.contains(&r["key"].as_str().unwrap()),
            "{}",
            r["key"]
        );
        // EOT exactly on the rows that inject noise.
        let eot = report["record"]["settings"]["eot_draws"].as_u64().unwrap();
        assert_eq!(eot > 1, r["key"].as_str().unwrap().starts_with("lowpass"));
    }
    let md = std::fs::read_to_string(run.join("soundness.md")).unwrap();
    for what in [
        "apgd-t",
        "square",
        "worst case",
        "certified",
        "checks passed",
    ] {
        assert!(md.contains(what), "{what} missing from soundness.md");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Standard committee"));
    assert!(html.contains("Soundness: every row under every attack"));
    assert!(html.contains("On the adversarial committee at eps 0.1"));
    // The on-line baseline among the checks beyond the study, and the verdict on the study's
    // adversarial-training row with this run's numbers (the ablation has not run here).
    let beyond: serde_json::Value = serde_json::from_str(&beyond).unwrap();
    let online: Vec<&serde_json::Value> = beyond
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "online")
        .collect();
    assert_eq!(online.len(), 3, "own gradient, PGD, transfer");
    assert!(online[0]["error_pct"]["0.1"].is_number());
    let verdict = html
        .split("The one row that does not reproduce")
        .nth(1)
        .expect("the verdict's section")
        .split("</p>")
        .next()
        .unwrap();
    let adv = study_rows
        .iter()
        .find(|r| r["method"] == "Adversarial training after 5 stages")
        .unwrap();
    let at01 = format!("{:.1}", adv["error_pct"]["0.1"].as_f64().unwrap());
    assert!(verdict.contains(&at01), "{at01}: {verdict}");
    assert!(
        verdict.contains("not reproduced") || verdict.contains("<b>reproduced</b>"),
        "{verdict}"
    );
    assert!(verdict.contains("The on-line baseline") && verdict.contains("has not run here"));
    assert!(
        !html.contains("<script src") && !html.contains("<link "),
        "self-contained"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let mjobs = manifest["jobs"].as_array().unwrap();
    assert_eq!(mjobs.len(), jobs.len());
    for j in mjobs {
        let record = &j["record"];
        assert!(record["wall_s"].is_number(), "{j}");
        for (_, hash) in record["outputs"].as_object().unwrap() {
            assert_eq!(hash.as_str().unwrap().len(), 64);
        }
    }
    assert!(manifest["data_sha256"].as_str().unwrap().len() == 64);

    // The report is one set: its manifest vouches for every file (`sha256sum -c` format).
    let listed = advmnist::io_safety::check_set(&run, "report").unwrap();
    assert!(listed.len() >= 13, "{listed:?}");

    // The committees are written as committee files that the other commands read.
    let committee = run.join("committee-adversarial-s1.json");
    let out = ok(
        advmnist(&["eval", "--committee", committee.to_str().unwrap(), "--json"])
            .output()
            .unwrap(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("test_error_pct"));
    assert!(run.join("committee-standard-s1.json").is_file());

    // Run again: every job is reused (nothing ran), and the table is the same.
    let before = std::fs::read(run.join("table2.json")).unwrap();
    let again = ok(advmnist(&["reproduce", "--out", run_s, "--quick"])
        .output()
        .unwrap());
    assert!(
        ran(&again.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(run.join("table2.json")).unwrap(), before);

    // The committees' Gaussian sweeps read the logits their member's own sweep cached; the
    // results are the same without the cache, and with it in the order that makes it hit.
    let cache = run.join("cache/logits");
    assert!(cache.is_dir(), "the shared Gaussian logits were cached");
    let gaussian = std::fs::read(run.join("gaussian.json")).unwrap();
    let (alone, committee) = (
        "sweep-none-gaussian-random-exact-s1",
        "sweep-committee-gaussian-random-exact-s1",
    );
    assert!(jobs.iter().any(|j| j == alone) && jobs.iter().any(|j| j == committee));
    let forget = |job: &str| std::fs::remove_file(run.join("jobs").join(job).join("record.json"));
    std::fs::remove_dir_all(&cache).unwrap();
    forget(committee).unwrap();
    let without = ok(advmnist(&["reproduce", "--out", run_s, "--quick"])
        .output()
        .unwrap());
    assert_eq!(ran(&without.stderr), [committee]);
    assert!(!cache.exists(), "a committee's sweep only reads the cache");
    assert_eq!(std::fs::read(run.join("gaussian.json")).unwrap(), gaussian);
    forget(alone).unwrap();
    forget(committee).unwrap();
    for job in [alone, committee] {
        ok(
            advmnist(&["reproduce", "--out", run_s, "--quick", "--job", job])
                .output()
                .unwrap(),
        );
    }
    assert!(cache.read_dir().unwrap().count() > 0, "written by {alone}");
    ok(advmnist(&["reproduce", "--out", run_s, "--quick"])
        .output()
        .unwrap());
    assert_eq!(std::fs::read(run.join("gaussian.json")).unwrap(), gaussian);
    assert_eq!(std::fs::read(run.join("table2.json")).unwrap(), before);

    // A tampered model is noticed by its hash: its job and everything that reads it run again.
    let model = run.join("jobs/all-s1/model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let third = ok(advmnist(&["reproduce", "--out", run_s, "--quick"])
        .output()
        .unwrap());
    let rerun = ran(&third.stderr);
    assert!(rerun.contains(&"all-s1".to_string()), "{rerun:?}");
    assert!(
        rerun.iter().all(|j| j == "all-s1" || j.contains("dropout")),
        "{rerun:?}"
    );
    assert_eq!(
        std::fs::read(run.join("table2.json")).unwrap(),
        before,
        "retraining gives the same bytes, so the same table"
    );
}

trait SpawnLater {
    fn spawn_output_later(&mut self) -> std::process::Child;
}

impl SpawnLater for Command {
    fn spawn_output_later(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let tmp = tempfile::TempDir::new().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let out = advmnist(&["reproduce", "--out", file.to_str().unwrap(), "--quick"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
    let out = advmnist(&["reproduce", "--out", "x", "--seeds", "0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds"));
    let out = advmnist(&[
        "reproduce",
        "--out",
        tmp.path().join("r").to_str().unwrap(),
        "--quick",
        "--job",
        "nope",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--job nope"));

    // The ablation's flags: --repeat belongs to --ablation, and names a cell of the grid.
    let out = advmnist(&["reproduce", "--out", "x", "--repeat", "fresh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--repeat") && e.contains("--ablation"), "{e}");
    let out = advmnist(&[
        "reproduce",
        "--out",
        "x",
        "--quick",
        "--ablation",
        "advtrain",
        "--repeat",
        "nope",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--repeat nope") && e.contains("eps0.1-c0"),
        "{e}"
    );
}

#[test]
fn the_ablation_lists_its_grid_as_jobs_of_the_study_s_kind() {
    let out = ok(advmnist(&[
        "reproduce",
        "--out",
        "run",
        "--quick",
        "--ablation",
        "advtrain",
        "--seeds",
        "2",
        "--repeat",
        "fresh",
        "--list-jobs",
    ])
    .output()
    .unwrap());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Every line is a command that runs one job of the same ablation.
    assert!(lines
        .iter()
        .all(|l| l.contains("--ablation advtrain --repeat fresh") && l.contains("--seeds 2")));
    let trained: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split("--job ").nth(1)?.split_whitespace().next())
        .filter(|j| j.starts_with("adv-"))
        .collect();
    // 13 cells at the first seed; the default cell and the named one at the second.
    assert_eq!(trained.len(), 15, "{trained:?}");
    assert!(trained.contains(&"adv-s1") && trained.contains(&"adv-fresh-s101"));
    assert!(trained.contains(&"adv-s101") && !trained.contains(&"adv-newest-s101"));
    assert!(text.contains("--job online-s101"));
}

/// A damaged checkpoint in a job's folder (a disk filled mid-write by another tool, say) does
/// not block the run: the job says it cannot resume, naming the file and the fault, starts
/// afresh, and ends with the same model bytes as a job that never had a checkpoint.
#[test]
fn a_damaged_checkpoint_is_named_and_the_job_starts_afresh_to_the_same_bytes() {
    let clean = tempfile::TempDir::new().unwrap();
    let damaged = tempfile::TempDir::new().unwrap();
    let job = |dir: &std::path::Path| {
        ok(advmnist(&[
            "reproduce",
            "--out",
            dir.to_str().unwrap(),
            "--quick",
            "--job",
            "lenet-s1",
        ])
        .output()
        .unwrap())
    };
    job(clean.path());
    let ckpt = damaged.path().join("jobs/lenet-s1/train.ckpt");
    std::fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
    std::fs::write(&ckpt, b"not a checkpoint").unwrap();
    let out = job(damaged.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lenet-s1: cannot resume: ")
            && stderr.contains(&ckpt.display().to_string())
            && stderr.contains("starting the job afresh"),
        "{stderr}"
    );
    assert!(
        !ckpt.exists(),
        "the checkpoint is gone once the job is done"
    );
    let model =
        |dir: &std::path::Path| std::fs::read(dir.join("jobs/lenet-s1/model.safetensors")).unwrap();
    assert!(
        model(clean.path()) == model(damaged.path()),
        "same model bytes"
    );
}
