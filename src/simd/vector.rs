//! The lattice's row operations over `wide` vectors: `N` states per instruction.
//!
//! Every loop has a vector body and a tail. The tail loads the remaining `< N` elements into a vector
//! padded with the identity of the reduction at hand (`-inf` for max and log-sum-exp, whose exp is 0),
//! runs the same vector code, and stores only the valid lanes, so every state goes through the same
//! arithmetic whatever its position (results do not depend on where a lane boundary falls).

use super::math::{exp_f32x8, exp_f64x4, ln_f32x8, ln_f64x4};
use super::Kernels;
use crate::Float;
use core::ops::{Add, Mul, Sub};
use wide::{f32x8, f64x4};

/// A vector of `N` lanes of `F`, the operations the row kernels need.
pub trait Lanes<F: Float>: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    /// Lanes per vector.
    const N: usize;
    /// All lanes `x`.
    fn splat(x: F) -> Self;
    /// `src[..min(N, len)]`, the other lanes `fill`.
    fn load_or(src: &[F], fill: F) -> Self;
    /// The first `N` elements of `src` (which has at least `N`).
    fn load(src: &[F]) -> Self;
    /// Writes the first `min(N, dst.len())` lanes.
    fn store(self, dst: &mut [F]);
    /// Lane-wise maximum (no NaN ever reaches the lattice, so the fast form is exact).
    fn max(self, o: Self) -> Self;
    /// Lane-wise minimum.
    fn min(self, o: Self) -> Self;
    /// Lane-wise `e^x`.
    fn exp(self) -> Self;
    /// Lane-wise `ln x`.
    fn ln(self) -> Self;
    /// `self` where `mask_src` is not `-inf`, `-inf` where it is.
    fn neg_inf_where_neg_inf(self, mask_src: Self) -> Self;
    /// Largest lane.
    fn reduce_max(self) -> F;
    /// Sum of lanes.
    fn reduce_add(self) -> F;
    /// Whether any lane is NaN or `+inf`.
    fn any_invalid(self) -> bool;
}

macro_rules! impl_lanes {
    ($v:ident, $f:ident, $n:expr, $exp:ident, $ln:ident) => {
        impl Lanes<$f> for $v {
            const N: usize = $n;
            #[inline(always)]
            fn splat(x: $f) -> Self {
                $v::splat(x)
            }
            #[inline(always)]
            fn load_or(src: &[$f], fill: $f) -> Self {
                let mut a = [fill; $n];
                let k = src.len().min($n);
                a[..k].copy_from_slice(&src[..k]);
                $v::new(a)
            }
            #[inline(always)]
            fn load(src: &[$f]) -> Self {
                let a: [$f; $n] = src[..$n].try_into().expect("caller passes at least N elements");
                $v::new(a)
            }
            #[inline(always)]
            fn store(self, dst: &mut [$f]) {
                let a = self.to_array();
                let k = dst.len().min($n);
                dst[..k].copy_from_slice(&a[..k]);
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                self.fast_max(o)
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                self.fast_min(o)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $ln(self)
            }
            #[inline(always)]
            fn neg_inf_where_neg_inf(self, mask_src: Self) -> Self {
                mask_src.simd_eq($v::splat($f::NEG_INFINITY)).select(mask_src, self)
            }
            #[inline(always)]
            fn reduce_max(self) -> $f {
                self.to_array().into_iter().fold($f::NEG_INFINITY, $f::max)
            }
            #[inline(always)]
            fn reduce_add(self) -> $f {
                self.reduce_add()
            }
            #[inline(always)]
            fn any_invalid(self) -> bool {
                (self.is_nan() | self.simd_eq($v::splat($f::INFINITY))).any()
            }
        }
    };
}

impl_lanes!(f32x8, f32, 8, exp_f32x8, ln_f32x8);
impl_lanes!(f64x4, f64, 4, exp_f64x4, ln_f64x4);

/// Row kernels over vectors `V` of `F`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Vector<V>(core::marker::PhantomData<V>);

impl<V> Vector<V> {
    /// The kernels (a zero-sized value).
    pub const fn new() -> Self {
        Vector(core::marker::PhantomData)
    }
}

#[inline(always)]
fn lse2_v<F: Float, V: Lanes<F>>(a: V, b: V) -> V {
    let hi = a.max(b);
    let lo = a.min(b);
    let r = hi + (V::splat(F::ONE) + (lo - hi).exp()).ln();
    // hi = -inf makes lo - hi NaN: select the exact answer instead.
    r.neg_inf_where_neg_inf(hi)
}

#[inline(always)]
fn lse3_v<F: Float, V: Lanes<F>>(a: V, b: V, c: V) -> V {
    let m = a.max(b).max(c);
    let s = (a - m).exp() + (b - m).exp() + (c - m).exp();
    (m + s.ln()).neg_inf_where_neg_inf(m)
}

/// Runs `body(start, count)` over `0..n` in steps of `N`; the last step may have `count < N`.
#[inline(always)]
fn chunks<const N: usize>(n: usize, mut body: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i + N <= n {
        body(i, N);
        i += N;
    }
    if i < n {
        body(i, n - i);
    }
}

/// Loads `count` elements at `src[at..]`, padded with `-inf`.
#[inline(always)]
fn ld<F: Float, V: Lanes<F>>(src: &[F], at: usize, count: usize) -> V {
    if count == V::N {
        V::load(&src[at..])
    } else {
        V::load_or(&src[at..at + count], F::NEG_INFINITY)
    }
}

macro_rules! vector_kernels {
    ($v:ident, $f:ident, $n:expr) => {
        impl Kernels<$f> for Vector<$v> {
            #[inline(always)]
            fn lse2(&self, a: $f, b: $f) -> $f {
                super::scalar::lse2(a, b)
            }

            #[inline(always)]
            fn log_sum_exp_checked(&self, row: &[$f]) -> ($f, bool) {
                // Two accumulators per pass: independent chains hide the latency of max and add.
                let mut m0 = $v::splat($f::NEG_INFINITY);
                let mut m1 = m0;
                let mut bad = false;
                let mut i = 0;
                while i + 2 * $n <= row.len() {
                    let a = $v::load(&row[i..]);
                    let b = $v::load(&row[i + $n..]);
                    bad |= a.any_invalid() | b.any_invalid();
                    m0 = Lanes::max(m0, a);
                    m1 = Lanes::max(m1, b);
                    i += 2 * $n;
                }
                chunks::<$n>(row.len() - i, |at, count| {
                    let a: $v = ld::<$f, $v>(row, i + at, count);
                    bad |= a.any_invalid();
                    m0 = Lanes::max(m0, a);
                });
                let m = Lanes::reduce_max(Lanes::max(m0, m1));
                if bad || m == $f::NEG_INFINITY {
                    return (0.0, true);
                }
                let mv = $v::splat(m);
                let mut s0 = $v::splat(0.0);
                let mut s1 = s0;
                let mut i = 0;
                while i + 2 * $n <= row.len() {
                    s0 += ($v::load(&row[i..]) - mv).exp();
                    s1 += ($v::load(&row[i + $n..]) - mv).exp();
                    i += 2 * $n;
                }
                chunks::<$n>(row.len() - i, |at, count| {
                    let a: $v = ld::<$f, $v>(row, i + at, count);
                    s0 += (a - mv).exp();
                });
                (m + (s0 + s1).reduce_add().ln(), false)
            }

            #[inline(always)]
            fn all_valid_log_probs(&self, row: &[$f]) -> bool {
                let mut bad = false;
                chunks::<$n>(row.len(), |at, count| {
                    let a: $v = ld::<$f, $v>(row, at, count);
                    bad |= a.any_invalid();
                });
                !bad
            }

            #[inline(always)]
            fn alpha_step(
                &self,
                prev: &[$f],
                cur: &mut [$f],
                eb: $f,
                emit: &[$f],
                skip: &[$f],
                l_len: usize,
            ) -> $f {
                let (pb, pl) = prev.split_at(l_len + 1);
                let (cb, cl) = cur.split_at_mut(l_len + 1);
                let ebv = $v::splat(eb);
                let mut mx = $v::splat($f::NEG_INFINITY);
                cb[0] = eb + pb[0];
                // Blanks 1..=L: from the same blank, or from the label before it.
                chunks::<$n>(l_len, |at, count| {
                    let i = 1 + at;
                    let r =
                        ebv + lse2_v::<$f, $v>(ld::<$f, $v>(pb, i, count), ld::<$f, $v>(pl, i - 1, count));
                    mx = Lanes::max(mx, r);
                    r.store(&mut cb[i..i + count]);
                });
                // Label 0: from itself or the first blank.
                if l_len > 0 {
                    cl[0] = emit[0] + super::scalar::lse2(pl[0], pb[0]);
                    mx = Lanes::max(mx, $v::splat(cl[0]));
                }
                // Labels 1..L: itself, the blank before it, or (skip) the label before it.
                chunks::<$n>(l_len.saturating_sub(1), |at, count| {
                    let j = 1 + at;
                    let from_skip = ld::<$f, $v>(pl, j - 1, count) + ld::<$f, $v>(skip, j, count);
                    let r = ld::<$f, $v>(emit, j, count)
                        + lse3_v::<$f, $v>(ld::<$f, $v>(pl, j, count), ld::<$f, $v>(pb, j, count), from_skip);
                    mx = Lanes::max(mx, r);
                    r.store(&mut cl[j..j + count]);
                });
                Lanes::reduce_max(mx).max(cb[0])
            }

            #[inline(always)]
            fn beta_step(
                &self,
                next: &[$f],
                cur: &mut [$f],
                eb: $f,
                emit: &[$f],
                skip: &[$f],
                l_len: usize,
            ) -> $f {
                let (nb, nl) = next.split_at(l_len + 1);
                let (cb, cl) = cur.split_at_mut(l_len + 1);
                let ebv = $v::splat(eb);
                let mut mx = $v::splat($f::NEG_INFINITY);
                // Blanks 0..L: stay, or move on to the label after it.
                chunks::<$n>(l_len, |i, count| {
                    let qb = ebv + ld::<$f, $v>(nb, i, count);
                    let ql = ld::<$f, $v>(emit, i, count) + ld::<$f, $v>(nl, i, count);
                    let r = lse2_v::<$f, $v>(qb, ql);
                    mx = Lanes::max(mx, r);
                    r.store(&mut cb[i..i + count]);
                });
                cb[l_len] = eb + nb[l_len];
                // Labels 0..L-1: stay, the blank after it, or (skip) the next label; the last label
                // has no next label.
                chunks::<$n>(l_len.saturating_sub(1), |j, count| {
                    let stay = ld::<$f, $v>(emit, j, count) + ld::<$f, $v>(nl, j, count);
                    let blank = ebv + ld::<$f, $v>(nb, j + 1, count);
                    let next_label = ld::<$f, $v>(emit, j + 1, count)
                        + ld::<$f, $v>(nl, j + 1, count)
                        + ld::<$f, $v>(skip, j + 1, count);
                    let r = lse3_v::<$f, $v>(stay, blank, next_label);
                    mx = Lanes::max(mx, r);
                    r.store(&mut cl[j..j + count]);
                });
                if l_len > 0 {
                    let j = l_len - 1;
                    cl[j] = super::scalar::lse2(emit[j] + nl[j], eb + nb[j + 1]);
                    mx = Lanes::max(mx, $v::splat(cl[j]));
                }
                Lanes::reduce_max(mx).max(cb[l_len])
            }

            #[inline(always)]
            fn exp_shifted_scaled(&self, src: &[$f], shift: $f, scale: $f, dst: &mut [$f]) {
                let (sv, kv) = ($v::splat(shift), $v::splat(scale));
                chunks::<$n>(src.len().min(dst.len()), |at, count| {
                    let r = (ld::<$f, $v>(src, at, count) - sv).exp() * kv;
                    r.store(&mut dst[at..at + count]);
                });
            }

            #[inline(always)]
            fn posterior_weights(&self, alpha: &[$f], beta: &[$f], shift: $f, out: &mut [$f]) -> $f {
                let sv = $v::splat(shift);
                let mut acc = $v::splat(0.0);
                let n = alpha.len().min(beta.len()).min(out.len());
                chunks::<$n>(n, |at, count| {
                    let w = (ld::<$f, $v>(alpha, at, count) + ld::<$f, $v>(beta, at, count) - sv).exp();
                    acc += w;
                    w.store(&mut out[at..at + count]);
                });
                acc.reduce_add()
            }
        }
    };
}

vector_kernels!(f32x8, f32, 8);
vector_kernels!(f64x4, f64, 4);
