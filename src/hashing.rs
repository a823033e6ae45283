//! SHA-256 in lowercase hex, as `sha256sum` prints it: the one spelling of a hash everywhere
//! advmnist writes or compares one (data files and their checksum lists, model files in a
//! committee, output-set manifests, reproduce's job keys, adversarial pools, the human study's
//! design and models).
//!
//! Layer 0: imports nothing of the crate.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::Path;

/// SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The bytes of `values` as little-endian f32, the order files and checksums take them in:
/// borrowed on a little-endian machine (no copy, which made hashing a sweep's 31 MB of images
/// twice as fast as converting value by value), converted on a big-endian one.
pub fn f32_le_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: any initialised f32 is 4 initialised bytes; u8 has alignment 1; the length
        // is the slice's size in bytes.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        })
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// SHA-256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}

/// SHA-256 of bytes given piece by piece (a tensor's values, tensor after tensor), without
/// gathering them first: the hash is that of all the pieces concatenated in order.
#[derive(Clone, Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` to what is hashed.
    pub fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes);
    }

    /// The hash of everything appended, in lowercase hex.
    pub fn hex(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_bytes_are_little_endian() {
        let bytes = f32_le_bytes(&[1.0, -2.5]);
        let want: Vec<u8> = [1.0f32, -2.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(&bytes[..], &want[..]);
        assert_eq!(&f32_le_bytes(&[0.0])[..], &[0, 0, 0, 0]);
    }

    #[test]
    fn sha256_hex_is_lowercase_sha256sum_format() {
        // printf abc | sha256sum
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_stream_hashes_its_pieces_concatenated() {
        let mut stream = Sha256Stream::new();
        for piece in [&b"a"[..], b"", b"bc"] {
            stream.update(piece);
        }
        assert_eq!(stream.hex(), sha256_hex(b"abc"));
    }
}
