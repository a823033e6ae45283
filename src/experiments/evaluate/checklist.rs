//! The checks of Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry and
//! Kurakin, "On Evaluating Adversarial Robustness" (2019), section 6 ("basic sanity tests"
//! and the warning signs of gradient masking), stated as verdicts on one evaluation: PASS or
//! WARN, each with the numbers that decided it.
//!
//! A WARN does not prove a defence broken; it says the attacks' figure is not yet a trustworthy
//! lower bound on the error, and where to look: single-step beating iterative, or transfer or a
//! gradient-free attack beating white-box gradients, are the classic signs of a masked
//! gradient (Athalye, Carlini and Wagner 2018); an error that stays below 100% at eps = 1, or
//! that more restarts still raise, says the attacks have not converged.

use super::{worst_case, Attack, Record};
use crate::models::gradient::RuleComparison;
use serde::{Deserialize, Serialize};

/// Most points (in % of the images) more restarts may add before the evaluation is called
/// unconverged: 1 point, 10 images of 1,000.
pub const RESTART_TOLERANCE_PCT: f64 = 1.0;
/// The error at eps = 1 below which the attacks are called broken: any image can be made any
/// other at eps 1, so an attack that works reaches 100%; 99.9% leaves one image in 1,000.
pub const UNBOUNDED_ERROR_PCT: f64 = 99.9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mark {
    Pass,
    Warn,
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: String,
    pub mark: Mark,
    /// The numbers that decided it.
    pub evidence: String,
}

/// The float32 forward pass against the same computation in float64 (`trace --f64`'s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionCheck {
    pub images: usize,
    /// The largest `|z_f32 - z_f64|` of any logit.
    pub max_logit_difference: f64,
    /// Images whose predicted class differs between the two.
    pub predictions_differ: usize,
}

/// What the checks need besides the attacks' record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The attacks' gradient rule against Caffe's float32 rule (`advmnist gradients`).
    pub rules: Option<RuleComparison>,
    pub precision: Option<PrecisionCheck>,
    /// Images (of those looked at) whose logits differ between two draws of the model's
    /// randomness, and how many were looked at.
    pub random_images: (usize, usize),
    /// Whether attacks follow the bare classifier's gradient rather than the pipeline's.
    pub attack_through_classifier: bool,
    /// Certified error (%) per budget, where a certificate exists.
    pub certified_error_pct: Vec<(f32, f64)>,
}

fn error_of(record: &Record, attack: Attack, eps: f32) -> Option<f64> {
    record
        .attacks
        .iter()
        .find(|r| r.attack == attack && r.eps == eps)
        .map(|r| r.error_pct)
}

/// The best of `attacks` at `eps`: its error and name.
fn best_of(record: &Record, attacks: &[Attack], eps: f32) -> Option<(f64, Attack)> {
    attacks
        .iter()
        .filter_map(|&a| error_of(record, a, eps).map(|e| (e, a)))
        .fold(None, |best: Option<(f64, Attack)>, (e, a)| match best {
            Some((b, _)) if b >= e => best,
            _ => Some((e, a)),
        })
}

/// One comparison per budget: PASS when `strong`'s best is at least `weak`'s best.
fn at_least(
    record: &Record,
    check: &str,
    strong: &[Attack],
    weak: &[Attack],
    strong_name: &str,
) -> Verdict {
    let mut warn = false;
    let mut evidence = Vec::new();
    for &eps in &record.settings.eps {
        if let (Some((s, sa)), Some((w, wa))) =
            (best_of(record, strong, eps), best_of(record, weak, eps))
        {
            warn |= s < w;
            evidence.push(format!(
                "eps {eps}: {strong_name} {s:.1}% ({sa}) {} {wa} {w:.1}%",
                if s < w { "<" } else { ">=" }
            ));
        }
    }
    Verdict {
        check: check.to_string(),
        mark: if warn { Mark::Warn } else { Mark::Pass },
        evidence: evidence.join("; "),
    }
}

/// Every check's verdict, in the order of the list.
pub fn verdicts(record: &Record, facts: &Facts) -> Vec<Verdict> {
    let iterative = [Attack::Pgd, Attack::ApgdCe, Attack::ApgdT];
    let white = [Attack::Fgsm, Attack::Pgd, Attack::ApgdCe, Attack::ApgdT];
    let mut out = vec![
        at_least(
            record,
            "iterative attacks at least as strong as single-step",
            &iterative,
            &[Attack::Fgsm],
            "iterative",
        ),
        at_least(
            record,
            "white-box at least as strong as transfer",
            &white,
            &[Attack::Transfer],
            "white-box",
        ),
        at_least(
            record,
            "gradient-based at least as strong as gradient-free (else the gradient is masked)",
            &[Attack::ApgdCe, Attack::ApgdT],
            &[Attack::Square],
            "APGD",
        ),
    ];
    out.push(match &record.unbounded {
        Some(r) => Verdict {
            check: "error reaches 100% as eps grows to 1".into(),
            mark: if r.error_pct >= UNBOUNDED_ERROR_PCT {
                Mark::Pass
            } else {
                Mark::Warn
            },
            evidence: format!(
                "APGD-CE at eps 1: {:.1}% ({} of {} images; needs at least {UNBOUNDED_ERROR_PCT}%)",
                r.error_pct, r.errors, r.images
            ),
        },
        None => Verdict {
            check: "error reaches 100% as eps grows to 1".into(),
            mark: Mark::Warn,
            evidence: "not run".into(),
        },
    });
    let mut warn = false;
    let mut evidence = Vec::new();
    for r in &record.stronger {
        let worst = worst_case(record, r.eps).iter().filter(|&&w| w).count();
        let gain = 100.0 * (r.errors - worst) as f64 / r.images.max(1) as f64;
        warn |= gain > RESTART_TOLERANCE_PCT;
        evidence.push(format!(
            "eps {}: {} restarts of APGD-CE add {} images (+{gain:.1} points)",
            r.eps,
            record.settings.stronger_restarts,
            r.errors - worst
        ));
    }
    out.push(Verdict {
        check: format!("more restarts do not help by more than {RESTART_TOLERANCE_PCT} point"),
        mark: if warn || record.stronger.is_empty() {
            Mark::Warn
        } else {
            Mark::Pass
        },
        evidence: evidence.join("; "),
    });
    out.push(match &facts.rules {
        Some(c) => Verdict {
            check: "the gradient the attacks use, against Caffe's float32 rule".into(),
            mark: if c.true_term_lost_exact == 0 {
                Mark::Pass
            } else {
                Mark::Warn
            },
            evidence: format!(
                "dL/dz_y is exactly 0 on {} of {} images under the attacks' rule and on {} under Caffe's p_y - 1; gradient signs differ on {} pixels of {} images",
                c.true_term_lost_exact,
                c.images,
                c.true_term_lost_caffe_f32,
                c.pixels_sign_differs,
                c.images_sign_differs
            ),
        },
        None => Verdict {
            check: "the gradient the attacks use, against Caffe's float32 rule".into(),
            mark: Mark::Pass,
            evidence: "not applicable: the model has no softmax cross-entropy of its own to compare".into(),
        },
    });
    out.push(match &facts.precision {
        Some(p) => Verdict {
            check: "the float32 forward pass against float64".into(),
            mark: if p.predictions_differ == 0 {
                Mark::Pass
            } else {
                Mark::Warn
            },
            evidence: format!(
                "largest logit difference {:.2e}; predictions differ on {} of {} images",
                p.max_logit_difference, p.predictions_differ, p.images
            ),
        },
        None => Verdict {
            check: "the float32 forward pass against float64".into(),
            mark: Mark::Warn,
            evidence: "not checked".into(),
        },
    });
    let (random, looked) = facts.random_images;
    let eot = record.settings.eot_draws;
    out.push(Verdict {
        check: "randomness in the model detected, and EOT used".into(),
        mark: if random > 0 && (eot <= 1 || facts.attack_through_classifier) {
            Mark::Warn
        } else {
            Mark::Pass
        },
        evidence: if random == 0 {
            format!("deterministic: two draws give the same logits on all {looked} images looked at")
        } else {
            format!(
                "random: two draws differ on {random} of {looked} images; every attack averages over {eot} draws{}",
                if facts.attack_through_classifier {
                    ", but the gradient attacks follow the bare classifier, not the pipeline"
                } else {
                    ""
                }
            )
        },
    });
    if !facts.certified_error_pct.is_empty() {
        let mut warn = false;
        let mut evidence = Vec::new();
        for &(eps, certified) in &facts.certified_error_pct {
            let worst = worst_case(record, eps);
            let attacked =
                100.0 * worst.iter().filter(|&&w| w).count() as f64 / worst.len().max(1) as f64;
            warn |= certified < attacked;
            evidence.push(format!(
                "eps {eps}: attacks {attacked:.1}% <= true error <= certified {certified:.1}%"
            ));
        }
        out.push(Verdict {
            check: "certified bound above the strongest attack".into(),
            mark: if warn { Mark::Warn } else { Mark::Pass },
            evidence: evidence.join("; "),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::evaluate::{AttackResult, Settings};

    /// A result whose first `errors` of 100 images are errors.
    fn result(attack: Attack, eps: f32, errors: usize) -> AttackResult {
        AttackResult {
            attack,
            eps,
            errors,
            images: 100,
            error_pct: errors as f64,
            found: errors,
            distortion: None,
            max_change: eps,
            seconds: 0.0,
            errors_by_image: (0..100)
                .map(|i| if i < errors { '1' } else { '0' })
                .collect(),
        }
    }

    /// A record at one budget with the given errors of FGSM, PGD, APGD-CE, APGD-T, Square and
    /// transfer, a stronger run of `stronger` errors and `unbounded` at eps 1.
    fn record(errors: [usize; 6], stronger: usize, unbounded: usize) -> Record {
        Record {
            settings: Settings::standard(vec![0.1], 100, 1),
            clean_errors: "0".repeat(100),
            attacks: Attack::ALL
                .iter()
                .zip(errors)
                .map(|(&a, e)| result(a, 0.1, e))
                .collect(),
            stronger: vec![result(Attack::ApgdCe, 0.1, stronger)],
            unbounded: Some(result(Attack::ApgdCe, 1.0, unbounded)),
        }
    }

    fn marks(r: &Record, facts: &Facts) -> Vec<Mark> {
        verdicts(r, facts).iter().map(|v| v.mark).collect()
    }

    #[test]
    fn a_sound_evaluation_passes_every_check() {
        let r = record([30, 50, 55, 56, 52, 20], 56, 100);
        let v = verdicts(&r, &Facts::default());
        assert!(v.iter().take(5).all(|v| v.mark == Mark::Pass), "{v:#?}");
        assert_eq!(
            v[0].evidence,
            "eps 0.1: iterative 56.0% (apgd-t) >= fgsm 30.0%"
        );
        assert_eq!(
            v[4].evidence,
            "eps 0.1: 5 restarts of APGD-CE add 0 images (+0.0 points)"
        );
    }

    /// Each sign of a masked gradient or an unconverged attack warns, alone.
    #[test]
    fn each_warning_sign_warns() {
        let facts = Facts::default();
        let pass = Mark::Pass;
        let warn = Mark::Warn;
        // FGSM beats every iterative attack.
        assert_eq!(
            &marks(&record([60, 50, 55, 56, 52, 20], 60, 100), &facts)[..5],
            [warn, pass, pass, pass, pass]
        );
        // Transfer beats white-box.
        assert_eq!(
            &marks(&record([30, 50, 55, 56, 52, 57], 57, 100), &facts)[..5],
            [pass, warn, pass, pass, pass]
        );
        // Square beats APGD.
        assert_eq!(
            &marks(&record([30, 50, 55, 56, 58, 20], 58, 100), &facts)[..5],
            [pass, pass, warn, pass, pass]
        );
        // 99.9% at eps 1 is not reached (99 of 100).
        assert_eq!(
            &marks(&record([30, 50, 55, 56, 52, 20], 56, 99), &facts)[..5],
            [pass, pass, pass, warn, pass]
        );
        // More restarts add 2 points (one point is allowed).
        assert_eq!(
            &marks(&record([30, 50, 55, 56, 52, 20], 58, 100), &facts)[..5],
            [pass, pass, pass, pass, warn]
        );
        assert_eq!(
            &marks(&record([30, 50, 55, 56, 52, 20], 57, 100), &facts)[..5],
            [pass, pass, pass, pass, pass]
        );
    }

    #[test]
    fn randomness_without_eot_warns_and_a_certificate_below_the_attacks_warns() {
        let mut r = record([30, 50, 55, 56, 52, 20], 56, 100);
        let random = Facts {
            random_images: (40, 100),
            ..Facts::default()
        };
        let check = |r: &Record, f: &Facts| verdicts(r, f)[7].mark;
        assert_eq!(check(&r, &random), Mark::Warn);
        r.settings.eot_draws = 10;
        assert_eq!(check(&r, &random), Mark::Pass);
        let through_classifier = Facts {
            attack_through_classifier: true,
            ..random.clone()
        };
        assert_eq!(check(&r, &through_classifier), Mark::Warn);
        // The worst case at 0.1 is 56%: a certificate of 56% or more is consistent, 50% not.
        let certified = |pct| Facts {
            certified_error_pct: vec![(0.1, pct)],
            ..Facts::default()
        };
        assert_eq!(verdicts(&r, &certified(56.0))[8].mark, Mark::Pass);
        assert_eq!(verdicts(&r, &certified(50.0))[8].mark, Mark::Warn);
    }
}
