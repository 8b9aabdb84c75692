//! Times loss + logits gradient (f32) on the standard shapes and prints ms and lattice cells per second,
//! per backend and thread count.
//! `cargo run --release --example bench [-- ROUNDS [SHAPE|all [scalar|vector|avx2|auto [THREADS]]]]`.

use fastctc::loss::shapes::standard_shapes;
use fastctc::{ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, Reduction, Targets, Workspace};
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let only: Option<String> = std::env::args().nth(2);
    let backends: Vec<Backend> = match std::env::args().nth(3).as_deref() {
        Some("scalar") => vec![Backend::Scalar],
        Some("vector") => vec![Backend::Vector],
        Some("avx2") => vec![Backend::Avx2],
        Some("auto") => vec![Backend::Auto],
        _ => vec![Backend::Scalar, Backend::Vector, Backend::Avx2],
    };
    let thread_counts: Vec<usize> = match std::env::args().nth(4) {
        Some(n) => vec![n.parse().expect("thread count")],
        None => vec![1, 2],
    };
    println!(
        "{:<11} {:>8} {:>7} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "shape", "backend", "threads", "median ms", "cpu ms", "Mcells/s", "ws KiB", "alpha KiB"
    );
    for shape in
        standard_shapes().into_iter().filter(|s| only.as_deref().is_none_or(|o| o == "all" || o == s.name))
    {
        let (logits, labels) = shape.generate(1);
        let (t, b, v) = (shape.max_time(), shape.batch(), shape.classes);
        let il: Vec<u32> = shape.input_lengths.iter().map(|&x| x as u32).collect();
        let tl: Vec<u32> = shape.target_lengths.iter().map(|&x| x as u32).collect();
        let acts = ActsView::time_major(&logits, t, b, v).unwrap();
        let mut grad = vec![0.0f32; logits.len()];
        for &backend in &backends {
            for &threads in &thread_counts {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let opts = CtcOptions { reduction: Reduction::Sum, backend, ..Default::default() };
                let mut ws = Workspace::new();
                let mut losses = vec![0.0f32; b];
                let mut times = Vec::new();
                let cpu0 = process_cpu_seconds();
                for _ in 0..rounds.max(1) {
                    let mut g = ActsViewMut::time_major(&mut grad, t, b, v).unwrap();
                    let start = Instant::now();
                    pool.install(|| {
                        ctc_compute(
                            &acts,
                            &Targets::Concatenated { labels: &labels, lengths: &tl },
                            &il,
                            &mut losses,
                            Some(&mut g),
                            &opts,
                            &mut ws,
                        )
                        .unwrap()
                    });
                    times.push(start.elapsed().as_secs_f64());
                }
                // CPU seconds per round over all threads: on a busy machine, a steadier measure of the
                // work than wall time (which counts the time other processes held the cores).
                let cpu_ms = (process_cpu_seconds() - cpu0) / rounds.max(1) as f64 * 1e3;
                times.sort_by(f64::total_cmp);
                let med = times[times.len() / 2];
                // Peak workspace against the alpha storage it must stay close to (T_b * S_b per sequence).
                let ws_kib = (ws.capacity() * std::mem::size_of::<f32>()) as f64 / 1024.0;
                let alpha_kib = (shape.cells() * std::mem::size_of::<f32>()) as f64 / 1024.0;
                println!(
                    "{:<11} {:>8} {:>7} {:>10.3} {:>10.3} {:>12.1} {:>12.1} {:>12.1}",
                    shape.name,
                    format!("{backend:?}"),
                    threads,
                    med * 1e3,
                    cpu_ms,
                    shape.cells() as f64 / med / 1e6,
                    ws_kib,
                    alpha_kib
                );
            }
        }
    }
}

/// User + system CPU time of this process so far, in seconds (Linux `/proc/self/stat`, clock ticks of
/// 10 ms; averaged over many rounds). NaN where unavailable.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}
