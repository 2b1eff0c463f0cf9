//! One suite for every journal backend: each test takes a way to open the same journal (again)
//! and is run against SQLite and against PostgreSQL (a throwaway server, see
//! [`crate::testkit`]; those runs are ignored where PostgreSQL is not installed, and CI runs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Hold, Holds, JobId, JobQuery, Journal, NoticeClaim, Source, Step, Write, timeline_of};
use crate::job::{JobState, StateName};
use crate::source::Stamp;
use crate::vocab::now_ms;

/// Opens the journal under test (the same one each time).
type Open<'a> = &'a dyn Fn() -> Journal;

fn source(name: &str) -> Source {
    Source { inbox: "/in".into(), rel_path: name.into(), stamp: Stamp { size: 10, mtime_ns: 5 } }
}

fn update(journal: &Journal, id: JobId, state: &JobState) {
    let job = journal.get(id).unwrap().expect("the job exists");
    journal.update(&job, state).unwrap();
}

fn done() -> JobState {
    JobState::Done { outputs: vec![], moved_to: None, render_error: None, findings: None }
}

fn failed() -> JobState {
    JobState::Failed { reason: "no face".into(), moved_to: None }
}

fn kept_counts_match_the_jobs_through_random_inserts_retries_and_state_changes(open: Open<'_>) {
    let journal = open();
    let mut rng = fastrand::Rng::with_seed(11);
    // The model: each job's state, and each file's newest job.
    let mut states: BTreeMap<JobId, StateName> = BTreeMap::new();
    let mut newest: BTreeMap<(PathBuf, String), JobId> = BTreeMap::new();
    let choices = [JobState::Processing { task_id: "t".into(), host: "h".into() }, failed(), done()];
    let expected = |states: &BTreeMap<JobId, StateName>, newest: &BTreeMap<(PathBuf, String), JobId>| {
        let mut counts: BTreeMap<StateName, u64> = BTreeMap::new();
        for id in newest.values() {
            *counts.entry(states[id]).or_default() += 1;
        }
        counts
    };
    for round in 0..300 {
        match rng.u8(..3) {
            // A new file, or a file sent again once its job ended (a new job supersedes the old one).
            0 | 1 => {
                let name = format!("f{}.jpg", rng.usize(..40));
                let inbox: PathBuf = if rng.bool() { "/in".into() } else { "/in2".into() };
                if newest.get(&(inbox.clone(), name.clone())).is_some_and(|id| !states[id].is_terminal()) {
                    continue;
                }
                // A new version of the file (each claim is of one version).
                let src = Source { inbox: inbox.clone(), stamp: Stamp { size: 10, mtime_ns: round }, ..source(&name) };
                let state = if rng.bool() { JobState::new("k".into()) } else { failed() };
                let id = if rng.bool() {
                    journal.insert(&src, &state).unwrap()
                } else {
                    journal.write_batch(&[Write::Insert(&src, &state)]).unwrap().pop().unwrap().unwrap()
                };
                states.insert(id, state.name());
                newest.insert((inbox, name), id);
            }
            // An unfinished job moves on.
            _ => {
                let open: Vec<JobId> = states.iter().filter(|(_, s)| !s.is_terminal()).map(|(id, _)| *id).collect();
                if open.is_empty() {
                    continue;
                }
                let id = open[rng.usize(..open.len())];
                let next = &choices[rng.usize(..choices.len())];
                update(&journal, id, next);
                states.insert(id, next.name());
            }
        }
        if round % 50 == 0 {
            assert_eq!(journal.file_counts().unwrap(), expected(&states, &newest), "round {round}");
        }
    }
    assert_eq!(journal.file_counts().unwrap(), expected(&states, &newest));
    let per_inbox = journal.file_counts_by_inbox().unwrap();
    let summed = per_inbox.values().flatten().fold(BTreeMap::new(), |mut all: BTreeMap<StateName, u64>, (s, n)| {
        *all.entry(*s).or_default() += n;
        all
    });
    assert_eq!(summed.into_iter().filter(|(_, n)| *n > 0).collect::<BTreeMap<_, _>>(), expected(&states, &newest));
    assert_eq!(per_inbox.len(), 2);
    let failed_now = journal.recent_latest(StateName::Failed, 1000).unwrap();
    assert_eq!(failed_now.len() as u64, expected(&states, &newest).get(&StateName::Failed).copied().unwrap_or(0));
    let all: u64 = journal.counts().unwrap().values().sum();
    assert_eq!(all, states.len() as u64, "every job stays in the journal");
}

fn jobs_round_trip_and_unfinished_ones_come_back(open: Open<'_>) {
    let journal = open();
    let a = journal.insert(&source("a.jpg"), &JobState::new("k1".into())).unwrap();
    let b = journal.insert(&source("b.jpg"), &JobState::new("k2".into())).unwrap();
    update(
        &journal,
        b,
        &JobState::Done { outputs: vec!["/out/b.jpg".into()], moved_to: None, render_error: None, findings: None },
    );
    drop(journal);

    let journal = open();
    let unfinished = journal.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, a);
    assert_eq!(unfinished[0].state, JobState::new("k1".into()));
    assert_eq!(unfinished[0].source, source("a.jpg"));
    let resumed = journal.resume_mine().unwrap();
    assert_eq!(resumed.iter().map(|j| j.id).collect::<Vec<_>>(), [a], "this daemon's unfinished jobs");
    let b_job = journal.latest_for(Path::new("/in"), Path::new("b.jpg")).unwrap().unwrap();
    assert_eq!(b_job.id, b);
    assert!(matches!(&b_job.state, JobState::Done { outputs, .. } if outputs == &[PathBuf::from("/out/b.jpg")]));
    assert_eq!(journal.outputs_in(Path::new("/in")).unwrap(), [PathBuf::from("/out/b.jpg")]);
    assert_eq!(journal.job_with_output(Path::new("/out/b.jpg")).unwrap().map(|j| j.id), Some(b));
    assert_eq!(journal.job_with_output(Path::new("/out/c.jpg")).unwrap(), None);
    let counts = journal.counts().unwrap();
    assert_eq!((counts[&StateName::Submitting], counts[&StateName::Done]), (1, 1));
    assert_eq!(journal.get(b + 1000).unwrap(), None);
}

fn a_file_retried_and_delivered_counts_once_as_done(open: Open<'_>) {
    let journal = open();
    let first = journal.insert(&source("a.jpg"), &failed()).unwrap();
    journal.insert(&source("b.jpg"), &failed()).unwrap();
    assert_eq!(journal.recent_latest(StateName::Failed, 10).unwrap().len(), 2);
    journal.insert(&source("a.jpg"), &done()).unwrap();
    let counts = journal.file_counts().unwrap();
    assert_eq!((counts[&StateName::Done], counts[&StateName::Failed]), (1, 1));
    assert_eq!(journal.counts().unwrap()[&StateName::Failed], 2, "every job stays in the journal");
    let failures: Vec<JobId> = journal.recent_latest(StateName::Failed, 10).unwrap().iter().map(|j| j.id).collect();
    assert!(!failures.contains(&first), "a failure delivered since is not listed: {failures:?}");
    assert_eq!(failures.len(), 1);
}

fn progress_is_recorded_and_cleared_by_the_next_state(open: Open<'_>) {
    let journal = open();
    let id = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
    update(&journal, id, &JobState::Processing { task_id: "t".into(), host: "h".into() });
    journal.write_batch(&[Write::Progress(id, 42.0)]).unwrap();
    assert_eq!(journal.get(id).unwrap().unwrap().progress, Some(42.0));
    update(&journal, id, &JobState::Fetching { task_id: "t".into(), host: "h".into() });
    assert_eq!(journal.get(id).unwrap().unwrap().progress, None);
}

fn a_batch_lands_in_one_transaction_and_reads_back_like_single_inserts(open: Open<'_>) {
    let journal = open();
    let delivered =
        JobState::Done { outputs: vec!["/out/a.jpg".into()], moved_to: None, render_error: None, findings: None };
    let waiting = JobState::new("k".into());
    journal.insert_batch(&[(source("a.jpg"), delivered.clone()), (source("b.jpg"), waiting.clone())]).unwrap();
    assert_eq!(journal.latest_for(Path::new("/in"), Path::new("a.jpg")).unwrap().unwrap().state, delivered);
    let unfinished = journal.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!((unfinished[0].source.clone(), unfinished[0].state.clone()), (source("b.jpg"), waiting));
}

fn each_state_change_is_kept_in_the_jobs_timeline(open: Open<'_>) {
    let journal = open();
    let id = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
    update(&journal, id, &JobState::Processing { task_id: "t".into(), host: "h".into() });
    update(&journal, id, &failed());
    let steps = journal.timeline(id).unwrap();
    let states: Vec<StateName> = steps.iter().map(|s| s.state).collect();
    assert_eq!(states, [StateName::Submitting, StateName::Processing, StateName::Failed]);
    let job = journal.get(id).unwrap().unwrap();
    assert_eq!(steps[0].at, job.created_at);
    assert_eq!(steps[2].at, job.updated_at);
    assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(journal.timeline(id + 1000).unwrap(), vec![], "no such job");
    assert_eq!(
        timeline_of("a0;z5;b7;c;", "failed", 100, 200),
        vec![Step { state: StateName::Submitting, at: 100 }, Step { state: StateName::Processing, at: 107 }]
    );
    assert_eq!(
        timeline_of("", "failed", 100, 200),
        vec![Step { state: StateName::Submitting, at: 100 }, Step { state: StateName::Failed, at: 200 }],
        "a job from before histories were kept"
    );
}

fn charged_starts_are_counted_from_the_processing_step(open: Open<'_>) {
    let journal = open();
    let before = now_ms();
    let charged = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
    update(&journal, charged, &JobState::Processing { task_id: "t".into(), host: "h".into() });
    update(&journal, charged, &done());
    let refused = journal.insert(&source("b.jpg"), &JobState::new("k2".into())).unwrap();
    update(&journal, refused, &failed());
    let charges = super::charges_since(&*journal, before).unwrap();
    assert_eq!(charges.len(), 1, "only the job the server took: {charges:?}");
    assert_eq!(charges[0].0, Path::new("/in"));
    assert!(charges[0].1 >= before);
    assert_eq!(super::charges_since(&*journal, now_ms() + 60_000).unwrap(), vec![], "none after it");
}

fn pages_list_newest_jobs_of_files_by_state_and_name_without_overlap(open: Open<'_>) {
    let journal = open();
    for i in 0..25 {
        let state = if i % 5 == 0 { failed() } else { done() };
        journal.insert(&source(&format!("Shoot_{i:02}.jpg")), &state).unwrap();
    }
    // A file that failed and was then delivered is listed once, as delivered.
    journal.insert(&source("Shoot_00.jpg"), &done()).unwrap();
    let page = |states: Vec<StateName>, name: Option<&str>, before, limit| {
        let q = JobQuery { states, name: name.map(str::to_string), before, limit };
        journal.page(&q).unwrap().iter().map(|j| j.source.rel_path.display().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        page(vec![StateName::Failed], None, None, 10),
        ["Shoot_20.jpg", "Shoot_15.jpg", "Shoot_10.jpg", "Shoot_05.jpg"]
    );
    let first = page(vec![], None, None, 10);
    assert_eq!(first[0], "Shoot_00.jpg", "the newest job first");
    let last_id = journal.page(&JobQuery { limit: 10, ..JobQuery::default() }).unwrap()[9].id;
    let second = page(vec![], None, Some(last_id), 100);
    assert_eq!(first.len() + second.len(), 25, "every file once: {first:?} {second:?}");
    assert!(second.iter().all(|n| !first.contains(n)));
    assert_eq!(page(vec![], Some("shoot_1"), None, 100).len(), 10, "case-insensitive part of the name");
    assert_eq!(page(vec![], Some("%"), None, 100).len(), 0, "% is a character, not a wildcard");
    let both = page(vec![StateName::Failed, StateName::Done], None, None, 3);
    assert_eq!(both, ["Shoot_00.jpg", "Shoot_24.jpg", "Shoot_23.jpg"]);
    assert_eq!(journal.delivered_since(0).unwrap(), 21);
    assert_eq!(journal.delivered_since(now_ms() + 60_000).unwrap(), 0);
    let by_inbox = journal.file_counts_by_inbox().unwrap();
    assert_eq!(by_inbox[Path::new("/in")][&StateName::Failed], 4);
    assert_eq!(by_inbox[Path::new("/in")][&StateName::Done], 21);
}

fn non_utf8_names_survive(open: Open<'_>) {
    use std::os::unix::ffi::OsStrExt;
    let journal = open();
    let name = PathBuf::from(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
    let src = Source { rel_path: name.clone(), ..source("x") };
    journal.insert(&src, &JobState::new("k".into())).unwrap();
    assert_eq!(journal.unfinished().unwrap()[0].source.rel_path, name);
    let q = JobQuery { name: Some("caf".into()), limit: 10, ..JobQuery::default() };
    assert_eq!(journal.page(&q).unwrap().len(), 1);
}

fn markers_and_the_hold_are_kept(open: Open<'_>) {
    let journal = open();
    assert!(!journal.is_marked(Path::new("/in")).unwrap());
    assert_eq!(journal.pauses().unwrap(), Holds::default());
    journal.mark(Path::new("/in")).unwrap();
    journal.set_pause(None, Some(Hold { until_ms: None })).unwrap();
    journal.set_pause(Some(Path::new("/in2")), Some(Hold { until_ms: Some(5_000) })).unwrap();
    drop(journal);
    let journal = open();
    assert!(journal.is_marked(Path::new("/in")).unwrap());
    assert!(!journal.is_marked(Path::new("/in2")).unwrap());
    let holds = journal.pauses().unwrap();
    assert_eq!(holds.all, Some(Hold { until_ms: None }));
    assert_eq!(holds.watches, [(PathBuf::from("/in2"), Hold { until_ms: Some(5_000) })]);
    assert_eq!(holds.holding(Path::new("/in2"), 6_000), Some((None, Hold { until_ms: None })), "all first");
    journal.set_pause(None, None).unwrap();
    let holds = journal.pauses().unwrap();
    assert_eq!(holds.holding(Path::new("/in2"), 4_000).map(|h| h.1), Some(Hold { until_ms: Some(5_000) }));
    assert_eq!(holds.holding(Path::new("/in2"), 6_000), None, "ended by itself");
    assert_eq!(holds.holding(Path::new("/in"), 4_000), None);
    journal.set_pause(Some(Path::new("/in2")), None).unwrap();
    assert_eq!(journal.pauses().unwrap(), Holds::default());
}

fn render_errors_are_found_among_deliveries(open: Open<'_>) {
    let journal = open();
    journal.insert(&source("a.jpg"), &done()).unwrap();
    let without_photo = JobState::Done {
        outputs: vec![],
        moved_to: None,
        render_error: Some("the layers do not fit".into()),
        findings: None,
    };
    let b = journal.insert(&source("b.jpg"), &without_photo).unwrap();
    let found: Vec<JobId> = journal.recent_render_errors(10).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(found, [b]);
}

fn notices_wait_in_order_per_channel_and_survive_a_reopen(open: Open<'_>) {
    let journal = open();
    let queued: Vec<(String, String)> =
        [("hook", "1"), ("mail", "a"), ("hook", "2")].iter().map(|(c, b)| (c.to_string(), b.to_string())).collect();
    journal.queue_notices(&queued).unwrap();
    let now = now_ms();
    let NoticeClaim::Due(first) = journal.claim_notice("hook", now, 60_000).unwrap() else { panic!("one is due") };
    assert_eq!((first.body.as_str(), first.attempts), ("1", 0));
    // Claimed: nobody else gets it, nor the younger one behind it, until the lease ends.
    assert_eq!(journal.claim_notice("hook", now + 1, 60_000).unwrap(), NoticeClaim::Later(now + 60_000));
    journal.notice_failed(first.id, now + 5_000, "connection refused").unwrap();
    let backlog = journal.notice_backlog().unwrap();
    assert_eq!(backlog.iter().map(|b| (b.channel.as_str(), b.waiting)).collect::<Vec<_>>(), [("hook", 2), ("mail", 1)]);
    assert_eq!(backlog[0].last_error.as_deref(), Some("connection refused"));
    drop(journal);
    let journal = open();
    assert_eq!(journal.claim_notice("hook", now + 10, 60_000).unwrap(), NoticeClaim::Later(now + 5_000));
    let NoticeClaim::Due(again) = journal.claim_notice("hook", now + 5_000, 60_000).unwrap() else { panic!("due") };
    assert_eq!((again.id, again.attempts), (first.id, 1), "the same one, in order");
    journal.notice_sent(again.id).unwrap();
    let NoticeClaim::Due(second) = journal.claim_notice("hook", now + 5_000, 60_000).unwrap() else { panic!("due") };
    assert_eq!(second.body, "2");
    journal.notice_sent(second.id).unwrap();
    assert_eq!(journal.claim_notice("hook", now + 5_000, 60_000).unwrap(), NoticeClaim::Empty);
    assert!(matches!(journal.claim_notice("mail", now, 60_000).unwrap(), NoticeClaim::Due(n) if n.body == "a"));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&|| super::Journal::open(dir.path()).unwrap());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
                fn $name() {
                    let server = crate::testkit::PgServer::shared().expect("a PostgreSQL server for the tests");
                    let url = server.new_database().unwrap();
                    let cluster = crate::testkit::cluster_config(&url, "node-a", std::time::Duration::from_secs(30));
                    super::$name(&|| super::Journal::for_cluster(&cluster, true).unwrap());
                }
            )*
        }
    };
}

conformance!(
    charged_starts_are_counted_from_the_processing_step,
    kept_counts_match_the_jobs_through_random_inserts_retries_and_state_changes,
    jobs_round_trip_and_unfinished_ones_come_back,
    a_file_retried_and_delivered_counts_once_as_done,
    progress_is_recorded_and_cleared_by_the_next_state,
    a_batch_lands_in_one_transaction_and_reads_back_like_single_inserts,
    each_state_change_is_kept_in_the_jobs_timeline,
    pages_list_newest_jobs_of_files_by_state_and_name_without_overlap,
    non_utf8_names_survive,
    markers_and_the_hold_are_kept,
    render_errors_are_found_among_deliveries,
    notices_wait_in_order_per_channel_and_survive_a_reopen,
);
