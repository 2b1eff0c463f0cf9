//! When to poll a job: learn how long jobs take (per payload and file size class) and ask near
//! the expected completion instead of on a fixed beat. Waits are never shorter than
//! `poll_interval` (itself never below 2 s), so learning only ever saves requests.

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

/// Learned processing times.
#[derive(Debug, Default)]
pub struct PollPlan {
    /// Exponentially weighted average of observed durations, per class.
    learned: Mutex<HashMap<JobClass, Duration>>,
}

/// Weight of the newest observation.
const ALPHA: f64 = 0.3;
/// Ask a little before the expected completion, to not overshoot it by a whole interval.
const EARLY: f64 = 0.9;

impl PollPlan {
    /// How long the server usually takes for this class, if known.
    pub fn expected(&self, class: JobClass) -> Option<Duration> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner()).get(&class).copied()
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

    /// How long to wait before the next status request, `elapsed` after the upload and after
    /// `polls` requests so far. Never less than `interval`.
    pub fn next_wait(&self, class: JobClass, elapsed: Duration, polls: u32, interval: Duration) -> Duration {
        match self.expected(class) {
            // Before the expected completion: sleep until just before it.
            Some(expected) if polls == 0 || elapsed < expected.mul_f64(EARLY) => {
                expected.mul_f64(EARLY).saturating_sub(elapsed).max(interval)
            }
            _ => interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);

    fn class() -> JobClass {
        JobClass::new(r#"{"mode":"professional"}"#, 3 << 20)
    }

    #[test]
    fn without_history_it_polls_on_the_interval() {
        let plan = PollPlan::default();
        assert_eq!(plan.next_wait(class(), Duration::ZERO, 0, INTERVAL), INTERVAL);
        assert_eq!(plan.next_wait(class(), Duration::from_secs(30), 6, INTERVAL), INTERVAL);
    }

    #[test]
    fn with_history_the_first_poll_lands_just_before_the_expected_completion() {
        let plan = PollPlan::default();
        plan.record(class(), Duration::from_secs(60));
        assert_eq!(plan.next_wait(class(), Duration::ZERO, 0, INTERVAL), Duration::from_secs(54));
        // Past the expected time: back to the interval.
        assert_eq!(plan.next_wait(class(), Duration::from_secs(55), 1, INTERVAL), INTERVAL);
    }

    #[test]
    fn waits_are_never_shorter_than_the_interval() {
        let plan = PollPlan::default();
        plan.record(class(), Duration::from_secs(3));
        assert_eq!(plan.next_wait(class(), Duration::ZERO, 0, INTERVAL), INTERVAL);
        assert_eq!(plan.next_wait(class(), Duration::from_secs(2), 0, INTERVAL), INTERVAL);
    }

    #[test]
    fn learning_is_per_payload_and_size_class_and_smoothed() {
        let plan = PollPlan::default();
        plan.record(class(), Duration::from_secs(60));
        plan.record(class(), Duration::from_secs(30));
        assert_eq!(plan.expected(class()), Some(Duration::from_secs(51)));
        assert_eq!(plan.expected(JobClass::new("other", 3 << 20)), None);
        assert_eq!(plan.expected(JobClass::new(r#"{"mode":"professional"}"#, 300 << 20)), None);
        assert_eq!(JobClass::new("p", 100), JobClass::new("p", 900_000));
    }
}
