//! `retouchd render`: makes new finished outputs from a delivered layers folder without the
//! server (another plugin strength, a PSD after all, another format). The source is found
//! through the journal (in done/, or still in its inbox) or given with `--source`; the watch's
//! `[watch.output]` settings are the starting point, the flags change them. Nothing is
//! overwritten: a taken name gets " (2)".

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::deliver::{self, NameTemplate};
use crate::job::JobState;
use crate::journal::Journal;
use crate::render::{self, Failure, FlatFormat, OutputSettings, RenderInput};

/// What to render.
pub struct Request<'a> {
    /// Delivered layers folders.
    pub paths: &'a [PathBuf],
    /// The source photo, when the journal cannot tell (or should not be asked).
    pub source: Option<&'a Path>,
    /// Per plugin, 0..=1, over the watch's.
    pub opacity: &'a [(String, f32)],
    pub flat: Option<FlatFormat>,
    pub psd: bool,
    /// Where to write (default: beside each folder).
    pub out: Option<&'a Path>,
}

/// Reads `Plugin=0.5` (the `--opacity` flag).
pub fn parse_opacity(text: &str) -> Result<(String, f32), String> {
    let (plugin, value) =
        text.rsplit_once('=').ok_or_else(|| format!("`{text}` is not PLUGIN=STRENGTH, e.g. \"Dodge Burn=0.5\""))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number from 0 to 1"))?;
    Ok((plugin.trim().to_string(), render::opacity(value)?))
}

/// One folder's outcome.
pub struct Rendered {
    pub folder: PathBuf,
    pub outcome: Result<Vec<PathBuf>, String>,
}

/// Renders every folder; a problem with one does not stop the others.
pub fn run(config: Option<&Config>, request: &Request) -> Vec<Rendered> {
    let journal = config.and_then(|c| Journal::for_config(c, false).ok());
    request
        .paths
        .iter()
        .map(|folder| Rendered {
            folder: folder.clone(),
            outcome: render_one(config, journal.as_ref(), request, folder),
        })
        .collect()
}

fn render_one(
    config: Option<&Config>,
    journal: Option<&Journal>,
    request: &Request,
    folder: &Path,
) -> Result<Vec<PathBuf>, String> {
    let folder = std::fs::canonicalize(folder).map_err(|e| format!("cannot open {}: {e}", folder.display()))?;
    if !folder.is_dir() {
        return Err(format!(
            "{} is not a layers folder (give the folder the layers were delivered in)",
            folder.display()
        ));
    }
    let (source, mut settings, name, watch) = find_source(config, journal, request.source, &folder)?;
    if let Some(flat) = request.flat {
        settings.flat = flat;
    }
    settings.psd |= request.psd;
    let layers = layer_plugins(&folder);
    let layer_names: Vec<&str> = layers.iter().map(String::as_str).collect();
    for (plugin, value) in request.opacity {
        if let Some(why) = crate::plugins::opacity_name_problem(plugin, &layer_names, &[]) {
            return Err(format!("--opacity {plugin}={value}: {why}"));
        }
        settings.set_opacity(plugin, *value);
    }
    if !settings.renders() {
        return Err("nothing to make: flat = \"none\" and no --psd".into());
    }
    let out_dir = match request.out {
        Some(dir) => dir.to_path_buf(),
        None => folder.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    // Made beside the outputs, so placing them is a rename.
    let work = tempfile::Builder::new()
        .prefix(".retouchd-render-")
        .tempdir_in(&out_dir)
        .map_err(|e| format!("cannot write in {}: {e}", out_dir.display()))?;
    let input = RenderInput { source: &source, result: &folder, settings: &settings, work_dir: work.path() };
    let made = render::render(&input).map_err(|e| match e {
        Failure::Bad(reason) => reason,
        Failure::Io(e) => format!("cannot write into {}: {e}", out_dir.display()),
    })?;
    // Named by the watch's name template, as the daemon's layout names them.
    let stem = deliver::output_name(&name, source.file_name().unwrap_or_default(), &watch);
    made.iter()
        .map(|m| {
            deliver::place(&m.path, &out_dir, &stem, Some(m.ext)).map_err(|e| format!("cannot place the output: {e}"))
        })
        .collect()
}

/// The plugins of the layer files in a layers folder.
fn layer_plugins(folder: &Path) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    render::layers::stack(names.iter().map(String::as_str))
        .map(|stack| stack.into_iter().map(|l| l.plugin).collect())
        .unwrap_or_default()
}

/// The source photo for a layers folder, and its watch: its output settings, name template and
/// folder name (for the template's `{watch}`).
fn find_source(
    config: Option<&Config>,
    journal: Option<&Journal>,
    given: Option<&Path>,
    folder: &Path,
) -> Result<(PathBuf, OutputSettings, NameTemplate, std::ffi::OsString), String> {
    let job = journal.and_then(|j| j.job_with_output(folder).ok().flatten());
    // The watch's folder name, for the name template's `{watch}`.
    let watch =
        job.as_ref().and_then(|j| j.source.inbox.file_name()).map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    let (settings, name) = job
        .as_ref()
        .and_then(|job| config?.watches.iter().find(|w| w.inbox == job.source.inbox))
        .map(|w| (w.output.clone(), w.output_name.clone()))
        .unwrap_or_default();
    if let Some(source) = given {
        return Ok((source.to_path_buf(), settings, name, watch));
    }
    let Some(job) = job else {
        return Err(format!(
            "the journal has no delivery into {}; give its photo with --source FILE",
            folder.display()
        ));
    };
    let candidates = match &job.state {
        JobState::Done { moved_to, .. } => [moved_to.clone(), Some(job.source.path())],
        _ => [None, Some(job.source.path())],
    };
    candidates.into_iter().flatten().find(|p| p.is_file()).map(|p| (p, settings, name, watch)).ok_or_else(|| {
        format!("its photo ({}) is no longer in done/ or the inbox; give it with --source FILE", job.source.file_name())
    })
}

/// `retouchd render` from the command line: prints each folder's outputs, and fails when one
/// could not be rendered.
pub fn cli(
    config_file: Option<std::path::PathBuf>,
    opacity: Vec<(String, f32)>,
    flat: Option<FlatFormat>,
    psd: bool,
    out: Option<std::path::PathBuf>,
    source: Option<std::path::PathBuf>,
    paths: Vec<std::path::PathBuf>,
) -> Result<(), super::Failure> {
    // The config tells the journal and the watch's settings; with --source it may be absent.
    let config = match (super::load_config_for(config_file.as_deref(), crate::config::Purpose::Inspect), &source) {
        (Ok(config), _) => Some(config),
        (Err(_), Some(_)) => None,
        (Err(e), None) => return Err(e),
    };
    let request =
        Request { paths: &paths, source: source.as_deref(), opacity: &opacity, flat, psd, out: out.as_deref() };
    let mut failed = 0;
    for done in run(config.as_ref(), &request) {
        match done.outcome {
            Ok(outputs) => {
                let list: Vec<String> = outputs.iter().map(|p| p.display().to_string()).collect();
                println!("{}: wrote {}", done.folder.display(), list.join(", "));
            }
            Err(why) => {
                failed += 1;
                eprintln!("{}: {why}", done.folder.display());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(super::Failure::new(
            crate::exit::FAILURE,
            format!("{n} of {} folder(s) could not be rendered", paths.len()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacity_flags_name_a_plugin_and_a_strength() {
        assert_eq!(parse_opacity("Dodge Burn=0.5"), Ok(("Dodge Burn".into(), 0.5)));
        assert_eq!(parse_opacity("A=B=1"), Ok(("A=B".into(), 1.0)));
        assert!(parse_opacity("Dodge Burn").unwrap_err().contains("PLUGIN=STRENGTH"));
        assert!(parse_opacity("Heal=2").unwrap_err().contains("out of range"));
        assert!(parse_opacity("Heal=x").unwrap_err().contains("not a number"));
    }
}
