//! One job's layout in its outbox, made once per job: the staging folder beside the outbox
//! (`.retouchd-staging`, this user's only), the stem its staged things are named after
//! (`job-N`, `job-N.gG` after a takeover), the folder its finished outputs are made in, where
//! its result and its finished outputs are published, and their name (the watch's name
//! template). The runner, start-up recovery, `process` and `retouchd render` use it, so a name
//! or a path is made in one place.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use super::{NameParts, NameTemplate, Target, split_os_name};
use crate::beneath::Dir;
use crate::formats::FileKind;

/// The staging folder's name, inside each outbox.
pub const STAGING_DIR: &str = ".retouchd-staging";

/// An outbox's staging folder.
pub fn staging_path(outbox: &Path) -> PathBuf {
    outbox.join(STAGING_DIR)
}

/// Opens an outbox's staging folder (made if missing, readable only by this user, so nobody
/// else can plant anything inside it).
pub fn open_staging(outbox: &Path) -> io::Result<Dir> {
    let staging = Dir::root_made(outbox)?.create_dirs(Path::new(STAGING_DIR))?;
    let _ = rustix::fs::fchmod(&staging, rustix::fs::Mode::from_raw_mode(0o700));
    Ok(staging)
}

/// One job's names and places (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    outbox: PathBuf,
    /// The source's path below its inbox.
    rel: PathBuf,
    /// What the job's staged things are named after.
    stem: String,
    /// The finished outputs' file name, without extension.
    output_name: OsString,
}

impl Layout {
    /// The layout of job `job`, claimed under `generation`, for the source `inbox/<rel>` of the
    /// watch whose inbox folder is named `watch`, its finished outputs named by `template`.
    pub fn new(outbox: &Path, rel: &Path, job: i64, generation: i64, watch: &OsStr, template: &NameTemplate) -> Layout {
        let source_name = rel.file_name().unwrap_or_default();
        Layout {
            outbox: outbox.to_path_buf(),
            rel: rel.to_path_buf(),
            stem: stage_stem(job, generation),
            output_name: output_name(template, source_name, watch),
        }
    }

    /// The outbox.
    pub fn outbox(&self) -> &Path {
        &self.outbox
    }

    /// The outbox's staging folder.
    pub fn staging_path(&self) -> PathBuf {
        staging_path(&self.outbox)
    }

    /// Opens (and makes) the staging folder.
    pub fn open_staging(&self) -> io::Result<Dir> {
        open_staging(&self.outbox)
    }

    /// What the job's staged things are named after.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// Where the server's result is published: `outbox/<sub>/<stem>` for a zip, else with the
    /// extension of its real kind.
    pub fn result_target(&self, kind: FileKind) -> Target {
        Target::for_result(&self.outbox, &self.rel, kind)
    }

    /// The staged name of a result restored from the result cache for `target`.
    pub fn staged_result_name(&self, target: &Target) -> PathBuf {
        staged_result_name(&self.stem, target)
    }

    /// The job's folder in the staging folder (a zip result extracted), where result.json is.
    pub fn staged_folder(&self) -> PathBuf {
        self.staging_path().join(&self.stem)
    }

    /// The folder the finished outputs are made in, beside the staged result.
    pub fn render_dir(&self, staged: &Path) -> PathBuf {
        staged.with_file_name(staged_name(&self.stem, RENDER_SUFFIX))
    }

    /// Where a finished output with extension `ext` is published: beside the result, under
    /// the output name.
    pub fn output_target(&self, result: &Target, ext: &str) -> Target {
        Target { dir: result.dir.clone(), stem: self.output_name.clone(), ext: Some(ext.to_string()), placed: None }
    }

    /// Removes what may still be staged for the job once its outputs are published (see
    /// [`discard_job_staging`]).
    pub fn discard_staging(&self) -> io::Result<()> {
        discard_job_staging(&self.open_staging()?, &self.stem);
        Ok(())
    }
}

/// The staged name of a result for `target` under `stem`: `job-N` for a zip's folder,
/// `job-N.<ext>` for an image.
pub(super) fn staged_result_name(stem: &str, target: &Target) -> PathBuf {
    PathBuf::from(staged_name(stem, &target.ext.as_deref().map(|e| format!(".{e}")).unwrap_or_default()))
}

/// The finished outputs' name for the source file `source_name` of the watch `watch`, by the
/// watch's name template (with the time now).
pub fn output_name(template: &NameTemplate, source_name: &OsStr, watch: &OsStr) -> OsString {
    let (stem, ext) = split_os_name(source_name);
    template.apply(&NameParts { stem, ext: ext.unwrap_or_default(), watch, now: std::time::SystemTime::now() })
}

/// Where a job's finished outputs are made: `job-N.render`, beside its staged result.
const RENDER_SUFFIX: &str = ".render";

/// What a job's staged things are named after: `job-N` for its first claim, `job-N.gG` when
/// node took it over under generation G (so no two nodes ever stage under one name).
pub(super) fn stage_stem(job: i64, generation: i64) -> String {
    if generation <= crate::vocab::FIRST_GENERATION { format!("job-{job}") } else { format!("job-{job}.g{generation}") }
}

/// The job a staged name belongs to (`job-N…`), if it is one.
pub fn staged_job(name: &std::ffi::OsStr) -> Option<i64> {
    let rest = name.to_str()?.strip_prefix("job-")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

/// The name of something staged under `stem` (see [`stage_stem`]), followed by `suffix`.
fn staged_name(stem: &str, suffix: &str) -> String {
    format!("{stem}{suffix}")
}

/// Removes what may still be staged under `stem` in `staging` once its outputs are published:
/// its result (`job-N`, or `job-N.jpg|png` for one image) when the finished photo replaced it,
/// and its work folder `job-N.render`. Named, not searched: the staging folder may hold
/// thousands of other jobs.
fn discard_job_staging(staging: &Dir, stem: &str) {
    for suffix in ["", RENDER_SUFFIX, ".jpg", ".png"] {
        let name = staged_name(stem, suffix);
        let _ = staging.remove_all(Path::new(&name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_took_a_job_over_stages_under_a_name_of_its_own() {
        assert_eq!(stage_stem(7, 1), "job-7");
        assert_eq!(stage_stem(7, 3), "job-7.g3");
        let template = NameTemplate::default();
        let layout = Layout::new(Path::new("/o"), Path::new("sub/a.jpg"), 7, 3, OsStr::new("in"), &template);
        assert_eq!(
            layout.render_dir(Path::new("/o/.retouchd-staging/job-7.g3")),
            Path::new("/o/.retouchd-staging/job-7.g3.render")
        );
        assert_eq!(layout.staged_folder(), Path::new("/o/.retouchd-staging/job-7.g3"));
        for (name, job) in [("job-7", Some(7)), ("job-7.g3.render", Some(7)), ("job-12.jpg", Some(12))] {
            assert_eq!(staged_job(OsStr::new(name)), job, "{name}");
        }
        for name in [".retouchd-download-5.part", "job-", "jobs-1", "notes"] {
            assert_eq!(staged_job(OsStr::new(name)), None, "{name}");
        }
    }

    #[test]
    fn one_layout_names_the_result_the_cached_copy_and_the_finished_outputs() {
        let template = NameTemplate::parse("{stem}-final").unwrap();
        let layout = Layout::new(Path::new("/o"), Path::new("shoot/a.b.jpg"), 4, 1, OsStr::new("in"), &template);
        let result = layout.result_target(FileKind::Zip);
        assert_eq!(
            (result.dir.as_path(), result.stem.as_os_str(), result.ext.as_deref()),
            (Path::new("/o/shoot"), OsStr::new("a.b"), None)
        );
        let image = layout.result_target(FileKind::Png);
        assert_eq!(layout.staged_result_name(&image), Path::new("job-4.png"));
        let flat = layout.output_target(&result, "jpg");
        assert_eq!(flat.path(), Path::new("/o/shoot/a.b-final.jpg"));
        assert_eq!(output_name(&template, OsStr::new("x.tif"), OsStr::new("in")), "x-final");
    }
}
