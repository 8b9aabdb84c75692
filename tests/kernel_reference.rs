//! The kernel against the f64 reference and brute force, on thousands of random small problems.

// Index loops over (t, b, k) mirror the address formula and read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

mod common;

use common::{close, repeats, Problem, Rng};
use fastctc::loss::reference;
use fastctc::{Backend, CtcOptions, GradOutput, InputKind, Parallelism, Reduction};

/// f64 kernel and f64 reference compute the same sums in different orders; 1e-12 relative is the
/// issue's bar and leaves ~4 orders of magnitude above the rounding of lattices this size.
const F64_REL: f64 = 1e-12;

fn opts(kind: InputKind, blank: usize) -> CtcOptions {
    CtcOptions {
        blank,
        input: kind,
        reduction: Reduction::None,
        zero_infinity: false,
        output: GradOutput::Gradient,
        parallelism: Parallelism::Sequential,
        backend: Backend::Auto,
    }
}

/// Every implementation of the inner loops; each test runs on all of them.
const BACKENDS: [Backend; 3] = [Backend::Scalar, Backend::Vector, Backend::Avx2];

/// Expected output row for frame t of sequence b under each input kind.
fn expected_grad(p: &Problem, b: usize, kind: InputKind) -> (f64, Vec<Vec<f64>>) {
    let lp = p.ref_log_probs(b, kind);
    let lat = reference::forward_backward(&lp, &p.targets[b], p.blank);
    let feasible = lat.log_likelihood > f64::NEG_INFINITY;
    let rows = lp
        .iter()
        .zip(&lat.posterior)
        .map(|(row, g)| {
            row.iter()
                .zip(g)
                .map(|(&x, &gk)| {
                    if !feasible {
                        0.0
                    } else {
                        match kind {
                            InputKind::Logits => x.exp() - gk,
                            InputKind::LogProbs => -gk,
                        }
                    }
                })
                .collect()
        })
        .collect();
    (-lat.log_likelihood, rows)
}

fn check_against_reference(p: &Problem, kind: InputKind, seed: u64) {
    for backend in BACKENDS {
        let mut o = opts(kind, p.blank);
        o.backend = backend;
        check_backend(p, &o, seed);
    }
}

fn check_backend(p: &Problem, o: &CtcOptions, seed: u64) {
    let kind = o.input;
    let (losses, _, grad) = p.run::<f64>(o).unwrap();
    let bsz = p.batch();
    for b in 0..bsz {
        let (want, rows) = expected_grad(p, b, kind);
        assert!(
            close(losses[b], want, F64_REL),
            "seed {seed} seq {b}: loss {} vs reference {want}",
            losses[b]
        );
        for t in 0..p.max_time {
            for k in 0..p.classes {
                let got = grad[(t * bsz + b) * p.classes + k];
                let want = if t < p.input_lengths[b] { rows[t][k] } else { 0.0 };
                assert!(
                    (got - want).abs() <= F64_REL * 10.0,
                    "{:?} seed {seed} seq {b} t {t} k {k}: grad {got} vs reference {want}",
                    o.backend
                );
            }
        }
    }
}

#[test]
fn kernel_matches_reference_on_random_batches() {
    for seed in 0..2000u64 {
        let mut rng = Rng::new(seed);
        let v = 2 + rng.below(6);
        let scale = [0.1, 1.0, 5.0][rng.below(3)];
        let (b, t) = (1 + rng.below(4), rng.below(12));
        let mut p = Problem::random(&mut rng, b, t, 6, v, scale);
        check_against_reference(&p, InputKind::Logits, seed);
        p.normalise();
        check_against_reference(&p, InputKind::LogProbs, seed);
    }
}

/// Batches whose sequences share lengths, so that the vector backends run them in groups, one
/// sequence per lane: every member must get what it gets alone, whatever its neighbours (infeasible,
/// peaked, with repeats), threads or not.
#[test]
fn kernel_matches_reference_on_batches_of_equal_lengths() {
    for seed in 0..150u64 {
        let mut rng = Rng::new(7_000_000 + seed);
        let v = 2 + rng.below(8);
        let scale = [0.1, 1.0, 5.0, 20.0][rng.below(4)];
        let max_label = 1 + rng.below(12);
        let max_time = 1 + rng.below(2 * max_label + 10);
        let shapes = 1 + rng.below(3);
        let mut p = Problem::grouped(&mut rng, shapes, max_time, max_label, v, scale);
        let parallelism = if seed % 2 == 0 { Parallelism::Sequential } else { Parallelism::Rayon };
        for backend in BACKENDS {
            let o = CtcOptions { backend, parallelism, ..opts(InputKind::Logits, p.blank) };
            check_backend(&p, &o, seed);
        }
        p.normalise();
        for backend in BACKENDS {
            let o = CtcOptions { backend, parallelism, ..opts(InputKind::LogProbs, p.blank) };
            check_backend(&p, &o, seed);
        }
    }
}

#[test]
fn reference_and_kernel_match_brute_force_on_tiny_cases() {
    let mut checked = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng::new(1_000_000 + seed);
        let v = 2 + rng.below(3);
        let t = 1 + rng.below(6);
        let mut p = Problem::random(&mut rng, 1, t, 4, v, 2.0);
        p.normalise();
        let lp = p.ref_log_probs(0, InputKind::LogProbs);
        let brute = reference::brute_force_log_likelihood(&lp, &p.targets[0], p.blank).unwrap();
        let lat = reference::forward_backward(&lp, &p.targets[0], p.blank);
        assert!(
            close(lat.log_likelihood, brute, 1e-12),
            "seed {seed}: reference {} vs brute {brute}",
            lat.log_likelihood
        );
        for backend in BACKENDS {
            let o = CtcOptions { backend, ..opts(InputKind::LogProbs, p.blank) };
            let (losses, _, _) = p.run::<f64>(&o).unwrap();
            assert!(
                close(-losses[0], brute, 1e-12),
                "{backend:?} seed {seed}: kernel {} vs brute {brute}",
                -losses[0]
            );
        }
        let feasible = p.input_lengths[0] >= p.targets[0].len() + repeats(&p.targets[0]);
        assert_eq!(brute.is_finite(), feasible, "seed {seed}");
        checked += 1;
    }
    assert_eq!(checked, 3000);
}

#[test]
fn posterior_rows_sum_to_one_and_invariant_holds() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(7_000 + seed);
        let v = 2 + rng.below(8);
        let t = 1 + rng.below(30);
        let p = Problem::random(&mut rng, 3, t, 10, v, 3.0);
        let mut o = opts(InputKind::Logits, p.blank);
        o.output = GradOutput::Posterior;
        let (losses, _, post) = p.run::<f64>(&o).unwrap();
        for b in 0..p.batch() {
            for t in 0..p.input_lengths[b] {
                let s: f64 = (0..v).map(|k| post[(t * p.batch() + b) * v + k]).sum();
                let want = if losses[b].is_finite() { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-12, "seed {seed} seq {b} t {t}: posterior sums to {s}");
            }
            // The reference's alpha + beta, reduced over states, gives log p at every frame.
            let lp = p.ref_log_probs(b, InputKind::Logits);
            let lat = reference::forward_backward(&lp, &p.targets[b], p.blank);
            if lat.log_likelihood.is_finite() {
                for t in 0..lp.len() {
                    let sum: Vec<f64> = lat.alpha[t].iter().zip(&lat.beta[t]).map(|(a, b)| a + b).collect();
                    assert!(
                        close(reference::logsumexp(&sum), lat.log_likelihood, 1e-12),
                        "seed {seed} t {t}"
                    );
                }
            }
        }
    }
}
