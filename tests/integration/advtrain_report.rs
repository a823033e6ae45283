//! `advmnist advtrain-report` on a small staged run: the files, the transfer matrix's diagonal
//! equal to an own-gradient sweep made separately, the training sets made again to their
//! recorded bytes, and the refusals (a folder without a record, a snapshot whose bytes changed).

use advmnist::data::{default_data_dir, load_mnist, Mnist};
use advmnist::experiments::advtrain_diagnostics::Diagnostics;
use advmnist::experiments::sweep::{self, Noise, SweepConfig};
use advmnist::experiments::NamedModel;
use advmnist::models::file::load_model;
use advmnist::models::lenet::LeNet;
use advmnist::train::adversarial::{run_adversarial, snapshot_file, AdvConfig, AdvOptions};
use std::process::Command;

fn advmnist(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args(args)
        .env_remove("ADVMNIST_DATA")
        .output()
        .unwrap()
}

#[test]
fn diagnostics_of_a_small_run_agree_with_sweeps_made_separately_and_refuse_bad_input() {
    let full = load_mnist(&default_data_dir()).expect("bundled MNIST loads");
    // The first 512 training images: the command takes the run's pool size from its record.
    let small = Mnist {
        train: full.train.subset(0..512),
        test: full.test.subset(0..300),
        sha256: full.sha256.clone(),
    };
    let cfg = AdvConfig {
        seed: 4,
        base_iterations: 30,
        stages: 2,
        stage_iterations: 20,
        ..AdvConfig::default()
    };
    let tmp = tempfile::TempDir::new().unwrap();
    let run = tmp.path().join("run");
    run_adversarial(&cfg, &small, &run, &AdvOptions::default(), |_| {}).unwrap();
    let out = tmp.path().join("report");
    let (run_s, out_s) = (run.to_str().unwrap(), out.to_str().unwrap());
    let flags = [
        "--test-images",
        "200",
        "--pgd-images",
        "50",
        "--levels",
        "6",
        "--steps",
        "2",
    ];
    let mut args = vec!["advtrain-report", run_s, "--out", out_s];
    args.extend(flags);
    let o = advmnist(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "diagnostics.json",
        "diagnostics.md",
        "diagnostics.svg",
        "diagnostics.sha256",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let d: Diagnostics =
        serde_json::from_str(&std::fs::read_to_string(out.join("diagnostics.json")).unwrap())
            .unwrap();
    assert_eq!(d.snapshots.len(), 3);
    assert_eq!(d.transfer_pct.len(), 3);
    assert_eq!(d.sets.len(), 2);
    for s in &d.sets {
        assert_eq!(
            s.same_as_recorded,
            Some(true),
            "set of snapshot {}",
            s.from_snapshot
        );
        assert_eq!(s.images, 512);
        assert!(s.distortion >= s.sign_step_distortion * 0.5 && s.distortion > 0.0);
    }
    assert_eq!(d.snapshots[0].sign_agreement_with_previous, None);
    // The diagonal is each snapshot's own gradient sign: the same as a sweep of its own.
    let test = full.test.subset(0..200);
    for k in 0..3 {
        let net: LeNet<f32> = load_model(&run.join(snapshot_file(k))).unwrap().0;
        let named = [NamedModel {
            name: "m".into(),
            model: &net,
        }];
        let r = sweep::sweep(
            &named,
            None,
            &test,
            &SweepConfig {
                noise: Noise::Fgsm,
                levels: sweep::levels(6, 0.5),
                seed: 1,
                at: vec![0.1],
            },
            |_, _| {},
        )
        .unwrap();
        assert_eq!(d.transfer_pct[k][k], r.at[0].error_pct, "snapshot {k}");
        assert_eq!(d.snapshots[k].fgsm_pct[0], r.at[0].error_pct);
        let clean = advmnist::models::lenet::error_pct(
            &advmnist::models::Classifier::predict(&net, test.images.view()),
            &test.labels,
        );
        assert_eq!(d.snapshots[k].clean_error_pct, clean);
    }

    // Refusals, naming what is wrong.
    let o = advmnist(&[
        "advtrain-report",
        tmp.path().to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("advtrain.json"));
    let snapshot = run.join(snapshot_file(1));
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, bytes).unwrap();
    let other = tmp.path().join("other");
    let o = advmnist(&["advtrain-report", run_s, "--out", other.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("snapshot-1.safetensors") && e.contains("SHA-256"),
        "{e}"
    );
    let o = advmnist(&["advtrain-report", run_s, "--out", out_s, "--levels", "1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--levels"));
}
