//! The pool a stage trains on: the natural training set, then the adversarial set of every
//! earlier snapshot, in this order, each keeping the training set's order and labels.

use super::eq3::fill_adversarial;
use crate::data::Dataset;
use crate::data::{IMAGE_SIDE, PIXELS};
use crate::hashing::{f32_le_bytes, sha256_hex, Sha256Stream};
use crate::models::lenet::LeNet;
use ndarray::{s, Array4, ArrayView4, Axis};
use serde::{Deserialize, Serialize};

/// One set of adversarial versions of the training set, made by one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdversarialSet {
    pub from_snapshot: usize,
    pub images: usize,
    /// SHA-256 of the set's pixels as little-endian f32, image after image.
    pub sha256: String,
}

/// What a stage trains on: the natural training set and the adversarial sets of earlier
/// snapshots, in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolComposition {
    pub natural: usize,
    pub adversarial: Vec<AdversarialSet>,
}

impl PoolComposition {
    pub fn images(&self) -> usize {
        self.natural + self.adversarial.iter().map(|s| s.images).sum::<usize>()
    }
}

/// SHA-256 of images as little-endian f32, image after image.
pub fn images_sha256(images: ArrayView4<f32>) -> String {
    if let Some(values) = images.as_slice() {
        return sha256_hex(&f32_le_bytes(values));
    }
    let mut hasher = Sha256Stream::new();
    let mut buffer = Vec::with_capacity(4 * PIXELS);
    for image in images.outer_iter() {
        buffer.clear();
        buffer.extend(image.iter().flat_map(|v| v.to_le_bytes()));
        hasher.update(&buffer);
    }
    hasher.hex()
}

/// The pool a stage trains on, grown in place: one buffer with room for every set the run
/// will add, so that adding a set never copies the pool (at stage 5 it is 1.13 GB).
pub(super) struct Pool {
    pub(super) data: Dataset,
    pub(super) composition: PoolComposition,
}

impl Pool {
    pub(super) fn natural(train: &Dataset, sets_to_come: usize) -> Pool {
        let n = train.len();
        let mut pixels = Vec::with_capacity((1 + sets_to_come) * n * PIXELS);
        pixels.extend(train.images.iter());
        Pool {
            data: Dataset {
                images: Array4::from_shape_vec((n, 1, IMAGE_SIDE, IMAGE_SIDE), pixels)
                    .expect("n images"),
                labels: train.labels.clone(),
            },
            composition: PoolComposition {
                natural: n,
                adversarial: Vec::new(),
            },
        }
    }

    /// Makes snapshot `from_snapshot`'s adversarial versions of the natural images at the end
    /// of the pool, and returns their record.
    pub(super) fn add_adversarial(
        &mut self,
        model: &LeNet<f32>,
        from_snapshot: usize,
        eps: f32,
        c: f32,
        progress: impl FnMut(usize),
    ) -> AdversarialSet {
        let n = self.composition.natural;
        let old = std::mem::replace(
            &mut self.data.images,
            Array4::zeros((0, 1, IMAGE_SIDE, IMAGE_SIDE)),
        );
        let (mut pixels, offset) = old.into_raw_vec_and_offset();
        debug_assert_eq!(offset, Some(0));
        let start = pixels.len() / PIXELS;
        pixels.resize(pixels.len() + n * PIXELS, 0.0);
        let mut images = Array4::from_shape_vec((start + n, 1, IMAGE_SIDE, IMAGE_SIDE), pixels)
            .expect("whole images");
        let (natural, mut rest) = images.view_mut().split_at(Axis(0), n);
        let labels = &self.data.labels[..n];
        fill_adversarial(
            model,
            natural.view(),
            labels,
            eps,
            c,
            rest.slice_mut(s![start - n.., .., .., ..]),
            progress,
        );
        let set = AdversarialSet {
            from_snapshot,
            images: n,
            sha256: images_sha256(images.slice(s![start.., .., .., ..])),
        };
        self.data.images = images;
        self.data.labels.extend_from_within(..n);
        self.composition.adversarial.push(set.clone());
        set
    }

    /// Drops every adversarial set, leaving the natural images (the `newest_only` variant, before
    /// the newest set is added). The buffer keeps its room.
    pub(super) fn drop_adversarial(&mut self) {
        let n = self.composition.natural;
        let old = std::mem::replace(
            &mut self.data.images,
            Array4::zeros((0, 1, IMAGE_SIDE, IMAGE_SIDE)),
        );
        let (mut pixels, _) = old.into_raw_vec_and_offset();
        pixels.truncate(n * PIXELS);
        self.data.images =
            Array4::from_shape_vec((n, 1, IMAGE_SIDE, IMAGE_SIDE), pixels).expect("n images");
        self.data.labels.truncate(n);
        self.composition.adversarial.clear();
    }

    /// The pixels of the newest set (the last `natural` images of the pool).
    pub(super) fn newest(&self) -> ArrayView4<'_, f32> {
        let n = self.composition.natural;
        let len = self.data.len();
        self.data.images.slice(s![len - n.., .., .., ..])
    }

    /// Writes `pixels` (a copy of [`Pool::newest`]) back over the newest set.
    pub(super) fn restore_newest(&mut self, pixels: ArrayView4<f32>) {
        let n = self.composition.natural;
        let len = self.data.len();
        self.data
            .images
            .slice_mut(s![len - n.., .., .., ..])
            .assign(&pixels);
    }

    /// Makes the newest set again with `model` (the `refresh_every` variant): Eq. 3 on the
    /// natural images, as [`Pool::add_adversarial`] makes a set. Returns its SHA-256.
    pub(super) fn remake_newest(
        &mut self,
        model: &LeNet<f32>,
        eps: f32,
        c: f32,
        progress: impl FnMut(usize),
    ) -> String {
        let n = self.composition.natural;
        let len = self.data.len();
        assert!(len >= 2 * n, "the pool holds an adversarial set");
        let (natural, mut rest) = self.data.images.view_mut().split_at(Axis(0), n);
        fill_adversarial(
            model,
            natural.view(),
            &self.data.labels[..n],
            eps,
            c,
            rest.slice_mut(s![len - 2 * n.., .., .., ..]),
            progress,
        );
        images_sha256(self.newest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;

    /// A contiguous set is hashed in one piece, any other view value by value: the same hash,
    /// that of the images' little-endian bytes.
    #[test]
    fn images_hash_alike_whatever_their_layout() {
        let images = random_array::<f32, ndarray::Ix4>((6, 1, IMAGE_SIDE, IMAGE_SIDE), 3);
        let every_other = images.slice(s![..;2, .., .., ..]);
        assert!(every_other.as_slice().is_none());
        let bytes: Vec<u8> = every_other.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(images_sha256(every_other), sha256_hex(&bytes));
        assert_eq!(
            images_sha256(every_other.to_owned().view()),
            sha256_hex(&bytes)
        );
        assert_ne!(images_sha256(images.view()), sha256_hex(&bytes));
    }
}
