//! Checks every command makes on its files before any work (issue 12): an output must not be
//! one of the command's inputs, and every output location must be writable and of the right
//! kind (a file where a file goes, a folder where a folder goes).
//!
//! Paths are compared as files, not as strings: two paths name the same file when they have the
//! same device and inode (both exist), or the same canonical folder and file name (an output that
//! does not exist yet), so `./m.safetensors`, `m.safetensors` and a symlink to it all match.
//! Every message names the flag and the file, so a user knows which argument to change.

use crate::models::file::folder_of;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether `a` and `b` name the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return ma.dev() == mb.dev() && ma.ino() == mb.ino();
    }
    // At least one does not exist yet: the same file only if it would be created at the other's
    // place. Canonicalizing the folder resolves `.`, `..` and symlinked folders.
    let place = |p: &Path| {
        (
            std::fs::canonicalize(folder_of(p)).ok(),
            p.file_name().map(|n| n.to_owned()),
        )
    };
    let (pa, pb) = (place(a), place(b));
    pa.0.is_some() && pa == pb
}

/// Fails, naming both flags and the file, if any output is one of the inputs. Call it before any
/// work: writing an output over an input destroys what the command was asked to read.
pub fn refuse_overwrite(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<(), String> {
    for (out_flag, out) in outputs {
        for (in_flag, input) in inputs {
            if same_file(out, input) {
                return Err(format!(
                    "{out_flag} {} is the same file as {in_flag} {}: writing it would destroy an input; choose another {out_flag}",
                    out.display(),
                    input.display()
                ));
            }
        }
    }
    Ok(())
}

/// The files a command reads from the data folder (`--data`): every regular file directly in it,
/// so that neither the IDX files nor their checksums can be written over. Empty if the folder
/// cannot be listed (loading the data then reports that, naming the folder).
pub fn data_inputs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Fails unless a file can be written at `path`: its folder exists and is writable, and `path`
/// itself is not a folder.
pub fn check_output_file(flag: &str, path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "{flag} {}: is a folder, but a file is written here; give a file name",
            path.display()
        ));
    }
    if path.file_name().is_none() {
        return Err(format!(
            "{flag} {}: not a file name (it ends in `..` or `/`)",
            path.display()
        ));
    }
    check_writable_folder(flag, path, folder_of(path))
}

/// Fails unless `path` can hold a command's output files: an existing writable folder, or a new
/// one that can be created in an existing writable folder. An existing regular file is refused.
pub fn check_output_folder(flag: &str, path: &Path) -> Result<(), String> {
    if path.exists() {
        if !path.is_dir() {
            return Err(format!(
                "{flag} {}: is a file, but a folder is written here; give a folder (it is created if missing)",
                path.display()
            ));
        }
        return check_writable_folder(flag, path, path);
    }
    check_writable_folder(flag, path, folder_of(path))
}

/// Fails unless `dir` is an existing folder in which a file can be created (tried with a probe
/// file, which is removed at once: permission bits alone miss read-only mounts and ACLs).
fn check_writable_folder(flag: &str, path: &Path, dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    let probe = dir.join(format!(".advmnist-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| {
        format!(
            "{flag} {}: cannot write in {}: {e}",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An exclusive advisory lock (`flock`) on a run's output, held for the whole run, so that two
/// runs writing the same model or checkpoint cannot both proceed (issue 12, item 5). The lock is
/// taken on a hidden file `.NAME.lock` beside the output (the output itself is replaced by a
/// rename at every save, which would drop a lock held on it). The lock file is removed when the
/// lock is dropped; after a kill the kernel releases the lock and the next run reuses the file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock for `output`, or fails at once (never waits), naming the flag and the file.
    pub fn acquire(flag: &str, output: &Path) -> Result<RunLock, String> {
        use std::os::unix::io::AsRawFd;
        let name = output
            .file_name()
            .ok_or_else(|| format!("{flag} {}: not a file name", output.display()))?;
        let path = folder_of(output).join(format!(".{}.lock", name.to_string_lossy()));
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| {
                    format!(
                        "{flag} {}: cannot create the lock file {}: {e}",
                        output.display(),
                        path.display()
                    )
                })?;
            // SAFETY: flock on a file descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(format!(
                    "{flag} {}: another advmnist run is writing this file (it holds the lock {}); wait for it to finish or choose another {flag}",
                    output.display(),
                    path.display()
                ));
            }
            // The run that held the lock may have removed its lock file between our open and our
            // flock: then we locked a file nobody else will see. Lock the file at the path again.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                return Ok(RunLock { path, _file: file });
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this), so no other run can lock
        // this inode and believe it holds the output.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_matches_through_dot_folders_and_hard_links_but_not_other_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let via_dot = dir.path().join(".").join("a");
        let link = dir.path().join("hard");
        std::fs::hard_link(&a, &link).unwrap();
        let other = dir.path().join("b");
        std::fs::write(&other, b"x").unwrap();
        assert!(same_file(&a, &via_dot));
        assert!(same_file(&a, &link), "a hard link is the same file");
        assert!(!same_file(&a, &other), "same bytes, another file");
        // A file that does not exist yet is the same as itself spelled differently.
        let new = dir.path().join("new");
        assert!(same_file(&new, &dir.path().join(".").join("new")));
        assert!(!same_file(&new, &a));
    }

    #[test]
    fn refuse_overwrite_names_both_flags() {
        let dir = tempfile::TempDir::new().unwrap();
        let m = dir.path().join("m");
        std::fs::write(&m, b"x").unwrap();
        let e = refuse_overwrite(&[("--predictions", &m)], &[("--model", &m)]).unwrap_err();
        assert!(e.contains("--predictions") && e.contains("--model"), "{e}");
        assert!(refuse_overwrite(&[("--out", &dir.path().join("n"))], &[("--model", &m)]).is_ok());
    }

    #[test]
    fn output_checks_refuse_the_wrong_kind_and_missing_folders() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_output_file("--out", dir.path())
            .unwrap_err()
            .contains("is a folder"));
        assert!(check_output_file("--out", &dir.path().join("no/x"))
            .unwrap_err()
            .contains("does not exist"));
        assert!(check_output_file("--out", &file).is_ok());
        assert!(check_output_folder("--out", &file)
            .unwrap_err()
            .contains("is a file"));
        assert!(check_output_folder("--out", &dir.path().join("new")).is_ok());
        assert!(check_output_folder("--out", dir.path()).is_ok());
    }
}
