//! What the command-line tests share: running the built `advmnist` as a user would.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `advmnist ARGS` and returns what it printed. RAYON_NUM_THREADS is removed, so a
/// developer's setting never changes a test's thread count.
pub fn advmnist(args: &[&str]) -> Output {
    advmnist_with(args, &[])
}

/// [`advmnist`] with environment variables `vars` set (`ADVMNIST_KERNELS`, say).
pub fn advmnist_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_advmnist"))
        .args(args)
        .env_remove("RAYON_NUM_THREADS")
        .envs(vars.iter().copied())
        .output()
        .expect("the advmnist binary runs")
}

/// Runs a command that must succeed, showing its stderr if it did not.
pub fn ok(args: &[&str]) -> Output {
    let out = advmnist(args);
    assert!(
        out.status.success(),
        "advmnist {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail; returns its stderr.
pub fn err(args: &[&str]) -> String {
    let out = advmnist(args);
    assert!(
        !out.status.success(),
        "advmnist {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
