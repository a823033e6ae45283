//! Records what `advmnist bench --report` says the binary was built from: the git commit
//! (`ADVMNIST_GIT_COMMIT`, with `-dirty` appended when tracked sources differ from it, and
//! "unknown" outside a git checkout) and the compiler
//! (`ADVMNIST_RUSTC_VERSION`, the output of `$RUSTC --version`, "unknown" if it fails).

use std::process::Command;

/// The first line of a command's standard output, if it ran and succeeded.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether the files the binary is built from differ from the commit (tracked files only):
/// the commit alone would then name code the binary does not contain.
fn tree_is_dirty() -> bool {
    let paths = ["src", "build.rs", "Cargo.toml", "Cargo.lock"];
    // `--no-optional-locks`: a build must not take the index lock from a concurrent commit.
    let mut args = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
    ];
    args.extend(paths);
    output_of("git", &args).is_some()
}

fn main() {
    let commit = match output_of("git", &["rev-parse", "HEAD"]) {
        // `-dirty`, as `git describe --dirty` marks it: built from uncommitted changes.
        Some(head) if tree_is_dirty() => format!("{head}-dirty"),
        Some(head) => head,
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=ADVMNIST_GIT_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output_of(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ADVMNIST_RUSTC_VERSION={version}");
    // Rerun when HEAD moves: a commit rewrites the branch's ref, a checkout rewrites HEAD. Asking
    // git for the paths also covers worktrees, whose `.git` is a file and whose HEAD lives in
    // the main checkout's `.git/worktrees/NAME`. Only this checkout's HEAD and branch are
    // watched, so that commits on other branches of a shared repository cause no rebuild.
    let mut watched = false;
    if let Some(git_dir) = output_of("git", &["rev-parse", "--git-dir"]) {
        let common =
            output_of("git", &["rev-parse", "--git-common-dir"]).unwrap_or(git_dir.clone());
        let mut paths = vec![format!("{git_dir}/HEAD")];
        if let Some(branch) = output_of("git", &["symbolic-ref", "-q", "HEAD"]) {
            let loose = format!("{common}/{branch}");
            if std::path::Path::new(&loose).exists() {
                paths.push(loose);
            } else {
                // A branch whose ref was packed lives in packed-refs until its next commit,
                // which writes the loose ref: watch the folder it will appear in as well.
                paths.push(format!("{common}/packed-refs"));
                if let Some(folder) = std::path::Path::new(&loose).parent() {
                    paths.push(folder.to_string_lossy().into_owned());
                }
            }
        }
        for path in paths {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
                watched = true;
            }
        }
    }
    if watched {
        // With any rerun-if-changed line, cargo stops rerunning on every source change: keep
        // the script itself watched too, and the sources, so that an edit (or its undoing)
        // updates the `-dirty` mark. A source change recompiles the crate anyway.
        for path in ["build.rs", "src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
