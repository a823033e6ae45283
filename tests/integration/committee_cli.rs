//! `--committee` and `--gradient` on the command line, `advmnist committee` and
//! `advmnist gradients`: a committee of one evaluates as its member, labels name the committee
//! and the gradient, members count as inputs, and conflicting flags get errors naming them.

use crate::common::{err, ok, s};
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;
use tempfile::TempDir;

/// Two LeNets trained 40 iterations (seeds 1 and 2), shared by the tests.
fn models() -> &'static (TempDir, PathBuf, PathBuf) {
    static M: OnceLock<(TempDir, PathBuf, PathBuf)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let a = dir.path().join("a.safetensors");
        let b = dir.path().join("b.safetensors");
        for (seed, p) in [("1", &a), ("2", &b)] {
            ok(&[
                "train",
                "--iters",
                "40",
                "--eval-every",
                "0",
                "--seed",
                seed,
                "--out",
                s(p),
            ]);
        }
        (dir, a, b)
    })
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

#[test]
fn a_committee_evaluates_like_a_model_and_is_named() {
    let (dir, a, b) = models();
    let out = ok(&["eval", "--model", s(a), "--committee", s(a), "--json"]);
    let v = json(&out);
    let rows = v["models"].as_array().unwrap();
    assert_eq!(rows[1]["model"], format!("committee:{}", s(a)));
    assert_eq!(
        rows[0]["test_error_pct"], rows[1]["test_error_pct"],
        "a committee of one"
    );
    // A committee file lists the same two members as the comma list.
    let file = dir.path().join("c.json");
    ok(&["committee", "--out", s(&file), s(a), s(b)]);
    let list = format!("{},{}", s(a), s(b));
    let by_list = json(&ok(&["eval", "--committee", &list, "--json"]));
    let by_file = json(&ok(&["eval", "--committee", s(&file), "--json"]));
    assert_eq!(
        by_list["models"][0]["test_error_pct"],
        by_file["models"][0]["test_error_pct"]
    );
    assert_eq!(
        by_file["models"][0]["model"],
        format!("committee:{}", s(&file))
    );
}

#[test]
fn attacks_name_the_committee_and_the_gradient() {
    let (dir, a, b) = models();
    let list = format!("{},{}", s(a), s(b));
    for gradient in ["exact", "caffe-f32"] {
        let out = ok(&[
            "sweep",
            "--committee",
            &list,
            "--noise",
            "fgsm",
            "--levels",
            "2",
            "--max",
            "0.1",
            "--gradient",
            gradient,
            "--pre",
            "lowpass:3",
            "--out",
            s(&dir.path().join(format!("sw-{gradient}"))),
            "--json",
        ]);
        let v = json(&out);
        let names: Vec<&str> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["model"].as_str().unwrap())
            .collect();
        let label = format!("[gradient {gradient}]");
        assert!(names.iter().all(|n| n.ends_with(&label)), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("lowpass:3 + committee:")
                && n.contains("[attack through pipeline]")),
            "{names:?}"
        );
    }
    let png = dir.path().join("fig.png");
    let out = ok(&[
        "show",
        "--committee",
        &list,
        "--noise",
        "fgsm",
        "--levels",
        "0.1",
        "--count",
        "2",
        "--gradient",
        "caffe-f32",
        "--out",
        s(&png),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("committee:") && stderr.contains("[gradient caffe-f32]"),
        "{stderr}"
    );
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
}

#[test]
fn conflicts_and_faults_are_named() {
    let (dir, a, b) = models();
    let list = format!("{},{}", s(a), s(b));
    let e = err(&[
        "eval",
        "--model",
        s(a),
        "--committee",
        &list,
        "--predictions",
        s(&dir.path().join("p.txt")),
    ]);
    assert!(
        e.contains("--predictions") && e.contains("--committee"),
        "{e}"
    );
    let e = err(&[
        "show",
        "--model",
        s(a),
        "--committee",
        &list,
        "--noise",
        "fgsm",
        "--levels",
        "0.1",
        "--out",
        "x.png",
    ]);
    assert!(e.contains("--committee") && e.contains("--model"), "{e}");
    let e = err(&["eval", "--committee", &list, "--gradient", "caffe"]);
    assert!(e.contains("--gradient") && e.contains("caffe-f32"), "{e}");
    let e = err(&["eval", "--committee", &format!("{},,{}", s(a), s(b))]);
    assert!(
        e.contains("--committee") && e.contains("empty member"),
        "{e}"
    );
    let e = err(&[
        "eval",
        "--committee",
        &format!("{},{}", s(a), s(&dir.path().join("gone.safetensors"))),
    ]);
    assert!(e.contains("gone.safetensors"), "{e}");
    // A member is an input: no output may overwrite it, nor the committee file.
    let e = err(&["eval", "--committee", s(b), "--predictions", s(b)]);
    assert!(
        e.contains("--committee") && e.contains("destroy an input"),
        "{e}"
    );
    let file = dir.path().join("c2.json");
    ok(&["committee", "--out", s(&file), s(a), s(b)]);
    let e = err(&["eval", "--committee", s(&file), "--predictions", s(&file)]);
    assert!(e.contains("destroy an input"), "{e}");
    let e = err(&["committee", "--out", s(a), s(a), s(b)]);
    assert!(e.contains("would destroy"), "{e}");
    // A committee file whose member changed.
    let copy = dir.path().join("b2.safetensors");
    std::fs::copy(b, &copy).unwrap();
    let file3 = dir.path().join("c3.json");
    ok(&["committee", "--out", s(&file3), s(a), s(&copy)]);
    std::fs::copy(a, &copy).unwrap();
    let e = err(&["eval", "--committee", s(&file3)]);
    assert!(
        e.contains("c3.json") && e.contains("b2.safetensors") && e.contains("SHA-256"),
        "{e}"
    );
}

#[test]
fn gradients_reports_both_rules() {
    let (_, a, _) = models();
    let v = json(&ok(&["gradients", "--model", s(a), "--json"]));
    assert_eq!(v["images"], 10000);
    assert_eq!(v["pixels"], 10000 * 784);
    let exact = v["true_term_lost_exact"].as_u64().unwrap();
    let caffe = v["true_term_lost_caffe_f32"].as_u64().unwrap();
    assert!(exact <= caffe, "{v}");
    let fraction = v["max_image_fraction_sign_differs"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&fraction), "{v}");
}
