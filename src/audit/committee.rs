//! Auditing a committee (`advmnist gradcheck --committee`, `advmnist trace --committee`): its
//! input gradient checked in f64 against central differences on real test images, and one
//! image's trace through every member and the averaging.
//!
//! The committee's loss of image `n` is `L_n = -ln pbar_y`, `pbar = (1/M) sum_m softmax(z_m)`
//! (`models::committee`, docs/math.md section 11). Its gradient is checked, as one LeNet's
//! (`audit::gradcheck`), in two links of the chain rule:
//!
//! 1. **`committee.d_member_logits`**: `dL/dz_m = w_m (p_m - e_y)` for every member, as
//!    `member_logit_gradients_exact` computes it (the path of `Committee::input_gradient`),
//!    against central differences of `L` as a function of one member logit at a time, by an
//!    independent formula. With each member's odds against the true class,
//!    `S_m = sum_{k != y} exp(z_mk - z_my) = 1/p_my - 1` ([`gradcheck::odds_against`]), and
//!    `p_my = 1/(1 + S_m)`:
//!    `1/pbar_y - 1 = sum_m (1 - p_my) / sum_m p_my = sum_m S_m r_m`, `r_m = p_my / sum_m' p_m'y`,
//!    so `L = ln(1 + sum_m S_m r_m)` (`f64::ln_1p`), a sum of positive terms that keeps its
//!    relative accuracy for a confident committee, whose loss is tiny (the module comment of
//!    `audit::gradcheck` says why `logsumexp` differences would not). For one member `r = p/p`
//!    is exactly 1 and this is one LeNet's formula `ln(1 + S)` bit for bit.
//!    **`committee.logits_vjp`**: the same gradients by the other library path,
//!    `member_logits_vjp` of the committee's own softmax cross-entropy gradient
//!    `dc = pbar - e_y` on its logits `c = log pbar` (the path a pipeline in front of a
//!    committee, or the Caffe rule, takes through `Classifier::logits_vjp`), against the same
//!    differences. Both tensors hold every member's `(N, 10)`, members in order: flat index
//!    `m N 10 + n 10 + k`.
//! 2. **`input`**: `dL/dx = sum_m J_m^T dz_m`, computed as `Committee::input_gradient` computes
//!    it: `member_logit_gradients_exact`, then each member's own backward pass (`LeNet<f64>`) on
//!    the same chunks of [`INPUT_GRADIENT_CHUNK`](crate::models::lenet::INPUT_GRADIENT_CHUNK)
//!    images, added in member order by `chain_in_chunks`; against central differences of
//!    `F = sum_m sum_n <g_mn, z_mn(x)>` with the `g_m` of link 1 fixed
//!    ([`gradcheck::numeric_input_gradient_through`]). A pixel is a kink when *any* member's
//!    max-pool winners or ReLU signs change at `+h` or `-h`; it is then checked with every
//!    member on its own piece (`gradcheck::logits_on_piece`).
//!
//! Step, tolerance and floor are one LeNet's ([`gradcheck::STEP`], [`gradcheck::TOL`],
//! [`gradcheck::FLOOR`]). A committee of one gives one LeNet's `d_logits` and `input` checks
//! number for number (its weights are exactly 1: `models::committee`), which
//! `tests/integration/audit.rs` checks. Parameter gradients are not checked here: each member's
//! backward pass from its logits to its weights is the one `gradcheck --model MEMBER` checks.
//!
//! The trace of one image (`advmnist trace --committee`) names, in computing order:
//! `forward.input`; for member `k = 1..M`, `member{k}.forward.conv1` .. `member{k}.forward.logits`
//! (LeNet's names) and `member{k}.forward.softmax` (`p_k`); `committee.logits` (`c = log pbar`),
//! `committee.probs` (`pbar`), `committee.loss` (`-log pbar_y`), `committee.weights` (`w_k`,
//! shape `(M)`); for each member `member{k}.backward.logits` (`dL/dz_k = w_k (p_k - e_y)`) ..
//! `member{k}.backward.input` and `member{k}.grad.P` (the committee loss's gradient with
//! respect to member `k`'s parameter `P`); and `backward.input`, the committee's input
//! gradient, the members' `backward.input` added in member order.

use crate::audit::gradcheck::{
    self, compare, numeric_input_gradient_through, odds_against, GradcheckReport, NoStages,
};
use crate::audit::trace::{self, trace_backward, trace_forward, Trace};
use crate::data::IMAGE_SIDE;
use crate::kernels::scalar::Scalar;
use crate::layers::softmax_xent;
use crate::models::committee::{
    average_log_probs, chain_in_chunks, log_probs, member_logit_gradients_exact, member_logits_vjp,
    member_weights,
};
use crate::models::lenet::LeNet;
use ndarray::{Array1, Array2, Array4, ArrayView4};

/// The committee's loss of one image from its members' logit rows, by the independent formula
/// `ln(1 + sum_m S_m r_m)` (module comment). Members are summed in order, from the first.
pub fn committee_loss_by_odds(rows: &[Vec<f64>], y: usize) -> f64 {
    let odds: Vec<f64> = rows.iter().map(|row| odds_against(row, y)).collect();
    let p_true: Vec<f64> = odds.iter().map(|s| 1.0 / (1.0 + s)).collect();
    let total: f64 = p_true.iter().sum();
    odds.iter()
        .zip(&p_true)
        .map(|(s, p)| s * (p / total))
        .sum::<f64>()
        .ln_1p()
}

/// Central differences of each image's committee loss with respect to every member's logits
/// `member_logits[m] (N, 10)`, by [`committee_loss_by_odds`].
pub fn numeric_member_logit_gradient(
    member_logits: &[Array2<f64>],
    labels: &[u8],
) -> Vec<Array2<f64>> {
    let step = gradcheck::STEP;
    let mut out: Vec<Array2<f64>> = member_logits
        .iter()
        .map(|z| Array2::zeros(z.raw_dim()))
        .collect();
    for (n, &y) in labels.iter().enumerate() {
        let mut rows: Vec<Vec<f64>> = member_logits.iter().map(|z| z.row(n).to_vec()).collect();
        for m in 0..rows.len() {
            for k in 0..rows[m].len() {
                let orig = rows[m][k];
                rows[m][k] = orig + step;
                let plus = committee_loss_by_odds(&rows, y as usize);
                rows[m][k] = orig - step;
                let minus = committee_loss_by_odds(&rows, y as usize);
                rows[m][k] = orig;
                out[m][[n, k]] = (plus - minus) / (2.0 * step);
            }
        }
    }
    out
}

/// The committee's input gradient `sum_m J_m^T dz_m (N,1,28,28)` from the members' logit
/// gradients `d_members[m] (N, 10)`, as `Committee::input_gradient` chains it: in chunks of
/// [`INPUT_GRADIENT_CHUNK`](crate::models::lenet::INPUT_GRADIENT_CHUNK) images, each member's
/// own backward pass, added in member order (`chain_in_chunks`).
pub fn committee_input_gradient(
    members: &[LeNet<f64>],
    x: ArrayView4<f64>,
    d_members: &[Array2<f64>],
) -> Array4<f64> {
    chain_in_chunks(x, d_members, |m, xc, dz| {
        let (_, cache) = members[m].forward(xc, None);
        members[m]
            .backward(dz, &cache, None, true)
            .expect("input gradient requested")
    })
}

/// Every member's `(N, 10)` in member order, flat.
fn flat(members: &[Array2<f64>]) -> Vec<f64> {
    members.iter().flat_map(|a| a.iter().copied()).collect()
}

/// Checks the committee of `members` (in f64) on images `x (N,1,28,28)` with their true
/// `labels`: `committee.d_member_logits`, `committee.logits_vjp` and `input` (module comment).
pub fn gradcheck_committee(
    members: &[LeNet<f64>],
    x: ArrayView4<f64>,
    labels: &[u8],
) -> GradcheckReport {
    assert!(!members.is_empty(), "a committee needs at least one member");
    let n = x.dim().0;
    assert_eq!(labels.len(), n, "one label per image");
    let logits: Vec<Array2<f64>> = members.iter().map(|m| m.logits(x)).collect();
    let mut tensors = Vec::new();

    // Link 1, by the path of Committee::input_gradient.
    let (_, d_members) = member_logit_gradients_exact(&logits, labels);
    let numeric = flat(&numeric_member_logit_gradient(&logits, labels));
    let no_kinks = vec![false; numeric.len()];
    tensors.push(compare(
        "committee.d_member_logits",
        &flat(&d_members),
        &numeric,
        &no_kinks,
    ));
    // Link 1, by the path of Committee::logits_vjp.
    let c = average_log_probs(&log_probs(&logits));
    let (_, xent) = softmax_xent::forward(c.view(), labels);
    let dc = softmax_xent::backward(&xent, labels, 1.0);
    tensors.push(compare(
        "committee.logits_vjp",
        &flat(&member_logits_vjp(&logits, dc.view())),
        &numeric,
        &no_kinks,
    ));

    // Link 2: the input gradient.
    let analytic = committee_input_gradient(members, x, &d_members);
    let nets: Vec<&LeNet<f64>> = members.iter().collect();
    let views: Vec<_> = d_members.iter().map(|d| d.view()).collect();
    let (numeric, kinks) = numeric_input_gradient_through(&NoStages, &nets, x, &views);
    tensors.push(compare(
        "input",
        analytic.as_slice().expect("contiguous"),
        numeric.as_slice().expect("contiguous"),
        kinks.as_slice().expect("contiguous"),
    ));
    GradcheckReport {
        images: n,
        tensors,
        notes: vec![
            format!(
                "committee of {} member{}, L = -ln mean_m softmax(z_m)_y, exact rule, members' f32 weights widened exactly; committee.* hold every member's (N, 10), index m*N*10 + n*10 + k",
                members.len(),
                if members.len() == 1 { "" } else { "s" }
            ),
            "input: a pixel is a kink when any member's max-pool winners or ReLU signs change; parameter gradients are each member's own (gradcheck --model MEMBER)".to_string(),
        ],
    }
}

/// Traces one image `x (1,1,28,28)` with its true `label` through the committee of `members`
/// (names in the module comment). Each member's forward and backward pass is LeNet's trace
/// (`audit::trace`), the backward one started from the committee's `dL/dz_k`.
pub fn trace_committee<T: Scalar>(members: &[LeNet<T>], x: ArrayView4<T>, label: u8) -> Trace<T> {
    assert!(!members.is_empty(), "a committee needs at least one member");
    assert_eq!(
        x.dim(),
        (1, 1, IMAGE_SIDE, IMAGE_SIDE),
        "a trace is of one 28x28 image, (1,1,28,28)"
    );
    let mut t = trace::empty(label);
    t.push("forward.input", x.to_owned().into_dyn());
    let prefix = |k: usize| format!("member{}.", k + 1);
    let mut logits = Vec::with_capacity(members.len());
    let mut caches = Vec::with_capacity(members.len());
    for (k, net) in members.iter().enumerate() {
        let (z, cache) = trace_forward(&mut t, &prefix(k), net, x);
        t.push(
            &format!("{}forward.softmax", prefix(k)),
            softmax_xent::softmax(z.view()).into_dyn(),
        );
        logits.push(z);
        caches.push(cache);
    }
    let labels = [label];
    let s = log_probs(&logits);
    let c = average_log_probs(&s);
    t.push("committee.logits", c.clone().into_dyn());
    t.push("committee.probs", c.mapv(|v| v.exp()).into_dyn());
    let (losses, d_members) = member_logit_gradients_exact(&logits, &labels);
    t.push("committee.loss", losses.into_dyn());
    let weights: Array1<T> = member_weights(&s, &labels).iter().map(|w| w[0]).collect();
    t.push("committee.weights", weights.into_dyn());
    let mut total: Option<Array4<T>> = None;
    for (k, ((net, cache), dz)) in members.iter().zip(caches).zip(d_members).enumerate() {
        let dx = trace_backward(&mut t, &prefix(k), net, cache, dz);
        // Members in order, the first as is (as `chain_members`).
        total = Some(match total {
            None => dx,
            Some(sum) => sum + &dx,
        });
    }
    t.push(
        "backward.input",
        total.expect("at least one member").into_dyn(),
    );
    t
}

/// The names of a committee of `members` members' trace, in order (for docs and tests).
pub fn committee_tensor_names(members: usize) -> Vec<String> {
    let lenet = trace::tensor_names();
    let forward: Vec<&str> = lenet
        .iter()
        .copied()
        .filter(|n| n.starts_with("forward.") && *n != "forward.input" && *n != "forward.loss")
        .collect();
    let backward: Vec<&str> = lenet
        .iter()
        .copied()
        .filter(|n| n.starts_with("backward.") || n.starts_with("grad."))
        .collect();
    let mut names = vec!["forward.input".to_string()];
    for k in 1..=members {
        names.extend(forward.iter().map(|n| format!("member{k}.{n}")));
    }
    names.extend(
        [
            "committee.logits",
            "committee.probs",
            "committee.loss",
            "committee.weights",
        ]
        .map(String::from),
    );
    for k in 1..=members {
        names.extend(backward.iter().map(|n| format!("member{k}.{n}")));
    }
    names.push("backward.input".into());
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::{Ix2, Ix4};
    use rand_chacha::rand_core::SeedableRng;

    /// The odds formula is the committee's loss: against `-log pbar_y` from the library's
    /// log-domain `average_log_probs`, on moderate logits where both are accurate; and for a
    /// confident committee it keeps digits the log-domain difference loses.
    #[test]
    fn odds_formula_is_the_committee_loss() {
        let zs: Vec<Array2<f64>> = (0..3)
            .map(|m| random_array::<f64, Ix2>((4, 10), 30 + m) * 3.0)
            .collect();
        let labels = [0u8, 3, 9, 5];
        let c = average_log_probs(&log_probs(&zs));
        for (n, &y) in labels.iter().enumerate() {
            let rows: Vec<Vec<f64>> = zs.iter().map(|z| z.row(n).to_vec()).collect();
            let by_odds = committee_loss_by_odds(&rows, y as usize);
            let want = -c[[n, y as usize]];
            assert!(
                (by_odds - want).abs() < 1e-13 * want.max(1.0),
                "{by_odds} vs {want}"
            );
        }
        // Hand-worked: two members, two classes, label 0, member 1 with z = [40, 0] (S_1 =
        // e^-40), member 2 with z = [0, 0] (S_2 = 1, p = 1/2): pbar_0 = (1/(1+e^-40) + 1/2)/2,
        // L = ln(4/3) up to e^-40.
        let rows = vec![vec![40.0, 0.0], vec![0.0, 0.0]];
        assert!((committee_loss_by_odds(&rows, 0) - (4.0f64 / 3.0).ln()).abs() < 1e-15);
        // Both members sure (S = e^-30 each, r = 1/2 each): L = ln(1 + e^-30) = e^-30 - e^-60/2
        // to 1e-27 relative, kept to 1e-15 by the formula, where the log domain's
        // s_y = z_y - logsumexp(z) = 30 - (30 + 9.4e-14) is rounded at the scale of 30 (one ulp
        // 3.6e-15, some 4% of the answer).
        let rows = vec![vec![30.0, 0.0], vec![30.0, 0.0]];
        let l = committee_loss_by_odds(&rows, 0);
        let e = (-30.0f64).exp();
        assert!((l / (e - e * e / 2.0) - 1.0).abs() < 1e-15, "{l}");
    }

    /// One member: the numeric logit gradient is one LeNet's, bit for bit.
    #[test]
    fn one_member_differences_are_one_lenets() {
        let z = random_array::<f64, Ix2>((3, 10), 40) * 5.0;
        let labels = [2u8, 7, 7];
        let one = numeric_member_logit_gradient(std::slice::from_ref(&z), &labels);
        assert_eq!(one[0], gradcheck::numeric_logit_gradient(z.view(), &labels));
    }

    /// The weights of the trace sum to 1 and its names follow the scheme; its input gradient
    /// is the committee's (the members' VJPs of `w_m (p_m - e_y)`, added in order).
    #[test]
    fn committee_trace_names_and_input_gradient() {
        let members: Vec<LeNet<f64>> = (1..=2)
            .map(|seed| LeNet::xavier(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)))
            .collect();
        let x = random_array::<f64, Ix4>((1, 1, IMAGE_SIDE, IMAGE_SIDE), 41).mapv(|v| v.abs());
        let t = trace_committee(&members, x.view(), 6);
        let names: Vec<&str> = t.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, committee_tensor_names(2));
        let w = t.get("committee.weights").unwrap();
        assert!((w.sum() - 1.0).abs() < 1e-15, "{w}");
        let logits: Vec<Array2<f64>> = members.iter().map(|m| m.logits(x.view())).collect();
        let (_, d) = member_logit_gradients_exact(&logits, &[6]);
        let want = committee_input_gradient(&members, x.view(), &d);
        assert_eq!(t.get("backward.input").unwrap(), &want.into_dyn());
        assert!((t.get("committee.probs").unwrap().sum() - 1.0).abs() < 1e-15);
    }
}
