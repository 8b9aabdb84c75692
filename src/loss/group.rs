//! A group of `N` sequences with the same input and target lengths, run as one lattice with one
//! sequence per vector lane (the row kernels are in [`crate::simd::interleaved`]).
//!
//! Everything per state is vectorised across the group; what is per sequence (each frame's
//! normaliser, the dense part of its output row, the scatter of its posteriors to their classes, its
//! rescaling offsets in `f64`) runs once per member, with the same code and arithmetic as the
//! one-sequence path in [`super::lattice`]. The workspace of a group is its members' regions end to
//! end, which is exactly the size of every [`SeqLayout`] field times `N`.
//!
//! Label emissions are gathered from the members' rows with one vector gather per state: the group's
//! gather table holds, for state `j` and member `m`, the offset of `x_m[t][l_m(j)]` from member 0's row
//! at the same frame (the same for every frame, since the members share the frame stride).

use super::lattice::{
    band, locate_bad_value, posterior_sign_scale, split_f64, strided_norm, subtract_posteriors,
    weights_sum_to_about_one, write_dense_row, zero_row, Isa, SeqGrad, SeqJob, SeqLayout, PREFETCH_FRAMES,
};
use super::{GradOutput, InputKind};
use crate::error::CtcError;
use crate::simd::{interleaved, Kernels, Lanes};
use crate::Float;

/// The widest group: sixteen `f32` lanes (AVX-512); the fixed-size per-lane arrays below hold this many.
pub(crate) const MAX_LANES: usize = 16;

impl SeqLayout {
    /// The layout of a group of `n` members, each field `n` times the member's: state `s` (or frame
    /// `t`) of member `m` at `field + s * n + m`. Its length is the sum of the members' regions, so it
    /// cannot overflow where theirs did not.
    pub(super) fn interleaved(self, n: usize) -> Self {
        SeqLayout {
            alpha: self.alpha * n,
            norm: self.norm * n,
            offsets: self.offsets * n,
            beta: self.beta * n,
            emit: self.emit * n,
            post: self.post * n,
            skip: self.skip * n,
            len: self.len * n,
        }
    }
}

/// Writes frame `t`'s emissions of the group, shifted by `base` (per lane): the labels' into
/// `emit[..L * n]`, and returns the blank's. `gather` is the group's table (`(L + 2) * n` offsets: the
/// labels', the blank's, then the rows' own) and `src` member 0's row at `t` and everything after it.
#[inline(always)]
fn emissions<F: Float, V: Lanes<F>>(src: &[F], gather: &[u32], l_len: usize, base: V, emit: &mut [F]) -> V {
    let n = V::N;
    for (idx, out) in gather.chunks_exact(n).zip(emit.chunks_exact_mut(n)).take(l_len) {
        (V::gather_or(src, idx, F::NEG_INFINITY) - base).store(out);
    }
    V::gather_or(src, &gather[l_len * n..(l_len + 1) * n], F::NEG_INFINITY) - base
}

/// The most classes for which [`log_sum_exp_across`] is used: rows of up to four cache lines (f32).
const ACROSS_MAX_CLASSES: usize = 64;

/// The length of a frame of class vectors (column-major, `classes * N`) on the stack: 64 classes of
/// 8 lanes (2 KiB of f32). Its zeroing, once per call, is a `memset` of its whole length, which on
/// `tiny` was 2.5 % of the instructions at 16 lanes' worth; wider lanes (16 f32) take the columns
/// paths for up to 32 classes.
const FRAME_LEN: usize = ACROSS_MAX_CLASSES * 8;

/// Whether a frame of `classes` columns of `V` fits [`FRAME_LEN`] and [`ACROSS_MAX_CLASSES`].
#[inline(always)]
fn frame_fits<F: Float, V: Lanes<F>>(classes: usize) -> bool {
    classes <= ACROSS_MAX_CLASSES && classes * V::N <= FRAME_LEN
}

/// Whether a group's forward pass writes the dense part of its members' output rows (the scaled
/// softmax, from the normalisers' own `exp`s: [`Kernels::log_sum_exp_softmax`]), so that the backward
/// pass only subtracts the posteriors: for a logits gradient with contiguous rows too long for the
/// normalisers across the members ([`frame_fits`]; short rows keep [`write_group_rows`], which
/// handles the frame's rows as columns in the backward pass).
pub(crate) fn writes_dense_in_forward<F: Float, V: Lanes<F>>(
    jobs: &[SeqJob<'_, F>],
    grads: &[SeqGrad<F>],
) -> bool {
    rows_suit_dense_in_forward::<F, V>(jobs) && grads.iter().all(|g| g.stride_v == 1)
}

/// The activations' half of [`writes_dense_in_forward`], which the caller checks before it sets up
/// the members' output rows.
pub(crate) fn rows_suit_dense_in_forward<F: Float, V: Lanes<F>>(jobs: &[SeqJob<'_, F>]) -> bool {
    let first = &jobs[0];
    first.input == InputKind::Logits
        && first.output != GradOutput::Posterior
        && !frame_fits::<F, V>(first.acts.classes)
        && jobs.iter().all(|j| j.acts.stride_v == 1)
}

/// Every member's log-sum-exp of one frame of logits at once, one class per vector, across the
/// members' rows (`rows[m]`: member `m`'s row offset in `src`, member 0's row and what follows).
/// `None` if some member's frame holds NaN or `+inf`, or is all `-inf` (the caller then finds which,
/// and reports it as the one-sequence path does). `frame` is scratch space of at least `classes * N`.
///
/// One row at a time, a frame of 29 classes took four partial vectors, two horizontal reductions and a
/// scalar logarithm per sequence; across the members it is 29 vectors (loaded `N` columns at a time,
/// [`Lanes::load_columns`]), no tail, no reduction.
#[inline(always)]
fn log_sum_exp_across<F: Float, V: Lanes<F>>(
    src: &[F],
    rows: &[u32],
    classes: usize,
    frame: &mut [F],
) -> Option<V> {
    let frame = &mut frame[..classes * V::N];
    V::load_columns(src, rows, frame);
    let mut m = V::splat(F::NEG_INFINITY);
    let mut nan = V::splat(F::ZERO);
    for col in frame.chunks_exact(V::N) {
        let x = V::load(col);
        nan = x.flag_nan(nan);
        m = m.max(x);
    }
    // A `+inf` logit makes its lane's maximum `+inf` (`max` returns it over anything but NaN, which is
    // flagged apart). A lane whose maximum is -inf had no finite logit: invalid too. The lanes' sum
    // is -inf then (no lane is NaN or +inf here); it is also -inf when huge negative maxima overflow
    // the sum, which only sends a valid frame down the slower row-by-row path.
    if nan.any_flagged() || m.any_invalid() || m.reduce_add() == F::NEG_INFINITY {
        return None;
    }
    let mut sum = V::splat(F::ZERO);
    for col in frame.chunks_exact(V::N) {
        sum = sum + (V::load(col) - m).exp_le0();
    }
    Some(m + sum.ln_normal())
}

/// Member 0's activations from frame `t` on: the slice the gather table indexes.
#[inline(always)]
fn frame_src<'a, F: Float>(job: &SeqJob<'a, F>, t: usize) -> &'a [F] {
    &job.acts.data[job.acts.base + t * job.acts.stride_t..]
}

/// A group's rows of one frame, for prefetching: where they lie (in elements from member 0's row),
/// and whether to ask for them as one range. The members of a group are neighbours in the batch, so
/// in a time-major batch their rows of a frame are one block: one range costs a prefetch per cache
/// line, where a prefetch per row cost its own loop and bounds checks per member (on `tiny`, V = 29:
/// 116-byte rows, two or three lines each, those were 11 % of the instructions).
struct FrameRows {
    offsets: [usize; MAX_LANES],
    n: usize,
    classes: usize,
    /// The length of the one range from member 0's row; 0 for a range per row.
    span: usize,
}

impl FrameRows {
    /// The rows at `offsets` from member 0's (`N` of them, each `classes` long). One range where it
    /// is at least half rows; else a range per row (members far apart: batch-major layouts).
    fn new(offsets: impl Iterator<Item = usize>, classes: usize) -> Self {
        let mut rows = FrameRows { offsets: [0; MAX_LANES], n: 0, classes, span: 0 };
        let mut end = 0usize;
        for (slot, off) in rows.offsets.iter_mut().zip(offsets) {
            *slot = off;
            rows.n += 1;
            end = end.max(off.saturating_add(classes));
        }
        if end <= 2 * rows.n * classes {
            rows.span = end;
        }
        rows
    }

    /// The members' gradient rows, where their layout allows one [`FrameRows`] (the same frame stride,
    /// member 0's row first); `None` otherwise (the caller asks for each row on its own).
    fn of_grads<F>(grads: &[SeqGrad<F>]) -> Option<Self> {
        let g0 = grads.first()?;
        let start =
            |g: &SeqGrad<F>| (g.ptr as usize).wrapping_add(g.base.wrapping_mul(core::mem::size_of::<F>()));
        let s0 = start(g0);
        let mut offsets = [0usize; MAX_LANES];
        for (o, g) in offsets.iter_mut().zip(grads) {
            let bytes = start(g).checked_sub(s0)?;
            if g.stride_t != g0.stride_t || g.stride_v != 1 || bytes % core::mem::size_of::<F>() != 0 {
                return None;
            }
            *o = bytes / core::mem::size_of::<F>();
        }
        Some(Self::new(offsets.into_iter().take(grads.len()), g0.classes))
    }

    /// Asks the cache for the rows, member 0's at `row0` (a hint: any address is fine).
    #[inline(always)]
    fn prefetch<F>(&self, row0: *const F) {
        if self.span > 0 {
            crate::simd::prefetch_raw(row0, self.span);
        } else {
            for &off in &self.offsets[..self.n] {
                crate::simd::prefetch_raw(row0.wrapping_add(off), self.classes);
            }
        }
    }
}

/// Member 0's row of activations at frame `t`, as an address for [`FrameRows::prefetch`] (wrapping:
/// never dereferenced).
#[inline(always)]
fn acts_row_ptr<F: Float>(job: &SeqJob<'_, F>, t: usize) -> *const F {
    job.acts.data.as_ptr().wrapping_add(job.acts.base.wrapping_add(t.wrapping_mul(job.acts.stride_t)))
}

/// Member 0's gradient row at frame `t`, as an address for [`FrameRows::prefetch`].
#[inline(always)]
fn grad_row_ptr<F>(g: &SeqGrad<F>, t: usize) -> *const F {
    g.ptr.cast_const().wrapping_add(g.base.wrapping_add(t.wrapping_mul(g.stride_t)))
}

/// Per-lane bookkeeping of a rescaling step: a lane whose states are all `-inf` (its sequence is
/// infeasible) is shifted by 0 instead, so that its emissions stay finite and its states `-inf`.
#[inline(always)]
fn finite_shift<F: Float, V: Lanes<F>>(shift: V) -> [F; MAX_LANES] {
    let mut lanes = [F::ZERO; MAX_LANES];
    shift.store(&mut lanes[..V::N]);
    for x in &mut lanes[..V::N] {
        if *x == F::NEG_INFINITY {
            *x = F::ZERO;
        }
    }
    lanes
}

/// [`super::lattice::forward`] for a group: `jobs` are its `N` members (equal `time` and label count,
/// `time >= 1`, at least one label, contiguous rows), `gather` its gather table. Writes each member's
/// `ln p` to `lls[m]`, or its first invalid value to `errors[m]` (the same error the one-sequence path
/// reports; then no `ln p` is computed for any member).
///
/// With `linear`, the lattice is first run in probability space ([`forward_linear`], for inputs of
/// up to [`LINEAR_MAX_TIME`] frames); the result says whether that succeeded, i.e. whether the
/// workspace now holds probabilities (for [`backward_linear`]) rather than logarithms (for
/// [`backward`]). Where it did not, the log-space lattice has run instead. With `normalised`, the
/// frame normalisers in the workspace are those of an earlier call on the same group (a redo in log
/// space after [`backward_linear`] gave up), and are not computed again.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn forward<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
    linear: bool,
    normalised: bool,
    dense: Option<(&[F], &mut [SeqGrad<F>])>,
) -> bool {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len) = (first.time, first.labels.len());
    assert!(
        jobs.len() == n
            && n <= MAX_LANES
            && lls.len() == n
            && errors.len() == n
            && gather.len() == (l_len + 2) * n
            && time >= 1
            && l_len >= 1
    );
    let lay = SeqLayout::new(time, l_len).expect("workspace layout was checked at validation").interleaved(n);
    if !normalised && !frame_normalisers::<F, K, V>(k, jobs, gather, ws, &lay, errors, dense) {
        return false;
    }
    if linear && time <= LINEAR_MAX_TIME && forward_linear::<F, V>(jobs, gather, ws, &lay, lls) {
        return true;
    }
    forward_log::<F, K, V>(k, jobs, gather, ws, &lay, lls);
    false
}

/// Every member's log-normaliser of every frame, into `ws[lay.norm..]` (frame-major). Returns false,
/// with the first invalid value of each such member in `errors`, if some member's input is invalid.
/// With `dense = Some((scales, grads))` (only where [`writes_dense_in_forward`]), each member's output
/// row also receives its scaled softmax, from the same `exp`s.
#[inline(always)]
fn frame_normalisers<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lay: &SeqLayout,
    errors: &mut [Option<CtcError>],
    mut dense: Option<(&[F], &mut [SeqGrad<F>])>,
) -> bool {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, kind) = (first.time, first.labels.len(), first.input);
    // Frame normalisers, frame-major: the members' rows of one frame are neighbours in a time-major
    // batch. A member with an invalid value is not read further, as in the one-sequence path.
    let mut bad = [false; MAX_LANES];
    let rows = &gather[(l_len + 1) * n..];
    // Across the members for short rows only: each gather touches `n` rows, and past a few cache lines
    // per row (`bpe`, V = 1024) reading every row twice that way costs more than reading them in turn.
    let across = kind == InputKind::Logits && frame_fits::<F, V>(first.acts.classes);
    let acts_rows = FrameRows::new(rows.iter().map(|&r| r as usize), first.acts.classes);
    // One frame of class vectors, set up once rather than per frame.
    let mut frame = [F::ZERO; FRAME_LEN];
    for t in 0..time {
        if across {
            if t + PREFETCH_FRAMES < time {
                acts_rows.prefetch(acts_row_ptr(&first, t + PREFETCH_FRAMES));
            }
            if let Some(norm) =
                log_sum_exp_across::<F, V>(frame_src(&first, t), rows, first.acts.classes, &mut frame)
            {
                norm.store(&mut ws[lay.norm + t * n..lay.norm + (t + 1) * n]);
                continue;
            }
            // Some member's frame is invalid: find which, and its error, one row at a time below.
        }
        for (m, job) in jobs.iter().enumerate() {
            if bad[m] {
                continue;
            }
            if t + PREFETCH_FRAMES < time && !across {
                job.acts.prefetch_row(t + PREFETCH_FRAMES);
            }
            let (norm, invalid) = match (job.acts.row(t), &mut dense) {
                (Some(row), Some((scales, grads))) => {
                    // SAFETY: t < time <= max_time; this task owns the members' rows.
                    let dst = unsafe { grads[m].row_mut(t) }.expect("checked contiguous");
                    k.log_sum_exp_softmax(row, scales[m], dst)
                }
                (Some(row), None) => match kind {
                    InputKind::Logits => k.log_sum_exp_checked(row),
                    InputKind::LogProbs => (F::ZERO, !k.all_valid_log_probs(row)),
                },
                (None, _) => strided_norm(&job.acts, t, kind),
            };
            if invalid {
                errors[m] = Some(locate_bad_value(&job.acts, t, kind, job.sequence));
                bad[m] = true;
            }
            ws[lay.norm + t * n + m] = norm;
        }
    }
    !bad.iter().any(|&b| b)
}

/// The log-space lattice of [`forward`], after the normalisers.
#[inline(always)]
fn forward_log<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lay: &SeqLayout,
    lls: &mut [f64],
) {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len) = (first.time, first.labels.len());
    let s_len = 2 * l_len + 1;
    let ninf = F::NEG_INFINITY;
    for j in 0..=l_len {
        for (m, job) in jobs.iter().enumerate() {
            let ok = j >= 1 && j < l_len && job.labels[j] != job.labels[j - 1];
            ws[lay.skip + j * n + m] = if ok { F::ZERO } else { ninf };
        }
    }

    // Frame 0: only the first blank and the first label start a path.
    let (alpha_all, rest) = ws.split_at_mut(lay.norm);
    let (norms, rest) = rest.split_at_mut(lay.offsets - lay.norm);
    let (offsets, rest) = rest.split_at_mut(lay.beta - lay.offsets);
    let rest = &mut rest[lay.emit - lay.beta..];
    let (emit, rest) = rest.split_at_mut(lay.post - lay.emit);
    let skip = &rest[lay.skip - lay.post..][..l_len * n];
    let emit = &mut emit[..l_len * n];
    let row_len = s_len * n;
    {
        let norm0 = V::load(&norms[..n]);
        let row0 = &mut alpha_all[..row_len];
        row0.fill(ninf);
        let src = frame_src(&first, 0);
        let label0 = V::gather_or(src, &gather[..n], ninf) - norm0;
        let eb = V::gather_or(src, &gather[l_len * n..], ninf) - norm0;
        eb.store(&mut row0[..n]);
        label0.store(&mut row0[(l_len + 1) * n..(l_len + 2) * n]);
    }
    let mut shift = {
        let row0 = &alpha_all[..row_len];
        V::load(&row0[..n]).max(V::load(&row0[(l_len + 1) * n..]))
    };
    let mut offset = [0.0f64; MAX_LANES];
    offsets[..2 * n].fill(F::ZERO);

    for t in 1..time {
        let sh = finite_shift::<F, V>(shift);
        for m in 0..n {
            offset[m] += sh[m].to_f64();
            let (hi, lo) = split_f64::<F>(offset[m]);
            offsets[2 * t * n + m] = hi;
            offsets[(2 * t + 1) * n + m] = lo;
        }
        let base = V::load(&norms[t * n..]) + V::load(&sh[..n]);
        let eb = emissions(frame_src(&first, t), gather, l_len, base, emit);
        let (before, after) = alpha_all.split_at_mut(t * row_len);
        let prev = &before[(t - 1) * row_len..];
        let cur = &mut after[..row_len];
        shift = interleaved::alpha_step(prev, cur, eb, emit, skip, l_len, band(t, time, l_len));
    }

    let last = &alpha_all[(time - 1) * row_len..time * row_len];
    for m in 0..n {
        let end = k.lse2(last[l_len * n + m], last[(s_len - 1) * n + m]);
        lls[m] = if end == ninf { f64::NEG_INFINITY } else { end.to_f64() + offset[m] };
    }
}

/// What rounding below the normal range can have cost the probability-space lattice, per lane, and
/// the most it may cost: `EPSILON / 1024` relative in `p` and in every posterior, so that its results
/// are as accurate as the log-space lattice's.
///
/// Why this accounting is sound. Above the normal range's floor every operation of the lattice rounds
/// relatively, as in log space. Below it, errors are absolute, in units where the previous row's
/// maximum is in `[1, 2)`. A product that lands among the subnormal numbers is off by at most half
/// their spacing, `MIN_POSITIVE * EPSILON / 2`: that leaves a state of at most a few `MIN_POSITIVE`
/// ("tiny", under `8 * MIN_POSITIVE`) off by at most `8 * MIN_POSITIVE * EPSILON`
/// ([`FlushBudget::ROUNDING`]), and a larger state off by less than its own rounding. An emission
/// whose `exp` is flushed to 0 (exponent under `ln MIN_POSITIVE`; a hard zero `-inf` is exact) takes
/// up to about `6 * MIN_POSITIVE` from each state it feeds ([`FlushBudget::FLUSH`]: 8); an alpha state
/// has one emission, so it is then tiny itself, but a beta state sums over successors with their own
/// emissions and can be large, and the error is under its own rounding only where the state exceeds
/// `8 * MIN_POSITIVE / EPSILON`: for lanes where an emission may have flushed, that is "tiny". An
/// error `d` in state `s` of alpha's row `t` changes `p` by `d * beta_t(s)` (every path through the
/// state carries it), i.e. by `d * beta_t(s) / P_t` relative, where `P_t = sum_s alpha_t(s) beta_t(s)`
/// is the frame's posterior total in the rows' units; symmetrically for beta. So a frame costs at most
/// `error * exposure / P_t`, with the exposure of [`crate::simd::interleaved::posterior_products`]
/// (the beta of tiny alpha states plus the alpha of tiny beta states), and the frames' costs add up.
///
/// In practice (`f32`): random logits of standard deviation 1 on lattices of up to a few hundred
/// frames stay far inside the budget; on longer ones (`chars_long`, tried with [`LINEAR_MAX_TIME`]
/// lifted) `P_t` fell to `1e-35` of the rows' maxima and the budget ran out; peaked inputs (emissions
/// under `e^-87`, or alpha's and beta's mass on different states) exhaust it too, and are redone in
/// log space.
pub(super) struct FlushBudget<F> {
    spent: [F; MAX_LANES],
    error: [F; MAX_LANES],
    pub(super) tiny: [F; MAX_LANES],
    limit: F,
}

impl<F: Float> FlushBudget<F> {
    /// The largest value of a state that can carry an error of rounding below the normal range, in
    /// `MIN_POSITIVE` (in `MIN_POSITIVE / EPSILON` where an emission may have flushed).
    const TINY: f64 = 8.0;
    /// The error of such a state when no emission was flushed, in `MIN_POSITIVE * EPSILON`.
    const ROUNDING: f64 = 8.0;
    /// Its error when an emission may have been flushed, in `MIN_POSITIVE`.
    const FLUSH: f64 = 8.0;

    /// The budget of a group whose lanes `m` with `flushed[m]` may have had an emission flushed.
    pub(super) fn new(flushed: &[bool]) -> Self {
        let (min, eps) = (F::MIN_POSITIVE.to_f64(), F::EPSILON.to_f64());
        let mut error = [F::ZERO; MAX_LANES];
        let mut tiny = [F::ZERO; MAX_LANES];
        for ((e, t), &f) in error.iter_mut().zip(tiny.iter_mut()).zip(flushed) {
            *e = F::from_f64(if f { Self::FLUSH * min } else { Self::ROUNDING * min * eps });
            *t = F::from_f64(if f { Self::TINY * min / eps } else { Self::TINY * min });
        }
        FlushBudget { spent: [F::ZERO; MAX_LANES], error, tiny, limit: F::from_f64(eps / 1024.0) }
    }

    /// The exponent below which `exp` flushes to 0 (with a margin of 1 for its rounding near there).
    pub(super) fn flush_exponent() -> F {
        F::from_f64(F::MIN_POSITIVE.to_f64().ln() + 1.0)
    }

    /// Charges lane `m` for a frame with posterior total `total` and exposure `exposure`; false once
    /// the lane's budget is exceeded, or when `total` is under `MIN_POSITIVE / EPSILON` (or not
    /// finite). Products of two normal factors can fall below the normal range themselves (factors near
    /// `1e-158` in `f64`; fuzz found a frame whose posterior total was `1e-315`, whose reciprocal, the
    /// weights' scale, overflowed): above that floor, each product's absolute rounding is under
    /// `EPSILON^2` of the total, and the total's reciprocal is finite.
    #[inline(always)]
    pub(super) fn charge(&mut self, m: usize, total: F, exposure: F) -> bool {
        if exposure > F::ZERO {
            self.spent[m] += self.error[m] * exposure / total;
        }
        total >= rescale_limit::<F>() && total.is_finite() && self.spent[m] <= self.limit
    }

    /// Charges every lane for a frame with posterior totals `total` and exposures `exposure` (per
    /// lane); false once a lane's budget is exceeded or its `total` is under `MIN_POSITIVE / EPSILON`
    /// (see [`FlushBudget::charge`]), except in the lanes where `idle` is 1 (members without a path),
    /// which are not checked.
    ///
    /// All lanes at once (a loop over the lanes was 2 % of `tiny`). A lane with exposure 0 adds
    /// `0 / total`, which leaves its spending as it was wherever the check can pass.
    #[inline(always)]
    fn charge_lanes<V: Lanes<F>>(&mut self, idle: V, total: V, exposure: V) -> bool {
        let n = V::N;
        let spent = V::load(&self.spent[..n]) + V::load(&self.error[..n]) * exposure / total;
        spent.store(&mut self.spent[..n]);
        // Idle lanes read as total 1 and spending 0 (selects: whatever they held is dropped).
        let half = V::splat(F::from_f64(0.5));
        let total = idle.where_at_most(half, total) + idle;
        let spent = idle.where_at_most(half, spent);
        let floor = V::splat(rescale_limit::<F>());
        total.all_at_least(floor) && V::splat(self.limit).all_at_least(spent)
    }
}

/// The longest input for which [`forward`] tries the probability-space lattice. On random inputs the
/// overlap of alpha's and beta's mass (the posterior total relative to the rows' maxima) shrinks
/// exponentially with the length, and past a few hundred frames the flush budget runs out in the
/// backward pass (`chars_long`, `T = 1000`, and `bpe_large`, `T = 500`, both did), after a whole
/// forward pass and a part of the backward one, which are then wasted: `bpe_large` took 68 % more
/// instructions than in log space alone. Up to this length no group of the standard shapes ran out
/// (`tiny`, `chars`, `bpe`: `T` = 50, 150, 250). With a gradient, longer sequences are not grouped at
/// all: they run alone, in probability space in `f64` (`super::linear`), whose range they fit.
pub(crate) const LINEAR_MAX_TIME: usize = 320;

/// The range of row maxima that [`rescale`] accepts: `[MIN_POSITIVE / EPSILON, EPSILON /
/// MIN_POSITIVE]` (`2^-103..2^103` for `f32`). Inside it the rescaling factor and the next emissions
/// are normal and finite; outside, the row has lost (or gained) too much for the lattice's range.
#[inline(always)]
fn rescale_limit<F: Float>() -> F {
    F::from_f64(F::MIN_POSITIVE.to_f64() / F::EPSILON.to_f64())
}

/// Each lane's factor for the next frame's emissions: `2^-e` where `2^e <= top < 2^(e + 1)`, so that
/// the previous row's maximum becomes `[1, 2)`, exactly (a power of two rounds nothing); `e` is added
/// to the lane's `exponents` (a sum of integers, exact in `F`: at most `LINEAR_MAX_TIME * 103` for
/// `f32`; the caller turns it into `ln` units once, with one rounding). Lanes where `skip` is 1
/// (members without a path) keep factor 1, whatever their rows hold. `None` if another lane's `top`
/// is outside the range of [`rescale_limit`] (or NaN): the caller goes back to log space.
///
/// All lanes at once: a loop over the lanes, with their exponents in `f64`, was 4 % of the
/// instructions of `tiny`.
#[inline(always)]
fn rescale<F: Float, V: Lanes<F>>(top: V, skip: V, exponents: &mut V) -> Option<V> {
    // Skipped lanes read as 1 (the select drops whatever they held, NaN included).
    let x = skip.where_at_most(V::splat(F::from_f64(0.5)), top) + skip;
    let limit = V::splat(rescale_limit::<F>());
    if !(x.all_at_least(limit) && V::splat(F::ONE).all_at_least(x * limit)) {
        return None;
    }
    let (e, factor) = x.split_exponent();
    *exponents = *exponents + e;
    Some(factor)
}

/// The lanes of `skip` as 1 (true) or 0, for [`rescale`].
#[inline(always)]
fn lane_flags<F: Float, V: Lanes<F>>(skip: &[bool; MAX_LANES]) -> V {
    let mut lanes = [F::ZERO; MAX_LANES];
    for (x, &s) in lanes.iter_mut().zip(skip) {
        *x = if s { F::ONE } else { F::ZERO };
    }
    V::load(&lanes[..V::N])
}

/// [`rescale`] for one sequence's row (`super::linear`): the factor `2^-e` for a row maximum `top` in
/// `[2^e, 2^(e + 1))`, with `e * ln 2` added to `offset`; `None` if `top` is outside the range of
/// [`rescale_limit`] (or NaN).
#[inline(always)]
pub(super) fn power_of_two_scale<F: Float>(top: F, offset: &mut f64) -> Option<F> {
    let limit = rescale_limit::<F>();
    if !(top >= limit && top * limit <= F::ONE) {
        return None;
    }
    // The exponent of a normal value; f32 widens to f64 exactly.
    let e = ((top.to_f64().to_bits() >> 52) & 0x7ff) as i64 - 1023;
    *offset += e as f64 * core::f64::consts::LN_2;
    Some(F::from_f64(f64::from_bits(((1023 - e) as u64) << 52)))
}

/// Frame `t`'s emission probabilities of the group, times each lane's `scale`: the labels' into
/// `emit[..L * n]`, and returns the blank's. `norm` is the frame's normaliser per lane; the arguments
/// are as for [`emissions`]. `lowest` takes each lane's smallest exponent (`x - norm`), which tells
/// whether an emission was flushed to 0 below the normal range (see [`FlushBudget`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn emissions_linear<F: Float, V: Lanes<F>>(
    src: &[F],
    gather: &[u32],
    l_len: usize,
    norm: V,
    scale: V,
    kind: InputKind,
    emit: &mut [F],
    lowest: &mut V,
) -> V {
    let n = V::N;
    for (idx, out) in gather.chunks_exact(n).zip(emit.chunks_exact_mut(n)).take(l_len) {
        probability(V::gather_or(src, idx, F::NEG_INFINITY), norm, scale, kind, lowest).store(out);
    }
    let blank = &gather[l_len * n..(l_len + 1) * n];
    probability(V::gather_or(src, blank, F::NEG_INFINITY), norm, scale, kind, lowest)
}

/// `exp(x - norm) * scale`, and `lowest = min(lowest, x - norm)`. A logit minus its frame's
/// log-sum-exp is <= 0 (to within a rounding), the domain of the cheaper `exp_le0`; log-probabilities
/// are whatever the caller passed, so they take the general `exp`, whose overflow the next rescaling
/// step detects. Both give 0 below the normal range.
#[inline(always)]
fn probability<F: Float, V: Lanes<F>>(x: V, norm: V, scale: V, kind: InputKind, lowest: &mut V) -> V {
    let arg = x - norm;
    *lowest = lowest.min(arg);
    match kind {
        InputKind::Logits => arg.exp_le0() * scale,
        InputKind::LogProbs => arg.exp() * scale,
    }
}

/// The lattice of [`forward`] in probability space (see [`crate::simd::interleaved::alpha_step_linear`]):
/// rows of probabilities, rescaled by a power of two per frame and lane. Returns false, leaving
/// `lls` unwritten, where a live member's row maximum leaves the range of [`rescale`] or its final
/// probability is 0; the caller then runs the log-space lattice. Whether flushing below the normal
/// range cost accuracy is only known with beta: [`backward_linear`] checks it.
///
/// Members without any path (fewer frames than labels plus repeats) are known before the first
/// frame: their lanes keep factor 1 and get `ln p = -inf`, as in log space.
#[inline(always)]
fn forward_linear<F: Float, V: Lanes<F>>(
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lay: &SeqLayout,
    lls: &mut [f64],
) -> bool {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, kind) = (first.time, first.labels.len(), first.input);
    let s_len = 2 * l_len + 1;
    let row_len = s_len * n;
    let mut pathless = [false; MAX_LANES];
    for (m, job) in jobs.iter().enumerate() {
        let repeats = job.labels.windows(2).filter(|w| w[0] == w[1]).count();
        pathless[m] = time < l_len + repeats;
    }
    for j in 0..l_len {
        for (m, job) in jobs.iter().enumerate() {
            let ok = j >= 1 && job.labels[j] != job.labels[j - 1];
            ws[lay.skip + j * n + m] = if ok { F::ONE } else { F::ZERO };
        }
    }
    let (alpha_all, rest) = ws.split_at_mut(lay.norm);
    let (norms, rest) = rest.split_at_mut(lay.offsets - lay.norm);
    let (offsets, rest) = rest.split_at_mut(lay.beta - lay.offsets);
    let rest = &mut rest[lay.emit - lay.beta..];
    let (emit, rest) = rest.split_at_mut(lay.post - lay.emit);
    let skip = &rest[lay.skip - lay.post..][..l_len * n];
    let emit = &mut emit[..l_len * n];

    // Frame 0: only the first blank and the first label start a path.
    let one = V::splat(F::ONE);
    let mut lowest = V::splat(F::ZERO);
    let mut top = {
        let row0 = &mut alpha_all[..row_len];
        row0.fill(F::ZERO);
        let (src, norm0) = (frame_src(&first, 0), V::load(&norms[..n]));
        let blank = &gather[l_len * n..];
        let eb = probability(V::gather_or(src, blank, F::NEG_INFINITY), norm0, one, kind, &mut lowest);
        let label0 =
            probability(V::gather_or(src, &gather[..n], F::NEG_INFINITY), norm0, one, kind, &mut lowest);
        eb.store(&mut row0[..n]);
        label0.store(&mut row0[(l_len + 1) * n..(l_len + 2) * n]);
        eb.max(label0)
    };
    let skip_lanes = lane_flags::<F, V>(&pathless);
    let mut exponents = V::splat(F::ZERO);
    for t in 1..time {
        let Some(scale) = rescale::<F, V>(top, skip_lanes, &mut exponents) else {
            return false;
        };
        let norm = V::load(&norms[t * n..]);
        let eb = emissions_linear(frame_src(&first, t), gather, l_len, norm, scale, kind, emit, &mut lowest);
        let (before, after) = alpha_all.split_at_mut(t * row_len);
        let prev = &before[(t - 1) * row_len..];
        top = interleaved::alpha_step_linear(
            prev,
            &mut after[..row_len],
            eb,
            emit,
            skip,
            l_len,
            band(t, time, l_len),
        );
    }

    // For the backward pass, which lanes may have flushed an emission (the backward pass reads the
    // same exponents): the offsets region, unused in probability space.
    let mut lows = [F::ZERO; MAX_LANES];
    lowest.store(&mut lows[..n]);
    let flush_exponent = FlushBudget::<F>::flush_exponent();
    for m in 0..n {
        offsets[m] = if lows[m] < flush_exponent { F::ONE } else { F::ZERO };
    }
    let mut exps = [F::ZERO; MAX_LANES];
    exponents.store(&mut exps[..n]);
    let last = &alpha_all[(time - 1) * row_len..time * row_len];
    for m in 0..n {
        if pathless[m] {
            lls[m] = f64::NEG_INFINITY;
            continue;
        }
        // A path lost to flushing would read as ln p = -inf, which the backward pass (and its test of
        // the flush budget) never sees: that lane goes back to log space now. So does an end that
        // overflowed: the last row is never rescaled, and log-probs far above 0 (valid input) make
        // its emissions `+inf` (fuzz: one frame of log-probs near 1e132 read as ln p = +inf).
        let end = last[l_len * n + m] + last[(s_len - 1) * n + m];
        if !(end > F::ZERO && end.is_finite()) {
            return false;
        }
        lls[m] = end.to_f64().ln() + exps[m].to_f64() * core::f64::consts::LN_2;
    }
    true
}

/// [`super::lattice::backward`] for a group: beta and the output rows of every member. `lls[m]` is
/// what [`forward`] wrote (`-inf`: the member gets zero rows), `scales[m]` its gradient factor,
/// `grads[m]` its output rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
    dense_done: bool,
) {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, out) = (first.time, first.labels.len(), first.output);
    assert!(
        jobs.len() == n
            && n <= MAX_LANES
            && lls.len() == n
            && scales.len() == n
            && grads.len() == n
            && gather.len() == (l_len + 2) * n
            && time >= 1
            && l_len >= 1
    );
    let s_len = 2 * l_len + 1;
    let row_len = s_len * n;
    let ninf = F::NEG_INFINITY;
    let lay = SeqLayout::new(time, l_len).expect("workspace layout was checked at validation").interleaved(n);

    let live = zero_unused_rows(lls, time, grads);
    if !live[..n].iter().any(|&l| l) {
        return;
    }

    let (head, tail) = ws.split_at_mut(lay.beta);
    let alpha = &head[..lay.norm];
    let norm = &head[lay.norm..lay.offsets];
    let offsets = &head[lay.offsets..lay.beta];
    let (beta_rows, tail) = tail.split_at_mut(2 * row_len);
    let (mut cur, mut next) = beta_rows.split_at_mut(row_len);
    let (emit, tail) = tail.split_at_mut(lay.post - lay.emit);
    let emit = &mut emit[..l_len * n];
    let (post, skip_all) = tail.split_at_mut(lay.skip - lay.post);
    let skip = &skip_all[..l_len * n];

    // beta at the last frame: 0 at the two end states, -inf elsewhere.
    cur.fill(ninf);
    cur[l_len * n..(l_len + 1) * n].fill(F::ZERO);
    cur[(s_len - 1) * n..].fill(F::ZERO);
    let mut shift = [F::ZERO; MAX_LANES];
    let mut beta_offset = [0.0f64; MAX_LANES];
    let far_alpha = core::mem::size_of_val(alpha) > 1 << 18;
    let acts_rows = FrameRows::new(gather[(l_len + 1) * n..].iter().map(|&r| r as usize), first.acts.classes);
    let grad_rows = FrameRows::of_grads(grads);
    let mut t = time;
    while t > 0 {
        t -= 1;
        if t >= PREFETCH_FRAMES {
            prefetch_frame(jobs, grads, &acts_rows, grad_rows.as_ref(), t - PREFETCH_FRAMES);
        }
        if far_alpha && t >= 2 {
            crate::simd::prefetch(&alpha[(t - 2) * row_len..(t - 1) * row_len]);
        }
        if t + 1 < time {
            for m in 0..n {
                beta_offset[m] += shift[m].to_f64();
            }
            let base = V::load(&norm[(t + 1) * n..]) + V::load(&shift[..n]);
            let eb = emissions(frame_src(&first, t + 1), gather, l_len, base, emit);
            let mx = interleaved::beta_step(next, cur, eb, emit, skip, l_len, band(t, time, l_len));
            shift = finite_shift::<F, V>(mx);
        }
        // Each lane's shift: ln p minus the rows' offsets, in f64 (see lattice::backward).
        let mut rel = [F::ZERO; MAX_LANES];
        for m in 0..n {
            if live[m] {
                let alpha_offset = offsets[2 * t * n + m].to_f64() + offsets[(2 * t + 1) * n + m].to_f64();
                rel[m] = F::from_f64(lls[m] - alpha_offset - beta_offset[m]);
            }
        }
        let alpha_t = &alpha[t * row_len..(t + 1) * row_len];
        let post = &mut post[..row_len];
        let (total, blank_mass) =
            interleaved::posterior_weights(alpha_t, cur, V::load(&rel[..n]), l_len + 1, post);
        let mut totals = [F::ZERO; MAX_LANES];
        let mut blanks = [F::ZERO; MAX_LANES];
        total.store(&mut totals[..n]);
        blank_mass.store(&mut blanks[..n]);
        // As in lattice::write_output_row: a lane whose weights do not sum to about 1 is redone with
        // its frame's own largest alpha + beta (rare: activations near the format's range).
        let mut usable = live;
        if (0..n).any(|m| live[m] && !weights_sum_to_about_one(totals[m])) {
            let mut top = [F::ZERO; MAX_LANES];
            interleaved::max_alpha_beta::<F, V>(alpha_t, cur).store(&mut top[..n]);
            for m in 0..n {
                if live[m] && !weights_sum_to_about_one(totals[m]) {
                    rel[m] = top[m];
                    usable[m] = top[m].is_finite();
                }
            }
            let (total, blank_mass) =
                interleaved::posterior_weights(alpha_t, cur, V::load(&rel[..n]), l_len + 1, post);
            total.store(&mut totals[..n]);
            blank_mass.store(&mut blanks[..n]);
        }
        for m in 0..n {
            if live[m] {
                let w = posterior_sign_scale(out, scales[m]) / totals[m];
                let weights = usable[m].then(|| (blanks[m] * w, &post[(l_len + 1) * n + m..], w));
                write_member_row(
                    k,
                    &jobs[m],
                    &mut grads[m],
                    t,
                    norm[t * n + m],
                    scales[m],
                    n,
                    weights,
                    dense_done,
                );
            }
        }
        core::mem::swap(&mut cur, &mut next);
    }
}

/// Asks the cache for the group's rows of activations and output at frame `t` (`t < time`).
#[inline(always)]
fn prefetch_frame<F: Float>(
    jobs: &[SeqJob<'_, F>],
    grads: &[SeqGrad<F>],
    acts_rows: &FrameRows,
    grad_rows: Option<&FrameRows>,
    t: usize,
) {
    acts_rows.prefetch(acts_row_ptr(&jobs[0], t));
    match grad_rows {
        Some(rows) => rows.prefetch(grad_row_ptr(&grads[0], t)),
        None => grads.iter().for_each(|g| g.prefetch_row(t)),
    }
}

/// Zeroes the output rows that carry no signal: frames past the input length, and every frame of a
/// member without a path (`ln p = -inf`). Returns which members are live (have a path).
fn zero_unused_rows<F: Float>(lls: &[f64], time: usize, grads: &mut [SeqGrad<F>]) -> [bool; MAX_LANES] {
    let mut live = [false; MAX_LANES];
    for (m, g) in grads.iter_mut().enumerate() {
        live[m] = lls[m] != f64::NEG_INFINITY;
        let from = if live[m] { time } else { 0 };
        for t in from..g.max_time {
            // SAFETY: t < max_time; this task owns the member's rows.
            unsafe { zero_row(g, t) };
        }
    }
    live
}

/// [`backward`] after a successful [`forward_linear`]: beta in probability space, and the output rows
/// of every member. Returns false where a beta row's maximum leaves the range of [`rescale`] or a lane
/// exceeds its [`FlushBudget`]: the rows written so far
/// are then incomplete, and the caller redoes the group in log space (forward and backward), which
/// rewrites every row. The arguments are [`backward`]'s.
///
/// The posterior weights are `alpha * beta` normalised by their sum over the frame's states, so the
/// rows' scale factors (and `ln p`) are not needed here.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward_linear<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
    dense_done: bool,
) -> bool {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, kind, out) = (first.time, first.labels.len(), first.input, first.output);
    assert!(
        jobs.len() == n
            && n <= MAX_LANES
            && lls.len() == n
            && scales.len() == n
            && grads.len() == n
            && gather.len() == (l_len + 2) * n
            && time >= 1
            && l_len >= 1
    );
    let s_len = 2 * l_len + 1;
    let row_len = s_len * n;
    let lay = SeqLayout::new(time, l_len).expect("workspace layout was checked at validation").interleaved(n);
    let live = zero_unused_rows(lls, time, grads);
    if !live[..n].iter().any(|&l| l) {
        return true;
    }
    let mut idle = [true; MAX_LANES];
    for m in 0..n {
        idle[m] = !live[m];
    }
    let idle_lanes = lane_flags::<F, V>(&idle);

    let (head, tail) = ws.split_at_mut(lay.beta);
    let alpha = &head[..lay.norm];
    let norm = &head[lay.norm..lay.offsets];
    let (beta_rows, tail) = tail.split_at_mut(2 * row_len);
    let (mut cur, mut next) = beta_rows.split_at_mut(row_len);
    let (emit_all, tail) = tail.split_at_mut(lay.post - lay.emit);
    // The labels' emissions, then (for write_group_rows) the blank's.
    let (emit, emit_blank) = emit_all[..(l_len + 1) * n].split_at_mut(l_len * n);
    let (post, skip_all) = tail.split_at_mut(lay.skip - lay.post);
    let skip = &skip_all[..l_len * n];

    // beta at the last frame: 1 at the two end states, 0 elsewhere.
    cur.fill(F::ZERO);
    cur[l_len * n..(l_len + 1) * n].fill(F::ONE);
    cur[(s_len - 1) * n..].fill(F::ONE);
    let mut top_beta = V::splat(F::ONE);
    let mut unused_exponents = V::splat(F::ZERO);
    // Which lanes' emissions may have flushed, as the forward pass found.
    let mut flushed = [false; MAX_LANES];
    for (m, f) in flushed[..n].iter_mut().enumerate() {
        *f = head[lay.offsets + m] != F::ZERO;
    }
    let mut budget = FlushBudget::<F>::new(&flushed[..n]);
    let tiny = V::load(&budget.tiny[..n]);
    let mut unused_lowest = V::splat(F::ZERO);
    let far_alpha = core::mem::size_of_val(alpha) > 1 << 18;
    let acts_rows = FrameRows::new(gather[(l_len + 1) * n..].iter().map(|&r| r as usize), first.acts.classes);
    let grad_rows = FrameRows::of_grads(grads);
    let by_columns = by_columns::<F, V>(jobs, grads);
    // write_group_rows writes whole rows; a forward pass writes dense rows only where it is not used.
    debug_assert!(!(by_columns && dense_done));
    // Per lane: the posteriors' factor, and the dense rows' scale (0 for dead lanes: a row of zeros,
    // as zero_unused_rows wrote).
    let (mut signs, mut dense) = ([F::ZERO; MAX_LANES], [F::ZERO; MAX_LANES]);
    for m in 0..n {
        signs[m] = posterior_sign_scale(out, scales[m]);
        dense[m] = if live[m] { scales[m] } else { F::ZERO };
    }
    let (sign_scales, dense_scales) = (V::load(&signs[..n]), V::load(&dense[..n]));
    let half = V::splat(F::from_f64(0.5));
    let mut frame = [F::ZERO; FRAME_LEN];
    let mut t = time;
    while t > 0 {
        t -= 1;
        if t >= PREFETCH_FRAMES {
            prefetch_frame(jobs, grads, &acts_rows, grad_rows.as_ref(), t - PREFETCH_FRAMES);
        }
        if far_alpha && t >= 2 {
            crate::simd::prefetch(&alpha[(t - 2) * row_len..(t - 1) * row_len]);
        }
        if t + 1 < time {
            let Some(scale) = rescale::<F, V>(top_beta, idle_lanes, &mut unused_exponents) else {
                return false;
            };
            let eb = if by_columns {
                // Frame t + 1's emission probabilities, which write_group_rows left in `emit` and
                // `emit_blank` (the same products as emissions_linear's, without their exp).
                for e in emit.chunks_exact_mut(n) {
                    (V::load(e) * scale).store(e);
                }
                V::load(emit_blank) * scale
            } else {
                let frame_norm = V::load(&norm[(t + 1) * n..]);
                let src = frame_src(&first, t + 1);
                emissions_linear(src, gather, l_len, frame_norm, scale, kind, emit, &mut unused_lowest)
            };
            top_beta = interleaved::beta_step_linear(next, cur, eb, emit, skip, l_len, band(t, time, l_len));
        }
        let alpha_t = &alpha[t * row_len..(t + 1) * row_len];
        let post = &mut post[..row_len];
        let (total, blank_mass, exposure) =
            interleaved::posterior_products::<F, V>(alpha_t, cur, l_len + 1, tiny, post);
        if !budget.charge_lanes(idle_lanes, total, exposure) {
            return false;
        }
        if by_columns {
            // Dead lanes get weights 0 (and a dense scale of 0).
            let w = idle_lanes.where_at_most(half, sign_scales / total);
            let weights = (blank_mass * w, w, &post[(l_len + 1) * n..]);
            let norm_t = V::load(&norm[t * n..]);
            let emissions = (&mut *emit, &mut *emit_blank);
            write_group_rows(
                jobs,
                grads,
                gather,
                t,
                norm_t,
                dense_scales,
                weights,
                idle_lanes,
                emissions,
                &mut frame,
            );
        } else {
            let mut totals = [F::ZERO; MAX_LANES];
            let mut blanks = [F::ZERO; MAX_LANES];
            total.store(&mut totals[..n]);
            blank_mass.store(&mut blanks[..n]);
            for m in 0..n {
                if live[m] {
                    let w = posterior_sign_scale(out, scales[m]) / totals[m];
                    let weights = Some((blanks[m] * w, &post[(l_len + 1) * n + m..], w));
                    write_member_row(
                        k,
                        &jobs[m],
                        &mut grads[m],
                        t,
                        norm[t * n + m],
                        scales[m],
                        n,
                        weights,
                        dense_done,
                    );
                }
            }
        }
        core::mem::swap(&mut cur, &mut next);
    }
    true
}

/// Whether [`write_group_rows`] writes the group's output rows: lanes with fast columns, a logits
/// gradient (a softmax per row) with one blank class, rows short enough for a frame of class
/// vectors, and contiguous rows.
fn by_columns<F: Float, V: Lanes<F>>(jobs: &[SeqJob<'_, F>], grads: &[SeqGrad<F>]) -> bool {
    let first = &jobs[0];
    V::FAST_COLUMNS
        && first.input == InputKind::Logits
        && first.output == GradOutput::Gradient
        && frame_fits::<F, V>(first.acts.classes)
        && jobs
            .iter()
            .all(|j| j.blank == first.blank && j.acts.stride_v == 1 && j.acts.classes == first.acts.classes)
        && grads.iter().all(|g| g.stride_v == 1 && g.classes == first.acts.classes)
}

/// Every member's output row at frame `t` (`t < time`) at once, as [`write_member_row`] writes them
/// one at a time: `softmax(x) * scale` (`scale` per lane, 0 for a member without a path, whose row is
/// then zeros) minus the posterior weights: the blanks' `blank_w` per lane, and the labels' products
/// `labels[j * N + m]` (the group's interleaved label states) times `w` (per lane), except in the
/// lanes where `idle` is 1 (members without a path). `gather` is the group's table, `frame` scratch space of at least
/// `classes * N`. Also leaves frame `t`'s emission probabilities (`exp(x - norm)`, unscaled) in
/// `emit` (the labels', `L * N`) and `emit_blank` (`N`), which spares the beta step of frame `t - 1`
/// its gathers and exps.
///
/// The members' rows are read and written as columns ([`Lanes::load_columns`],
/// [`Lanes::store_columns`]): one row at a time, 29 classes took four vectors, the last partial, and
/// each row's setup and bounds checks were as many instructions again (callgrind, `tiny`). The
/// arithmetic is the same, element by element, so the rows are too.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_group_rows<F: Float, V: Lanes<F>>(
    jobs: &[SeqJob<'_, F>],
    grads: &mut [SeqGrad<F>],
    gather: &[u32],
    t: usize,
    norm: V,
    scale: V,
    (blank_w, w, labels): (V, V, &[F]),
    idle: V,
    (emit, emit_blank): (&mut [F], &mut [F]),
    frame: &mut [F],
) {
    let n = V::N;
    let first = &jobs[0];
    let l_len = first.labels.len();
    let rows = &gather[(l_len + 1) * n..(l_len + 2) * n];
    let labels = &labels[..l_len * n];
    let frame = &mut frame[..first.acts.classes * n];
    V::load_columns(frame_src(first, t), rows, frame);
    for col in frame.chunks_exact_mut(n) {
        (V::load(col) - norm).exp_le0().store(col);
    }
    // The emission probabilities of frame t, for the beta step of frame t - 1: its labels' and
    // blank's columns, before the gradient's scale.
    for (e, at) in emit.chunks_exact_mut(n).zip(gather.chunks_exact(n)).take(l_len) {
        V::load_at_columns(frame, at, rows).store(e);
    }
    V::load(&frame[first.blank * n..]).store(emit_blank);
    for col in frame.chunks_exact_mut(n) {
        (V::load(col) * scale).store(col);
    }
    let blank = &mut frame[first.blank * n..(first.blank + 1) * n];
    (V::load(blank) - blank_w).store(blank);
    // Label j's class in member m's row is its gather-table entry less the row's offset. Dead lanes
    // (w = 0) take nothing (their products, finite or not, are dropped).
    let half = V::splat(F::from_f64(0.5));
    for (p, at) in labels.chunks_exact(n).zip(gather.chunks_exact(n)) {
        let d = idle.where_at_most(half, V::load(p) * w);
        d.sub_at_columns(frame, at, rows);
    }
    let mut out: [&mut [F]; MAX_LANES] = Default::default();
    for (o, g) in out.iter_mut().zip(grads.iter_mut()) {
        assert!(t < g.max_time);
        // SAFETY: t < max_time (asserted); the caller's task owns the members' rows, which are
        // distinct (the validated layout is injective).
        *o = unsafe { g.row_mut(t) }.expect("a group's output rows are contiguous");
    }
    V::store_columns(frame, &mut out[..n]);
}

/// Writes member `m`'s output row at frame `t` (`t < max_time`; the task owns the member's rows): its
/// dense part (unless the forward pass wrote it: `dense_done`), then, unless `weights` is `None` (no state carries mass), its posteriors: `blank` (the
/// blank's weight, scaled) and the label weights `labels[j * n]` (the member's lane of the group's
/// interleaved label states, from `L + 1` on) times `w`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_member_row<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    g: &mut SeqGrad<F>,
    t: usize,
    frame_norm: F,
    scale: F,
    n: usize,
    weights: Option<(F, &[F], F)>,
    dense_done: bool,
) {
    let (blank, kind, out) = (job.blank, job.input, job.output);
    assert!(t < g.max_time);
    if !dense_done {
        // SAFETY: t < max_time (asserted); the caller's task owns the member's rows.
        unsafe { write_dense_row(k, &job.acts, kind, out, t, frame_norm, scale, g) };
    }
    let Some((blank_w, labels, w)) = weights else {
        return;
    };
    let l_len = job.labels.len();
    let labels = &labels[..(l_len - 1) * n + 1];
    // SAFETY: as above.
    match unsafe { g.row_mut(t) } {
        Some(row) => {
            row[blank] -= blank_w;
            for (j, &l) in job.labels.iter().enumerate() {
                // SAFETY: j < L, so j * n < labels.len(); labels were validated < classes = row.len().
                // Unchecked: the two bounds checks per label were half the cost of this scatter
                // (callgrind, `chars`).
                unsafe { *row.get_unchecked_mut(l as usize) -= *labels.get_unchecked(j * n) * w };
            }
        }
        None => {
            let labels_w = (0..l_len).map(|j| labels[j * n] * w);
            // SAFETY: as above; labels and blank were validated < classes.
            unsafe { subtract_posteriors(g, t, blank, job.labels, blank_w, labels_w) };
        }
    }
}

/// [`forward`], compiled for `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_on<F: Float, K: Kernels<F>, V: Lanes<F>>(
    isa: Isa,
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
    linear: bool,
    normalised: bool,
    dense: Option<(&[F], &mut [SeqGrad<F>])>,
) -> bool {
    match isa {
        Isa::Baseline => forward::<F, K, V>(k, jobs, gather, ws, lls, errors, linear, normalised, dense),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe {
            forward_avx2_fma::<F, K, V>(k, jobs, gather, ws, lls, errors, linear, normalised, dense)
        },
    }
}

/// [`backward`] (`linear` false) or [`backward_linear`] (true), compiled for `isa`. Returns false
/// where the linear pass gave up (see [`backward_linear`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_on<F: Float, K: Kernels<F>, V: Lanes<F>>(
    isa: Isa,
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
    linear: bool,
    dense_done: bool,
) -> bool {
    match isa {
        Isa::Baseline => {
            backward_either::<F, K, V>(k, jobs, gather, lls, scales, ws, grads, linear, dense_done)
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe {
            backward_avx2_fma::<F, K, V>(k, jobs, gather, lls, scales, ws, grads, linear, dense_done)
        },
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_either<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
    linear: bool,
    dense_done: bool,
) -> bool {
    if linear {
        backward_linear::<F, K, V>(k, jobs, gather, lls, scales, ws, grads, dense_done)
    } else {
        backward::<F, K, V>(k, jobs, gather, lls, scales, ws, grads, dense_done);
        true
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_avx2_fma<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
    linear: bool,
    normalised: bool,
    dense: Option<(&[F], &mut [SeqGrad<F>])>,
) -> bool {
    forward::<F, K, V>(k, jobs, gather, ws, lls, errors, linear, normalised, dense)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx2_fma<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
    linear: bool,
    dense_done: bool,
) -> bool {
    backward_either::<F, K, V>(k, jobs, gather, lls, scales, ws, grads, linear, dense_done)
}
