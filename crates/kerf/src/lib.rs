//! The `kerf` command's library half: turning what `kerf-api` read into a scheduling
//! input or a disruption snapshot, and rendering a plan or a disruption pass as a table
//! or as JSON. Kept out of `main.rs` so the
//! scenario tests render exactly what users see.

pub mod disrupt;
pub mod plan;
pub mod simulate;
