//! A committee (the study's sections 3.3 and 5.3): classifiers whose output is the average of
//! their softmax outputs, `pbar = (1/M) sum_m softmax(z_m)`. It is a [`Classifier`] like any
//! other, so every attack, sweep and report works on it unchanged, and white-box attacks follow
//! the gradient of the cross-entropy of the averaged prediction through every member's own
//! backward pass (docs/math.md, section 11).
//!
//! # Example
//!
//! Two quickly trained LeNets as a committee: its output is the average of theirs, and the
//! gradient-sign attack follows its own gradient (white-box) or one member's (transfer).
//!
//! ```
//! use advmnist::attacks::fgsm;
//! use advmnist::data::{default_data_dir, load_mnist};
//! use advmnist::models::lenet::error_pct;
//! use advmnist::models::{Classifier, Committee, DropoutRates};
//! use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_mnist(&default_data_dir())?;
//! // Two members, trained alike from different seeds (30 iterations of 32 images each).
//! let member = |seed| {
//!     let config = TrainConfig {
//!         iterations: 30,
//!         batch: 32,
//!         ..TrainConfig::lenet(DropoutRates::NONE, seed)
//!     };
//!     let state = TrainState::new(seed);
//!     train::train(&config, &data, state, &TrainOptions::default(), |_| {}).map(|s| s.net)
//! };
//! let (a, b) = (member(1)?, member(2)?);
//! let committee = Committee::new(vec![&a as &dyn Classifier, &b]);
//!
//! let test = data.test.subset(0..100);
//! let (x, labels) = (test.images.view(), &test.labels[..]);
//!
//! // The committee's output is the average of its members' softmax outputs.
//! let softmax = |z: ndarray::ArrayView1<f32>| {
//!     let e = z.mapv(f32::exp);
//!     &e / e.sum()
//! };
//! let image_0 = |model: &dyn Classifier| softmax(model.logits(x).row(0));
//! let average = (image_0(committee.members[0]) + image_0(committee.members[1])) / 2.0;
//! let difference = image_0(&committee) - &average;
//! assert!(difference.iter().all(|d| d.abs() < 1e-6));
//!
//! // White-box: FGSM through the committee's gradient (each member's own backward pass);
//! // transfer: the examples crafted on member a alone.
//! let error = |images: ndarray::ArrayView4<f32>| error_pct(&committee.predict(images), labels);
//! let white_box = fgsm::fgsm(&committee, x, labels, 0.1);
//! let transfer = fgsm::fgsm(&a, x, labels, 0.1);
//! let (clean, attacked, transferred) =
//!     (error(x), error(white_box.view()), error(transfer.view()));
//! println!(
//!     "committee error: clean {clean:.1}%, FGSM {attacked:.1}%, transferred {transferred:.1}%"
//! );
//! assert!(attacked > clean && transferred > clean);
//! # Ok(())
//! # }
//! ```
//!
//! # The output and its gradient
//!
//! Dimension legend: `M` members, `N` images, `K` classes.
//!
//! - `logits` are `log pbar (N, K)`, so `softmax(logits) = pbar` and their argmax is the
//!   committee's vote. They are computed from the members' log-softmaxes `s_m = log p_m` as
//!   `log pbar_k = logsumexp_m(s_m[k]) - log M`, which never takes the log of an underflowed
//!   average.
//! - The loss of image `n` is `-log pbar_y`, and its gradient with respect to member `m`'s
//!   logits is `w_m (p_m - e_y)` with `w_m = p_m[y] / (M pbar_y)`: each member's own softmax
//!   cross-entropy gradient, weighted by its share of the committee's probability of the true
//!   class. `w_m = exp(s_m[y] - logsumexp_m'(s_m'[y]))` is computed in the log domain, so it is
//!   never 0/0 (when every `p_m[y]` underflows) and is exactly 1 for a committee of one (then
//!   `s - (s + ln 1) = 0` and `exp(0) = 1`), which makes a committee of one its member bit for bit.
//! - Under [`GradientRule::CaffeF32`] the factor `p_m - e_y` is Caffe's float32 one
//!   (`softmax_xent::caffe_backward_f32`: `p_y - 1` by subtraction, 0 for a confident member),
//!   and the loss is Caffe's `-log(max(pbar_y, FLT_MIN))` of the averaged Caffe probabilities.
//!   The weights stay the log-domain ones: Caffe has no committee layer to copy, and the f32
//!   quotient `p_m[y] / (M pbar_y)` would be 0/0 where every member's `p_y` underflows; what
//!   float32 rounds away, and what the rule is about, is the subtraction.
//!
//! Committee files list members by path (relative to the file's folder) and SHA-256:
//! `{"format":"advmnist-committee","members":[{"path":"m1.safetensors","sha256":"..."}]}`
//! ([`write_committee_file`], [`read_committee_file`]).

use crate::hashing::sha256_hex;
use crate::io_safety::{folder_of, same_file, write_atomic, WriteError};
use crate::kernels::scalar::Scalar;
use crate::layers::softmax_xent;
use crate::models::gradient::GradientRule;
use crate::models::lenet::INPUT_GRADIENT_CHUNK;
use crate::models::{Classifier, LogitLoss, LossGradient};
use ndarray::{s, Array1, Array2, Array4, ArrayView2, ArrayView4, Axis};
use std::path::{Component, Path, PathBuf};

/// The value of a committee file's `format` key.
pub const COMMITTEE_FORMAT: &str = "advmnist-committee";

/// Classifiers whose prediction is the average of their softmax outputs.
pub struct Committee<'a> {
    pub members: Vec<&'a dyn Classifier>,
    /// The softmax cross-entropy backward of the input gradient (members' `p_m - e_y`).
    pub gradient: GradientRule,
}

impl<'a> Committee<'a> {
    /// A committee with the exact gradient. Panics without members (a programmer error: the
    /// command line and the committee file reader refuse an empty list with a message).
    pub fn new(members: Vec<&'a dyn Classifier>) -> Self {
        assert!(!members.is_empty(), "a committee needs at least one member");
        Committee {
            members,
            gradient: GradientRule::Exact,
        }
    }

    fn member_logits(&self, x: ArrayView4<f32>) -> Vec<Array2<f32>> {
        self.members.iter().map(|m| m.logits(x)).collect()
    }
}

impl Classifier for Committee<'_> {
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        average_log_probs(&log_probs(&self.member_logits(x)))
    }

    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        let n = x.dim().0;
        assert_eq!(labels.len(), n, "one label per image");
        // The members' logits and logit gradients are (N, 10) each: small for any N.
        let logits = self.member_logits(x);
        let (losses, d_logits) = member_logit_gradients(&logits, labels, self.gradient);
        (losses, self.chain(x, &d_logits))
    }

    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
        assert_eq!(d_logits.nrows(), x.dim().0, "one gradient row per image");
        let logits = self.member_logits(x);
        let d_members = member_logits_vjp(&logits, d_logits);
        self.chain(x, &d_members)
    }

    /// The default's arithmetic (the committee's logits, the loss's gradient, then
    /// `logits_vjp`), with the members' logits computed once instead of twice: the same bits,
    /// one forward pass per member fewer.
    fn loss_gradient(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        let members = self.member_logits(x);
        let logits = average_log_probs(&log_probs(&members));
        let (losses, d_logits) = loss.loss_and_gradient(0, logits.view());
        let d_members = member_logits_vjp(&members, d_logits.view());
        LossGradient {
            logits,
            loss: losses,
            grad: self.chain(x, &d_members),
        }
    }
}

impl Committee<'_> {
    /// `dL/dx = sum_m J_m^T dz_m` through each member's `logits_vjp`, in chunks of
    /// [`INPUT_GRADIENT_CHUNK`] images (LeNet's own chunk, so a member's backward pass runs on
    /// the same pieces as its own `input_gradient`) to bound the members' caches in memory.
    /// Members are added in order, the first one without adding it to zeros (`0 + -0 = +0`
    /// would change a bit of a committee of one).
    fn chain(&self, x: ArrayView4<f32>, d_members: &[Array2<f32>]) -> Array4<f32> {
        chain_in_chunks(x, d_members, |m, xc, dz| self.members[m].logits_vjp(xc, dz))
    }
}

/// `sum_m J_m^T dz_m` of images `x` in chunks of [`INPUT_GRADIENT_CHUNK`] images, each chunk's
/// members added by [`chain_members`]: `vjp(m, x_chunk, dz_chunk)` is member `m`'s
/// vector-Jacobian product on one chunk with its rows of `d_members[m]`. The committee's input
/// gradient and the audit's f64 check of it chain through here, so their chunks are the same.
pub fn chain_in_chunks<T: Scalar>(
    x: ArrayView4<T>,
    d_members: &[Array2<T>],
    mut vjp: impl FnMut(usize, ArrayView4<T>, ArrayView2<T>) -> Array4<T>,
) -> Array4<T> {
    let n = x.dim().0;
    let mut grad = Array4::zeros(x.raw_dim());
    for start in (0..n).step_by(INPUT_GRADIENT_CHUNK) {
        let range = start..(start + INPUT_GRADIENT_CHUNK).min(n);
        let xc = x.slice(s![range.clone(), .., .., ..]);
        let piece = chain_members(d_members, |m, dz| {
            vjp(m, xc, dz.slice(s![range.clone(), ..]))
        });
        grad.slice_mut(s![range, .., .., ..]).assign(&piece);
    }
    grad
}

/// `sum_m vjp(m, dz_m)`, members in order, the first one as is.
pub fn chain_members<T: Scalar>(
    d_members: &[Array2<T>],
    mut vjp: impl FnMut(usize, ArrayView2<T>) -> Array4<T>,
) -> Array4<T> {
    let mut grad = vjp(0, d_members[0].view());
    for (m, dz) in d_members.iter().enumerate().skip(1) {
        grad += &vjp(m, dz.view());
    }
    grad
}

/// Each member's log-softmax `s_m = log p_m (N, K)`.
pub fn log_probs<T: Scalar>(member_logits: &[Array2<T>]) -> Vec<Array2<T>> {
    member_logits
        .iter()
        .map(|z| softmax_xent::log_softmax(z.view()))
        .collect()
}

/// `logsumexp_m(v_m) - ln M` of one value per member: `log` of the mean of `exp(v_m)`, as
/// `max + ln(sum_m exp(v_m - max)) - ln M` (members summed in order).
fn log_mean_exp<T: Scalar>(values: impl Iterator<Item = T> + Clone, members: usize) -> T {
    let max = values.clone().fold(T::neg_infinity(), T::max);
    max + values.map(|v| (v - max).exp()).sum::<T>().ln() - T::of(members as f64).ln()
}

/// The committee's log-probabilities `log pbar (N, K)` from the members' log-softmaxes:
/// `log pbar[n, k] = logsumexp_m(s_m[n, k]) - ln M`. For one member this is `s` bit for bit.
pub fn average_log_probs<T: Scalar>(member_log_probs: &[Array2<T>]) -> Array2<T> {
    let m = member_log_probs.len();
    assert!(m > 0, "a committee needs at least one member");
    Array2::from_shape_fn(member_log_probs[0].raw_dim(), |(n, k)| {
        log_mean_exp(member_log_probs.iter().map(|s| s[[n, k]]), m)
    })
}

/// Each member's weight `w_m[n] = p_m[n, y_n] / (M pbar[n, y_n])`, computed in the log domain
/// as `exp(s_m[y] - logsumexp_m'(s_m'[y]))`: never 0/0, and exactly 1 for one member.
pub fn member_weights<T: Scalar>(member_log_probs: &[Array2<T>], labels: &[u8]) -> Vec<Array1<T>> {
    let lse: Array1<T> = Array1::from_shape_fn(labels.len(), |n| {
        let y = labels[n] as usize;
        // logsumexp over members = log_mean_exp + ln M; written out so that one member gives
        // exactly s (ln 1 = 0).
        let values = member_log_probs.iter().map(|s| s[[n, y]]);
        let max = values.clone().fold(T::neg_infinity(), T::max);
        max + values.map(|v| (v - max).exp()).sum::<T>().ln()
    });
    member_log_probs
        .iter()
        .map(|s| {
            Array1::from_shape_fn(labels.len(), |n| {
                (s[[n, labels[n] as usize]] - lse[n]).exp()
            })
        })
        .collect()
}

/// The exact rule: each image's committee loss `-log pbar_y (N)` and each member's logit
/// gradient `w_m (p_m - e_y) (N, K)`, `p_m - e_y` by `softmax_xent::backward` (its `p_y - 1`
/// is `-sum_{k != y} p_k`). Any precision: f64 for the gradient checks.
pub fn member_logit_gradients_exact<T: Scalar>(
    member_logits: &[Array2<T>],
    labels: &[u8],
) -> (Array1<T>, Vec<Array2<T>>) {
    let s = log_probs(member_logits);
    let losses = average_log_probs(&s)
        .axis_iter(Axis(0))
        .zip(labels)
        .map(|(row, &y)| -row[y as usize])
        .collect();
    let weights = member_weights(&s, labels);
    let d = member_logits
        .iter()
        .zip(&weights)
        .map(|(z, w)| {
            let (_, cache) = softmax_xent::forward(z.view(), labels);
            weigh_rows(softmax_xent::backward(&cache, labels, T::one()), w)
        })
        .collect();
    (losses, d)
}

/// Each image's committee loss and each member's logit gradient under `rule` (module comment).
pub fn member_logit_gradients(
    member_logits: &[Array2<f32>],
    labels: &[u8],
    rule: GradientRule,
) -> (Array1<f32>, Vec<Array2<f32>>) {
    match rule {
        GradientRule::Exact => member_logit_gradients_exact(member_logits, labels),
        GradientRule::CaffeF32 => {
            let weights = member_weights(&log_probs(member_logits), labels);
            let probs: Vec<Array2<f32>> = member_logits
                .iter()
                .map(|z| softmax_xent::caffe_softmax_f32(z.view()))
                .collect();
            // The averaged prediction in f32, members added in order, then divided by M.
            let mut pbar = probs[0].clone();
            for p in &probs[1..] {
                pbar += p;
            }
            pbar /= probs.len() as f32;
            let losses = softmax_xent::caffe_losses_f32(pbar.view(), labels);
            let d = probs
                .iter()
                .zip(&weights)
                .map(|(p, w)| weigh_rows(softmax_xent::caffe_backward_f32(p.view(), labels), w))
                .collect();
            (losses, d)
        }
    }
}

/// Row `n` of `d` times `w[n]`.
fn weigh_rows<T: Scalar>(mut d: Array2<T>, w: &Array1<T>) -> Array2<T> {
    for (mut row, &w) in d.axis_iter_mut(Axis(0)).zip(w) {
        row.mapv_inplace(|v| v * w);
    }
    d
}

/// The vector-Jacobian product of the committee's logits `c = log pbar` with respect to each
/// member's logits: for an upstream `dc (N, K)`,
/// `dz_m[j] = r_m[j] dc[j] - p_m[j] sum_k r_m[k] dc[k]` with
/// `r_m[k] = p_m[k] / (M pbar[k]) = exp(s_m[k] - logsumexp_m'(s_m'[k]))` (docs/math.md, 11).
pub fn member_logits_vjp<T: Scalar>(
    member_logits: &[Array2<T>],
    d_committee: ArrayView2<T>,
) -> Vec<Array2<T>> {
    let s = log_probs(member_logits);
    let members = s.len();
    let c = average_log_probs(&s);
    let ln_m = T::of(members as f64).ln();
    s.iter()
        .map(|s_m| {
            let mut dz = Array2::zeros(s_m.raw_dim());
            for n in 0..s_m.nrows() {
                // r_m[k] = exp(s_m[k] - (c[k] + ln M)).
                let r: Vec<T> = (0..s_m.ncols())
                    .map(|k| (s_m[[n, k]] - (c[[n, k]] + ln_m)).exp())
                    .collect();
                let dot: T = r
                    .iter()
                    .enumerate()
                    .map(|(k, &r)| r * d_committee[[n, k]])
                    .sum();
                for (k, &r) in r.iter().enumerate() {
                    dz[[n, k]] = r * d_committee[[n, k]] - s_m[[n, k]].exp() * dot;
                }
            }
            dz
        })
        .collect()
}

/// A committee file's faults, each naming the file (and the member where there is one).
#[derive(Debug, thiserror::Error)]
pub enum CommitteeFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a committee file (malformed JSON: {reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: format is '{found}', expected '{COMMITTEE_FORMAT}'")]
    WrongFormat { path: PathBuf, found: String },
    #[error("{path}: lists no members")]
    NoMembers { path: PathBuf },
    #[error("{path}: member {member} cannot be read: {source}")]
    MissingMember {
        path: PathBuf,
        member: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: member {member} has SHA-256 {found}, but the committee file records {expected} (the member file changed after the committee was written)")]
    HashMismatch {
        path: PathBuf,
        member: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: writing the committee file over its member {member} would destroy it")]
    OverwritesMember { path: PathBuf, member: PathBuf },
    #[error("--committee {spec}: {reason}")]
    BadList { spec: String, reason: String },
    /// Writing the file failed (the message names it).
    #[error(transparent)]
    Write(#[from] WriteError),
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitteeFile {
    format: String,
    members: Vec<MemberEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberEntry {
    path: String,
    sha256: String,
}

fn sha256_of(committee: &Path, member: &Path) -> Result<String, CommitteeFileError> {
    let bytes = std::fs::read(member).map_err(|source| CommitteeFileError::MissingMember {
        path: committee.into(),
        member: member.into(),
        source,
    })?;
    Ok(sha256_hex(&bytes))
}

/// `target` relative to the folder `from` (both made absolute first), with `..` where needed.
fn relative_to(target: &Path, from: &Path) -> std::io::Result<PathBuf> {
    let target = std::fs::canonicalize(target)?;
    let from = std::fs::canonicalize(from)?;
    let (t, f): (Vec<Component>, Vec<Component>) =
        (target.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    Ok(rel)
}

/// Writes a committee file at `path` listing `members` (each a path as the caller gives it)
/// with their SHA-256, paths relative to the committee file's folder, atomically
/// (`io_safety::write_atomic`). Refuses to write over a member.
pub fn write_committee_file(path: &Path, members: &[PathBuf]) -> Result<(), CommitteeFileError> {
    if members.is_empty() {
        return Err(CommitteeFileError::NoMembers { path: path.into() });
    }
    let folder = folder_of(path);
    let mut entries = Vec::with_capacity(members.len());
    for member in members {
        if same_file(path, member) {
            return Err(CommitteeFileError::OverwritesMember {
                path: path.into(),
                member: member.clone(),
            });
        }
        let sha256 = sha256_of(path, member)?;
        let rel = relative_to(member, folder).map_err(|source| CommitteeFileError::Io {
            path: path.into(),
            source,
        })?;
        entries.push(MemberEntry {
            path: rel.to_string_lossy().into_owned(),
            sha256,
        });
    }
    let file = CommitteeFile {
        format: COMMITTEE_FORMAT.into(),
        members: entries,
    };
    let mut text = serde_json::to_string_pretty(&file).expect("plain strings serialise");
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Reads a committee file: its members' paths (relative ones resolved against the file's
/// folder), each member's SHA-256 checked against the recorded one.
pub fn read_committee_file(path: &Path) -> Result<Vec<PathBuf>, CommitteeFileError> {
    let text = std::fs::read(path).map_err(|source| CommitteeFileError::Io {
        path: path.into(),
        source,
    })?;
    // The format key first, so that another kind of JSON is named as such.
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| CommitteeFileError::Malformed {
            path: path.into(),
            reason: e.to_string(),
        })?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(COMMITTEE_FORMAT) => {}
        found => {
            return Err(CommitteeFileError::WrongFormat {
                path: path.into(),
                found: found.unwrap_or("(none)").into(),
            })
        }
    }
    let file: CommitteeFile =
        serde_json::from_value(value).map_err(|e| CommitteeFileError::Malformed {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if file.members.is_empty() {
        return Err(CommitteeFileError::NoMembers { path: path.into() });
    }
    let folder = folder_of(path);
    file.members
        .iter()
        .map(|entry| {
            let member = folder.join(&entry.path);
            let found = sha256_of(path, &member)?;
            if !found.eq_ignore_ascii_case(entry.sha256.trim()) {
                return Err(CommitteeFileError::HashMismatch {
                    path: path.into(),
                    member,
                    expected: entry.sha256.clone(),
                    found,
                });
            }
            Ok(member)
        })
        .collect()
}

/// The members named by a `--committee` argument: a committee file (a single name ending in
/// `.json`, read and checked by [`read_committee_file`]) or model files separated by commas.
pub fn committee_members(spec: &str) -> Result<Vec<PathBuf>, CommitteeFileError> {
    let single = !spec.contains(',');
    if single
        && Path::new(spec.trim())
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return read_committee_file(Path::new(spec.trim()));
    }
    let members: Vec<PathBuf> = spec.split(',').map(|p| PathBuf::from(p.trim())).collect();
    if members.iter().any(|p| p.as_os_str().is_empty()) {
        return Err(CommitteeFileError::BadList {
            spec: spec.into(),
            reason: "an empty member name (two commas in a row, or one at an end)".into(),
        });
    }
    Ok(members)
}

/// The name a committee gets in every output: `committee:C.json` or `committee:a,b,c`.
pub fn committee_name(spec: &str) -> String {
    format!("committee:{}", spec.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::{Ix2, Ix3};

    fn members(m: usize, seed: u64) -> Vec<Array2<f64>> {
        let z = random_array::<f64, Ix3>((m, 4, 10), seed) * 4.0;
        z.outer_iter().map(|z| z.to_owned()).collect()
    }

    fn committee_loss(zs: &[Array2<f64>], labels: &[u8]) -> f64 {
        let c = average_log_probs(&log_probs(zs));
        labels
            .iter()
            .enumerate()
            .map(|(n, &y)| -c[[n, y as usize]])
            .sum()
    }

    /// `d(sum_n -log pbar_y)/dz_m` against central differences in f64, for each of three members
    /// (the function is smooth in the logits: no kinks, so the layers' tolerance applies).
    #[test]
    fn member_logit_gradients_match_finite_differences() {
        let zs = members(3, 11);
        let labels = [3u8, 0, 9, 3];
        let (losses, d) = member_logit_gradients_exact(&zs, &labels);
        assert!((losses.sum() - committee_loss(&zs, &labels)).abs() < 1e-12);
        let one = Array1::from_elem(1, 1.0);
        for m in 0..zs.len() {
            let num = numeric_gradient(&zs[m], &one, |z| {
                let mut zs = zs.clone();
                zs[m] = z.clone();
                Array1::from_elem(1, committee_loss(&zs, &labels))
            });
            assert_gradient_matches(&format!("member {m} dz"), &d[m].clone().into_dyn(), &num);
        }
    }

    /// The committee's logits are log pbar: their softmax is the members' mean softmax.
    #[test]
    fn logits_are_the_log_of_the_mean_probability() {
        let zs = members(3, 12);
        let c = average_log_probs(&log_probs(&zs));
        let mean = zs
            .iter()
            .map(|z| softmax_xent::softmax(z.view()))
            .fold(Array2::<f64>::zeros((4, 10)), |a, p| a + p)
            / 3.0;
        crate::testutil::assert_close(
            "exp(log pbar)",
            c.mapv(f64::exp).view().into_dyn(),
            mean.view().into_dyn(),
            1e-15,
            1e-13,
        );
    }

    /// The vector-Jacobian product of `c = log pbar` with respect to each member's logits.
    #[test]
    fn logits_vjp_matches_finite_differences() {
        let zs = members(2, 13);
        let upstream = random_array::<f64, Ix2>((4, 10), 14);
        let d = member_logits_vjp(&zs, upstream.view());
        for m in 0..zs.len() {
            let num = numeric_gradient(&zs[m], &upstream, |z| {
                let mut zs = zs.clone();
                zs[m] = z.clone();
                average_log_probs(&log_probs(&zs))
            });
            assert_gradient_matches(&format!("member {m} vjp"), &d[m].clone().into_dyn(), &num);
        }
    }

    /// Hand-worked: two members, two classes, label 0. Member 1 is sure (p = [1, 0] up to
    /// e^-40), member 2 undecided (p = [1/2, 1/2]): pbar_0 = 3/4, so w_1 = 1 / (2 * 3/4) = 2/3 and
    /// w_2 = (1/2) / (3/2) = 1/3. Member 2's gradient is w_2 (p - e_0) = [-1/6, 1/6].
    #[test]
    fn weights_hand_worked() {
        let zs = vec![
            ndarray::arr2(&[[40.0f64, 0.0]]),
            ndarray::arr2(&[[0.0f64, 0.0]]),
        ];
        let w = member_weights(&log_probs(&zs), &[0]);
        assert!((w[0][0] - 2.0 / 3.0).abs() < 1e-15 && (w[1][0] - 1.0 / 3.0).abs() < 1e-15);
        let (loss, d) = member_logit_gradients_exact(&zs, &[0]);
        assert!((loss[0] - (4.0f64 / 3.0).ln()).abs() < 1e-15);
        assert!(
            (d[1][[0, 0]] + 1.0 / 6.0).abs() < 1e-15 && (d[1][[0, 1]] - 1.0 / 6.0).abs() < 1e-15
        );
    }

    /// Every member's p_y underflows (log p_y = -200 and -300, p_y = 0 in f32): the weights are
    /// still finite and sum to 1 (1/(1 + e^-100) and e^-100/(1 + e^-100)), not 0/0.
    #[test]
    fn weights_never_divide_zero_by_zero() {
        let zs = vec![
            ndarray::arr2(&[[-200.0f32, 0.0]]),
            ndarray::arr2(&[[-300.0f32, 0.0]]),
        ];
        let w = member_weights(&log_probs(&zs), &[0]);
        assert_eq!(w[0][0], 1.0);
        assert!(w[1][0] >= 0.0 && w[1][0] < 1e-40);
        let (_, d) = member_logit_gradients(&zs, &[0], GradientRule::CaffeF32);
        assert!(d.iter().all(|d| d.iter().all(|v| v.is_finite())));
    }

    /// One member: weights exactly 1, logits its log-softmax, gradients its own, bit for bit.
    #[test]
    fn one_member_is_its_member_in_the_logit_domain() {
        let z = random_array::<f32, Ix2>((5, 10), 15) * 30.0;
        let labels = [1u8, 2, 3, 4, 5];
        let s = log_probs(std::slice::from_ref(&z));
        assert!(member_weights(&s, &labels)[0].iter().all(|&w| w == 1.0));
        assert_eq!(average_log_probs(&s), softmax_xent::log_softmax(z.view()));
        for rule in GradientRule::ALL {
            let (losses, d) = member_logit_gradients(std::slice::from_ref(&z), &labels, rule);
            let (want_losses, want_d) = rule.loss_and_logit_gradient(z.view(), &labels);
            assert_eq!(d[0], want_d, "{rule}");
            assert_eq!(losses, want_losses, "{rule}");
        }
    }
}
