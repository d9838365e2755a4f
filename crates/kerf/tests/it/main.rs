//! Integration tests for the `kerf` command.

mod chart;
mod controller;
mod disrupt;
mod observe;
mod scenarios;

use std::path::{Path, PathBuf};

/// Runs `run` on every `*.yaml` in `dir` and compares its output with the file beside it
/// with extension `expected_ext`; `UPDATE_EXPECT=1` rewrites those files instead. All
/// differences are reported together.
pub fn check_golden_files(dir: &Path, expected_ext: &str, run: impl Fn(&Path) -> String) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenarios found in {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        let actual = run(path);
        let expected_path = path.with_extension(expected_ext);
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            if update {
                std::fs::write(&expected_path, &actual).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}--- actual\n{actual}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
