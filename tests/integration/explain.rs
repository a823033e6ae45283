//! `advmnist explain`: the page's embedded numbers against `advmnist trace`'s file and against
//! the library's attack, recomputed independently; the refusals of bad flags; the links into
//! docs/math.md; the same bytes on 1 and 2 threads; and the page in headless chromium
//! (`crate::browser`): no script errors, the slider changing the adversarial digit and the
//! prediction, values on hover, a panel saved as a PNG, every panel present at a laptop's and a
//! phone's width. With ADVMNIST_SCREENSHOT_DIR set, the browser test saves
//! `explain-laptop.png` and `explain-phone.png` there (docs/images/ holds the ones of the
//! default model).
//!
//! The model is tiny (300 iterations, about 97% accurate), trained once through the CLI; the
//! digit is test image 0, a 7 it classifies right.

use crate::browser::{chromium_binary, Browser};
use crate::common::{advmnist, err, ok, s};
use advmnist::attacks::distortion::distortion_per_pixel;
use advmnist::attacks::fgsm::fgsm;
use advmnist::data::{default_data_dir, load_split, Dataset, Split};
use advmnist::experiments::explain::attack::slider_eps;
use advmnist::experiments::explain::{BACKWARD_TENSORS, FORWARD_TENSORS};
use advmnist::models::file::load_model;
use advmnist::models::gradient::{compare_rules, GradientRule, WithGradient};
use advmnist::models::lenet::LeNet;
use advmnist::models::Classifier;
use advmnist::report::digits_png::{DIVERGING_NEGATIVE, DIVERGING_POSITIVE};
use advmnist::report::explain::{math_sections, panel_ids};
use ndarray::{Array2, Array4, ArrayView4};
use safetensors::SafeTensors;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The test image explained.
const IMAGE: usize = 0;

/// The page of the default options may be at most this large.
const MAX_PAGE_BYTES: usize = 2_000_000;

fn test_set() -> &'static Dataset {
    static TEST: OnceLock<Dataset> = OnceLock::new();
    TEST.get_or_init(|| load_split(&default_data_dir(), Split::Test).expect("bundled MNIST"))
}

/// A tiny LeNet (300 iterations), trained once per test run.
fn model() -> &'static (TempDir, PathBuf) {
    static MODEL: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("lenet.safetensors");
        ok(&[
            "train",
            "--iters",
            "300",
            "--eval-every",
            "0",
            "--out",
            s(&path),
        ]);
        (dir, path)
    })
}

fn net() -> LeNet<f32> {
    load_model(&model().1).unwrap().0
}

/// `advmnist explain` of test image `IMAGE` into `out`, with extra flags.
fn explain_page(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "explain",
        "--model",
        s(&model().1),
        "--image",
        "0",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    std::fs::read_to_string(out).unwrap()
}

/// The page's embedded data.
fn page_data(html: &str) -> Value {
    let start = html.find("id=\"explain-data\">").expect("the data element") + 18;
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).expect("the data is JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Each value of `got` (JSON numbers written from f32s) is the f32 `want[k]`, bit for bit.
fn assert_f32_bits(what: &str, got: &[f64], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let differ: Vec<(usize, f32, f32)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (&g, &w))| (g as f32).to_bits() != w.to_bits())
        .map(|(k, (&g, &w))| (k, g as f32, w))
        .take(5)
        .collect();
    assert!(differ.is_empty(), "{what}: (index, page, want) {differ:?}");
}

/// `got` within `relative` of `want`, plus `absolute` (for a loss near 0, whose f64 rounding
/// is an ulp of the logits it is computed from, about 2e-15 at a logit of 10).
fn close(what: &str, got: f64, want: f64, relative: f64, absolute: f64) {
    assert!(
        (got - want).abs() <= relative * want.abs() + absolute,
        "{what}: page {got}, recomputed {want}"
    );
}

/// The tensor `name` of a trace file, as f32 values.
fn trace_tensor(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} missing"));
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), values)
}

fn digit() -> (Array4<f32>, u8) {
    let d = test_set().subset(IMAGE..IMAGE + 1);
    (d.images, d.labels[0])
}

/// `dz_y/dx - dz_j/dx` through `LeNet::forward` and `LeNet::backward`: the margin's gradient by
/// another road than `Classifier::logits_vjp`.
fn margin_gradient_by_backward(
    net: &LeNet<f32>,
    x: ArrayView4<f32>,
    t: usize,
    j: usize,
) -> Vec<f32> {
    let (_, cache) = net.forward(x, None);
    let mut d = Array2::<f32>::zeros((1, 10));
    d[[0, t]] = 1.0;
    d[[0, j]] = -1.0;
    net.backward(d.view(), &cache, None, true)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn the_pages_numbers_are_the_traces_tensors_and_the_attacks_images() {
    let dir = TempDir::new().unwrap();
    let page = dir.path().join("page.html");
    let html = explain_page(&page, &["--compare-f32", "--threads", "2"]);
    let data = page_data(&html);
    let net = net();
    let (x, label) = digit();
    assert_eq!(data["label"], json!(label));

    // Every drawn forward and backward tensor is the trace file's, bit for bit and shape too.
    let trace = dir.path().join("trace.safetensors");
    ok(&[
        "trace",
        "--model",
        s(&model().1),
        "--image",
        "0",
        "--out",
        s(&trace),
    ]);
    let bytes = std::fs::read(&trace).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in FORWARD_TENSORS.iter().chain(&BACKWARD_TENSORS) {
        let (shape, want) = trace_tensor(&st, name);
        let map = &data["maps"][*name];
        assert_eq!(map["shape"], json!(shape), "{name}: shape");
        assert_f32_bits(name, &floats(&map["values"]), &want);
    }
    let (_, g) = trace_tensor(&st, "backward.input");
    let (_, logits) = trace_tensor(&st, "forward.logits");
    let predicted = (0..10).fold(0, |b, k| if logits[k] > logits[b] { k } else { b });
    assert_eq!(data["predicted"], json!(predicted));

    // The slider: every level is the library's FGSM image at that eps, with its logits,
    // prediction and distortion; the first orders are g . delta recomputed here.
    let levels = data["levels"].as_array().unwrap();
    let eps = slider_eps();
    assert_eq!(levels.len(), 31);
    let (_, g_lib) = net.input_gradient(x.view(), &[label]);
    let g_lib: Vec<f32> = g_lib.iter().copied().collect();
    assert_f32_bits(
        "input_gradient against the trace",
        &g_lib.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &g,
    );
    let clean_logits: Vec<f64> = floats(&levels[0]["logits"]);
    assert_f32_bits("eps 0 logits against the trace", &clean_logits, &logits);
    let t = label as usize;
    let runner_up = (0..10)
        .filter(|&k| k != t)
        .fold(None, |b: Option<usize>, k| match b {
            Some(b) if logits[k] <= logits[b] => Some(b),
            _ => Some(k),
        })
        .unwrap();
    assert_eq!(data["levels"][0]["runner_up"], json!(runner_up));
    let g_margin = margin_gradient_by_backward(&net, x.view(), t, runner_up);
    assert_f32_bits(
        "margin gradient",
        &floats(&data["maps"]["attack.margin_gradient"]["values"]),
        &g_margin,
    );
    let clean: Vec<f32> = x.iter().copied().collect();
    let (mut clean_loss, mut clean_margin) = (0.0, 0.0);
    let mut margin_held_for = 0;
    for (k, level) in levels.iter().enumerate() {
        let what = format!("eps {}", eps[k]);
        assert_eq!(level["eps"].as_f64().unwrap() as f32, eps[k], "{what}");
        let want = fgsm(&net, x.view(), &[label], eps[k]);
        let image: Vec<f32> = want.iter().copied().collect();
        assert_f32_bits(&format!("{what}: image"), &floats(&level["image"]), &image);
        let z = net.logits(want.view());
        let z: Vec<f32> = z.iter().copied().collect();
        assert_f32_bits(&format!("{what}: logits"), &floats(&level["logits"]), &z);
        assert_eq!(
            level["predicted"],
            json!(net.predict(want.view())[0]),
            "{what}"
        );
        close(
            &format!("{what}: distortion"),
            level["distortion"].as_f64().unwrap(),
            distortion_per_pixel(x.view(), want.view()),
            1e-15,
            0.0,
        );
        // The loss and the margin, in f64 from the f32 logits.
        let zf: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let max = zf.iter().cloned().fold(f64::MIN, f64::max);
        let loss = max + zf.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - zf[t];
        let margin = zf[t]
            - (0..10)
                .filter(|&j| j != t)
                .map(|j| zf[j])
                .fold(f64::MIN, f64::max);
        if k == 0 {
            (clean_loss, clean_margin) = (loss, margin);
        }
        close(
            &format!("{what}: loss"),
            level["loss"].as_f64().unwrap(),
            loss,
            1e-12,
            1e-13,
        );
        close(
            &format!("{what}: margin"),
            level["margin"].as_f64().unwrap(),
            margin,
            1e-15,
            0.0,
        );
        let delta: Vec<f64> = image
            .iter()
            .zip(&clean)
            .map(|(&a, &c)| a as f64 - c as f64)
            .collect();
        let loss_first_order: f64 = g_lib.iter().zip(&delta).map(|(&g, &d)| g as f64 * d).sum();
        let margin_first_order: f64 = g_margin
            .iter()
            .zip(&delta)
            .map(|(&g, &d)| g as f64 * d)
            .sum();
        close(
            &format!("{what}: g . delta"),
            level["loss_first_order"].as_f64().unwrap(),
            loss_first_order,
            1e-12,
            0.0,
        );
        close(
            &format!("{what}: (dm/dx) . delta"),
            level["margin_first_order"].as_f64().unwrap(),
            margin_first_order,
            1e-12,
            0.0,
        );
        close(
            &format!("{what}: L(x') - L(x)"),
            level["loss_change"].as_f64().unwrap(),
            loss - clean_loss,
            1e-12,
            2e-13,
        );
        close(
            &format!("{what}: m(x') - m(x)"),
            level["margin_change"].as_f64().unwrap(),
            margin - clean_margin,
            1e-15,
            0.0,
        );
        // delta has the sign of g wherever it is not 0, so the loss's first order never falls.
        assert!(
            loss_first_order >= 0.0,
            "{what}: g . delta = {loss_first_order}"
        );
        // Pixel fates add up to the image.
        let f = &level["pixels"];
        let total: u64 = [
            "full_step",
            "clipped_partway",
            "clipped_away",
            "zero_gradient",
        ]
        .iter()
        .map(|n| f[n].as_u64().unwrap())
        .sum();
        assert_eq!(total, 784, "{what}");
        // What the page is for. The margin is piecewise linear in the logits, so its first
        // order is off only by what changes on the way (ReLUs, max-pool winners); the loss of a
        // confident digit is about exp(-m) of a falling margin, convex, so its first order
        // misses more at every step, and by far once the digit is fooled.
        if k > 0 {
            let relative = |change: f64, first: f64| (change - first).abs() / first.abs();
            let loss_error = relative(loss - clean_loss, loss_first_order);
            let margin_error = relative(margin - clean_margin, margin_first_order);
            assert!(
                loss_error > margin_error,
                "{what}: the loss's first order is off by {loss_error}, the margin's by {margin_error}"
            );
            if margin_error <= 0.1 {
                margin_held_for = k;
            }
        }
    }
    assert!(
        margin_held_for >= 1,
        "the margin's first order was within 10% at no eps"
    );
    let last = &levels[30];
    let (change, first) = (
        last["loss_change"].as_f64().unwrap(),
        last["loss_first_order"].as_f64().unwrap(),
    );
    assert!(
        change > 10.0 * first,
        "at eps 0.3 the loss rose by {change}, its first order said {first}"
    );

    // --compare-f32: Caffe's gradient is `WithGradient`'s, and the differing signs are
    // `compare_rules`' count.
    let caffe = WithGradient {
        classifier: &net,
        rule: GradientRule::CaffeF32,
    }
    .input_gradient(x.view(), &[label])
    .1;
    let caffe: Vec<f32> = caffe.iter().copied().collect();
    assert_f32_bits(
        "caffe gradient",
        &floats(&data["maps"]["rules.caffe"]["values"]),
        &caffe,
    );
    let differs = floats(&data["maps"]["rules.sign_differs"]["values"]);
    let counted = compare_rules(&net, x.view(), &[label]).pixels_sign_differs;
    assert_eq!(differs.iter().filter(|&&d| d == 1.0).count(), counted);
    assert!(html.contains(&format!("The signs of <strong>{counted} of 784</strong>")));

    // The default page is small enough; the same bytes on 1 thread as on 2.
    let default = explain_page(&dir.path().join("default.html"), &["--threads", "2"]);
    assert!(
        default.len() <= MAX_PAGE_BYTES && html.len() <= MAX_PAGE_BYTES,
        "{} and {} bytes",
        default.len(),
        html.len()
    );
    let one = explain_page(&dir.path().join("one.html"), &["--threads", "1"]);
    assert!(one == default, "the page differs between 1 and 2 threads");
    assert!(!default.contains("id=\"compare-f32\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation but `-` and `_` dropped,
/// spaces as `-`, and `-1`, `-2`, ... after repeats.
fn github_anchors(markdown: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut anchors = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = seen.iter().filter(|s| **s == slug).count();
        seen.push(slug.clone());
        anchors.push(if repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
    }
    anchors
}

#[test]
fn every_link_of_the_page_names_a_heading_of_math_md() {
    let math =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/math.md")).unwrap();
    let anchors = github_anchors(&math);
    assert!(
        anchors.contains(&"7-convolution-im2col".to_string()),
        "{anchors:?}"
    );
    for section in math_sections() {
        assert!(
            anchors.iter().any(|a| a == section),
            "math.md has no heading #{section}"
        );
    }
    // And every link the page really holds, every one relative.
    let dir = TempDir::new().unwrap();
    let html = explain_page(&dir.path().join("p.html"), &["--compare-f32"]);
    let mut links = 0;
    for part in html.split("href=\"").skip(1) {
        let href = &part[..part.find('"').unwrap()];
        if let Some(id) = href.strip_prefix('#') {
            assert!(html.contains(&format!("id=\"{id}\"")), "no element #{id}");
            continue;
        }
        let section = href
            .strip_prefix("../docs/math.md#")
            .unwrap_or_else(|| panic!("a link that is not to docs/math.md: {href}"));
        assert!(anchors.iter().any(|a| a == section), "{href}");
        links += 1;
    }
    assert!(links >= 20, "{links} links");
}

#[test]
fn bad_input_is_refused_by_name_before_any_work() {
    let dir = TempDir::new().unwrap();
    let m = &model().1;
    let out = dir.path().join("page.html");
    let run = |model: &Path, image: &str, out: &Path| {
        err(&[
            "explain",
            "--model",
            s(model),
            "--image",
            image,
            "--out",
            s(out),
        ])
    };
    // Past the bundled test set, and past any test set.
    let e = run(m, "10000", &out);
    assert!(e.contains("--image 10000 is out of range"), "{e}");
    let e = run(m, "1000000", &out);
    assert!(
        e.contains("--image") && e.contains("too large (at most 999999)"),
        "{e}"
    );
    // Files that are not a LeNet: the labels file, and a trace.
    let labels = default_data_dir().join("t10k-labels-idx1-ubyte.gz");
    let e = run(&labels, "0", &out);
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("not a readable safetensors file"),
        "{e}"
    );
    let trace = dir.path().join("trace.safetensors");
    ok(&["trace", "--model", s(m), "--image", "0", "--out", s(&trace)]);
    let e = run(&trace, "0", &out);
    assert!(
        e.contains("trace.safetensors") && e.contains("dtype I64"),
        "{e}"
    );
    // The page cannot go to a missing folder, onto a folder, or over the model.
    let e = run(m, "0", &dir.path().join("no/such/page.html"));
    assert!(e.contains("--out") && e.contains("does not exist"), "{e}");
    let e = run(m, "0", dir.path());
    assert!(e.contains("--out") && e.contains("is a folder"), "{e}");
    let e = run(m, "0", m);
    assert!(e.contains("--out") && e.contains("--model"), "{e}");
    assert!(!out.exists(), "no page was written");
    // A missing flag.
    let o = advmnist(&["explain", "--model", s(m), "--out", s(&out)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--image"));
}

/// Whether every panel is on the page, drawn, and within the viewport's width, and the page
/// scrolls no wider than the viewport: `[missing or bad panels, page width, viewport width]`.
fn check_panels(b: &mut Browser) -> Value {
    let ids = serde_json::to_string(&panel_ids()).unwrap();
    b.eval(&format!(
        "(() => {{ const bad = []; for (const id of {ids}) {{ \
           const f = document.getElementById(id); const c = f && f.querySelector('canvas'); \
           if (!c) {{ bad.push(id + ': missing'); continue; }} \
           const r = f.getBoundingClientRect(); \
           if (c.width < 100 || c.height < 50 || r.width < 100) bad.push(id + ': not drawn'); \
           if (r.left < -1 || r.right > innerWidth + 1) bad.push(id + ': outside ' + r.left + '..' + r.right); }} \
         return [bad, document.documentElement.scrollWidth, innerWidth]; }})()"
    ))
}

/// Moves the slider to level `k` by key presses: Home, then ArrowRight `k` times.
fn slide_to(b: &mut Browser, k: usize) {
    b.eval("document.getElementById('eps').focus()");
    b.press("Home");
    for _ in 0..k {
        b.press("ArrowRight");
    }
    b.wait_for(&format!(
        "document.querySelector('#panel-level-image canvas').dataset.level === '{k}'"
    ));
}

#[test]
fn the_page_in_headless_chromium_draws_every_panel_and_its_slider_moves_the_attack() {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let pages = dir.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    let page = pages.join("digit0.html");
    explain_page(&page, &["--compare-f32"]);
    let data = page_data(&std::fs::read_to_string(&page).unwrap());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let shots = std::env::var_os("ADVMNIST_SCREENSHOT_DIR").map(PathBuf::from);

    let mut b = Browser::launch_saving_to(&chromium, &downloads);
    // Every uncaught error and console.error of the page, collected from before its script.
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.__errors = []; \
            addEventListener('error', (e) => __errors.push(String(e.message))); \
            addEventListener('unhandledrejection', (e) => __errors.push(String(e.reason))); \
            const ce = console.error; console.error = (...a) => { __errors.push(a.join(' ')); ce(...a); };"}),
    );
    b.set_viewport(1280, 860, false);
    b.call(
        "Page.navigate",
        json!({"url": format!("file://{}", s(&page))}),
    );
    b.wait_for("document.readyState === 'complete' && document.body.dataset.ready === '1'");
    assert_eq!(b.eval("window.__errors"), json!([]), "script errors");

    // The sign map is drawn in `show`'s two end colours, exactly.
    let (pos, neg) = (DIVERGING_POSITIVE, DIVERGING_NEGATIVE);
    let colours = b.eval(&format!(
        "(() => {{ const c = document.querySelector('#panel-attack-sign canvas'); \
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
           const has = (r, g, b) => {{ for (let i = 0; i < d.length; i += 4) \
             if (d[i] === r && d[i + 1] === g && d[i + 2] === b) return true; return false; }}; \
           return [has({}, {}, {}), has({}, {}, {})]; }})()",
        pos.0, pos.1, pos.2, neg.0, neg.1, neg.2
    ));
    assert_eq!(colours, json!([true, true]), "sign map colours");

    // Laptop width: every panel drawn, nothing wider than the window.
    let laptop = check_panels(&mut b);
    assert_eq!(laptop[0], json!([]), "laptop: {laptop}");
    assert!(laptop[1].as_f64() <= laptop[2].as_f64(), "laptop: {laptop}");

    // The slider starts at eps 0.10; End takes it to 0.30 by a real key press.
    let state = |b: &mut Browser| {
        b.eval(
            "[document.querySelector('#panel-level-image canvas').toDataURL(), \
              document.getElementById('prediction').textContent, \
              document.getElementById('eps-value').textContent, \
              document.querySelector('#panel-level-image canvas').dataset.level]",
        )
    };
    let before = state(&mut b);
    assert_eq!(before[2], json!("0.10"));
    b.eval("document.getElementById('eps').focus()");
    b.press("End");
    b.wait_for("document.getElementById('eps-value').textContent === '0.30'");
    let after = state(&mut b);
    assert_eq!(after[3], json!("30"));
    assert_ne!(after[0], before[0], "the adversarial digit did not change");
    assert_ne!(after[1], before[1], "the prediction text did not change");
    let predicted = &data["levels"][30]["predicted"];
    assert!(
        after[1]
            .as_str()
            .unwrap()
            .starts_with(&format!("eps 0.30: predicted {predicted} (p = ")),
        "{after}"
    );
    b.press("Home");
    b.wait_for("document.getElementById('eps-value').textContent === '0.00'");
    let clean = state(&mut b);
    assert!(clean[1]
        .as_str()
        .unwrap()
        .starts_with(&format!("eps 0.00: predicted {} ", data["predicted"])));
    b.press("ArrowRight");
    b.wait_for("document.getElementById('eps-value').textContent === '0.01'");
    assert_eq!(
        b.eval("document.getElementById('loss-first-order').textContent.length > 0"),
        json!(true)
    );

    // Hovering the input gradient shows the value of the pixel under the mouse, as embedded.
    let at = b.eval(
        "(() => { const c = document.querySelector('#panel-backward-input canvas'); \
           c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect(); \
           return [r.left + r.width / 2, r.top + r.height / 2]; })()",
    );
    b.mouse_move(at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    b.wait_for("document.querySelector('#panel-backward-input .readout').textContent !== ''");
    let readout = b.eval("document.querySelector('#panel-backward-input .readout').textContent");
    let readout = readout.as_str().unwrap();
    let (place, value) = readout.split_once(" = ").expect("name[index] = value");
    let index: Vec<usize> = place
        .trim_start_matches("backward.input[")
        .trim_end_matches(']')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(index.len(), 4, "{readout}");
    let k = index[2] * 28 + index[3];
    assert_eq!(
        value.parse::<f64>().unwrap(),
        data["maps"]["backward.input"]["values"][k]
            .as_f64()
            .unwrap(),
        "{readout}"
    );

    // "Save PNG" saves the panel's canvas.
    b.click("#panel-backward-input button.save");
    let file = downloads.join("explain-image0-backward-input.png");
    let start = Instant::now();
    let png = loop {
        if let Ok(bytes) = std::fs::read(&file) {
            if bytes.len() > 8 && bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]) {
                break bytes;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no {} in {:?}",
            file.display(),
            std::fs::read_dir(&downloads).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let size = b.eval(
        "(() => { const c = document.querySelector('#panel-backward-input canvas'); return [c.width, c.height]; })()",
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(json!([width, height]), size);

    // The laptop screenshot: the slider at eps 0.10 with the attack's pictures.
    slide_to(&mut b, 10);
    if let Some(d) = &shots {
        b.eval("document.getElementById('slider-box').scrollIntoView({block: 'start'}); window.scrollBy(0, -8)");
        b.screenshot(&d.join("explain-laptop.png"));
    }

    // Phone width: every panel drawn inside the window.
    b.set_viewport(390, 844, true);
    b.wait_for("innerWidth === 390");
    let phone = check_panels(&mut b);
    assert_eq!(phone[0], json!([]), "phone: {phone}");
    assert!(phone[1].as_f64() <= phone[2].as_f64(), "phone: {phone}");
    if let Some(d) = &shots {
        b.eval("document.getElementById('slider-box').scrollIntoView({block: 'start'})");
        b.screenshot(&d.join("explain-phone.png"));
    }
    assert_eq!(b.eval("window.__errors"), json!([]), "script errors");
}
