//! `retouchd process PATH...`: a one-shot run for people rather than daemons. Sends the given
//! files (and the images in the given folders) once, with a progress bar per file and overall
//! (hidden when not on a terminal), and writes results next to them or into `--out`. It uses
//! the daemon's journal, so a second run after an interruption resumes instead of paying again,
//! and a file already done is not sent again (it is listed, with where its results went, and
//! `--again` sends it anew for a new credit). Sources are never moved. From folders only photos
//! and zips are taken (by extension); files named one by one are always tried.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::broadcast;

use crate::config::{Config, OnSuccess, WatchConfig, WatchMode};
use crate::daemon::{self, Before, JobUpdate, RunOptions, Summary};
use crate::ignore::IgnoreRules;
use crate::job::{JobState, StateName};
use crate::logging::printable;

/// Files to send, as (folder, file below it) pairs.
type Files = Vec<(PathBuf, PathBuf)>;

/// Splits the given paths into (folder, file below it) pairs; returns also the files passed over
/// in folders because they are not photos.
fn collect(paths: &[PathBuf]) -> anyhow::Result<(Files, Vec<PathBuf>)> {
    let rules = IgnoreRules::new(&[]);
    let mut files = Vec::new();
    let mut passed_over = Vec::new();
    for path in paths {
        let real = std::fs::canonicalize(path).with_context(|| format!("{} cannot be read", path.display()))?;
        if real.is_dir() {
            let mut found = crate::watch::list_files(&real, true, &rules)
                .with_context(|| format!("{} cannot be listed", real.display()))?;
            found.sort_by(|a, b| a.0.cmp(&b.0));
            for (rel, _) in found {
                if crate::formats::has_photo_extension(&rel) {
                    files.push((real.clone(), rel));
                } else {
                    passed_over.push(real.join(rel));
                }
            }
        } else {
            let parent = real.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = real.file_name().map(PathBuf::from).unwrap_or_default();
            files.push((parent, name));
        }
    }
    if files.is_empty() {
        bail!(
            "nothing to process: no photos (.jpg, .jpeg, .png, .zip) in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok((files, passed_over))
}

/// The config for this run: the server and state of `base`, the payload of its watch
/// `watch_index`, and one synthetic watch per folder that holds given files.
fn one_shot_config(
    mut base: Config,
    files: &[(PathBuf, PathBuf)],
    out: Option<&Path>,
    watch_index: usize,
) -> anyhow::Result<Config> {
    let Some(template) = base.watches.get(watch_index).cloned() else {
        bail!("the config has no watch[{watch_index}] to take the payload from");
    };
    let mut folders: Vec<&PathBuf> = files.iter().map(|(f, _)| f).collect();
    folders.sort();
    folders.dedup();
    base.watches = folders
        .into_iter()
        .map(|folder| WatchConfig {
            inbox: folder.clone(),
            outbox: out.map(Path::to_path_buf).unwrap_or_else(|| folder.clone()),
            done_dir: None,
            failed_dir: None,
            on_success: OnSuccess::Keep,
            settle: Duration::ZERO,
            recursive: true,
            ignore: Vec::new(),
            mode: WatchMode::Poll,
            on_delivered: Vec::new(),
            on_failed: Vec::new(),
            ..template.clone()
        })
        .collect();
    Ok(base)
}

/// Shows job updates as progress bars (or plain lines off a terminal) until the run ends.
async fn show_progress(mut rx: broadcast::Receiver<JobUpdate>, total: usize) -> BTreeMap<String, String> {
    let on_terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if on_terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = multi.add(ProgressBar::new(total as u64));
    overall.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // The elapsed time moves on between job updates too.
    overall.enable_steady_tick(Duration::from_millis(500));
    let style = ProgressStyle::with_template("{spinner} {prefix:30} {bar:20} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: HashMap<PathBuf, ProgressBar> = HashMap::new();
    let mut outcomes = BTreeMap::new();
    while let Ok(update) = rx.recv().await {
        let bar = bars.entry(update.file.clone()).or_insert_with(|| {
            let bar = multi.insert_before(&overall, ProgressBar::new(100));
            bar.set_style(style.clone());
            bar.set_prefix(update.file.display().to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_position(update.progress.unwrap_or(0.0) as u64);
        // A job held up says why (a retry, a pause), never an endless "submitting".
        match &update.waiting {
            Some(why) => {
                bar.set_message(format!("{}: {}", update.state.as_str(), printable(why)));
                if !on_terminal {
                    say!("{}: {}: {}", update.file.display(), update.state.as_str(), printable(why));
                }
            }
            None => bar.set_message(update.state.as_str()),
        }
        let outcome = match update.state {
            StateName::Done => Some("delivered".to_string()),
            StateName::Failed => Some(format!("failed: {}", update.reason.clone().unwrap_or_default())),
            StateName::Rejected => Some(format!("refused: {}", update.reason.clone().unwrap_or_default())),
            _ => None,
        };
        if let Some(outcome) = outcome {
            bar.finish_with_message(outcome.clone());
            overall.inc(1);
            if !on_terminal {
                say!("{}: {outcome}", update.file.display());
            }
            outcomes.insert(update.file.display().to_string(), outcome);
        }
    }
    overall.finish();
    outcomes
}

/// Whether a file looks like a result layer or its metadata (never an input).
fn is_result_entry(rel: &Path) -> bool {
    let name = rel.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    name == "result.json" || (name.starts_with("index=") && name.contains("&blendmode="))
}

/// Leaves out results of earlier runs: outputs the journal knows, files under `--out`, and
/// anything named like a result layer.
fn without_results(files: Vec<(PathBuf, PathBuf)>, config: &Config, out: Option<&Path>) -> Vec<(PathBuf, PathBuf)> {
    let journal = crate::journal::Journal::for_config(config, false).ok();
    let mut outputs: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    files
        .into_iter()
        .filter(|(folder, rel)| {
            let known = outputs
                .entry(folder.clone())
                .or_insert_with(|| journal.as_ref().and_then(|j| j.outputs_in(folder).ok()).unwrap_or_default());
            let full = folder.join(rel);
            !is_result_entry(rel)
                && !known.iter().any(|o| full.starts_with(o))
                && !out.is_some_and(|o| full.starts_with(o))
        })
        .collect()
}

/// What to run and how.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub paths: &'a [PathBuf],
    /// Write results here instead of next to each file.
    pub out: Option<&'a Path>,
    /// The watch of the config whose payload to use.
    pub watch: usize,
    /// Send files done (or refused) before again, for a new credit each.
    pub again: bool,
}

/// Processes the request's paths once, says what was done before and what was passed over, and
/// returns what happened.
pub async fn run(base: Config, request: Request<'_>) -> anyhow::Result<Summary> {
    let out_real = request.out.and_then(|o| std::fs::canonicalize(o).ok());
    let (found, passed_over) = collect(request.paths)?;
    let files = without_results(found, &base, out_real.as_deref());
    if let Some(out) = request.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let out = request.out.map(std::fs::canonicalize).transpose()?;
    let mut config = one_shot_config(base, &files, out.as_deref(), request.watch)?;
    // --again pays anew, also for a photo whose bytes match one retouched before.
    for watch in &mut config.watches {
        watch.resend_identical |= request.again;
    }
    if !passed_over.is_empty() {
        let names: Vec<String> = passed_over.iter().take(5).map(|p| p.display().to_string()).collect();
        let more = passed_over.len().saturating_sub(names.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        say!("passed over {} file(s) that are not photos: {}{more}", passed_over.len(), names.join(", "));
    }
    if request.again {
        say!("--again: files retouched before are sent again; each costs a new credit");
    }
    let staging_dirs: Vec<PathBuf> = config.watches.iter().map(|w| crate::deliver::staging_path(&w.outbox)).collect();
    let (tx, rx) = broadcast::channel(1024);
    let progress = tokio::spawn(show_progress(rx, files.len()));
    let options =
        RunOptions { once: true, updates: Some(tx), files: Some(files), again: request.again, ..RunOptions::default() };
    let result = daemon::run(config, options, std::future::pending()).await;
    let _ = progress.await;
    // The staging folders were made beside the user's files: leave none behind (only empty
    // ones go; a staged result of an interrupted job stays for the next run).
    for dir in staging_dirs {
        let _ = std::fs::remove_dir(dir);
    }
    let summary = result?;
    for before in &summary.before {
        say!("{}: {}", before.file.display(), describe_before(before));
    }
    if !summary.before.is_empty() {
        say!(
            "{} file(s) were done before and not sent again; add --again to send them anew (a new credit each)",
            summary.before.len()
        );
    }
    Ok(summary)
}

/// "already done (job #3 → /out/a)" or "refused before (job #4): reason".
fn describe_before(before: &Before) -> String {
    match &before.state {
        JobState::Done { outputs, .. } => {
            let outputs: Vec<String> = outputs.iter().map(|o| o.display().to_string()).collect();
            format!("already done (job #{} → {})", before.job, outputs.join(", "))
        }
        other => format!("refused before (job #{}): {}", before.job, other.reason().unwrap_or("")),
    }
}
/// `process` uses the daemon's journal, so it cannot run beside a daemon of the same state
/// folder: say so plainly, with the code for a held state folder.
pub fn failure(e: anyhow::Error) -> super::Failure {
    use crate::daemon::DaemonError;
    match e.downcast::<DaemonError>() {
        Ok(DaemonError::Lock(crate::lock::LockError::Held { pid, .. })) => super::Failure::new(
            crate::exit::LOCKED,
            format!(
                "the daemon{} is running with this state folder, and `retouchd process` uses the same journal, \
                 so it cannot run beside it. Drop the files into one of its inboxes instead, or stop it \
                 first (`systemctl stop retouchd`)",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        ),
        Ok(other) => super::Failure::from(other),
        Err(e) => super::Failure::from(e),
    }
}
