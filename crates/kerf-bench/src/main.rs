use std::time::Instant;
fn main() {
    for n in std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap())
    {
        let input = kerf_bench::shape::input(n, false);
        let t = Instant::now();
        let plan = kerf_scheduling::solve(&input, &kerf_scheduling::Config::default());
        let s = t.elapsed().as_secs_f64();
        println!(
            "{n} pods: {} claims, {} unsched, {s:.3}s, {:.0} pods/s",
            plan.new_claims.len(),
            plan.unschedulable.len(),
            n as f64 / s
        );
    }
}
