//! Data: reading IDX files and loading the MNIST database, with checksums.
//!
//! # Example
//!
//! The bundled test set, its shapes and labels, one digit drawn as text, and the message a wrong
//! folder gets.
//!
//! ```
//! use advmnist::data::{default_data_dir, load_split, DataError, Split, IMAGE_SIDE};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The test split of the bundled copy (checked against mnist/SHA256SUMS as it loads);
//! // `load_mnist` loads both splits.
//! let test = load_split(&default_data_dir(), Split::Test)?;
//! assert_eq!(test.images.shape(), &[10_000, 1, IMAGE_SIDE, IMAGE_SIDE]); // (N, C, H, W)
//! assert_eq!(test.labels[..5], [7, 2, 1, 0, 4]);
//! assert!(test.images.iter().all(|&p| (0.0..=1.0).contains(&p))); // pixel / 255
//!
//! // Test image 0, drawn with one character per pixel.
//! let shade = |p: f32| match p {
//!     p if p > 0.5 => '#',
//!     p if p > 0.0 => '+',
//!     _ => '.',
//! };
//! for row in test.images.slice(ndarray::s![0, 0, .., ..]).rows() {
//!     println!("{}", row.iter().map(|&p| shade(p)).collect::<String>());
//! }
//!
//! // The first 100 images, as a quick experiment takes them.
//! let first = test.subset(0..100);
//! assert_eq!((first.len(), first.labels[0]), (100, 7));
//!
//! // A wrong folder is an error that names it.
//! let missing = load_split(Path::new("no-such-folder"), Split::Test).unwrap_err();
//! assert!(matches!(missing, DataError::MissingFolder { .. }));
//! assert!(missing.to_string().starts_with("no-such-folder: data folder not found"));
//! # Ok(())
//! # }
//! ```
//!
//! # Parts
//!
//! `idx` knows the file format and nothing of MNIST; `mnist` knows the four file names, the
//! SHA256SUMS check, the 28x28 image size and the ten classes, and builds the `Dataset`s the
//! models train and are attacked on.

pub mod idx;
pub mod mnist;

use std::path::PathBuf;

pub use idx::{pixel_to_unit, read_idx_images, read_idx_labels, IdxImages, IdxLabels};
pub use mnist::{
    default_data_dir, load_mnist, load_split, load_split_with_hashes, Dataset, Mnist, Split,
    SplitHashes, CHECKSUM_FILE, CLASSES, DATA_DIR_ENV, IMAGE_SIDE, PIXELS,
};

/// Everything that can go wrong while reading the data. Every message starts with the path of the
/// file at fault, as it was given (so a user pointing `--data` somewhere sees which file to fix).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{path}: file not found (a data folder holds each of the four MNIST IDX files, \
         gzip-compressed as NAME.gz or raw as NAME; see mnist/README.md)"
    )]
    Missing { path: PathBuf },

    #[error(
        "{path}: data folder not found (--data or ADVMNIST_DATA names a folder holding the four \
         MNIST IDX files, .gz or raw; see mnist/README.md)"
    )]
    MissingFolder { path: PathBuf },

    #[error(
        "{path}: is a file, not a folder (--data or ADVMNIST_DATA names a folder holding the four \
         MNIST IDX files, .gz or raw)"
    )]
    NotAFolder { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: wrong magic number {found:#010x} (expected {expected:#010x}, {})", idx::describe_magic(*.expected))]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error("{path}: bad IDX header: {reason}")]
    BadHeader { path: PathBuf, reason: String },

    /// Byte counts are of the data after the header, uncompressed.
    #[error(
        "{path}: truncated: the header promises {expected_bytes} bytes of data, \
         the file holds {found_bytes}"
    )]
    Truncated {
        path: PathBuf,
        expected_bytes: usize,
        found_bytes: usize,
    },

    /// Byte counts are of the data after the header, uncompressed.
    #[error(
        "{path}: {} unexpected bytes after the data: the header promises {expected_bytes} bytes, \
         the file holds {found_bytes}",
        .found_bytes - .expected_bytes
    )]
    TrailingBytes {
        path: PathBuf,
        expected_bytes: usize,
        found_bytes: usize,
    },

    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },

    #[error(
        "{path}: SHA-256 is {found} but SHA256SUMS in its folder lists {expected}: \
         the file is damaged or not the one listed"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },

    /// A SHA256SUMS file that is not in `sha256sum` format. `line` counts from 1.
    #[error(
        "{path}: line {line}: {reason} (expected sha256sum format: 64 hex digits, two spaces, \
         a file name)"
    )]
    BadChecksumList {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{path}: label {index} is {value}, not a digit 0-9")]
    BadLabel {
        path: PathBuf,
        index: usize,
        value: u8,
    },

    #[error("{path}: images are {rows}x{cols}, LeNet needs 28x28")]
    WrongImageSize {
        path: PathBuf,
        rows: usize,
        cols: usize,
    },
}
