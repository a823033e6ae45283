//! Loading MNIST: the bundled copy, and every fault a data folder can have, each written as small
//! IDX files into a temporary folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use advmnist::data::{
    load_mnist, load_split, load_split_with_hashes, read_idx_images, DataError, Mnist, Split,
    IMAGE_SIDE,
};
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The table of canonical hashes in mnist/README.md (SHA-256 of the uncompressed IDX files).
const TRAIN_IMAGES_SHA256: &str =
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db";
const TRAIN_LABELS_SHA256: &str =
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5";
const TEST_IMAGES_SHA256: &str = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7";
const TEST_LABELS_SHA256: &str = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2";

/// `Mnist::sha256` of the bundled data, frozen with:
/// `printf %s ba89...76db 65a5...01c5 0fa7...4ce7 ff7b...33f2 | sha256sum` (the four hashes above,
/// in that order, written out in full).
const BUNDLED_MNIST_SHA256: &str =
    "c65580678af93f1ea48c2c0d01d543ec89307c6b8a0eb7ca542d7c18c5f4c681";

fn bundled_dir() -> PathBuf {
    // Not `default_data_dir()`: ADVMNIST_DATA may point elsewhere on a developer's machine.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mnist")
}

/// The bundled MNIST, loaded once for all tests of this file.
fn bundled() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| load_mnist(&bundled_dir()).expect("bundled MNIST loads"))
}

#[test]
fn bundled_mnist_loads() {
    let mnist = bundled();
    assert_eq!(mnist.train.len(), 60000);
    assert_eq!(mnist.test.len(), 10000);
    assert_eq!(mnist.train.images.dim(), (60000, 1, IMAGE_SIDE, IMAGE_SIDE));
    assert_eq!(mnist.test.images.dim(), (10000, 1, IMAGE_SIDE, IMAGE_SIDE));
    // The first test digit is a 7, and the first training digit a 5 (LeCun's page shows both).
    assert_eq!(mnist.test.labels[0], 7);
    assert_eq!(mnist.train.labels[0], 5);
    for (name, dataset) in [("train", &mnist.train), ("test", &mnist.test)] {
        let min = dataset.images.iter().copied().fold(f32::INFINITY, f32::min);
        let max = dataset
            .images
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (0.0, 1.0), "{name} pixel range");
        assert!(dataset.labels.iter().all(|&label| label <= 9), "{name}");
        // Every digit occurs: a scrambled label file would rarely keep all ten.
        for digit in 0..10u8 {
            assert!(dataset.labels.contains(&digit), "{name}: no {digit}");
        }
    }
}

#[test]
fn bundled_images_are_pixels_over_255_in_file_order() {
    let raw = read_idx_images(&bundled_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let images = &bundled().test.images;
    assert_eq!(images.len(), raw.pixels.len());
    let mut mismatches = images
        .iter()
        .zip(&raw.pixels)
        .enumerate()
        .filter(|(_, (&got, &pixel))| got != f32::from(pixel) / 255.0);
    if let Some((index, (got, pixel))) = mismatches.next() {
        panic!("test images[{index}] (flat): got {got}, want {pixel}/255");
    }
}

#[test]
fn bundled_hashes_match_the_canonical_table() {
    let (_, train) = load_split_with_hashes(&bundled_dir(), Split::Train).unwrap();
    let (_, test) = load_split_with_hashes(&bundled_dir(), Split::Test).unwrap();
    assert_eq!(train.images_sha256, TRAIN_IMAGES_SHA256);
    assert_eq!(train.labels_sha256, TRAIN_LABELS_SHA256);
    assert_eq!(test.images_sha256, TEST_IMAGES_SHA256);
    assert_eq!(test.labels_sha256, TEST_LABELS_SHA256);
    assert_eq!(bundled().sha256, BUNDLED_MNIST_SHA256);
}

#[test]
fn bundled_readme_holds_the_canonical_table() {
    let readme = std::fs::read_to_string(bundled_dir().join("README.md")).unwrap();
    for hash in [
        TRAIN_IMAGES_SHA256,
        TRAIN_LABELS_SHA256,
        TEST_IMAGES_SHA256,
        TEST_LABELS_SHA256,
    ] {
        assert!(readme.contains(hash), "mnist/README.md lacks {hash}");
    }
}

// ---- A small fake MNIST in a temporary folder ----

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

fn image_file(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0000_0803, count, rows, cols] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    // Pixel i of the file is i mod 256, so every value from 0 to 255 occurs.
    let pixels = (count * rows * cols) as usize;
    bytes.extend((0..pixels).map(|i| (i % 256) as u8));
    bytes
}

fn label_file(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0000_0801, labels.len() as u32] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The four files of a data folder, uncompressed; the tests break one and write them out.
struct FakeMnist {
    files: Vec<(&'static str, Vec<u8>)>,
}

impl FakeMnist {
    /// 3 training and 2 test images of 28x28.
    fn valid() -> FakeMnist {
        FakeMnist {
            files: vec![
                (TRAIN_IMAGES, image_file(3, 28, 28)),
                (TRAIN_LABELS, label_file(&[5, 0, 4])),
                (TEST_IMAGES, image_file(2, 28, 28)),
                (TEST_LABELS, label_file(&[7, 2])),
            ],
        }
    }

    fn replace(mut self, name: &str, bytes: Vec<u8>) -> FakeMnist {
        self.files
            .iter_mut()
            .find(|(file, _)| *file == name)
            .unwrap()
            .1 = bytes;
        self
    }

    /// Writes NAME.gz (or raw NAME) for each file, and a SHA256SUMS of what was written if asked.
    fn write(&self, compressed: bool, with_checksums: bool) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut checksums = String::new();
        for (name, bytes) in &self.files {
            let (file_name, stored) = if compressed {
                (format!("{name}.gz"), gzip(bytes))
            } else {
                (name.to_string(), bytes.clone())
            };
            std::fs::write(dir.path().join(&file_name), &stored).unwrap();
            checksums += &format!("{}  {file_name}\n", sha256_hex(&stored));
        }
        if with_checksums {
            std::fs::write(dir.path().join("SHA256SUMS"), checksums).unwrap();
        }
        dir
    }
}

/// Loads the folder, expecting an error whose message names `file`.
fn load_error(dir: &TempDir, file: &str) -> DataError {
    let error = load_mnist(dir.path()).expect_err("loading should fail");
    let message = error.to_string();
    assert!(
        message.contains(file),
        "message does not name {file}: {message}"
    );
    error
}

#[test]
fn small_folder_loads_gzip_with_checksums() {
    let dir = FakeMnist::valid().write(true, true);
    let mnist = load_mnist(dir.path()).unwrap();
    assert_eq!(mnist.train.labels, [5, 0, 4]);
    assert_eq!(mnist.test.labels, [7, 2]);
    assert_eq!(mnist.train.images.dim(), (3, 1, 28, 28));
    // pixel 255 of the file is the 256th: image 0, row 9, column 3 (255 = 9*28 + 3)
    assert_eq!(mnist.train.images[[0, 0, 9, 3]], 1.0);
    assert_eq!(mnist.train.images[[0, 0, 9, 4]], 0.0);
    // pixel 51 is row 1, column 23 (51 = 28 + 23): 51/255 = 0.2
    assert_eq!(mnist.train.images[[0, 0, 1, 23]], 0.2);
    let hashes: Vec<String> = FakeMnist::valid()
        .files
        .iter()
        .map(|(_, bytes)| sha256_hex(bytes))
        .collect();
    assert_eq!(mnist.sha256, sha256_hex(hashes.concat().as_bytes()));
}

#[test]
fn raw_and_gzip_files_give_the_same_data() {
    let compressed = FakeMnist::valid().write(true, true);
    let raw = FakeMnist::valid().write(false, true);
    let from_compressed = load_mnist(compressed.path()).unwrap();
    let from_raw = load_mnist(raw.path()).unwrap();
    // Equal hashes too: they are taken over the uncompressed bytes.
    assert_eq!(from_raw, from_compressed);
}

#[test]
fn gzip_file_is_preferred_over_raw() {
    let dir = FakeMnist::valid().write(true, false);
    std::fs::write(dir.path().join(TEST_LABELS), label_file(&[1, 1])).unwrap();
    assert_eq!(load_split(dir.path(), Split::Test).unwrap().labels, [7, 2]);
}

#[test]
fn folder_without_checksums_is_not_checked() {
    // Like a user's Fashion-MNIST folder: same names, no SHA256SUMS.
    let dir = FakeMnist::valid().write(true, false);
    assert_eq!(load_mnist(dir.path()).unwrap().test.labels, [7, 2]);
}

#[test]
fn missing_file_names_the_gz_path_in_its_folder() {
    let dir = FakeMnist::valid().write(true, true);
    std::fs::remove_file(dir.path().join(format!("{TEST_IMAGES}.gz"))).unwrap();
    let error = load_error(&dir, TEST_IMAGES);
    let expected = dir.path().join(format!("{TEST_IMAGES}.gz"));
    assert!(
        matches!(&error, DataError::Missing { path } if *path == expected),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .starts_with(&format!("{}: file not found", expected.display())));
}

#[test]
fn wrong_magic_is_reported() {
    // A label file where the test images should be.
    let dir = FakeMnist::valid()
        .replace(TEST_IMAGES, label_file(&[1, 2]))
        .write(true, true);
    let error = load_error(&dir, TEST_IMAGES);
    assert!(
        matches!(
            error,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().ends_with(&format!(
        "{TEST_IMAGES}.gz: wrong magic number 0x00000801 (expected 0x00000803, an IDX image file)"
    )));
}

#[test]
fn truncated_images_are_reported() {
    let mut bytes = image_file(2, 28, 28);
    bytes.truncate(bytes.len() - 100);
    let dir = FakeMnist::valid()
        .replace(TEST_IMAGES, bytes)
        .write(true, true);
    let error = load_error(&dir, TEST_IMAGES);
    assert!(
        matches!(
            error,
            DataError::Truncated {
                expected_bytes: 1568,
                found_bytes: 1468,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("1568") && message.contains("1468"),
        "{message}"
    );
}

#[test]
fn trailing_bytes_are_reported() {
    let mut bytes = label_file(&[5, 0, 4]);
    bytes.push(0);
    let dir = FakeMnist::valid()
        .replace(TRAIN_LABELS, bytes)
        .write(false, true);
    let error = load_error(&dir, TRAIN_LABELS);
    assert!(
        matches!(
            error,
            DataError::TrailingBytes {
                expected_bytes: 3,
                found_bytes: 4,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = FakeMnist::valid()
        .replace(TRAIN_LABELS, label_file(&[5, 0]))
        .write(true, true);
    let error = load_error(&dir, TRAIN_LABELS);
    assert!(
        matches!(
            error,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(TRAIN_IMAGES), "{error}");
}

#[test]
fn checksum_mismatch_is_reported() {
    let dir = FakeMnist::valid().write(true, true);
    let sums_path = dir.path().join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_path).unwrap();
    let wrong = "0".repeat(64);
    let line = sums
        .lines()
        .find(|line| line.contains(TEST_LABELS))
        .unwrap();
    let listed = line[..64].to_string();
    std::fs::write(&sums_path, sums.replace(&listed, &wrong)).unwrap();

    let error = load_error(&dir, TEST_LABELS);
    match &error {
        DataError::ChecksumMismatch {
            path,
            expected,
            found,
        } => {
            assert_eq!(path, &dir.path().join(format!("{TEST_LABELS}.gz")));
            assert_eq!(expected, &wrong);
            assert_eq!(found, &listed);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
}

#[test]
fn damaged_file_fails_its_checksum_before_parsing() {
    // A flipped byte in the compressed data: the checksum names the cause, not the gzip error.
    let dir = FakeMnist::valid().write(true, true);
    let path = dir.path().join(format!("{TRAIN_IMAGES}.gz"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let error = load_error(&dir, TRAIN_IMAGES);
    assert!(
        matches!(error, DataError::ChecksumMismatch { .. }),
        "{error:?}"
    );
}

#[test]
fn malformed_checksum_list_is_reported() {
    let dir = FakeMnist::valid().write(true, true);
    let sums_path = dir.path().join("SHA256SUMS");
    let mut sums = std::fs::read_to_string(&sums_path).unwrap();
    sums += "this is not a checksum line\n";
    std::fs::write(&sums_path, sums).unwrap();
    let error = load_error(&dir, "SHA256SUMS");
    assert!(
        matches!(error, DataError::BadChecksumList { line: 5, .. }),
        "{error:?}"
    );
}

#[test]
fn label_above_9_is_reported() {
    let dir = FakeMnist::valid()
        .replace(TEST_LABELS, label_file(&[7, 10]))
        .write(true, true);
    let error = load_error(&dir, TEST_LABELS);
    assert!(
        matches!(
            error,
            DataError::BadLabel {
                index: 1,
                value: 10,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn images_must_be_28_by_28() {
    let dir = FakeMnist::valid()
        .replace(TRAIN_IMAGES, image_file(3, 32, 28))
        .write(true, true);
    let error = load_error(&dir, TRAIN_IMAGES);
    assert!(
        matches!(
            error,
            DataError::WrongImageSize {
                rows: 32,
                cols: 28,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("32x28"), "{error}");
}
