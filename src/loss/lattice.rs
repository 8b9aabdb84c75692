//! One sequence's lattice: the frame normaliser, alpha, and beta fused with the gradient.
//!
//! States are kept in two arrays per frame (DESIGN §3) so that every access is contiguous:
//! `blank[i]`, `i = 0..=L`, is the blank after `i` labels; `label[j]`, `j = 0..L`, holds `l_{j+1}`.
//! With `e_t(k)` the log-probability of class `k` at frame `t`:
//!
//! ```text
//! alpha_t.blank[i] = e_t(b)       + LSE(alpha_{t-1}.blank[i], alpha_{t-1}.label[i-1])
//! alpha_t.label[j] = e_t(l_{j+1}) + LSE(alpha_{t-1}.label[j], alpha_{t-1}.blank[j],
//!                                       alpha_{t-1}.label[j-1] + skip[j])
//! beta_t.blank[i]  = LSE(q.blank[i], q.label[i])
//! beta_t.label[j]  = LSE(q.label[j], q.blank[j+1], q.label[j+1] + skip[j+1])
//!     where q.x = e_{t+1}(x) + beta_{t+1}.x
//! ```
//!
//! `skip[j]` is `0` where label `j` may be entered straight from label `j - 1` (they differ) and `-inf`
//! where it may not (a repeat needs the blank between). Adding `-inf` is a select, never a product with
//! a mask, and it is exact: no operand is ever `+inf` (validated inputs), so `x + -inf = -inf`.

use super::{GradOutput, InputKind};
use crate::error::CtcError;
use crate::simd::{Avx2FmaToken, Kernels};
use crate::Float;

/// Where one sequence's pieces of the workspace start, relative to its region, in elements of `F`.
///
/// This is the only place the per-sequence workspace is laid out; [`SeqLayout::len`] is the size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeqLayout {
    /// `T` rows of `S = 2L + 1`: `[blank_0..=blank_L | label_0..label_{L-1}]`, each row rescaled.
    pub alpha: usize,
    /// `T` per-frame log-normalisers (log-sum-exp of the logits; 0 for log-probs).
    pub norm: usize,
    /// `2T`: each alpha row's offset `C_t` as a pair `(hi, lo)` of `F` with `C_t = hi + lo`.
    pub offsets: usize,
    /// Two beta rows of `S`.
    pub beta: usize,
    /// Gathered label emissions of one frame, `L` (plus one `-inf` sentinel).
    pub emit: usize,
    /// One row of `S` posterior weights.
    pub post: usize,
    /// `skip[j]` for `j = 0..=L` (the last is a `-inf` sentinel).
    pub skip: usize,
    /// Total elements.
    pub len: usize,
}

impl SeqLayout {
    /// The layout for a sequence of `time` frames and `labels` target labels; `None` on overflow.
    pub(crate) fn new(time: usize, labels: usize) -> Option<Self> {
        let s = labels.checked_mul(2)?.checked_add(1)?;
        let alpha = 0;
        let norm = time.checked_mul(s)?;
        let offsets = norm.checked_add(time)?;
        let beta = offsets.checked_add(time.checked_mul(2)?)?;
        let emit = beta.checked_add(s.checked_mul(2)?)?;
        let post = emit.checked_add(labels + 1)?;
        let skip = post.checked_add(s)?;
        let len = skip.checked_add(labels + 1)?;
        Some(SeqLayout { alpha, norm, offsets, beta, emit, post, skip, len })
    }
}

/// The states of frame `t` that matter, as an index range `lo..hi` over blanks `i` and labels `j`
/// (DESIGN §5). The start reaches state `s` no earlier than frame `s - 1`: blank `i` (`s = 2i`) and
/// label `j` (`s = 2j + 1`) need `i, j <= t`. From label `j` the end (the last label) is `L - 1 - j`
/// steps away, from blank `i` one more, so with `d = T - 1 - t` frames left both need `>= L - 1 - d`
/// (a superset for blanks and for repeated labels, which need more steps). Outside this range alpha
/// is `-inf` or feeds no path that ends in time, and beta likewise, so skipping it changes no result.
#[inline(always)]
pub(super) fn band(t: usize, time: usize, l_len: usize) -> (usize, usize) {
    let d = time - 1 - t;
    (l_len.saturating_sub(1 + d), t + 1)
}

/// Splits an `f64` into two `F` whose sum (in `f64`) is the value to within `F`'s precision squared.
#[inline(always)]
pub(super) fn split_f64<F: Float>(x: f64) -> (F, F) {
    let hi = F::from_f64(x);
    (hi, F::from_f64(x - hi.to_f64()))
}

/// One sequence's share of a batch call: its activations, labels and length, and the options the
/// lattice needs. Built once per sequence and per pass; the per-ISA entry points take it whole.
#[derive(Clone, Copy)]
pub(crate) struct SeqJob<'a, F> {
    pub acts: SeqActs<'a, F>,
    pub labels: &'a [u32],
    /// Input length `T_b` in frames.
    pub time: usize,
    /// Index `b` in the batch (named in errors).
    pub sequence: usize,
    pub blank: usize,
    pub input: InputKind,
    pub output: GradOutput,
}

/// Read access to one sequence's activations: element `(t, k)` at `data[base + t*st + k*sv]`.
#[derive(Clone, Copy)]
pub(crate) struct SeqActs<'a, F> {
    pub data: &'a [F],
    pub base: usize,
    pub stride_t: usize,
    pub stride_v: usize,
    pub classes: usize,
}

impl<F: Float> SeqActs<'_, F> {
    #[inline(always)]
    pub(super) fn at(&self, t: usize, k: usize) -> F {
        self.data[self.base + t * self.stride_t + k * self.stride_v]
    }

    /// Asks the cache for frame `t`'s row (contiguous rows only; a hint, never a fault).
    #[inline(always)]
    pub(super) fn prefetch_row(&self, t: usize) {
        if let Some(row) = self.row(t) {
            crate::simd::prefetch(row);
        }
    }

    /// Asks the cache for the elements of frame `t` that a pass reads sparsely, at `blank` and at
    /// `labels` (contiguous rows only): the lines holding them where the row is long (thousands of
    /// classes, where the whole row would be mostly waste), else the whole row, in fewer lines.
    #[inline(always)]
    pub(super) fn prefetch_labels(&self, t: usize, blank: usize, labels: &[u32]) {
        if let Some(row) = self.row(t) {
            prefetch_sparse(row.as_ptr(), row.len(), blank, labels);
        }
    }

    /// Frame `t` as a contiguous slice, when the class stride is 1.
    #[inline(always)]
    pub(super) fn row(&self, t: usize) -> Option<&[F]> {
        if self.stride_v == 1 {
            let start = self.base + t * self.stride_t;
            Some(&self.data[start..start + self.classes])
        } else {
            None
        }
    }
}

/// How many frames ahead the passes ask for the rows they will read: in a time-major batch a
/// sequence's consecutive frames are `B * V` elements apart, a stride the hardware prefetchers do not
/// follow, and each frame's work (a few hundred cycles for short targets) is shorter than a miss to
/// memory.
pub(super) const PREFETCH_FRAMES: usize = 4;

/// Prefetches the lines of a contiguous row of `len` elements at `row` that hold `blank` and
/// `labels`, or the whole row where that is fewer lines.
#[inline(always)]
fn prefetch_sparse<F>(row: *const F, len: usize, blank: usize, labels: &[u32]) {
    let lines = (len * core::mem::size_of::<F>()).div_ceil(64);
    if lines <= labels.len() + 1 {
        crate::simd::prefetch_raw(row, len);
        return;
    }
    crate::simd::prefetch_raw(row.wrapping_add(blank), 1);
    for &l in labels {
        crate::simd::prefetch_raw(row.wrapping_add(l as usize), 1);
    }
}

/// Write access to one sequence's gradient rows: element `(t, k)` at `ptr[base + t*st + k*sv]`.
pub(crate) struct SeqGrad<F> {
    pub ptr: *mut F,
    pub base: usize,
    pub stride_t: usize,
    pub stride_v: usize,
    pub classes: usize,
    pub max_time: usize,
}

impl<F: Float> SeqGrad<F> {
    /// Row `t` as a mutable slice when contiguous.
    ///
    /// # Safety
    /// The view this came from was validated in bounds and non-aliasing, `t < max_time`, and no other
    /// thread writes this sequence's rows (each sequence is processed by exactly one task).
    #[inline(always)]
    pub(super) unsafe fn row_mut<'r>(&mut self, t: usize) -> Option<&'r mut [F]> {
        debug_assert!(t < self.max_time);
        if self.stride_v == 1 {
            // SAFETY: in bounds by the caller's contract (validated layout, t < max_time, k < classes);
            // exclusive because the layout is injective and this task owns sequence b's rows.
            Some(unsafe {
                core::slice::from_raw_parts_mut(self.ptr.add(self.base + t * self.stride_t), self.classes)
            })
        } else {
            None
        }
    }

    /// Asks the cache for row `t` (contiguous rows only): it is about to be written in full.
    #[inline(always)]
    pub(super) fn prefetch_row(&self, t: usize) {
        if self.stride_v == 1 && t < self.max_time {
            let start = self.ptr.wrapping_add(self.base + t * self.stride_t);
            crate::simd::prefetch_raw(start, self.classes);
        }
    }

    /// [`SeqActs::prefetch_labels`] for output row `t`, whose elements at `blank` and `labels` are
    /// about to be updated.
    #[inline(always)]
    pub(super) fn prefetch_labels(&self, t: usize, blank: usize, labels: &[u32]) {
        if self.stride_v == 1 && t < self.max_time {
            let start = self.ptr.wrapping_add(self.base + t * self.stride_t);
            prefetch_sparse(start.cast_const(), self.classes, blank, labels);
        }
    }

    /// # Safety
    /// As for [`SeqGrad::row_mut`], and `k < classes`.
    #[inline(always)]
    unsafe fn put(&mut self, t: usize, k: usize, x: F) {
        debug_assert!(t < self.max_time && k < self.classes);
        // SAFETY: see row_mut.
        unsafe { *self.ptr.add(self.base + t * self.stride_t + k * self.stride_v) = x }
    }

    /// # Safety
    /// As for [`SeqGrad::put`].
    #[inline(always)]
    unsafe fn sub(&mut self, t: usize, k: usize, x: F) {
        debug_assert!(t < self.max_time && k < self.classes);
        // SAFETY: see row_mut.
        unsafe { *self.ptr.add(self.base + t * self.stride_t + k * self.stride_v) -= x }
    }
}

/// Phase 1 for one sequence: the per-frame normalisers (validating every frame read), then alpha.
/// Returns `ln p(target)` (`-inf` when no alignment has positive probability).
///
/// Rescaling: row `t` is stored as `alpha_t - C_t`, where `C_t` (kept in `f64`) is the sum of the
/// previous rows' maxima. Without it, `alpha` grows to `-T * (mean emission)` and an `f32` lattice of
/// 10^4 frames loses two or three digits of every posterior to the magnitude of its operands; with it,
/// every stored value is within a few units of 0 and the rounding per step is that of `O(1)` numbers.
#[inline(always)]
pub(crate) fn forward<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    ws: &mut [F],
) -> Result<f64, CtcError> {
    let SeqJob { acts, input: kind, labels, blank, time, sequence, .. } = *job;
    let acts = &acts;
    let lay = SeqLayout::new(time, labels.len()).expect("workspace layout was checked at validation");
    let l_len = labels.len();
    let s_len = 2 * l_len + 1;
    let ninf = F::NEG_INFINITY;

    // Frame normalisers, and the scan for values that are never valid.
    for t in 0..time {
        ws[lay.norm + t] = frame_norm(k, acts, t, time, kind, sequence)?;
    }

    // skip[j]: 0 if label j can follow label j-1 directly, else -inf; skip[L] is a sentinel.
    for j in 0..=l_len {
        let ok = j >= 1 && j < l_len && labels[j] != labels[j - 1];
        ws[lay.skip + j] = if ok { F::ZERO } else { ninf };
    }

    if time == 0 {
        return Ok(if l_len == 0 { 0.0 } else { f64::NEG_INFINITY });
    }

    // Frame 0: only the first blank and the first label can start a path.
    ws[lay.alpha..lay.alpha + s_len].fill(ninf);
    ws[lay.alpha] = acts.at(0, blank) - ws[lay.norm];
    if l_len > 0 {
        ws[lay.alpha + l_len + 1] = acts.at(0, labels[0] as usize) - ws[lay.norm];
    }
    let mut shift = ws[lay.alpha].max(if l_len > 0 { ws[lay.alpha + l_len + 1] } else { ninf });
    let mut offset = 0.0f64;
    ws[lay.offsets] = F::ZERO;
    ws[lay.offsets + 1] = F::ZERO;

    for t in 1..time {
        if shift == ninf {
            // Every state is unreachable: so is the end. Rows past here are never read.
            return Ok(f64::NEG_INFINITY);
        }
        let base = ws[lay.norm + t] + shift;
        let eb = acts.at(t, blank) - base;
        gather_emissions(k, acts, t, labels, base, &mut ws[lay.emit..lay.emit + l_len]);
        offset += shift.to_f64();
        let (hi, lo) = split_f64::<F>(offset);
        ws[lay.offsets + 2 * t] = hi;
        ws[lay.offsets + 2 * t + 1] = lo;
        let (before, after) = ws.split_at_mut(lay.alpha + t * s_len);
        let prev = &before[lay.alpha + (t - 1) * s_len..];
        let (cur, rest) = after.split_at_mut(s_len);
        let emit = &rest[lay.emit - lay.alpha - (t + 1) * s_len..][..l_len];
        let skip = &rest[lay.skip - lay.alpha - (t + 1) * s_len..][..l_len];
        shift = k.alpha_step(prev, cur, eb, emit, skip, l_len, band(t, time, l_len));
    }

    let last = &ws[lay.alpha + (time - 1) * s_len..][..s_len];
    let end = if l_len == 0 { last[0] } else { k.lse2(last[l_len], last[s_len - 1]) };
    Ok(if end == ninf { f64::NEG_INFINITY } else { end.to_f64() + offset })
}

/// Phase 2 for one sequence: beta, one row at a time from the last frame back, and for every frame
/// the requested output row written through `grad`, then zeros for the frames past the input length.
///
/// `log_likelihood` is what [`forward`] returned; `scale` multiplies the gradient (reduction). An
/// infeasible sequence (`log_likelihood = -inf`) gets zero rows everywhere. Beta rows are rescaled like
/// alpha's, by offsets `D_t`; the posterior of state `s` at `t` is then
/// `exp(alpha'_t(s) + beta'_t(s) - (ln p - C_t - D_t))`, with the bracket computed in `f64`.
#[inline(always)]
pub(crate) fn backward<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    ws: &mut [F],
    grad: &mut SeqGrad<F>,
) {
    let SeqJob { acts, input: kind, output: out, labels, blank, time, .. } = *job;
    let acts = &acts;
    let l_len = labels.len();
    let s_len = 2 * l_len + 1;
    let ninf = F::NEG_INFINITY;
    let lay = SeqLayout::new(time, l_len).expect("workspace layout was checked at validation");

    // Frames past this sequence's input length hold no signal: their rows are zero.
    for t in time..grad.max_time {
        // SAFETY: t < max_time; this task owns the sequence's rows.
        unsafe { zero_row(grad, t) };
    }
    if log_likelihood == f64::NEG_INFINITY {
        for t in 0..time {
            // SAFETY: as above.
            unsafe { zero_row(grad, t) };
        }
        return;
    }

    let (head, tail) = ws.split_at_mut(lay.beta);
    let alpha = &head[lay.alpha..lay.norm];
    let norm = &head[lay.norm..lay.offsets];
    let offsets = &head[lay.offsets..lay.beta];
    let (beta_rows, tail) = tail.split_at_mut(2 * s_len);
    let (cur_b, next_b) = beta_rows.split_at_mut(s_len);
    let (emit, tail) = tail.split_at_mut(l_len + 1);
    let (post, skip_all) = tail.split_at_mut(s_len);
    let skip = &skip_all[..l_len + 1];
    let (mut cur, mut next) = (cur_b, next_b);

    // beta at the last frame: 0 at the two end states, -inf elsewhere.
    cur.fill(ninf);
    cur[l_len] = F::ZERO;
    if l_len > 0 {
        cur[s_len - 1] = F::ZERO;
    }
    let mut shift = F::ZERO;
    let mut beta_offset = 0.0f64;
    // Past a quarter of a MiB (a typical L2), the alpha rows are no longer in cache when read back.
    let far_alpha = core::mem::size_of_val(alpha) > 1 << 18;
    let mut t = time;
    while t > 0 {
        t -= 1;
        if t >= PREFETCH_FRAMES {
            acts.prefetch_row(t - PREFETCH_FRAMES);
            grad.prefetch_row(t - PREFETCH_FRAMES);
        }
        // The alpha rows come back in reverse order of writing, from a store (T * S values per
        // sequence) that outgrows the caches: ask for them a frame ahead.
        if far_alpha && t >= 2 {
            crate::simd::prefetch(&alpha[(t - 2) * s_len..(t - 1) * s_len]);
        }
        if t + 1 < time {
            // `next` holds beta'_{t+1}; turn it into beta'_t in `cur`, rescaled by its maximum.
            let base = norm[t + 1] + shift;
            let eb = acts.at(t + 1, blank) - base;
            gather_emissions(k, acts, t + 1, labels, base, &mut emit[..l_len]);
            emit[l_len] = ninf;
            beta_offset += shift.to_f64();
            shift = k.beta_step(next, cur, eb, &emit[..l_len + 1], skip, l_len, band(t, time, l_len));
            if shift == ninf {
                // Cannot happen on a feasible lattice; keeps a corrupted one from producing NaN.
                shift = F::ZERO;
            }
        }
        let alpha_offset = offsets[2 * t].to_f64() + offsets[2 * t + 1].to_f64();
        let rel = F::from_f64(log_likelihood - alpha_offset - beta_offset);
        write_output_row(
            k,
            acts,
            kind,
            out,
            labels,
            blank,
            t,
            norm[t],
            &alpha[t * s_len..(t + 1) * s_len],
            cur,
            rel,
            scale,
            post,
            grad,
        );
        core::mem::swap(&mut cur, &mut next);
    }
}

/// Frame `t`'s normaliser (the log-sum-exp of its logits; 0 for log-probs), after asking the cache for
/// a frame ahead; the error naming the first value that is never valid (NaN, `+inf`, or a frame of
/// logits all `-inf`), if the frame holds one. Shared by both one-sequence lattices.
#[inline(always)]
pub(super) fn frame_norm<F: Float, K: Kernels<F>>(
    k: &K,
    acts: &SeqActs<'_, F>,
    t: usize,
    time: usize,
    kind: InputKind,
    sequence: usize,
) -> Result<F, CtcError> {
    if t + PREFETCH_FRAMES < time {
        acts.prefetch_row(t + PREFETCH_FRAMES);
    }
    let (norm, bad) = match acts.row(t) {
        Some(row) => match kind {
            InputKind::Logits => k.log_sum_exp_checked(row),
            InputKind::LogProbs => (F::ZERO, !k.all_valid_log_probs(row)),
        },
        None => strided_norm(acts, t, kind),
    };
    if bad {
        return Err(locate_bad_value(acts, t, kind, sequence));
    }
    Ok(norm)
}

/// [`frame_norm`] that also writes frame `t`'s dense output row ([`write_dense_row`]), for a forward
/// pass that writes it before the posteriors are known (the backward pass then only subtracts them).
/// For logits whose activation and output rows are both contiguous, the softmax comes out of the
/// normaliser's own `exp`s ([`Kernels::log_sum_exp_softmax`]): one `exp` per class and one read of
/// the frame, where computing the softmax in the backward pass costs a second of each.
///
/// # Safety
/// As for [`write_dense_row`]. On an error the row may be partly written.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn frame_norm_dense<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    t: usize,
    scale: F,
    grad: &mut SeqGrad<F>,
) -> Result<F, CtcError> {
    let SeqJob { acts, input: kind, output: out, time, sequence, .. } = *job;
    let fused = kind == InputKind::Logits && out != GradOutput::Posterior;
    // SAFETY: forwarded contract.
    if let (true, Some(row), Some(dst)) = (fused, acts.row(t), unsafe { grad.row_mut(t) }) {
        if t + PREFETCH_FRAMES < time {
            acts.prefetch_row(t + PREFETCH_FRAMES);
        }
        let (norm, bad) = k.log_sum_exp_softmax(row, scale, dst);
        if bad {
            return Err(locate_bad_value(&acts, t, kind, sequence));
        }
        return Ok(norm);
    }
    let norm = frame_norm(k, &acts, t, time, kind, sequence)?;
    // SAFETY: forwarded contract.
    unsafe { write_dense_row(k, &acts, kind, out, t, norm, scale, grad) };
    Ok(norm)
}

/// `out[j] = e_t(l_j) - base`: frame `t`'s label activations, shifted.
#[inline(always)]
fn gather_emissions<F: Float, K: Kernels<F>>(
    k: &K,
    acts: &SeqActs<'_, F>,
    t: usize,
    labels: &[u32],
    base: F,
    out: &mut [F],
) {
    match acts.row(t) {
        Some(row) => k.gather_shifted(row, labels, base, out),
        None => {
            for (o, &l) in out.iter_mut().zip(labels) {
                *o = acts.at(t, l as usize) - base;
            }
        }
    }
}

/// # Safety
/// `t < grad.max_time`, and this task owns the sequence's rows.
pub(super) unsafe fn zero_row<F: Float>(grad: &mut SeqGrad<F>, t: usize) {
    // SAFETY: forwarded contract.
    match unsafe { grad.row_mut(t) } {
        Some(row) => row.fill(F::ZERO),
        None => {
            for c in 0..grad.classes {
                // SAFETY: c < classes; forwarded contract.
                unsafe { grad.put(t, c, F::ZERO) };
            }
        }
    }
}

/// Writes one frame's output row: the dense part (softmax, `exp(lp)` or zeros, scaled), then the
/// posterior mass of every state subtracted (or added) at its class.
///
/// The posteriors of a frame are normalised by their own sum, which in exact arithmetic is 1. In
/// floating point it is not: the forward and backward passes round differently, and over thousands of
/// frames their disagreement (a drift of `ln p` between the two) grows to parts in 10^3 in `f32`.
/// Dividing by the frame's own sum removes that drift from every row; the rows of a logits gradient
/// then sum to zero to rounding.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_output_row<F: Float, K: Kernels<F>>(
    k: &K,
    acts: &SeqActs<'_, F>,
    kind: InputKind,
    out: GradOutput,
    labels: &[u32],
    blank: usize,
    t: usize,
    norm: F,
    alpha: &[F],
    beta: &[F],
    shift: F,
    scale: F,
    post: &mut [F],
    grad: &mut SeqGrad<F>,
) {
    let l_len = labels.len();
    // SAFETY: t < time <= max_time; this task owns the sequence's rows.
    unsafe { write_dense_row(k, acts, kind, out, t, norm, scale, grad) };
    // `shift` (ln p minus the rows' offsets) makes the weights sum to about 1. When the activations are
    // so large that `ln p - C_t - D_t` cancels catastrophically (finite log-probs near 1e40 do it in
    // f32), the weights over- or underflow: fall back to the frame's own largest `alpha + beta`, which
    // puts the largest weight at exactly 1 and the sum in [1, S].
    let (mut total, mut blank_mass) = k.posterior_weights(alpha, beta, shift, l_len + 1, post);
    if !weights_sum_to_about_one(total) {
        let m = alpha.iter().zip(beta).fold(F::NEG_INFINITY, |m, (&a, &b)| m.max(a + b));
        if !m.is_finite() {
            // `-inf`: no state carries mass at this frame, impossible on a feasible lattice. `+inf`:
            // log-probs beyond half of F::MAX, whose sum overflows; they have no meaningful posterior.
            // Either way, report none rather than divide by zero or produce NaN.
            return;
        }
        (total, blank_mass) = k.posterior_weights(alpha, beta, m, l_len + 1, post);
    }
    let norm = posterior_sign_scale(out, scale) / total;
    // SAFETY: t < time <= max_time; this task owns the sequence's rows.
    unsafe {
        subtract_posteriors(
            grad,
            t,
            blank,
            labels,
            blank_mass * norm,
            post[l_len + 1..].iter().map(|&w| w * norm),
        )
    };
}

/// Whether a frame's posterior weights, computed with the expected shift, sum to a usable value (the
/// exact sum is 1; far from it, the shift cancelled catastrophically and the frame's own maximum must
/// be used instead).
#[inline(always)]
pub(super) fn weights_sum_to_about_one<F: Float>(total: F) -> bool {
    total > F::from_f64(1e-3) && total < F::from_f64(1e3)
}

/// The factor of the posterior weights in the output: the reduction's scale for gradients, `-1` for
/// posteriors (probabilities, never scaled, added with a plus sign by [`subtract_posteriors`]).
#[inline(always)]
pub(super) fn posterior_sign_scale<F: Float>(out: GradOutput, scale: F) -> F {
    match out {
        GradOutput::Posterior => -F::ONE,
        _ => scale,
    }
}

/// Writes frame `t`'s dense output: `softmax(x) * scale` for a logits gradient, `exp(lp) * scale` in
/// PyTorch's log-probs convention, zeros otherwise (the true log-probs gradient, and posteriors).
///
/// # Safety
/// `t < grad.max_time`, and this task owns the sequence's rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn write_dense_row<F: Float, K: Kernels<F>>(
    k: &K,
    acts: &SeqActs<'_, F>,
    kind: InputKind,
    out: GradOutput,
    t: usize,
    norm: F,
    scale: F,
    grad: &mut SeqGrad<F>,
) {
    // For logits, d(-ln p)/dx = softmax(x) - gamma; for log-probs the true partial derivative is
    // -gamma, and PyTorch's convention is exp(lp) - gamma.
    let dense = match (out, kind) {
        (GradOutput::Gradient, InputKind::Logits) | (GradOutput::TorchLogProbs, _) => true,
        (GradOutput::Gradient, InputKind::LogProbs) | (GradOutput::Posterior, _) => false,
    };
    // SAFETY: forwarded contract.
    match (unsafe { grad.row_mut(t) }, acts.row(t)) {
        (Some(row), Some(src)) if dense => match kind {
            // x - logsumexp(x) <= 0: a softmax.
            InputKind::Logits => k.softmax_scaled(src, norm, scale, row),
            // Unnormalised log-probabilities may exceed 0 (Torch's convention exponentiates them).
            InputKind::LogProbs => k.exp_shifted_scaled(src, norm, scale, row),
        },
        (Some(row), _) if !dense => row.fill(F::ZERO),
        _ => {
            for c in 0..acts.classes {
                let v = if dense { (acts.at(t, c) - norm).exp() * scale } else { F::ZERO };
                // SAFETY: c < classes; forwarded contract.
                unsafe { grad.put(t, c, v) };
            }
        }
    }
}

/// Subtracts frame `t`'s posterior weights, already multiplied by their factor, from its output row:
/// `blank_w` at the blank, `label_w[j]` at label `j`'s class.
///
/// # Safety
/// `t < grad.max_time`, this task owns the sequence's rows, and every class is `< grad.classes`
/// (validated).
#[inline(always)]
pub(super) unsafe fn subtract_posteriors<F: Float>(
    grad: &mut SeqGrad<F>,
    t: usize,
    blank: usize,
    labels: &[u32],
    blank_w: F,
    label_w: impl Iterator<Item = F>,
) {
    // SAFETY: forwarded contract.
    match unsafe { grad.row_mut(t) } {
        Some(row) => {
            // Contiguous: plain indexing (labels and blank were validated < classes = row.len()).
            row[blank] -= blank_w;
            for (w, &l) in label_w.zip(labels) {
                row[l as usize] -= w;
            }
        }
        None => {
            // SAFETY: blank < classes (validated); forwarded contract.
            unsafe { grad.sub(t, blank, blank_w) };
            for (w, &l) in label_w.zip(labels) {
                // SAFETY: labels are validated < classes; forwarded contract.
                unsafe { grad.sub(t, l as usize, w) };
            }
        }
    }
}

/// Normaliser of frame `t` for a non-unit class stride; the second value flags an invalid value.
pub(super) fn strided_norm<F: Float>(acts: &SeqActs<'_, F>, t: usize, kind: InputKind) -> (F, bool) {
    let mut bad = false;
    match kind {
        InputKind::LogProbs => {
            for c in 0..acts.classes {
                let x = acts.at(t, c);
                bad |= x.is_nan() || x == F::INFINITY;
            }
            (F::ZERO, bad)
        }
        InputKind::Logits => {
            let mut m = F::NEG_INFINITY;
            for c in 0..acts.classes {
                let x = acts.at(t, c);
                bad |= x.is_nan() || x == F::INFINITY;
                m = m.max(x);
            }
            if bad || m == F::NEG_INFINITY {
                return (F::ZERO, true);
            }
            let mut s = F::ZERO;
            for c in 0..acts.classes {
                s += (acts.at(t, c) - m).exp();
            }
            (m + s.ln(), false)
        }
    }
}

/// The first invalid value of frame `t`, as an error. Cold: only reached when a check failed.
#[cold]
#[inline(never)]
pub(super) fn locate_bad_value<F: Float>(
    acts: &SeqActs<'_, F>,
    t: usize,
    kind: InputKind,
    sequence: usize,
) -> CtcError {
    for c in 0..acts.classes {
        let x = acts.at(t, c);
        if x.is_nan() || x == F::INFINITY {
            return CtcError::NonFinite { sequence, frame: t, class: c, value: x.to_f64() };
        }
    }
    debug_assert!(matches!(kind, InputKind::Logits));
    // Every value is -inf: a frame of logits with no finite entry has no softmax.
    CtcError::NonFinite { sequence, frame: t, class: 0, value: f64::NEG_INFINITY }
}

/// The instruction set a sequence's lattice is compiled for. [`forward`] and [`backward`] are
/// `#[inline(always)]`, and every kernel they call is too, so each entry point below is one complete
/// copy of the per-sequence code, compiled for its instruction set: the feature check happens once per
/// call of the batch API, never inside the lattice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Whatever the build targets (SSE2 for a default x86-64 build).
    Baseline,
    /// AVX2 and FMA, checked at run time (the token proves it).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(Avx2FmaToken),
}

/// [`forward`], compiled for `isa`.
pub(crate) fn forward_on<F: Float, K: Kernels<F>>(
    isa: Isa,
    k: &K,
    job: &SeqJob<'_, F>,
    ws: &mut [F],
) -> Result<f64, CtcError> {
    match isa {
        Isa::Baseline => forward(k, job, ws),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { forward_avx2_fma(k, job, ws) },
    }
}

/// [`backward`], compiled for `isa`.
pub(crate) fn backward_on<F: Float, K: Kernels<F>>(
    isa: Isa,
    k: &K,
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    ws: &mut [F],
    grad: &mut SeqGrad<F>,
) {
    match isa {
        Isa::Baseline => backward(k, job, log_likelihood, scale, ws, grad),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { backward_avx2_fma(k, job, log_likelihood, scale, ws, grad) },
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    ws: &mut [F],
) -> Result<f64, CtcError> {
    forward(k, job, ws)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2_fma<F: Float, K: Kernels<F>>(
    k: &K,
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    ws: &mut [F],
    grad: &mut SeqGrad<F>,
) {
    backward(k, job, log_likelihood, scale, ws, grad)
}
