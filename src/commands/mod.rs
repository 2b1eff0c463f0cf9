//! The commands a person runs besides the daemon itself: [`demo`], [`process`] (one-shot runs),
//! [`render`] (finished photos again, without the server), [`check`], [`init`] (first setup)
//! and the manual page ([`man`]). Each is a thin layer over the daemon, the journal and the API
//! client; `main.rs` only parses arguments and maps their errors to exit codes. `status` and
//! `retry` are [`crate::report`] and [`crate::retry`], which the dashboard uses too.

/// `println!` for the commands, through [`say_line`].
macro_rules! say {
    () => { $crate::commands::say_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::commands::say_line(format_args!($($arg)*)) };
}

pub mod check;
pub mod demo;
pub mod init;
pub mod man;
pub mod process;
pub mod render;

/// Prints one line to standard output. A reader that went away (`retouchd process DIR | head`)
/// does not stop the work, as `println!` would by panicking: the line is dropped.
pub(crate) fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
