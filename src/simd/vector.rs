//! The lattice's row operations over `wide` vectors: `N` states per instruction.
//!
//! Every loop has a vector body and a tail. The tail loads the remaining `< N` elements into a vector
//! padded with the identity of the reduction at hand (`-inf` for max and log-sum-exp, whose exp is 0),
//! runs the same vector code, and stores only the valid lanes, so every state goes through the same
//! arithmetic whatever its position (results do not depend on where a lane boundary falls).

use super::math::{exp_f32x8, exp_f64x4, ln_f32x8, ln_f64x4};
use super::Kernels;
use crate::Float;
use core::ops::{Add, Div, Mul, Sub};
use wide::{f32x8, f64x4};

/// A vector of `N` lanes of `F`, the operations the row kernels need.
pub trait Lanes<F: Float>:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// Lanes per vector.
    const N: usize;
    /// Whether [`Lanes::load_columns`] and [`Lanes::store_columns`] cost about a vector operation per
    /// column (a SIMD transpose), so that a group's rows are best handled as columns. The defaults,
    /// an element at a time, are not: the `wide` lanes took 16 % more instructions on `tiny` with
    /// the group's output rows written as columns.
    const FAST_COLUMNS: bool = false;
    /// All lanes `x`.
    fn splat(x: F) -> Self;
    /// `src[..min(N, len)]`, the other lanes `fill`.
    fn load_or(src: &[F], fill: F) -> Self;
    /// The first `N` elements of `src` (which has at least `N`).
    fn load(src: &[F]) -> Self;
    /// Writes the first `min(N, dst.len())` lanes.
    fn store(self, dst: &mut [F]);
    /// `row[idx[k]]` in lane `k < min(N, idx.len())`, `fill` in the others. Every index must be
    /// `< row.len()` (an index past it is clamped to the last element by the SIMD forms, a panic here).
    #[inline(always)]
    fn gather_or(row: &[F], idx: &[u32], fill: F) -> Self {
        let mut a = [fill; 16];
        for (d, &i) in a.iter_mut().zip(idx).take(Self::N) {
            *d = row[i as usize];
        }
        Self::load(&a)
    }
    /// The first `classes = cols.len() / N` columns of `N` rows, column-major: `cols[c * N + m] =
    /// src[rows[m] + c]` (a vector per column). Every `rows[m] + classes` must be `<= src.len()` (a
    /// panic otherwise). The default gathers each column; a SIMD form may load the rows and transpose
    /// them instead (a gather costs a load per lane).
    #[inline(always)]
    fn load_columns(src: &[F], rows: &[u32], cols: &mut [F]) {
        for (c, col) in cols.chunks_exact_mut(Self::N).enumerate() {
            // The default gather indexes (and so checks) every element.
            Self::gather_or(&src[c..], rows, F::NEG_INFINITY).store(col);
        }
    }
    /// The inverse of [`Lanes::load_columns`]: `rows[m][c] = cols[c * N + m]` for the `N` rows and
    /// `c < cols.len() / N`. Every row must be at least that long (a panic otherwise).
    #[inline(always)]
    fn store_columns(cols: &[F], rows: &mut [&mut [F]]) {
        for (c, col) in cols.chunks_exact(Self::N).enumerate() {
            for (row, &x) in rows.iter_mut().zip(col) {
                row[c] = x;
            }
        }
    }
    /// For every lane `m`, `cols[c * N + m] -= self[m]` with `c = at[m] - rows[m]`: a scatter into a
    /// frame of [`Lanes::load_columns`], at a column given by a gather-table entry (`at`, from row
    /// `m`'s start) and the rows' own offsets. The lanes touch distinct elements. Every `c` must be
    /// `< cols.len() / N` (the SIMD forms clamp it to the last column, the default panics).
    #[inline(always)]
    fn sub_at_columns(self, cols: &mut [F], at: &[u32], rows: &[u32]) {
        let mut lanes = [F::ZERO; 16];
        self.store(&mut lanes[..Self::N]);
        for (m, ((&a, &r), &x)) in at.iter().zip(rows).zip(&lanes[..Self::N]).enumerate() {
            cols[(a - r) as usize * Self::N + m] -= x;
        }
    }
    /// Lane `m` of the result is `cols[c * N + m]` with `c = at[m] - rows[m]`: the gather that
    /// [`Lanes::sub_at_columns`] scatters, with the same indices and bounds.
    #[inline(always)]
    fn load_at_columns(cols: &[F], at: &[u32], rows: &[u32]) -> Self {
        let mut lanes = [F::ZERO; 16];
        for (m, (x, (&a, &r))) in lanes.iter_mut().zip(at.iter().zip(rows)).take(Self::N).enumerate() {
            *x = cols[(a - r) as usize * Self::N + m];
        }
        Self::load(&lanes)
    }
    /// Whether every lane holds `self >= bound` (false where either is NaN).
    #[inline(always)]
    fn all_at_least(self, bound: Self) -> bool {
        let (mut a, mut b) = ([F::ZERO; 16], [F::ZERO; 16]);
        self.store(&mut a[..Self::N]);
        bound.store(&mut b[..Self::N]);
        a[..Self::N].iter().zip(&b[..Self::N]).all(|(x, y)| x >= y)
    }
    /// For lanes holding a positive normal `x`, `(e, 2^-e)` with `2^e <= x < 2^(e + 1)` (both exact,
    /// as `F`), where `2^-e` is normal too; other lanes give anything.
    #[inline(always)]
    fn split_exponent(self) -> (Self, Self) {
        let (mut e, mut x) = ([F::ZERO; 16], [F::ZERO; 16]);
        self.store(&mut x[..Self::N]);
        for (e, x) in e[..Self::N].iter_mut().zip(&mut x[..Self::N]) {
            // The exponent of a normal value; f32 widens to f64 exactly.
            let k = ((x.to_f64().to_bits() >> 52) & 0x7ff) as i64 - 1023;
            *e = F::from_f64(k as f64);
            *x = F::from_f64(f64::from_bits(((1023 - k) as u64) << 52));
        }
        (Self::load(&e), Self::load(&x))
    }
    /// `flags` with every lane where `self` is NaN set to all ones (the others as they were): a check
    /// for NaN over many vectors with one test at the end, [`Lanes::any_flagged`] (starting from 0).
    fn flag_nan(self, flags: Self) -> Self;
    /// Whether a lane of a [`Lanes::flag_nan`] accumulator is set.
    fn any_flagged(self) -> bool;
    /// Lane-wise maximum (no NaN ever reaches the lattice, so the fast form is exact).
    fn max(self, o: Self) -> Self;
    /// Lane-wise minimum.
    fn min(self, o: Self) -> Self;
    /// Lane-wise `e^x`.
    fn exp(self) -> Self;
    /// Lane-wise `ln x`.
    fn ln(self) -> Self;
    /// `e^x` for lanes known to hold `x <= 0` or NaN, feeding a sum with 1 (log-sum-exp): an
    /// implementation may skip the overflow and NaN handling, and return any value below `F::EPSILON`
    /// (not exactly 0) under `e^-87` (f32) or `e^-708` (f64). NaN lanes may give anything: the caller
    /// replaces them.
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        self.exp()
    }
    /// `e^x` for lanes known to hold `x <= 0` (`-inf` included, NaN excluded), exact as [`Lanes::exp`]
    /// (0 below the normal range): a softmax, whose arguments are `x - logsumexp <= 0`.
    #[inline(always)]
    fn exp_le0(self) -> Self {
        self.exp()
    }
    /// `ln x` for lanes known to hold positive, normal, finite `x` (log-sum-exp's `1 + ...`); other
    /// lanes may give anything. The default is [`Lanes::ln`].
    #[inline(always)]
    fn ln_normal(self) -> Self {
        self.ln()
    }
    /// `self` where `mask_src` is not `-inf`, `-inf` where it is.
    fn neg_inf_where_neg_inf(self, mask_src: Self) -> Self;
    /// `a` in the lanes where `self <= bound`, 0 in the others.
    fn where_at_most(self, bound: Self, a: Self) -> Self;
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
            fn flag_nan(self, flags: Self) -> Self {
                self.is_nan() | flags
            }
            #[inline(always)]
            fn any_flagged(self) -> bool {
                self.any()
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                $v::fast_max(self, o)
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                $v::fast_min(self, o)
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
            fn where_at_most(self, bound: Self, a: Self) -> Self {
                self.simd_le(bound).select(a, $v::splat(0.0))
            }
            #[inline(always)]
            fn reduce_max(self) -> $f {
                self.to_array().into_iter().fold($f::NEG_INFINITY, $f::max)
            }
            #[inline(always)]
            fn reduce_add(self) -> $f {
                // The inherent method, named explicitly: `self.reduce_add()` here would be ambiguous
                // to the reader, and a trait method must never call itself by accident.
                $v::reduce_add(self)
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
pub(super) fn lse2_v<F: Float, V: Lanes<F>>(a: V, b: V) -> V {
    let hi = a.max(b);
    let lo = a.min(b);
    let r = hi + (V::splat(F::ONE) + (lo - hi).exp_nonpositive()).ln_normal();
    // hi = -inf makes lo - hi NaN: select the exact answer instead.
    r.neg_inf_where_neg_inf(hi)
}

/// `ln(e^a + e^b + e^c)` as `m + ln(1 + e^(mid - m) + e^(low - m))`: the term of the maximum is
/// exactly 1, so two exps suffice (the max, middle and low values cost three max/min).
#[inline(always)]
pub(super) fn lse3_v<F: Float, V: Lanes<F>>(a: V, b: V, c: V) -> V {
    let hi_ab = a.max(b);
    let low = a.min(b);
    let m = hi_ab.max(c);
    let mid = hi_ab.min(c);
    let s = V::splat(F::ONE) + (mid - m).exp_nonpositive() + (low - m).exp_nonpositive();
    (m + s.ln_normal()).neg_inf_where_neg_inf(m)
}

/// The largest value of a frame of logits, or `None` if the frame holds NaN or `+inf` or is all
/// `-inf` (no softmax then exists).
#[inline(always)]
fn checked_max<F: Float, V: Lanes<F>>(row: &[F]) -> Option<F> {
    let n = V::N;
    // Two accumulators: independent chains hide the latency of max.
    let mut m0 = V::splat(F::NEG_INFINITY);
    let mut m1 = m0;
    let mut bad = false;
    let mut i = 0;
    while i + 2 * n <= row.len() {
        let a = V::load(&row[i..]);
        let b = V::load(&row[i + n..]);
        bad |= a.any_invalid() | b.any_invalid();
        m0 = m0.max(a);
        m1 = m1.max(b);
        i += 2 * n;
    }
    {
        let n = row.len() - i;
        let mut at = 0;
        while at < n {
            let count = (n - at).min(V::N);
            // SAFETY: i + at + count <= i + n = row.len().
            let a: V = unsafe { ld(row, i + at, count) };
            bad |= a.any_invalid();
            m0 = m0.max(a);
            at += V::N;
        }
    }
    let m = m0.max(m1).reduce_max();
    (!bad && m != F::NEG_INFINITY).then_some(m)
}

/// Loads `count` elements at `src[at..]`, padded with `-inf`.
///
/// # Safety
/// `at + count <= src.len()` and `count <= V::N`. The kernels below establish this once per row, with
/// one assertion on the slice lengths before their loops, and then load without a check per vector:
/// the checks were a fifth of the instructions of the lattice (callgrind, `chars_long`).
#[inline(always)]
unsafe fn ld<F: Float, V: Lanes<F>>(src: &[F], at: usize, count: usize) -> V {
    debug_assert!(at + count <= src.len() && count <= V::N);
    // SAFETY: in bounds by the caller's contract.
    let s = unsafe { src.get_unchecked(at..at + count) };
    if count == V::N {
        V::load(s)
    } else {
        V::load_or(s, F::NEG_INFINITY)
    }
}

/// Stores the first `count` lanes of `v` at `dst[at..]`.
///
/// # Safety
/// `at + count <= dst.len()` and `count <= V::N`, established as for [`ld`].
#[inline(always)]
unsafe fn st<F: Float, V: Lanes<F>>(v: V, dst: &mut [F], at: usize, count: usize) {
    debug_assert!(at + count <= dst.len() && count <= V::N);
    // SAFETY: in bounds by the caller's contract.
    v.store(unsafe { dst.get_unchecked_mut(at..at + count) });
}

/// `for idx in (from..to).step_by(N)` with `count = min(N, to - idx)`, the body written once and
/// expanded twice: for whole vectors (`count` is the constant `N`, so the loads fold to plain loads)
/// and for the one tail. A macro rather than a helper taking a closure, for the reason below.
macro_rules! lanes_loop {
    ($n:expr, $idx:ident, $count:ident in $from:expr, $to:expr => $body:block) => {{
        let to = $to;
        let mut $idx = $from;
        while $idx + $n <= to {
            let $count = $n;
            $body
            $idx += $n;
        }
        if $idx < to {
            let $count = to - $idx;
            $body
        }
    }};
}

// Every loop below is a plain `while` (or `lanes_loop!`, which expands to them) over
// `count = min(N, remaining)` rather than a helper taking a closure: a closure is a separate function,
// which LLVM may leave outlined, and then it is compiled without the target features of the
// `avx2,fma` clone it was meant to be part of (measured: 4x slower than the baseline instead of faster).
impl<F: Float, V: Lanes<F> + Send + Sync> Kernels<F> for Vector<V> {
    #[inline(always)]
    fn lse2(&self, a: F, b: F) -> F {
        super::scalar::lse2(a, b)
    }

    #[inline(always)]
    fn log_sum_exp_checked(&self, row: &[F]) -> (F, bool) {
        let Some(m) = checked_max::<F, V>(row) else {
            return (F::ZERO, true);
        };
        let n = V::N;
        let mv = V::splat(m);
        let mut s0 = V::splat(F::ZERO);
        let mut s1 = s0;
        let mut i = 0;
        while i + 2 * n <= row.len() {
            s0 = s0 + (V::load(&row[i..]) - mv).exp_le0();
            s1 = s1 + (V::load(&row[i + n..]) - mv).exp_le0();
            i += 2 * n;
        }
        {
            let n = row.len() - i;
            let mut at = 0;
            while at < n {
                let count = (n - at).min(V::N);
                // SAFETY: i + at + count <= i + n = row.len().
                let a: V = unsafe { ld(row, i + at, count) };
                s0 = s0 + (a - mv).exp_le0();
                at += V::N;
            }
        }
        (m + (s0 + s1).reduce_add().ln(), false)
    }

    #[inline(always)]
    fn log_sum_exp_softmax(&self, row: &[F], scale: F, dst: &mut [F]) -> (F, bool) {
        let Some(m) = checked_max::<F, V>(row) else {
            return (F::ZERO, true);
        };
        let n = row.len().min(dst.len());
        let mv = V::splat(m);
        // `exp(x - m)` once per class, kept in `dst`: the row is then read again only from the cache,
        // to scale it by `scale / sum`.
        let mut s0 = V::splat(F::ZERO);
        let mut s1 = s0;
        let mut at = 0;
        while at + 2 * V::N <= n {
            // SAFETY: at + 2N <= n = min(row.len(), dst.len()).
            let (a, b) = unsafe { (ld::<F, V>(row, at, V::N), ld::<F, V>(row, at + V::N, V::N)) };
            let (ea, eb) = ((a - mv).exp_le0(), (b - mv).exp_le0());
            s0 = s0 + ea;
            s1 = s1 + eb;
            // SAFETY: as above.
            unsafe {
                st(ea, dst, at, V::N);
                st(eb, dst, at + V::N, V::N);
            }
            at += 2 * V::N;
        }
        while at < n {
            let count = (n - at).min(V::N);
            // SAFETY: at + count <= n.
            let e = (unsafe { ld::<F, V>(row, at, count) } - mv).exp_le0();
            // Lanes past `count` load as `-inf`: their exp is 0, as the sum needs.
            s0 = s0 + e;
            // SAFETY: as above.
            unsafe { st(e, dst, at, count) };
            at += V::N;
        }
        let sum = (s0 + s1).reduce_add();
        let factor = V::splat(scale / sum);
        lanes_loop!(V::N, at, count in 0, n => {
            // SAFETY: at + count <= n.
            unsafe { st(ld::<F, V>(dst, at, count) * factor, dst, at, count) };
        });
        (m + sum.ln(), false)
    }

    #[inline(always)]
    fn all_valid_log_probs(&self, row: &[F]) -> bool {
        let mut bad = false;
        {
            let n = row.len();
            let mut at = 0;
            while at < n {
                let count = (n - at).min(V::N);
                // SAFETY: at + count <= n = row.len().
                let a: V = unsafe { ld(row, at, count) };
                bad |= a.any_invalid();
                at += V::N;
            }
        }
        !bad
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
        let (lo, hi) = band;
        // The one bounds check of the row: every index below is derived from these lengths.
        assert!(
            prev.len() == 2 * l_len + 1
                && cur.len() == prev.len()
                && emit.len() >= l_len
                && skip.len() >= l_len
        );
        if lo > 0 || hi <= l_len {
            cur.fill(F::NEG_INFINITY);
        }
        let (pb, pl) = prev.split_at(l_len + 1);
        let (cb, cl) = cur.split_at_mut(l_len + 1);
        let ebv = V::splat(eb);
        let mut mx = V::splat(F::NEG_INFINITY);
        if lo == 0 {
            cb[0] = eb + pb[0];
        }
        // Blanks 1..=L within the band: from the same blank, or from the label before it.
        {
            let (start, n) = (lo.max(1), hi.min(l_len + 1));
            lanes_loop!(V::N, i, count in start, n => {
                // SAFETY: 1 <= i, i + count <= n <= L + 1 = pb.len() = cb.len(), and
                // i - 1 + count <= L = pl.len() (asserted lengths).
                let r = unsafe { ebv + lse2_v::<F, V>(ld(pb, i, count), ld(pl, i - 1, count)) };
                mx = mx.max(r);
                // SAFETY: as above.
                unsafe { st(r, cb, i, count) };
            });
        }
        // Labels 0..L (within the band): itself, the blank before it, or (skip) the label before it. The "label before"
        // of label 0 reads prev[L], the last blank (it precedes the label section), and skip[0] = -inf
        // removes it: one loop, no scalar special case (which cost a libm exp and log1p per row).
        {
            let n = hi.min(l_len);
            lanes_loop!(V::N, j, count in lo, n => {
                // SAFETY: j + count <= n <= L: within pl, cl, pb (L + 1), emit and skip (>= L), and
                // L + j + count <= 2L < prev.len() (asserted lengths).
                let r = unsafe {
                    let from_skip = ld::<F, V>(prev, l_len + j, count) + ld(skip, j, count);
                    ld::<F, V>(emit, j, count) + lse3_v::<F, V>(ld(pl, j, count), ld(pb, j, count), from_skip)
                };
                mx = mx.max(r);
                // SAFETY: as above.
                unsafe { st(r, cl, j, count) };
            });
        }
        mx.reduce_max().max(cb[0])
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
        let (lo, hi) = band;
        // The one bounds check of the row: every index below is derived from these lengths.
        assert!(
            next.len() == 2 * l_len + 1
                && cur.len() == next.len()
                && emit.len() > l_len
                && skip.len() > l_len
        );
        if lo > 0 || hi <= l_len {
            cur.fill(F::NEG_INFINITY);
        }
        let (nb, nl) = next.split_at(l_len + 1);
        let (cb, cl) = cur.split_at_mut(l_len + 1);
        let ebv = V::splat(eb);
        let mut mx = V::splat(F::NEG_INFINITY);
        // Blanks 0..L: stay, or move on to the label after it.
        {
            let n = hi.min(l_len);
            lanes_loop!(V::N, i, count in lo, n => {
                // SAFETY: i + count <= n <= L: within nb, cb (L + 1), nl (L) and emit (L + 1).
                let r = unsafe {
                    let qb = ebv + ld(nb, i, count);
                    let ql = ld::<F, V>(emit, i, count) + ld(nl, i, count);
                    lse2_v::<F, V>(qb, ql)
                };
                mx = mx.max(r);
                // SAFETY: as above.
                unsafe { st(r, cb, i, count) };
            });
        }
        if hi > l_len {
            cb[l_len] = eb + nb[l_len];
        }
        // Labels 0..L: stay, the blank after it, or (skip) the next label. The last label has no next
        // label: its lane loads emit[L] = skip[L] = -inf (sentinels) and nothing past the end of `nl`.
        {
            let n = hi.min(l_len);
            lanes_loop!(V::N, j, count in lo, n => {
                // SAFETY: j + count <= n <= L, so j + 1 + count <= L + 1: within emit, skip (> L) and
                // nb (L + 1); nl (L) is read at j + 1 for at most L - j - 1 elements.
                let r = unsafe {
                    let stay = ld::<F, V>(emit, j, count) + ld(nl, j, count);
                    let blank = ebv + ld(nb, j + 1, count);
                    let next_label = ld::<F, V>(emit, j + 1, count)
                        + ld(nl, j + 1, count.min(l_len - j - 1))
                        + ld(skip, j + 1, count);
                    lse3_v::<F, V>(stay, blank, next_label)
                };
                mx = mx.max(r);
                // SAFETY: as above (cl has L elements).
                unsafe { st(r, cl, j, count) };
            });
        }
        mx.reduce_max().max(cb[l_len])
    }

    #[inline(always)]
    fn gather_shifted(&self, row: &[F], labels: &[u32], shift: F, out: &mut [F]) {
        let sv = V::splat(shift);
        let n = labels.len().min(out.len());
        let mut at = 0;
        while at < n {
            let count = (n - at).min(V::N);
            let r = V::gather_or(row, &labels[at..at + count], F::NEG_INFINITY) - sv;
            r.store(&mut out[at..at + count]);
            at += V::N;
        }
    }

    #[inline(always)]
    fn exp_shifted_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        let (sv, kv) = (V::splat(shift), V::splat(scale));
        let n = src.len().min(dst.len());
        // Whole vectors first, then one tail: rows of logits are long (V up to thousands), and a
        // per-iteration count costs as much as a quarter of the exp.
        let mut at = 0;
        while at + V::N <= n {
            // SAFETY: at + N <= n = min(src.len(), dst.len()).
            let r = (unsafe { ld::<F, V>(src, at, V::N) } - sv).exp() * kv;
            // SAFETY: as above.
            unsafe { st(r, dst, at, V::N) };
            at += V::N;
        }
        if at < n {
            // SAFETY: at + (n - at) = n, and n - at < N.
            let r = (unsafe { ld::<F, V>(src, at, n - at) } - sv).exp() * kv;
            // SAFETY: as above.
            unsafe { st(r, dst, at, n - at) };
        }
    }

    #[inline(always)]
    fn softmax_scaled(&self, src: &[F], shift: F, scale: F, dst: &mut [F]) {
        let (sv, kv) = (V::splat(shift), V::splat(scale));
        let n = src.len().min(dst.len());
        // Whole vectors first, then one tail: rows of logits are long (V up to thousands), and a
        // per-iteration count costs as much as a quarter of the exp.
        let mut at = 0;
        while at + V::N <= n {
            // SAFETY: at + N <= n = min(src.len(), dst.len()).
            let r = (unsafe { ld::<F, V>(src, at, V::N) } - sv).exp_le0() * kv;
            // SAFETY: as above.
            unsafe { st(r, dst, at, V::N) };
            at += V::N;
        }
        if at < n {
            // SAFETY: at + (n - at) = n, and n - at < N.
            let r = (unsafe { ld::<F, V>(src, at, n - at) } - sv).exp_le0() * kv;
            // SAFETY: as above.
            unsafe { st(r, dst, at, n - at) };
        }
    }

    #[inline(always)]
    fn posterior_weights(&self, alpha: &[F], beta: &[F], shift: F, split: usize, out: &mut [F]) -> (F, F) {
        let sv = V::splat(shift);
        let n = alpha.len().min(beta.len()).min(out.len());
        let split = split.min(n);
        // Two sections, each with its own accumulator: the blanks' sum is needed on its own (their
        // mass all goes to one class), and a vector sum of it costs nothing next to a scalar chain.
        let mut sums = [F::ZERO; 2];
        for (part, (from, to)) in [(0, split), (split, n)].into_iter().enumerate() {
            let mut acc = V::splat(F::ZERO);
            lanes_loop!(V::N, at, count in from, to => {
                // SAFETY: at + count <= to <= n, the shortest of the three lengths.
                let w = (unsafe { ld::<F, V>(alpha, at, count) + ld(beta, at, count) } - sv).exp();
                acc = acc + w;
                // SAFETY: as above.
                unsafe { st(w, out, at, count) };
            });
            sums[part] = acc.reduce_add();
        }
        (sums[0] + sums[1], sums[0])
    }
}
