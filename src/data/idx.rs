//! The IDX file format of the MNIST database (Yann LeCun's page, "FILE FORMATS FOR THE MNIST
//! DATABASE"): a big-endian header, then unsigned bytes.
//!
//! Image file: magic 0x00000803, count, rows, cols (four u32), then count*rows*cols pixels, one
//! image after another, each row-major, 0 = background, 255 = full ink.
//! Label file: magic 0x00000801, count (two u32), then count labels.
//!
//! A file is read whole, gzip-compressed or raw. Hashes are SHA-256 in lowercase hex, taken over
//! the uncompressed file, header included: the canonical hashes in mnist/README.md, which do not
//! depend on how a copy was compressed.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ReadBytesExt};
use flate2::read::MultiGzDecoder;

use super::DataError;
use crate::hashing::sha256_hex;

/// The third byte 0x08 says "unsigned byte" data; the fourth is the number of dimensions.
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
pub const LABEL_MAGIC: u32 = 0x0000_0801;

/// Every gzip stream starts with these two bytes (RFC 1952). An IDX file starts with two zero
/// bytes, so the two can never be confused.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An IDX image file, as stored: pixels not yet scaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>, // (count, rows, cols), row-major, 0..=255
    pub sha256: String,  // of the uncompressed file, header included
}

/// An IDX label file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxLabels {
    pub count: usize,
    pub labels: Vec<u8>, // (count)
    pub sha256: String,  // of the uncompressed file, header included
}

impl IdxImages {
    /// All pixels scaled by `pixel_to_unit`, in the same order.
    pub fn pixels_unit(&self) -> Vec<f32> {
        // A plain map over the bytes compiles to a vectorised loop: 47 million pixels take
        // milliseconds, where per-element ndarray indexing would take far longer.
        self.pixels
            .iter()
            .map(|&pixel| pixel_to_unit(pixel))
            .collect()
    }
}

/// Maps a pixel 0..=255 to [0, 1] as pixel/255.
///
/// Not Caffe's scale 0.00390625 (= 1/256, from Caffe's examples/mnist/lenet_train_test.prototxt,
/// `transform_param { scale: 0.00390625 }`), which maps 255 to 0.99609375: with /255 full ink is
/// exactly 1.0, so the study's \[0,1\] image range and the clipping of perturbed images to it are
/// exact, and it matches PyTorch (torchvision's `ToTensor`, and the frozen PyTorch fixture in
/// tests/fixtures that the tests compare against).
pub fn pixel_to_unit(pixel: u8) -> f32 {
    f32::from(pixel) / 255.0
}

/// Reads an IDX image file, gzip-compressed or raw.
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    decode_idx_images(path, &read_file(path)?)
}

/// Reads an IDX label file, gzip-compressed or raw.
pub fn read_idx_labels(path: &Path) -> Result<IdxLabels, DataError> {
    decode_idx_labels(path, &read_file(path)?)
}

/// The bytes of a file as stored; a file that is not there is `Missing`, not `Io`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Parses the stored bytes of an IDX image file; `path` is only used in error messages.
pub fn decode_idx_images(path: &Path, stored: &[u8]) -> Result<IdxImages, DataError> {
    let bytes = uncompress(path, stored)?;
    let [count, rows, cols] = check_layout(path, &bytes, IMAGE_MAGIC, ["count", "rows", "cols"])?;
    let header_bytes = 4 + 4 * 3;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[header_bytes..].to_vec(),
        sha256: sha256_hex(&bytes),
    })
}

/// Parses the stored bytes of an IDX label file; `path` is only used in error messages.
pub fn decode_idx_labels(path: &Path, stored: &[u8]) -> Result<IdxLabels, DataError> {
    let bytes = uncompress(path, stored)?;
    let [count] = check_layout(path, &bytes, LABEL_MAGIC, ["count"])?;
    let header_bytes = 4 + 4;
    Ok(IdxLabels {
        count,
        labels: bytes[header_bytes..].to_vec(),
        sha256: sha256_hex(&bytes),
    })
}

/// What a magic number stands for, for error messages.
pub(crate) fn describe_magic(magic: u32) -> &'static str {
    match magic {
        IMAGE_MAGIC => "an IDX image file",
        LABEL_MAGIC => "an IDX label file",
        _ => "an IDX file",
    }
}

/// Decompresses gzip data, recognised by its magic bytes; returns anything else as it is.
///
/// The content decides, not the `.gz` name: browsers that honour `Content-Encoding: gzip` save
/// a download uncompressed under its .gz name, and such a file reads fine as raw IDX.
fn uncompress<'a>(path: &Path, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, DataError> {
    if !stored.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(stored));
    }
    let mut bytes = Vec::new();
    // Multi-member, because `cat a.gz b.gz` is also valid gzip and `gzip -d` reads it whole.
    MultiGzDecoder::new(stored)
        .read_to_end(&mut bytes)
        .map_err(|error| DataError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                error.kind(),
                format!("gzip decompression failed: {error}"),
            ),
        })?;
    Ok(Cow::Owned(bytes))
}

/// Checks an uncompressed IDX file: the magic number, `D` non-zero dimensions named `names`,
/// and data after the header exactly as long as their product. Returns the dimensions.
fn check_layout<const D: usize>(
    path: &Path,
    bytes: &[u8],
    expected_magic: u32,
    names: [&str; D],
) -> Result<[usize; D], DataError> {
    let path_buf = || PathBuf::from(path);
    let header_bytes = 4 + 4 * D;
    let bad_header = |reason: String| DataError::BadHeader {
        path: path_buf(),
        reason,
    };
    if bytes.len() < header_bytes {
        // Check the magic number first if there is one, so a short file of the wrong kind
        // is reported as the wrong kind.
        if let Some(magic) = bytes.get(..4) {
            let found = u32::from_be_bytes(magic.try_into().expect("4 bytes"));
            if found != expected_magic {
                return Err(DataError::BadMagic {
                    path: path_buf(),
                    found,
                    expected: expected_magic,
                });
            }
        }
        return Err(bad_header(format!(
            "the file is {} bytes, shorter than the {header_bytes}-byte header",
            bytes.len()
        )));
    }

    let mut header = &bytes[..header_bytes];
    let found = header.read_u32::<BigEndian>().expect("length checked");
    if found != expected_magic {
        return Err(DataError::BadMagic {
            path: path_buf(),
            found,
            expected: expected_magic,
        });
    }
    let mut dims = [0usize; D];
    for (dim, name) in dims.iter_mut().zip(names) {
        *dim = header.read_u32::<BigEndian>().expect("length checked") as usize;
        if *dim == 0 {
            return Err(bad_header(format!("{name} is zero")));
        }
    }

    let expected_bytes = dims
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim))
        .ok_or_else(|| bad_header(format!("{dims:?} is too large to address")))?;
    let found_bytes = bytes.len() - header_bytes;
    if found_bytes < expected_bytes {
        return Err(DataError::Truncated {
            path: path_buf(),
            expected_bytes,
            found_bytes,
        });
    }
    if found_bytes > expected_bytes {
        return Err(DataError::TrailingBytes {
            path: path_buf(),
            expected_bytes,
            found_bytes,
        });
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn image_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [IMAGE_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    fn label_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [LABEL_MAGIC, labels.len() as u32] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decodes_raw_images() {
        // two 2x3 images
        let pixels = [0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255];
        let file = image_file(2, 2, 3, &pixels);
        let images = decode_idx_images(Path::new("images"), &file).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (2, 2, 3));
        assert_eq!(images.pixels, pixels);
        assert_eq!(images.sha256, format!("{:x}", Sha256::digest(&file)));
    }

    #[test]
    fn decodes_raw_labels() {
        let file = label_file(&[7, 2, 1]);
        let labels = decode_idx_labels(Path::new("labels"), &file).unwrap();
        assert_eq!(labels.count, 3);
        assert_eq!(labels.labels, [7, 2, 1]);
        assert_eq!(labels.sha256, format!("{:x}", Sha256::digest(&file)));
    }

    #[test]
    fn gzip_is_recognised_by_content_whatever_the_name() {
        let file = image_file(1, 1, 2, &[9, 10]);
        let raw = decode_idx_images(Path::new("images"), &file).unwrap();
        for name in ["images.gz", "images"] {
            let compressed = decode_idx_images(Path::new(name), &gzip(&file)).unwrap();
            // Same hash: it is taken over the uncompressed bytes.
            assert_eq!(compressed, raw, "{name}");
        }
        // Raw data under a .gz name, as some browsers save downloads.
        assert_eq!(
            decode_idx_images(Path::new("images.gz"), &file).unwrap(),
            raw
        );
    }

    #[test]
    fn damaged_gzip_is_an_io_error_naming_the_file() {
        let mut compressed = gzip(&image_file(1, 1, 2, &[9, 10]));
        compressed.truncate(12);
        let error = decode_idx_images(Path::new("dir/images.gz"), &compressed).unwrap_err();
        assert!(matches!(error, DataError::Io { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with("dir/images.gz: gzip"), "{message}");
    }

    #[test]
    fn wrong_magic_message_names_both_numbers() {
        let error = decode_idx_images(Path::new("t10k-images-idx3-ubyte.gz"), &label_file(&[1, 2]))
            .unwrap_err();
        assert!(
            matches!(
                error,
                DataError::BadMagic {
                    found: LABEL_MAGIC,
                    expected: IMAGE_MAGIC,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "t10k-images-idx3-ubyte.gz: wrong magic number 0x00000801 \
             (expected 0x00000803, an IDX image file)"
        );
        let error = decode_idx_labels(Path::new("labels"), &image_file(1, 1, 1, &[0])).unwrap_err();
        assert!(error.to_string().contains("an IDX label file"), "{error}");
    }

    #[test]
    fn short_file_of_the_wrong_kind_is_bad_magic() {
        // A 12-byte label file read as images: the 16-byte image header does not fit, but the
        // magic number already says what is wrong.
        let error = decode_idx_images(Path::new("x"), &label_file(&[1, 2, 3, 4])).unwrap_err();
        assert!(matches!(error, DataError::BadMagic { .. }), "{error:?}");
    }

    #[test]
    fn short_header_is_bad_header() {
        let file = &image_file(1, 2, 2, &[])[..10];
        let error = decode_idx_images(Path::new("x"), file).unwrap_err();
        assert!(matches!(error, DataError::BadHeader { .. }), "{error:?}");
        assert!(error.to_string().contains("10 bytes"), "{error}");
        let error = decode_idx_labels(Path::new("x"), &[0, 0]).unwrap_err();
        assert!(matches!(error, DataError::BadHeader { .. }), "{error:?}");
    }

    #[test]
    fn zero_dimension_is_bad_header() {
        for (dims, name) in [
            ((0, 2, 2), "count"),
            ((1, 0, 2), "rows"),
            ((1, 2, 0), "cols"),
        ] {
            let file = image_file(dims.0, dims.1, dims.2, &[]);
            let error = decode_idx_images(Path::new("x"), &file).unwrap_err();
            assert!(matches!(error, DataError::BadHeader { .. }), "{error:?}");
            assert_eq!(
                error.to_string(),
                format!("x: bad IDX header: {name} is zero")
            );
        }
    }

    #[test]
    fn truncated_data_says_expected_and_found_bytes() {
        // 2 images of 2x2 promise 8 bytes of data; 7 are there.
        let file = image_file(2, 2, 2, &[1; 7]);
        let error = decode_idx_images(Path::new("x"), &file).unwrap_err();
        assert!(
            matches!(
                error,
                DataError::Truncated {
                    expected_bytes: 8,
                    found_bytes: 7,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "x: truncated: the header promises 8 bytes of data, the file holds 7"
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut file = label_file(&[1, 2, 3]);
        file.push(4);
        let error = decode_idx_labels(Path::new("x"), &file).unwrap_err();
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
        assert!(
            error.to_string().starts_with("x: 1 unexpected bytes"),
            "{error}"
        );
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let file = image_file(u32::MAX, u32::MAX, u32::MAX, &[]);
        let error = decode_idx_images(Path::new("x"), &file).unwrap_err();
        assert!(matches!(error, DataError::BadHeader { .. }), "{error:?}");
    }

    #[test]
    fn pixel_scale_is_one_over_255() {
        assert_eq!(pixel_to_unit(0), 0.0);
        // Full ink is exactly 1.0; Caffe's 1/256 would give 255/256 = 0.99609375.
        assert_eq!(pixel_to_unit(255), 1.0);
        assert_eq!(pixel_to_unit(51), 0.2);
        // Same f32 division as PyTorch's ToTensor (`tensor.float().div(255)`).
        assert_eq!(pixel_to_unit(128), 128.0f32 / 255.0f32);
        let images = IdxImages {
            count: 1,
            rows: 1,
            cols: 3,
            pixels: vec![0, 51, 255],
            sha256: String::new(),
        };
        assert_eq!(images.pixels_unit(), [0.0, 0.2, 1.0]);
    }

    #[test]
    fn missing_file_is_missing_not_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing-here");
        let error = read_idx_images(&path).unwrap_err();
        assert!(matches!(error, DataError::Missing { .. }), "{error:?}");
        assert!(error
            .to_string()
            .starts_with(&format!("{}: file not found", path.display())));
    }
}
