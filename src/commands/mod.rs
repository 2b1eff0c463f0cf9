//! The commands a person runs besides the daemon itself: [`demo`], [`process`] (one-shot runs),
//! [`status`], [`retry`] and [`check`]. Each is a thin layer over the daemon, the journal and
//! the API client; `main.rs` only parses arguments and maps their errors to exit codes.

pub mod check;
pub mod demo;
pub mod process;
pub mod retry;
pub mod status;
