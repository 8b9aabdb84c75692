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
use super::InputKind;
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

/// Every member's log-sum-exp of one frame of logits at once, one class per vector, gathered across the
/// members' rows (`rows[m]`: member `m`'s row offset in `src`, member 0's row and what follows). `None`
/// if some member's frame holds NaN or `+inf`, or is all `-inf` (the caller then finds which, and
/// reports it as the one-sequence path does).
///
/// One row at a time, a frame of 29 classes took four partial vectors, two horizontal reductions and a
/// scalar logarithm per sequence; across the members it is 29 gathers, no tail, no reduction.
#[inline(always)]
fn log_sum_exp_across<F: Float, V: Lanes<F>>(src: &[F], rows: &[u32], classes: usize) -> Option<V> {
    // The gathered frame, kept for the second pass (2 KiB of stack for 64 classes of 8 f32 lanes).
    let mut frame = [V::splat(F::NEG_INFINITY); ACROSS_MAX_CLASSES];
    let frame = &mut frame[..classes];
    let mut m = V::splat(F::NEG_INFINITY);
    let mut invalid = false;
    for (v, slot) in frame.iter_mut().enumerate() {
        let x = V::gather_or(&src[v..], rows, F::NEG_INFINITY);
        invalid |= x.any_invalid();
        m = m.max(x);
        *slot = x;
    }
    // A lane whose maximum is -inf had no finite logit: invalid too. The lanes' sum is -inf then (no
    // lane is NaN or +inf here); it is also -inf when huge negative maxima overflow the sum, which
    // only sends a valid frame down the slower row-by-row path.
    if invalid || m.reduce_add() == F::NEG_INFINITY {
        return None;
    }
    let mut sum = V::splat(F::ZERO);
    for &x in frame.iter() {
        sum = sum + (x - m).exp_le0();
    }
    Some(m + sum.ln_normal())
}

/// Member 0's activations from frame `t` on: the slice the gather table indexes.
#[inline(always)]
fn frame_src<'a, F: Float>(job: &SeqJob<'a, F>, t: usize) -> &'a [F] {
    &job.acts.data[job.acts.base + t * job.acts.stride_t..]
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
#[inline(always)]
pub(crate) fn forward<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
) {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, kind) = (first.time, first.labels.len(), first.input);
    assert!(
        jobs.len() == n
            && n <= MAX_LANES
            && lls.len() == n
            && errors.len() == n
            && gather.len() == (l_len + 2) * n
            && time >= 1
            && l_len >= 1
    );
    let s_len = 2 * l_len + 1;
    let ninf = F::NEG_INFINITY;
    let lay = SeqLayout::new(time, l_len).expect("workspace layout was checked at validation").interleaved(n);

    // Frame normalisers, frame-major: the members' rows of one frame are neighbours in a time-major
    // batch. A member with an invalid value is not read further, as in the one-sequence path.
    let mut bad = [false; MAX_LANES];
    let rows = &gather[(l_len + 1) * n..];
    // Across the members for short rows only: each gather touches `n` rows, and past a few cache lines
    // per row (`bpe`, V = 1024) reading every row twice that way costs more than reading them in turn.
    let across = kind == InputKind::Logits && first.acts.classes <= ACROSS_MAX_CLASSES;
    for t in 0..time {
        if across {
            for job in jobs {
                if t + PREFETCH_FRAMES < time {
                    job.acts.prefetch_row(t + PREFETCH_FRAMES);
                }
            }
            if let Some(norm) = log_sum_exp_across::<F, V>(frame_src(&first, t), rows, first.acts.classes) {
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
            let (norm, invalid) = match job.acts.row(t) {
                Some(row) => match kind {
                    InputKind::Logits => k.log_sum_exp_checked(row),
                    InputKind::LogProbs => (F::ZERO, !k.all_valid_log_probs(row)),
                },
                None => strided_norm(&job.acts, t, kind),
            };
            if invalid {
                errors[m] = Some(locate_bad_value(&job.acts, t, kind, job.sequence));
                bad[m] = true;
            }
            ws[lay.norm + t * n + m] = norm;
        }
    }
    if bad.iter().any(|&b| b) {
        return;
    }

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
) {
    let n = V::N;
    let first = jobs[0];
    let (time, l_len, blank, kind, out) =
        (first.time, first.labels.len(), first.blank, first.input, first.output);
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

    // Frames past the input length hold no signal; an infeasible member gets zeros everywhere.
    let mut live = [false; MAX_LANES];
    for (m, g) in grads.iter_mut().enumerate() {
        live[m] = lls[m] != f64::NEG_INFINITY;
        let from = if live[m] { time } else { 0 };
        for t in from..g.max_time {
            // SAFETY: t < max_time; this task owns the member's rows.
            unsafe { zero_row(g, t) };
        }
    }
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
    let mut t = time;
    while t > 0 {
        t -= 1;
        if t >= PREFETCH_FRAMES {
            for (job, g) in jobs.iter().zip(grads.iter()) {
                job.acts.prefetch_row(t - PREFETCH_FRAMES);
                g.prefetch_row(t - PREFETCH_FRAMES);
            }
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
            if !live[m] {
                continue;
            }
            let job = &jobs[m];
            let g = &mut grads[m];
            let frame_norm = norm[t * n + m];
            // SAFETY: t < time <= max_time; this task owns the member's rows.
            unsafe { write_dense_row(k, &job.acts, kind, out, t, frame_norm, scales[m], g) };
            if !usable[m] {
                // No state carries mass (see lattice::write_output_row): report none.
                continue;
            }
            let w = posterior_sign_scale(out, scales[m]) / totals[m];
            // Member m's label weights are every n-th value of the interleaved row, from lane m.
            let weights = &post[(l_len + 1) * n + m..][..(l_len - 1) * n + 1];
            // SAFETY: as above.
            match unsafe { g.row_mut(t) } {
                Some(row) => {
                    row[blank] -= blanks[m] * w;
                    for (j, &l) in job.labels.iter().enumerate() {
                        // SAFETY: j < L, so j * n < weights.len(); labels were validated < classes =
                        // row.len(). Unchecked: the two bounds checks per label were half the cost
                        // of this scatter (callgrind, `chars`).
                        unsafe { *row.get_unchecked_mut(l as usize) -= *weights.get_unchecked(j * n) * w };
                    }
                }
                None => {
                    let labels_w = (0..l_len).map(|j| weights[j * n] * w);
                    // SAFETY: as above; labels and blank were validated < classes.
                    unsafe { subtract_posteriors(g, t, blank, job.labels, blanks[m] * w, labels_w) };
                }
            }
        }
        core::mem::swap(&mut cur, &mut next);
    }
}

/// [`forward`], compiled for `isa`.
pub(crate) fn forward_on<F: Float, K: Kernels<F>, V: Lanes<F>>(
    isa: Isa,
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
) {
    match isa {
        Isa::Baseline => forward::<F, K, V>(k, jobs, gather, ws, lls, errors),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { forward_avx2_fma::<F, K, V>(k, jobs, gather, ws, lls, errors) },
    }
}

/// [`backward`], compiled for `isa`.
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
) {
    match isa {
        Isa::Baseline => backward::<F, K, V>(k, jobs, gather, lls, scales, ws, grads),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only when the CPU reported AVX2 and FMA.
        Isa::Avx2Fma(_) => unsafe { backward_avx2_fma::<F, K, V>(k, jobs, gather, lls, scales, ws, grads) },
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    ws: &mut [F],
    lls: &mut [f64],
    errors: &mut [Option<CtcError>],
) {
    forward::<F, K, V>(k, jobs, gather, ws, lls, errors)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2_fma<F: Float, K: Kernels<F>, V: Lanes<F>>(
    k: &K,
    jobs: &[SeqJob<'_, F>],
    gather: &[u32],
    lls: &[f64],
    scales: &[F],
    ws: &mut [F],
    grads: &mut [SeqGrad<F>],
) {
    backward::<F, K, V>(k, jobs, gather, lls, scales, ws, grads)
}
