//! The simulator: scenario files, the discrete-event engine, and its reports.

pub mod html;
pub mod render;
pub mod report;
