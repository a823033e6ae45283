//! Records the git commit advmnist is built from (`ADVMNIST_GIT_COMMIT`, "unknown" outside a
//! git checkout), for run manifests.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ADVMNIST_GIT_COMMIT={commit}");
    // Rerun when HEAD moves: a commit rewrites the branch's ref, a checkout rewrites HEAD. In a
    // worktree `.git` is a file and these paths do not exist: cargo then reruns on any change.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
