//! Integration tests for `kerf-disruption`.

mod properties;
mod wide;
