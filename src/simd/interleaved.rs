//! The lattice's row operations for `N` sequences at once, one sequence per vector lane.
//!
//! A group of `N = V::N` sequences with the same input length and target length has the same lattice
//! shape, so its rows can be stored interleaved: state `s` of sequence `m` at `row[s * N + m]`, the
//! states in the order of the one-sequence rows (`[blank_0..=blank_L | label_0..label_{L-1}]`). Every
//! vector then holds one state of all `N` sequences, and a row is a whole number of vectors: no tail,
//! no horizontal maximum or sum (each lane's maximum is its own sequence's), and the per-row overhead of
//! a short target is shared by `N` sequences. Short targets are where that overhead dominated: `tiny`
//! (`L = 10`, 21 states) filled four vectors of 8 to hold 11 blanks and 10 labels.
//!
//! The recurrences are those of the one-sequence kernels ([`super::Kernels::alpha_step`],
//! [`super::Kernels::beta_step`]), with the emissions and skip terms interleaved the same way and the
//! per-sequence scalars (blank emission, rescaling shift) as vectors.

use super::vector::{lse2_v, lse3_v, Lanes};
use crate::Float;

/// State `i` of an interleaved row: lanes `i * N .. (i + 1) * N`.
///
/// # Safety
/// `(i + 1) * N <= src.len()`. Each kernel below asserts its slice lengths once per row and derives
/// every index from them.
#[inline(always)]
unsafe fn get<F: Float, V: Lanes<F>>(src: &[F], i: usize) -> V {
    debug_assert!((i + 1) * V::N <= src.len());
    // SAFETY: in bounds by the caller's contract.
    V::load(unsafe { src.get_unchecked(i * V::N..(i + 1) * V::N) })
}

/// Writes state `i` of an interleaved row.
///
/// # Safety
/// `(i + 1) * N <= dst.len()`, established as for [`get`].
#[inline(always)]
unsafe fn put<F: Float, V: Lanes<F>>(v: V, dst: &mut [F], i: usize) {
    debug_assert!((i + 1) * V::N <= dst.len());
    // SAFETY: in bounds by the caller's contract.
    v.store(unsafe { dst.get_unchecked_mut(i * V::N..(i + 1) * V::N) })
}

/// One alpha step for the group: `cur` from `prev` (both `(2L + 1) * N`), the blank emissions `eb`,
/// label emissions `emit` (`L * N`) and skip terms `skip` (`L * N`, 0 or `-inf`; state 0 all `-inf`).
/// Returns each lane's largest value written (`-inf` where all are). `band` as for
/// [`super::Kernels::alpha_step`]: the group's members share it, since they share `T` and `L`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn alpha_step<F: Float, V: Lanes<F>>(
    prev: &[F],
    cur: &mut [F],
    eb: V,
    emit: &[F],
    skip: &[F],
    l_len: usize,
    band: (usize, usize),
) -> V {
    let n = V::N;
    let (lo, hi) = band;
    // The one bounds check of the row: every index below is derived from these lengths.
    assert!(
        prev.len() == (2 * l_len + 1) * n
            && cur.len() == prev.len()
            && emit.len() >= l_len * n
            && skip.len() >= l_len * n
    );
    if lo > 0 || hi <= l_len {
        cur.fill(F::NEG_INFINITY);
    }
    let (pb, pl) = prev.split_at(n * (l_len + 1));
    let (cb, cl) = cur.split_at_mut(n * (l_len + 1));
    let ninf = V::splat(F::NEG_INFINITY);
    let mut mx = ninf;
    if lo == 0 {
        // SAFETY: pb and cb hold L + 1 >= 1 states.
        unsafe {
            let r = eb + get::<F, V>(pb, 0);
            mx = mx.max(r);
            put(r, cb, 0);
        }
    }
    for i in lo.max(1)..hi.min(l_len + 1) {
        // SAFETY: 1 <= i <= L: within pb, cb (L + 1 states) and pl (L states) at i - 1.
        unsafe {
            let r = eb + lse2_v::<F, V>(get(pb, i), get(pl, i - 1));
            mx = mx.max(r);
            put(r, cb, i);
        }
    }
    for j in lo..hi.min(l_len) {
        // SAFETY: j < L: within pl, cl, pb, emit and skip; the "label before" of label j is state
        // L + j of `prev` (label j - 1, or for j = 0 the last blank, removed by skip[0] = -inf), and
        // L + j < 2L + 1.
        unsafe {
            let from_skip = get::<F, V>(prev, l_len + j) + get(skip, j);
            let r = get::<F, V>(emit, j) + lse3_v::<F, V>(get(pl, j), get(pb, j), from_skip);
            mx = mx.max(r);
            put(r, cl, j);
        }
    }
    mx
}

/// One beta step for the group: `cur` (beta at `t`) from `next` (beta at `t + 1`), with frame
/// `t + 1`'s blank emissions `eb`, label emissions `emit` (`L * N`) and skip terms `skip` (`L * N`).
/// Returns each lane's largest value written. `band` as for [`alpha_step`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn beta_step<F: Float, V: Lanes<F>>(
    next: &[F],
    cur: &mut [F],
    eb: V,
    emit: &[F],
    skip: &[F],
    l_len: usize,
    band: (usize, usize),
) -> V {
    let n = V::N;
    let (lo, hi) = band;
    // The one bounds check of the row.
    assert!(
        next.len() == (2 * l_len + 1) * n
            && cur.len() == next.len()
            && emit.len() >= l_len * n
            && skip.len() >= l_len * n
    );
    if lo > 0 || hi <= l_len {
        cur.fill(F::NEG_INFINITY);
    }
    let (nb, nl) = next.split_at(n * (l_len + 1));
    let (cb, cl) = cur.split_at_mut(n * (l_len + 1));
    let mut mx = V::splat(F::NEG_INFINITY);
    // Blanks 0..L: stay, or move on to the label after it.
    for i in lo..hi.min(l_len) {
        // SAFETY: i < L: within nb, cb (L + 1 states), nl and emit (L states).
        unsafe {
            let r = lse2_v::<F, V>(eb + get(nb, i), get::<F, V>(emit, i) + get(nl, i));
            mx = mx.max(r);
            put(r, cb, i);
        }
    }
    if hi > l_len {
        // SAFETY: state L of nb and cb (L + 1 states).
        unsafe {
            let r = eb + get::<F, V>(nb, l_len);
            mx = mx.max(r);
            put(r, cb, l_len);
        }
    }
    // Labels 0..L: stay, the blank after it, or (skip) the next label; the last label has no next.
    for j in lo..hi.min(l_len) {
        // SAFETY: j < L: within emit, nl, cl; j + 1 <= L within nb; j + 1 < L within emit, nl, skip.
        unsafe {
            let stay = get::<F, V>(emit, j) + get(nl, j);
            let blank = eb + get(nb, j + 1);
            let next_label = if j + 1 < l_len {
                get::<F, V>(emit, j + 1) + get(nl, j + 1) + get(skip, j + 1)
            } else {
                V::splat(F::NEG_INFINITY)
            };
            let r = lse3_v::<F, V>(stay, blank, next_label);
            mx = mx.max(r);
            put(r, cl, j);
        }
    }
    mx
}

/// `out[s] = exp(alpha[s] + beta[s] - shift)` for every state of the group's rows (`S * N` each);
/// returns each lane's `(sum over states, sum over the first split states)` (the second: the blanks').
#[inline(always)]
pub(crate) fn posterior_weights<F: Float, V: Lanes<F>>(
    alpha: &[F],
    beta: &[F],
    shift: V,
    split: usize,
    out: &mut [F],
) -> (V, V) {
    let n = V::N;
    let states = alpha.len() / n;
    // The one bounds check of the row.
    assert!(beta.len() >= states * n && out.len() >= states * n && split <= states);
    let mut blanks = V::splat(F::ZERO);
    let mut labels = V::splat(F::ZERO);
    for s in 0..split {
        // SAFETY: s < split <= states, the length of all three rows in states.
        unsafe {
            let w = (get::<F, V>(alpha, s) + get(beta, s) - shift).exp();
            blanks = blanks + w;
            put(w, out, s);
        }
    }
    for s in split..states {
        // SAFETY: as above.
        unsafe {
            let w = (get::<F, V>(alpha, s) + get(beta, s) - shift).exp();
            labels = labels + w;
            put(w, out, s);
        }
    }
    (blanks + labels, blanks)
}

/// Each lane's largest `alpha[s] + beta[s]` over the states of the group's rows.
#[inline(always)]
pub(crate) fn max_alpha_beta<F: Float, V: Lanes<F>>(alpha: &[F], beta: &[F]) -> V {
    let states = alpha.len() / V::N;
    assert!(beta.len() >= states * V::N);
    let mut m = V::splat(F::NEG_INFINITY);
    for s in 0..states {
        // SAFETY: s < states, within both rows.
        m = m.max(unsafe { get::<F, V>(alpha, s) + get(beta, s) });
    }
    m
}

// ----- The same lattice in probability space -----
//
// Rows hold probabilities instead of their logarithms, each frame's emissions multiplied by a power of
// two that brings the previous row's maximum near 1 (the exponent goes to an `f64` offset). A state
// is then a sum of two or three products: no `exp` or `ln` per state, only one `exp` per label and
// frame, for the emissions. What this gives up is range: a value that falls below the normal range
// flushes towards 0 with an absolute error of up to the smallest normal number. The group's code
// (`loss::group`) bounds what that can cost and redoes the group in log space where the bound fails.

/// Zeroes the states outside `band` of a row split into its blanks `cb` (`L + 1` states) and labels
/// `cl` (`L`): only those, since the band covers most of a row and the rest is written anyway.
#[inline(always)]
fn zero_outside_band<F: Float>(cb: &mut [F], cl: &mut [F], band: (usize, usize), l_len: usize, n: usize) {
    let (lo, hi) = band;
    let (blank_hi, label_hi) = (hi.min(l_len + 1), hi.min(l_len));
    cb[..lo.min(l_len + 1) * n].fill(F::ZERO);
    cb[blank_hi.max(lo) * n..].fill(F::ZERO);
    cl[..lo.min(l_len) * n].fill(F::ZERO);
    cl[label_hi.max(lo) * n..].fill(F::ZERO);
}

/// One alpha step in probability space: `cur` from `prev` (both `(2L + 1) * N`), with the blank
/// emission `eb` and label emissions `emit` (`L * N`), both already multiplied by each lane's
/// rescaling factor, and the skip factors `skip` (`L * N`, 1 or 0; 0 for label 0). Returns each lane's
/// largest value written. `band` as for [`alpha_step`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn alpha_step_linear<F: Float, V: Lanes<F>>(
    prev: &[F],
    cur: &mut [F],
    eb: V,
    emit: &[F],
    skip: &[F],
    l_len: usize,
    band: (usize, usize),
) -> V {
    let n = V::N;
    let (lo, hi) = band;
    // The one bounds check of the row: every index below is derived from these lengths.
    assert!(
        prev.len() == (2 * l_len + 1) * n
            && cur.len() == prev.len()
            && emit.len() >= l_len * n
            && skip.len() >= l_len * n
    );
    let (pb, pl) = prev.split_at(n * (l_len + 1));
    let (cb, cl) = cur.split_at_mut(n * (l_len + 1));
    zero_outside_band(cb, cl, band, l_len, n);
    let mut mx = V::splat(F::ZERO);
    if lo == 0 {
        // SAFETY: pb and cb hold L + 1 >= 1 states.
        unsafe {
            let r = eb * get::<F, V>(pb, 0);
            mx = mx.max(r);
            put(r, cb, 0);
        }
    }
    for i in lo.max(1)..hi.min(l_len + 1) {
        // SAFETY: 1 <= i <= L: within pb, cb (L + 1 states) and pl (L states) at i - 1.
        unsafe {
            let r = eb * (get::<F, V>(pb, i) + get(pl, i - 1));
            mx = mx.max(r);
            put(r, cb, i);
        }
    }
    for j in lo..hi.min(l_len) {
        // SAFETY: as in `alpha_step`: L + j < 2L + 1 is label j - 1 (or for j = 0 the last blank, whose
        // skip factor is 0).
        unsafe {
            let from_skip = get::<F, V>(prev, l_len + j) * get(skip, j);
            let r = get::<F, V>(emit, j) * (get::<F, V>(pl, j) + get(pb, j) + from_skip);
            mx = mx.max(r);
            put(r, cl, j);
        }
    }
    mx
}

/// One beta step in probability space: `cur` (beta at `t`) from `next` (beta at `t + 1`), with frame
/// `t + 1`'s emissions and skip factors as for [`alpha_step_linear`]. Returns each lane's largest
/// value written.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn beta_step_linear<F: Float, V: Lanes<F>>(
    next: &[F],
    cur: &mut [F],
    eb: V,
    emit: &[F],
    skip: &[F],
    l_len: usize,
    band: (usize, usize),
) -> V {
    let n = V::N;
    let (lo, hi) = band;
    // The one bounds check of the row.
    assert!(
        next.len() == (2 * l_len + 1) * n
            && cur.len() == next.len()
            && emit.len() >= l_len * n
            && skip.len() >= l_len * n
    );
    let (nb, nl) = next.split_at(n * (l_len + 1));
    let (cb, cl) = cur.split_at_mut(n * (l_len + 1));
    zero_outside_band(cb, cl, band, l_len, n);
    let mut mx = V::splat(F::ZERO);
    for i in lo..hi.min(l_len) {
        // SAFETY: i < L: within nb, cb (L + 1 states), nl and emit (L states).
        unsafe {
            let r = eb * get(nb, i) + get::<F, V>(emit, i) * get(nl, i);
            mx = mx.max(r);
            put(r, cb, i);
        }
    }
    if hi > l_len {
        // SAFETY: state L of nb and cb (L + 1 states).
        unsafe {
            let r = eb * get::<F, V>(nb, l_len);
            mx = mx.max(r);
            put(r, cb, l_len);
        }
    }
    for j in lo..hi.min(l_len) {
        // SAFETY: as in `beta_step`.
        unsafe {
            let stay = get::<F, V>(emit, j) * get(nl, j);
            let blank = eb * get(nb, j + 1);
            let r = if j + 1 < l_len {
                stay + blank + get::<F, V>(emit, j + 1) * get(nl, j + 1) * get(skip, j + 1)
            } else {
                stay + blank
            };
            mx = mx.max(r);
            put(r, cl, j);
        }
    }
    mx
}

/// `out[s] = alpha[s] * beta[s]` for every state of the group's rows (`S * N` each, probability space);
/// returns each lane's `(sum over states, sum over the first split states, exposure)`, where the
/// exposure is the sum of `beta[s]` over the states with `alpha[s] <= tiny` plus the sum of `alpha[s]`
/// over those with `beta[s] <= tiny` (`tiny` per lane): the weight that values rounded below the
/// normal range can have had in the frame's total (see `loss::group::FlushBudget`).
#[inline(always)]
pub(crate) fn posterior_products<F: Float, V: Lanes<F>>(
    alpha: &[F],
    beta: &[F],
    split: usize,
    tiny: V,
    out: &mut [F],
) -> (V, V, V) {
    let n = V::N;
    let states = alpha.len() / n;
    // The one bounds check of the row.
    assert!(beta.len() >= states * n && out.len() >= states * n && split <= states);
    let mut blanks = V::splat(F::ZERO);
    let mut labels = V::splat(F::ZERO);
    let mut exposure = V::splat(F::ZERO);
    for s in 0..split {
        // SAFETY: s < split <= states, the length of all three rows in states.
        blanks = blanks + unsafe { product(alpha, beta, s, tiny, &mut exposure, out) };
    }
    for s in split..states {
        // SAFETY: as above.
        labels = labels + unsafe { product(alpha, beta, s, tiny, &mut exposure, out) };
    }
    (blanks + labels, blanks, exposure)
}

/// One state of [`posterior_products`]: writes and returns `alpha[s] * beta[s]`, and adds its part of
/// the exposure. (A function rather than a closure: closures are not inlined into the `avx2` clones.)
///
/// # Safety
/// `s` is within all three rows, as for [`get`].
#[inline(always)]
unsafe fn product<F: Float, V: Lanes<F>>(
    alpha: &[F],
    beta: &[F],
    s: usize,
    tiny: V,
    exposure: &mut V,
    out: &mut [F],
) -> V {
    // SAFETY: by the caller's contract.
    unsafe {
        let (a, b) = (get::<F, V>(alpha, s), get::<F, V>(beta, s));
        let w = a * b;
        *exposure = *exposure + a.where_at_most(tiny, b) + b.where_at_most(tiny, a);
        put(w, out, s);
        w
    }
}
