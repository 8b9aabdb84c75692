//! The f32 kernel's error against the f64 reference, per backend, must stay within twice PyTorch's own
//! f32 error on the same kind of problem.
//!
//! PyTorch's f32 `ctc_loss` (CPU), measured against its f64 result on random logits with `T <= 60`:
//! loss relative error about 1e-7 to 2e-7, gradient (w.r.t. logits) max absolute error about 2e-5 to
//! 3e-5. The bounds below are twice the top of those ranges. Speed may not be bought with accuracy:
//! every backend, the fast ones included, is held to them.

mod common;

use common::{Problem, Rng};
use fastctc::loss::reference;
use fastctc::{Backend, CtcOptions, GradOutput, InputKind, Parallelism, Reduction};

/// Twice PyTorch's worst f32 loss error relative to `max(1, |loss|)`.
const LOSS_REL_BOUND: f64 = 2.0 * 2e-7;
/// Twice PyTorch's worst f32 gradient error (absolute; gradients are differences of probabilities).
const GRAD_ABS_BOUND: f64 = 2.0 * 3e-5;

const BACKENDS: [Backend; 4] = [Backend::Scalar, Backend::Vector, Backend::Avx2, Backend::Auto];

/// Worst (loss relative, gradient absolute) error of the f32 kernel over random batches.
fn worst_errors(backend: Backend) -> (f64, f64, u64) {
    let (mut worst_loss, mut worst_grad, mut worst_seed) = (0.0f64, 0.0f64, 0);
    // Seeds from 300 on: batches of equal lengths, which the vector backends run interleaved.
    for seed in 0..400u64 {
        let mut rng = Rng::new(40_000 + seed);
        let v = 2 + rng.below(40);
        let scale = [0.5, 1.0, 2.0, 4.0][rng.below(4)];
        let t = 1 + rng.below(60);
        let mut p = if seed < 300 {
            Problem::random(&mut rng, 3, t, 25, v, scale)
        } else {
            let shapes = 1 + rng.below(2);
            Problem::grouped(&mut rng, shapes, t, 25, v, scale)
        };
        // The reference sees exactly the f32 inputs the kernel sees: only the kernel's error is measured.
        p.acts.iter_mut().for_each(|x| *x = *x as f32 as f64);
        let o = CtcOptions {
            blank: p.blank,
            input: InputKind::Logits,
            reduction: Reduction::Sum,
            zero_infinity: false,
            output: GradOutput::Gradient,
            parallelism: Parallelism::Sequential,
            backend,
        };
        let (losses, _, grad) = p.run::<f32>(&o).unwrap();
        let bsz = p.batch();
        for b in 0..bsz {
            let lp = p.ref_log_probs(b, InputKind::Logits);
            let lat = reference::forward_backward(&lp, &p.targets[b], p.blank);
            let want = -lat.log_likelihood;
            if !want.is_finite() {
                assert_eq!(losses[b], f64::INFINITY, "{backend:?} seed {seed} seq {b}");
                continue;
            }
            let e = (losses[b] - want).abs() / want.abs().max(1.0);
            if e > worst_loss {
                (worst_loss, worst_seed) = (e, seed);
            }
            for (t, (row, post)) in lp.iter().zip(&lat.posterior).enumerate() {
                for (k, (&x, &g)) in row.iter().zip(post).enumerate() {
                    let got = grad[(t * bsz + b) * p.classes + k];
                    worst_grad = worst_grad.max((got - (x.exp() - g)).abs());
                }
            }
        }
    }
    (worst_loss, worst_grad, worst_seed)
}

#[test]
fn f32_error_within_twice_pytorch() {
    for backend in BACKENDS {
        let (loss, grad, seed) = worst_errors(backend);
        println!("{backend:?}: worst f32 loss relative error {loss:.2e} (seed {seed}), gradient max abs {grad:.2e}");
        assert!(
            loss <= LOSS_REL_BOUND,
            "{backend:?}: loss error {loss:e} > {LOSS_REL_BOUND:e} (seed {seed})"
        );
        assert!(grad <= GRAD_ABS_BOUND, "{backend:?}: gradient error {grad:e} > {GRAD_ABS_BOUND:e}");
    }
}
