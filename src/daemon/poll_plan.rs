//! When to poll a job: ask near its expected completion instead of on a fixed beat.
//!
//! Two sources of expectation, best first:
//! - the job's own `progress`: two answers (or one, counted from the upload) give a rate, and so
//!   the time progress reaches 100;
//! - how long jobs of the same class took before (payload and file size class, smoothed), or,
//!   before any has completed, what a running job's progress says.
//!
//! With neither (the first job of a kind, still queued), the waits grow with the job's age
//! (half of it), so a long queue costs a few requests, not one per interval. Waits are never
//! shorter than `poll_interval` (itself never below 2 s), with one exception: when the job's own
//! progress dates its end sooner, the request goes then (never within `ESTIMATE_FLOOR` of the
//! previous one), and the wait after it is a full interval again, so a job is asked at most twice
//! in any interval.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// Which jobs are alike: the same payload and a file size of the same order of magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobClass {
    payload: u64,
    size_class: u32,
}

impl JobClass {
    pub fn new(payload: &str, size: u64) -> JobClass {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        payload.hash(&mut hasher);
        // 0: < 1 MiB, 1: < 2 MiB, 2: < 4 MiB, ...
        let size_class = 64 - (size >> 20).leading_zeros();
        JobClass { payload: hasher.finish(), size_class }
    }
}

/// One status answer for a job that was not finished yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    /// Time since the upload.
    pub at: Duration,
    /// `progress` of an `active` job; `None` while queued or when the server sent none.
    pub progress: Option<f64>,
}

/// Learned processing times.
#[derive(Debug, Default)]
pub struct PollPlan {
    /// Exponentially weighted average of observed durations, per class.
    learned: Mutex<HashMap<JobClass, Duration>>,
    /// For classes with no completion yet: the latest estimate from a running job's progress, so
    /// that jobs sent meanwhile need not discover it again.
    estimated: Mutex<HashMap<JobClass, Duration>>,
}

/// Weight of the newest observation.
const ALPHA: f64 = 0.3;
/// Progress reaches 100 a little before `completed`; ask this share of the interval later.
const AFTER_FULL: f64 = 0.25;
/// Ask this much after a learned duration (jobs of a class vary a little).
const LATE: f64 = 1.02;
/// The shortest wait, used only when the job's own progress dates its end sooner than one
/// interval ahead (the API document calls polling every second too frequent).
pub const ESTIMATE_FLOOR: Duration = Duration::from_millis(1500);

impl PollPlan {
    /// How long the server usually takes for this class, if known (or estimated).
    pub fn expected(&self, class: JobClass) -> Option<Duration> {
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner()).get(&class).copied();
        learned.or_else(|| self.estimated.lock().unwrap_or_else(|p| p.into_inner()).get(&class).copied())
    }

    /// Records that a job of `class` took `took` from upload to `completed`.
    pub fn record(&self, class: JobClass, took: Duration) {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let next = match learned.get(&class) {
            Some(avg) => avg.mul_f64(1.0 - ALPHA) + took.mul_f64(ALPHA),
            None => took,
        };
        learned.insert(class, next);
    }

    /// Records a completion seen at `seen` (since the upload), after the answers in `sightings`:
    /// the job completed during the last wait, so learn a point in it, no more than one interval
    /// back.
    pub fn record_completion(&self, class: JobClass, seen: Duration, sightings: &[Sighting], interval: Duration) {
        let last = sightings.last().map_or(Duration::ZERO, |s| s.at);
        let from = last.max(seen.saturating_sub(interval));
        self.record(class, (from + seen) / 2);
    }

    /// How long to wait before the next status request, `elapsed` after the upload, having had
    /// the answers in `sightings` (oldest first). Never less than `interval`. `class` is `None`
    /// when the upload time is unknown (a job resumed after a restart counts from the restart):
    /// then nothing is learned from the job, nor used for it.
    pub fn next_wait(
        &self,
        class: Option<JobClass>,
        elapsed: Duration,
        sightings: &[Sighting],
        interval: Duration,
    ) -> Duration {
        let latest_progress = sightings.last().and_then(|s| s.progress);
        let target = if latest_progress.is_some_and(|p| p >= 100.0) {
            // Done but not stored yet: any moment now.
            elapsed + interval
        } else if let Some(full) = full_progress_at(sightings) {
            let estimate = full + interval.mul_f64(AFTER_FULL);
            if let Some(class) = class {
                self.estimated.lock().unwrap_or_else(|p| p.into_inner()).insert(class, estimate);
            }
            // Never more than doubling the job's age on an estimate: progress may not be linear.
            let target = estimate.min(elapsed * 2);
            if !asked_twice_within(sightings, interval) {
                return target.saturating_sub(elapsed).max(ESTIMATE_FLOOR);
            }
            target
        } else {
            match class.and_then(|c| self.expected(c)).map(|d| d.mul_f64(LATE)) {
                Some(expected) if elapsed < expected => expected,
                _ => elapsed + interval.max(elapsed / 2),
            }
        };
        target.saturating_sub(elapsed).max(interval)
    }
}

/// Whether the last two answers came less than `interval` apart (a short wait was just used).
fn asked_twice_within(sightings: &[Sighting], interval: Duration) -> bool {
    match sightings {
        [.., before, last] => last.at.saturating_sub(before.at) < interval,
        _ => false,
    }
}

/// Progress must have moved this many points between two answers to give a rate.
const MIN_STEP: f64 = 5.0;
/// One answer alone gives a rate only this far along (the start of the work is uncertain).
const MIN_SINGLE: f64 = 50.0;

/// When progress will reach 100, from the latest answer with progress between 0 and 100: with
/// an earlier answer at least MIN_STEP points back, or alone (counted from the last queued
/// answer, or the upload) once past half way. `None` when the answers say too little.
fn full_progress_at(sightings: &[Sighting]) -> Option<Duration> {
    let (latest_index, latest) = sightings.iter().enumerate().rev().find(|(_, s)| s.progress.is_some())?;
    let progress = latest.progress?;
    if !(progress > 0.0 && progress < 100.0) {
        return None;
    }
    // The latest earlier answer that was queued (the work started after it) or far enough back.
    let earlier = sightings[..latest_index].iter().rev().find_map(|s| match s.progress {
        Some(p) if progress - p >= MIN_STEP => Some((s.at, Some(p))),
        None => Some((s.at, None)),
        Some(_) => None,
    });
    let (from_at, from_progress) = match earlier {
        Some((at, Some(p))) => (at, p),
        Some((at, None)) if progress >= MIN_SINGLE => (at, 0.0),
        None if progress >= MIN_SINGLE => (Duration::ZERO, 0.0),
        _ => return None,
    };
    let per_point = latest.at.saturating_sub(from_at).as_secs_f64() / (progress - from_progress);
    Some(latest.at + Duration::from_secs_f64(per_point * (100.0 - progress)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);

    fn class() -> JobClass {
        JobClass::new(r#"{"mode":"professional"}"#, 3 << 20)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn active(at: f64, progress: f64) -> Sighting {
        Sighting { at: secs(at), progress: Some(progress) }
    }

    fn queued(at: f64) -> Sighting {
        Sighting { at: secs(at), progress: None }
    }

    #[test]
    fn without_history_it_polls_on_the_interval_then_backs_off_with_the_jobs_age() {
        let plan = PollPlan::default();
        assert_eq!(plan.next_wait(Some(class()), Duration::ZERO, &[], INTERVAL), INTERVAL);
        assert_eq!(plan.next_wait(Some(class()), secs(5.0), &[queued(5.0)], INTERVAL), INTERVAL);
        assert_eq!(plan.next_wait(Some(class()), secs(30.0), &[queued(5.0), queued(30.0)], INTERVAL), secs(15.0));
    }

    #[test]
    fn progress_gives_the_time_to_completion() {
        let plan = PollPlan::default();
        // 60% after 30 s from the upload: full at 50 s, asked 1.25 s later.
        assert_eq!(plan.next_wait(Some(class()), secs(30.0), &[active(30.0, 60.0)], INTERVAL), secs(21.25));
        // Queued until 10 s, 50% at 20 s: full at 30 s.
        assert_eq!(
            plan.next_wait(Some(class()), secs(20.0), &[queued(10.0), active(20.0, 50.0)], INTERVAL),
            secs(11.25)
        );
        // Two active answers: the rate between them counts.
        let two = [active(10.0, 10.0), active(20.0, 60.0)];
        assert_eq!(plan.next_wait(Some(class()), secs(20.0), &two, INTERVAL), secs(9.25));
        // Progress 100 but not completed yet: the interval.
        assert_eq!(plan.next_wait(Some(class()), secs(40.0), &[active(40.0, 100.0)], INTERVAL), INTERVAL);
    }

    #[test]
    fn a_little_progress_alone_is_no_estimate_and_estimates_never_more_than_double_the_age() {
        let plan = PollPlan::default();
        // 1% right after a queued answer could mean full in 5 s or in 450 s: back off with age.
        assert_eq!(
            plan.next_wait(Some(class()), secs(13.5), &[queued(9.0), active(13.5, 1.0)], INTERVAL),
            INTERVAL.max(secs(6.75))
        );
        // Progress that barely moved gives no rate either, but an answer further back may.
        assert_eq!(
            plan.next_wait(Some(class()), secs(20.0), &[active(10.0, 10.0), active(20.0, 12.0)], INTERVAL),
            secs(10.0)
        );
        let three = [active(10.0, 10.0), active(15.0, 12.0), active(20.0, 20.0)];
        assert_eq!(
            plan.next_wait(Some(class()), secs(20.0), &three, INTERVAL),
            secs(20.0),
            "10 points in 10 s, capped"
        );
        // The most recent answer far enough back counts: 50 points in 5 s, 38 to go.
        let three = [active(10.0, 10.0), active(15.0, 12.0), active(20.0, 62.0)];
        let wait = plan.next_wait(Some(class()), secs(20.0), &three, INTERVAL);
        assert!(wait.abs_diff(secs(3.8 + 1.25)) < Duration::from_millis(1), "{wait:?}");
        // 10 points in 10 s at 20 s: full at 90 s, but the wait stops at 40 s (twice the age).
        assert_eq!(
            plan.next_wait(Some(class()), secs(20.0), &[active(10.0, 10.0), active(20.0, 20.0)], INTERVAL),
            secs(20.0)
        );
    }

    #[test]
    fn with_history_the_first_poll_lands_just_after_the_expected_completion() {
        let plan = PollPlan::default();
        plan.record(class(), secs(60.0));
        assert_eq!(plan.next_wait(Some(class()), Duration::ZERO, &[], INTERVAL), secs(61.2));
        // Past the expected time, still queued: back off with the job's age.
        assert_eq!(plan.next_wait(Some(class()), secs(62.0), &[queued(62.0)], INTERVAL), secs(31.0));
    }

    #[test]
    fn a_running_jobs_estimate_guides_jobs_of_its_class_until_one_completes() {
        let plan = PollPlan::default();
        plan.next_wait(Some(class()), secs(30.0), &[active(30.0, 60.0)], INTERVAL);
        // Full at 50 s, asked 1.25 s later; a new job of the class waits for that (+2%).
        assert_eq!(plan.expected(class()), Some(secs(51.25)));
        assert_eq!(plan.next_wait(Some(class()), Duration::ZERO, &[], INTERVAL), secs(51.25).mul_f64(LATE));
        assert_eq!(plan.expected(JobClass::new("other", 0)), None);
        plan.record(class(), secs(40.0));
        assert_eq!(plan.expected(class()), Some(secs(40.0)), "a real completion wins");
        // A job resumed after a restart (upload time unknown) neither uses nor feeds the plan.
        assert_eq!(plan.next_wait(None, Duration::ZERO, &[], INTERVAL), INTERVAL);
        let fresh = PollPlan::default();
        fresh.next_wait(None, secs(30.0), &[active(30.0, 60.0)], INTERVAL);
        assert_eq!(fresh.expected(class()), None);
    }

    #[test]
    fn waits_are_never_shorter_than_the_interval_unless_the_jobs_own_progress_dates_its_end() {
        let plan = PollPlan::default();
        plan.record(class(), secs(3.0));
        // History alone never brings a request closer than the interval.
        assert_eq!(plan.next_wait(Some(class()), Duration::ZERO, &[], INTERVAL), INTERVAL);
        assert_eq!(plan.next_wait(Some(class()), secs(5.0), &[queued(5.0)], INTERVAL), INTERVAL);
        // 80% at 4 s: full at 5 s, asked 1.25 s later, sooner than one interval.
        assert_eq!(plan.next_wait(Some(class()), secs(4.0), &[active(4.0, 80.0)], INTERVAL), secs(2.25));
        // 99% at 2 s with a 2 s interval: due at 2.5 s, asked no sooner than the estimate floor.
        assert_eq!(plan.next_wait(Some(class()), secs(2.0), &[active(2.0, 99.0)], secs(2.0)), ESTIMATE_FLOOR);
        // Not done at the dated end: the next wait is a full interval (at most two per interval).
        let twice = [active(4.0, 80.0), active(6.25, 95.0)];
        assert_eq!(plan.next_wait(Some(class()), secs(6.25), &twice, INTERVAL), INTERVAL);
    }

    #[test]
    fn a_completion_is_learned_within_the_last_wait() {
        let plan = PollPlan::default();
        plan.record_completion(class(), secs(40.0), &[active(38.0, 95.0)], INTERVAL);
        assert_eq!(plan.expected(class()), Some(secs(39.0)));
        let other = JobClass::new("other", 0);
        plan.record_completion(other, secs(60.0), &[], INTERVAL);
        assert_eq!(plan.expected(other), Some(secs(57.5)));
    }

    #[test]
    fn learning_is_per_payload_and_size_class_and_smoothed() {
        let plan = PollPlan::default();
        plan.record(class(), secs(60.0));
        plan.record(class(), secs(30.0));
        assert_eq!(plan.expected(class()), Some(secs(51.0)));
        assert_eq!(plan.expected(JobClass::new("other", 3 << 20)), None);
        assert_eq!(plan.expected(JobClass::new(r#"{"mode":"professional"}"#, 300 << 20)), None);
        assert_eq!(JobClass::new("p", 100), JobClass::new("p", 900_000));
    }
}
