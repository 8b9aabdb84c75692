//! The probability-space lattices, of groups (sequences of equal lengths interleaved in vector lanes)
//! and of sequences run alone (in `f64`): used where they are accurate, and redone in log space where
//! they cannot vouch for their accuracy, with the same results either way.

mod common;

use common::{close, Problem, Rng};
use fastctc::loss::reference;
use fastctc::{
    ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, GradOutput, GroupStats, Parallelism, Reduction,
    SingleStats, Targets, Workspace,
};

/// Losses, time-major output and group statistics of one call in `F`.
fn run<F: fastctc::Float>(p: &Problem, o: &CtcOptions) -> (Vec<f64>, Vec<f64>, GroupStats) {
    let (losses, grad, ws) = run_ws::<F>(p, o);
    (losses, grad, ws.group_stats())
}

/// Losses, time-major output and the workspace of one call in `F`.
fn run_ws<F: fastctc::Float>(p: &Problem, o: &CtcOptions) -> (Vec<f64>, Vec<f64>, Workspace<F>) {
    let acts: Vec<F> = p.acts.iter().map(|&x| F::from_f64(x)).collect();
    let (labels, lengths) = p.concat_labels();
    let il = p.lengths_u32();
    let mut grad = vec![F::from_f64(f64::NAN); acts.len()];
    let mut losses = vec![F::ZERO; p.batch()];
    let mut ws = Workspace::new();
    ctc_compute(
        &ActsView::time_major(&acts, p.max_time, p.batch(), p.classes).unwrap(),
        &Targets::Concatenated { labels: &labels, lengths: &lengths },
        &il,
        &mut losses,
        Some(&mut ActsViewMut::time_major(&mut grad, p.max_time, p.batch(), p.classes).unwrap()),
        o,
        &mut ws,
    )
    .unwrap();
    (losses.iter().map(|x| x.to_f64()).collect(), grad.iter().map(|x| x.to_f64()).collect(), ws)
}

/// Losses, time-major output, group and single statistics of one call, in `f64` or in `f32`.
fn run_in(p: &Problem, o: &CtcOptions, f64_input: bool) -> (Vec<f64>, Vec<f64>, GroupStats, SingleStats) {
    if f64_input {
        let (l, g, ws) = run_ws::<f64>(p, o);
        (l, g, ws.group_stats(), ws.single_stats())
    } else {
        let (l, g, ws) = run_ws::<f32>(p, o);
        (l, g, ws.group_stats(), ws.single_stats())
    }
}

/// One group of `n` sequences of `T` frames and `L` labels (so that the group fills the vector lanes:
/// 8 for `f32`, 4 for `f64`), logits of standard deviation `scale`.
fn group_problem(rng: &mut Rng, n: usize, t: usize, l: usize, v: usize, scale: f64) -> Problem {
    let blank = rng.below(v);
    let targets: Vec<Vec<usize>> = (0..n).map(|_| rng.labels(l, v, blank)).collect();
    let acts = (0..t * n * v).map(|_| rng.normal() * scale).collect();
    Problem { max_time: t, classes: v, blank, input_lengths: vec![t; n], targets, acts }
}

/// The f64 reference's losses and time-major logits gradient (mean reduction, as the options below).
fn reference_of(p: &Problem) -> (Vec<f64>, Vec<f64>) {
    let (bsz, v) = (p.batch(), p.classes);
    let mut losses = Vec::new();
    let mut grad = vec![0.0; p.acts.len()];
    for b in 0..bsz {
        let (loss, g) = reference::loss_and_logits_grad(&p.rows(b), &p.targets[b], p.blank);
        let scale = 1.0 / (bsz as f64 * p.targets[b].len().max(1) as f64);
        for (t, row) in g.iter().enumerate() {
            for (k, x) in row.iter().enumerate() {
                grad[(t * bsz + b) * v + k] = x * scale;
            }
        }
        losses.push(loss);
    }
    (losses, grad)
}

fn options(backend: Backend, blank: usize) -> CtcOptions {
    CtcOptions {
        blank,
        reduction: Reduction::Mean,
        output: GradOutput::Gradient,
        parallelism: Parallelism::Sequential,
        backend,
        ..CtcOptions::default()
    }
}

/// Random inputs from moderate (the probability-space lattice's domain) to peaked (where it gives up,
/// in its forward or its backward pass): every outcome occurs, and every result matches the f64
/// reference as the log-space lattice does (f64 to 1e-12; f32 within the bounds of
/// `kernel_accuracy.rs`).
#[test]
fn groups_match_the_reference_in_probability_space_and_after_giving_up() {
    let mut rng = Rng::new(61);
    let mut seen = [0usize; 3];
    for case in 0..36 {
        let scale = [0.5, 1.0, 3.0, 10.0, 40.0, 100.0][case % 6];
        let t = 2 + rng.below(if scale <= 1.0 { 150 } else { 300 });
        let l = 1 + rng.below((t / 3).max(1));
        // Every third case has rows longer than 64 classes, whose forward pass writes the output rows'
        // softmax itself (the backward pass then only subtracts the posteriors, or rewrites the rows
        // when it gives up).
        let v = if case % 3 == 2 { 65 + rng.below(100) } else { 3 + rng.below(30) };
        for (n, f64_lanes) in [(8, false), (4, true)] {
            let p = group_problem(&mut rng, n, t, l, v, scale);
            let (want, want_grad) = reference_of(&p);
            for backend in [Backend::Vector, Backend::Avx2] {
                let o = options(backend, p.blank);
                let (got, grad, stats) = if f64_lanes { run::<f64>(&p, &o) } else { run::<f32>(&p, &o) };
                let (loss_tol, grad_tol) = if f64_lanes { (1e-12, 1e-12) } else { (4e-7, 6e-5) };
                assert_eq!(stats.groups, 1, "case {case} {backend:?}: {stats:?}");
                seen[0] += stats.probability_space;
                seen[1] += stats.log_space_after_forward;
                seen[2] += stats.log_space_after_backward;
                if scale <= 1.0 {
                    assert_eq!(stats.probability_space, 1, "case {case} {backend:?} T {t} L {l}: {stats:?}");
                }
                for (b, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        close(g, w, loss_tol),
                        "case {case} {backend:?} {stats:?} seq {b}: loss {g} vs {w}"
                    );
                }
                for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
                    assert!(
                        (g - w).abs() <= grad_tol,
                        "case {case} {backend:?} {stats:?} element {i}: {g} vs {w}"
                    );
                }
            }
        }
    }
    assert!(
        seen.iter().all(|&k| k >= 4),
        "outcomes (probability space, log after forward, after backward): {seen:?}"
    );
}

/// An emission below `f32`'s normal range (`e^-100`) on the only path: the forward pass loses the
/// path to flushing and gives up; in log space the loss is exact (about 100 nats per such frame).
#[test]
fn a_path_lost_to_flushing_is_found_in_log_space() {
    // Two classes (blank 0, label 1), target [1], T = 2: every frame strongly prefers the blank, so
    // the only paths (blank then 1, 1 then blank, 1 then 1) each need an emission of about e^-100.
    let n = 8;
    let (t, v) = (2, 2);
    let mut acts = vec![0.0; t * n * v];
    for frame in acts.chunks_mut(v) {
        frame[0] = 0.0;
        frame[1] = -100.0;
    }
    let p = Problem {
        max_time: t,
        classes: v,
        blank: 0,
        input_lengths: vec![t; n],
        targets: vec![vec![1]; n],
        acts,
    };
    let (want, want_grad) = reference_of(&p);
    let (got, grad, stats) = run::<f32>(&p, &options(Backend::Avx2, 0));
    assert_eq!(stats, GroupStats { groups: 1, log_space_after_forward: 1, ..GroupStats::default() });
    for (&g, &w) in got.iter().zip(&want) {
        assert!(close(g, w, 4e-7) && g > 99.0, "loss {g} vs {w}");
    }
    for (&g, &w) in grad.iter().zip(&want_grad) {
        assert!((g - w).abs() <= 6e-5, "{g} vs {w}");
    }
}

/// A batch of `b` sequences of different input lengths up to `t_max` (so that none is grouped), each
/// with a path (`T >= 2L + 1`), logits of standard deviation `scale`.
fn ragged_problem(rng: &mut Rng, b: usize, t_max: usize, v: usize, scale: f64) -> Problem {
    let blank = rng.below(v);
    let mut input_lengths: Vec<usize> = Vec::new();
    while input_lengths.len() < b {
        let t = 1 + rng.below(t_max);
        if !input_lengths.contains(&t) {
            input_lengths.push(t);
        }
    }
    let max_time = *input_lengths.iter().max().unwrap();
    let mut targets = Vec::new();
    for &t in &input_lengths {
        let l = 1 + rng.below((t - 1) / 2 + 1);
        targets.push(rng.labels(l, v, blank));
    }
    let acts = (0..max_time * b * v).map(|_| rng.normal() * scale).collect();
    Problem { max_time, classes: v, blank, input_lengths, targets, acts }
}

/// Sequences run alone, from moderate to peaked inputs and up to 1500 frames: every result matches the
/// f64 reference within the bounds of the log-space lattice, and in `f64` the lattice's range holds:
/// random logits of standard deviation up to 10 never leave probability space, however long; peaked
/// ones may (then the sequence is redone in log space).
#[test]
fn sequences_run_alone_match_the_reference() {
    let mut rng = Rng::new(62);
    let mut ran = 0;
    for case in 0..30 {
        // Long lattices with moderate inputs; peaked ones up to 300 frames, where the reference's own
        // f64 rounding stays well under the bound (on 650 frames of logits of deviation 100, losses
        // of 7e4 nats, it drifted by 1.1e-12 from the log-space and probability-space results alike).
        let long = case % 5 == 0;
        let scale =
            if long { [0.5, 1.0, 3.0][case / 5 % 3] } else { [0.5, 1.0, 3.0, 10.0, 40.0, 100.0][case % 6] };
        let t_max = if long { 1500 } else { 2 + rng.below(300) };
        let v = 3 + rng.below(30);
        let b = 2 + rng.below(3);
        let p = ragged_problem(&mut rng, b, t_max, v, scale);
        let (want, want_grad) = reference_of(&p);
        for backend in [Backend::Vector, Backend::Avx2] {
            let o = options(backend, p.blank);
            for f64_input in [false, true] {
                let (got, grad, groups, singles) = run_in(&p, &o, f64_input);
                let (loss_tol, grad_tol) = if f64_input { (1e-12, 1e-12) } else { (4e-7, 6e-5) };
                assert_eq!(groups.groups, 0);
                assert_eq!(singles.sequences, p.batch(), "case {case}: {singles:?}");
                if scale <= 10.0 {
                    assert_eq!(singles.probability_space, p.batch(), "case {case} {backend:?}: {singles:?}");
                }
                ran += singles.probability_space;
                for (b, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        close(g, w, loss_tol),
                        "case {case} {backend:?} {singles:?} seq {b}: loss {g} vs {w}"
                    );
                }
                for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
                    assert!(
                        (g - w).abs() <= grad_tol,
                        "case {case} {backend:?} {singles:?} element {i}: {g} vs {w}"
                    );
                }
            }
        }
    }
    assert!(ran > 0);
}

/// As [`a_path_lost_to_flushing_is_found_in_log_space`] for sequences run alone, below `f64`'s range:
/// an emission of `e^-800` on every path. The forward pass gives up and the log-space lattice finds
/// the loss (about 800 nats).
#[test]
fn a_path_lost_below_f64s_range_is_found_in_log_space() {
    let v = 2;
    let input_lengths = vec![2, 3];
    let mut acts = vec![0.0; 3 * 2 * v];
    for frame in acts.chunks_mut(v) {
        frame[1] = -800.0;
    }
    let p = Problem { max_time: 3, classes: v, blank: 0, input_lengths, targets: vec![vec![1]; 2], acts };
    let (want, want_grad) = reference_of(&p);
    for backend in [Backend::Vector, Backend::Avx2] {
        let (got, grad, ws) = run_ws::<f32>(&p, &options(backend, 0));
        let expect = SingleStats { sequences: 2, log_space_after_forward: 2, ..SingleStats::default() };
        assert_eq!(ws.single_stats(), expect);
        for (&g, &w) in got.iter().zip(&want) {
            assert!(close(g, w, 4e-7) && g > 798.0, "loss {g} vs {w}");
        }
        for (&g, &w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() <= 6e-5, "{g} vs {w}");
        }
    }
}

/// Sequences run alone read each frame's emissions back from the softmax their forward pass wrote
/// into the output rows, except in frames where a value read is not a normal `F` (a hard zero, or an
/// emission of `e^-95`, below `f32`'s normal range): those frames take their emissions from the
/// activations, in `f64` where they need it. Both kinds of frames, mixed in one lattice and decided
/// separately by the forward and backward passes, give the reference's results, and the lattice stays
/// in probability space.
#[test]
fn emissions_from_the_output_rows_and_from_the_activations_mix() {
    let mut rng = Rng::new(77);
    for case in 0..6 {
        let mut p = ragged_problem(&mut rng, 3, 120, 300, 1.0);
        let (bsz, v) = (p.batch(), p.classes);
        for b in 0..bsz {
            let targets = p.targets[b].clone();
            // A class no path emits: where it takes all the mass, every path's emission is e^-95.
            let sink = (0..v).find(|c| *c != p.blank && !targets.contains(c)).unwrap();
            for t in (case % 3..p.input_lengths[b]).step_by(4) {
                let row = &mut p.acts[(t * bsz + b) * v..][..v];
                if t % 8 == case % 3 {
                    // A hard zero on one label.
                    row[targets[(t / 4) % targets.len()]] = f64::NEG_INFINITY;
                } else {
                    row.iter_mut().for_each(|x| *x = -95.0);
                    row[sink] = 0.0;
                }
            }
        }
        let (want, want_grad) = reference_of(&p);
        for backend in [Backend::Vector, Backend::Avx2] {
            let o = options(backend, p.blank);
            for f64_input in [false, true] {
                let (got, grad, _, singles) = run_in(&p, &o, f64_input);
                assert_eq!(singles.probability_space, p.batch(), "case {case} {backend:?}: {singles:?}");
                let (loss_tol, grad_tol) = if f64_input { (1e-12, 1e-12) } else { (4e-7, 6e-5) };
                for (b, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        close(g, w, loss_tol),
                        "case {case} {backend:?} f64 {f64_input} seq {b}: {g} vs {w}"
                    );
                }
                for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
                    assert!((g - w).abs() <= grad_tol, "case {case} {backend:?} element {i}: {g} vs {w}");
                }
            }
        }
    }
}
