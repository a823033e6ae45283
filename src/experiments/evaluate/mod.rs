//! An evaluation a sceptic accepts: every attack the field asks for, on one model, committee or
//! pipeline, at several L-infinity budgets, with the worst case per image, the checks of Carlini
//! et al., "On Evaluating Adversarial Robustness" (2019), as verdicts ([`checklist`]), and
//! certified bounds beside the attacks.
//!
//! The attacks, each on every image of the set (an image the model misclassifies clean counts
//! as an error of every attack):
//! - FGSM and PGD (`attacks::fgsm`, `attacks::pgd`, 10 steps of `2.5 eps / 10` from a random
//!   start), the study's attack and its iterative form;
//! - APGD-CE and APGD-T (`attacks::apgd`), parameter-free, as AutoAttack's standard version;
//! - Square (`attacks::square`), gradient-free;
//! - transfer: PGD's examples made on an independent LeNet (the source), judged by the model.
//!
//! The worst case of an image is an error if any attack fooled it; the protocol is therefore
//! AutoAttack's ("APGD-CE, APGD-T, Square", FAB-T left out) widened by FGSM, PGD and transfer.
//! AutoAttack runs each attack on the images the earlier ones left; here every attack runs on
//! every image, so that each has its own figure (which the checklist compares), and the worst
//! case is the union. Since every image's search depends on that image alone (its own random
//! streams), the union is what the sequential protocol finds.
//!
//! Each result carries the study's measure beside the budget: the average distortion per pixel
//! (section 3.2) of the adversarial examples the attack found, over the images it moved from
//! right to wrong.

pub mod checklist;

use crate::attacks::apgd::{self, ApgdConfig, ApgdLoss};
use crate::attacks::distortion::distortion_per_pixel;
use crate::attacks::pgd::{self, PgdConfig};
use crate::attacks::square::{self, SquareConfig};
use crate::attacks::{fgsm, Outcome};
use crate::models::lenet::argmax_rows;
use crate::models::Classifier;
use ndarray::{s, Array4, ArrayView4, Axis};
use serde::{Deserialize, Serialize};

/// The attacks of an evaluation, in the order they run and are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    Fgsm,
    Pgd,
    ApgdCe,
    ApgdT,
    Square,
    Transfer,
}

impl Attack {
    pub const ALL: [Attack; 6] = [
        Attack::Fgsm,
        Attack::Pgd,
        Attack::ApgdCe,
        Attack::ApgdT,
        Attack::Square,
        Attack::Transfer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Fgsm => "fgsm",
            Attack::Pgd => "pgd",
            Attack::ApgdCe => "apgd-ce",
            Attack::ApgdT => "apgd-t",
            Attack::Square => "square",
            Attack::Transfer => "transfer",
        }
    }

    /// Whether the attack follows the model's own gradient (white-box).
    pub fn white_box(self) -> bool {
        matches!(
            self,
            Attack::Fgsm | Attack::Pgd | Attack::ApgdCe | Attack::ApgdT
        )
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an evaluation runs: recorded with its results, so that a resumed run can tell its own
/// partial results from another's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The L-infinity budgets.
    pub eps: Vec<f32>,
    /// The first `images` test images.
    pub images: usize,
    pub seed: u64,
    /// PGD's steps (FGSM's iterative form and the transfer attack's).
    pub pgd_steps: usize,
    /// APGD's iterations per run.
    pub iterations: usize,
    /// APGD's runs from random starts per loss or target.
    pub restarts: usize,
    /// APGD-T's target classes.
    pub targets: usize,
    /// Square's queries per image.
    pub queries: usize,
    /// The checklist's stronger run: APGD-CE with this many restarts, on what the worst case
    /// left.
    pub stronger_restarts: usize,
    /// Draws of the model's randomness every attack averages over (1: none).
    pub eot_draws: u64,
}

impl Settings {
    /// AutoAttack's standard settings at `eps` on `images` images.
    pub fn standard(eps: Vec<f32>, images: usize, seed: u64) -> Self {
        Settings {
            eps,
            images,
            seed,
            pgd_steps: pgd::DEFAULT_STEPS,
            iterations: apgd::DEFAULT_ITERATIONS,
            restarts: apgd::DEFAULT_RESTARTS,
            targets: apgd::DEFAULT_TARGETS,
            queries: square::DEFAULT_QUERIES,
            stronger_restarts: 5,
            eot_draws: 1,
        }
    }
}

/// One attack at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    pub attack: Attack,
    pub eps: f32,
    /// Images misclassified after the attack, clean errors included.
    pub errors: usize,
    pub images: usize,
    pub error_pct: f64,
    /// Images the attack moved from right to wrong.
    pub found: usize,
    /// The mean average distortion per pixel of those images' adversarial examples (`None`
    /// when it found none).
    pub distortion: Option<f64>,
    /// The largest `|x' - x|` of any pixel it produced.
    pub max_change: f32,
    pub seconds: f64,
    /// Per image, `1` where misclassified after the attack, else `0`.
    pub errors_by_image: String,
}

impl AttackResult {
    /// Per image, whether it is an error after the attack.
    pub fn error_flags(&self) -> Vec<bool> {
        self.errors_by_image.chars().map(|c| c == '1').collect()
    }
}

/// Everything an evaluation has run so far: what [`evaluate`] hands to its `store` after each
/// attack, and takes back to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub settings: Settings,
    /// Errors on the clean images, per image.
    pub clean_errors: String,
    pub attacks: Vec<AttackResult>,
    /// The checklist's stronger run at each budget: APGD-CE with more restarts on the images
    /// the worst case left right; `errors` counts the worst case and these together.
    pub stronger: Vec<AttackResult>,
    /// APGD-CE at eps = 1, where every image can be made anything.
    pub unbounded: Option<AttackResult>,
}

/// A step of the evaluation, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Attack(Attack, f32),
    Stronger(f32),
    Unbounded,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Attack(a, eps) => write!(f, "{a} at eps {eps}"),
            Step::Stronger(eps) => write!(f, "APGD-CE with more restarts at eps {eps}"),
            Step::Unbounded => write!(f, "APGD-CE at eps 1"),
        }
    }
}

/// What is evaluated.
pub struct Subject<'a> {
    pub model: &'a dyn Classifier,
    /// The independent model whose PGD examples make the transfer attack.
    pub source: &'a dyn Classifier,
}

/// The steps of an evaluation in order, each with a rough cost (in gradient passes per image)
/// for the progress bar's ETA.
pub fn plan(settings: &Settings) -> Vec<(Step, f64)> {
    let eot = settings.eot_draws.max(1) as f64;
    let mut steps = Vec::new();
    for &eps in &settings.eps {
        for attack in Attack::ALL {
            // Searches stop per image once it is fooled: about a third of their budget is
            // spent on a typical model.
            let cost = match attack {
                Attack::Fgsm => eot,
                Attack::Pgd => settings.pgd_steps as f64 * eot,
                Attack::ApgdCe => (settings.iterations * settings.restarts) as f64 * eot / 3.0,
                Attack::ApgdT => {
                    (settings.iterations * settings.restarts * settings.targets) as f64 * eot / 9.0
                }
                Attack::Square => settings.queries as f64 * eot / 9.0,
                Attack::Transfer => settings.pgd_steps as f64,
            };
            steps.push((Step::Attack(attack, eps), cost));
        }
    }
    for &eps in &settings.eps {
        let cost = (settings.iterations * settings.stronger_restarts) as f64 * eot / 10.0;
        steps.push((Step::Stronger(eps), cost));
    }
    steps.push((Step::Unbounded, settings.iterations as f64 * eot / 20.0));
    steps
}

/// Runs every step of [`plan`] not already in `resumed` (which must have been made with the
/// same settings on the same images), calling `store(record, step)` after each step and
/// `progress(step, done, total)` before each. `x` and `labels` are the first
/// `settings.images` test images.
pub fn evaluate<E>(
    subject: &Subject<'_>,
    x: ArrayView4<f32>,
    labels: &[u8],
    settings: &Settings,
    resumed: Option<Record>,
    mut store: impl FnMut(&Record, Step) -> Result<(), E>,
    mut progress: impl FnMut(Step, f64, f64),
) -> Result<Record, E> {
    assert_eq!(x.dim().0, labels.len(), "one label per image");
    assert_eq!(x.dim().0, settings.images, "the settings' images");
    let clean = flags(&subject.model.predict(x), labels);
    let mut record = match resumed {
        Some(r) if r.settings == *settings && r.clean_errors == clean => r,
        _ => Record {
            settings: settings.clone(),
            clean_errors: clean,
            attacks: Vec::new(),
            stronger: Vec::new(),
            unbounded: None,
        },
    };
    let clean_wrong: Vec<bool> = record.clean_errors.chars().map(|c| c == '1').collect();
    let steps = plan(settings);
    let total: f64 = steps.iter().map(|(_, c)| c).sum();
    let mut done = 0.0;
    for (step, cost) in steps {
        let finished = match step {
            Step::Attack(a, eps) => record.attacks.iter().any(|r| r.attack == a && r.eps == eps),
            Step::Stronger(eps) => record.stronger.iter().any(|r| r.eps == eps),
            Step::Unbounded => record.unbounded.is_some(),
        };
        if !finished {
            progress(step, done, total);
            let started = std::time::Instant::now();
            match step {
                Step::Attack(attack, eps) => {
                    let adversarial = run_attack(subject, x, labels, settings, attack, eps);
                    let r = result(
                        subject.model,
                        x,
                        labels,
                        &clean_wrong,
                        attack,
                        eps,
                        &adversarial,
                        started,
                    );
                    record.attacks.push(r);
                }
                Step::Stronger(eps) => {
                    let r = stronger(subject.model, x, labels, settings, &record, eps, started);
                    record.stronger.push(r);
                }
                Step::Unbounded => {
                    let cfg = ApgdConfig {
                        iterations: settings.iterations,
                        restarts: 1,
                        ..ApgdConfig::standard(1.0, ApgdLoss::CrossEntropy, settings.seed)
                    };
                    let out = apgd::apgd(subject.model, x, labels, &cfg);
                    let adv = out.adversarial;
                    record.unbounded = Some(result(
                        subject.model,
                        x,
                        labels,
                        &clean_wrong,
                        Attack::ApgdCe,
                        1.0,
                        &adv,
                        started,
                    ));
                }
            }
            store(&record, step)?;
        }
        done += cost;
    }
    Ok(record)
}

/// The adversarial images of one attack at `eps`.
fn run_attack(
    subject: &Subject<'_>,
    x: ArrayView4<f32>,
    labels: &[u8],
    settings: &Settings,
    attack: Attack,
    eps: f32,
) -> Array4<f32> {
    let seed = settings.seed;
    let pgd_on = |model: &dyn Classifier| {
        let mut cfg = PgdConfig::new(eps, settings.pgd_steps);
        cfg.random_start = Some(seed);
        pgd::pgd(model, x, labels, &cfg)
    };
    let apgd_with = |loss| {
        let cfg = ApgdConfig {
            iterations: settings.iterations,
            restarts: settings.restarts,
            ..ApgdConfig::standard(eps, loss, seed)
        };
        apgd::apgd(subject.model, x, labels, &cfg).adversarial
    };
    match attack {
        Attack::Fgsm => fgsm::fgsm(subject.model, x, labels, eps),
        Attack::Pgd => pgd_on(subject.model),
        Attack::ApgdCe => apgd_with(ApgdLoss::CrossEntropy),
        Attack::ApgdT => apgd_with(ApgdLoss::TargetedDlr {
            targets: settings.targets,
        }),
        Attack::Square => {
            let cfg = SquareConfig {
                queries: settings.queries,
                ..SquareConfig::standard(eps, seed)
            };
            square::square(subject.model, x, labels, &cfg).adversarial
        }
        Attack::Transfer => pgd_on(subject.source),
    }
}

/// `1` where the prediction is wrong, else `0`, per image.
fn flags(predicted: &[u8], labels: &[u8]) -> String {
    predicted
        .iter()
        .zip(labels)
        .map(|(p, y)| if p != y { '1' } else { '0' })
        .collect()
}

/// The result of adversarial images `adv` made by `attack` at `eps`, judged by `model`;
/// `clean_wrong[i]`: the model misclassifies image `i` unperturbed.
#[allow(clippy::too_many_arguments)]
fn result(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    clean_wrong: &[bool],
    attack: Attack,
    eps: f32,
    adv: &Array4<f32>,
    started: std::time::Instant,
) -> AttackResult {
    let after = argmax_rows(model.logits(adv.view()).view());
    let mut found = Vec::new();
    for i in 0..labels.len() {
        if !clean_wrong[i] && after[i] != labels[i] {
            found.push(i);
        }
    }
    let distortion = (!found.is_empty()).then(|| {
        found
            .iter()
            .map(|&i| {
                let one = s![i..i + 1, .., .., ..];
                distortion_per_pixel(x.slice(one), adv.slice(one))
            })
            .sum::<f64>()
            / found.len() as f64
    });
    let max_change = ndarray::Zip::from(&x)
        .and(adv)
        .fold(0.0f32, |m, &a, &b| m.max((a - b).abs()));
    let errors_by_image = flags(&after, labels);
    let errors = errors_by_image.chars().filter(|&c| c == '1').count();
    AttackResult {
        attack,
        eps,
        errors,
        images: labels.len(),
        error_pct: 100.0 * errors as f64 / labels.len().max(1) as f64,
        found: found.len(),
        distortion,
        max_change,
        seconds: started.elapsed().as_secs_f64(),
        errors_by_image,
    }
}

/// Per image, whether any attack at `eps` made it an error (clean errors included).
pub fn worst_case(record: &Record, eps: f32) -> Vec<bool> {
    let mut worst: Vec<bool> = record.clean_errors.chars().map(|c| c == '1').collect();
    for r in record.attacks.iter().filter(|r| r.eps == eps) {
        for (w, e) in worst.iter_mut().zip(r.error_flags()) {
            *w |= e;
        }
    }
    worst
}

/// APGD-CE with the stronger restarts on the images the worst case at `eps` left right; its
/// errors are the worst case's and its own together.
fn stronger(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    settings: &Settings,
    record: &Record,
    eps: f32,
    started: std::time::Instant,
) -> AttackResult {
    let worst = worst_case(record, eps);
    let left: Vec<usize> = (0..labels.len()).filter(|&i| !worst[i]).collect();
    let mut errors = worst.clone();
    let mut found = 0;
    let mut distortion_sum = 0.0;
    let mut max_change = 0.0f32;
    if !left.is_empty() {
        let xs = x.select(Axis(0), &left);
        let ls: Vec<u8> = left.iter().map(|&i| labels[i]).collect();
        // The stronger run's own seed, so its starts differ from the standard run's.
        let cfg = ApgdConfig {
            iterations: settings.iterations,
            restarts: settings.stronger_restarts,
            ..ApgdConfig::standard(
                eps,
                ApgdLoss::CrossEntropy,
                settings.seed ^ 0x5354_524f_4e47,
            )
        };
        let Outcome {
            adversarial,
            fooled,
        } = apgd::apgd(model, xs.view(), &ls, &cfg);
        for (j, &i) in left.iter().enumerate() {
            if fooled[j] {
                errors[i] = true;
                found += 1;
                let one = s![j..j + 1, .., .., ..];
                distortion_sum += distortion_per_pixel(xs.slice(one), adversarial.slice(one));
                max_change = max_change.max(
                    ndarray::Zip::from(&xs.slice(one))
                        .and(&adversarial.slice(one))
                        .fold(0.0f32, |m, &a, &b| m.max((a - b).abs())),
                );
            }
        }
    }
    let count = errors.iter().filter(|&&e| e).count();
    AttackResult {
        attack: Attack::ApgdCe,
        eps,
        errors: count,
        images: labels.len(),
        error_pct: 100.0 * count as f64 / labels.len().max(1) as f64,
        found,
        distortion: (found > 0).then(|| distortion_sum / found as f64),
        max_change,
        seconds: started.elapsed().as_secs_f64(),
        errors_by_image: errors.iter().map(|&e| if e { '1' } else { '0' }).collect(),
    }
}

/// Certified bounds at each budget (interval bound propagation, `certify`): the certified
/// error is an upper bound on the error any attack within the budget can reach, the attacks'
/// worst case a lower bound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Certification {
    /// Why there is no certificate (a committee, a model that injects noise), if there is none.
    pub unavailable: Option<String>,
    /// `(eps, certified error %)` at each budget.
    pub rows: Vec<(f32, f64)>,
    /// The smallest eps on a grid of 0.0001 at which the certified error reaches 99%.
    pub passes_99_at: Option<f32>,
}

/// The certified error (%) at each of `budgets`, and where it passes 99%, from `certify(eps)`:
/// per image, whether it is certified robust at `eps`.
pub fn certification(
    certify: &dyn Fn(f32) -> Result<Vec<bool>, String>,
    budgets: &[f32],
) -> Certification {
    let error = |eps: f32| -> Result<f64, String> {
        let robust = certify(eps)?;
        let lost = robust.iter().filter(|&&r| !r).count();
        Ok(100.0 * lost as f64 / robust.len().max(1) as f64)
    };
    let mut rows = Vec::new();
    for &eps in budgets {
        match error(eps) {
            Ok(e) => rows.push((eps, e)),
            Err(reason) => {
                return Certification {
                    unavailable: Some(reason),
                    ..Certification::default()
                }
            }
        }
    }
    // The certified error grows with eps: bisect on the grid k / GRID (14 certificates).
    const GRID: u32 = 10_000;
    let passes = |k: u32| {
        error(k as f32 / GRID as f32)
            .map(|e| e >= 99.0)
            .unwrap_or(false)
    };
    let passes_99_at = passes(GRID).then(|| {
        let (mut lo, mut hi) = (0u32, GRID); // passes(hi), and lo is below the answer
        if passes(0) {
            return 0.0;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if passes(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi as f32 / GRID as f32
    });
    Certification {
        unavailable: None,
        rows,
        passes_99_at,
    }
}

/// An evaluation as its report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was evaluated, as the command line names it.
    pub model: String,
    /// The transfer attack's source.
    pub source: String,
    pub record: Record,
    pub certification: Certification,
    pub facts: checklist::Facts,
    pub verdicts: Vec<checklist::Verdict>,
}

impl Report {
    /// The worst case's error (%) at `eps`.
    pub fn worst_error_pct(&self, eps: f32) -> f64 {
        let worst = worst_case(&self.record, eps);
        100.0 * worst.iter().filter(|&&w| w).count() as f64 / worst.len().max(1) as f64
    }

    /// The checks that warn.
    pub fn warnings(&self) -> Vec<&checklist::Verdict> {
        self.verdicts
            .iter()
            .filter(|v| v.mark == checklist::Mark::Warn)
            .collect()
    }
}

/// What is evaluated, as [`report`] needs it for the checks and the certificate.
pub struct Evaluated<'a> {
    /// The model the attacks ran on (a LeNet, a committee or a pipeline).
    pub model: &'a dyn Classifier,
    /// The LeNet, or a committee's members: their float32 forward pass is checked against
    /// float64.
    pub lenets: Vec<&'a crate::models::LeNet<f32>>,
    /// The one LeNet interval bound propagation certifies (behind `stages`); `None` for a
    /// committee, which gets "no certificate".
    pub certifiable: Option<&'a crate::models::LeNet<f32>>,
    /// The preprocessing in front of the classifier (empty: none).
    pub stages: &'a [crate::models::pipeline::Stage],
    /// Whether the attacks followed the bare classifier's gradient past the preprocessing
    /// rather than the whole pipeline's.
    pub attack_through_classifier: bool,
}

/// Why a committee has no certificate.
pub const COMMITTEE_UNCERTIFIED: &str = "no certificate: a committee averages its members' softmax outputs, a combination interval bound propagation is not built for here";

/// The report of a finished evaluation: the checklist's facts, the certified bounds at each of
/// the record's budgets and the verdicts. `x` and `labels` are the images the record was made
/// on; `name` and `source` say what was evaluated and what the transfer attack was crafted on.
pub fn report(
    name: &str,
    source: &str,
    record: Record,
    evaluated: &Evaluated<'_>,
    x: ArrayView4<f32>,
    labels: &[u8],
) -> Report {
    let mut facts = facts(
        evaluated.model,
        x,
        labels,
        &evaluated.lenets,
        evaluated.stages,
        evaluated.attack_through_classifier,
    );
    let certification = match evaluated.certifiable {
        Some(net) => certification(
            &|eps| {
                crate::certify::certify(net, evaluated.stages, x, labels, eps)
                    .map_err(|e| e.to_string())
            },
            &record.settings.eps,
        ),
        None => Certification {
            unavailable: Some(COMMITTEE_UNCERTIFIED.into()),
            ..Default::default()
        },
    };
    facts.certified_error_pct = certification.rows.clone();
    let verdicts = checklist::verdicts(&record, &facts);
    Report {
        model: name.into(),
        source: source.into(),
        record,
        certification,
        facts,
        verdicts,
    }
}

/// Images the randomness check looks at.
pub const RANDOMNESS_IMAGES: usize = 100;

/// What the checklist needs besides the attacks: the gradient rules compared on `model`, the
/// float32 forward pass of `lenets` (the LeNet, or a committee's members) against float64 on
/// the images `stages` make of `x` (draw 0), and whether two draws of the model's randomness
/// differ.
pub fn facts(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    lenets: &[&crate::models::LeNet<f32>],
    stages: &[crate::models::pipeline::Stage],
    attack_through_classifier: bool,
) -> checklist::Facts {
    let rules = Some(crate::models::gradient::compare_rules(model, x, labels));
    let mut input = x.to_owned();
    for stage in stages {
        input = stage.apply(input.view(), 0);
    }
    let precision = (!lenets.is_empty()).then(|| {
        let mut max_logit_difference = 0.0f64;
        let mut differ = vec![false; labels.len()];
        for net in lenets {
            let single = net.logits(input.view());
            let double = net.cast::<f64>().logits(input.mapv(f64::from).view());
            ndarray::Zip::from(&single).and(&double).for_each(|&a, &b| {
                max_logit_difference = max_logit_difference.max((a as f64 - b).abs())
            });
            let p32 = argmax_rows(single.view());
            let p64 = argmax_rows(double.view());
            for (d, (a, b)) in differ.iter_mut().zip(p32.iter().zip(&p64)) {
                *d |= a != b;
            }
        }
        checklist::PrecisionCheck {
            images: labels.len(),
            max_logit_difference,
            predictions_differ: differ.iter().filter(|&&d| d).count(),
        }
    });
    let look = x.slice(s![..labels.len().min(RANDOMNESS_IMAGES), .., .., ..]);
    let (a, b) = (model.logits_of_draw(look, 0), model.logits_of_draw(look, 1));
    let random = a
        .rows()
        .into_iter()
        .zip(b.rows())
        .filter(|(r, q)| r != q)
        .count();
    checklist::Facts {
        rules,
        precision,
        random_images: (random, look.dim().0),
        attack_through_classifier,
        certified_error_pct: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::models::LeNet;
    use crate::rng::{stream, Purpose};

    /// An untrained LeNet, 10 images it classifies as their labels, and a second LeNet.
    fn setting() -> (LeNet<f32>, LeNet<f32>, Array4<f32>, Vec<u8>) {
        let net = LeNet::<f32>::xavier(&mut stream(4, Purpose::Init, 0));
        let source = LeNet::<f32>::xavier(&mut stream(5, Purpose::Init, 0));
        let x =
            crate::testutil::random_array::<f32, ndarray::Ix4>((10, 1, IMAGE_SIDE, IMAGE_SIDE), 6)
                .mapv(|v| v.abs());
        let labels = net.predict(x.view());
        (net, source, x, labels)
    }

    fn small(images: usize) -> Settings {
        Settings {
            pgd_steps: 2,
            iterations: 6,
            restarts: 1,
            targets: 2,
            queries: 40,
            stronger_restarts: 2,
            ..Settings::standard(vec![0.01, 0.03], images, 7)
        }
    }

    /// Wall times differ from run to run; everything else must not.
    fn timeless(mut r: Record) -> Record {
        for a in r
            .attacks
            .iter_mut()
            .chain(r.stronger.iter_mut())
            .chain(r.unbounded.iter_mut())
        {
            a.seconds = 0.0;
        }
        r
    }

    fn run(
        net: &LeNet<f32>,
        source: &LeNet<f32>,
        x: &Array4<f32>,
        labels: &[u8],
        resumed: Option<Record>,
        stop_after: Option<usize>,
    ) -> (Option<Record>, Record) {
        let subject = Subject { model: net, source };
        let mut stored = 0;
        let mut last = None;
        let settings = small(labels.len());
        let result = evaluate(
            &subject,
            x.view(),
            labels,
            &settings,
            resumed,
            |record, _| {
                last = Some(record.clone());
                stored += 1;
                if Some(stored) == stop_after {
                    Err("stopped")
                } else {
                    Ok(())
                }
            },
            |_, _, _| {},
        );
        match result {
            Ok(r) => (last, r),
            Err(_) => (last.clone(), last.expect("stopped after a step")),
        }
    }

    /// A run stopped after any step and resumed from its last record ends with the record an
    /// uninterrupted run makes.
    #[test]
    fn a_stopped_evaluation_resumes_to_the_same_record() {
        let (net, source, x, labels) = setting();
        let (_, whole) = run(&net, &source, &x, &labels, None, None);
        let steps = plan(&small(labels.len())).len();
        assert_eq!(whole.attacks.len(), 12);
        assert_eq!(whole.stronger.len(), 2);
        assert!(whole.unbounded.is_some());
        let errors: Vec<usize> = whole.attacks.iter().map(|r| r.errors).collect();
        assert!(
            errors.iter().any(|&e| e > 0) && errors.iter().any(|&e| e < 10),
            "{errors:?}"
        );
        for stop in [1, 5, steps - 1] {
            let (kept, _) = run(&net, &source, &x, &labels, None, Some(stop));
            let (_, resumed) = run(&net, &source, &x, &labels, kept, None);
            assert_eq!(
                timeless(resumed),
                timeless(whole.clone()),
                "stopped after step {stop}"
            );
        }
    }

    /// A committee and a pipeline that injects noise are evaluated like a LeNet: every attack
    /// keeps to its budget and [0, 1] (checked by the attacks' own tests), the facts see the
    /// pipeline's randomness and its EOT draws, and the committee's determinism.
    #[test]
    fn committees_and_noisy_pipelines_are_evaluated_with_their_randomness_seen() {
        use crate::defences::lowpass::LowPassFilter;
        use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
        let (net, source, x, _) = setting();
        let stages = vec![Stage::LowPass(LowPassFilter::study(5, 0.1, 3).unwrap())];
        let mut pipeline = Pipeline::new(stages.clone(), &net, AttackThrough::Pipeline);
        pipeline.eot_samples = 2;
        let committee = crate::models::Committee::new(vec![&net, &source]);
        for (name, model, draws) in [
            ("pipeline", &pipeline as &dyn Classifier, 2u64),
            ("committee", &committee, 1),
        ] {
            let labels = model.predict(x.view());
            let settings = Settings {
                eot_draws: model.eot_draws(),
                ..small(labels.len())
            };
            assert_eq!(settings.eot_draws, draws, "{name}");
            let subject = Subject {
                model,
                source: &source,
            };
            let record = evaluate(
                &subject,
                x.view(),
                &labels,
                &settings,
                None,
                |_, _| Ok::<(), ()>(()),
                |_, _, _| {},
            )
            .unwrap();
            assert_eq!(record.attacks.len(), 12, "{name}");
            let facts = facts(
                model,
                x.view(),
                &labels,
                &[&net],
                if draws > 1 { &stages } else { &[] },
                false,
            );
            let (random, looked) = facts.random_images;
            assert_eq!(looked, labels.len());
            if draws > 1 {
                assert!(random > 0, "{name}: the injected noise is seen");
            } else {
                assert_eq!(random, 0, "{name}");
            }
            let v = checklist::verdicts(&record, &facts);
            assert_eq!(v[7].mark, checklist::Mark::Pass, "{name}: {:?}", v[7]);
        }
    }

    /// The same record on 1 thread and on 3.
    #[test]
    fn the_record_does_not_depend_on_the_thread_count() {
        let (net, source, x, labels) = setting();
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| timeless(run(&net, &source, &x, &labels, None, None).1))
        };
        assert_eq!(on(1), on(3));
    }

    /// The certified error per budget, and the bisection for where it passes 99%, from a
    /// certifier whose answer is known: image `i` of 1,000 is certified below eps
    /// `i / 2000 + 0.00003` (off the grid, so no rounding decides).
    #[test]
    fn certification_finds_where_the_bound_passes_99_percent() {
        let certify = |eps: f32| -> Result<Vec<bool>, String> {
            Ok((0..1000)
                .map(|i| eps < i as f32 / 2000.0 + 0.00003)
                .collect())
        };
        let c = certification(&certify, &[0.1, 0.25]);
        assert_eq!(c.unavailable, None);
        // At 0.1, images 0..=199 are not certified: 20.0%.
        assert_eq!(c.rows, vec![(0.1, 20.0), (0.25, 50.0)]);
        // 99% = 990 images not certified: eps >= 989 / 2000 + 0.00003 = 0.49453, first grid
        // point 0.4946.
        assert_eq!(c.passes_99_at, Some(0.4946));
        let refuse = |_: f32| -> Result<Vec<bool>, String> { Err("random".into()) };
        let none = certification(&refuse, &[0.1]);
        assert_eq!(none.unavailable.as_deref(), Some("random"));
        assert!(none.rows.is_empty());
    }
}
