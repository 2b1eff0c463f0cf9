//! Credit budgets (`[budget] per_day`, `per_month`, and a watch's own `[watch.budget]`): how
//! many credits may be spent in the current local day and month, counted from the charged
//! starts the journal holds ([`crate::journal::charges_since`]), so restarts and every node of a
//! shared journal count together. Pure: the daemon asks [`Budget::reached`] before an upload.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// A budget: credits per local day and per local month (either may be absent).
#[derive(Debug, Clone)]
pub struct Budget {
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
    tz: TimeZone,
}

impl PartialEq for Budget {
    fn eq(&self, other: &Self) -> bool {
        (self.per_day, self.per_month, self.tz.iana_name()) == (other.per_day, other.per_month, other.tz.iana_name())
    }
}

/// A budget spent: which period, how much of it, and when the next period starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Reached {
    pub period: &'static str,
    pub spent: u64,
    pub limit: u64,
    pub resumes: Timestamp,
    /// The resume time in the budget's local time, for people.
    pub resumes_local: String,
}

impl Reached {
    pub fn words(&self, whose: &str) -> String {
        format!(
            "{whose} credit budget reached: {} of {} credits {}; uploads resume at {}",
            self.spent, self.limit, self.period, self.resumes_local
        )
    }
}

/// Spent today and this month (local), for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Spent {
    pub today: u64,
    pub this_month: u64,
}

impl Budget {
    /// `timezone`: an IANA name (default: the system's local time).
    pub fn new(per_day: Option<u64>, per_month: Option<u64>, timezone: Option<&str>) -> Result<Budget, String> {
        Ok(Budget { per_day, per_month, tz: crate::schedule::time_zone(timezone)? })
    }

    fn local(&self, at: Timestamp) -> ZonedDateTime {
        at.to_zoned_datetime(self.tz.clone())
    }

    /// Where the current local day and month began (Unix ms): the earliest charge that counts.
    pub fn month_start_ms(&self, now: Timestamp) -> i64 {
        self.local(now).first_of_month().and_then(|d| d.start_of_day()).map_or(0, |d| d.timestamp().as_millisecond())
    }

    fn day_start_ms(&self, now: Timestamp) -> i64 {
        self.local(now).start_of_day().map_or(0, |d| d.timestamp().as_millisecond())
    }

    /// The credits among `charges` (their times, Unix ms) spent today and this month.
    pub fn spent(&self, charges: &[i64], now: Timestamp) -> Spent {
        let (day, month) = (self.day_start_ms(now), self.month_start_ms(now));
        Spent {
            today: charges.iter().filter(|&&at| at >= day).count() as u64,
            this_month: charges.iter().filter(|&&at| at >= month).count() as u64,
        }
    }

    /// Whether one more credit would go over the budget, given `charges` and `pending` starts
    /// not journaled yet; when it would, until when. The month is checked first (it lasts
    /// longer).
    pub fn reached(&self, charges: &[i64], pending: u64, now: Timestamp) -> Option<Reached> {
        let spent = self.spent(charges, now);
        let local = self.local(now);
        let next = |z: Result<ZonedDateTime, jiff::Error>| z.and_then(|d| d.start_of_day()).ok();
        let month_end = next(local.first_of_month().and_then(|d| d.checked_add(jiff::Span::new().months(1))));
        let day_end = next(local.tomorrow());
        [("this month", self.per_month, spent.this_month, month_end), ("today", self.per_day, spent.today, day_end)]
            .into_iter()
            .find_map(|(period, limit, used, end)| {
                let (limit, end) = (limit?, end?);
                (used + pending >= limit).then(|| Reached {
                    period,
                    spent: used,
                    limit,
                    resumes: end.timestamp(),
                    resumes_local: crate::schedule::local_words(&end),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin(text: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        TimeZone::get("Europe/Berlin").unwrap().to_zoned_datetime(dt).unwrap().timestamp()
    }

    fn ms(text: &str) -> i64 {
        berlin(text).as_millisecond()
    }

    #[test]
    fn a_day_budget_counts_from_local_midnight_and_resumes_at_the_next() {
        let budget = Budget::new(Some(2), None, Some("Europe/Berlin")).unwrap();
        // 23:30 the day before counts for that day only.
        let charges = [ms("2026-12-06T23:30"), ms("2026-12-07T00:10"), ms("2026-12-07T09:00")];
        let now = berlin("2026-12-07T12:00");
        assert_eq!(budget.spent(&charges, now), Spent { today: 2, this_month: 3 });
        let reached = budget.reached(&charges, 0, now).expect("two of two today");
        assert_eq!((reached.spent, reached.limit, reached.period), (2, 2, "today"));
        assert_eq!(reached.resumes, berlin("2026-12-08T00:00"));
        assert!(
            reached.words("the").contains("uploads resume at Tue 2026-12-08 00:00 CET"),
            "{}",
            reached.words("the")
        );
        assert_eq!(budget.reached(&charges, 0, berlin("2026-12-08T00:00")), None, "a new day");
        assert!(budget.reached(&charges[..2], 1, now).is_some(), "a start not journaled yet counts");
    }

    #[test]
    fn a_month_budget_spans_a_dst_change_and_resumes_on_the_first() {
        let budget = Budget::new(None, Some(3), Some("Europe/Berlin")).unwrap();
        // Berlin falls back on 2027-10-31: the month still ends at local midnight of Nov 1.
        let charges = [ms("2027-10-01T00:00"), ms("2027-10-31T02:30"), ms("2027-10-31T23:59")];
        let reached = budget.reached(&charges, 0, berlin("2027-10-31T23:59")).unwrap();
        assert_eq!((reached.period, reached.resumes), ("this month", berlin("2027-11-01T00:00")));
        assert_eq!(budget.reached(&charges, 0, berlin("2027-11-01T00:00")), None);
        assert!(Budget::new(Some(1), None, Some("Nowhere/Here")).unwrap_err().contains("IANA"));
    }
}
