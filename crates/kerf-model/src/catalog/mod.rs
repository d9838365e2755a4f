//! Simulated instance catalogs, used when there is no cloud account: `aws` (default) and
//! `kwok`.
//!
//! Each catalog is generated from a small table and written-down rules (see
//! `docs/catalogs.md`), with no I/O and no randomness, so it is cheap enough to build on every
//! `kerf plan` and the same on every machine.

pub mod aws;
pub mod kwok;

use crate::InstanceType;

/// The catalogs `--catalog` accepts.
pub const NAMES: [&str; 2] = ["aws", "kwok"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown catalog {0:?}; expected one of: aws, kwok")]
pub struct UnknownCatalog(pub String);

/// The instance types of a named catalog, sorted by name.
pub fn by_name(name: &str) -> Result<Vec<InstanceType>, UnknownCatalog> {
    match name {
        "aws" => Ok(aws::instance_types()),
        "kwok" => Ok(kwok::instance_types()),
        other => Err(UnknownCatalog(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_catalog_is_non_empty_and_sorted() {
        for name in NAMES {
            let types = by_name(name).unwrap();
            assert!(!types.is_empty(), "{name}");
            assert!(
                types.windows(2).all(|w| w[0].name < w[1].name),
                "{name} is not sorted by name"
            );
            assert_eq!(types, by_name(name).unwrap(), "{name} is not deterministic");
        }
    }

    #[test]
    fn an_unknown_name_says_what_would_be_valid() {
        let err = by_name("gcp").unwrap_err();
        assert_eq!(err, UnknownCatalog("gcp".to_string()));
        assert_eq!(
            err.to_string(),
            "unknown catalog \"gcp\"; expected one of: aws, kwok"
        );
    }
}
