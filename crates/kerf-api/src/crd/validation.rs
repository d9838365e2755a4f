//! Kubernetes' name rules (qualified names, label values), cron schedules, and a small
//! collector so that validation reports every problem in an object at once.

use crate::FieldError;
use crate::names::{is_dns_subdomain, is_label_name};

/// Every error found in one object, each tagged with the object it belongs to.
pub(crate) struct Errors {
    object: String,
    pub(crate) list: Vec<FieldError>,
}

impl Errors {
    pub(crate) fn new(object: String) -> Errors {
        Errors {
            object,
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list
            .push(FieldError::new(self.object.clone(), field, message));
    }
}

const LABEL_VALUE_MAX: usize = 63;

/// Why `key` is not a Kubernetes qualified name (`[prefix/]name`), as Kubernetes'
/// `validation.IsQualifiedName` explains it; `None` when it is one.
pub(crate) fn qualified_name_problem(key: &str) -> Option<String> {
    const SHAPE: &str = "a qualified name is an optional DNS subdomain prefix and '/', then \
                         1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric \
                         (e.g. \"example.com/my-key\")";
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some(format!("{key:?} has an empty prefix; {SHAPE}"));
        }
        if !is_dns_subdomain(prefix) {
            return Some(format!(
                "prefix {prefix:?} of {key:?} is not a lowercase DNS subdomain; {SHAPE}"
            ));
        }
    }
    if name.is_empty() {
        return Some(format!("{key:?} has an empty name; {SHAPE}"));
    }
    if name.len() > LABEL_VALUE_MAX {
        return Some(format!(
            "name part of {key:?} is {} characters, more than {LABEL_VALUE_MAX}; {SHAPE}",
            name.len()
        ));
    }
    if !is_label_name(name) {
        return Some(format!("{key:?} is not a qualified name; {SHAPE}"));
    }
    None
}

/// Why `value` is not a label value; `None` when it is one (the empty string is).
pub(crate) fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > LABEL_VALUE_MAX {
        return Some(format!(
            "{value:?} is {} characters; a label value has at most {LABEL_VALUE_MAX}",
            value.len()
        ));
    }
    if !is_label_name(value) {
        return Some(format!(
            "{value:?} is not a label value: use alphanumerics, '-', '_' or '.', starting and \
             ending alphanumeric"
        ));
    }
    None
}

/// The cron macros Karpenter's budget `schedule` pattern admits.
const CRON_MACROS: [&str; 7] = [
    "@annually",
    "@yearly",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Why `schedule` is not a standard 5-field cron expression or macro, as Karpenter's
/// `cron.ParseStandard` would reject it; `None` when it is valid.
pub(crate) fn cron_problem(schedule: &str) -> Option<String> {
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return (!CRON_MACROS.contains(&schedule)).then(|| {
            format!(
                "{schedule:?} is not a supported macro; use one of {}",
                CRON_MACROS.join(", ")
            )
        });
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "{schedule:?} has {} fields; a cron schedule has 5 (minute hour day-of-month \
             month day-of-week, e.g. \"0 9 * * mon-fri\") or is a macro such as @daily",
            fields.len()
        ));
    }
    let specs: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day-of-month", 1, 31, &[]),
        ("month", 1, 12, &MONTHS),
        ("day-of-week", 0, 6, &WEEKDAYS),
    ];
    for (field, (what, lo, hi, names)) in fields.iter().zip(specs) {
        if let Err(why) = cron_field(
            field,
            lo,
            hi,
            names,
            what == "day-of-month" || what == "day-of-week",
        ) {
            return Some(format!(
                "{what} field {field:?} of {schedule:?}: {why} (allowed {lo}-{hi}{})",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" or {}-{}", names[0], names[names.len() - 1])
                }
            ));
        }
    }
    None
}

fn cron_field(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    question_mark: bool,
) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u32 + lo);
        }
        let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{n} is out of range"));
        }
        Ok(n)
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("step {step:?} is not a positive number")),
            }
        }
        match range {
            "*" => {}
            "?" if question_mark => {}
            _ => match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("range {range:?} runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "app",
            "example.com/team",
            "karpenter.k8s.aws/instance-family",
            "A_b.c-9",
        ] {
            assert_eq!(qualified_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "Example.com/a",
            "-a",
            "a b",
            "a/b/c",
            &"x".repeat(64),
        ] {
            assert!(qualified_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("m5.large"), None);
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem("-a").is_some());
        assert!(label_value_problem(&"x".repeat(64)).is_some());
    }

    #[test]
    fn cron() {
        for ok in [
            "@daily",
            "0 9 * * mon-fri",
            "*/15 0-6,22-23 * * *",
            "0 0 1 JAN ?",
            "30 2 1-15/2 * SUN",
        ] {
            assert_eq!(cron_problem(ok), None, "{ok}");
        }
        for bad in [
            "@every 1h",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "? * * * *",
        ] {
            assert!(cron_problem(bad).is_some(), "{bad}");
        }
    }
}
