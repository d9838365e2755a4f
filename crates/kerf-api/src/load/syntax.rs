//! Kubernetes' syntax rules for label keys and values, and how kerf spells field paths.
//!
//! The API server would reject a malformed label; kerf rejects it too, so a plan never
//! rests on an object the cluster would refuse.

use crate::names::{is_dns_subdomain, is_label_name};

/// What is wrong with a label key (`[prefix/]name`), if anything.
pub(crate) fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Some(format!(
            "label key {key:?} has an invalid prefix: it must be a lowercase DNS subdomain (e.g. example.com) of at most 253 characters"
        ));
    }
    if !is_label_name(name) {
        return Some(format!(
            "label key {key:?} is not valid: the name part must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// What is wrong with a label value, if anything. The empty value is valid.
pub(crate) fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_label_name(value)).then(|| {
        format!(
            "label value {value:?} is not valid: it must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    })
}

/// `path.key`, or `path["key"]` when the key would read as more path (`nvidia.com/gpu`).
pub(crate) fn map_key(path: &str, key: &str) -> String {
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !key.is_empty()
    {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax() {
        assert_eq!(label_key_problem("app"), None);
        assert_eq!(label_key_problem("topology.kubernetes.io/zone"), None);
        assert!(label_key_problem("Example.com/x").is_some());
        assert!(label_key_problem("-app").is_some());
        assert!(label_key_problem("a/b/c").is_some());
        assert!(label_key_problem("").is_some());
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("us-east-1a"), None);
        assert!(label_value_problem("has space").is_some());
        assert!(label_value_problem(&"x".repeat(64)).is_some());
    }

    #[test]
    fn field_paths() {
        assert_eq!(map_key("requests", "cpu"), "requests.cpu");
        assert_eq!(
            map_key("requests", "nvidia.com/gpu"),
            "requests[\"nvidia.com/gpu\"]"
        );
    }
}
