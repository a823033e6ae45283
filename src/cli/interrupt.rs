//! SIGINT (Ctrl-C) and SIGTERM: the command says that it stopped and how to go on, then ends.
//!
//! Every file advmnist writes is replaced atomically (`io_safety::write_atomic`, or as a set
//! with its manifest last), and every long command keeps its progress in files written the
//! same way: `train` and `dae train` their checkpoint, `advtrain` its snapshots and
//! checkpoint, `evaluate` its partial record, `reproduce` each job's record and checkpoint. So
//! ending the process at any instant loses at most the work since the last of those files, as
//! SIGKILL would, and the next run continues from there (docs/reliability.md, "Faults counted",
//! measures it). What the signal adds over SIGKILL is the message (which signal stopped which
//! command, and what to run to continue) and a tidy folder: the temporary files of the writes
//! in progress and the run's lock files are removed (`io_safety::tidy_up_before_exit`). Stopping at once, rather than at the end of the
//! current iteration, keeps Ctrl-C as quick as users expect and needs no check in any loop.
//!
//! How: the two signals are blocked in the main thread before any other thread exists, so
//! every thread inherits the mask, and one thread waits for them with `sigwait` and prints the
//! message (plain code, not a signal handler, so it may allocate and lock stderr). The process
//! ends with status 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell
//! reports a process a signal ended. advmnist starts no other program, so no child inherits
//! the mask.

use std::sync::Mutex;

/// What the message says after "stopped": set by each command once it knows its files.
static HOW_TO_GO_ON: Mutex<String> = Mutex::new(String::new());

/// Said when a command has set nothing: every output is written whole or not at all.
const DEFAULT_HOW_TO_GO_ON: &str =
    "No output was left half-written; run the same command again to start over.";

/// Blocks SIGINT and SIGTERM in this thread (call it first in `main`, before any thread is
/// started) and starts the thread that waits for them. `command` names the command in the
/// message.
pub fn install(command: &str) {
    #[cfg(unix)]
    {
        let command = command.to_string();
        // SAFETY: plain libc calls on a local signal set; no other thread exists yet.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is an initialised signal set; `signal` a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    continue;
                }
                let name = if signal == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                let how = HOW_TO_GO_ON.lock().map(|s| s.clone()).unwrap_or_default();
                let how = if how.is_empty() {
                    DEFAULT_HOW_TO_GO_ON.to_string()
                } else {
                    how
                };
                advmnist::io_safety::tidy_up_before_exit();
                eprintln!("\nadvmnist {command}: stopped by {name}. {how}");
                std::process::exit(128 + signal);
            })
            .expect("starting the signal thread");
    }
}

/// Sets what the message says a user should do to continue (a sentence or two).
pub fn how_to_go_on(text: impl Into<String>) {
    if let Ok(mut s) = HOW_TO_GO_ON.lock() {
        *s = text.into();
    }
}
