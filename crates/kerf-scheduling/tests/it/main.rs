//! Integration tests for `kerf_scheduling::solve`.

mod basics;
mod properties;
