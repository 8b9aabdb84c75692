//! One sequence's lattice in probability space, in `f64` whatever the activations' type: what
//! [`super::group`] does for groups of equal lengths, for the sequences that run alone (batches of
//! mixed lengths, such as `ragged`).
//!
//! Each frame's row is rescaled by a power of two (exact; its exponent goes to an `f64` offset), a state
//! is a sum of two or three products ([`crate::simd::linear`]), and the only transcendental work left
//! is the frame's normaliser; the log-space lattice ([`super::lattice`]) spends two `exp` and one `ln`
//! per state and pass. The posterior weights are `alpha * beta` normalised by their frame's sum, so the
//! backward pass needs neither `ln p` nor the offsets.
//!
//! With a logits gradient (the training case), the forward pass reads each frame of activations once:
//! its normaliser's `exp`s become the scaled softmax of the output row
//! ([`super::lattice::frame_norm_dense`]), the frame's emissions are read back from that row
//! ([`output_emissions`]), and the alpha step follows while the row is in the cache. The backward pass
//! reads no activations at all: it reads the emissions from the output rows before subtracting each
//! frame's posteriors, the only columns it touches. On `bpe_large` (`V = 5000`) this is what bounds
//! the time: one read of the logits and one write of the gradient.
//!
//! Accuracy is checked per call, as for groups: the forward pass gives up on a row maximum outside
//! `f64`'s rescaling range or a lost path, and the backward pass charges every frame to a
//! [`FlushBudget`] for what rounding below the normal range can have cost, giving up when it runs out.
//! Either way the caller redoes the sequence in log space. In `f64` the budget is all but never
//! touched: a state must fall `2^-1022` below its row's maximum first.
//!
//! The workspace region is the one-sequence region of the log-space lattice (which the fallback
//! reuses) or this lattice's, whichever is larger ([`region_len`]); this lattice views it as `f64`
//! from its first 8-byte boundary.

use super::group::{power_of_two_scale, FlushBudget};
use super::lattice::{
    band, frame_norm, frame_norm_dense, posterior_sign_scale, subtract_posteriors, zero_row, Isa, SeqActs,
    SeqGrad, SeqJob, PREFETCH_FRAMES,
};
use super::{GradOutput, InputKind};
use crate::error::CtcError;
use crate::simd::{linear, Kernels, Lanes};
use crate::Float;

/// Blank states per row are rounded up to a multiple of this (the lanes of every `f64` vector type
/// used: four with AVX2 or `wide`), so that rows are whole vectors.
const ROUND: usize = 4;

/// Where one sequence's pieces start in its `f64` view, in elements of `f64`: `T` rows of alpha from
/// 0, then the fields below in order.
#[derive(Clone, Copy, Debug)]
struct LinearLayout {
    /// Blank states per row, `L + 1` rounded up to [`ROUND`] (see [`crate::simd::linear`]).
    h: usize,
    /// Row length `2h + 3`.
    row: usize,
    /// `T` frame normalisers (log-sum-exp of the logits; 0 for log-probs), as `f64`.
    norm: usize,
    /// Two beta rows.
    beta: usize,
    /// `h + 1` label emissions of one frame (zeros past `L`).
    emit: usize,
    /// `h + 1` skip factors (1 where label `j` may follow label `j - 1` directly, 0 elsewhere).
    skip: usize,
    /// One row of posterior weights.
    post: usize,
    /// `h + 16` values, viewed as activations (`F`): one frame's label emissions before their `exp`.
    scratch: usize,
    /// One value: 1 when an emission may have been flushed below the normal range (see
    /// [`FlushBudget`]), else 0.
    flag: usize,
    /// Total elements.
    len: usize,
}

impl LinearLayout {
    fn new(time: usize, labels: usize) -> Option<Self> {
        let h = labels.checked_add(1)?.checked_next_multiple_of(ROUND)?;
        let row = h.checked_mul(2)?.checked_add(3)?;
        let norm = time.checked_mul(row)?;
        let beta = norm.checked_add(time)?;
        let emit = beta.checked_add(2 * row)?;
        let skip = emit.checked_add(h + 1)?;
        let post = skip.checked_add(h + 1)?;
        let scratch = post.checked_add(row)?;
        let flag = scratch.checked_add(h + 16)?;
        let len = flag.checked_add(1)?;
        Some(LinearLayout { h, row, norm, beta, emit, skip, post, scratch, flag, len })
    }
}

/// Elements of `F` that this lattice needs for a sequence of `time` frames and `labels` labels: its
/// `f64` layout, plus one `f64` of slack to reach an 8-byte boundary. `None` on overflow.
pub(crate) fn region_len<F: Float>(time: usize, labels: usize) -> Option<usize> {
    let lay = LinearLayout::new(time, labels)?;
    let per = core::mem::size_of::<f64>() / core::mem::size_of::<F>();
    lay.len.checked_add(1)?.checked_mul(per)
}

/// The region as `f64`, from its first 8-byte boundary (safe casts: `F` and `f64` are plain data).
fn as_f64<F: Float>(region: &mut [F]) -> &mut [f64] {
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(region);
    let skip = bytes.as_ptr().align_offset(core::mem::align_of::<f64>()).min(bytes.len());
    let bytes = &mut bytes[skip..];
    let whole = bytes.len() / core::mem::size_of::<f64>() * core::mem::size_of::<f64>();
    bytemuck::cast_slice_mut(&mut bytes[..whole])
}

/// `exp(x - norm) * scale` of frame `t`'s blank (returned) and of its labels `range = (lo, hi)` (a
/// whole number of vectors, `hi <= H`) into `emit[lo..hi]` (0 for `j >= L`), and `lowest = min(lowest,
/// x - norm)` over them, which tells whether an emission was flushed to 0 below the normal range. Only
/// the labels that a step reads are computed: the others are outside the frame's band. `scratch` holds
/// at least `hi - lo` activations.
///
/// The exponents `x - norm` are formed in `F`, as the log-space lattice forms them, and their `exp` is
/// taken in `F`'s lanes (8 with AVX2 for `f32`, and a shorter polynomial than `f64`'s), unless one of
/// them is below `F`'s normal range, where that `exp` would flush: then in `f64`, whose range the
/// [`FlushBudget`] accounts for. For logits, `x - norm <= 0` (the normaliser is the frame's
/// log-sum-exp), the domain of the cheaper `exp_le0`; log-probs take the general `exp`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn emissions<F: Float, V: Lanes<F>, W: Lanes<f64>>(
    acts: &SeqActs<'_, F>,
    t: usize,
    labels: &[u32],
    blank: usize,
    (norm, scale): (F, f64),
    kind: InputKind,
    (lo, hi): (usize, usize),
    emit: &mut [f64],
    scratch: &mut [F],
    lowest: &mut f64,
) -> f64 {
    let real = hi.min(labels.len()).max(lo);
    let args = &mut scratch[..real - lo];
    let labels = &labels[lo..real];
    match acts.row(t) {
        Some(row) => {
            for (e, &l) in args.iter_mut().zip(labels) {
                // SAFETY: labels were validated `< classes = row.len()`. Unchecked: the bounds check
                // per label was a fifth of this gather's instructions (callgrind, `ragged`).
                *e = *unsafe { row.get_unchecked(l as usize) } - norm;
            }
        }
        None => {
            for (e, &l) in args.iter_mut().zip(labels) {
                *e = acts.at(t, l as usize) - norm;
            }
        }
    }
    let eb_arg = acts.at(t, blank) - norm;
    let low = args.iter().fold(eb_arg, |m, &x| m.min(x));
    *lowest = lowest.min(low.to_f64());
    let (emit, pad) = emit[lo..hi].split_at_mut(real - lo);
    pad.fill(0.0);
    if low >= FlushBudget::<F>::flush_exponent() {
        let exp = |x: V| match kind {
            InputKind::Logits => x.exp_le0(),
            InputKind::LogProbs => x.exp(),
        };
        for c in args.chunks_mut(V::N) {
            exp(V::load_or(c, F::ZERO)).store(c);
        }
        for (e, &p) in emit.iter_mut().zip(args.iter()) {
            *e = p.to_f64() * scale;
        }
        return exp(V::splat(eb_arg)).reduce_max().to_f64() * scale;
    }
    let exp = |x: W| match kind {
        InputKind::Logits => x.exp_le0(),
        InputKind::LogProbs => x.exp(),
    };
    let scale_v = W::splat(scale);
    for (c, a) in emit.chunks_mut(W::N).zip(args.chunks(W::N)) {
        let mut x = [f64::NEG_INFINITY; 8];
        for (x, &a) in x.iter_mut().zip(a) {
            *x = a.to_f64();
        }
        (exp(W::load(&x)) * scale_v).store(c);
    }
    (exp(W::splat(eb_arg.to_f64())) * scale_v).reduce_max()
}

/// Frame `t`'s emissions as [`emissions`] computes them, read back from its output row instead, where
/// the forward pass wrote the scaled softmax there ([`fused_dense`]: `row[k] = softmax(x_t)[k] *
/// out_scale`, from the normaliser's own `exp`s): each emission is that value times `factor =
/// rescale / out_scale`. The same `exp(x - norm)`, rounded once more by the scaling, without reading
/// the activations again or a second `exp`. `None` where a value read is under `4 * F::MIN_POSITIVE`
/// (a hard zero, or a product flushed or rounded below `F`'s normal range; never NaN, as the row came
/// out of a validated frame): the caller then computes the frame's emissions from the activations,
/// in `f64` where they need it, so nothing below `F`'s range is lost and the [`FlushBudget`] stays
/// untouched by these frames (every emission here is far above its flush exponent).
#[inline(always)]
fn output_emissions<F: Float>(
    row: &[F],
    labels: &[u32],
    blank: usize,
    factor: f64,
    (lo, hi): (usize, usize),
    emit: &mut [f64],
) -> Option<f64> {
    let real = hi.min(labels.len()).max(lo);
    let floor = F::MIN_POSITIVE * F::from_f64(4.0);
    let vb = row[blank];
    let mut low = vb;
    for (e, &l) in emit[lo..real].iter_mut().zip(&labels[lo..real]) {
        // SAFETY: labels were validated `< classes = row.len()`.
        let v = *unsafe { row.get_unchecked(l as usize) };
        low = low.min(v);
        *e = v.to_f64() * factor;
    }
    if low < floor || low.is_nan() {
        return None;
    }
    emit[real..hi].fill(0.0);
    Some(vb.to_f64() * factor)
}

/// Frame `t`'s emissions of `labels` over the chunks `range`, times `rescale`, into `emit`
/// (returning the blank's), for both passes: read back from the frame's output row `out` (with the
/// reciprocal of its scale) where [`output_emissions`] can, else from the activations with the
/// normaliser `norm` ([`emissions`], which lowers `lowest`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn frame_emissions<F: Float, V: Lanes<F>, W: Lanes<f64>>(
    job: &SeqJob<'_, F>,
    t: usize,
    out: Option<(&[F], f64)>,
    (norm, rescale): (f64, f64),
    labels: &[u32],
    range: (usize, usize),
    emit: &mut [f64],
    scratch: &mut [F],
    lowest: &mut f64,
) -> f64 {
    let blank = job.blank;
    if let Some((row, inv_out_scale)) = out {
        if let Some(eb) = output_emissions(row, labels, blank, rescale * inv_out_scale, range, emit) {
            return eb;
        }
    }
    let args = (F::from_f64(norm), rescale);
    emissions::<F, V, W>(&job.acts, t, labels, blank, args, job.input, range, emit, scratch, lowest)
}

/// Whether [`frame_norm_dense`] writes job's output rows as the scaled softmax from the normaliser's
/// `exp`s, so that [`output_emissions`] can read the emissions back from them.
#[inline(always)]
fn fused_dense<F: Float>(job: &SeqJob<'_, F>, grad: &SeqGrad<F>) -> bool {
    job.input == InputKind::Logits
        && job.output != GradOutput::Posterior
        && job.acts.stride_v == 1
        && grad.stride_v == 1
}

/// What the forward pass needs to compute one frame's normaliser and emissions. Methods rather than
/// closures: a closure may be left outlined, and then runs without the target features of the
/// `avx2,fma` copy it was meant to be part of (measured here: ten times slower).
struct FrameInputs<'j, 'a, 'g, F> {
    job: &'j SeqJob<'a, F>,
    /// The output rows and the reduction's scale, when a gradient is wanted.
    dense: Option<(F, &'g mut SeqGrad<F>)>,
    /// Whether the output rows hold the scaled softmax ([`fused_dense`]).
    fused: bool,
    /// The lowest exponent of an emission computed from the activations (see [`emissions`]).
    lowest: f64,
    scratch: &'j mut [F],
}

impl<F: Float> FrameInputs<'_, '_, '_, F> {
    /// Frame `t`'s normaliser, validating the frame, and its output row when one is wanted.
    #[inline(always)]
    fn norm<K: Kernels<F>>(&mut self, k: &K, t: usize) -> Result<f64, CtcError> {
        let job = self.job;
        let norm = match &mut self.dense {
            // SAFETY: t < time <= max_time; this task owns the sequence's rows.
            Some((scale, grad)) => unsafe { frame_norm_dense(k, job, t, *scale, grad) }?,
            None => frame_norm(k, &job.acts, t, job.time, job.input, job.sequence)?,
        };
        Ok(norm.to_f64())
    }

    /// Frame `t`'s emissions of `labels` over the chunks `range`, times `rescale`, into `emit`
    /// (returning the blank's): read back from its output row where possible, else from the
    /// activations with the normaliser `norm`.
    #[inline(always)]
    fn emissions<V: Lanes<F>, W: Lanes<f64>>(
        &mut self,
        t: usize,
        norm: f64,
        rescale: f64,
        labels: &[u32],
        range: (usize, usize),
        emit: &mut [f64],
    ) -> f64 {
        let out = match (self.fused, &mut self.dense) {
            // SAFETY: t < time <= max_time; this task owns the sequence's rows.
            (true, Some((scale, grad))) => unsafe { grad.row_mut(t) }.map(|r| (&*r, 1.0 / scale.to_f64())),
            _ => None,
        };
        let (norm, scratch, lowest) = ((norm, rescale), &mut *self.scratch, &mut self.lowest);
        frame_emissions::<F, V, W>(self.job, t, out, norm, labels, range, emit, scratch, lowest)
    }
}

/// Phase 1 in probability space: the frame normalisers (validating every frame read, with the errors
/// of [`super::lattice::forward`]), then alpha. `Ok(Some(ln p))` on success (`-inf` for a sequence
/// without any path: fewer frames than labels plus repeats); `Ok(None)` where a row maximum leaves the
/// rescaling range or the final probability is 0 (a path lost to flushing), and the caller then runs
/// the log-space lattice on the same region, which validates every frame again. The job has `T >= 1`
/// and `L >= 1`.
///
/// With `dense = Some((scale, grad))`, each frame's output row also receives its dense part
/// ([`frame_norm_dense`]: the scaled softmax for a logits gradient) as its normaliser is computed, and
/// the alpha step of that frame follows at once, reading its emissions back from that row where it
/// can ([`output_emissions`]): each frame of activations is read once, while it is in the cache.
/// [`backward`] then only subtracts the posteriors; a log-space redo rewrites the rows whole. On an
/// error, or `Ok(None)`, the rows are partly written.
#[inline(always)]
fn forward<F: Float, K: Kernels<F>, V: Lanes<F>, W: Lanes<f64>>(
    k: &K,
    job: &SeqJob<'_, F>,
    region: &mut [F],
    dense: Option<(F, &mut SeqGrad<F>)>,
) -> Result<Option<f64>, CtcError> {
    let SeqJob { labels, time, .. } = *job;
    let l_len = labels.len();
    assert!(time >= 1 && l_len >= 1);
    let lay = LinearLayout::new(time, l_len).expect("workspace layout was checked at validation");
    let ws = &mut as_f64(region)[..lay.len];
    let (h, row) = (lay.h, lay.row);
    let (alpha, rest) = ws.split_at_mut(lay.norm);
    let (norms, rest) = rest.split_at_mut(lay.beta - lay.norm);
    let rest = &mut rest[lay.emit - lay.beta..];
    let (emit, rest) = rest.split_at_mut(lay.skip - lay.emit);
    let (skip, rest) = rest.split_at_mut(lay.post - lay.skip);
    let (scratch, flag) = rest[lay.scratch - lay.post..].split_at_mut(lay.flag - lay.scratch);
    let scratch: &mut [F] = bytemuck::cast_slice_mut(scratch);
    let flag = &mut flag[0];

    let fused = dense.as_ref().is_some_and(|(_, g)| fused_dense(job, g));
    let mut fr = FrameInputs { job, dense, fused, lowest: 0.0, scratch };
    let repeats = labels.windows(2).filter(|w| w[0] == w[1]).count();
    if time < l_len + repeats {
        // No path; every frame is still validated (and its output row written).
        for (t, norm) in norms.iter_mut().enumerate() {
            *norm = fr.norm::<K>(k, t)?;
        }
        return Ok(Some(f64::NEG_INFINITY));
    }
    for (j, s) in skip.iter_mut().enumerate() {
        *s = if j >= 1 && j < l_len && labels[j] != labels[j - 1] { 1.0 } else { 0.0 };
    }
    emit.fill(0.0);

    // Frame 0: only the first blank and the first label start a path.
    let mut top = {
        norms[0] = fr.norm::<K>(k, 0)?;
        let eb = fr.emissions::<V, W>(0, norms[0], 1.0, &labels[..1], (0, W::N), emit);
        let row0 = &mut alpha[..row];
        row0.fill(0.0);
        row0[1] = eb;
        row0[linear::label_start(h)] = emit[0];
        eb.max(row0[linear::label_start(h)])
    };
    let mut offset = 0.0f64;
    for t in 1..time {
        let Some(rescale) = power_of_two_scale(top, &mut offset) else {
            return Ok(None);
        };
        norms[t] = fr.norm::<K>(k, t)?;
        let band = band(t, time, l_len);
        let range = linear::chunks::<W>(band, h);
        let eb = fr.emissions::<V, W>(t, norms[t], rescale, labels, range, emit);
        let (before, after) = alpha.split_at_mut(t * row);
        let prev = &before[(t - 1) * row..];
        top = linear::alpha_step::<W>(prev, &mut after[..row], eb, emit, skip, h, band);
    }
    let lowest = fr.lowest;
    *flag = if lowest < FlushBudget::<f64>::flush_exponent() { 1.0 } else { 0.0 };
    let last = &alpha[(time - 1) * row..time * row];
    let end = last[1 + l_len] + last[linear::label_start(h) + l_len - 1];
    if !(end > 0.0 && end.is_finite()) {
        return Ok(None);
    }
    Ok(Some(end.ln() + offset))
}

/// Phase 2 after a successful [`forward`] that wrote the dense part of every output row: beta in
/// probability space, and each frame's posteriors subtracted from its row, so that the rows end as
/// [`super::lattice::backward`] writes them. Returns false where a beta row's maximum leaves the
/// rescaling range or the [`FlushBudget`] runs out: the rows written so far are then incomplete, and
/// the caller redoes the sequence in log space, which rewrites every row.
#[inline(always)]
fn backward<F: Float, V: Lanes<F>, W: Lanes<f64>>(
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    region: &mut [F],
    grad: &mut SeqGrad<F>,
) -> bool {
    let SeqJob { acts, output: out, labels, blank, time, .. } = *job;
    let acts = &acts;
    let l_len = labels.len();
    assert!(time >= 1 && l_len >= 1);
    for t in time..grad.max_time {
        // SAFETY: t < max_time; this task owns the sequence's rows.
        unsafe { zero_row(grad, t) };
    }
    if log_likelihood == f64::NEG_INFINITY {
        for t in 0..time {
            // SAFETY: as above.
            unsafe { zero_row(grad, t) };
        }
        return true;
    }
    let lay = LinearLayout::new(time, l_len).expect("workspace layout was checked at validation");
    let ws = &mut as_f64(region)[..lay.len];
    let (h, row) = (lay.h, lay.row);
    let lab = linear::label_start(h);
    let (head, rest) = ws.split_at_mut(lay.beta);
    let (alpha, norms) = head.split_at(lay.norm);
    let (beta_rows, rest) = rest.split_at_mut(2 * row);
    let (mut cur, mut next) = beta_rows.split_at_mut(row);
    let (emit, rest) = rest.split_at_mut(lay.skip - lay.emit);
    let (skip, rest) = rest.split_at_mut(lay.post - lay.skip);
    let (post, rest) = rest.split_at_mut(lay.scratch - lay.post);
    let (scratch, flag) = rest.split_at_mut(lay.flag - lay.scratch);
    let scratch: &mut [F] = bytemuck::cast_slice_mut(scratch);
    let mut budget = FlushBudget::<f64>::new(&[flag[0] != 0.0]);
    let tiny = budget.tiny[0];

    // beta at the last frame: 1 at the two end states, 0 elsewhere.
    cur.fill(0.0);
    cur[1 + l_len] = 1.0;
    cur[lab + l_len - 1] = 1.0;
    let mut top = 1.0f64;
    let (mut unused_offset, mut unused_lowest) = (0.0f64, 0.0f64);
    emit.fill(0.0);
    let fused = fused_dense(job, grad);
    let inv_out_scale = 1.0 / scale.to_f64();
    // The blank's emission at frame t + 1, times its rescaling factor; the labels' are in `emit`.
    let mut eb_next = 0.0f64;
    let far_alpha = core::mem::size_of_val(alpha) > 1 << 18;
    let mut t = time;
    while t > 0 {
        t -= 1;
        if t >= PREFETCH_FRAMES {
            // The pass reads and writes only the blank's and the labels' columns (the forward pass
            // wrote the rest of the output row).
            grad.prefetch_labels(t - PREFETCH_FRAMES, blank, labels);
            if !fused {
                acts.prefetch_labels(t - PREFETCH_FRAMES, blank, labels);
            }
        }
        if far_alpha && t >= 2 {
            crate::simd::prefetch(&alpha[(t - 2) * row..(t - 1) * row]);
        }
        let band_t = band(t, time, l_len);
        if t + 1 < time {
            top = linear::beta_step::<W>(next, cur, eb_next, emit, skip, h, band_t);
        }
        let (c_lo, c_hi) = linear::chunks::<W>(band_t, h);
        let alpha_t = &alpha[t * row..(t + 1) * row];
        let (total, blank_mass, exposure) =
            linear::posterior_products::<W>(alpha_t, cur, h, (c_lo, c_hi), tiny, post);
        if !budget.charge(0, total, exposure) || gives_up_for_a_test(t) {
            return false;
        }
        if t > 0 {
            // Frame t's emissions, for the step to t - 1, before its row receives the posteriors.
            let Some(factor) = power_of_two_scale(top, &mut unused_offset) else {
                return false;
            };
            // The step reads label emissions one past its states (a label's skip to the next).
            let (n_lo, n_hi) = linear::chunks::<W>(band(t - 1, time, l_len), h);
            let range = (n_lo, (n_hi + W::N).min(h));
            // SAFETY: t < time <= max_time; this task owns the sequence's rows.
            let out = if fused { unsafe { grad.row_mut(t) }.map(|r| (&*r, inv_out_scale)) } else { None };
            let (args, lowest) = ((norms[t], factor), &mut unused_lowest);
            eb_next = frame_emissions::<F, V, W>(job, t, out, args, labels, range, emit, scratch, lowest);
        }
        let w = posterior_sign_scale(out, scale).to_f64() / total;
        // Labels outside the computed states carry no posterior mass (and `post` holds nothing there).
        let (j_lo, j_hi) = (c_lo.min(l_len), c_hi.min(l_len));
        let label_w = post[lab + j_lo..lab + j_hi].iter().map(|&p| F::from_f64(p * w));
        let blank_w = F::from_f64(blank_mass * w);
        // SAFETY: as above; the labels and the blank were validated `< classes`.
        unsafe { subtract_posteriors(grad, t, blank, &labels[j_lo..j_hi], blank_w, label_w) };
        core::mem::swap(&mut cur, &mut next);
    }
    true
}

/// Whether a unit test asked the backward pass to give up at frame `t` (its last, after every other
/// row was written), to exercise the redo in log space that `f64`'s range makes rare: always false
/// outside this crate's unit tests.
#[inline(always)]
fn gives_up_for_a_test(t: usize) -> bool {
    #[cfg(test)]
    return t == 0 && test_hook::GIVE_UP.with(|g| g.get());
    #[cfg(not(test))]
    {
        let _ = t;
        false
    }
}

#[cfg(test)]
pub(super) mod test_hook {
    std::thread_local! {
        /// Set by a test on its own thread (with sequential parallelism) to make the backward pass
        /// give up.
        pub(crate) static GIVE_UP: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }
}

/// [`forward`], compiled for `isa`.
pub(crate) fn forward_on<F: Float, K: Kernels<F>, V: Lanes<F>, W: Lanes<f64>>(
    isa: Isa,
    k: &K,
    job: &SeqJob<'_, F>,
    region: &mut [F],
    dense: Option<(F, &mut SeqGrad<F>)>,
) -> Result<Option<f64>, CtcError> {
    match isa {
        Isa::Baseline => forward::<F, K, V, W>(k, job, region, dense),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { forward_avx2_fma::<F, K, V, W>(k, job, region, dense) },
    }
}

/// [`backward`], compiled for `isa`.
pub(crate) fn backward_on<F: Float, V: Lanes<F>, W: Lanes<f64>>(
    isa: Isa,
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    region: &mut [F],
    grad: &mut SeqGrad<F>,
) -> bool {
    match isa {
        Isa::Baseline => backward::<F, V, W>(job, log_likelihood, scale, region, grad),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { backward_avx2_fma::<F, V, W>(job, log_likelihood, scale, region, grad) },
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma<F: Float, K: Kernels<F>, V: Lanes<F>, W: Lanes<f64>>(
    k: &K,
    job: &SeqJob<'_, F>,
    region: &mut [F],
    dense: Option<(F, &mut SeqGrad<F>)>,
) -> Result<Option<f64>, CtcError> {
    forward::<F, K, V, W>(k, job, region, dense)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2_fma<F: Float, V: Lanes<F>, W: Lanes<f64>>(
    job: &SeqJob<'_, F>,
    log_likelihood: f64,
    scale: F,
    region: &mut [F],
    grad: &mut SeqGrad<F>,
) -> bool {
    backward::<F, V, W>(job, log_likelihood, scale, region, grad)
}

#[cfg(test)]
mod tests {
    use super::test_hook::GIVE_UP;
    use crate::loss::reference;
    use crate::{
        ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, Float, Parallelism, Reduction, SingleStats,
        Targets, Workspace,
    };

    /// A batch of sequences of different lengths (so that none is grouped), time-major logits with a
    /// seeded spread, and one sequence without any path (3 frames, 4 labels).
    struct Batch {
        time: Vec<usize>,
        targets: Vec<Vec<usize>>,
        classes: usize,
        acts: Vec<f64>,
    }

    impl Batch {
        fn new() -> Self {
            let time = vec![40, 3, 25, 61, 7];
            let lens = [9, 4, 12, 20, 1];
            let classes = 6;
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let targets =
                lens.iter().map(|&l| (0..l).map(|_| 1 + (next() * 5.0) as usize).collect()).collect();
            let t_max = 61;
            let acts = (0..t_max * time.len() * classes).map(|_| (next() - 0.5) * 6.0).collect();
            Batch { time, targets, classes, acts }
        }

        fn batch(&self) -> usize {
            self.time.len()
        }

        /// Losses, reduced loss, time-major gradient and statistics of one sequential call in `F`.
        fn run<F: Float>(&self, backend: Backend) -> (Vec<f64>, f64, Vec<f64>, SingleStats) {
            let (b, v) = (self.batch(), self.classes);
            let t_max = self.acts.len() / (b * v);
            let acts: Vec<F> = self.acts.iter().map(|&x| F::from_f64(x)).collect();
            let labels: Vec<u32> = self.targets.iter().flatten().map(|&l| l as u32).collect();
            let lengths: Vec<u32> = self.targets.iter().map(|t| t.len() as u32).collect();
            let il: Vec<u32> = self.time.iter().map(|&t| t as u32).collect();
            let mut grad = vec![F::from_f64(f64::NAN); acts.len()];
            let mut losses = vec![F::ZERO; b];
            let mut ws = Workspace::new();
            let opts = CtcOptions {
                reduction: Reduction::Mean,
                zero_infinity: true,
                parallelism: Parallelism::Sequential,
                backend,
                ..CtcOptions::default()
            };
            let reduced = ctc_compute(
                &ActsView::time_major(&acts, t_max, b, v).unwrap(),
                &Targets::Concatenated { labels: &labels, lengths: &lengths },
                &il,
                &mut losses,
                Some(&mut ActsViewMut::time_major(&mut grad, t_max, b, v).unwrap()),
                &opts,
                &mut ws,
            )
            .unwrap();
            let f = |x: &F| x.to_f64();
            (
                losses.iter().map(f).collect(),
                reduced.to_f64(),
                grad.iter().map(f).collect(),
                ws.single_stats(),
            )
        }

        /// The f64 reference: losses (0 for the pathless sequence: `zero_infinity`), the mean, and the
        /// time-major gradient of the mean.
        fn reference(&self) -> (Vec<f64>, f64, Vec<f64>) {
            let (b, v) = (self.batch(), self.classes);
            let mut grad = vec![0.0; self.acts.len()];
            let mut losses = Vec::new();
            for s in 0..b {
                let rows: Vec<Vec<f64>> =
                    (0..self.time[s]).map(|t| self.acts[(t * b + s) * v..][..v].to_vec()).collect();
                let (loss, g) = reference::loss_and_logits_grad(&rows, &self.targets[s], 0);
                if loss.is_infinite() {
                    losses.push(0.0);
                    continue;
                }
                let scale = 1.0 / (b * self.targets[s].len()) as f64;
                for (t, row) in g.iter().enumerate() {
                    for (k, x) in row.iter().enumerate() {
                        grad[(t * b + s) * v + k] = x * scale;
                    }
                }
                losses.push(loss);
            }
            let mean =
                losses.iter().zip(&self.targets).map(|(l, t)| l / t.len() as f64).sum::<f64>() / b as f64;
            (losses, mean, grad)
        }
    }

    fn check(got: (Vec<f64>, f64, Vec<f64>), want: &(Vec<f64>, f64, Vec<f64>), loss_tol: f64, grad_tol: f64) {
        for (g, w) in got.0.iter().zip(&want.0) {
            assert!((g - w).abs() <= loss_tol * w.abs().max(1.0), "loss {g} vs {w}");
        }
        assert!((got.1 - want.1).abs() <= loss_tol * want.1.abs().max(1.0), "mean {} vs {}", got.1, want.1);
        for (i, (g, w)) in got.2.iter().zip(&want.2).enumerate() {
            assert!((g - w).abs() <= grad_tol, "element {i}: {g} vs {w}");
        }
    }

    fn backends() -> Vec<Backend> {
        let mut b = vec![Backend::Vector];
        if crate::simd::Avx2FmaToken::detect().is_some() {
            b.push(Backend::Avx2);
        }
        b
    }

    /// Sequences run alone take the probability-space lattice and match the reference; the pathless
    /// one gets a zero loss and zero rows (`zero_infinity`) without trying it twice.
    #[test]
    fn sequences_run_alone_in_probability_space() {
        let batch = Batch::new();
        let want = batch.reference();
        for backend in backends() {
            let (l, r, g, stats) = batch.run::<f64>(backend);
            let expect = SingleStats { sequences: 5, probability_space: 5, ..SingleStats::default() };
            assert_eq!(stats, expect, "{backend:?}");
            check((l, r, g), &want, 1e-12, 1e-12);
            let (l, r, g, stats) = batch.run::<f32>(backend);
            assert_eq!(stats, expect, "{backend:?}");
            check((l, r, g), &want, 4e-7, 6e-5);
        }
    }

    /// A backward pass that gives up (forced here at its last frame, after every other row was
    /// written) has its sequence redone in log space: every row rewritten, the loss and the mean
    /// recomputed, as if it had run there from the start.
    #[test]
    fn a_sequence_whose_backward_gives_up_is_redone_in_log_space() {
        let batch = Batch::new();
        let want = batch.reference();
        GIVE_UP.with(|g| g.set(true));
        for backend in backends() {
            // The pathless sequence writes its zero rows without a lattice, so it never gives up.
            let expect = SingleStats {
                sequences: 5,
                probability_space: 1,
                log_space_after_backward: 4,
                ..SingleStats::default()
            };
            let (l, r, g, stats) = batch.run::<f64>(backend);
            assert_eq!(stats, expect, "{backend:?}");
            check((l, r, g), &want, 1e-12, 1e-12);
            let (l, r, g, stats) = batch.run::<f32>(backend);
            assert_eq!(stats, expect, "{backend:?}");
            check((l, r, g), &want, 4e-7, 6e-5);
        }
        GIVE_UP.with(|g| g.set(false));
    }

    /// The scalar backend and calls without a gradient keep the log-space lattice.
    #[test]
    fn scalar_backend_stays_in_log_space() {
        let batch = Batch::new();
        let (l, r, g, stats) = batch.run::<f64>(Backend::Scalar);
        assert_eq!(stats, SingleStats::default());
        check((l, r, g), &batch.reference(), 1e-12, 1e-12);
    }
}
