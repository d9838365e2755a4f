//! Kubernetes' name syntax, shared by every validator in this crate so that a label key
//! means the same thing whether it sits in a Pod or in a NodePool.

/// A label value or the name part of a qualified name: 1-63 characters of alphanumerics,
/// `-`, `_` or `.`, starting and ending alphanumeric.
pub(crate) fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A lowercase RFC 1123 subdomain of at most 253 characters: dot-separated labels of
/// 1-63 characters of `[a-z0-9-]`, each starting and ending alphanumeric.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert!(is_label_name("us-east-1a") && is_label_name("a.b_c"));
        assert!(!is_label_name("") && !is_label_name("-a") && !is_label_name("a b"));
        assert!(is_label_name(&"x".repeat(63)) && !is_label_name(&"x".repeat(64)));
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("karpenter.k8s.aws"));
        assert!(!is_dns_subdomain("Example.com") && !is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(&format!("{}.com", "x".repeat(64))));
    }
}
