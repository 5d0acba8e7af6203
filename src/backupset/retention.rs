//! Grandfather-father-son retention, restic's rule: for each rule, walk the backups newest
//! to oldest and keep the newest backup of each distinct day / ISO week / month / year
//! until N such periods are kept; keep the union; the newest backup and pinned backups are
//! always kept. Periods are calendar periods in UTC, so a DST change moves nothing.

use serde::Serialize;

/// How many periods of each kind to keep; `None` keeps every period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub yearly: Option<usize>,
}

impl Default for Policy {
    /// The operators' backup guide: daily 7, weekly 4, monthly 12, yearly forever.
    fn default() -> Self {
        Policy {
            last: Some(0),
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            yearly: None,
        }
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// Seconds since the Unix epoch, UTC.
    pub created: i64,
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub name: String,
    pub keep: bool,
    /// Why it is kept: last, daily, weekly, monthly, yearly, newest, pinned.
    pub reasons: Vec<String>,
}

/// The periods retention counts; "last" counts backups, each its own period.
#[derive(Debug, Clone, Copy)]
enum Period {
    Backup,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn reason(self) -> &'static str {
        match self {
            Period::Backup => "last",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The period a backup falls in (UTC calendar periods).
    fn key(self, candidate: &Candidate, index: usize) -> (i64, i64) {
        let day = candidate.created.div_euclid(86_400);
        match self {
            Period::Backup => (index as i64, 0),
            Period::Day => (day, 0),
            Period::Week => {
                let (year, week) = iso_week(day);
                (year, week as i64)
            }
            Period::Month => {
                let (year, month, _) = civil_from_days(day);
                (year, month as i64)
            }
            Period::Year => (civil_from_days(day).0, 0),
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (ISO year, ISO week) of a day count since 1970-01-01.
pub fn iso_week(days: i64) -> (i64, u32) {
    // 1970-01-01 was a Thursday; ISO weeks start on Monday and belong to the year of their Thursday.
    let weekday = (days + 3).rem_euclid(7); // 0 = Monday
    let thursday = days - weekday + 3;
    let (year, _, _) = civil_from_days(thursday);
    let jan1 = days_from_civil(year, 1, 1);
    (year, ((thursday - jan1) / 7 + 1) as u32)
}

/// Days since 1970-01-01 of a civil date (Hinnant's days_from_civil).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Decides every backup's fate. The result is in the input's order.
pub fn decide(candidates: &[Candidate], policy: Policy) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // Newest first; the name breaks ties so the result never depends on the input order.
    order.sort_by(|&a, &b| {
        candidates[b]
            .created
            .cmp(&candidates[a].created)
            .then_with(|| candidates[b].name.cmp(&candidates[a].name))
    });
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); candidates.len()];
    let rules = [
        (Period::Backup, policy.last),
        (Period::Day, policy.daily),
        (Period::Week, policy.weekly),
        (Period::Month, policy.monthly),
        (Period::Year, policy.yearly),
    ];
    for (period, limit) in rules {
        let mut seen: Vec<(i64, i64)> = Vec::new();
        for &index in &order {
            if limit.is_some_and(|n| seen.len() >= n) {
                break;
            }
            let key = period.key(&candidates[index], index);
            if !seen.contains(&key) {
                seen.push(key);
                reasons[index].push(period.reason().to_owned());
            }
        }
    }
    if let Some(&newest) = order.first() {
        if reasons[newest].is_empty() {
            reasons[newest].push("newest".to_owned());
        }
    }
    candidates
        .iter()
        .zip(reasons)
        .map(|(candidate, mut why)| {
            if candidate.pinned {
                why.push("pinned".to_owned());
            }
            Decision {
                name: candidate.name.clone(),
                keep: !why.is_empty(),
                reasons: why,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn at(year: i64, month: u32, day: u32, hour: i64) -> i64 {
        days_from_civil(year, month, day) * DAY + hour * 3600
    }

    fn named(created: &[i64]) -> Vec<Candidate> {
        created
            .iter()
            .enumerate()
            .map(|(i, &c)| Candidate {
                name: format!("b{i:03}"),
                created: c,
                pinned: false,
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.name.clone())
            .collect()
    }

    #[test]
    fn calendar_helpers_agree_with_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            iso_week(days_from_civil(2021, 1, 3)),
            (2020, 53),
            "a Sunday in the last week of 2020"
        );
        assert_eq!(iso_week(days_from_civil(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(days_from_civil(2026, 12, 31)), (2026, 53));
    }

    #[test]
    fn a_year_of_daily_backups_under_the_guides_policy() {
        // 2025-01-01 .. 2025-12-31 at 02:00 UTC, one a day.
        let created: Vec<i64> = (0..365).map(|d| at(2025, 1, 1, 2) + d * DAY).collect();
        let decisions = decide(&named(&created), Policy::default());
        let keep = kept(&decisions);
        // 7 daily (Dec 25-31), 4 weekly (newest of the last 4 ISO weeks: Dec 31 is in week 1
        // of 2026, then Sun Dec 28, 21, 14), 12 monthly (last day of each month), 1 yearly.
        let days_kept: Vec<(i64, u32, u32)> = decisions
            .iter()
            .zip(&created)
            .filter(|(d, _)| d.keep)
            .map(|(_, &c)| civil_from_days(c.div_euclid(DAY)))
            .collect();
        for expected in [
            (2025, 12, 25),
            (2025, 12, 21),
            (2025, 12, 14),
            (2025, 11, 30),
            (2025, 1, 31),
            (2025, 2, 28),
        ] {
            assert!(
                days_kept.contains(&expected),
                "{expected:?} not kept: {days_kept:?}"
            );
        }
        assert!(
            !days_kept.contains(&(2025, 12, 24)),
            "Wed Dec 24 is neither daily nor the newest of its week"
        );
        assert!(!days_kept.contains(&(2025, 1, 1)));
        // Union of 7 daily + (Dec 14, 21; Dec 28 and 31 already daily) + 11 other month ends.
        assert_eq!(keep.len(), 7 + 2 + 11, "{days_kept:?}");
        let newest = decisions.last().unwrap();
        assert!(
            newest.reasons.contains(&"daily".to_owned()) && newest.reasons.contains(&"yearly".to_owned())
        );
    }

    #[test]
    fn gaps_two_per_day_pins_and_keep_last() {
        let created = vec![
            at(2025, 3, 1, 1),
            at(2025, 3, 1, 23),  // two on one day: only the later counts for daily
            at(2025, 3, 10, 12), // a gap of nine days
            at(2025, 3, 11, 12),
        ];
        let mut candidates = named(&created);
        candidates[0].pinned = true;
        let policy = Policy {
            last: Some(0),
            daily: Some(2),
            weekly: Some(0),
            monthly: Some(0),
            yearly: Some(0),
        };
        let decisions = decide(&candidates, policy);
        assert_eq!(kept(&decisions), vec!["b000", "b002", "b003"]);
        assert_eq!(decisions[0].reasons, vec!["pinned"]);
        let with_last = decide(
            &candidates,
            Policy {
                last: Some(3),
                ..policy
            },
        );
        assert_eq!(kept(&with_last), vec!["b000", "b001", "b002", "b003"]);
        assert_eq!(with_last[1].reasons, vec!["last"]);
    }

    #[test]
    fn a_dst_change_does_not_split_or_merge_days() {
        // Europe's 2025-03-30 02:00 local jump; backups at 23:30 local (UTC+1, then UTC+2)
        // are 22:30 and 21:30 UTC: still one per UTC day, on consecutive days.
        let created = vec![
            at(2025, 3, 29, 22) + 1800,
            at(2025, 3, 30, 21) + 1800,
            at(2025, 3, 31, 21) + 1800,
        ];
        let policy = Policy {
            last: Some(0),
            daily: Some(3),
            weekly: Some(0),
            monthly: Some(0),
            yearly: Some(0),
        };
        assert_eq!(kept(&decide(&named(&created), policy)).len(), 3);
    }

    #[test]
    fn the_newest_is_kept_even_by_an_empty_policy() {
        let policy = Policy {
            last: Some(0),
            daily: Some(0),
            weekly: Some(0),
            monthly: Some(0),
            yearly: Some(0),
        };
        let decisions = decide(&named(&[10, 20, 30]), policy);
        assert_eq!(kept(&decisions), vec!["b002"]);
        assert_eq!(decisions[2].reasons, vec!["newest"]);
    }
}
