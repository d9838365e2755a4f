//! Integration tests for the `kerf` command.

mod disrupt;
mod scenarios;
