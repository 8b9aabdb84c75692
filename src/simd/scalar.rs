//! The scalar implementation: the reference for every SIMD path, and the one miri runs.

use super::Kernels;
use crate::Float;

/// Plain scalar code with the standard library's `exp` and `ln`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

/// `ln(e^a + e^b)` in the `max + ln1p` form: exact `-inf` for two `-inf`, never `-inf - -inf`.
#[inline(always)]
pub(crate) fn lse2<F: Float>(a: F, b: F) -> F {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == F::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln(e^a + e^b + e^c)`; the max is subtracted only when it is finite.
#[inline(always)]
pub(crate) fn lse3<F: Float>(a: F, b: F, c: F) -> F {
    let m = a.max(b).max(c);
    if m == F::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp() + (c - m).exp()).ln()
}

impl<F: Float> Kernels<F> for Scalar {
    #[inline(always)]
    fn lse2(&self, a: F, b: F) -> F {
        lse2(a, b)
    }

    fn log_sum_exp_checked(&self, row: &[F]) -> (F, bool) {
        let mut m = F::NEG_INFINITY;
        let mut bad = false;
        for &x in row {
            bad |= x.is_nan() || x == F::INFINITY;
            m = m.max(x);
        }
        if bad || m == F::NEG_INFINITY {
            return (F::ZERO, true);
        }
        let s: F = row.iter().map(|&x| (x - m).exp()).sum();
        (m + s.ln(), false)
    }

    fn all_valid_log_probs(&self, row: &[F]) -> bool {
        row.iter().all(|&x| !(x.is_nan() || x == F::INFINITY))
    }

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
    ) -> F {
        let (lo, hi) = band;
        cur.fill(F::NEG_INFINITY);
        let (pb, pl) = prev.split_at(l_len + 1);
        let (cb, cl) = cur.split_at_mut(l_len + 1);
        if lo == 0 {
            cb[0] = eb + pb[0];
        }
        for i in lo.max(1)..hi.min(l_len + 1) {
            cb[i] = eb + lse2(pb[i], pl[i - 1]);
        }
        if lo == 0 && hi > 0 && l_len > 0 {
            cl[0] = emit[0] + lse2(pl[0], pb[0]);
        }
        for j in lo.max(1)..hi.min(l_len) {
            cl[j] = emit[j] + lse3(pl[j], pb[j], pl[j - 1] + skip[j]);
        }
        cur.iter().fold(F::NEG_INFINITY, |m, &x| m.max(x))
    }

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
    ) -> F {
        let (lo, hi) = band;
        cur.fill(F::NEG_INFINITY);
        let (nb, nl) = next.split_at(l_len + 1);
        let (cb, cl) = cur.split_at_mut(l_len + 1);
        let qb = |i: usize| eb + nb[i];
        let ql = |j: usize| if j < l_len { emit[j] + nl[j] } else { F::NEG_INFINITY };
        for (i, c) in cb.iter_mut().enumerate().take(hi.min(l_len + 1)).skip(lo) {
            *c = lse2(qb(i), ql(i));
        }
        for (j, c) in cl.iter_mut().enumerate().take(hi.min(l_len)).skip(lo) {
            *c = lse3(ql(j), qb(j + 1), ql(j + 1) + skip[j + 1]);
        }
        cur.iter().fold(F::NEG_INFINITY, |m, &x| m.max(x))
    }

    fn exp_shifted_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s - shift).exp() * scale;
        }
    }

    fn posterior_weights(&self, alpha: &[F], beta: &[F], shift: F, split: usize, out: &mut [F]) -> (F, F) {
        let mut sums = [F::ZERO; 2];
        for (i, ((o, &a), &b)) in out.iter_mut().zip(alpha).zip(beta).enumerate() {
            *o = (a + b - shift).exp();
            sums[usize::from(i >= split)] += *o;
        }
        (sums[0] + sums[1], sums[0])
    }
}
