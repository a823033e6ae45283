//! Logits one sweep job computed and another needs, kept in the run folder, keyed by model and
//! images.
//!
//! The standard committee's first member is the plain LeNet (`lenet-s1`), and the adversarial
//! committee's last member is the snapshot the `adv` row sweeps alone. Under Gaussian noise the
//! committee's sweep perturbs the same test images with the same noise (one seeded field per
//! image, `attacks::gaussian`) as that model's own sweep, so it would compute that member's
//! logits on the very same images again: a million inferences per committee, a sixth of its
//! sweep. The single model's sweep writes its logits here, level by level; the committee's
//! sweep reads them.
//!
//! A cached file is found by the SHA-256 of the model file and a SHA-256 of the images
//! ([`images_key`]), so it can be used only for the logits of those weights on those pixels,
//! whatever job asks: nothing else about the job (its name, its plan, its order) enters the
//! key. The logits are LeNet's own,
//! whose bits do not depend on the thread count or on the chunking (tested in `models::lenet`),
//! so a read gives the bits a computation would: a run gives the same tables with or without
//! the cache, in any order of its jobs (tested below).
//!
//! The file is the logits `(N, 10)` as little-endian f32, followed by the SHA-256 of those
//! bytes; it is written atomically (`io_safety::write_atomic`). A file of the wrong length or
//! whose checksum does not match is ignored (the logits are computed again, and the file
//! written anew by a job that writes). The folder (`cache/logits` in the run folder) only saves
//! time: deleting it at any moment changes no result.

use crate::hashing::file_sha256;
use crate::io_safety::write_atomic;
use crate::models::{Classifier, LeNet, LogitLoss, LossGradient};
use crate::train::adversarial::images_sha256;
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4, Axis};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The cache's folder inside a run folder.
pub const CACHE_FOLDER: &str = "cache/logits";

/// Classes per row of a cached file.
const CLASSES: usize = crate::data::CLASSES;

/// Images per block of [`images_key`].
const KEY_BLOCK: usize = 1000;

/// The images' part of a cache key: the SHA-256 of the SHA-256s of consecutive blocks of
/// 1,000 images (`KEY_BLOCK`; each block's little-endian f32 values, as `images_sha256` hashes
/// a set; the last block may be shorter), in hex. The blocks are hashed in parallel: hashing
/// each level's 31 MB in one piece, on one thread, was a tenth of a `perf` profile of the sweep
/// that writes the cache. The blocks depend on the number of images alone, so the key does not
/// depend on the threads.
pub fn images_key(x: ArrayView4<f32>) -> String {
    let blocks: Vec<String> = x
        .axis_chunks_iter(Axis(0), KEY_BLOCK)
        .into_par_iter()
        .map(images_sha256)
        .collect();
    crate::hashing::sha256_hex(blocks.concat().as_bytes())
}

/// The folder of cached logits of one run.
pub struct LogitsCache {
    dir: PathBuf,
}

impl LogitsCache {
    /// The cache of the run folder `root`.
    pub fn new(root: &Path) -> Self {
        LogitsCache {
            dir: root.join(CACHE_FOLDER),
        }
    }

    fn path(&self, model_sha: &str, images_sha: &str) -> PathBuf {
        self.dir.join(format!("{model_sha}-{images_sha}.f32"))
    }

    /// The logits of `rows` images cached under these keys, if a sound file holds them.
    pub fn read(&self, model_sha: &str, images_sha: &str, rows: usize) -> Option<Array2<f32>> {
        let bytes = std::fs::read(self.path(model_sha, images_sha)).ok()?;
        decode(&bytes, rows)
    }

    /// Caches `logits` under these keys (atomically). A failure to write is not an error of the
    /// job: the cache only saves time.
    pub fn write(&self, model_sha: &str, images_sha: &str, logits: ArrayView2<f32>) {
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let _ = write_atomic(&self.path(model_sha, images_sha), &encode(logits));
        }
    }
}

/// The logits as little-endian f32, row after row, then the SHA-256 of those bytes.
fn encode(logits: ArrayView2<f32>) -> Vec<u8> {
    let mut bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    bytes
}

/// The logits `(rows, 10)` of an encoded file, or `None` if its length or checksum is wrong.
fn decode(bytes: &[u8], rows: usize) -> Option<Array2<f32>> {
    let data_len = rows * CLASSES * 4;
    if bytes.len() != data_len + 32 {
        return None;
    }
    let (data, digest) = bytes.split_at(data_len);
    if Sha256::digest(data).as_slice() != digest {
        return None;
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Array2::from_shape_vec((rows, CLASSES), values).ok()
}

/// Whether a [`Cached`] model writes the logits it computes, or only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Read,
    ReadWrite,
}

/// A LeNet whose logits are looked up in a [`LogitsCache`] before they are computed; every
/// other method is the LeNet's own. It counts its hits ([`Cached::hits`]); a job's record does
/// not say whether the cache served it, since its results do not depend on that.
pub struct Cached<'a> {
    pub net: &'a LeNet<f32>,
    model_sha: String,
    cache: &'a LogitsCache,
    mode: Use,
    hits: AtomicUsize,
}

impl<'a> Cached<'a> {
    /// `net`, read from `model_file`, whose SHA-256 keys its entries.
    pub fn new(
        net: &'a LeNet<f32>,
        model_file: &Path,
        cache: &'a LogitsCache,
        mode: Use,
    ) -> std::io::Result<Self> {
        Ok(Cached {
            net,
            model_sha: file_sha256(model_file)?,
            cache,
            mode,
            hits: AtomicUsize::new(0),
        })
    }

    /// How many calls of `logits` the cache answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Classifier for Cached<'_> {
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        let images = images_key(x);
        if let Some(logits) = self.cache.read(&self.model_sha, &images, x.dim().0) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return logits;
        }
        let logits = self.net.logits(x);
        if self.mode == Use::ReadWrite {
            self.cache.write(&self.model_sha, &images, logits.view());
        }
        logits
    }

    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        self.net.input_gradient(x, labels)
    }

    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
        self.net.logits_vjp(x, d_logits)
    }

    fn loss_gradient(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        self.net.loss_gradient(x, loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::committee::Committee;
    use crate::models::file::{save_model, ModelMeta};
    use crate::models::DropoutRates;
    use crate::rng::{stream, Purpose};

    /// The SHA-256 of logits' bytes: equal hashes, equal bits (NaN included).
    fn entry_sha(logits: ArrayView2<f32>) -> String {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::hashing::sha256_hex(&bytes)
    }

    /// A freshly initialised LeNet from `seed`, saved in `dir` as the reproduce jobs save theirs.
    fn saved_lenet(dir: &Path, seed: u64) -> (LeNet<f32>, PathBuf) {
        let net = LeNet::xavier(&mut stream(seed, Purpose::Init, 0));
        let meta = ModelMeta {
            dropout: DropoutRates::NONE,
            seed,
            iterations: 0,
            data_sha256: "none: not trained".into(),
            extra: Default::default(),
        };
        let path = dir.join(format!("lenet-{seed}.safetensors"));
        save_model(&path, &net, &meta).unwrap();
        (net, path)
    }

    fn images(n: usize, seed: u64) -> Array4<f32> {
        crate::attacks::gaussian::gaussian(
            Array4::from_elem((n, 1, 28, 28), 0.3f32).view(),
            0.2,
            seed,
        )
    }

    #[test]
    fn the_images_key_is_the_hash_of_the_blocks_hashes_and_sees_every_pixel() {
        let x = images(KEY_BLOCK + 5, 2);
        let blocks = [
            images_sha256(x.slice(ndarray::s![..KEY_BLOCK, .., .., ..])),
            images_sha256(x.slice(ndarray::s![KEY_BLOCK.., .., .., ..])),
        ];
        assert_eq!(
            images_key(x.view()),
            crate::hashing::sha256_hex(blocks.concat().as_bytes())
        );
        let mut y = x.clone();
        y[[KEY_BLOCK + 4, 0, 27, 27]] = -1.0;
        assert_ne!(images_key(x.view()), images_key(y.view()));
        assert_ne!(
            images_key(x.view()),
            images_key(x.slice(ndarray::s![..KEY_BLOCK, .., .., ..]))
        );
    }

    #[test]
    fn a_file_round_trips_and_a_damaged_one_is_ignored() {
        let logits = Array2::from_shape_fn((3, CLASSES), |(i, k)| i as f32 - 0.25 * k as f32);
        let bytes = encode(logits.view());
        assert_eq!(decode(&bytes, 3), Some(logits.clone()));
        assert_eq!(decode(&bytes, 2), None, "wrong row count");
        let mut flipped = bytes.clone();
        flipped[5] ^= 1;
        assert_eq!(decode(&flipped, 3), None, "a flipped bit");
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], 3),
            None,
            "a truncated file"
        );
    }

    #[test]
    fn a_committee_reads_the_logits_its_member_wrote_and_gets_the_same_bits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LogitsCache::new(dir.path());
        let ((a, file_a), (b, file_b)) = (saved_lenet(dir.path(), 1), saved_lenet(dir.path(), 2));
        let x = images(30, 7);

        // The single model's sweep writes its logits.
        let writer = Cached::new(&a, &file_a, &cache, Use::ReadWrite).unwrap();
        let written = writer.logits(x.view());
        assert_eq!(written, a.logits(x.view()));
        assert_eq!(writer.hits(), 0);

        // The committee's sweep reads them for member a, computes member b.
        let (ca, cb) = (
            Cached::new(&a, &file_a, &cache, Use::Read).unwrap(),
            Cached::new(&b, &file_b, &cache, Use::Read).unwrap(),
        );
        let cached = Committee::new(vec![&ca as &dyn Classifier, &cb]);
        let plain = Committee::new(vec![&a as &dyn Classifier, &b]);
        let with_cache = cached.logits(x.view());
        assert_eq!((ca.hits(), cb.hits()), (1, 0));
        assert_eq!(
            entry_sha(with_cache.view()),
            entry_sha(plain.logits(x.view()).view())
        );
        // Other images are another key: computed, not read.
        let other = images(30, 8);
        assert_eq!(ca.logits(other.view()), a.logits(other.view()));
        assert_eq!(ca.hits(), 1);
        // A reader writes nothing: b's logits were not cached.
        assert_eq!(
            std::fs::read_dir(dir.path().join(CACHE_FOLDER))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn other_weights_under_the_same_images_do_not_hit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LogitsCache::new(dir.path());
        let ((a, file_a), (b, file_b)) = (saved_lenet(dir.path(), 1), saved_lenet(dir.path(), 2));
        let x = images(10, 3);
        Cached::new(&a, &file_a, &cache, Use::ReadWrite)
            .unwrap()
            .logits(x.view());
        let reader = Cached::new(&b, &file_b, &cache, Use::Read).unwrap();
        assert_eq!(reader.logits(x.view()), b.logits(x.view()));
        assert_eq!(reader.hits(), 0);
    }

    #[test]
    fn a_damaged_entry_is_computed_again_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LogitsCache::new(dir.path());
        let (a, file_a) = saved_lenet(dir.path(), 1);
        let x = images(10, 3);
        let writer = Cached::new(&a, &file_a, &cache, Use::ReadWrite).unwrap();
        writer.logits(x.view());
        let entry = std::fs::read_dir(dir.path().join(CACHE_FOLDER))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&entry).unwrap();
        bytes[0] ^= 0x40;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(writer.logits(x.view()), a.logits(x.view()));
        assert_eq!(writer.hits(), 0, "the damaged entry was not used");
        assert_eq!(
            decode(&std::fs::read(&entry).unwrap(), 10),
            Some(a.logits(x.view()))
        );
        assert_eq!(writer.logits(x.view()), a.logits(x.view()));
        assert_eq!(writer.hits(), 1, "the rewritten entry is");
    }
}
