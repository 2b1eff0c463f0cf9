//! retouchd: a hot-folder daemon for the Retouch4me cloud retouching API.
//!
//! # Layout
//! - [`daemon`]: the coordinator, one task per job, the pause gate, metrics; [`job`] is its pure
//!   state machine and [`journal`] the SQLite record of every transition; [`lock`] keeps one
//!   daemon per state folder.
//! - [`watch`]: watching inboxes (notify as hints, scans as truth) and readiness; [`ignore`]
//!   says which files are never jobs; [`inspect`] checks files against the server's limits.
//! - [`deliver`]: staging, safe extraction and no-overwrite renames into the outbox.
//! - [`api`]: the HTTP client for the retoucher server and its classified error type.
//! - [`config`]: TOML validated into a ready [`config::Config`], every problem at once.
//! - Commands: [`demo`], [`process`], [`status`], [`retry`]; [`hooks`] and [`notify`] (systemd)
//!   for operations; [`logging`] for log output.
//! - [`sim`]: a faithful local simulator of the server, with fault-injection knobs.
//! - [`formats`]: what a file really is, by its bytes; [`imagegen`]: small real images.
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
