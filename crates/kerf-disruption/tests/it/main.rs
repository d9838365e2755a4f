//! Integration tests for `kerf-disruption`.

mod properties;
