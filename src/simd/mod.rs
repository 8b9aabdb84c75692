//! The lattice's inner loops, behind one trait with a scalar implementation and SIMD ones.
//!
//! Every implementation computes the same functions; the scalar one is the readable statement of what
//! they are, and the tests run every implementation through the same properties.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub(crate) mod interleaved;
pub(crate) mod linear;
mod math;
mod scalar;
mod vector;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::{F32x8 as Avx2F32x8, F64x4 as Avx2F64x4};
pub use vector::{Lanes, Vector};

pub use math::{exp_f32x8, exp_f64x4, ln_f32x8, ln_f64x4};

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

    /// [`Kernels::log_sum_exp_checked`] that also writes the frame's scaled softmax,
    /// `dst[k] = exp(row[k] - lse) * scale`, from the same `exp`s: one per class where the separate
    /// [`Kernels::softmax_scaled`] afterwards costs a second (and a second read of the row). `dst` is
    /// as long as `row`; its contents are meaningless when `bad` is returned.
    fn log_sum_exp_softmax(&self, row: &[F], scale: F, dst: &mut [F]) -> (F, bool) {
        let (lse, bad) = self.log_sum_exp_checked(row);
        if !bad {
            self.softmax_scaled(row, lse, scale, dst);
        }
        (lse, bad)
    }

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

    /// `out[j] = row[labels[j]] - shift` for `j < labels.len()` (`out` at least as long). Every label
    /// is `< row.len()` (validated before any kernel runs).
    fn gather_shifted(&self, row: &[F], labels: &[u32], shift: F, out: &mut [F]) {
        for (o, &l) in out.iter_mut().zip(labels) {
            *o = row[l as usize] - shift;
        }
    }

    /// `dst[k] = exp(src[k] - shift) * scale`.
    fn exp_shifted_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]);

    /// [`Kernels::exp_shifted_scaled`] where every `src[k] - shift <= 0` (a softmax: `shift` is the
    /// row's log-sum-exp); implementations may use a cheaper `exp` for it.
    fn softmax_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        self.exp_shifted_scaled(src, shift, scale, dst)
    }

    /// `out[i] = exp(alpha[i] + beta[i] - shift)` for every state; returns `(sum_i out[i], sum_{i <
    /// split} out[i])` (the second: the blanks' share, `split = L + 1`).
    fn posterior_weights(&self, alpha: &[F], beta: &[F], shift: F, split: usize, out: &mut [F]) -> (F, F);
}

/// Proof that the running CPU has AVX2 and FMA. Only this crate makes one, after asking the CPU
/// (`is_x86_feature_detected!`, which the standard library caches), so holding one is what makes the
/// AVX2 kernels sound to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2FmaToken(());

impl Avx2FmaToken {
    /// `Some` when the CPU has AVX2 and FMA.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Some(Avx2FmaToken(()));
        }
        None
    }
}

/// The [`Vector`] row kernels over AVX2 intrinsic lanes (`V`): the kernels of [`Float::Avx2`].
///
/// Their instructions need AVX2 and FMA, so a value exists only where an [`Avx2FmaToken`] did:
/// [`Float::avx2_kernels`] is the only constructor, and the crate calls it only after detection.
#[derive(Clone, Copy, Debug)]
pub struct Avx2Kernels<V>(core::marker::PhantomData<V>);

impl<V> Avx2Kernels<V> {
    pub(crate) fn new(_proof: Avx2FmaToken) -> Self {
        Avx2Kernels(core::marker::PhantomData)
    }
}

// Delegation, one line per method: the kernels are [`Vector`]'s; only the way to obtain them differs.
impl<F: Float, V: Lanes<F> + Send + Sync> Kernels<F> for Avx2Kernels<V> {
    #[inline(always)]
    fn lse2(&self, a: F, b: F) -> F {
        Vector::<V>::new().lse2(a, b)
    }
    #[inline(always)]
    fn log_sum_exp_checked(&self, row: &[F]) -> (F, bool) {
        Vector::<V>::new().log_sum_exp_checked(row)
    }
    #[inline(always)]
    fn log_sum_exp_softmax(&self, row: &[F], scale: F, dst: &mut [F]) -> (F, bool) {
        Vector::<V>::new().log_sum_exp_softmax(row, scale, dst)
    }
    #[inline(always)]
    fn all_valid_log_probs(&self, row: &[F]) -> bool {
        Vector::<V>::new().all_valid_log_probs(row)
    }
    #[inline(always)]
    fn alpha_step(
        &self,
        prev: &[F],
        cur: &mut [F],
        eb: F,
        emit: &[F],
        skip: &[F],
        l_len: usize,
        band: (usize, usize),
    ) -> F {
        Vector::<V>::new().alpha_step(prev, cur, eb, emit, skip, l_len, band)
    }
    #[inline(always)]
    fn beta_step(
        &self,
        next: &[F],
        cur: &mut [F],
        eb: F,
        emit: &[F],
        skip: &[F],
        l_len: usize,
        band: (usize, usize),
    ) -> F {
        Vector::<V>::new().beta_step(next, cur, eb, emit, skip, l_len, band)
    }
    #[inline(always)]
    fn gather_shifted(&self, row: &[F], labels: &[u32], shift: F, out: &mut [F]) {
        Vector::<V>::new().gather_shifted(row, labels, shift, out)
    }
    #[inline(always)]
    fn exp_shifted_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        Vector::<V>::new().exp_shifted_scaled(src, shift, scale, dst)
    }
    #[inline(always)]
    fn softmax_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        Vector::<V>::new().softmax_scaled(src, shift, scale, dst)
    }
    #[inline(always)]
    fn posterior_weights(&self, alpha: &[F], beta: &[F], shift: F, split: usize, out: &mut [F]) -> (F, F) {
        Vector::<V>::new().posterior_weights(alpha, beta, shift, split, out)
    }
}

/// Hints the cache to load the lines of `s` (x86-64; elsewhere nothing). Never faults.
#[inline(always)]
pub(crate) fn prefetch<F>(s: &[F]) {
    prefetch_raw(s.as_ptr(), s.len());
}

/// As [`prefetch`], for `len` elements at `ptr`. A prefetch is a hint: it never faults and never
/// changes memory, so any address is fine (the arithmetic wraps rather than assume it is in bounds).
#[inline(always)]
pub(crate) fn prefetch_raw<F>(ptr: *const F, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = len.saturating_mul(core::mem::size_of::<F>());
        if bytes == 0 {
            return;
        }
        // Every line the range touches, from the one holding its first byte to the one holding its
        // last (a row that straddles one more line than its length suggests gets that line too).
        let first = ptr as usize & !63;
        let last = (ptr as usize).wrapping_add(bytes - 1);
        let p = ptr.cast::<i8>().wrapping_sub(ptr as usize - first);
        let mut off = 0;
        while first.wrapping_add(off) <= last {
            // SAFETY: `prefetcht0` is SSE (baseline on x86-64) and has no architectural effect: it
            // does not fault on any address.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(off))
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}

/// The error measure of the `exp`/`ln` tables, shared by every lane type's tests.
#[cfg(test)]
pub(crate) mod ulps {
    use super::Lanes;
    use crate::Float;

    /// Worst error of the lane function `f` against the scalar `g` over `xs`, in ulps of `g`'s
    /// (normal, finite, non-zero) result. With `exact_specials`, the other results must match: NaN for
    /// NaN, infinities and zeros exactly, subnormals to within the smallest normal (or 0); without
    /// it, they are skipped (the reduced-range forms promise nothing there).
    pub(crate) fn worst<F: Float, L: Lanes<F>>(
        f: impl Fn(L) -> L,
        g: impl Fn(F) -> F,
        xs: &[F],
        exact_specials: bool,
    ) -> f64 {
        let eps = F::EPSILON.to_f64();
        let min_normal = if eps > 1e-10 { f32::MIN_POSITIVE as f64 } else { f64::MIN_POSITIVE };
        let mut worst = 0.0f64;
        for chunk in xs.chunks(L::N) {
            let mut out = [F::ZERO; 16];
            f(L::load_or(chunk, F::ONE)).store(&mut out[..chunk.len()]);
            for (&x, &y) in chunk.iter().zip(&out) {
                let (x, y, want) = (x.to_f64(), y.to_f64(), g(x).to_f64());
                let normal = want.is_finite() && want != 0.0 && want.abs() >= min_normal;
                if normal {
                    worst = worst.max((y - want).abs() / (want.abs() * eps));
                } else if exact_specials {
                    if want.is_nan() {
                        assert!(y.is_nan(), "f({x}) = {y}, want NaN");
                    } else if want.is_infinite() || want == 0.0 {
                        assert_eq!(y, want, "f({x})");
                    } else {
                        assert!(y == 0.0 || (y - want).abs() <= min_normal, "f({x}) = {y}, want {want}");
                    }
                }
            }
        }
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::{Avx2FmaToken, Kernels, Scalar};
    use crate::Float;

    /// The fused normaliser-and-softmax against the two separate kernels and an `f64` softmax, on
    /// every row length around the vector widths and a long row, for every implementation.
    fn fused_softmax_matches<F: Float, K: Kernels<F>>(k: &K, name: &str) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let lens = (1..=40).chain([63, 64, 65, 1024, 5000]);
        for len in lens {
            for spread in [1.0, 30.0] {
                let mut row: Vec<F> =
                    (0..len).map(|_| F::from_f64((uniform() - 0.5) * 2.0 * spread)).collect();
                // A hard zero and a peak: exp(-inf) must be 0 and the largest value must not overflow.
                if len > 3 {
                    row[1] = F::NEG_INFINITY;
                    row[2] = F::from_f64(80.0);
                }
                let scale = F::from_f64(0.25);
                let mut dst = vec![F::from_f64(-9.0); len];
                let (lse, bad) = k.log_sum_exp_softmax(&row, scale, &mut dst);
                let (want_lse, want_bad) = k.log_sum_exp_checked(&row);
                assert!(!bad && !want_bad, "{name} {len}");
                let eps = F::EPSILON.to_f64();
                assert!((lse - want_lse).to_f64().abs() <= 4.0 * eps * want_lse.to_f64().abs().max(1.0));
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x.to_f64()));
                let sum: f64 = row.iter().map(|&x| (x.to_f64() - m).exp()).sum();
                for (i, (&x, &y)) in row.iter().zip(&dst).enumerate() {
                    let want = (x.to_f64() - m).exp() / sum * 0.25;
                    // The unfused form rounds `x - lse` first: its relative error grows with `|x - lse|`.
                    let arg = if want > 0.0 { (want / 0.25).ln().abs() } else { 0.0 };
                    // Below the normal range, `exp` may flush.
                    let tiny = F::MIN_POSITIVE.to_f64();
                    let err = (y.to_f64() - want).abs();
                    assert!(
                        err <= (8.0 + 2.0 * arg) * eps * want + tiny,
                        "{name} len {len} [{i}]: {} vs {want}",
                        y.to_f64()
                    );
                }
            }
        }
        // NaN, +inf and an all -inf frame are flagged.
        for bad in [F::from_f64(f64::NAN), F::INFINITY] {
            let mut row = vec![F::ZERO; 37];
            row[33] = bad;
            assert!(k.log_sum_exp_softmax(&row, F::ONE, &mut [F::ZERO; 37]).1, "{name}");
        }
        let row = vec![F::NEG_INFINITY; 9];
        assert!(k.log_sum_exp_softmax(&row, F::ONE, &mut [F::ZERO; 9]).1, "{name}");
    }

    #[test]
    fn fused_softmax_every_implementation() {
        fused_softmax_matches::<f32, _>(&Scalar, "scalar f32");
        fused_softmax_matches::<f64, _>(&Scalar, "scalar f64");
        fused_softmax_matches::<f32, _>(&<f32 as Float>::Simd::default(), "vector f32");
        fused_softmax_matches::<f64, _>(&<f64 as Float>::Simd::default(), "vector f64");
        if let Some(token) = Avx2FmaToken::detect() {
            fused_softmax_matches::<f32, _>(&f32::avx2_kernels(token), "avx2 f32");
            fused_softmax_matches::<f64, _>(&f64::avx2_kernels(token), "avx2 f64");
        }
    }
}
