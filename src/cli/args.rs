//! Argument types several commands share: the numeric parsers every count and seed goes
//! through, the classifier and committee choice, the defence in front of the models, and the
//! perturbations' names. Each is turned into the library's plain values here.

use advmnist::attacks::Noise;
use advmnist::models::assemble::{parse_stages, Preprocessing};
use advmnist::models::committee;
use advmnist::models::pipeline::AttackThrough;
use advmnist::models::GradientRule;
use anyhow::{bail, Result};
use clap::Args;
use num_traits::Bounded;
use std::fmt::Display;
use std::num::{IntErrorKind, ParseIntError};
use std::path::PathBuf;
use std::str::FromStr;

/// A whole number >= 0 for a count or a seed, up to its type's largest value. With
/// `allow_negative_numbers` on the flag, a negative number reaches this parser, which states
/// the range, instead of clap taking it for an unknown flag; a number past the type says so
/// with the largest, rather than that it is not a whole number.
pub fn whole_number<T>(s: &str) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + Bounded + PartialOrd + Display,
{
    whole_number_at_most(s, T::max_value())
}

/// The parser of a count flag: a whole number from 0 to `limit`, refused when the command line
/// is parsed, before any work, with `too large (at most LIMIT)` after clap's naming of the flag
/// and the value. Every count flag goes through it (or has a limit checked with its own message
/// before the work, from before limits were checked here), and states its limit in its help;
/// the command line's unit tests check both for every flag.
pub fn at_most<T>(limit: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr<Err = ParseIntError> + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s| whole_number_at_most(s, limit)
}

fn whole_number_at_most<T>(s: &str, limit: T) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + PartialOrd + Display,
{
    match s.trim().parse::<T>() {
        Ok(n) if n <= limit => Ok(n),
        Ok(_) => Err(format!("too large (at most {limit})")),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => {
            Err(format!("too large (at most {limit})"))
        }
        Err(_) => Err(format!("expected a whole number >= 0, got {s}")),
    }
}

/// A committee and the gradient attacks follow, shared by eval, sweep and show.
#[derive(Args)]
pub struct ClassifierArgs {
    /// A committee, evaluated and attacked as one classifier (white-box through its averaged
    /// softmax): model files separated by commas, or a committee file C.json (members with
    /// their SHA-256; see `advmnist committee`). Behind --pre stages like any model.
    #[arg(long, value_name = "FILE,FILE,...|C.json")]
    pub committee: Option<String>,
    /// The softmax cross-entropy gradient attacks follow: exact, or caffe-f32 (Caffe's float32
    /// SoftmaxWithLoss, whose p_y - 1 rounds to 0 for confident images). Named in every
    /// attacked label; predictions, and so eval, do not depend on it.
    #[arg(long, default_value = "exact", value_parser = GradientRule::parse)]
    pub gradient: GradientRule,
}

/// A committee as a command names it: its name and its member files.
pub struct CommitteeChoice {
    pub name: String,
    pub members: Vec<PathBuf>,
}

impl ClassifierArgs {
    /// The committee's name and member files (a committee file is read and its hashes checked
    /// here, before any work, so that its members count as inputs).
    pub fn committee(&self) -> Result<Option<CommitteeChoice>> {
        let Some(spec) = &self.committee else {
            return Ok(None);
        };
        let members = committee::committee_members(spec)?;
        Ok(Some(CommitteeChoice {
            name: committee::committee_name(spec),
            members,
        }))
    }

    /// The committee file (if `--committee` names one) and every member: inputs of the command.
    pub fn committee_inputs(&self, committee: &Option<CommitteeChoice>) -> Vec<PathBuf> {
        advmnist::models::assemble::committee_inputs(
            self.committee.as_deref(),
            committee.as_ref().map_or(&[][..], |c| &c.members),
        )
    }
}

/// Defences in front of every model, and how attacks treat them.
#[derive(Args)]
pub struct DefenceArgs {
    /// A preprocessing stage in front of every model, in the order given (repeat the flag for
    /// more): lowpass:S (the study's Gaussian blur, S = 3, 5 or 7), lowpass:S,noise=SIGMA
    /// (inject Gaussian noise first; plain `noise` means 0.1), or dae:FILE (a denoising
    /// autoencoder from `advmnist dae train`).
    #[arg(long = "pre", value_name = "STAGE")]
    pub pre: Vec<String>,
    /// Whose gradient attacks follow when --pre is given: pipeline (white-box, through every
    /// stage's backward pass, averaged over --eot draws of injected noise) or classifier (the
    /// study's setting: the bare model's gradient, then the defence cleans the examples).
    #[arg(long, value_enum, default_value = "pipeline")]
    pub attack_through: AttackThrough,
    /// Draws of injected noise averaged by the white-box gradient (expectation over
    /// transformation), at most 1,000.
    #[arg(long, default_value_t = advmnist::models::pipeline::DEFAULT_EOT_SAMPLES, value_name = "K", value_parser = at_most(advmnist::limits::MAX_EOT_SAMPLES))]
    pub eot: usize,
    /// Seed of the injected noise.
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = whole_number::<u64>)]
    pub pre_seed: u64,
}

impl DefenceArgs {
    /// The stages (autoencoders loaded), the attack setting and the draws.
    pub fn preprocessing(&self) -> Result<Preprocessing> {
        if self.eot == 0 {
            bail!("--eot must be at least 1");
        }
        Ok(Preprocessing {
            stages: parse_stages(&self.pre, self.pre_seed).map_err(anyhow::Error::msg)?,
            attack_through: self.attack_through,
            eot_samples: self.eot,
        })
    }
}

/// `trace`'s and `gradcheck`'s `--noise`: [`Noise`] restricted to the two single-step noises
/// a traced image can carry, each value with its own help line (PGD is `sweep`'s).
pub fn trace_noise() -> impl clap::builder::TypedValueParser<Value = Noise> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("fgsm").help("Fast gradient sign: clip(x + eps * sign(dL/dx), 0, 1)"),
        PossibleValue::new("gaussian").help("Gaussian noise: clip(x + sigma * Z, 0, 1)"),
    ])
    .map(|name| name.parse::<Noise>().expect("a listed noise"))
}

/// `value` if it is at least 1, else an error naming `flag`.
pub fn at_least_one(flag: &str, value: usize) -> Result<usize> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(value)
}

/// Test image `--image N` of the data in `data_dir` (a one-image data set, its label), or an error
/// naming the flag when the test set has no such image: what `trace` and `explain` audit.
pub fn test_digit(
    data_dir: &std::path::Path,
    image: usize,
) -> Result<(advmnist::data::Dataset, u8)> {
    let test = advmnist::data::load_split(data_dir, advmnist::data::Split::Test)?;
    if image >= test.len() {
        bail!(
            "--image {image} is out of range: the test set has {} images (0 to {})",
            test.len(),
            test.len() - 1
        );
    }
    let digit = test.subset(image..image + 1);
    let label = digit.labels[0];
    Ok((digit, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_past_their_type_or_limit_are_too_large_and_others_not_whole() {
        assert_eq!(whole_number::<u64>("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            whole_number::<u64>("18446744073709551616"),
            Err("too large (at most 18446744073709551615)".to_string())
        );
        assert_eq!(
            whole_number::<u32>(" 99999999999999999999999 "),
            Err("too large (at most 4294967295)".to_string())
        );
        for bad in ["-1", "-99999999999999999999999", "1.5", "", "ten"] {
            assert_eq!(
                whole_number::<u64>(bad),
                Err(format!("expected a whole number >= 0, got {bad}"))
            );
        }
        let eot = at_most(1000usize);
        assert_eq!(eot("1000"), Ok(1000));
        assert_eq!(eot("0"), Ok(0));
        for past in ["1001", "18446744073709551616"] {
            assert_eq!(eot(past), Err("too large (at most 1000)".to_string()));
        }
        assert_eq!(
            eot("-3"),
            Err("expected a whole number >= 0, got -3".to_string())
        );
    }
}
