//! retouchd: a hot-folder daemon for the Retouch4me cloud retouching API.
//!
//! # Layout
//! The modules stack in layers without import cycles (checked by `tests/it/architecture.rs`):
//! [`vocab`] at the bottom imports nothing of ours; [`serve`] (the daemon with the dashboard
//! beside it) and `main.rs` are on top.
//! - [`daemon`]: [`daemon::run`] in five steps; its coordinator (queue, running jobs, one method
//!   per event), admission of ready files, start-up recovery, the per-job runner, the pause gate,
//!   group commit, metrics and the live status file.
//! - [`job`]: the pure state machine, its restart rules, and the pure decisions "server answer →
//!   next step"; [`journal`]: the SQLite record of every transition; [`lock`]: one daemon per
//!   state folder.
//! - [`source`]: a job's source file, its version stamp and the one "is it still the same file?"
//!   check; [`inbox`]: an inbox's marker file and owner record; [`watch`]: watching inboxes (notify as hints, scans as truth) and readiness;
//!   [`ignore`]: files that are never jobs; [`inspect`]: checks against the server's limits;
//!   [`proxy`]: the 8-bit stand-in sent for a TIFF; [`schedule`]: upload windows in local time;
//!   [`budget`]: credit budgets per local day and month.
//! - [`beneath`]: file work beneath an opened folder, links refused, temporary files exclusive;
//!   [`lossless`]: paths in the journal as they are on disk; [`result_cache`]: paid results
//!   kept by content, so the same photo is never paid for twice; [`share`]: file work on an
//!   inbox that may stop answering (a hung network share).
//! - [`deliver`]: where results go (a journaled target), staging, safe extraction, no-overwrite
//!   publishing, moving sources.
//! - [`api`]: the HTTP client, its classified error type, and the retry policy table beside it.
//! - [`config`]: TOML validated into a ready [`config::Config`], every problem at once;
//!   [`plugins`]: the plugin table and the payload check against it.
//! - [`commands`]: `demo`, `process`, `render`, `check`, `init`, the man page; [`report`]: the
//!   status report (`status`, the dashboard's API); [`retry`]: failed files sent again; [`exit`]:
//!   exit codes; [`hooks`], [`systemd`] (sd_notify) and [`logging`] for operations;
//!   [`notify`]: events told to webhooks, ntfy and e-mail (queued in the journal by the daemon).
//! - [`serve`]: the daemon with the dashboard ([`web`]) beside it; [`vocab`]: the clock, the host
//!   name and the first claim's generation, shared by every layer.
//! - [`render`]: the finished photo (and PSD) composited from the source and the server's
//!   layers, with the source's metadata; the daemon's Rendering step and `retouchd render`.
//! - [`sim`]: a faithful local simulator of the server, with fault-injection knobs.
//! - [`formats`]: what a file really is, by its bytes; [`imagegen`]: small real images.
//!
//! # Data flow
//! ```text
//! inbox ─▶ watcher ─ready file─▶ coordinator ◀──▶ journal (group commit)
//!                                   │ admits a job, spawns its runner
//!                                   ▼
//!   runner: submit ─POST start─▶ server ◀─GET status─ poll ─completed─▶ fetch ─GET getFile─▶
//!           staging ─render (finished photo, PSD)─▶ staging ─rename─▶ outbox ; source ─▶ done/ | failed/
//! ```
//! Each runner step's answer goes through [`job`]'s decisions; the resulting event is committed
//! to the journal before the next step's side effect.

pub mod api;
pub mod beneath;
pub mod budget;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod exit;
pub mod formats;
pub mod hooks;
pub mod ignore;
pub mod imagegen;
pub mod inbox;
pub mod inspect;
pub mod job;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod lossless;
pub mod notify;
pub mod plugins;
pub mod proxy;
pub mod render;
pub mod report;
pub mod result_cache;
pub mod retry;
pub mod schedule;
pub mod serve;
pub mod share;
pub mod sim;
pub mod source;
pub mod systemd;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vocab;
pub mod watch;
pub mod web;
