//! NodePool disruption budgets: which are active at `now` (cron schedules in UTC), and
//! how many nodes each lets a reason disrupt.

use std::collections::BTreeMap;

use kerf_model::NodePool;
use kerf_model::nodepool::{Budget, BudgetNodes};

use crate::facts::Facts;

/// Why a node is disrupted, as budgets name it (`spec.disruption.budgets[].reasons`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Empty,
    Drifted,
    Underutilized,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "Empty",
            Reason::Drifted => "Drifted",
            Reason::Underutilized => "Underutilized",
        }
    }
}

/// The most restrictive active budget for one reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Allowance {
    /// Nodes the budget allows disrupting at once (before subtracting those already
    /// disrupting); `None` when no budget applies (unlimited).
    pub limit: Option<u32>,
    /// How the limit reads, for reasons: `10% = 1 node`, `0 nodes, schedule "0 9 * * 1-5"
    /// for 8h`.
    pub description: String,
}

/// The allowance for `reason` in a pool of `n_nodes` nodes at `now` (Unix seconds).
/// Percentages round up, as Karpenter's `GetScaledValueFromIntOrPercent(.., true)` does:
/// 10% of 5 nodes allows 1. A schedule that cannot be parsed (the loader validates them,
/// so only a hand-built pool has one) fails closed: the budget allows nothing.
pub fn allowance(budgets: &[Budget], reason: Reason, n_nodes: u32, now: i64) -> Allowance {
    let mut best: Option<(u32, String)> = None;
    for budget in budgets {
        if !budget.reasons.is_empty() && !budget.reasons.iter().any(|r| r == reason.as_str()) {
            continue;
        }
        let active = match (&budget.schedule, budget.duration) {
            (Some(schedule), Some(duration)) => match Schedule::parse(schedule) {
                Some(s) => s.hit_within(now, duration.as_secs() as i64),
                None => true,
            },
            _ => true,
        };
        if !active {
            continue;
        }
        let unparsable = budget
            .schedule
            .as_deref()
            .is_some_and(|s| Schedule::parse(s).is_none());
        let (limit, mut text) = match budget.nodes {
            _ if unparsable => (0, "unreadable schedule".to_string()),
            BudgetNodes::Count(n) => (n, plural(n, "node")),
            BudgetNodes::Percent(p) => {
                let n = (u64::from(p) * u64::from(n_nodes)).div_ceil(100) as u32;
                (n, format!("{p}% = {}", plural(n, "node")))
            }
        };
        if let (Some(schedule), Some(duration)) = (&budget.schedule, budget.duration) {
            text.push_str(&format!(
                ", schedule {schedule:?} for {}",
                crate::render_duration(duration.as_secs() as i64)
            ));
        }
        if best.as_ref().is_none_or(|(b, _)| limit < *b) {
            best = Some((limit, text));
        }
    }
    match best {
        Some((limit, description)) => Allowance {
            limit: Some(limit),
            description,
        },
        None => Allowance {
            limit: None,
            description: "no budget".to_string(),
        },
    }
}

/// Each NodePool's managed nodes (initialized, with a NodeClaim) and how many of them are
/// already disrupting, counted once expiration has acted: what the graceful methods'
/// budgets are taken from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Budgets<'a> {
    /// (nodes, disrupting) by NodePool name.
    by_pool: BTreeMap<&'a str, (u32, u32)>,
    now: i64,
}

impl<'a> Budgets<'a> {
    /// Counts the pools' nodes; `in_command` marks nodes the pass already disrupts.
    pub(crate) fn count(facts: &[Facts<'a>], in_command: &[bool], now: i64) -> Budgets<'a> {
        let mut by_pool: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for (f, &acting) in facts.iter().zip(in_command) {
            if let (Some(pool), true) = (f.pool_name, f.initialized && f.claim.is_some()) {
                let entry = by_pool.entry(pool).or_default();
                entry.0 += 1;
                if f.disrupting || acting {
                    entry.1 += 1;
                }
            }
        }
        Budgets { by_pool, now }
    }

    /// How many more of `pool`'s nodes `reason` may disrupt now.
    pub(crate) fn headroom<'p>(&self, pool: &'p NodePool, reason: Reason) -> Headroom<'p> {
        let (n_nodes, disrupting) = (self.by_pool.get(pool.name.as_str()))
            .copied()
            .unwrap_or_default();
        let allowance = allowance(&pool.disruption.budgets, reason, n_nodes, self.now);
        Headroom {
            available: allowance
                .limit
                .map_or(u32::MAX, |l| l.saturating_sub(disrupting)),
            pool,
            reason,
            allowance,
        }
    }
}

/// What a pool's budget leaves for one reason now.
pub(crate) struct Headroom<'p> {
    pub(crate) available: u32,
    pool: &'p NodePool,
    reason: Reason,
    allowance: Allowance,
}

impl Headroom<'_> {
    /// Why no more nodes may go, once `available` are taken.
    pub(crate) fn spent(self) -> BudgetSpent {
        BudgetSpent {
            nodepool: self.pool.name.clone(),
            reason: self.reason,
            allows_none: self.allowance.limit == Some(0),
            allowance: self.allowance.description,
        }
    }
}

/// A NodePool budget with no room left now for one more node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSpent {
    pub nodepool: String,
    pub reason: Reason,
    /// How the most restrictive active budget reads (`Allowance::description`).
    pub allowance: String,
    /// The budget allows no disruption for the reason at all now (rather than nodes
    /// already disrupting having used it up).
    pub allows_none: bool,
}

impl BudgetSpent {
    pub(crate) fn kind(&self) -> &'static str {
        if self.allows_none {
            "budget allows no disruptions now"
        } else {
            "budget already used"
        }
    }
}

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pool, allowance) = (&self.nodepool, &self.allowance);
        if self.allows_none {
            write!(
                f,
                "budget of nodepool {pool} ({allowance}) allows no {} disruptions now",
                self.reason.as_str()
            )
        } else {
            write!(f, "budget of nodepool {pool} ({allowance}) already used")
        }
    }
}

/// What one method has taken of each pool's budget so far in a pass.
#[derive(Debug, Default)]
pub(crate) struct Taken<'a>(BTreeMap<&'a str, u32>);

impl<'a> Taken<'a> {
    /// Takes one node of `pool`'s budget for `reason`, or says why it has none left.
    pub(crate) fn take(
        &mut self,
        budgets: &Budgets,
        pool: &'a NodePool,
        reason: Reason,
    ) -> Result<(), BudgetSpent> {
        let headroom = budgets.headroom(pool, reason);
        let used = self.0.entry(pool.name.as_str()).or_default();
        if *used < headroom.available {
            *used += 1;
            Ok(())
        } else {
            Err(headroom.spent())
        }
    }

    /// Nodes of `pool` taken so far.
    pub(crate) fn used(&self, pool: &NodePool) -> u32 {
        self.0.get(pool.name.as_str()).copied().unwrap_or(0)
    }
}

pub(crate) fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A standard five-field cron schedule (or a macro such as `@daily`), evaluated in UTC
/// as Karpenter's `robfig/cron` parser does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// `robfig/cron`: when either day field is `*` (or `?`), both must match; otherwise
    /// either may.
    day_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    pub fn parse(text: &str) -> Option<Schedule> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return None;
        };
        let (minutes, _) = field(minute, 0, 59, &[])?;
        let (hours, _) = field(hour, 0, 23, &[])?;
        let (days_of_month, dom_star) = field(dom, 1, 31, &[])?;
        let (months, _) = field(month, 1, 12, &MONTHS)?;
        let (days_of_week, dow_star) = field(dow, 0, 6, &WEEKDAYS)?;
        Some(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_star: dom_star || dow_star,
        })
    }

    /// Whether the schedule fires at the minute starting at Unix second `t` (a multiple
    /// of 60).
    pub fn fires_at(&self, t: i64) -> bool {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (minute, hour) = ((secs / 60) % 60, secs / 3600);
        let (_, month, day) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
        let bit = |set: u64, v: i64| set & (1 << v) != 0;
        let dom = bit(self.days_of_month, day);
        let dow = bit(self.days_of_week, weekday);
        let day_ok = if self.day_star {
            dom && dow
        } else {
            dom || dow
        };
        bit(self.minutes, minute) && bit(self.hours, hour) && bit(self.months, month) && day_ok
    }

    /// Karpenter's `Budget.IsActive`: the schedule fired in `(now - duration, now]`.
    pub fn hit_within(&self, now: i64, duration: i64) -> bool {
        let start = now - duration;
        // The first whole minute strictly after `start`.
        let mut t = (start.div_euclid(60) + 1) * 60;
        while t <= now {
            if self.fires_at(t) {
                return true;
            }
            t += 60;
        }
        false
    }
}

/// One cron field as a bitset, and whether it was a bare `*`/`?`.
fn field(text: &str, lo: i64, hi: i64, names: &[&str]) -> Option<(u64, bool)> {
    let value = |s: &str| -> Option<i64> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Some(i as i64 + lo);
        }
        s.parse::<i64>().ok().filter(|n| (lo..=hi).contains(n))
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<i64>().ok().filter(|s| *s > 0)?)),
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                star = true;
            }
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `N/step` means `N-max/step`.
            (v, if step.is_some() { hi } else { v })
        };
        if start > end {
            return None;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Some((bits, star))
}

/// Howard Hinnant's `civil_from_days`: (year, month 1-12, day 1-31) of a day count since
/// 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24T12:00:00Z, a Tuesday.
    const NOON_TUE: i64 = 1_795_521_600;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(NOON_TUE / 86_400), (2026, 11, 24));
        assert_eq!((NOON_TUE / 86_400 + 4) % 7, 2);
    }

    #[test]
    fn business_hours() {
        let s = Schedule::parse("0 9 * * mon-fri").unwrap();
        assert!(s.hit_within(NOON_TUE, 8 * 3600));
        assert!(!s.hit_within(NOON_TUE, 2 * 3600));
        // Saturday noon: Friday 09:00 is 27h back.
        assert!(!s.hit_within(NOON_TUE + 4 * 86_400, 8 * 3600));
        // The window is (now - duration, now]: firing exactly at now counts.
        assert!(s.hit_within(NOON_TUE - 3 * 3600, 60));
    }

    #[test]
    fn day_fields_or_unless_star() {
        // Day 1 of the month OR a Tuesday.
        let s = Schedule::parse("0 12 1 * 2").unwrap();
        assert!(s.fires_at(NOON_TUE));
        let s = Schedule::parse("0 12 1 * *").unwrap();
        assert!(!s.fires_at(NOON_TUE));
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert!(s.fires_at(NOON_TUE + 45 * 60));
        assert!(!s.fires_at(NOON_TUE + 50 * 60));
        assert!(
            Schedule::parse("@daily")
                .unwrap()
                .fires_at(NOON_TUE - 12 * 3600)
        );
        assert!(Schedule::parse("61 * * * *").is_none());
    }

    #[test]
    fn percent_rounds_up() {
        let b = |nodes| Budget {
            nodes,
            schedule: None,
            duration: None,
            reasons: Vec::new(),
        };
        let a = allowance(&[b(BudgetNodes::Percent(10))], Reason::Empty, 5, 0);
        assert_eq!(a.limit, Some(1));
        assert_eq!(a.description, "10% = 1 node");
        let a = allowance(
            &[b(BudgetNodes::Percent(10)), b(BudgetNodes::Count(0))],
            Reason::Drifted,
            50,
            0,
        );
        assert_eq!(a.limit, Some(0));
    }
}
