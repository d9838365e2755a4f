//! Karpenter's durations: Go `time.ParseDuration` strings such as `720h`, `1h30m`, `30s`,
//! and, where Karpenter allows it, the word `Never`.
//!
//! They stay strings on the wire, exactly as the user wrote them, and are parsed here
//! when a NodePool is converted, so that a bad one becomes a field error rather than a
//! YAML parse failure that hides every other problem in the object.

use std::fmt;
use std::time::Duration;

/// The word Karpenter uses for "no duration": never expire, never consolidate.
pub const NEVER: &str = "Never";

/// Why a string is not a duration of the accepted shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    pub input: String,
    pub why: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a valid duration: {}", self.input, self.why)
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go-style duration made of whole-number parts with units `h`, `m`, `s` and
/// `ms`, in any combination (`1h30m`, `90s`, `1m500ms`). Fractions and `Never` are not
/// accepted; see [`parse_nillable`] for the latter.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    parse_with_units(input, &["h", "m", "s", "ms"])
}

/// Parses `Never` as `None` and anything else as [`parse`] would, restricted to the units
/// Karpenter's CRD pattern `^(([0-9]+(s|m|h))+|Never)$` admits.
pub fn parse_nillable(input: &str) -> Result<Option<Duration>, DurationError> {
    if input == NEVER {
        return Ok(None);
    }
    parse_with_units(input, &["h", "m", "s"]).map(Some)
}

/// Parses a duration whose units must be among `units` (each of `h`, `m`, `s`, `ms`).
pub fn parse_with_units(input: &str, units: &[&str]) -> Result<Duration, DurationError> {
    let err = |why: String| DurationError {
        input: input.to_string(),
        why,
    };
    let expected = || {
        format!(
            "expected whole numbers with units {} such as \"720h\", \"1h30m\" or \"30s\"",
            units.join(", ")
        )
    };
    if input.is_empty() {
        return Err(err(format!("empty; {}", expected())));
    }
    let mut total = Duration::ZERO;
    let mut rest = input;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(err(format!("no number before {rest:?}; {}", expected())));
        }
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(err(format!("{digits:?} has no unit; {}", expected())));
        }
        if !units.contains(&unit) {
            return Err(err(format!("unit {unit:?} is not allowed; {}", expected())));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| err(format!("{digits:?} is too large")))?;
        let part = match unit {
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(n)),
            _ => Some(Duration::from_millis(n)),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| err("too large".to_string()))?;
        rest = after_unit;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let secs = |s| parse(s).map(|d| d.as_millis());
        assert_eq!(secs("720h"), Ok(720 * 3600 * 1000));
        assert_eq!(secs("1h30m"), Ok(5400 * 1000));
        assert_eq!(secs("30s"), Ok(30_000));
        assert_eq!(secs("0s"), Ok(0));
        assert_eq!(secs("1m500ms"), Ok(60_500));
        assert!(parse("").is_err());
        assert!(parse("10").is_err());
        assert!(parse("h").is_err());
        assert!(parse("1.5h").is_err());
        assert!(parse("3d").is_err());
        assert!(parse("Never").is_err());
        assert!(parse("99999999999999999999h").is_err());
    }

    #[test]
    fn never_is_none() {
        assert_eq!(parse_nillable("Never"), Ok(None));
        assert_eq!(parse_nillable("5m"), Ok(Some(Duration::from_secs(300))));
        // Karpenter's pattern has no milliseconds.
        assert!(parse_nillable("500ms").is_err());
        assert!(parse_nillable("never").is_err());
    }
}
