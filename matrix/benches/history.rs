//! `cargo bench -p ktstr-matrix --bench history`: what the change-point test of `ktstr report R1
//! ... Rn` costs. Synthetic series (no VM, no store): 2,000 series (cell x metric) of 10 runs x 3
//! repeats, each tested with the permutation count the report uses, on one thread; the history
//! itself spreads series over cores with rayon.

use ktstr_matrix::changepoint::{PERMUTATIONS, best_split};
use std::time::Instant;

const SERIES: usize = 2000;
const RUNS: usize = 10;
const REPEATS: usize = 3;

fn main() {
    // Deterministic values with ties and no step: the usual case of a history.
    let series: Vec<Vec<Vec<f64>>> = (0..SERIES)
        .map(|s| {
            (0..RUNS)
                .map(|r| {
                    (0..REPEATS)
                        .map(|k| 100.0 + ((s * 31 + r * 7 + k * 13) % 17) as f64)
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut times = Vec::new();
    let mut changes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        changes = series
            .iter()
            .filter_map(|x| best_split(x, PERMUTATIONS))
            .filter(|s| s.is_change(0.05, 0.05))
            .count();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{SERIES} series x {RUNS} runs x {REPEATS} repeats, {PERMUTATIONS} permutations: median of 3 = {:.3} s on one thread ({changes} change points)",
        times[1]
    );
}
