//! File work on an inbox that may stop answering: a hard-mounted NFS or SMB share whose server
//! hangs blocks every call into it, for as long as it hangs. Such calls run where they can
//! only hold up their own inbox ([`blocking`]: the async worker hands its other tasks on), and
//! each is noted while it runs ([`track`]), so a call outstanding for [`HUNG_AFTER`] marks its
//! inbox as not answering: the daemon then stops starting new work there (the marker renewal),
//! reports it in `status`, and goes on with the other inboxes. Ages are real time, so tokio's
//! paused test clock cannot make a share look hung.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a call may run before its inbox counts as not answering.
pub const HUNG_AFTER: Duration = Duration::from_secs(10);

/// The calls running now: (inbox, start) by call number.
fn running() -> &'static Mutex<HashMap<u64, (PathBuf, Instant)>> {
    static RUNNING: OnceLock<Mutex<HashMap<u64, (PathBuf, Instant)>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A call into `inbox` in progress; it is forgotten when dropped.
pub struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        running().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

/// Notes a call into `inbox` until the returned guard is dropped.
pub fn track(inbox: &Path) -> Tracked {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    running().lock().unwrap_or_else(|p| p.into_inner()).insert(id, (inbox.to_path_buf(), Instant::now()));
    Tracked(id)
}

/// How long `inbox` has not answered a call, if one has been running for [`HUNG_AFTER`].
pub fn hung_for(inbox: &Path) -> Option<Duration> {
    let calls = running().lock().unwrap_or_else(|p| p.into_inner());
    calls.values().filter(|(root, _)| root == inbox).map(|(_, at)| at.elapsed()).filter(|age| *age >= HUNG_AFTER).max()
}

/// Runs `work` (file work on `inbox`), noted while it runs, without holding up the async
/// worker's other tasks: on the multi-threaded runtime the worker hands them on while `work`
/// runs (a call that never returns costs one thread, not the daemon); elsewhere (tests on a
/// single thread) it simply runs.
pub fn blocking<T>(inbox: &Path, work: impl FnOnce() -> T) -> T {
    let _noted = track(inbox);
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi { tokio::task::block_in_place(work) } else { work() }
}

/// How long a command waits for a folder's first answer (loading the config, `status`, a stop).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Runs `work` on a thread of its own and waits at most `limit` (real time) for it; `None` when
/// it did not answer in time (the thread is left to finish, or hang, on its own).
pub fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("retouchd-share-call".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.recv_timeout(limit).ok()
}

/// The message for an inbox that does not answer.
pub fn not_answering(inbox: &Path, for_how_long: Duration) -> String {
    format!(
        "the inbox {} does not answer (a call has waited {}s: a hung network share?); its watch waits, \
         the other inboxes go on",
        inbox.display(),
        for_how_long.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_running_past_the_limit_marks_its_inbox_and_only_it() {
        let (slow, other) = (Path::new("/mnt/nas/inbox"), Path::new("/local/inbox"));
        let noted = track(slow);
        assert_eq!(hung_for(slow), None, "not yet");
        running().lock().unwrap().get_mut(&noted.0).unwrap().1 -= HUNG_AFTER + Duration::from_secs(1);
        assert!(hung_for(slow).is_some_and(|d| d > HUNG_AFTER));
        assert_eq!(hung_for(other), None);
        drop(noted);
        assert_eq!(hung_for(slow), None, "it answered at last");
        assert!(not_answering(slow, HUNG_AFTER).contains("does not answer"));
    }

    #[test]
    fn a_call_that_does_not_answer_in_time_is_given_up_on() {
        assert_eq!(within(Duration::from_secs(5), || 7), Some(7));
        let started = Instant::now();
        assert_eq!(within(Duration::from_millis(100), || std::thread::sleep(Duration::from_secs(2))), None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
