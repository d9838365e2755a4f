//! The kwok benchmark (`kerf-kwokbench`) in its smoke size, so the harness cannot rot:
//! Basic at 20 pods, then 14, on a real control plane against this build's `kerf`. It
//! checks that every stage ran and every figure was read, not how fast anything was.

use std::time::Duration;

use kerf_kwokbench::{Scenario, Settings, run};

#[test]
fn the_kwok_benchmark_runs_end_to_end_in_its_smoke_size() {
    let _serial = super::env::serial();
    let mut settings = Settings::new(env!("CARGO_BIN_EXE_kerf").into());
    settings.quiet = Duration::from_secs(5);
    let scenario = Scenario::basic(20);
    let report = run(&scenario, &settings).expect("the smoke scenario runs");
    eprintln!("{}", report.render());
    assert!(report.before.nodes > 0, "kerf launched nodes");
    assert!(report.after.nodes > 0 && report.after.nodes <= report.before.nodes);
    assert!(report.consolidation.is_some(), "consolidation settled");
    assert!(report.before.cpu > 0.0 && report.before.memory > 0.0);
    assert!(report.peak_rss > 0 && report.cpu_seconds > 0.0);
    assert!(
        report.requests_total > 0.0,
        "the API server's FlowSchema metric counted kerf's requests"
    );
}
