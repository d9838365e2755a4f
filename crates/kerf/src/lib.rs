//! The `kerf` command's library half: turning what `kerf-api` read into a scheduling
//! input, and rendering a plan as a table or as JSON. Kept out of `main.rs` so the
//! scenario tests render exactly what users see.

pub mod plan;
