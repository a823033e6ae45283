//! The MNIST database: four IDX files in one folder, checked and turned into `Dataset`s.
//!
//! Shapes: `N` images, each 1 channel of 28x28 pixels, as LeNet takes them (Caffe's
//! examples/mnist/lenet_train_test.prototxt reads MNIST as N x 1 x 28 x 28).
//!
//! Lookup: for each file NAME (`train-images-idx3-ubyte`, ...) the folder's `NAME.gz` is used,
//! else a raw `NAME`.
//!
//! Checksums: when the folder holds a `SHA256SUMS` file (`sha256sum` output), each file used
//! that it lists is checked against it, over the bytes as stored (the .gz file's own hash for
//! a .gz file); a mismatch is `ChecksumMismatch`, a malformed SHA256SUMS `BadChecksumList`.
//! A file it does not list is not checked, and a folder without SHA256SUMS (a user's
//! Fashion-MNIST copy, say) is not checked at all: the uncompressed hashes are still computed
//! and reported, so results remain traceable to the exact data.

use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{s, Array4};

use super::idx::{self, IdxImages, IdxLabels};
use super::DataError;
use crate::hashing::sha256_hex;

/// Side of an MNIST image in pixels; LeNet's first convolution is built for it.
pub const IMAGE_SIDE: usize = 28;
/// Pixels of one MNIST image, row by row.
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Digits 0 to 9.
pub const CLASSES: usize = 10;
/// Name of the optional checksum list in a data folder.
pub const CHECKSUM_FILE: &str = "SHA256SUMS";
/// Environment variable naming the data folder, read by `default_data_dir`.
pub const DATA_DIR_ENV: &str = "ADVMNIST_DATA";

/// Images and their labels, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Array4<f32>, // (N, 1, 28, 28): pixel/255 in [0,1], see `idx::pixel_to_unit`
    pub labels: Vec<u8>,     // (N): each in 0..=9
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A copy of the images and labels in `range`, e.g. the first 1000 test images for a quick
    /// sweep. Panics if `range` reaches past the end.
    pub fn subset(&self, range: Range<usize>) -> Dataset {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "subset {range:?} of a dataset of {} images",
            self.len()
        );
        Dataset {
            images: self.images.slice(s![range.clone(), .., .., ..]).to_owned(),
            labels: self.labels[range].to_vec(),
        }
    }
}

/// MNIST's two parts: 60000 training images and 10000 test images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The IDX image file's name, without `.gz`.
    pub fn images_file_name(self) -> &'static str {
        match self {
            Split::Train => "train-images-idx3-ubyte",
            Split::Test => "t10k-images-idx3-ubyte",
        }
    }

    /// The IDX label file's name, without `.gz`.
    pub fn labels_file_name(self) -> &'static str {
        match self {
            Split::Train => "train-labels-idx1-ubyte",
            Split::Test => "t10k-labels-idx1-ubyte",
        }
    }
}

/// SHA-256 of a split's two files, uncompressed, header included: the canonical hashes of the
/// table in mnist/README.md, whatever the compression of the copy read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitHashes {
    pub images_sha256: String,
    pub labels_sha256: String,
}

/// Both splits, and one hash that identifies the data for model metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
    /// SHA-256 (lowercase hex) of the four uncompressed files' hex hashes written one after
    /// another, in the order train-images, train-labels, t10k-images, t10k-labels.
    pub sha256: String,
}

/// The data folder: `$ADVMNIST_DATA` if set and not empty, else the `mnist/` folder bundled with
/// this crate.
pub fn default_data_dir() -> PathBuf {
    data_dir_from(std::env::var_os(DATA_DIR_ENV))
}

fn data_dir_from(variable: Option<OsString>) -> PathBuf {
    match variable {
        // An empty value is treated as unset, as shells make it easy to export one by mistake.
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/mnist")),
    }
}

/// Loads one split from `dir`; see the module comment for lookup and checksums.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    load_split_with_hashes(dir, split).map(|(dataset, _)| dataset)
}

/// Loads one split from `dir` and returns the hashes of its two files as well.
pub fn load_split_with_hashes(
    dir: &Path,
    split: Split,
) -> Result<(Dataset, SplitHashes), DataError> {
    let checksums = read_checksum_list(dir)?;
    load_checked_split(dir, split, checksums.as_ref())
}

/// Loads both splits from `dir`; see the module comment for lookup and checksums.
pub fn load_mnist(dir: &Path) -> Result<Mnist, DataError> {
    let checksums = read_checksum_list(dir)?;
    // The splits are independent, so the test split loads on a second thread while the
    // training split (six times larger) loads on this one.
    let (train, test) = std::thread::scope(|scope| {
        let test = scope.spawn(|| load_checked_split(dir, Split::Test, checksums.as_ref()));
        let train = load_checked_split(dir, Split::Train, checksums.as_ref());
        (train, test.join().expect("loading the test split panicked"))
    });
    let (train, train_hashes) = train?;
    let (test, test_hashes) = test?;
    let sha256 = combined_sha256(&[
        &train_hashes.images_sha256,
        &train_hashes.labels_sha256,
        &test_hashes.images_sha256,
        &test_hashes.labels_sha256,
    ]);
    Ok(Mnist {
        train,
        test,
        sha256,
    })
}

/// SHA-256 of the hex hashes concatenated with no separator, so that one string stands for the
/// four files: `printf %s HASH1 HASH2 HASH3 HASH4 | sha256sum`.
fn combined_sha256(hashes: &[&str; 4]) -> String {
    sha256_hex(hashes.concat().as_bytes())
}

fn load_checked_split(
    dir: &Path,
    split: Split,
    checksums: Option<&ChecksumList>,
) -> Result<(Dataset, SplitHashes), DataError> {
    let images_path = locate(dir, split.images_file_name())?;
    let images = idx::decode_idx_images(&images_path, &read_checked(&images_path, checksums)?)?;
    check_image_size(&images_path, &images)?;

    let labels_path = locate(dir, split.labels_file_name())?;
    let labels = idx::decode_idx_labels(&labels_path, &read_checked(&labels_path, checksums)?)?;
    check_labels(&labels_path, &labels)?;

    if images.count != labels.count {
        return Err(DataError::CountMismatch {
            images_path,
            images: images.count,
            labels_path,
            labels: labels.count,
        });
    }

    let pixels = images.pixels_unit();
    let dataset = Dataset {
        images: Array4::from_shape_vec((images.count, 1, images.rows, images.cols), pixels)
            .expect("pixel count checked against the header"),
        labels: labels.labels,
    };
    let hashes = SplitHashes {
        images_sha256: images.sha256,
        labels_sha256: labels.sha256,
    };
    Ok((dataset, hashes))
}

/// `dir/NAME.gz`, else `dir/NAME`; if neither is there, the error names the .gz path.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let compressed = dir.join(format!("{name}.gz"));
    if compressed.is_file() {
        return Ok(compressed);
    }
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(DataError::Missing { path: compressed })
}

fn check_image_size(path: &Path, images: &IdxImages) -> Result<(), DataError> {
    if images.rows != IMAGE_SIDE || images.cols != IMAGE_SIDE {
        return Err(DataError::WrongImageSize {
            path: path.to_path_buf(),
            rows: images.rows,
            cols: images.cols,
        });
    }
    Ok(())
}

fn check_labels(path: &Path, labels: &IdxLabels) -> Result<(), DataError> {
    match labels
        .labels
        .iter()
        .position(|&label| usize::from(label) >= CLASSES)
    {
        Some(index) => Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            value: labels.labels[index],
        }),
        None => Ok(()),
    }
}

/// A parsed SHA256SUMS: file name -> lowercase hex hash.
#[derive(Debug)]
pub(crate) struct ChecksumList {
    pub(crate) hashes: HashMap<String, String>,
}

/// `dir/SHA256SUMS` parsed, or `None` if there is none. Every load starts here, so this is also
/// where a data folder that is missing, or is a file, is reported as such (rather than as a
/// missing or unreadable file inside it).
fn read_checksum_list(dir: &Path) -> Result<Option<ChecksumList>, DataError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(DataError::NotAFolder { path: dir.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::MissingFolder { path: dir.into() })
        }
        Err(source) => {
            return Err(DataError::Io {
                path: dir.into(),
                source,
            })
        }
    }
    let path = dir.join(CHECKSUM_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_checksum_list(&path, &text).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DataError::Io { path, source }),
    }
}

/// Parses `sha256sum` output: `HASH  NAME` (text mode) or `HASH *NAME` (binary mode), one file
/// a line; blank lines are skipped. A `./` before a name is dropped, since
/// `sha256sum ./*.gz` writes it.
pub(crate) fn parse_checksum_list(path: &Path, text: &str) -> Result<ChecksumList, DataError> {
    let mut hashes = HashMap::new();
    for (line_index, line) in text.lines().enumerate() {
        let line_number = line_index + 1;
        let bad = |reason: String| DataError::BadChecksumList {
            path: path.to_path_buf(),
            line: line_number,
            reason,
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (hash, rest) = match line.split_at_checked(64) {
            Some((hash, rest)) if hash.bytes().all(|byte| byte.is_ascii_hexdigit()) => (hash, rest),
            _ => return Err(bad("does not start with a 64-digit hex SHA-256".into())),
        };
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad("the hash is not followed by two spaces".into()))?;
        let name = name.strip_prefix("./").unwrap_or(name);
        if name.is_empty() {
            return Err(bad("no file name".into()));
        }
        let hash = hash.to_ascii_lowercase();
        if let Some(earlier) = hashes.insert(name.to_string(), hash.clone()) {
            if earlier != hash {
                return Err(bad(format!(
                    "{name} is listed twice, with different hashes"
                )));
            }
        }
    }
    Ok(ChecksumList { hashes })
}

/// The bytes of `path` as stored, after checking them against the checksum list if it lists
/// the file.
fn read_checked(path: &Path, checksums: Option<&ChecksumList>) -> Result<Vec<u8>, DataError> {
    let stored = idx::read_file(path)?;
    let listed = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| checksums?.hashes.get(name));
    if let Some(expected) = listed {
        let found = sha256_hex(&stored);
        if &found != expected {
            return Err(DataError::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: expected.clone(),
                found,
            });
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971";
    const HASH_B: &str = "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203";

    fn parse(text: &str) -> Result<ChecksumList, DataError> {
        parse_checksum_list(Path::new("dir/SHA256SUMS"), text)
    }

    #[test]
    fn checksum_list_reads_text_and_binary_lines() {
        let upper = HASH_B.to_ascii_uppercase();
        let text = format!("{HASH_A}  a.gz\r\n\n{upper} *./b.gz\n");
        let list = parse(&text).unwrap();
        assert_eq!(list.hashes.len(), 2);
        assert_eq!(list.hashes["a.gz"], HASH_A);
        assert_eq!(list.hashes["b.gz"], HASH_B);
    }

    #[test]
    fn malformed_checksum_list_names_file_and_line() {
        let cases = [
            format!("{HASH_A}  a.gz\nnot a hash  b.gz\n"),
            format!("{HASH_A}  a.gz\n{} b.gz\n", HASH_B),
            format!("{HASH_A}  a.gz\n{HASH_B}  \n"),
            format!("{HASH_A}  a.gz\n{HASH_B}  a.gz\n"),
            format!("{HASH_A}  a.gz\n{}  b.gz\n", &HASH_B[..63]),
        ];
        for text in cases {
            let error = parse(&text).unwrap_err();
            assert!(
                matches!(error, DataError::BadChecksumList { line: 2, .. }),
                "{text:?}: {error:?}"
            );
            assert!(
                error.to_string().starts_with("dir/SHA256SUMS: line 2: "),
                "{error}"
            );
        }
    }

    #[test]
    fn same_file_listed_twice_with_the_same_hash_is_fine() {
        let text = format!("{HASH_A}  a.gz\n{HASH_A}  ./a.gz\n");
        assert_eq!(parse(&text).unwrap().hashes.len(), 1);
    }

    #[test]
    fn data_dir_comes_from_the_variable_unless_unset_or_empty() {
        assert_eq!(
            data_dir_from(Some("/data/fashion".into())),
            PathBuf::from("/data/fashion")
        );
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("mnist");
        assert_eq!(data_dir_from(None), bundled);
        assert_eq!(data_dir_from(Some(OsString::new())), bundled);
    }

    #[test]
    fn subset_keeps_images_and_labels_together() {
        // image i is filled with i/10, so its label and pixels can be matched
        let mut images = Array4::zeros((5, 1, IMAGE_SIDE, IMAGE_SIDE));
        for (i, mut image) in images.outer_iter_mut().enumerate() {
            image.fill(i as f32 / 10.0);
        }
        let dataset = Dataset {
            images,
            labels: vec![0, 1, 2, 3, 4],
        };
        let part = dataset.subset(1..3);
        assert_eq!(part.len(), 2);
        assert_eq!(part.labels, [1, 2]);
        assert_eq!(part.images.dim(), (2, 1, IMAGE_SIDE, IMAGE_SIDE));
        assert_eq!(part.images[[0, 0, 5, 5]], 0.1);
        assert_eq!(part.images[[1, 0, 27, 27]], 0.2);
        assert!(dataset.subset(2..2).is_empty());
    }

    #[test]
    #[should_panic(expected = "subset 4..6 of a dataset of 5 images")]
    fn subset_past_the_end_panics() {
        let dataset = Dataset {
            images: Array4::zeros((5, 1, IMAGE_SIDE, IMAGE_SIDE)),
            labels: vec![0; 5],
        };
        dataset.subset(4..6);
    }

    #[test]
    fn combined_hash_is_over_the_concatenated_hex() {
        // printf %s ab | sha256sum
        assert_eq!(
            combined_sha256(&["a", "b", "", ""]),
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        );
    }
}
