//! The command line as a user runs it: byte-identical model files across thread counts,
//! `--resume`, `eval --json`, and clear errors for bad input.

use crate::common::{err, ok, s};
use std::process::Command;
use tempfile::TempDir;

#[test]
fn model_files_are_byte_identical_with_one_or_two_threads_and_after_resume() {
    let dir = TempDir::new().unwrap();
    let one = dir.path().join("t1.safetensors");
    let two = dir.path().join("t2.safetensors");
    let common = [
        "train",
        "--seed",
        "3",
        "--dropout",
        "all",
        "--eval-every",
        "0",
    ];
    ok(&[
        &common[..],
        &["--iters", "24", "--threads", "1", "--out", s(&one)],
    ]
    .concat());
    ok(&[
        &common[..],
        &["--iters", "24", "--threads", "2", "--out", s(&two)],
    ]
    .concat());
    let a = std::fs::read(&one).unwrap();
    assert_eq!(
        a,
        std::fs::read(&two).unwrap(),
        "1- and 2-thread model files differ"
    );
    assert!(
        !dir.path().join("t1.safetensors.ckpt").exists(),
        "a finished run removes its checkpoint"
    );

    // Kill the same 24-iteration run (SIGKILL, no chance to clean up) as soon as its first
    // checkpoint appears, then resume it: the file must equal the uninterrupted run's. (A
    // checkpoint is never written at the last iteration, so the resume always has work left.)
    let resumed = dir.path().join("r.safetensors");
    let ckpt = dir.path().join("r.ckpt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args(
            [
                &common[..],
                &[
                    "--iters",
                    "24",
                    "--checkpoint-every",
                    "4",
                    "--checkpoint",
                    s(&ckpt),
                    "--out",
                    s(&resumed),
                ],
            ]
            .concat(),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ckpt.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!resumed.exists(), "the killed run wrote no model");
    let out = ok(&[
        &common[..],
        &[
            "--iters",
            "24",
            "--resume",
            "--checkpoint",
            s(&ckpt),
            "--out",
            s(&resumed),
        ],
    ]
    .concat());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from"));
    assert_eq!(
        a,
        std::fs::read(&resumed).unwrap(),
        "resumed model differs from the uninterrupted one"
    );
}

#[test]
fn eval_json_is_exactly_one_object() {
    let dir = TempDir::new().unwrap();
    let m = dir.path().join("m.safetensors");
    ok(&["train", "--iters", "5", "--eval-every", "0", "--out", s(&m)]);
    let out = ok(&["eval", "--model", s(&m), "--model", s(&m), "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["model"], s(&m));
    assert_eq!(models[0]["n"], 10000);
    let e = models[0]["test_error_pct"].as_f64().unwrap();
    assert!((0.0..100.0).contains(&e));
}

#[test]
fn bad_input_gets_an_error_naming_the_file_or_flag() {
    let dir = TempDir::new().unwrap();
    let e = err(&["eval", "--model", "/nonexistent/m.safetensors"]);
    assert!(e.contains("/nonexistent/m.safetensors"), "{e}");
    let e = err(&[
        "eval",
        "--model",
        s(&dir.path().join("x")),
        "--data",
        s(dir.path()),
    ]);
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
    let e = err(&["train", "--out", "x", "--dropout", "0.2,0.2"]);
    assert!(e.contains("--dropout"), "{e}");
    let e = err(&["train", "--out", "x", "--dropout", "0.2,0,0,0,1.5"]);
    assert!(e.contains("outside [0, 1)"), "{e}");
    let e = err(&["train", "--out", "x", "--iters", "0"]);
    assert!(e.contains("--iters"), "{e}");
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a model").unwrap();
    let e = err(&["eval", "--model", s(&garbage)]);
    assert!(e.contains("garbage.safetensors"), "{e}");
}

#[test]
fn sweep_json_and_files() {
    let dir = TempDir::new().unwrap();
    let m = dir.path().join("m.safetensors");
    ok(&[
        "train",
        "--iters",
        "30",
        "--eval-every",
        "0",
        "--out",
        s(&m),
    ]);
    let out_dir = dir.path().join("sw");
    let out = ok(&[
        "sweep",
        "--model",
        s(&m),
        "--noise",
        "fgsm",
        "--levels",
        "3",
        "--max",
        "0.2",
        "--at",
        "0.05",
        "--out",
        s(&out_dir),
        "--json",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(v["noise"], "fgsm");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["level"], 0.0);
    assert_eq!(rows[0]["distortion"], 0.0);
    assert!((rows[2]["level"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(v["at"][0]["distortion"], 0.05);
    assert!(v["at"][0]["error_pct"].is_number());
    assert!(v["wall_s"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    assert!(
        csv.starts_with("noise,level,distortion,model,error_pct\n") && csv.lines().count() == 4,
        "{csv}"
    );
    let svg = std::fs::read_to_string(out_dir.join("sweep.svg")).unwrap();
    assert!(
        svg.contains("<svg")
            && svg.contains("average distortion per pixel")
            && svg.contains("error (%)")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(out_dir.join("sweep.json")).unwrap()
        )
        .unwrap()["rows"],
        v["rows"]
    );

    let e = err(&[
        "sweep",
        "--model",
        s(&m),
        "--noise",
        "gaussian",
        "--source",
        s(&m),
    ]);
    assert!(e.contains("--source"), "{e}");
    let e = err(&[
        "sweep",
        "--model",
        s(&m),
        "--noise",
        "fgsm",
        "--levels",
        "1",
    ]);
    assert!(e.contains("--levels"), "{e}");
    let png = dir.path().join("fig.png");
    ok(&[
        "show",
        "--model",
        s(&m),
        "--noise",
        "fgsm",
        "--levels",
        "0.1,0.2",
        "--count",
        "2",
        "--out",
        s(&png),
    ]);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}
