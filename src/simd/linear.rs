//! One sequence's lattice rows in probability space, vectorised over its states, in `f64`.
//!
//! The one-sequence counterpart of the probability-space kernels in [`super::interleaved`]: a state is
//! a sum of two or three products, with no `exp` or `ln` per state. The values are `f64` whatever the
//! activations' type: an `f32` row rescaled to a maximum near 1 holds the states within a factor
//! `2^-126` of it, and on a few hundred frames of random logits alpha's and beta's mass drift further
//! apart than that (their overlap, the posterior total, fell to 0 in `f32` on `T = 350`), which `f64`'s
//! `2^-1022` covers with room to spare.
//!
//! A row is laid out for whole-vector loads at offsets of `-1`, `0` and `+1` from every state, with
//! zeros where a neighbour does not exist: with `H` the number of blank states `L + 1` rounded up to a
//! whole number of vectors,
//!
//! ```text
//! [0 | blank_0 .. blank_{H-1} | 0 | label_0 .. label_{H-1} | 0]      (2H + 3 values)
//! ```
//!
//! Blanks past `L` and labels past `L - 1` are 0 and stay 0: their emissions are 0 (the caller pads
//! the label emissions and skip factors with zeros up to `H + 1`), and no real state reads them except
//! as a 0 term. So every loop runs over whole vectors, with no tail and no special first state. Each
//! step computes the vectors that cover the frame's band of states that can lie on a complete path
//! (DESIGN §5) and writes zeros elsewhere.

use super::vector::Lanes;

/// Where label state `0` starts in a row of `h` blank states (see the module documentation).
#[inline(always)]
pub(crate) fn label_start(h: usize) -> usize {
    h + 2
}

/// The length of a row with `h` blank states.
#[inline(always)]
pub(crate) fn row_len(h: usize) -> usize {
    2 * h + 3
}

/// `N` values of `src` from `at`.
///
/// # Safety
/// `at + N <= src.len()`; each kernel asserts its slices' lengths once per row, and every offset below
/// is at most `2H + 3 - N` for rows, `H + 1 - N` for emissions and skip factors.
#[inline(always)]
unsafe fn get<V: Lanes<f64>>(src: &[f64], at: usize) -> V {
    debug_assert!(at + V::N <= src.len());
    // SAFETY: in bounds by the caller's contract.
    V::load(unsafe { src.get_unchecked(at..at + V::N) })
}

/// Writes `N` values of `dst` from `at`.
///
/// # Safety
/// `at + N <= dst.len()`, as for [`get`].
#[inline(always)]
unsafe fn put<V: Lanes<f64>>(v: V, dst: &mut [f64], at: usize) {
    debug_assert!(at + V::N <= dst.len());
    // SAFETY: in bounds by the caller's contract.
    v.store(unsafe { dst.get_unchecked_mut(at..at + V::N) })
}

/// The states a step computes: the vectors that cover `band = (lo, hi)` (state indices, blanks and
/// labels alike, as for [`super::Kernels::alpha_step`]), as a range `c_lo..c_hi` of state indices,
/// both multiples of `N`, `c_lo <= c_hi <= h`.
#[inline(always)]
pub(crate) fn chunks<V: Lanes<f64>>(band: (usize, usize), h: usize) -> (usize, usize) {
    let (lo, hi) = band;
    let c_hi = hi.next_multiple_of(V::N).min(h);
    ((lo / V::N * V::N).min(c_hi), c_hi)
}

/// Zeroes everything a step over `c_lo..c_hi` does not write, pads included. Outside its band a state's
/// true value is 0 or feeds no path that ends in time, so 0 changes no result; the next step and the
/// posteriors read these places.
#[inline(always)]
fn zero_outside(row: &mut [f64], h: usize, (c_lo, c_hi): (usize, usize)) {
    let lab = label_start(h);
    row[..1 + c_lo].fill(0.0);
    row[1 + c_hi..lab + c_lo].fill(0.0);
    row[lab + c_hi..].fill(0.0);
}

/// The lengths every kernel checks once per row: `h` a whole number of vectors, rows of `2h + 3`,
/// emissions and skip factors of at least `h + 1`.
#[inline(always)]
fn check<V: Lanes<f64>>(a: &[f64], b: &[f64], emit: &[f64], skip: &[f64], h: usize) {
    assert!(h % V::N == 0 && a.len() == row_len(h) && b.len() == a.len() && emit.len() > h && skip.len() > h);
}

/// One alpha step: `cur` from `prev`, with the blank emission `eb` and label emissions `emit`, both
/// already multiplied by the rescaling factor, and skip factors `skip` (1 where label `j` may follow
/// label `j - 1` directly, 0 elsewhere and for `j = 0`). Returns the largest value written.
///
/// ```text
/// alpha_t.blank[i] = eb      * (alpha_{t-1}.blank[i] + alpha_{t-1}.label[i-1])
/// alpha_t.label[j] = emit[j] * (alpha_{t-1}.label[j] + alpha_{t-1}.blank[j] + skip[j] * alpha_{t-1}.label[j-1])
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn alpha_step<V: Lanes<f64>>(
    prev: &[f64],
    cur: &mut [f64],
    eb: f64,
    emit: &[f64],
    skip: &[f64],
    h: usize,
    band: (usize, usize),
) -> f64 {
    check::<V>(prev, cur, emit, skip, h);
    let lab = label_start(h);
    let (c_lo, c_hi) = chunks::<V>(band, h);
    zero_outside(cur, h, (c_lo, c_hi));
    let eb = V::splat(eb);
    let mut mx = V::splat(0.0);
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h; the largest offset read is lab - 1 + c <= 2h + 1 - N, written 1 + c <= h + 1 - N.
        unsafe {
            let r = eb * (get::<V>(prev, 1 + c) + get(prev, lab - 1 + c));
            mx = mx.max(r);
            put(r, cur, 1 + c);
        }
        c += V::N;
    }
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h; rows are read at lab + c <= 2h + 2 - N, emit and skip at c <= h - N.
        unsafe {
            let skipped = get::<V>(skip, c) * get(prev, lab - 1 + c);
            let r = get::<V>(emit, c) * (get::<V>(prev, lab + c) + get(prev, 1 + c) + skipped);
            mx = mx.max(r);
            put(r, cur, lab + c);
        }
        c += V::N;
    }
    mx.reduce_max()
}

/// One beta step: `cur` (beta at `t`) from `next` (beta at `t + 1`), with frame `t + 1`'s emissions
/// and the skip factors as for [`alpha_step`]. Returns the largest value written.
///
/// ```text
/// beta_t.blank[i] = eb * beta_{t+1}.blank[i] + emit[i] * beta_{t+1}.label[i]
/// beta_t.label[j] = emit[j] * beta_{t+1}.label[j] + eb * beta_{t+1}.blank[j+1]
///                   + skip[j+1] * emit[j+1] * beta_{t+1}.label[j+1]
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn beta_step<V: Lanes<f64>>(
    next: &[f64],
    cur: &mut [f64],
    eb: f64,
    emit: &[f64],
    skip: &[f64],
    h: usize,
    band: (usize, usize),
) -> f64 {
    check::<V>(next, cur, emit, skip, h);
    let lab = label_start(h);
    let (c_lo, c_hi) = chunks::<V>(band, h);
    zero_outside(cur, h, (c_lo, c_hi));
    let eb = V::splat(eb);
    let mut mx = V::splat(0.0);
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h: rows at 1 + c and lab + c, emit at c, all in bounds (see `get`).
        unsafe {
            let r = eb * get::<V>(next, 1 + c) + get::<V>(emit, c) * get(next, lab + c);
            mx = mx.max(r);
            put(r, cur, 1 + c);
        }
        c += V::N;
    }
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h: the `+ 1` reads end at 2 + c + N <= h + 2 (the pad after the blanks at
        // most) and lab + 1 + c + N <= 2h + 3 (the final pad at most), emit and skip at 1 + c + N <= h + 1.
        unsafe {
            let stay = get::<V>(emit, c) * get(next, lab + c);
            let skipped = get::<V>(skip, 1 + c) * get::<V>(emit, 1 + c) * get(next, lab + 1 + c);
            let r = stay + eb * get::<V>(next, 2 + c) + skipped;
            mx = mx.max(r);
            put(r, cur, lab + c);
        }
        c += V::N;
    }
    mx.reduce_max()
}

/// `out[s] = alpha[s] * beta[s]` for the states `c_lo..c_hi` (blanks and labels; the range of
/// [`chunks`] for the frame's band: elsewhere one of the two rows is 0); returns `(sum over states, sum over the
/// blanks, exposure)`, where the exposure is the sum of `beta[s]` over the states with `alpha[s] <=
/// tiny` plus the sum of `alpha[s]` over those with `beta[s] <= tiny`: the weight that values rounded
/// below the normal range can have had in the frame's total (see `loss::group::FlushBudget`).
#[inline(always)]
pub(crate) fn posterior_products<V: Lanes<f64>>(
    alpha: &[f64],
    beta: &[f64],
    h: usize,
    (c_lo, c_hi): (usize, usize),
    tiny: f64,
    out: &mut [f64],
) -> (f64, f64, f64) {
    assert!(
        h % V::N == 0
            && c_hi <= h
            && alpha.len() == row_len(h)
            && beta.len() == alpha.len()
            && out.len() == alpha.len()
    );
    let tiny = V::splat(tiny);
    let mut exposure = V::splat(0.0);
    let mut blanks = V::splat(0.0);
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h: offset 1 + c is within the blanks of all three rows.
        blanks = blanks + unsafe { product(alpha, beta, 1 + c, tiny, &mut exposure, out) };
        c += V::N;
    }
    let mut labels = V::splat(0.0);
    let lab = label_start(h);
    let mut c = c_lo;
    while c < c_hi {
        // SAFETY: c + N <= h: offset lab + c is within the labels of all three rows.
        labels = labels + unsafe { product(alpha, beta, lab + c, tiny, &mut exposure, out) };
        c += V::N;
    }
    let blanks = blanks.reduce_add();
    (blanks + labels.reduce_add(), blanks, exposure.reduce_add())
}

/// `N` states of [`posterior_products`] from `at`: writes and returns their products, and adds their
/// part of the exposure. (A function rather than a closure: closures are not inlined into the `avx2`
/// clones.)
///
/// # Safety
/// `at + N` is within all three rows, as for [`get`].
#[inline(always)]
unsafe fn product<V: Lanes<f64>>(
    alpha: &[f64],
    beta: &[f64],
    at: usize,
    tiny: V,
    exposure: &mut V,
    out: &mut [f64],
) -> V {
    // SAFETY: by the caller's contract.
    unsafe {
        let (a, b) = (get::<V>(alpha, at), get::<V>(beta, at));
        let w = a * b;
        *exposure = *exposure + a.where_at_most(tiny, b) + b.where_at_most(tiny, a);
        put(w, out, at);
        w
    }
}
