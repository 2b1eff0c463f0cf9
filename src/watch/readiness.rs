//! When a file in an inbox becomes a job: its size and mtime have not changed for `settle`, and
//! its content is complete. Pure bookkeeping with the clock and the completeness check passed
//! in, so it is tested without sleeping. A file that stays incomplete is given up once it has
//! not changed for `settle + grace`, counted from when it was first seen unchanged or from its
//! own modification time, whichever is earlier: a daemon restart does not start the wait anew.
//! [`Readiness::unsettled`] says, for `status`, what each pending file waits for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::source::Stamp;

#[derive(Debug)]
struct Tracked {
    stamp: Stamp,
    stable_since: Instant,
    /// When to look at it next.
    check_at: Instant,
    /// Found stable but incomplete (waiting for the rest of its bytes, or the grace to pass).
    incomplete: bool,
}

/// A file not handed on yet, and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub rel: PathBuf,
    pub stamp: Stamp,
    /// Once found stable but incomplete: when it is given up (failed) unless it is completed.
    pub gives_up_at: Option<std::time::SystemTime>,
}

/// What a settled file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stable and complete: make it a job.
    Ready(PathBuf, Stamp),
    /// Stable but incomplete for longer than the grace time: fail it.
    Incomplete(PathBuf, Stamp),
}

/// Tracks the files of one inbox that are not jobs yet.
#[derive(Debug)]
pub struct Readiness {
    settle: Duration,
    grace: Duration,
    pending: HashMap<PathBuf, Tracked>,
    /// Files already handed on, with the stamp they had; seen again unchanged, they are skipped.
    handed: HashMap<PathBuf, Stamp>,
    /// No later than the earliest `check_at` of the pending files.
    next_check: Option<Instant>,
    /// The files the last [`Readiness::due`] found incomplete for the first time.
    newly_incomplete: Vec<PathBuf>,
}

impl Readiness {
    pub fn new(settle: Duration, grace: Duration) -> Self {
        Readiness {
            settle,
            grace,
            pending: HashMap::new(),
            handed: HashMap::new(),
            next_check: None,
            newly_incomplete: Vec::new(),
        }
    }

    /// How often a settled but incomplete file is looked at again.
    fn recheck(&self) -> Duration {
        (self.settle / 4).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// When [`Readiness::due`] has something to do next; `None` when nothing is pending.
    pub fn next_check(&self) -> Option<Instant> {
        self.next_check
    }

    fn schedule(&mut self, at: Instant) {
        self.next_check = Some(self.next_check.map_or(at, |next| next.min(at)));
    }

    /// Records that `rel` was seen with `stamp` at `now`.
    pub fn observe(&mut self, rel: &Path, stamp: Stamp, now: Instant) {
        if self.handed.get(rel) == Some(&stamp) {
            return;
        }
        let check_at = now + self.settle;
        match self.pending.get_mut(rel) {
            Some(t) if t.stamp == stamp => return,
            Some(t) => {
                t.stamp = stamp;
                t.stable_since = now;
                t.check_at = check_at;
                t.incomplete = false;
            }
            None => {
                let tracked = Tracked { stamp, stable_since: now, check_at, incomplete: false };
                self.pending.insert(rel.to_path_buf(), tracked);
            }
        }
        self.schedule(check_at);
    }

    /// Forgets a file that is gone; true if it had been handed on.
    pub fn forget(&mut self, rel: &Path) -> bool {
        self.pending.remove(rel);
        self.handed.remove(rel).is_some()
    }

    /// Keeps only the files `present` says are still there (after a full scan); returns the
    /// handed-on files that are gone.
    pub fn retain(&mut self, present: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
        self.pending.retain(|p, _| present(p));
        let gone: Vec<PathBuf> = self.handed.keys().filter(|p| !present(p)).cloned().collect();
        for rel in &gone {
            self.handed.remove(rel);
        }
        gone
    }

    /// The files not handed on yet, and what each waits for, seen at `now`.
    pub fn unsettled(&self, now: Instant) -> Vec<Unsettled> {
        let limit = self.settle + self.grace;
        let mut files: Vec<Unsettled> = self
            .pending
            .iter()
            .map(|(rel, t)| {
                let gives_up_at = t.incomplete.then(|| {
                    let by_sight = (t.stable_since + limit).saturating_duration_since(now);
                    let by_mtime = limit.saturating_sub(unchanged_on_disk_for(t.stamp));
                    std::time::SystemTime::now() + by_sight.min(by_mtime)
                });
                Unsettled { rel: rel.clone(), stamp: t.stamp, gives_up_at }
            })
            .collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files
    }

    /// The files the last [`Readiness::due`] found stable but incomplete for the first time.
    pub fn newly_incomplete(&self) -> &[PathBuf] {
        &self.newly_incomplete
    }

    /// Files waiting to settle.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The pending files whose stamps have been stable for `settle`, checked with `stat` (the
    /// current stamp, `None` if gone) and `complete`. Ready and given-up files are handed on.
    pub fn due(
        &mut self,
        now: Instant,
        mut stat: impl FnMut(&Path) -> Option<Stamp>,
        mut complete: impl FnMut(&Path) -> bool,
    ) -> Vec<Outcome> {
        self.newly_incomplete.clear();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        let recheck = self.recheck();
        for (rel, tracked) in self.pending.iter_mut() {
            if now < tracked.check_at {
                continue;
            }
            match stat(rel) {
                None => gone.push(rel.clone()),
                Some(stamp) if stamp != tracked.stamp => {
                    tracked.stamp = stamp;
                    tracked.stable_since = now;
                    tracked.check_at = now + self.settle;
                    tracked.incomplete = false;
                }
                Some(stamp) if complete(rel) => out.push(Outcome::Ready(rel.clone(), stamp)),
                Some(stamp)
                    if now.duration_since(tracked.stable_since) >= self.settle + self.grace
                        || unchanged_on_disk_for(stamp) >= self.settle + self.grace =>
                {
                    out.push(Outcome::Incomplete(rel.clone(), stamp))
                }
                Some(_) => {
                    tracked.check_at = now + recheck;
                    if !tracked.incomplete {
                        tracked.incomplete = true;
                        self.newly_incomplete.push(rel.clone());
                    }
                }
            }
        }
        for rel in gone {
            self.pending.remove(&rel);
        }
        for outcome in &out {
            let (Outcome::Ready(rel, stamp) | Outcome::Incomplete(rel, stamp)) = outcome;
            self.pending.remove(rel);
            self.handed.insert(rel.clone(), *stamp);
        }
        self.next_check = self.pending.values().map(|t| t.check_at).min();
        out.sort_by(|a, b| {
            let key = |o: &Outcome| match o {
                Outcome::Ready(p, _) | Outcome::Incomplete(p, _) => p.clone(),
            };
            key(a).cmp(&key(b))
        });
        out
    }
}

/// How long ago the file's own modification time is (zero for a time in the future).
fn unchanged_on_disk_for(stamp: Stamp) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ago = i128::try_from(now.as_nanos()).unwrap_or(i128::MAX) - i128::from(stamp.mtime_ns);
    Duration::from_nanos(u64::try_from(ago.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(60);

    /// A version of a file written just now.
    fn stamp(size: u64) -> Stamp {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        Stamp { size, mtime_ns: now.as_nanos() as i64 - (now.as_nanos() as i64 % 1_000_000_000) + size as i64 }
    }

    #[test]
    fn an_incomplete_file_unchanged_on_disk_for_the_grace_is_given_up_once_it_settles_after_a_restart() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        // Last written an hour ago (a daemon restart sees it for the first time).
        let hour_ago = Stamp { mtime_ns: stamp(0).mtime_ns - 3_600_000_000_000, size: 7 };
        r.observe(Path::new("cut.jpg"), hour_ago, t0);
        assert!(r.due(t0 + SETTLE / 2, |_| Some(hour_ago), |_| false).is_empty(), "still settles first");
        let out = r.due(t0 + SETTLE, |_| Some(hour_ago), |_| false);
        assert_eq!(out, vec![Outcome::Incomplete("cut.jpg".into(), hour_ago)], "no new ten-minute wait");
    }

    #[test]
    fn a_file_becomes_ready_only_after_settling() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("a.jpg"), stamp(10), t0);
        assert!(r.due(t0 + Duration::from_secs(4), |_| Some(stamp(10)), |_| true).is_empty());
        let out = r.due(t0 + SETTLE, |_| Some(stamp(10)), |_| true);
        assert_eq!(out, vec![Outcome::Ready("a.jpg".into(), stamp(10))]);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_file_still_growing_is_never_ready() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("slow.jpg"), stamp(1), t0);
        // Every check sees a new size: slow chunks over SMB.
        for i in 1..20u64 {
            let out = r.due(t0 + SETTLE * i as u32, |_| Some(stamp(i + 1)), |_| true);
            assert!(out.is_empty(), "handed on while growing at step {i}");
        }
        let end = t0 + SETTLE * 21;
        let out = r.due(end, |_| Some(stamp(20)), |_| true);
        assert_eq!(out, vec![Outcome::Ready("slow.jpg".into(), stamp(20))]);
    }

    #[test]
    fn stable_but_incomplete_waits_then_is_given_up() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("cut.jpg"), stamp(7), t0);
        assert!(r.due(t0 + SETTLE, |_| Some(stamp(7)), |_| false).is_empty());
        assert!(r.due(t0 + SETTLE + GRACE / 2, |_| Some(stamp(7)), |_| false).is_empty());
        let out = r.due(t0 + SETTLE + GRACE, |_| Some(stamp(7)), |_| false);
        assert_eq!(out, vec![Outcome::Incomplete("cut.jpg".into(), stamp(7))]);
    }

    #[test]
    fn handed_files_are_not_handed_again_unless_they_change() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("a.jpg"), stamp(10), t0);
        assert_eq!(r.due(t0 + SETTLE, |_| Some(stamp(10)), |_| true).len(), 1);
        r.observe(Path::new("a.jpg"), stamp(10), t0 + SETTLE * 2);
        assert_eq!(r.pending(), 0);
        r.observe(Path::new("a.jpg"), stamp(11), t0 + SETTLE * 3);
        assert_eq!(r.pending(), 1, "a rewritten file is tracked again");
    }

    #[test]
    fn the_next_check_is_when_the_earliest_file_settles_or_is_rechecked() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        assert_eq!(r.next_check(), None);
        r.observe(Path::new("b.jpg"), stamp(1), t0 + Duration::from_secs(2));
        r.observe(Path::new("a.jpg"), stamp(1), t0);
        assert_eq!(r.next_check(), Some(t0 + SETTLE));
        // a.jpg settled but incomplete: looked at again a quarter of `settle` (at most 500 ms) later.
        assert!(r.due(t0 + SETTLE, |_| Some(stamp(1)), |p| p != Path::new("a.jpg")).is_empty());
        assert_eq!(r.next_check(), Some(t0 + SETTLE + Duration::from_millis(500)));
        let out = r.due(t0 + SETTLE + Duration::from_millis(500), |_| Some(stamp(1)), |_| true);
        assert_eq!(out, vec![Outcome::Ready("a.jpg".into(), stamp(1))]);
        assert_eq!(r.next_check(), Some(t0 + Duration::from_secs(2) + SETTLE));
        assert_eq!(r.due(t0 + Duration::from_secs(7), |_| Some(stamp(1)), |_| true).len(), 1);
        assert_eq!(r.next_check(), None);
    }

    #[test]
    fn unsettled_files_say_whether_they_settle_or_are_incomplete_and_when_they_are_given_up() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("new.jpg"), stamp(10), t0);
        r.observe(Path::new("cut.jpg"), stamp(7), t0);
        let before = r.unsettled(t0);
        assert_eq!(
            before.iter().map(|u| (u.rel.to_str().unwrap(), u.gives_up_at)).collect::<Vec<_>>(),
            vec![("cut.jpg", None), ("new.jpg", None)],
            "both still settle"
        );
        assert!(
            r.due(
                t0 + SETTLE,
                |p| Some(if p == Path::new("cut.jpg") { stamp(7) } else { stamp(11) }),
                |p| p != Path::new("cut.jpg")
            )
            .is_empty()
        );
        assert_eq!(r.newly_incomplete(), [PathBuf::from("cut.jpg")], "said once, when first found");
        let after = r.unsettled(t0 + SETTLE);
        let cut = after.iter().find(|u| u.rel == Path::new("cut.jpg")).unwrap();
        let left = cut.gives_up_at.unwrap().duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left <= GRACE && left > GRACE - Duration::from_secs(2), "given up a grace after settling: {left:?}");
        assert_eq!(after.iter().find(|u| u.rel == Path::new("new.jpg")).unwrap().gives_up_at, None, "it changed");
        assert!(r.due(t0 + SETTLE + Duration::from_secs(1), |_| Some(stamp(7)), |_| false).is_empty());
        assert!(r.newly_incomplete().is_empty(), "not said again");
    }

    #[test]
    fn handed_files_that_leave_are_reported_once() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("a.jpg"), stamp(1), t0);
        r.observe(Path::new("b.jpg"), stamp(2), t0);
        assert_eq!(
            r.due(t0 + SETTLE, |p| Some(if p == Path::new("a.jpg") { stamp(1) } else { stamp(2) }), |_| true).len(),
            2
        );
        assert_eq!(r.retain(|p| p == Path::new("b.jpg")), vec![PathBuf::from("a.jpg")]);
        assert!(r.retain(|p| p == Path::new("b.jpg")).is_empty());
        assert!(r.forget(Path::new("b.jpg")), "b was handed on");
        assert!(!r.forget(Path::new("b.jpg")));
    }

    #[test]
    fn files_that_vanish_are_dropped() {
        let t0 = Instant::now();
        let mut r = Readiness::new(SETTLE, GRACE);
        r.observe(Path::new("a.jpg"), stamp(10), t0);
        assert!(r.due(t0 + SETTLE, |_| None, |_| true).is_empty());
        assert_eq!(r.pending(), 0);
    }
}
