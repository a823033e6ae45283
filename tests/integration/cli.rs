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

// ---- count flags have upper limits, numbers past their type are too large, a closed pipe
// ends a command quietly ----

/// The commands (`["train"]`, `["dae", "train"]`, ...), from the `Commands:` sections of the
/// help texts, so that a command added later is walked too.
fn commands(path: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = String::from_utf8(ok(&args).stdout).unwrap();
    let Some((_, listed)) = help.split_once("Commands:\n") else {
        return vec![path.to_vec()];
    };
    let mut found = Vec::new();
    for line in listed.lines().take_while(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap();
        if name != "help" {
            let mut sub = path.to_vec();
            sub.push(name.to_string());
            found.extend(commands(&sub));
        }
    }
    found
}

/// Each option of a command's `--help` and its description: an option line (`      --eot <K>`,
/// `  -h, --help`) is followed by its description, indented further.
fn options(help: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        let flag = text
            .strip_prefix("--")
            .or_else(|| text.split_once(", --").map(|(_, f)| f));
        match flag {
            Some(flag) if indent <= 6 => {
                let name = flag.split([' ', '=']).next().unwrap();
                found.push((name.to_string(), String::new()));
            }
            _ => {
                if let Some((_, description)) = found.last_mut() {
                    description.push(' ');
                    description.push_str(text);
                }
            }
        }
    }
    found
}

/// The limit a description states as "at most N" (N with thousands commas).
fn stated_limit(description: &str) -> Option<u64> {
    let description = description.to_lowercase();
    let (_, rest) = description.split_once("at most ")?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Runs a command that must fail, quickly and without a panic; returns its stderr.
fn refused(args: &[&str]) -> String {
    let started = std::time::Instant::now();
    let e = err(args);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{args:?} took {:?}: the work started",
        started.elapsed()
    );
    assert!(!e.contains("panicked"), "{args:?}: {e}");
    e
}

/// Every count flag of every command states its limit in its help ("at most N"), and the
/// command refuses one more, naming the flag and the limit, before any work; the limit itself
/// gets past the parser (the flag after it is the one refused). Counts whose limit was checked
/// with its own message before limits were checked when parsing keep that message.
#[test]
fn every_count_flag_refuses_one_past_its_limit_by_name_before_any_work() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    // Flags whose limit is checked after parsing, with the arguments the command needs to get
    // that far, and the message's words.
    let after_parsing = |command: &str, flag: &str| -> Option<(Vec<&str>, &str)> {
        match (command, flag) {
            ("reproduce", "seeds") => {
                Some((vec!["--out", s(&out)], "--seeds must be between 1 and 20"))
            }
            _ => None,
        }
    };
    let mut checked = Vec::new();
    for path in commands(&[]) {
        let command = path.join(" ");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = String::from_utf8(ok(&args).stdout).unwrap();
        for (flag, description) in options(&help) {
            let Some(limit) = stated_limit(&description) else {
                continue;
            };
            let long = format!("--{flag}");
            let past = (limit + 1).to_string();
            let mut argv: Vec<&str> = path.iter().map(String::as_str).collect();
            argv.extend([long.as_str(), past.as_str()]);
            let e = match after_parsing(&command, &flag) {
                Some((needed, words)) => {
                    argv.extend(needed);
                    let e = refused(&argv);
                    assert!(e.contains(words), "{argv:?}: {e}");
                    e
                }
                None => {
                    let e = refused(&argv);
                    assert!(
                        e.contains(&format!("too large (at most {limit})")),
                        "{argv:?}: {e}"
                    );
                    e
                }
            };
            assert!(e.contains(&long), "{argv:?}: {e}");
            // The limit itself is a valid value: the flag after it is what is refused.
            let limit = limit.to_string();
            let mut argv: Vec<&str> = path.iter().map(String::as_str).collect();
            argv.extend([long.as_str(), limit.as_str(), "--no-such-flag"]);
            let e = refused(&argv);
            assert!(
                e.contains("unexpected argument '--no-such-flag'"),
                "{argv:?}: {e}"
            );
            checked.push(format!("{command} {long}"));
        }
    }
    // Every count flag of every command (seeds are not counts).
    let counts = [
        "train --iters",
        "train --checkpoint-every",
        "train --eval-every",
        "dae train --iters",
        "dae train --checkpoint-every",
        "dae train --eval-every",
        "advtrain --stages",
        "advtrain --stage-iters",
        "advtrain --base-iters",
        "advtrain --checkpoint-every",
        "advtrain --iterations",
        "advtrain --eval-every",
        "advtrain --refresh-every",
        "advtrain-report --test-images",
        "advtrain-report --pgd-images",
        "advtrain-report --levels",
        "advtrain-report --steps",
        "eval --eot",
        "sweep --eot",
        "sweep --steps",
        "sweep --restarts",
        "sweep --queries",
        "evaluate --eot",
        "evaluate --images",
        "evaluate --iterations",
        "evaluate --restarts",
        "evaluate --targets",
        "evaluate --queries",
        "evaluate --steps",
        "evaluate --stronger-restarts",
        "show --eot",
        "show --count",
        "show --first",
        "trace --image",
        "explain --image",
        "gradcheck --images",
        "gradcheck --first",
        "gradcheck --params",
        "human-study --subjects",
        "reproduce --seeds",
    ];
    for flag in counts {
        assert!(
            checked.iter().any(|c| c == flag),
            "{flag} was not walked: {checked:?}"
        );
    }
    assert_eq!(checked.len(), counts.len(), "{checked:?}");

    // The limits that depend on the data or the machine, stated in their help in other words,
    // refuse as they did: by name, with the limit, before any work.
    let model = dir.path().join("m.safetensors");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (4 * cores + 1).to_string();
    for (argv, words) in [
        (
            vec!["train", "--batch", "60001", "--out", s(&out)],
            "--batch 60001 is larger than the training set (60000 images): use at most 60000",
        ),
        (
            vec!["dae", "train", "--batch", "60001", "--out", s(&out)],
            "--batch 60001 is larger than the training set (60000 images): use at most 60000",
        ),
        (
            vec!["--threads", &threads, "bench"],
            "more than four per core",
        ),
        (
            vec!["bench", "--batch", "60001"],
            "--batch must be from 1 to 60000",
        ),
        (
            vec![
                "sweep",
                "--noise",
                "fgsm",
                "--model",
                s(&model),
                "--levels",
                "1001",
            ],
            "--levels must be from 2 (0 and --max) to 1000",
        ),
    ] {
        let e = refused(&argv);
        assert!(e.contains(words), "{argv:?}: {e}");
    }
    assert!(!out.exists(), "a refused command wrote its output");
}

#[test]
fn a_number_past_its_type_is_too_large_and_a_negative_one_not_a_whole_number() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m.safetensors");
    let e = refused(&["train", "--seed", "18446744073709551616", "--out", s(&out)]);
    assert!(
        e.contains("--seed") && e.contains("too large (at most 18446744073709551615)"),
        "{e}"
    );
    let e = refused(&["--threads", "99999999999999999999999", "bench"]);
    assert!(
        e.contains("--threads") && e.contains("too large (at most 18446744073709551615)"),
        "{e}"
    );
    let e = refused(&["human-study", "--subjects", "4294967296", "--out", s(&out)]);
    assert!(
        e.contains("--subjects") && e.contains("too large (at most 1000)"),
        "{e}"
    );
    for bad in ["-1", "1e3", "many"] {
        let e = refused(&["train", "--seed", bad, "--out", s(&out)]);
        assert!(
            e.contains(&format!("expected a whole number >= 0, got {bad}")),
            "{bad}: {e}"
        );
    }
    assert!(!out.exists());
}

/// Runs `advmnist ARGS` with its standard output a pipe nobody reads (closed before the
/// command starts); returns how it ended and its stderr.
#[cfg(unix)]
fn with_no_reader(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut ends = [0; 2];
    // SAFETY: pipe fills the two descriptors it creates; the read end is closed at once, and
    // the write end is owned by the child's Stdio from here on.
    let write_end = unsafe {
        assert_eq!(libc::pipe(ends.as_mut_ptr()), 0, "pipe");
        libc::close(ends[0]);
        OwnedFd::from_raw_fd(ends[1])
    };
    let out = Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args(args)
        .env_remove("RAYON_NUM_THREADS")
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::from(write_end))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `advmnist reproduce --out run --list-jobs | head -5` and the like: a command whose reader
/// goes away ends at its next write, quietly (SIGPIPE's default action), not with a panic and
/// its backtrace.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new().unwrap();
    let model = dir.path().join("m.safetensors");
    ok(&[
        "train",
        "--iters",
        "2",
        "--eval-every",
        "0",
        "--out",
        s(&model),
    ]);
    let run = dir.path().join("run");
    for args in [
        vec!["reproduce", "--out", s(&run), "--quick", "--list-jobs"],
        vec!["--help"],
        vec!["eval", "--model", s(&model), "--json"],
    ] {
        let (status, stderr) = with_no_reader(&args);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr, "", "{args:?} said something");
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?} ended with {status:?}"
        );
    }
}
