//! How advmnist writes files, and the checks every command makes on its files before any work.
//! Every file is written atomically ([`write_atomic`]: a temporary file beside it, flushed,
//! then renamed over it), and a failed write is a [`WriteError`] naming the file. Before any
//! work: an output must not be one of the command's inputs, and every output location must be
//! writable and of the right kind (a file where a file goes, a folder where a folder goes).
//! Also: how a command replaces a set of output files as a set ([`write_set`], [`check_set`])
//! and a run's exclusive lock ([`RunLock`]). Limits on sizes and memory are in [`crate::limits`].
//!
//! Paths are compared as files, not as strings: two paths name the same file when they have the
//! same device and inode (both exist), or the same canonical folder and file name (an output that
//! does not exist yet), so `./m.safetensors`, `m.safetensors` and a symlink to it all match.
//! Every message names the flag and the file, so a user knows which argument to change.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file that could not be written (or a folder not made), named in the message:
/// `PATH: REASON`.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

// ---- atomic writes ----

/// The folder a file path lives in; `.` for a bare file name.
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let io = |source| WriteError {
        path: path.into(),
        source,
    };
    let dir = folder_of(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("no file name")))?;
    remove_stale_temporaries(dir, &file_name.to_string_lossy());
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _in_flight = InFlight::new(&tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable: a crash right after it must not bring back the old
        // file. Best effort: some file systems cannot open or sync a folder.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Removes the temporary files `.NAME.tmp-PID` that earlier writes of `NAME` in `dir` left behind
/// when their process was killed between creating and renaming them. Only files of
/// processes that no longer exist are removed: a live process's temporary file is its write in
/// progress. Best effort: a file that cannot be listed or removed is left alone.
pub fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_is_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id exists. `kill(pid, 0)` sends no signal, only checks: it fails
/// with ESRCH when there is no such process, and with EPERM when it exists but is another user's.
pub fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative ids name process groups, not a process.
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

// ---- checks before any work ----

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
/// runs writing the same model or checkpoint cannot both proceed. The lock is
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
                if let Ok(mut held) = HELD_LOCKS.lock() {
                    held.push(path.clone());
                }
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
        if let Ok(mut held) = HELD_LOCKS.lock() {
            held.retain(|p| p != &self.path);
        }
    }
}

/// The lock files of this process's [`RunLock`]s, for [`tidy_up_before_exit`].
static HELD_LOCKS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The temporary files this process's writes are filling right now, for
/// [`tidy_up_before_exit`].
static IN_FLIGHT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A temporary file listed in [`IN_FLIGHT`] while it lives.
struct InFlight(PathBuf);

impl InFlight {
    fn new(tmp: &Path) -> InFlight {
        if let Ok(mut list) = IN_FLIGHT.lock() {
            list.push(tmp.to_path_buf());
        }
        InFlight(tmp.to_path_buf())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut list) = IN_FLIGHT.lock() {
            list.retain(|p| p != &self.0);
        }
    }
}

/// Removes the temporary files of the writes in progress and the lock files of every
/// [`RunLock`] this process holds, for a process about to end without running its destructors
/// (stopped by SIGINT or SIGTERM: `std::process::exit`). A write whose temporary is removed
/// under it fails, and its target keeps its previous version, as after a kill; a lock file is
/// removed while still locked, as a drop would. Without this the files would stay until a
/// later run reclaimed them (`remove_stale_temporaries`, the next lock), which is harmless, but
/// a stopped command should leave its folder as a finished one does, bar its progress files.
pub fn tidy_up_before_exit() {
    for list in [&IN_FLIGHT, &HELD_LOCKS] {
        if let Ok(list) = list.lock() {
            for path in list.iter() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

// ---- sets of output files ----

/// The manifest of the set `name` in `dir`: `dir/NAME.sha256`.
pub fn set_manifest(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sha256"))
}

/// Writes several files into `dir` (created if missing) as one set, so that a reader never takes
/// a mix of two runs for a result. The scheme, the same for every command that
/// writes several files (`sweep`, `human-report`):
///
/// 1. Every file is written to a temporary file beside it and flushed to disk. A failure here
///    (a full disk, a kill) leaves the previous set and its manifest untouched.
/// 2. The previous manifest `NAME.sha256` is removed: from here until step 4 the folder holds no
///    manifest, which says "incomplete".
/// 3. Each temporary file is renamed over its file.
/// 4. The manifest is written last (atomically): one line per file in `sha256sum` format,
///    `HASH  FILE`, so `cd DIR && sha256sum -c NAME.sha256` checks a set without advmnist.
///
/// A kill during step 3 can leave some files of the new run beside some of the old, as any
/// sequence of renames can, but never with a manifest that vouches for them: a set is complete
/// exactly when [`check_set`] accepts it. (A folder renamed into place would make the swap
/// itself atomic, but `--out` may be `.` or a folder holding the user's other files, which a
/// folder swap would take away.)
pub fn write_set(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<(), WriteError> {
    write_set_observed(dir, name, files, &mut |_| Ok(()))
}

/// [`write_set`], calling `after_rename(k)` after the `k`-th file's rename (from 0). An error from
/// it stops the write there, as a kill would: the tests use it to interrupt a set half-way.
fn write_set_observed(
    dir: &Path,
    name: &str,
    files: &[(&str, &[u8])],
    after_rename: &mut dyn FnMut(usize) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let manifest = set_manifest(dir, name);
    let mut listing = String::new();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut in_flight = Vec::new();
    let discard = |staged: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    // 1. Stage every file.
    for (file, bytes) in files {
        let target = dir.join(file);
        remove_stale_temporaries(dir, file);
        let tmp = dir.join(format!(".{file}.tmp-{}", std::process::id()));
        in_flight.push(InFlight::new(&tmp));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            discard(&staged);
            return Err(io(&target)(e));
        }
        listing.push_str(&format!("{}  {file}\n", crate::hashing::sha256_hex(bytes)));
        staged.push((tmp, target));
    }
    // 2. No manifest while the files change.
    match std::fs::remove_file(&manifest) {
        Ok(()) => sync_folder(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            discard(&staged);
            return Err(io(&manifest)(e));
        }
    }
    // 3. Every file into place.
    for (k, (tmp, target)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target).and_then(|()| after_rename(k)) {
            discard(&staged[k..]);
            return Err(io(target)(e));
        }
    }
    sync_folder(dir);
    // 4. The manifest, last.
    write_atomic(&manifest, listing.as_bytes())
}

/// Makes renames and removals in `dir` durable. Best effort: some file systems cannot open or
/// sync a folder.
fn sync_folder(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks that the set `name` in `dir` is complete: its manifest `NAME.sha256` exists and every
/// file it lists has the listed SHA-256. Returns the files of the set. The error names the file
/// at fault and says what it means (an interrupted run, a mix of two runs, an edited file).
pub fn check_set(dir: &Path, name: &str) -> Result<Vec<PathBuf>, String> {
    let manifest = set_manifest(dir, name);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{}: missing: the files of this set are not a complete set (the run that wrote them was interrupted, or they were not written by advmnist); run the command again",
                manifest.display()
            ))
        }
        Err(e) => return Err(format!("{}: {e}", manifest.display())),
    };
    let listed = crate::data::mnist::parse_checksum_list(&manifest, &text)
        .map_err(|e| e.to_string())?
        .hashes;
    if listed.is_empty() {
        return Err(format!("{}: lists no file", manifest.display()));
    }
    let mut names: Vec<&String> = listed.keys().collect();
    names.sort();
    let mut paths = Vec::new();
    for file in names {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "{}: {e} (listed in {}: the set is incomplete)",
                path.display(),
                manifest.display()
            )
        })?;
        if crate::hashing::sha256_hex(&bytes) != listed[file] {
            return Err(format!(
                "{}: its SHA-256 is not the one {} lists: the folder mixes files of two runs, or the file was changed; run the command again",
                path.display(),
                manifest.display()
            ));
        }
        paths.push(path);
    }
    Ok(paths)
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
    fn files<'a>(csv: &'a str, json: &'a str, svg: &'a str) -> Vec<(&'static str, &'a [u8])> {
        vec![
            ("sweep.csv", csv.as_bytes()),
            ("sweep.json", json.as_bytes()),
            ("sweep.svg", svg.as_bytes()),
        ]
    }

    #[test]
    fn a_set_interrupted_between_two_renames_is_never_taken_for_a_complete_set() {
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("sweep");
        write_set(&out, "sweep", &files("csv A", "json A", "svg A")).unwrap();
        assert_eq!(check_set(&out, "sweep").unwrap().len(), 3);
        // Run B is killed right after its first rename: sweep.csv is B's, the others A's.
        let e = write_set_observed(
            &out,
            "sweep",
            &files("csv B", "json B", "svg B"),
            &mut |k| {
                if k == 0 {
                    Err(std::io::Error::other("killed"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("sweep.csv"), "{e}");
        assert_eq!(std::fs::read(out.join("sweep.csv")).unwrap(), b"csv B");
        assert_eq!(std::fs::read(out.join("sweep.json")).unwrap(), b"json A");
        let e = check_set(&out, "sweep").unwrap_err();
        assert!(
            e.contains("sweep.sha256") && e.contains("interrupted"),
            "{e}"
        );
        // No temporary file is left behind, and the next complete run is a complete set.
        let hidden: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
        write_set(&out, "sweep", &files("csv C", "json C", "svg C")).unwrap();
        assert_eq!(check_set(&out, "sweep").unwrap().len(), 3);
        assert_eq!(std::fs::read(out.join("sweep.svg")).unwrap(), b"svg C");
    }

    #[test]
    fn a_set_that_fails_before_its_renames_leaves_the_previous_set_complete() {
        let dir = tempfile::TempDir::new().unwrap();
        write_set(dir.path(), "sweep", &files("csv A", "json A", "svg A")).unwrap();
        // The third file cannot be staged: a folder is in the way of its temporary file.
        std::fs::create_dir(
            dir.path()
                .join(format!(".sweep.svg.tmp-{}", std::process::id())),
        )
        .unwrap();
        let e = write_set(dir.path(), "sweep", &files("csv B", "json B", "svg B")).unwrap_err();
        assert!(e.to_string().contains("sweep.svg"), "{e}");
        assert_eq!(check_set(dir.path(), "sweep").unwrap().len(), 3);
        assert_eq!(
            std::fs::read(dir.path().join("sweep.csv")).unwrap(),
            b"csv A"
        );
        assert!(!dir
            .path()
            .join(format!(".sweep.csv.tmp-{}", std::process::id()))
            .exists());
    }

    #[test]
    fn check_set_names_a_changed_file_and_a_missing_one() {
        let dir = tempfile::TempDir::new().unwrap();
        write_set(
            dir.path(),
            "human",
            &[("human.md", b"a"), ("human.svg", b"b")],
        )
        .unwrap();
        std::fs::write(dir.path().join("human.svg"), b"other run").unwrap();
        let e = check_set(dir.path(), "human").unwrap_err();
        assert!(e.contains("human.svg") && e.contains("two runs"), "{e}");
        std::fs::remove_file(dir.path().join("human.md")).unwrap();
        let e = check_set(dir.path(), "human").unwrap_err();
        assert!(e.contains("human.md"), "{e}");
    }
}
