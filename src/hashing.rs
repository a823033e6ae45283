//! SHA-256 in lowercase hex, as `sha256sum` prints it: the one spelling of a hash everywhere
//! advmnist writes or compares one (data files and their checksum lists, model files in a
//! committee, output-set manifests, reproduce's job keys, adversarial pools, the human study's
//! design and models).
//!
//! Layer 0: imports nothing of the crate.

use sha2::{Digest, Sha256};
use std::path::Path;

/// SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
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
