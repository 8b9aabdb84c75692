//! fastctc: CTC (Connectionist Temporal Classification) loss on the CPU, and a small speech stack
//! built on it.
//!
//! # The kernel
//!
//! [`ctc_loss`], [`ctc_loss_and_grad`] and [`ctc_compute`] take a batch of activations (logits or
//! log-probabilities) as a strided `(T, B, V)` view ([`ActsView`], element `(t, b, v)` at
//! `data[t*stride_t + b*stride_b + v*stride_v]`), per-sequence input lengths, and targets
//! ([`Targets`], concatenated or padded). They return per-sequence losses and the reduction, and can
//! write the gradient (or the posterior) through a writable view of the same shape. `f32` and `f64` go
//! through one generic implementation; `rayon` spreads sequences over threads, longest first.
//!
//! ```
//! use fastctc::{ctc_loss_and_grad, ActsView, ActsViewMut, CtcOptions, Targets};
//! # fn main() -> Result<(), fastctc::CtcError> {
//! let (t, b, v) = (4, 2, 3); // frames, sequences, classes (blank = 0)
//! let logits = vec![0.5f32; t * b * v]; // time-major (T, B, V)
//! let mut grad = vec![0.0f32; t * b * v];
//! let acts = ActsView::time_major(&logits, t, b, v)?;
//! let mut g = ActsViewMut::time_major(&mut grad, t, b, v)?;
//! let labels = [1u32, 2, 1]; // sequence 0 is [1, 2], sequence 1 is [1]
//! let targets = Targets::Concatenated { labels: &labels, lengths: &[2, 1] };
//! let out = ctc_loss_and_grad(&acts, &targets, &[4u32, 3], &mut g, &CtcOptions::default())?;
//! assert_eq!(out.losses.len(), 2);
//! assert!(out.reduced.is_finite());
//! # Ok(())
//! # }
//! ```
//!
//! With `default-features = false` the crate is the kernel alone (`buffer`, `error`, `float`, `loss`,
//! `simd`), depending only on `wide` and `bytemuck`; the `rayon` feature adds threads.
//!
//! # Numerics
//!
//! **Log space, rescaled.** The lattice runs in log space (DESIGN §3): products of thousands of
//! probabilities underflow any float, their logs do not. Log space alone is not enough in `f32`,
//! though: `alpha_t` grows like `-t * (mean emission)`, and at `t = 10^4` an `f32` value near `-2*10^4`
//! has an ulp of `2*10^-3`, which every posterior inherits. Each alpha and beta row is therefore stored
//! relative to the previous row's maximum, with the offsets accumulated in `f64`; stored values stay
//! within a few units of zero and round like `O(1)` numbers. The posteriors of a frame are finally
//! normalised by their own sum (exactly 1 in exact arithmetic), which removes the drift between the
//! forward and backward passes. Measured on `T = 10^4`, `L = 500`, `V = 8` (test
//! `kernel_edge_cases::ten_thousand_frames`): largest `f32` gradient error `3.8e-4` against `f64`,
//! down from `0.1` for plain log space.
//!
//! **Probability space where it is safe.** Groups of equal lengths with a gradient first run the
//! same recurrences on probabilities, each row rescaled by a power of two (exact), so that a state is
//! a sum of products instead of a log-sum-exp. The only loss of accuracy that form can have is below
//! the normal range, where values flush towards zero with an absolute error; the backward pass bounds
//! what those errors can have changed (each frame: the exposed mass over the posterior total) and
//! redoes the group in log space when the bound exceeds `EPSILON / 1024` (`loss::group`).
//!
//! **`-inf` is selected, never multiplied.** A state that cannot be reached has log-mass `-inf`. Masking
//! it by multiplying with 0 gives `-inf * 0 = NaN`, and `-inf - (-inf)` is NaN too. The log-sum-exp
//! functions return the exact `-inf` when their maximum is `-inf` (a select), and the skip transition
//! is added as `0` or `-inf` (an addition with `-inf` is exact since no operand is ever `+inf`).
//! Infeasible sequences give `+inf` loss and zero gradients (or 0 and 0 with `zero_infinity`), never
//! NaN.
//!
//! **Vector `exp`/`ln`.** The vector kernels use our own `exp` and `ln` ([`simd`]): worst error against
//! the standard library over the whole range 1.0 ulp (`exp`, f32 and f64), 1.96 ulp (`ln`, f32) and
//! 1.76 ulp (`ln`, f64), with `-inf`, `+inf`, NaN, zero and subnormals handled explicitly (test
//! `simd::math::tests::exp_and_ln_error_table`). The AVX2 lanes (`core::arch` intrinsics, the default
//! on CPUs with AVX2 and FMA) run the same algorithms with fused multiply-adds: 1.00 ulp (`exp`), 1.96
//! (`ln`), 1.59 (f64); the reduced forms inside log-sum-exp, `exp` on `x <= 0` and `ln` on `[1, 3]`,
//! 1.00 and 2.00 ulp (`simd::avx2::tests`).
//!
//! **Errors.** Every argument is validated before any output is written; NaN or `+inf` anywhere the
//! kernel reads, or a logits frame that is all `-inf`, is a [`CtcError::NonFinite`] naming the sequence,
//! frame and class (see [`loss`] for the full list of definitions).
//!
//! # Classic implementation bugs, and the tests that catch them
//!
//! Each bug was planted by hand in the kernel, the suite run, and the plant reverted. The first column
//! of tests is what was observed to fail; the kernel-vs-reference tests (`kernel_reference::*`) compare
//! against an independent oracle and fail on any deviation too.
//!
//! | bug | observed failing |
//! |---|---|
//! | skip rule wrong (skipping between equal labels) | `fuzz_regressions::replay_valid_seed_batches_against_the_reference`, `properties::scalar_f32_within_tolerance_of_f64` |
//! | end state: last label only (missing final blank) | the seeds replay, `gradcheck::gradients_match_central_differences` |
//! | `2L - 1` expansion: no leading blank start state | the seeds replay, `properties::scalar_f32_within_tolerance_of_f64` |
//! | gradient sign flipped | the seeds replay, `gradcheck::gradients_match_central_differences` |
//! | off-by-one in input lengths (`T_b - 1` frames) | the seeds replay, `kernel_errors::nan_and_infinity_in_logits_and_log_probs`, the row-sum properties |
//! | `-inf * 0` masking of the skip term | the seeds replay, `gradcheck`, the row-sum properties (NaN) |
//! | PyTorch's log-probs gradient (`exp(lp) - gamma`) returned as the true one (`-gamma`) | the seeds replay, `gradcheck::log_probs_gradient_is_the_partial_derivative_off_the_simplex` |
//! | mean reduction without `1 / max(L, 1)` in the gradient | `gradcheck::gradients_match_central_differences` |
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "audio")]
pub mod audio;
pub mod buffer;
pub mod error;
#[cfg(feature = "ffi")]
pub mod ffi;
pub mod float;
pub mod loss;
#[cfg(feature = "nn")]
pub mod nn;
#[cfg(feature = "nn")]
pub mod optim;
pub mod simd;
#[cfg(feature = "audio")]
pub mod train;

pub use buffer::{ActsView, ActsViewMut, Index, Layout, Targets};
pub use error::CtcError;
pub use float::Float;
pub use loss::{
    ctc_compute, ctc_loss, ctc_loss_and_grad, Backend, CtcLoss, CtcOptions, GradOutput, GroupStats,
    InputKind, Parallelism, Reduction, SingleStats, Workspace,
};

#[cfg(feature = "decode")]
pub mod align;
#[cfg(feature = "decode")]
pub mod decode;
#[cfg(feature = "decode")]
pub mod metrics;
