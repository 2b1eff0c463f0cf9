//! retouchd: a hot-folder daemon for the Retouch4me cloud retouching API.
//!
//! # Layout
//! - [`api`]: the HTTP client for the retoucher server (start, status, getFile, limits,
//!   balance) and its classified error type.
//! - [`sim`]: a faithful local simulator of that server, with fault-injection knobs.
//! - [`formats`]: what a file really is, by its bytes (kind, dimensions, completeness).
//! - [`imagegen`]: small real images and archives for the simulator, the demo and tests.
//! - [`logging`]: log output for terminals, journald and log shippers.
//!
//! # Data flow
//! ```text
//! inbox ─▶ watcher ─ready file─▶ coordinator ◀──▶ journal
//!                                   │ work
//!                                   ▼
//!               uploader ─POST start─▶ server ◀─GET status─ poller
//!                                   │ completed
//!                                   ▼
//!               fetcher ─GET getFile─▶ staging ─rename─▶ outbox ; source ─▶ done/ | failed/
//! ```

pub mod api;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod formats;
pub mod hooks;
pub mod ignore;
pub mod imagegen;
pub mod inspect;
pub mod job;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod notify;
pub mod process;
pub mod retry;
pub mod sim;
pub mod status;
pub mod watch;
