//! The human study: the page in a real browser, answered by key presses and clicks,
//! reloaded midway, its downloaded results accepted by `human-report`; subject sets and images;
//! the checks on results files; and the statistics against hand-computed values.
//!
//! The browser is Debian's `chromium` (`.ci/run` installs it), driven headless through the
//! Chrome DevTools Protocol over a websocket (`tungstenite`): real `Input.dispatchKeyEvent` and
//! `Input.dispatchMouseEvent` events, `Page.reload`, and a real download into a folder
//! (`Browser.setDownloadBehavior`). Without chromium the browser test fails under CI (the
//! variable CI is set) and is skipped with a printed reason otherwise.
//!
//! Models are tiny (300 iterations, about 97% accurate), trained once through the CLI.

use crate::browser::{chromium_binary, Browser};
use crate::common::{advmnist, ok, s};
use advmnist::data::{default_data_dir, load_split, Dataset, Split};
use advmnist::experiments::human_study::{
    check_results, conditions, human_scores, load_results, model_scores, render_subject,
    subject_set, to_batch, weights_sha256, Answer, LoadedSubject, NamedModel, NoiseKind,
    ResultsError, StudyDesign, SubjectResults, Trial, GAUSSIAN_SIGMA, GRADIENT_SIGN_EPS,
    IMAGES_PER_SUBJECT, RESULTS_FORMAT,
};
use advmnist::models::file::load_model;
use advmnist::models::lenet::LeNet;
use advmnist::statistics::{student_t_quantile, summarise_percentages};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn test_set() -> &'static Dataset {
    static TEST: OnceLock<Dataset> = OnceLock::new();
    TEST.get_or_init(|| load_split(&default_data_dir(), Split::Test).expect("bundled MNIST"))
}

/// Three tiny LeNets (seeds 1-3, 300 iterations each), trained once per test run.
fn models() -> &'static (TempDir, Vec<PathBuf>) {
    static MODELS: OnceLock<(TempDir, Vec<PathBuf>)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let paths: Vec<PathBuf> = (1..=3)
            .map(|seed| {
                let p = dir.path().join(format!("m{seed}.safetensors"));
                ok(&[
                    "train",
                    "--iters",
                    "300",
                    "--seed",
                    &seed.to_string(),
                    "--eval-every",
                    "0",
                    "--out",
                    s(&p),
                ]);
                p
            })
            .collect();
        (dir, paths)
    })
}

fn net(k: usize) -> LeNet<f32> {
    load_model(&models().1[k]).unwrap().0
}

/// A design with a hand-made hard pool (classes' first test digits), for tests that do not
/// need the real selection.
fn design(seed: u64) -> StudyDesign {
    let labels = &test_set().labels;
    StudyDesign {
        seed,
        model_sha256: "0".repeat(64),
        hard_pool: (0..10u8)
            .map(|c| {
                (0..labels.len())
                    .filter(|&i| labels[i] == c)
                    .take(5)
                    .collect()
            })
            .collect(),
    }
}

/// The mix the study prescribes (section 4.2): 15 clean, 15 per gradient-sign and Gaussian
/// level, 10 hard digits, one per class.
fn assert_study_mix(trials: &[(NoiseKind, f64, u8, usize)]) {
    assert_eq!(trials.len(), IMAGES_PER_SUBJECT);
    let mut count: BTreeMap<(NoiseKind, String), usize> = BTreeMap::new();
    for t in trials {
        *count.entry((t.0, t.1.to_string())).or_default() += 1;
    }
    let mut want = BTreeMap::new();
    want.insert((NoiseKind::Clean, "0".to_string()), 15);
    for e in GRADIENT_SIGN_EPS {
        want.insert((NoiseKind::GradientSign, e.to_string()), 15);
    }
    for g in GAUSSIAN_SIGMA {
        want.insert((NoiseKind::Gaussian, g.to_string()), 15);
    }
    want.insert((NoiseKind::Hard, "0".to_string()), 10);
    assert_eq!(count, want, "images per (noise, level)");
    let hard_labels: HashSet<u8> = trials
        .iter()
        .filter(|t| t.0 == NoiseKind::Hard)
        .map(|t| t.2)
        .collect();
    assert_eq!(hard_labels.len(), 10, "one hard digit per class");
    let images: HashSet<usize> = trials.iter().map(|t| t.3).collect();
    assert_eq!(
        images.len(),
        IMAGES_PER_SUBJECT,
        "205 different test images"
    );
}

#[test]
fn a_subjects_set_has_the_studys_mix_and_regenerates_from_seed_and_id() {
    let d = design(7);
    let labels = &test_set().labels;
    let a = subject_set(&d, labels, 3);
    let tuples: Vec<_> = a
        .trials
        .iter()
        .map(|t| (t.noise, t.level, t.label, t.image))
        .collect();
    assert_study_mix(&tuples);
    for t in &a.trials {
        assert_eq!(t.label, labels[t.image], "true label of image {}", t.image);
        let in_pool = d.hard_pool.iter().flatten().any(|&i| i == t.image);
        assert_eq!(in_pool, t.noise == NoiseKind::Hard, "image {}", t.image);
    }
    assert_eq!(a, subject_set(&d, labels, 3), "same seed and id, same set");
    assert_ne!(
        a.trials,
        subject_set(&d, labels, 4).trials,
        "another subject"
    );
    assert_ne!(
        a.trials,
        subject_set(&design(8), labels, 3).trials,
        "another seed"
    );
    // Shuffled: the 14 conditions are not shown in blocks (which would change condition 13
    // times); a shuffle changes it at about 3 in 4 steps.
    let changes = a
        .trials
        .windows(2)
        .filter(|w| (w[0].noise, w[0].level) != (w[1].noise, w[1].level))
        .count();
    assert!(changes > 100, "{changes} changes of condition");
}

#[test]
fn images_are_the_clean_digit_within_eps_or_gaussian_and_gaussian_does_not_depend_on_the_model() {
    let test = test_set();
    let set = subject_set(&design(2), &test.labels, 1);
    let (a, b) = (net(0), net(1));
    let from_a = render_subject(&a, test, &set).unwrap();
    let from_b = render_subject(&b, test, &set).unwrap();
    let mut gradient_sign_differs = false;
    for (k, t) in set.trials.iter().enumerate() {
        let clean: Vec<u8> = test
            .images
            .index_axis(ndarray::Axis(0), t.image)
            .iter()
            .map(|&v| (v * 255.0).round() as u8)
            .collect();
        let moved = from_a[k]
            .iter()
            .zip(&clean)
            .map(|(&p, &c)| (p as i32 - c as i32).abs())
            .max()
            .unwrap();
        match t.noise {
            NoiseKind::Clean | NoiseKind::Hard => {
                assert_eq!(from_a[k], clean, "{:?} image {}", t.noise, t.image);
                assert_eq!(from_b[k], clean);
            }
            NoiseKind::GradientSign => {
                // eps in grey levels, plus half a level of rounding.
                let bound = (t.level * 255.0 + 0.5).floor() as i32;
                assert!(moved <= bound, "eps {}: moved {moved} > {bound}", t.level);
                assert!(moved >= bound - 1, "eps {}: moved only {moved}", t.level);
                gradient_sign_differs |= from_a[k] != from_b[k];
            }
            NoiseKind::Gaussian => {
                assert_eq!(
                    from_a[k], from_b[k],
                    "Gaussian noise is the model's business"
                );
                assert!(moved > 0);
            }
        }
    }
    assert!(
        gradient_sign_differs,
        "each model's own gradient makes its own images"
    );
    assert_eq!(
        from_a,
        render_subject(&a, test, &set).unwrap(),
        "deterministic"
    );
}

/// Results for `set` with the answers `answer(k, trial)`.
fn results_for(d: &StudyDesign, subject: u32, answer: impl Fn(usize, &Trial) -> i64) -> String {
    let set = subject_set(d, &test_set().labels, subject);
    let r = SubjectResults {
        format: RESULTS_FORMAT.into(),
        study_id: d.id(),
        study: d.clone(),
        subject,
        answers: set
            .trials
            .iter()
            .enumerate()
            .map(|(k, t)| Answer {
                image: t.image,
                noise: t.noise,
                level: t.level,
                label: t.label,
                answer: answer(k, t),
                response_ms: 500.0 + k as f64,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&r).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load_error(paths: &[PathBuf]) -> String {
    match load_results(paths, &test_set().labels) {
        Ok(_) => panic!("{paths:?} should have been refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_results_files_are_refused_with_the_file_and_the_fault() {
    let dir = TempDir::new().unwrap();
    let d = design(5);
    let good = results_for(&d, 1, |_, t| t.label as i64);
    let good_path = write(dir.path(), "s1.json", &good);
    assert!(load_results(std::slice::from_ref(&good_path), &test_set().labels).is_ok());

    let e = load_error(&[write(dir.path(), "cut.json", &good[..good.len() / 2])]);
    assert!(
        e.contains("cut.json") && e.contains("not a results file"),
        "{e}"
    );

    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["answers"][4]["answer"] = json!(10);
    let e = load_error(&[write(dir.path(), "ten.json", &v.to_string())]);
    assert!(
        e.contains("ten.json") && e.contains("answer 5") && e.contains("10 is not a digit 0-9"),
        "{e}"
    );

    let mut v: Value = serde_json::from_str(&good).unwrap();
    // An image no subject-1 set holds: one from the hard pool of another class than drawn.
    let set = subject_set(&d, &test_set().labels, 1);
    let stranger = (0..10_000)
        .find(|i| !set.trials.iter().any(|t| t.image == *i))
        .unwrap();
    v["answers"][0]["image"] = json!(stranger);
    let e = load_error(&[write(dir.path(), "stranger.json", &v.to_string())]);
    assert!(
        e.contains("stranger.json")
            && e.contains(&format!(
                "image {stranger} is not one of subject 1's images"
            )),
        "{e}"
    );

    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["answers"][2]["label"] = json!((set.trials[2].label + 1) % 10);
    let e = load_error(&[write(dir.path(), "label.json", &v.to_string())]);
    assert!(e.contains("label.json") && e.contains("has label"), "{e}");

    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["answers"].as_array_mut().unwrap().pop();
    let e = load_error(&[write(dir.path(), "short.json", &v.to_string())]);
    assert!(e.contains("short.json") && e.contains("204 answers"), "{e}");

    let again = write(dir.path(), "again.json", &good);
    let e = load_error(&[good_path.clone(), again]);
    assert!(
        e.contains("again.json") && e.contains("subject 1 again") && e.contains("s1.json"),
        "{e}"
    );

    let other = write(
        dir.path(),
        "other.json",
        &results_for(&design(6), 2, |_, _| 0),
    );
    let e = load_error(&[good_path, other]);
    assert!(
        e.contains("other.json") && e.contains("another study"),
        "{e}"
    );

    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["study"]["seed"] = json!(99);
    let e = load_error(&[write(dir.path(), "edited.json", &v.to_string())]);
    assert!(e.contains("edited.json") && e.contains("study_id"), "{e}");

    let r = check_results(Path::new("x.json"), "{}", &test_set().labels);
    assert!(matches!(r, Err(ResultsError::Malformed { .. })));
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-6, "{what}: got {got}, want {want}");
}

#[test]
fn statistics_match_hand_computed_values_on_synthetic_subjects() {
    // Three subjects whose clean accuracies are 15/15, 12/15 and 9/15 = 100, 80, 60 %:
    // mean 80; SD (n - 1) = sqrt((20^2 + 0 + 20^2) / 2) = 20;
    // 95% CI (statistics::summarise_percentages), on the proportion scale: p = 0.8, variance of
    // the mean v = 0.2^2 / 3, effective trials p (1 - p) / v = 12, shrunk for 2 df to
    // 12 (t(0.975, 44) / t(0.975, 2))^2 = 2.63 < 45 images, so the cap does not bind and
    // Wilson's w = z^2 / n_df = t(0.975, 2)^2 v / (p (1 - p)) = 18.512821 * 0.013333 / 0.16
    // = 1.542735 (t(0.975, 2) = 4.302653 from R's qt); the interval
    // (p + w / 2 -+ sqrt(w p (1 - p) + w^2 / 4)) / (1 + w) = [0.257143, 0.978824]: 25.71 to
    // 97.88 %, where Student's t on the percentages gave 80 -+ 49.68, up to 129.68.
    // At gradient sign eps 0.07 they get 0, 15 and 15 of 15 right: mean 66.667, SD 57.735.
    let d = design(11);
    let dir = TempDir::new().unwrap();
    let right_clean = [15, 12, 9];
    let right_eps007 = [0, 15, 15];
    let paths: Vec<PathBuf> = (0..3)
        .map(|k| {
            let set = subject_set(&d, &test_set().labels, k as u32 + 1);
            let mut seen_clean = 0;
            let mut seen_eps = 0;
            let answers: Vec<i64> = set
                .trials
                .iter()
                .map(|t| {
                    let wrong = (t.label as i64 + 1) % 10;
                    match (t.noise, t.level) {
                        (NoiseKind::Clean, _) => {
                            seen_clean += 1;
                            if seen_clean <= right_clean[k] {
                                t.label as i64
                            } else {
                                wrong
                            }
                        }
                        (NoiseKind::GradientSign, 0.07) => {
                            seen_eps += 1;
                            if seen_eps <= right_eps007[k] {
                                t.label as i64
                            } else {
                                wrong
                            }
                        }
                        _ => t.label as i64,
                    }
                })
                .collect();
            let text = results_for(&d, k as u32 + 1, |i, _| answers[i]);
            write(dir.path(), &format!("s{}.json", k + 1), &text)
        })
        .collect();
    let subjects: Vec<LoadedSubject> = load_results(&paths, &test_set().labels).unwrap();
    let scores = human_scores(&subjects);
    assert_eq!(scores.len(), conditions().len());
    let clean = &scores[0].1;
    assert_eq!(
        clean.members.iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![100.0, 80.0, 60.0]
    );
    close(clean.summary.mean, 80.0, "mean");
    close(clean.summary.sd.unwrap(), 20.0, "sd");
    close(clean.summary.ci95_low.unwrap(), 25.714_286, "ci low");
    close(clean.summary.ci95_high.unwrap(), 97.882_353, "ci high");
    // The summary carries each subject's accuracy and images.
    assert_eq!(clean.summary.values, vec![100.0, 80.0, 60.0]);
    assert_eq!(clean.summary.trials, vec![15, 15, 15]);
    let eps = &scores[1].1;
    assert_eq!(scores[1].0.level, 0.07);
    close(eps.summary.mean, 200.0 / 3.0, "eps mean");
    close(eps.summary.sd.unwrap(), 57.735_027, "eps sd");
    // Everything else was answered right by everyone: SD 0, and the interval is the pooled
    // 45 images' Wilson interval at p = 1, [45 / (45 + z^2), 1] with z = t(0.975, 44)
    // = 2.015367574 (R's qt): 91.72 to 100 %, not a single point.
    let gauss = &scores[7].1;
    assert_eq!((gauss.summary.mean, gauss.summary.sd), (100.0, Some(0.0)));
    close(
        gauss.summary.ci95_low.unwrap(),
        100.0 * 45.0 / (45.0 + 2.015_367_574_f64.powi(2)),
        "ci low, all right",
    );
    assert_eq!(gauss.summary.ci95_high, Some(100.0));
    // Mean response time: subject files give 500 + position ms, the same for all three.
    assert!(scores[0].2 > 500.0 && scores[0].2 < 705.0);

    // Two values 0 and 100 (of 15 images each): mean 50, SD 70.710678. On the proportion
    // scale v = 0.707107^2 / 2 = 0.25 = p (1 - p): one effective trial, under the 30 images, so
    // w = t(0.975, 1)^2 v / (p (1 - p)) = 161.447 and the interval
    // (0.5 + w / 2 -+ sqrt(w / 4 + w^2 / 4)) / (1 + w) is 0.15 to 99.85 %, where Student's t
    // reached from -585.31 to 685.31.
    let two = summarise_percentages(&[0.0, 100.0], &[15, 15]);
    close(two.sd.unwrap(), 70.710_678, "sd of two");
    let w = student_t_quantile(0.975, 1.0).powi(2);
    let half = (w / 4.0 + w * w / 4.0).sqrt() / (1.0 + w);
    close(
        two.ci95_low.unwrap(),
        100.0 * (0.5 - half),
        "ci of two, low",
    );
    close(
        two.ci95_high.unwrap(),
        100.0 * (0.5 + half),
        "ci of two, high",
    );
    assert!(two.ci95_low.unwrap() > 0.1 && two.ci95_high.unwrap() < 99.9);
    // One value: no spread, no interval.
    let one = summarise_percentages(&[42.0], &[15]);
    assert_eq!((one.mean, one.sd, one.ci95_low), (42.0, None, None));
}

#[test]
fn model_scores_are_each_models_accuracy_on_white_box_and_on_the_subjects_images() {
    let test = test_set();
    let d = design(4);
    let sets = vec![
        subject_set(&d, &test.labels, 1),
        subject_set(&d, &test.labels, 2),
    ];
    let (a, b) = (net(0), net(1));
    let models = [
        NamedModel {
            name: "a".into(),
            model: &a,
        },
        NamedModel {
            name: "b".into(),
            model: &b,
        },
    ];
    let scores = model_scores(&models, &a, test, &sets, |_, _| {}).unwrap();
    // By hand for model b at eps 0.40: white-box on images made with b's gradient, transfer on
    // the images made with a's, each over the 2 x 15 images of that level.
    let count = |attacker: &LeNet<f32>| {
        let mut right = 0;
        for set in &sets {
            let images = render_subject(attacker, test, set).unwrap();
            let predicted = b.predict(to_batch(&images).view());
            for (t, p) in set.trials.iter().zip(predicted) {
                if t.noise == NoiseKind::GradientSign && t.level == 0.40 {
                    right += (p == t.label) as usize;
                }
            }
        }
        100.0 * right as f64 / 30.0
    };
    let (condition, white, transfer) = &scores[6];
    assert_eq!(
        (condition.noise, condition.level),
        (NoiseKind::GradientSign, 0.40)
    );
    assert_eq!(white.members[1], ("b".to_string(), count(&b), 30));
    assert_eq!(transfer.members[1], ("b".to_string(), count(&a), 30));
    // For the source itself, white-box and transfer are the same images.
    assert_eq!(white.members[0], transfer.members[0]);
    // White-box gradient sign at eps 0.40 fools a tiny LeNet nearly always; clean digits not.
    assert!(white.summary.mean < 30.0, "{:?}", white.summary);
    assert!(scores[0].1.summary.mean > 80.0, "{:?}", scores[0].1.summary);
    // Gaussian images do not depend on the model: white-box and transfer coincide.
    for (c, w, t) in &scores {
        if c.noise != NoiseKind::GradientSign {
            assert_eq!(w, t, "{c:?}");
        }
    }
}

#[test]
fn the_page_is_deterministic_and_names_its_study() {
    let (_, m) = models();
    let dir = TempDir::new().unwrap();
    let page = |name: &str, seed: &str| {
        let p = dir.path().join(name);
        ok(&[
            "human-study",
            "--model",
            s(&m[0]),
            "--reference-models",
            &format!("{},{}", s(&m[1]), s(&m[2])),
            "--subjects",
            "2",
            "--seed",
            seed,
            "--out",
            s(&p),
        ]);
        std::fs::read_to_string(p).unwrap()
    };
    let one = page("a.html", "1");
    assert_eq!(one, page("b.html", "1"), "same inputs, same bytes");
    assert_ne!(one, page("c.html", "2"));
    assert!(one.contains("image-rendering: pixelated"));
    assert!(
        !one.contains("http://") && !one.contains("https://"),
        "no network"
    );
    // The page's data names the model's weights and holds two subjects' 205 images.
    let start = one.find("id=\"study-data\">").unwrap() + "id=\"study-data\">".len();
    let end = start + one[start..].find("</script>").unwrap();
    let data: Value = serde_json::from_str(&one[start..end]).unwrap();
    assert_eq!(
        data["study"]["model_sha256"],
        json!(weights_sha256(&net(0)))
    );
    assert_eq!(data["subjects"]["2"].as_array().unwrap().len(), 205);
    assert!(data["subjects"].get("3").is_none());
}

// ---------------------------------------------------------------------------------------------
// The browser (`crate::browser`)

/// The digit answered for the image at `position` (from 0): a fixed pattern, so that the
/// downloaded file can be checked answer by answer.
fn planned_answer(position: usize) -> u8 {
    ((position * 7 + 3) % 10) as u8
}

/// The digit's smaller side in CSS pixels, and whether all ten buttons are inside the viewport.
fn layout(b: &mut Browser) -> (f64, bool) {
    let v = b.eval(
        "(() => { const d = document.getElementById('digit').getBoundingClientRect(); \
         const w = Math.min(d.width, d.height); \
         const inside = [...document.querySelectorAll('#pad button')].every(x => { \
           const r = x.getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth && r.bottom <= innerHeight && r.width >= 40; }); \
         return [w, inside]; })()",
    );
    (v[0].as_f64().unwrap(), v[1].as_bool().unwrap())
}

#[test]
fn the_page_in_headless_chromium_answered_by_keys_and_clicks_survives_a_reload_and_human_report_accepts_it(
) {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let (_, m) = models();
    let dir = TempDir::new().unwrap();
    let page = dir.path().join("study.html");
    ok(&[
        "human-study",
        "--model",
        s(&m[0]),
        "--reference-models",
        &format!("{},{}", s(&m[1]), s(&m[2])),
        "--subjects",
        "2",
        "--seed",
        "5",
        "--out",
        s(&page),
    ]);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let shots = std::env::var_os("ADVMNIST_SCREENSHOT_DIR").map(PathBuf::from);

    let mut b = Browser::launch_saving_to(&chromium, &downloads);
    b.call(
        "Page.navigate",
        json!({"url": format!("file://{}", s(&page))}),
    );
    b.wait_for("document.readyState === 'complete' && !document.getElementById('start').hidden");
    // Headless, the window never gets the system's focus; emulate it, as a window in front has.
    b.call(
        "Emulation.setFocusEmulationEnabled",
        json!({"enabled": true}),
    );
    let focused = b.eval("document.activeElement && document.activeElement.id");
    assert_eq!(
        focused,
        json!("subject"),
        "the subject id field has the focus"
    );

    // A subject id out of range is refused; then subject 2, typed and entered by keys.
    b.press("9");
    b.press("Enter");
    b.wait_for("document.getElementById('subject-error').textContent.includes('1 to 2')");
    b.press("Backspace");
    b.press("2");
    b.press("Enter");

    let progress = |n: usize| {
        format!(
            "document.getElementById('progress').textContent === 'Image {n} of 205' && \
             document.getElementById('digit').dataset.shown === '{n}'"
        )
    };
    let mut shown_png = Vec::new();
    for position in 0..205 {
        if position == 100 {
            // Reload midway: nothing is lost, the page resumes at image 101.
            b.call("Page.reload", json!({}));
        }
        b.wait_for(&progress(position + 1));
        shown_png.push(b.eval("document.getElementById('digit').src"));
        if position == 0 {
            // Phone width, mouse alone.
            b.set_viewport(390, 844, true);
            let (w, inside) = layout(&mut b);
            assert!(
                w >= 280.0 && inside,
                "phone: digit {w} px, buttons inside {inside}"
            );
            if let Some(d) = &shots {
                b.screenshot(&d.join("human-study-phone.png"));
            }
        }
        if position == 5 {
            b.call("Emulation.clearDeviceMetricsOverride", json!({}));
            b.set_viewport(1280, 860, false);
            let (w, inside) = layout(&mut b);
            assert!(
                w >= 280.0 && inside,
                "laptop: digit {w} px, buttons inside {inside}"
            );
            if let Some(d) = &shots {
                b.screenshot(&d.join("human-study-laptop.png"));
            }
        }
        let digit = planned_answer(position);
        if position < 5 {
            b.click(&format!("#pad button[data-digit=\"{digit}\"]"));
        } else {
            b.press(&digit.to_string());
        }
    }
    // The end: the download button has the focus, Enter presses it.
    b.wait_for(
        "!document.getElementById('done').hidden && document.activeElement.id === 'download'",
    );
    assert!(
        !b.eval("document.body.innerText")
            .as_str()
            .unwrap()
            .contains("label"),
        "the page never shows the truth"
    );
    b.press("Enter");
    let file = downloads.join("advmnist-human-subject-2.json");
    let start = Instant::now();
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&file) {
            if serde_json::from_str::<Value>(&t).is_ok() {
                break t;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no download in {}",
            downloads.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(b);

    // The file: 205 answers, as pressed and clicked, in the study's mix, for the images shown.
    let r: SubjectResults = serde_json::from_str(&text).unwrap();
    assert_eq!(r.subject, 2);
    assert_eq!(r.answers.len(), 205);
    for (k, a) in r.answers.iter().enumerate() {
        assert_eq!(a.answer, planned_answer(k) as i64, "answer {}", k + 1);
        assert!(a.response_ms >= 0.0);
    }
    let mix: Vec<_> = r
        .answers
        .iter()
        .map(|a| (a.noise, a.level, a.label, a.image))
        .collect();
    assert_study_mix(&mix);
    assert_eq!(
        shown_png.iter().collect::<HashSet<_>>().len(),
        205,
        "205 different images were shown, one per position, the reload included"
    );
    // The images shown are those the library regenerates for subject 2.
    let set = subject_set(&r.study, &test_set().labels, 2);
    let images = render_subject(&net(0), test_set(), &set).unwrap();
    for k in [0, 99, 100, 204] {
        assert_eq!(r.answers[k].image, set.trials[k].image);
        let png = advmnist::report::human::png_bytes(&images[k]);
        let uri = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        );
        assert_eq!(shown_png[k], json!(uri), "image {}", k + 1);
    }

    // human-report accepts it, and the humans' accuracy is this file's.
    let out = dir.path().join("report");
    ok(&[
        "human-report",
        s(&file),
        "--models",
        &format!("{},{},{}", s(&m[0]), s(&m[1]), s(&m[2])),
        "--out",
        s(&out),
    ]);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("human.json")).unwrap()).unwrap();
    assert_eq!(report["source_model"], json!(s(&m[0])));
    for c in report["conditions"].as_array().unwrap() {
        let noise: NoiseKind = serde_json::from_value(c["noise"].clone()).unwrap();
        let level = c["level"].as_f64().unwrap();
        let mine: Vec<&Answer> = r
            .answers
            .iter()
            .filter(|a| a.noise == noise && a.level == level)
            .collect();
        let right = mine.iter().filter(|a| a.answer == a.label as i64).count();
        let want = 100.0 * right as f64 / mine.len() as f64;
        close(
            c["humans"]["summary"]["mean"].as_f64().unwrap(),
            want,
            "human accuracy",
        );
        assert_eq!(
            c["models_white_box"]["members"].as_array().unwrap().len(),
            3
        );
    }
    if let Some(d) = &shots {
        for name in ["human.md", "human.svg", "human.json"] {
            std::fs::copy(out.join(name), d.join(name)).unwrap();
        }
        std::fs::copy(&file, d.join("results.json")).unwrap();
    }
    let md = std::fs::read_to_string(out.join("human.md")).unwrap();
    assert!(md.contains("white-box") && md.contains("transfer"));
    // The interval's method is named, and each of the three models' accuracies shown beside it.
    assert!(
        md.contains(advmnist::statistics::CI95_METHOD) && md.contains("(models: "),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("human.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("gradient sign noise"));
}

#[test]
fn human_report_refuses_bad_files_from_the_command_line() {
    let dir = TempDir::new().unwrap();
    let bad = write(dir.path(), "broken.json", "{\"format\": ");
    let out = advmnist(&["human-report", s(&bad), "--models", s(&models().1[0])]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("broken.json") && e.contains("not a results file"),
        "{e}"
    );
    // Results of a study made on another model: no model given has its weights.
    let good = write(dir.path(), "s1.json", &results_for(&design(1), 1, |_, _| 0));
    let out = advmnist(&["human-report", s(&good), "--models", s(&models().1[0])]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--study-model"), "{e}");
}

#[test]
fn hard_digits_are_each_class_s_digits_the_models_most_disagree_on() {
    use advmnist::experiments::human_study::hard_digit_pool;
    use advmnist::models::Classifier;
    let test = test_set();
    let nets = [net(0), net(1), net(2)];
    let voters: Vec<&dyn Classifier> = nets.iter().map(|n| n as &dyn Classifier).collect();
    let pool = hard_digit_pool(&voters, test, 5);
    // Disagreement by hand: 1 - (votes of the most voted class) / 3.
    let predictions: Vec<Vec<u8>> = nets.iter().map(|n| n.predict(test.images.view())).collect();
    let disagreement = |i: usize| {
        let mut votes = [0; 10];
        for p in &predictions {
            votes[p[i] as usize] += 1;
        }
        1.0 - *votes.iter().max().unwrap() as f64 / 3.0
    };
    assert_eq!(pool.len(), 10);
    for (class, members) in pool.iter().enumerate() {
        assert_eq!(members.len(), 5);
        let least_in_pool = members
            .iter()
            .map(|&i| {
                assert_eq!(test.labels[i] as usize, class, "image {i}");
                disagreement(i)
            })
            .fold(f64::INFINITY, f64::min);
        let most_outside = (0..test.len())
            .filter(|i| test.labels[*i] as usize == class && !members.contains(i))
            .map(disagreement)
            .fold(0.0, f64::max);
        assert!(
            least_in_pool >= most_outside,
            "class {class}: pool down to {least_in_pool}, outside up to {most_outside}"
        );
    }
    // Tiny models disagree somewhere in every class.
    assert!(pool.iter().all(|m| disagreement(m[0]) > 0.0));
}

#[test]
fn reference_lenets_are_the_models_advmnist_train_makes() {
    use advmnist::experiments::human_study::train_reference_lenet;
    let data = advmnist::data::load_mnist(&default_data_dir()).unwrap();
    let mut last = 0;
    let net = train_reference_lenet(&data, 4, 40, |i| {
        assert_eq!(i, last + 1, "progress once per iteration");
        last = i;
    })
    .unwrap();
    assert_eq!(last, 40);
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("t.safetensors");
    ok(&[
        "train",
        "--seed",
        "4",
        "--iters",
        "40",
        "--eval-every",
        "0",
        "--out",
        s(&file),
    ]);
    let trained = load_model(&file).unwrap().0;
    assert_eq!(weights_sha256(&net), weights_sha256(&trained));
    assert_ne!(
        weights_sha256(&net),
        weights_sha256(&train_reference_lenet(&data, 5, 40, |_| {}).unwrap())
    );
}
