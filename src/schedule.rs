//! Upload windows (`[schedule] uploads = ["Mon-Fri 20:00-07:00", "Sat,Sun"]`): when uploads
//! may start, in the studio's local time (or `[schedule] timezone`), daylight saving included.
//! A rule is days (`Mon`, `Mon-Fri`, `Sat,Sun`, `Fri-Mon`) and, optionally, a span of the day;
//! a span that ends earlier than it starts runs past midnight into the next day (`Fri
//! 20:00-07:00` holds until Saturday 07:00). Outside every window files wait; jobs already at the
//! server are not affected. Pure: the daemon asks [`Windows::open_at`] and [`Windows::next_open`].

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// One rule: the days it starts on (Monday first) and its span in minutes of the day (`None`:
/// the whole day).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    days: [bool; 7],
    span: Option<(u16, u16)>,
}

/// The windows of a watch (or of all), with the time zone they are read in.
#[derive(Debug, Clone)]
pub struct Windows {
    rules: Vec<Rule>,
    tz: TimeZone,
    /// The rules as written, for messages.
    pub text: Vec<String>,
}

impl PartialEq for Windows {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules && self.text == other.text && self.tz.iana_name() == other.tz.iana_name()
    }
}

fn day_index(day: Weekday) -> usize {
    (day.to_monday_one_offset() - 1) as usize
}

fn parse_day(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|(name, _)| {
            lower.starts_with(name) && "monday tuesday wednesday thursday friday saturday sunday".contains(&lower)
        })
        .ok_or_else(|| format!("`{text}` is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (mut d, to) = (parse_day(from)?, parse_day(to)?);
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[parse_day(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_minute(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time of day; use HH:MM, 00:00 to 24:00");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let mut parts = text.split_whitespace();
    let days =
        parse_days(parts.next().ok_or("is empty; write days and an optional span, like \"Mon-Fri 20:00-07:00\"")?)?;
    let span = match parts.next() {
        None => None,
        Some(span) => {
            let (from, to) =
                span.split_once('-').ok_or_else(|| format!("`{span}` is not a span; write it like 20:00-07:00"))?;
            let (from, to) = (parse_minute(from)?, parse_minute(to)?);
            if from == to {
                return Err(format!("`{span}` is empty; leave the span out for the whole day"));
            }
            Some((from, to))
        }
    };
    if let Some(extra) = parts.next() {
        return Err(format!("`{extra}` is left over; write one rule per string, like \"Sat,Sun\""));
    }
    Ok(Rule { days, span })
}

/// The time zone a schedule or budget is read in: an IANA name, or the system's local time.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(name) => TimeZone::get(name)
            .map_err(|e| format!("timezone \"{name}\" is not known ({e}); use an IANA name like \"Europe/Berlin\"")),
        None => Ok(TimeZone::system()),
    }
}

/// A moment as people read it in a schedule's or budget's zone: `Mon 2026-12-07 20:00 CET`.
pub fn local_words(at: &ZonedDateTime) -> String {
    at.strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

impl Windows {
    /// Reads the rules; `timezone` is an IANA name (default: the system's).
    pub fn parse(rules: &[String], timezone: Option<&str>) -> Result<Windows, String> {
        if rules.is_empty() {
            return Err("is empty; leave it out to upload at any time".into());
        }
        let parsed =
            rules.iter().map(|r| parse_rule(r).map_err(|e| format!("\"{r}\": {e}"))).collect::<Result<Vec<_>, _>>()?;
        Ok(Windows { rules: parsed, tz: time_zone(timezone)?, text: rules.to_vec() })
    }

    fn local(&self, at: Timestamp) -> ZonedDateTime {
        at.to_zoned_datetime(self.tz.clone())
    }

    /// Whether uploads may start at `at`.
    pub fn open_at(&self, at: Timestamp) -> bool {
        let local = self.local(at);
        let (day, minute) = (day_index(local.weekday()), local.hour() as u16 * 60 + local.minute() as u16);
        let yesterday = (day + 6) % 7;
        self.rules.iter().any(|rule| match rule.span {
            None => rule.days[day],
            Some((from, to)) if from < to => rule.days[day] && (from..to).contains(&minute),
            // Past midnight: from its start to the end of the day, then the next morning.
            Some((from, to)) => (rule.days[day] && minute >= from) || (rule.days[yesterday] && minute < to),
        })
    }

    /// When the next window opens after `at` (`at` itself when one is open). `None` only when
    /// no rule ever opens (cannot happen for parsed rules).
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.open_at(at) {
            return Some(at);
        }
        let today = self.local(at).date();
        let mut best: Option<Timestamp> = None;
        for offset in 0..=8i64 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else { continue };
            for rule in &self.rules {
                if !rule.days[day_index(date.weekday())] {
                    continue;
                }
                let start = rule.span.map_or(0, |(from, _)| from);
                let Some(opens) = self.instant(date, start) else { continue };
                // A start made to fall into a DST gap lands after it: still an opening.
                if opens > at && best.is_none_or(|b| opens < b) {
                    best = Some(opens);
                }
            }
            if best.is_some() {
                break;
            }
        }
        best
    }

    /// The instant of `minute` of the day on local `date` (a time skipped by a DST change is
    /// taken as the moment after the gap, as clocks show it).
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let time = Time::new((minute / 60).min(23) as i8, (minute % 60) as i8, 0, 0).ok()?;
        let day = if minute >= 24 * 60 { date.tomorrow().ok()? } else { date };
        let time = if minute >= 24 * 60 { Time::midnight() } else { time };
        self.tz.to_zoned_datetime(day.to_datetime(time)).ok().map(|z| z.timestamp())
    }

    /// When `at` is outside every window: the reason files wait, with the next opening in local
    /// time.
    pub fn closed_words(&self, at: Timestamp) -> Option<String> {
        if self.open_at(at) {
            return None;
        }
        let next = self.next_open(at)?;
        Some(format!(
            "outside the upload windows ({}); next window at {}",
            self.text.join(", "),
            local_words(&self.local(next))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(rules: &[&str]) -> Windows {
        Windows::parse(&rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(), Some("Europe/Berlin")).unwrap()
    }

    /// The instant of a Berlin wall-clock time.
    fn berlin(text: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        TimeZone::get("Europe/Berlin").unwrap().to_zoned_datetime(dt).unwrap().timestamp()
    }

    #[test]
    fn a_night_window_runs_past_midnight_and_weekends_are_whole_days() {
        let w = windows(&["Mon-Fri 20:00-07:00", "Sat,Sun"]);
        // 2026-12-07 is a Monday.
        assert!(!w.open_at(berlin("2026-12-07T12:00")), "Monday noon");
        assert!(w.open_at(berlin("2026-12-07T20:00")), "Monday 20:00 opens");
        assert!(w.open_at(berlin("2026-12-08T06:59")), "the night runs into Tuesday");
        assert!(!w.open_at(berlin("2026-12-08T07:00")), "and ends at 07:00");
        assert!(
            !w.open_at(berlin("2026-12-07T03:00")),
            "Monday's small hours belong to Sunday's rule (whole day, ended)"
        );
        assert!(w.open_at(berlin("2026-12-12T12:00")), "Saturday");
        assert!(w.open_at(berlin("2026-12-06T23:59")), "Sunday");
        assert_eq!(w.next_open(berlin("2026-12-07T12:00")), Some(berlin("2026-12-07T20:00")));
        assert_eq!(w.next_open(berlin("2026-12-08T07:00")), Some(berlin("2026-12-08T20:00")), "over a day boundary");
        let words = w.closed_words(berlin("2026-12-07T12:00")).unwrap();
        assert!(words.contains("next window at Mon 2026-12-07 20:00 CET"), "{words}");
        assert_eq!(w.closed_words(berlin("2026-12-12T12:00")), None);
    }

    #[test]
    fn windows_follow_the_local_clock_across_a_dst_change() {
        // Berlin springs forward on 2027-03-28 (02:00 → 03:00) and falls back on 2027-10-31.
        let w = windows(&["Sun 01:00-05:00"]);
        let spring_open = berlin("2027-03-28T01:00");
        assert!(w.open_at(spring_open));
        assert!(w.open_at(berlin("2027-03-28T04:59")));
        // Four wall-clock hours, three real ones: closed three hours and a minute after opening.
        let after = spring_open.checked_add(jiff::SignedDuration::from_mins(3 * 60 + 1)).unwrap();
        assert!(!w.open_at(after), "05:01 local, three real hours after opening");
        let autumn_open = berlin("2027-10-31T01:00");
        let after = autumn_open.checked_add(jiff::SignedDuration::from_mins(4 * 60 + 30)).unwrap();
        assert!(w.open_at(after), "04:30 local after falling back: five real hours");
        // A window starting in the skipped hour opens when the clock shows 03:00.
        let gap = windows(&["Sun 02:30-04:00"]);
        assert_eq!(gap.next_open(berlin("2027-03-27T12:00")), Some(berlin("2027-03-28T03:30")));
        assert_eq!(berlin("2027-03-28T03:30"), berlin("2027-03-28T02:30"), "the skipped time is read forward");
    }

    #[test]
    fn bad_rules_are_refused_with_how_to_write_them() {
        let err = |rules: &[&str]| {
            Windows::parse(&rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(), Some("Europe/Berlin")).unwrap_err()
        };
        assert!(err(&["Mo-Fr 20:00-07:00"]).contains("is not a day"));
        assert!(err(&["Mon 25:00-07:00"]).contains("not a time of day"));
        assert!(err(&["Mon 20:00"]).contains("not a span"));
        assert!(err(&["Mon 08:00-08:00"]).contains("is empty"));
        assert!(err(&["Mon 08:00-09:00 Tue"]).contains("left over"));
        assert!(err(&["Mon Tue"]).contains("not a span"));
        assert!(err(&[]).contains("leave it out"));
        let tz = Windows::parse(&["Sat".into()], Some("Mars/Olympus")).unwrap_err();
        assert!(tz.contains("IANA"), "{tz}");
        assert!(windows(&["Fri-Mon"]).open_at(berlin("2026-12-13T10:00")), "a range may wrap the week");
    }
}
