//! Reliability: no command writes over a file it reads, every output location is
//! checked before any work, stale temporary files of killed writes are reclaimed, and numeric
//! flags out of range get a message that names the flag and the range.

use crate::common::{advmnist, s};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Runs a command that must fail; returns its stderr and how long it took.
fn fails(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = advmnist(args);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "advmnist {args:?} should have failed; stderr:\n{stderr}"
    );
    (stderr, took)
}

/// A copy, in `dir`, of a real LeNet model file (trained for 2 iterations, once per test run),
/// so that a command given it would get as far as writing its outputs.
fn model_in(dir: &Path) -> PathBuf {
    static TRAINED: std::sync::OnceLock<(TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, trained) = TRAINED.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let model = dir.path().join("trained.safetensors");
        let out = advmnist(&[
            "train",
            "--iters",
            "2",
            "--eval-every",
            "0",
            "--out",
            s(&model),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, model)
    });
    let model = dir.join("m.safetensors");
    std::fs::copy(trained, &model).unwrap();
    model
}

/// No work may start when an argument is wrong: a failing command returns well before any
/// training or sweep would finish.
const FAST: Duration = Duration::from_secs(10);

// ---- 1. never destroy an input ----

#[test]
fn eval_refuses_to_write_its_predictions_over_the_model() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let before = std::fs::read(&model).unwrap();
    // The same file spelled differently: compared as files, not strings.
    let same = dir.path().join(".").join("m.safetensors");
    let (e, took) = fails(&["eval", "--model", s(&model), "--predictions", s(&same)]);
    assert!(e.contains("--predictions") && e.contains("--model"), "{e}");
    assert!(took < FAST, "took {took:?}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        before,
        "the model was changed"
    );
}

#[test]
fn outputs_may_not_replace_a_data_file_or_a_source_model() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let idx = data.join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&idx, b"labels").unwrap();
    let (e, _) = fails(&[
        "eval",
        "--data",
        s(&data),
        "--model",
        s(&model),
        "--predictions",
        s(&idx),
    ]);
    assert!(e.contains("--predictions") && e.contains("--data"), "{e}");
    assert_eq!(std::fs::read(&idx).unwrap(), b"labels");

    // sweep writes DIR/sweep.csv: a --source model of that name is an input.
    let out = dir.path().join("sweep");
    std::fs::create_dir(&out).unwrap();
    let source = out.join("sweep.csv");
    std::fs::copy(&model, &source).unwrap();
    let (e, took) = fails(&[
        "sweep",
        "--model",
        s(&model),
        "--source",
        s(&source),
        "--noise",
        "fgsm",
        "--levels",
        "2",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--out") && e.contains("--source"), "{e}");
    assert!(took < FAST, "took {took:?}");
    assert_eq!(
        std::fs::read(&source).unwrap(),
        std::fs::read(&model).unwrap()
    );

    // show --out over its own model.
    let (e, _) = fails(&[
        "show",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--levels",
        "0.1",
        "--out",
        s(&model),
    ]);
    assert!(e.contains("--out") && e.contains("--model"), "{e}");
}

#[test]
fn human_study_and_human_report_may_not_write_over_their_inputs() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    // A results file kept in the report's folder under the report's own name.
    let out = dir.path().join("human");
    std::fs::create_dir(&out).unwrap();
    let results = out.join("human.json");
    std::fs::write(&results, b"{\"subject\": 1}").unwrap();
    let (e, took) = fails(&[
        "human-report",
        s(&results),
        "--models",
        s(&model),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--out") && e.contains("results file"), "{e}");
    assert!(took < FAST, "took {took:?}");
    assert_eq!(std::fs::read(&results).unwrap(), b"{\"subject\": 1}");
    // human-study's page over one of its reference models.
    let reference = dir.path().join("ref.safetensors");
    std::fs::copy(&model, &reference).unwrap();
    let (e, _) = fails(&[
        "human-study",
        "--model",
        s(&model),
        "--reference-models",
        s(&reference),
        "--out",
        s(&reference),
    ]);
    assert!(
        e.contains("--out") && e.contains("--reference-models"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&reference).unwrap(),
        std::fs::read(&model).unwrap()
    );
}

// ---- 2. outputs checked before the work ----

#[test]
fn train_out_an_existing_folder_fails_at_once() {
    let dir = TempDir::new().unwrap();
    let (e, took) = fails(&["train", "--iters", "100000", "--out", s(dir.path())]);
    assert!(e.contains("--out") && e.contains("is a folder"), "{e}");
    assert!(took < FAST, "took {took:?}: the work started");
}

#[test]
fn sweep_out_a_regular_file_fails_before_sweeping() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let file = dir.path().join("results");
    std::fs::write(&file, b"keep").unwrap();
    let (e, took) = fails(&[
        "sweep",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--out",
        s(&file),
    ]);
    assert!(e.contains("--out") && e.contains("is a file"), "{e}");
    assert!(took < FAST, "took {took:?}: the sweep ran");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

#[test]
fn eval_predictions_in_a_missing_folder_fails_before_evaluating() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    // A --data folder that does not exist proves no evaluation was attempted: the output check
    // comes first, so the message is about --predictions, not the data.
    let (e, _) = fails(&[
        "eval",
        "--data",
        s(&dir.path().join("no-data")),
        "--model",
        s(&model),
        "--predictions",
        "/nonexistent/dir/p.txt",
    ]);
    assert!(
        e.contains("--predictions") && e.contains("does not exist"),
        "{e}"
    );
}

// ---- 4. leftovers of killed writes ----

#[test]
fn write_atomic_removes_dead_processes_temporaries_but_not_live_ones() {
    use advmnist::io_safety::write_atomic;
    let dir = TempDir::new().unwrap();
    // A process that has exited: its id names no process (barring reuse within the test).
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();
    let stale = dir.path().join(format!(".m.safetensors.tmp-{}", dead.id()));
    let in_progress = dir.path().join(format!(".m.safetensors.tmp-{}", live.id()));
    let unrelated = dir.path().join(format!(".other.tmp-{}", dead.id()));
    for f in [&stale, &in_progress, &unrelated] {
        std::fs::write(f, b"half").unwrap();
    }
    write_atomic(&dir.path().join("m.safetensors"), b"new").unwrap();
    let stale_gone = !stale.exists();
    let live_kept = in_progress.exists();
    live.kill().unwrap();
    live.wait().unwrap();
    assert!(
        stale_gone,
        "a dead process's temporary file was left behind"
    );
    assert!(live_kept, "a live process's temporary file was removed");
    assert!(unrelated.exists(), "another file's temporary was touched");
    assert_eq!(
        std::fs::read(dir.path().join("m.safetensors")).unwrap(),
        b"new"
    );
}

// ---- numeric flags: ranges, negative numbers, limits ----

#[test]
fn bench_seconds_out_of_range_is_refused_without_a_panic() {
    for bad in ["inf", "nan", "1e-9", "-1"] {
        let (e, took) = fails(&["bench", "--seconds", bad]);
        assert!(
            e.contains("--seconds must be from 0.1 to 3600"),
            "{bad}: {e}"
        );
        assert!(!e.contains("panicked"), "{bad}: {e}");
        assert!(took < FAST);
    }
}

#[test]
fn sweep_at_nan_is_refused() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    for bad in ["NaN", "-0.1", "inf"] {
        let (e, _) = fails(&[
            "sweep",
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--at",
            bad,
            "--out",
            s(&dir.path().join("o")),
        ]);
        assert!(e.contains("--at"), "{bad}: {e}");
    }
}

#[test]
fn negative_counts_reach_the_range_message() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m.safetensors");
    for args in [
        ["train", "--iters", "-5"],
        ["train", "--seed", "-1"],
        ["train", "--batch", "-64"],
    ] {
        let (e, _) = fails(&[&args[..], &["--out", s(&out)]].concat());
        assert!(!e.contains("unexpected argument"), "{args:?}: {e}");
        assert!(e.contains("whole number >= 0"), "{args:?}: {e}");
        assert!(e.contains(args[1]), "{args:?}: {e}");
    }
    let (e, _) = fails(&["dae", "train", "--iters", "-5", "--out", s(&out)]);
    assert!(e.contains("whole number >= 0"), "{e}");
    let (e, _) = fails(&["--threads", "-2", "bench"]);
    assert!(e.contains("whole number >= 0"), "{e}");
}

#[test]
fn threads_far_above_the_cores_are_refused() {
    let (e, took) = fails(&["--threads", "100000", "bench", "--seconds", "0.1"]);
    assert!(
        e.contains("--threads 100000") && e.contains("per core"),
        "{e}"
    );
    assert!(took < FAST);
}

#[test]
fn train_batch_above_the_training_set_is_refused() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m.safetensors");
    let (e, _) = fails(&[
        "train",
        "--batch",
        "60001",
        "--iters",
        "2",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--batch 60001") && e.contains("60000"), "{e}");
    assert!(!out.exists());
}

// ---- 5. two runs, one output ----

#[test]
fn a_second_run_with_the_same_out_is_refused_while_the_first_runs() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m.safetensors");
    let lock = dir.path().join(".m.safetensors.lock");
    let mut first = Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args([
            "--threads",
            "1",
            "train",
            "--iters",
            "100000",
            "--eval-every",
            "0",
        ])
        .args(["--checkpoint-every", "0", "--out", s(&out)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !lock.exists() && started.elapsed() < FAST {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = advmnist(&["train", "--iters", "2", "--out", s(&out)]);
    first.kill().unwrap();
    first.wait().unwrap();
    let e = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second run was not refused");
    assert!(
        e.contains("--out") && e.contains("another advmnist run"),
        "{e}"
    );
    // The killed run's lock is released by the kernel: a new run may take it.
    let third = advmnist(&[
        "train",
        "--iters",
        "2",
        "--eval-every",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(!lock.exists(), "the finished run left its lock file");
}

// ---- 3. a set of outputs replaced as a set ----

/// Runs a command that must succeed; returns its stderr.
fn succeeds(args: &[&str]) -> String {
    let out = advmnist(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "advmnist {args:?} failed:\n{stderr}");
    stderr
}

#[test]
fn sweep_writes_its_three_files_as_a_set_that_a_reader_can_check() {
    use advmnist::io_safety::check_set;
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let out = dir.path().join("sweep");
    let sweep = |max: &str| {
        succeeds(&[
            "sweep",
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--levels",
            "2",
            "--max",
            max,
            "--out",
            s(&out),
        ])
    };
    sweep("0.1");
    let files = check_set(&out, "sweep").unwrap();
    let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
    assert_eq!(names, ["sweep.csv", "sweep.json", "sweep.svg"]);
    let first_csv = std::fs::read(out.join("sweep.csv")).unwrap();
    // A second run replaces the whole set (and its manifest).
    sweep("0.3");
    assert_eq!(check_set(&out, "sweep").unwrap().len(), 3);
    let second_csv = std::fs::read(out.join("sweep.csv")).unwrap();
    assert_ne!(first_csv, second_csv);
    // What a kill between two renames leaves (the first run's csv beside the second run's other
    // files) is refused by the reader, naming the file.
    std::fs::write(out.join("sweep.csv"), &first_csv).unwrap();
    let e = check_set(&out, "sweep").unwrap_err();
    assert!(e.contains("sweep.csv") && e.contains("two runs"), "{e}");
}

// ---- 7. upper limits ----

#[test]
fn levels_and_bench_batches_past_their_limits_are_refused_at_once() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let (e, took) = fails(&[
        "sweep",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--levels",
        "100000",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(e.contains("--levels") && e.contains("1000"), "{e}");
    assert!(took < FAST, "took {took:?}");
    let many: Vec<String> = (0..1001)
        .map(|k| format!("{}", k as f64 / 2002.0))
        .collect();
    let (e, _) = fails(&[
        "show",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--levels",
        &many.join(","),
        "--out",
        s(&dir.path().join("f.png")),
    ]);
    assert!(e.contains("--levels") && e.contains("1000"), "{e}");
    let (e, took) = fails(&["bench", "--batch", "100000", "--seconds", "0.1"]);
    assert!(e.contains("--batch") && e.contains("60000"), "{e}");
    assert!(took < FAST, "took {took:?}");
}

fn with_memory_limit(limit: &str, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args(args)
        .env(advmnist::limits::MEMORY_LIMIT_ENV, limit)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} ran under {limit}:\n{e}");
    (e, started.elapsed())
}

#[test]
fn work_that_needs_more_memory_than_is_available_is_refused_before_it_starts() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    // 2,000 images of a training batch need about 100 MB (50 KB each, measured).
    let out = dir.path().join("new.safetensors");
    let (e, took) = with_memory_limit(
        "50M",
        &[
            "train",
            "--batch",
            "2000",
            "--iters",
            "100000",
            "--out",
            s(&out),
        ],
    );
    assert!(
        e.contains("--batch") && e.contains("100.0 MB") && e.contains("52.4 MB"),
        "{e}"
    );
    assert!(took < FAST && !out.exists(), "took {took:?}");
    // Two attacked models' gradient signs and the working sets: 5 x 10,000 x 3,136 bytes.
    let (e, took) = with_memory_limit(
        "100M",
        &[
            "sweep",
            "--model",
            s(&model),
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--out",
            s(&dir.path().join("o")),
        ],
    );
    assert!(e.contains("--model") && e.contains("156.8 MB"), "{e}");
    assert!(took < FAST, "took {took:?}");
    let (e, _) = with_memory_limit(
        "10M",
        &[
            "show",
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--levels",
            "0.1",
            "--count",
            "1000",
            "--out",
            s(&dir.path().join("f.png")),
        ],
    );
    assert!(e.contains("--count") && e.contains("figure"), "{e}");
    // Without a limit, the figure of what /proc/meminfo says is available: a sweep attacked
    // through more models than their gradient signs fit in memory is refused too.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kb: Option<u64> = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    if let Some(kb) = available_kb {
        // Half as many again as fit, so that other processes freeing memory meanwhile cannot
        // make the request fit.
        let models = (kb * 1024 / (10_000 * 3_136) * 3 / 2 + 1) as usize;
        let mut args = vec!["sweep", "--noise", "fgsm", "--out"];
        let o = dir.path().join("o");
        args.push(s(&o));
        for _ in 0..models {
            args.extend(["--model", s(&model)]);
        }
        let (e, took) = fails(&args);
        assert!(
            e.contains("MemAvailable") && e.contains("not enough memory"),
            "{e}"
        );
        assert!(took < FAST, "took {took:?}");
    }
}

// ---- 8. messages ----

#[test]
fn a_missing_data_folder_and_a_file_as_data_are_said_as_such() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let missing = dir.path().join("no-such-folder");
    let (e, _) = fails(&["eval", "--model", s(&model), "--data", s(&missing)]);
    assert!(
        e.contains(&format!("{}: data folder not found", missing.display())),
        "{e}"
    );
    assert!(
        !e.contains("ubyte"),
        "reported as a missing file inside it: {e}"
    );
    let (e, _) = fails(&["eval", "--model", s(&model), "--data", s(&model)]);
    assert!(
        e.contains(&format!("{}: is a file, not a folder", model.display())),
        "{e}"
    );
    assert!(!e.contains("SHA256SUMS"), "{e}");
}

#[test]
fn show_count_zero_gets_a_range_message() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let (e, _) = fails(&[
        "show",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--levels",
        "0.1",
        "--count",
        "0",
        "--out",
        s(&dir.path().join("f.png")),
    ]);
    assert!(e.contains("--count must be at least 1"), "{e}");
    assert!(!e.contains("past the"), "{e}");
}

#[test]
fn negative_numbers_reach_the_range_message_in_every_command() {
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let png = dir.path().join("f.png");
    for args in [
        vec![
            "show",
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--levels",
            "0.1",
            "--count",
            "-1",
            "--out",
            s(&png),
        ],
        vec![
            "sweep",
            "--model",
            s(&model),
            "--noise",
            "fgsm",
            "--levels",
            "-3",
        ],
        vec![
            "sweep",
            "--model",
            s(&model),
            "--noise",
            "pgd",
            "--steps",
            "-3",
        ],
        vec!["gradcheck", "--model", s(&model), "--images", "-1"],
        vec!["human-study", "--out", "x.html", "--seed", "-1"],
        vec![
            "train",
            "--out",
            "m.safetensors",
            "--checkpoint-every",
            "-1",
        ],
    ] {
        let (e, _) = fails(&args);
        assert!(!e.contains("unexpected argument"), "{args:?}: {e}");
        assert!(e.contains("whole number >= 0"), "{args:?}: {e}");
    }
    // Lists of numbers: a leading negative number reaches the list's own check.
    let (e, _) = fails(&[
        "show",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--levels",
        "-0.1,0.2",
        "--out",
        s(&png),
    ]);
    assert!(e.contains("--levels must be finite numbers >= 0"), "{e}");
    let (e, _) = fails(&[
        "sweep",
        "--model",
        s(&model),
        "--noise",
        "fgsm",
        "--at",
        "-0.1,0.2",
    ]);
    assert!(e.contains("--at"), "{e}");
}

#[test]
fn a_retry_without_resume_says_an_earlier_runs_checkpoint_exists_and_what_to_do() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m.safetensors");
    let checkpoint = dir.path().join("m.safetensors.ckpt");
    let mut first = Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args([
            "--threads",
            "1",
            "train",
            "--iters",
            "100000",
            "--eval-every",
            "0",
        ])
        .args(["--checkpoint-every", "1", "--out", s(&out)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !checkpoint.exists() && started.elapsed() < FAST {
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(checkpoint.exists(), "the killed run left no checkpoint");
    let before = std::fs::read(&checkpoint).unwrap();
    let (e, took) = fails(&["train", "--iters", "100000", "--out", s(&out)]);
    assert!(
        e.contains(s(&checkpoint)) && e.contains("earlier run"),
        "{e}"
    );
    assert!(e.contains("--resume") && e.contains("delete"), "{e}");
    assert!(!e.contains("not an advmnist training checkpoint"), "{e}");
    assert!(took < FAST, "took {took:?}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before);
}

#[test]
fn finite_weights_so_large_that_the_logits_overflow_get_a_warning() {
    use advmnist::models::file::{load_model, save_model};
    let dir = TempDir::new().unwrap();
    let model = model_in(dir.path());
    let (mut net, meta) = load_model(&model).unwrap();
    for mut p in net.parameters_mut() {
        p.data.fill(1e30);
    }
    let absurd = dir.path().join("absurd.safetensors");
    save_model(&absurd, &net, &meta).unwrap();
    let png = dir.path().join("f.png");
    let sweep_out = dir.path().join("o");
    let commands = |m: &Path| -> Vec<Vec<String>> {
        let m = s(m).to_string();
        [
            vec!["eval", "--model", &m],
            vec![
                "sweep",
                "--model",
                &m,
                "--noise",
                "fgsm",
                "--levels",
                "2",
                "--out",
                s(&sweep_out),
            ],
            vec![
                "show",
                "--model",
                &m,
                "--noise",
                "fgsm",
                "--levels",
                "0.1",
                "--out",
                s(&png),
            ],
        ]
        .iter()
        .map(|a| a.iter().map(|x| x.to_string()).collect())
        .collect()
    };
    for args in commands(&absurd) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The warning comes before the work; the work may then also fail (a gradient sign of
        // NaN makes no valid perturbed image), but never without a word.
        let e = String::from_utf8_lossy(&advmnist(&args).stderr).into_owned();
        assert!(
            e.contains("warning") && e.contains("absurd.safetensors") && e.contains("overflow"),
            "{args:?}: {e}"
        );
    }
    // A sane model gets no such warning.
    for args in commands(&model) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = succeeds(&args);
        assert!(!e.contains("overflow"), "{args:?}: {e}");
    }
}
