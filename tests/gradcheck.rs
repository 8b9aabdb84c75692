//! The kernel's gradient against central finite differences of its own reduced loss, in f64, for every
//! activation of random small batches (ragged lengths, repeated labels, random blank).
//!
//! This checks the gradient's definition, not just agreement with the reference: for logits the output
//! must be `d loss / d x = softmax - gamma`; for log-probabilities it must be the true partial derivative
//! `-gamma`, obtained by perturbing one log-probability alone (no renormalisation of its frame).

mod common;

use common::{Problem, Rng};
use fastctc::{ctc_loss, ActsView, CtcOptions, GradOutput, InputKind, Parallelism, Reduction, Targets};

/// Finite-difference step. The central difference `(f(x+h) - f(x-h)) / 2h` errs by
/// `h^2 / 6 * |f'''|` (truncation) plus `2 * delta / (2h)` (rounding, with `delta` the absolute
/// rounding error of one evaluation of `f`). `h = 1e-4` balances the two for `delta` near 1e-13.
const H: f64 = 1e-4;

/// Bound on `|f'''|` along one activation. Seen as a function of one activation `x_tk`, a sequence's
/// loss is a difference of two log-partition functions (the constrained one over alignments, and for
/// logits the frame's softmax normaliser); their third derivatives are third cumulants of the 0/1
/// indicator "frame t emits k", which for a Bernoulli(p) is `p(1-p)(1-2p)`, at most `1/(6 sqrt 3)` ≈
/// 0.0962. Two of them, and reduction scales of at most 1: 0.2.
const THIRD_DERIVATIVE_BOUND: f64 = 0.2;

/// Relative rounding error of one loss evaluation: a few ulps per lattice step and per frame, for the
/// tiny lattices used here (at most ~100 steps); 64 ulps is generous and still far below the truncation
/// term's scale.
const EVAL_REL_ERROR: f64 = 64.0 * f64::EPSILON;

/// The tolerance for one gradient entry when the reduced loss is `f`.
fn fd_tolerance(f: f64) -> f64 {
    let truncation = H * H / 6.0 * THIRD_DERIVATIVE_BOUND;
    let rounding = EVAL_REL_ERROR * f.abs().max(1.0) / H;
    truncation + rounding
}

fn opts(kind: InputKind, reduction: Reduction, blank: usize) -> CtcOptions {
    CtcOptions {
        blank,
        input: kind,
        reduction,
        // Infeasible sequences have an infinite loss, where a difference quotient means nothing; with
        // zero_infinity their loss is the constant 0, whose derivative (0) the kernel must also report.
        zero_infinity: true,
        output: GradOutput::Gradient,
        parallelism: Parallelism::Sequential,
        ..Default::default()
    }
}

fn reduced_loss(p: &Problem, acts: &[f64], o: &CtcOptions) -> f64 {
    let (labels, lengths) = p.concat_labels();
    let il = p.lengths_u32();
    let view = ActsView::time_major(acts, p.max_time, p.batch(), p.classes).unwrap();
    ctc_loss(&view, &Targets::Concatenated { labels: &labels, lengths: &lengths }, &il, o).unwrap().reduced
}

/// Checks every entry of the gradient of `p` and returns the largest error seen relative to its
/// tolerance.
fn check(p: &Problem, kind: InputKind, reduction: Reduction, seed: u64) -> f64 {
    let o = opts(kind, reduction, p.blank);
    let (_, f0, grad) = p.run::<f64>(&o).unwrap();
    let tol = fd_tolerance(f0);
    let mut acts = p.acts.clone();
    let mut worst = 0.0f64;
    for i in 0..acts.len() {
        let x = acts[i];
        acts[i] = x + H;
        let up = reduced_loss(p, &acts, &o);
        acts[i] = x - H;
        let down = reduced_loss(p, &acts, &o);
        acts[i] = x;
        let fd = (up - down) / (2.0 * H);
        let err = (fd - grad[i]).abs();
        let (t, rest) = (i / (p.batch() * p.classes), i % (p.batch() * p.classes));
        assert!(
            err <= tol,
            "seed {seed} {kind:?} {reduction:?}: frame {t} seq {} class {}: kernel {} vs finite difference \
             {fd} (error {err:e}, tolerance {tol:e})",
            rest / p.classes,
            rest % p.classes,
            grad[i]
        );
        worst = worst.max(err / tol);
    }
    worst
}

#[test]
fn gradients_match_central_differences() {
    let mut worst = 0.0f64;
    let mut checked = 0;
    for seed in 0..200u64 {
        let mut rng = Rng::new(31_000 + seed);
        let v = 2 + rng.below(5);
        let (b, t) = (1 + rng.below(3), 1 + rng.below(7));
        let scale = [0.5, 1.0, 3.0][rng.below(3)];
        let mut p = Problem::random(&mut rng, b, t, 4, v, scale);
        for reduction in [Reduction::Sum, Reduction::Mean] {
            worst = worst.max(check(&p, InputKind::Logits, reduction, seed));
        }
        // Log-probs: start from a normalised point, but each perturbation moves one value alone.
        p.normalise();
        for reduction in [Reduction::Sum, Reduction::Mean] {
            worst = worst.max(check(&p, InputKind::LogProbs, reduction, seed));
        }
        checked += 4;
    }
    assert_eq!(checked, 800);
    eprintln!("worst finite-difference error: {worst:.3} of its tolerance");
}

/// Unnormalised log-probabilities (frames whose exponentials do not sum to 1) are a valid input, and
/// the gradient is still the partial derivative of the loss as a function of them.
#[test]
fn log_probs_gradient_is_the_partial_derivative_off_the_simplex() {
    for seed in 0..10u64 {
        let mut rng = Rng::new(32_000 + seed);
        let mut p = Problem::random(&mut rng, 2, 5, 3, 4, 1.0);
        p.normalise();
        for x in p.acts.iter_mut() {
            *x += rng.uniform(-0.7, 0.7);
        }
        check(&p, InputKind::LogProbs, Reduction::Sum, seed);
    }
}
