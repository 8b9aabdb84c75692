//! The lattice's inner loops, behind one trait with a scalar implementation and SIMD ones.
//!
//! Every implementation computes the same functions; the scalar one is the readable statement of what
//! they are, and the tests run every implementation through the same properties.

mod lanes;
mod math;
mod scalar;
mod vector;

pub use lanes::{ArrayF32x8, ArrayF64x4};
pub use vector::{Lanes, Vector};

pub use math::{
    exp_f32_lane, exp_f32x8, exp_f64_lane, exp_f64x4, ln_f32_lane, ln_f32x8, ln_f64_lane, ln_f64x4,
};

pub use scalar::Scalar;

use crate::Float;

/// The row operations the lattice is built from. Slices are per sequence and contiguous.
///
/// A row of states is `[blank_0..=blank_L | label_0..label_{L-1}]`, `2L + 1` values (see
/// [`crate::loss`] for the recurrences).
pub trait Kernels<F: Float>: Sync {
    /// `ln(e^a + e^b)`, exact `-inf` when both are `-inf`.
    fn lse2(&self, a: F, b: F) -> F;

    /// `(ln sum_k e^{x_k}, bad)` over one frame of logits, where `bad` is true if the frame holds NaN
    /// or `+inf`, or is all `-inf`; the first value is then meaningless.
    fn log_sum_exp_checked(&self, row: &[F]) -> (F, bool);

    /// Whether a frame of log-probabilities holds no NaN and no `+inf` (`-inf` is a valid hard zero).
    fn all_valid_log_probs(&self, row: &[F]) -> bool;

    /// One alpha step: `cur` from `prev` (both `2L + 1`), the blank's emission `eb`, the labels'
    /// emissions `emit[..L]` and the skip terms `skip[..L]` (0 or `-inf`; `skip[0]` must be `-inf`). Returns the largest value
    /// written to `cur` (`-inf` if all are), which the caller uses to rescale the next step.
    ///
    /// Only states with index (`i` of a blank, `j` of a label) in `band = (lo, hi)`, `lo..hi`, are
    /// computed; the others are written `-inf`. The caller passes the reachable band (a superset of the
    /// states that the start can reach by `t` and that can still reach the end): outside it the true
    /// value is `-inf` or cannot contribute to any path through the end, so the result is exact.
    #[allow(clippy::too_many_arguments)]
    fn alpha_step(
        &self,
        prev: &[F],
        cur: &mut [F],
        eb: F,
        emit: &[F],
        skip: &[F],
        l_len: usize,
        band: (usize, usize),
    ) -> F;

    /// One beta step: `cur` (beta at `t`) from `next` (beta at `t + 1`), with frame `t + 1`'s blank
    /// emission `eb`, label emissions `emit[..=L]` (`emit[L] = -inf`) and `skip[..=L]` (`skip[L] = -inf`).
    /// Returns the largest value written to `cur`.
    /// `band` as for [`Kernels::alpha_step`].
    #[allow(clippy::too_many_arguments)]
    fn beta_step(
        &self,
        next: &[F],
        cur: &mut [F],
        eb: F,
        emit: &[F],
        skip: &[F],
        l_len: usize,
        band: (usize, usize),
    ) -> F;

    /// `dst[k] = exp(src[k] - shift) * scale`.
    fn exp_shifted_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]);

    /// `out[i] = exp(alpha[i] + beta[i] - shift)` for every state; returns `sum_i out[i]`.
    fn posterior_weights(&self, alpha: &[F], beta: &[F], shift: F, out: &mut [F]) -> F;
}
