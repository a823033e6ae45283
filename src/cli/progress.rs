//! The one progress bar every command draws on stderr while it works. On a terminal only:
//! when stderr is not one (a log file, a pipe, a test), the bar is hidden and [`say`] prints
//! its lines plainly.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps drawn with `template` (indicatif's template syntax: `{bar:30}`,
/// `{pos}/{len}`, `{msg}`, `{eta}`, ...), filled with `=` up to a `>`.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A line of news above the bar, or on stderr when the bar is hidden.
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}")
    } else {
        bar.println(line)
    }
}
