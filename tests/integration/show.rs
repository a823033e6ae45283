//! The `show` figure: a PNG of the expected size is written, rendering is deterministic, and bad
//! configurations are refused with an error naming the problem, before anything is written.
//!
//! Random (Xavier) weights are enough: the tests check the file, not the model's accuracy.

use advmnist::attacks::Noise as ShowNoise;
use advmnist::data::{default_data_dir, load_split, Dataset, Split};
use advmnist::experiments::perturbed_digits::{perturbed_digits, ShowConfig, ShowError};
use advmnist::models::lenet::LeNet;
use advmnist::report::digits_png::{figure_size, render_show_png};
use advmnist::rng::{stream, Purpose};
use std::path::Path;
use std::sync::OnceLock;
use tempfile::TempDir;

/// The first 8 test digits, as the `show` command uses.
fn digits() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        load_split(&default_data_dir(), Split::Test)
            .expect("bundled MNIST loads")
            .subset(0..8)
    })
}

fn model() -> LeNet<f32> {
    LeNet::<f32>::xavier(&mut stream(1, Purpose::Init, 0))
}

fn fgsm(levels: &[f32]) -> ShowConfig {
    ShowConfig {
        noise: ShowNoise::Fgsm,
        levels: levels.to_vec(),
        seed: 0,
    }
}

fn render(cfg: &ShowConfig, path: &Path) -> Result<(), ShowError> {
    let d = digits();
    render_show_png(
        &perturbed_digits(&model(), d.images.view(), &d.labels, cfg)?,
        path,
    )
}

/// Width and height from a PNG's IHDR chunk: after the 8-byte signature come the chunk's
/// length (4 bytes) and type "IHDR" (4 bytes), then width and height as big-endian u32.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Names in `dir`, sorted: shows leftover temporary files.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_a_png_of_the_expected_size_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("fgsm.png");
    render(&fgsm(&[0.1, 0.2, 0.3]), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(png_size(&bytes), figure_size(8, 3));
    // 8 rows of 112-pixel digits cannot fit in less than 896 pixels.
    assert!(figure_size(8, 3).1 > 8 * 112);
    assert_eq!(
        files_in(dir.path()),
        vec!["fgsm.png"],
        "no temporary file left behind"
    );
}

#[test]
fn rendering_is_deterministic_and_seeded() {
    let dir = TempDir::new().unwrap();
    let read = |name: &str, cfg: &ShowConfig| {
        let path = dir.path().join(name);
        render(cfg, &path).unwrap();
        std::fs::read(path).unwrap()
    };
    let a = read("a.png", &fgsm(&[0.05, 0.25]));
    let b = read("b.png", &fgsm(&[0.05, 0.25]));
    assert!(
        a == b,
        "two FGSM renders differ ({} and {} bytes)",
        a.len(),
        b.len()
    );

    let gaussian = |seed| ShowConfig {
        noise: ShowNoise::Gaussian,
        levels: vec![0.3],
        seed,
    };
    let g1 = read("g1.png", &gaussian(7));
    let g2 = read("g2.png", &gaussian(7));
    let g3 = read("g3.png", &gaussian(8));
    assert!(g1 == g2, "two Gaussian renders with the same seed differ");
    assert!(
        g1 != g3,
        "Gaussian renders with different seeds are identical"
    );
    assert_eq!(png_size(&g1), figure_size(8, 1));
    // Re-rendering over an existing file replaces it.
    let again = read("a.png", &gaussian(7));
    assert!(again == g1);
}

/// Renders with `cfg` to `path`, expects an error, checks that nothing was written, and returns
/// the error's message.
fn refused(cfg: &ShowConfig, path: &Path) -> String {
    let err = render(cfg, path).expect_err("bad configuration accepted");
    assert!(
        !path.exists(),
        "{} written despite the error",
        path.display()
    );
    err.to_string()
}

#[test]
fn bad_configurations_are_refused_with_the_problem_named() {
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("f.png");

    let msg = refused(&fgsm(&[]), &png);
    assert!(msg.contains("no noise levels"), "{msg}");

    let msg = refused(&fgsm(&[0.1, -0.2]), &png);
    assert!(msg.contains("-0.2") && msg.contains(">= 0"), "{msg}");

    let msg = refused(&fgsm(&[f32::NAN]), &png);
    assert!(msg.contains("NaN"), "{msg}");

    let jpg = dir.path().join("figure.jpg");
    let msg = refused(&fgsm(&[0.1]), &jpg);
    assert!(msg.contains("figure.jpg") && msg.contains(".png"), "{msg}");
    let msg = refused(&fgsm(&[0.1]), &dir.path().join("png"));
    assert!(msg.contains(".png"), "{msg}");

    // A folder that does not exist: an I/O error naming the target.
    let missing = dir.path().join("no such folder").join("f.png");
    let msg = refused(&fgsm(&[0.1]), &missing);
    assert!(msg.contains("no such folder"), "{msg}");

    // Labels that do not match the images.
    let d = digits();
    let err = perturbed_digits(&model(), d.images.view(), &d.labels[..3], &fgsm(&[0.1]))
        .and_then(|f| render_show_png(&f, &png))
        .unwrap_err();
    assert!(matches!(err, ShowError::BadImages { .. }), "{err}");
    assert!(err.to_string().contains("3 labels"), "{err}");

    assert!(
        files_in(dir.path()).is_empty(),
        "left behind: {:?}",
        files_in(dir.path())
    );
}
