//! Which vector instructions the hand-written kernels may use: the one place the crate asks the
//! CPU (`is_x86_feature_detected!`), and the switch that forces a narrower path.
//!
//! Every kernel that has more than one path asks [`selected`], and takes the widest path at or
//! below it. By default that is the widest this CPU runs ([`detected`]); the environment
//! variable [`VARIABLE`] (`ADVMNIST_KERNELS=generic|avx2|avx512|auto`) forces a level, so that
//! one machine can run, test and measure every path it has. A level the CPU lacks is refused
//! ([`from_env`] names the variable, the level and what the CPU has), never taken: the unsafe
//! `#[target_feature]` calls behind each path rely on [`selected`] never exceeding
//! [`detected`].
//!
//! Every path of every kernel gives the same bits (each kernel's tests), so the switch changes
//! speed only: `tests/integration/train.rs` (`a_300_iteration_model_keeps_its_pinned_bytes`)
//! trains under each level this CPU has and checks the model's hash against the pinned one.
//!
//! The switch covers advmnist's own kernels. `matrixmultiply` chooses its sgemm kernel for
//! itself (`sgemm_kernel::detect`) and is not forced; the kernels that match its bits
//! (`conv_fma`) match those of its fused kernels, which it takes on every CPU with AVX2 + FMA.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces a level.
pub const VARIABLE: &str = "ADVMNIST_KERNELS";

/// A level of vector instructions, narrowest first (so `a >= b` means "a includes b").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// No vector instructions beyond the target's baseline (SSE2 on x86-64): the portable
    /// loops, which the compiler vectorises as far as the baseline allows.
    Generic,
    /// AVX2 and FMA: 16 registers of 8 floats, fused multiply-add.
    Avx2,
    /// AVX-512F (with AVX2 and FMA): 32 registers of 16 floats.
    Avx512,
}

impl Isa {
    /// Every level, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Generic, Isa::Avx2, Isa::Avx512];

    /// The name [`VARIABLE`] takes: `generic`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The level named `text` (as [`Isa::name`] gives it), `None` for `auto` or an empty value.
    pub fn parse(text: &str) -> Result<Option<Isa>, String> {
        match text.trim() {
            "" | "auto" => Ok(None),
            t => Isa::ALL
                .into_iter()
                .find(|isa| isa.name() == t)
                .map(Some)
                .ok_or_else(|| {
                    format!("{VARIABLE}={t}: unknown level (use generic, avx2, avx512 or auto)")
                }),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The widest level this CPU runs.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        if avx2 && std::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Generic
}

/// The level `requested` resolves to on a CPU whose widest is `cpu`: `requested` itself, or
/// `cpu` when nothing is requested; an error when the CPU lacks it.
pub fn resolve(requested: Option<Isa>, cpu: Isa) -> Result<Isa, String> {
    match requested {
        None => Ok(cpu),
        Some(level) if level <= cpu => Ok(level),
        Some(level) => Err(format!(
            "{VARIABLE}={level}: this CPU does not run it (its widest level is {cpu})"
        )),
    }
}

/// The level [`VARIABLE`] asks for on this CPU, or why it cannot be had.
pub fn from_env() -> Result<Isa, String> {
    let requested = match std::env::var(VARIABLE) {
        Ok(text) => Isa::parse(&text)?,
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{VARIABLE} is not valid Unicode"))
        }
    };
    resolve(requested, detected())
}

/// The level every kernel takes in this process: [`from_env`], read once. The command line
/// checks [`from_env`] before any work and reports its error; a library user who sets the
/// variable to a level the CPU lacks gets a panic with the same message at the first kernel
/// call, never an instruction the CPU cannot run.
pub fn selected() -> Isa {
    static LEVEL: OnceLock<Result<Isa, String>> = OnceLock::new();
    match LEVEL.get_or_init(from_env) {
        Ok(level) => *level,
        Err(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(Some(isa)));
        }
        assert_eq!(Isa::parse("auto"), Ok(None));
        assert_eq!(Isa::parse(" avx2 "), Ok(Some(Isa::Avx2)));
        let err = Isa::parse("sse9").unwrap_err();
        assert!(err.contains("ADVMNIST_KERNELS=sse9") && err.contains("generic, avx2, avx512"));
    }

    #[test]
    fn a_level_above_the_cpu_is_refused() {
        assert_eq!(resolve(None, Isa::Avx2), Ok(Isa::Avx2));
        assert_eq!(resolve(Some(Isa::Generic), Isa::Avx2), Ok(Isa::Generic));
        assert_eq!(resolve(Some(Isa::Avx2), Isa::Avx2), Ok(Isa::Avx2));
        let err = resolve(Some(Isa::Avx512), Isa::Avx2).unwrap_err();
        assert_eq!(
            err,
            "ADVMNIST_KERNELS=avx512: this CPU does not run it (its widest level is avx2)"
        );
    }

    #[test]
    fn levels_are_ordered_narrowest_first() {
        assert!(Isa::Generic < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        assert!(selected() <= detected());
    }
}
