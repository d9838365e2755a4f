//! Integration tests for the `kerf` command.

mod scenarios;
