//! A property test of the daemon's file work against a hostile inbox, outbox, done and failed
//! folder: random trees (names with odd bytes included), random steps of the daemon (list the
//! inbox, open and check a source, move it to done or failed with its note, delete it, stage
//! and publish a result, extract an archive, write the inbox marker), and between any two steps
//! a random folder or file below the four swapped for a link to a private folder. Afterwards
//! the private folder is exactly as it was, and nothing the daemon read came from it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use retouchd::deliver::{self, STAGING_DIR, Target};
use retouchd::source::{Source, Stamp};

use crate::support::walk;

/// What every private file holds: any read that returns it crossed a link.
const CANARY: &[u8] = b"PRIVATE-CANARY";

/// A file or folder name: mostly plain, sometimes with bytes that are not UTF-8.
fn name() -> impl Strategy<Value = OsString> {
    prop_oneof![
        3 => "[a-z]{1,6}(\\.jpg)?".prop_map(OsString::from),
        1 => proptest::collection::vec(any::<u8>().prop_filter("no slash or NUL", |b| *b != b'/' && *b != 0), 1..12)
            .prop_filter("not . or ..", |v| v != b"." && v != b"..")
            .prop_map(OsString::from_vec),
    ]
}

/// A path of one to three names.
fn rel_path() -> impl Strategy<Value = PathBuf> {
    proptest::collection::vec(name(), 1..4).prop_map(|parts| parts.iter().collect())
}

#[derive(Debug, Clone)]
enum Step {
    /// Put a file at this path of the inbox (a person copying a shoot).
    Drop(PathBuf),
    List,
    Open(usize),
    MoveToDone(usize),
    MoveToFailed(usize),
    Delete(usize),
    Publish(PathBuf),
    Extract(PathBuf),
    Marker,
    /// Swap the n-th folder or file below one of the four for a link into the private folder.
    Swap {
        root: usize,
        pick: usize,
        to_file: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => rel_path().prop_map(Step::Drop),
        1 => Just(Step::List),
        2 => any::<usize>().prop_map(Step::Open),
        2 => any::<usize>().prop_map(Step::MoveToDone),
        2 => any::<usize>().prop_map(Step::MoveToFailed),
        1 => any::<usize>().prop_map(Step::Delete),
        2 => rel_path().prop_map(Step::Publish),
        1 => rel_path().prop_map(Step::Extract),
        1 => Just(Step::Marker),
        3 => (0..4usize, any::<usize>(), any::<bool>()).prop_map(|(root, pick, to_file)| Step::Swap { root, pick, to_file }),
    ]
}

/// Whether `rel` below `root` meets a link on the way (or is one).
fn through_a_link(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    rel.components().any(|part| {
        at.push(part);
        at.symlink_metadata().is_ok_and(|m| m.is_symlink())
    })
}

/// The private folder's files and their bytes.
fn snapshot(private: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(private).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap_or_default())).collect()
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let [inbox, outbox, done, failed, private] =
        ["inbox", "outbox", "done", "failed", "private"].map(|n| dir.path().join(n));
    for d in [&inbox, &outbox, &done, &failed] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(private.join("deeper")).unwrap();
    for name in ["a.jpg", "x", "note.error.txt", "deeper/a.jpg"] {
        std::fs::write(private.join(name), CANARY).unwrap();
    }
    let before = snapshot(&private);
    let roots = [&inbox, &outbox, &done, &failed];
    let mut sources: Vec<Source> = Vec::new();
    let pick = |n: usize, list: &[Source]| (!list.is_empty()).then(|| list[n % list.len()].clone());
    for step in steps {
        match step {
            Step::Drop(rel) => {
                let path = inbox.join(rel);
                // Only through real folders (a test that followed a link itself proves nothing).
                if !through_a_link(&inbox, rel)
                    && std::fs::create_dir_all(path.parent().unwrap()).is_ok()
                    && std::fs::write(&path, b"inbox photo").is_ok()
                {
                    let stamp = Stamp::of(&std::fs::symlink_metadata(&path).unwrap());
                    sources.push(Source { inbox: inbox.clone(), rel_path: rel.clone(), stamp });
                }
            }
            Step::List => {
                let rules = retouchd::ignore::IgnoreRules::new(&[]);
                if let Ok(found) = retouchd::watch::list_files(&inbox, true, &rules) {
                    for (rel, _) in found {
                        prop_assert!(!through_a_link(&inbox, &rel), "listed through a link: {:?}", rel);
                    }
                }
            }
            Step::Open(n) => {
                if let Some(source) = pick(*n, &sources)
                    && let Ok(mut file) = source.open_same(false)
                {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
                    prop_assert_ne!(bytes.as_slice(), CANARY, "read a private file as {:?}", source.rel_path);
                }
            }
            Step::MoveToDone(n) | Step::MoveToFailed(n) => {
                if let Some(source) = pick(*n, &sources) {
                    let to = if matches!(step, Step::MoveToDone(_)) { &done } else { &failed };
                    if let Ok(moved) = deliver::move_source(&inbox, &source.rel_path, to) {
                        prop_assert!(std::fs::symlink_metadata(&moved).unwrap().is_file(), "moved a link: {:?}", moved);
                        let bytes = std::fs::read(&moved).unwrap_or_default();
                        prop_assert_ne!(bytes.as_slice(), CANARY, "moved a private file to {:?}", moved);
                        let _ = deliver::write_error_note(to, &moved, &source.path(), "why");
                    }
                }
            }
            Step::Delete(n) => {
                if let Some(source) = pick(*n, &sources) {
                    let _ = deliver::remove_source(&inbox, &source.rel_path);
                }
            }
            Step::Publish(rel) => {
                if let Ok(staging) = deliver::open_staging(&outbox)
                    && let Ok((mut file, name)) = staging.create_temp("result-")
                {
                    let _ = std::io::Write::write_all(&mut file, b"result");
                    let sub = rel.parent().unwrap_or(Path::new(""));
                    let target =
                        Target { dir: outbox.join(sub), stem: "r".into(), ext: Some("jpg".into()), placed: None };
                    let _ = deliver::publish(&outbox, &outbox.join(STAGING_DIR).join(name), &target);
                }
            }
            Step::Extract(rel) => {
                if let Ok(staging) = deliver::open_staging(&outbox) {
                    let archive = retouchd::imagegen::zip_of(&[(rel.to_string_lossy().as_ref(), b"layer".to_vec())]);
                    let zip = dir.path().join("r.zip");
                    std::fs::write(&zip, archive).unwrap();
                    let _ = staging.remove_all(Path::new("job-1"));
                    let _ = deliver::extract_zip_beneath(
                        std::fs::File::open(&zip).unwrap(),
                        &staging,
                        Path::new("job-1"),
                        1 << 20,
                    );
                }
            }
            Step::Marker => {
                let _ = retouchd::inbox::claim(&inbox, &retouchd::inbox::Owner::me(dir.path()));
            }
            Step::Swap { root, pick, to_file } => {
                let below: Vec<PathBuf> =
                    walk(roots[*root]).into_iter().filter(|p| !p.symlink_metadata().unwrap().is_symlink()).collect();
                if !below.is_empty() {
                    let victim = &below[pick % below.len()];
                    let moved_away = dir.path().join(format!("away-{pick}"));
                    if std::fs::rename(victim, &moved_away).is_ok() {
                        let target = if *to_file { private.join("a.jpg") } else { private.join("deeper") };
                        symlink(target, victim).unwrap();
                    }
                }
            }
        }
        prop_assert_eq!(snapshot(&private), before.clone(), "the private folder changed after {:?}", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn links_swapped_in_between_steps_never_lead_outside_the_four_folders(steps in proptest::collection::vec(step(), 1..40)) {
        run(&steps)?;
    }
}

#[test]
fn the_property_holds_for_a_known_attack() {
    // The reported one: a subfolder seen with a photo, then swapped for a link, then moved.
    let steps = [
        Step::Drop("shoot/a.jpg".into()),
        Step::Swap { root: 0, pick: 0, to_file: false },
        Step::Open(0),
        Step::MoveToDone(0),
        Step::Delete(0),
        Step::MoveToFailed(0),
    ];
    run(&steps).unwrap();
}
