//! The CTC loss: options, the batch API, the workspace, and scheduling across sequences.
//!
//! # What is computed
//!
//! For each sequence `b` of the batch, with input length `T_b`, target `l_1..l_{L_b}` and blank `k_0`,
//! the loss is `-ln p(l | x)`, where `p` sums, over every frame-level path of length `T_b` that collapses
//! to `l` (merge repeats, drop blanks), the product of the per-frame probabilities. The probabilities
//! are `softmax(x_t)` when the activations are logits ([`InputKind::Logits`], log-softmax fused in) and
//! `exp(x_t)` when they are log-probabilities ([`InputKind::LogProbs`]).
//!
//! On request a `(T, B, V)` output is written ([`GradOutput`]):
//! - [`GradOutput::Gradient`]: the gradient of the reduced loss with respect to the activations as
//!   given: `softmax(x) - gamma` for logits; `-gamma`, the true partial derivative, for log-probs;
//! - [`GradOutput::TorchLogProbs`]: PyTorch's convention for log-probs, `exp(x) - gamma` (equal to the
//!   logits gradient when `x` came out of a log-softmax; the same as `Gradient` for logits);
//! - [`GradOutput::Posterior`]: `gamma` itself, unscaled.
//!
//! `gamma[t][k]` is the posterior probability that frame `t` emits class `k`. Frames `t >= T_b` of a
//! shorter sequence are never read and their output rows are written as zeros.
//!
//! # Edge cases, defined
//! - `L_b = 0`: the only labelling is all blanks: loss `-sum_t x_t[blank]` (after log-softmax).
//! - `T_b = 0`: loss 0 if `L_b = 0` (the empty path is the empty labelling), else infeasible.
//! - Infeasible (`T_b < L_b + repeats`, where `repeats` counts `l_i == l_{i+1}`, or every feasible
//!   path passes through a `-inf` log-prob): loss `+inf` and a zero gradient, never NaN; with
//!   `zero_infinity`, loss 0 and gradient 0.
//! - NaN or `+inf` in a frame that is read, or a frame of logits that is all `-inf`:
//!   [`CtcError::NonFinite`] naming the sequence, frame and class. Such input has no meaningful loss;
//!   an error is louder than a NaN that surfaces steps later in a training run.
//! - `B = 0`: every reduction is 0.
//!
//! # Reductions
//! [`Reduction::Sum`] and [`Reduction::None`] differ only in the scalar returned (the sum, in both
//! cases, is returned; `None` is for callers who use the per-sequence losses alone): the gradient is
//! that of the sum. [`Reduction::Mean`] is PyTorch's: `mean_b(loss_b / max(L_b, 1))`, with gradients
//! scaled by `1 / (B * max(L_b, 1))`.
//!
//! # Scheduling
//! Sequences run as rayon tasks, most lattice cells first. On the vector backends
//! ([`Backend::Vector`], [`Backend::Avx2`], and so [`Backend::Auto`]), sequences with the same input
//! and target lengths, whose activation and output rows are contiguous, run in groups of as many as
//! the vector has lanes (8 `f32`, 4 `f64` with AVX2), one sequence per lane: short targets then fill
//! whole vectors. The results are those of the same sequences run alone, to rounding. When a
//! gradient is wanted, a group of up to a few hundred frames runs in probability space first (no
//! `exp` or `ln` per state) and is redone in log space where that could have cost accuracy; see
//! [`GroupStats`]. So do, in `f64` (whose range covers lattices of thousands of frames), the sequences
//! that run alone; see [`SingleStats`].
//!
//! # Errors and partial output
//! Every argument is validated before anything is written: on any other error, the loss and gradient
//! buffers are untouched. The only error that can be raised after the computation started is
//! [`CtcError::NonFinite`], found while the forward passes read the activations. It is reported after
//! the forward pass of the whole batch; the losses are then untouched, and every element of the
//! gradient view is zero (elements of its buffer outside the view are untouched). The forward passes
//! of sequences run alone, and of groups with rows of more than 64 classes, write the dense part of
//! their gradient rows (the scaled softmax) as they compute each frame's normaliser, from the same
//! `exp`s, so those rows may have been begun; zeroing the view leaves nothing half-written, whatever
//! the scheduling.

mod group;
mod lattice;
mod linear;
pub mod reference;
pub mod shapes;

use crate::buffer::{ActsView, ActsViewMut, Index, Layout, Targets};
use crate::error::CtcError;
use crate::simd::{Avx2FmaToken, Kernels, Lanes, Scalar};
use crate::Float;
use lattice::{Isa, SeqActs, SeqGrad, SeqJob, SeqLayout};

/// What the activations hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputKind {
    /// Unnormalised scores; the kernel applies log-softmax over the classes of each frame.
    #[default]
    Logits,
    /// Log-probabilities (each frame's `exp` should sum to 1; the kernel does not renormalise).
    LogProbs,
}

/// How per-sequence losses are combined into the returned scalar and how gradients are scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Per-sequence losses only; the scalar returned is their sum and the gradient is that of the sum.
    None,
    /// The sum over the batch.
    Sum,
    /// PyTorch's mean: `mean_b(loss_b / max(L_b, 1))`.
    #[default]
    Mean,
}

/// What the `(T, B, V)` output view receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradOutput {
    /// The gradient of the reduced loss with respect to the activations as given.
    #[default]
    Gradient,
    /// `exp(x) - gamma`, scaled by the reduction: PyTorch's `ctc_loss` backward for log-probs.
    TorchLogProbs,
    /// The posterior `gamma[t][k]`, not scaled by the reduction.
    Posterior,
}

/// How the sequences of a batch are spread over threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Every sequence on the calling thread.
    Sequential,
    /// Sequences as rayon tasks, longest first, on the current rayon pool (use
    /// `ThreadPool::install` to choose the thread count). Without the `rayon` feature, sequential.
    #[default]
    Rayon,
}

/// Which implementation of the lattice's inner loops runs.
///
/// Dispatch: [`Backend::Auto`] checks the CPU once per call (the standard library caches the answer)
/// and picks [`Backend::Avx2`] when it can, else [`Backend::Vector`]. The choice is explicit so tests
/// and benchmarks can force each path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The fastest available on the running CPU: [`Backend::Avx2`] if supported, else [`Backend::Vector`].
    #[default]
    Auto,
    /// Plain scalar code with the standard library's `exp`/`ln` (the readable reference of the fast path).
    Scalar,
    /// The `wide` vector kernels with their own `exp`/`ln` (see [`crate::simd`]), in the instruction
    /// set chosen at compile time (SSE2 for a default x86-64 build; AVX2 with
    /// `-C target-cpu=native` on such a CPU). Portable to every architecture.
    Vector,
    /// x86-64 only: kernels on `core::arch` AVX2 intrinsics, in a copy of the per-sequence code compiled
    /// with `#[target_feature(enable = "avx2,fma")]`, selected at run time, so a default build uses AVX2.
    /// On a CPU (or architecture) without AVX2 and FMA it runs [`Backend::Vector`] instead:
    /// [`Backend::is_supported`] says which.
    Avx2,
}

impl Backend {
    /// Whether this backend runs as itself on this CPU (`false` only for [`Backend::Avx2`] on a CPU
    /// without AVX2 and FMA, where it falls back to [`Backend::Vector`]).
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Avx2 => Avx2FmaToken::detect().is_some(),
            Backend::Auto | Backend::Scalar | Backend::Vector => true,
        }
    }
}

/// Options of a CTC computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtcOptions {
    /// The blank class, `0..V`.
    pub blank: usize,
    /// Whether the activations are logits or log-probabilities.
    pub input: InputKind,
    /// How losses are combined and gradients scaled.
    pub reduction: Reduction,
    /// Report infinite losses as 0, with zero gradients.
    pub zero_infinity: bool,
    /// What the output view receives.
    pub output: GradOutput,
    /// Threading across the batch.
    pub parallelism: Parallelism,
    /// Inner-loop implementation.
    pub backend: Backend,
}

impl Default for CtcOptions {
    /// Blank 0, logits, mean reduction, `zero_infinity` off, gradient output, rayon.
    fn default() -> Self {
        CtcOptions {
            blank: 0,
            input: InputKind::Logits,
            reduction: Reduction::Mean,
            zero_infinity: false,
            output: GradOutput::Gradient,
            parallelism: Parallelism::Rayon,
            backend: Backend::Auto,
        }
    }
}

/// Per-sequence losses and their reduction, as returned by the allocating calls.
#[derive(Clone, Debug, PartialEq)]
pub struct CtcLoss<F> {
    /// `-ln p(target_b | x_b)` for each sequence (`+inf` if infeasible, 0 then with `zero_infinity`).
    pub losses: Vec<F>,
    /// The reduction of `losses` chosen in the options.
    pub reduced: F,
}

/// One sequence's plan: validated lengths and where its pieces live.
#[derive(Clone, Debug, Default)]
struct SeqPlan {
    /// Index in the batch.
    b: usize,
    /// Input length `T_b`.
    time: usize,
    /// Start of its labels in [`Workspace::labels`].
    label_start: usize,
    /// Target length `L_b`.
    label_len: usize,
    /// Start of its region in [`Workspace::floats`].
    offset: usize,
    /// Length of its region.
    len: usize,
    /// Result of the forward pass, `ln p`, in `f64` (the rescaling offsets are accumulated in `f64`).
    log_likelihood: f64,
    /// An error found by the forward pass.
    error: Option<CtcError>,
    /// Plans in the unit of work that starts here: 1 for a sequence run alone, `N` for the first
    /// member of a group of `N` run interleaved in vector lanes (the next `N - 1` plans, its other
    /// members, hold 0).
    unit: usize,
    /// Start of a group's gather table in [`Workspace::gather`] (first member only).
    gather_start: usize,
    /// Whether the forward pass left its lattice in probability space (see
    /// [`group::backward_linear`] and `linear`) rather than in log space.
    linear: bool,
    /// Whether the backward pass redid the unit in log space, with a new `ln p`.
    redone: bool,
    /// Whether the forward pass tried the probability-space lattice (for a sequence run alone: set
    /// when the workspace is planned).
    tried_linear: bool,
    /// Whether a group's forward pass wrote the dense part of its output rows
    /// ([`group::writes_dense_in_forward`]; sequences run alone in probability space always do).
    dense_done: bool,
}

/// Scratch memory for the kernel, reusable across calls.
///
/// Its size is a pure function of the input and target lengths ([`Workspace::required_len`]); it grows
/// when a call needs more and never shrinks, so a loop over batches of bounded size allocates only in
/// its first call. Its contents between calls are irrelevant (each call overwrites what it reads).
#[derive(Clone, Debug, Default)]
pub struct Workspace<F> {
    floats: Vec<F>,
    labels: Vec<u32>,
    plans: Vec<SeqPlan>,
    /// The groups' gather tables: `(L + 2) * N` offsets each (see `group`).
    gather: Vec<u32>,
}

impl<F: Float> Workspace<F> {
    /// An empty workspace; the first call sizes it.
    pub fn new() -> Self {
        Workspace { floats: Vec::new(), labels: Vec::new(), plans: Vec::new(), gather: Vec::new() }
    }

    /// A workspace already large enough for a batch with these lengths (so no call on such a batch
    /// allocates).
    pub fn with_capacity_for<L: Index>(input_lengths: &[L], target_lengths: &[L]) -> Result<Self, CtcError> {
        let n = Self::required_len(input_lengths, target_lengths)?;
        let labels = target_lengths
            .iter()
            .try_fold(0usize, |acc, l| acc.checked_add(l.to_usize().unwrap_or(0)))
            .ok_or(CtcError::LayoutOverflow { buffer: "workspace" })?;
        Ok(Workspace {
            floats: vec![F::ZERO; n],
            labels: Vec::with_capacity(labels),
            plans: Vec::with_capacity(input_lengths.len()),
            // A group's table has L + 2 entries per member: at most one per label plus two per sequence.
            gather: Vec::with_capacity(labels.saturating_add(2 * input_lengths.len())),
        })
    }

    /// Elements of `F` the kernel needs for a batch with these lengths, at most: per sequence, the
    /// larger of the log-space lattice's region, `T_b * (2 L_b + 1)` alpha values plus `3 T_b + 8 L_b +
    /// 5` (normalisers, rescaling offsets, two beta rows, one frame of emissions, posteriors, skip
    /// terms), and the probability-space lattice's, which a sequence run alone uses when a gradient is
    /// wanted: `T_b` alpha rows of `2 H_b + 3` values in `f64` (`H_b` is `L_b + 1` rounded up to a
    /// multiple of 4) plus `T_b + 8 H_b + 13`, i.e. twice as many elements for `f32`.
    pub fn required_len<L: Index>(input_lengths: &[L], target_lengths: &[L]) -> Result<usize, CtcError> {
        if input_lengths.len() != target_lengths.len() {
            return Err(CtcError::ShapeMismatch {
                what: "target lengths vs input lengths",
                expected: input_lengths.len(),
                got: target_lengths.len(),
            });
        }
        let mut total = 0usize;
        for (b, (t, l)) in input_lengths.iter().zip(target_lengths).enumerate() {
            let t = length(*t, "input length", b)?;
            let l = length(*l, "target length", b)?;
            let overflow = CtcError::LayoutOverflow { buffer: "workspace" };
            let log_space = SeqLayout::new(t, l).ok_or(overflow.clone())?.len;
            let probability_space = linear::region_len::<F>(t, l).ok_or(overflow.clone())?;
            total = total.checked_add(log_space.max(probability_space)).ok_or(overflow)?;
        }
        Ok(total)
    }

    /// Elements of `F` currently held.
    pub fn capacity(&self) -> usize {
        self.floats.len()
    }

    /// How the last call on this workspace ran its groups (sequences of equal lengths interleaved in
    /// vector lanes): see [`GroupStats`]. All zero for a call that formed no group.
    pub fn group_stats(&self) -> GroupStats {
        let [groups, probability_space, log_space_after_forward, log_space_after_backward] =
            self.outcomes(|p| p.unit > 1);
        GroupStats { groups, probability_space, log_space_after_forward, log_space_after_backward }
    }

    /// How the last call on this workspace ran the sequences that ran alone (not in a group): see
    /// [`SingleStats`]. All zero for a call without a gradient, or on [`Backend::Scalar`].
    pub fn single_stats(&self) -> SingleStats {
        let [sequences, probability_space, log_space_after_forward, log_space_after_backward] =
            self.outcomes(|p| p.unit == 1 && p.tried_linear);
        SingleStats { sequences, probability_space, log_space_after_forward, log_space_after_backward }
    }

    /// Units of work that pass `filter`, and how many of them ran in probability space, gave up in
    /// its forward pass, or were redone after its backward pass.
    fn outcomes(&self, filter: impl Fn(&SeqPlan) -> bool) -> [usize; 4] {
        let mut counts = [0; 4];
        for p in self.plans.iter().filter(|p| filter(p)) {
            counts[0] += 1;
            match (p.tried_linear, p.linear, p.redone) {
                (true, true, false) => counts[1] += 1,
                (true, false, _) => counts[2] += 1,
                (true, true, true) => counts[3] += 1,
                (false, ..) => {}
            }
        }
        counts
    }
}

/// How a call ran its sequences that ran alone, for diagnostics and tests
/// ([`Workspace::single_stats`]).
///
/// When a gradient is wanted, on the vector backends, a sequence that runs alone (with at least one
/// frame and one label) runs in probability space first, in `f64` whatever the activations' type;
/// where that lattice cannot vouch for its accuracy (a row out of `f64`'s range, a path lost to
/// flushing, or values below the normal range that mattered) the sequence is redone in log space, with
/// the same results to within rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleStats {
    /// Sequences run alone for which the probability-space lattice was tried.
    pub sequences: usize,
    /// Sequences that ran in probability space, forward and backward.
    pub probability_space: usize,
    /// Sequences whose probability-space forward pass gave up, then run in log space.
    pub log_space_after_forward: usize,
    /// Sequences whose probability-space backward pass gave up, then redone in log space, forward and
    /// backward.
    pub log_space_after_backward: usize,
}

/// How a call ran its groups, for diagnostics and tests ([`Workspace::group_stats`]).
///
/// A group is first run in probability space when a gradient is wanted and its input length is at
/// most a few hundred frames; where that lattice cannot vouch for its accuracy (values below the
/// floating-point type's normal range that mattered) the group is redone in log space, with the same
/// results to within rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups formed.
    pub groups: usize,
    /// Groups that ran in probability space, forward and backward.
    pub probability_space: usize,
    /// Groups whose probability-space forward pass gave up (a row's maximum out of range, or a lost
    /// path), then run in log space.
    pub log_space_after_forward: usize,
    /// Groups whose probability-space backward pass gave up (its budget for rounding below the normal
    /// range ran out), then redone in log space, forward and backward.
    pub log_space_after_backward: usize,
}

fn length<L: Index>(x: L, what: &'static str, sequence: usize) -> Result<usize, CtcError> {
    x.to_usize().ok_or_else(|| CtcError::InvalidValue { what, sequence, value: x.to_i128() })
}

/// Per-sequence losses and the reduced loss, without gradients. Allocates its workspace.
pub fn ctc_loss<F: Float, L: Index>(
    acts: &ActsView<'_, F>,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    opts: &CtcOptions,
) -> Result<CtcLoss<F>, CtcError> {
    let mut losses = vec![F::ZERO; input_lengths.len()];
    let mut ws = Workspace::new();
    let reduced = ctc_compute(acts, targets, input_lengths, &mut losses, None, opts, &mut ws)?;
    Ok(CtcLoss { losses, reduced })
}

/// Per-sequence losses, the reduced loss, and the output `opts.output` written through `grad` (same
/// `T`, `B`, `V` as `acts`; its strides may differ). Allocates its workspace.
pub fn ctc_loss_and_grad<F: Float, L: Index>(
    acts: &ActsView<'_, F>,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    grad: &mut ActsViewMut<'_, F>,
    opts: &CtcOptions,
) -> Result<CtcLoss<F>, CtcError> {
    let mut losses = vec![F::ZERO; input_lengths.len()];
    let mut ws = Workspace::new();
    let reduced = ctc_compute(acts, targets, input_lengths, &mut losses, Some(grad), opts, &mut ws)?;
    Ok(CtcLoss { losses, reduced })
}

/// The full call: per-sequence losses into `losses` (`B` of them), the optional output view, scratch
/// from `ws`. Returns the reduced loss. Allocates nothing when `ws` is large enough
/// ([`Workspace::with_capacity_for`]).
pub fn ctc_compute<F: Float, L: Index>(
    acts: &ActsView<'_, F>,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    losses: &mut [F],
    grad: Option<&mut ActsViewMut<'_, F>>,
    opts: &CtcOptions,
    ws: &mut Workspace<F>,
) -> Result<F, CtcError> {
    // The intrinsic AVX2 lanes beat `wide`'s even in a build that targets AVX2 (`-C target-cpu=native`:
    // callgrind, tiny 33.6M vs 49.1M instructions, chars 21.5M vs 32.5M), so `Auto` picks them wherever
    // the CPU has AVX2 and FMA.
    let avx2 = match opts.backend {
        Backend::Auto | Backend::Avx2 => Avx2FmaToken::detect(),
        Backend::Scalar | Backend::Vector => None,
    };
    match (opts.backend, avx2) {
        (Backend::Scalar, _) => compute_on::<_, _, _, F::SimdLanes, <f64 as Float>::SimdLanes>(
            Isa::Baseline,
            &Scalar,
            false,
            acts,
            targets,
            input_lengths,
            losses,
            grad,
            opts,
            ws,
        ),
        #[cfg(target_arch = "x86_64")]
        (_, Some(token)) => compute_on::<_, _, _, F::Avx2Lanes, crate::simd::Avx2F64x4>(
            Isa::Avx2Fma(token),
            &F::avx2_kernels(token),
            true,
            acts,
            targets,
            input_lengths,
            losses,
            grad,
            opts,
            ws,
        ),
        _ => compute_on::<_, _, _, F::SimdLanes, <f64 as Float>::SimdLanes>(
            Isa::Baseline,
            &F::Simd::default(),
            true,
            acts,
            targets,
            input_lengths,
            losses,
            grad,
            opts,
            ws,
        ),
    }
}

/// [`ctc_compute`] on a chosen implementation of the inner loops.
#[allow(clippy::too_many_arguments)]
pub fn ctc_compute_with<F: Float, L: Index, K: Kernels<F>>(
    k: &K,
    acts: &ActsView<'_, F>,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    losses: &mut [F],
    grad: Option<&mut ActsViewMut<'_, F>>,
    opts: &CtcOptions,
    ws: &mut Workspace<F>,
) -> Result<F, CtcError> {
    compute_on::<_, _, _, F::SimdLanes, <f64 as Float>::SimdLanes>(
        Isa::Baseline,
        k,
        false,
        acts,
        targets,
        input_lengths,
        losses,
        grad,
        opts,
        ws,
    )
}

/// [`ctc_compute_with`], with the per-sequence code compiled for `isa`. With `interleave`, sequences of
/// equal input and target lengths run in groups of `V::N`, one per lane of `V` (see `group`), and,
/// when a gradient is wanted, the others in probability space over `f64` lanes `W` (see `linear`).
#[allow(clippy::too_many_arguments)]
fn compute_on<F: Float, L: Index, K: Kernels<F>, V: Lanes<F>, W: Lanes<f64>>(
    isa: Isa,
    k: &K,
    interleave: bool,
    acts: &ActsView<'_, F>,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    losses: &mut [F],
    grad: Option<&mut ActsViewMut<'_, F>>,
    opts: &CtcOptions,
    ws: &mut Workspace<F>,
) -> Result<F, CtcError> {
    let layout = acts.layout();
    let lanes = if interleave && V::N <= group::MAX_LANES { V::N } else { 1 };
    validate(&layout, targets, input_lengths, losses.len(), grad.as_deref(), opts, lanes, ws)?;

    let acts_data = acts.data();
    let (labels, gather) = (&ws.labels, &ws.gather);
    // The probability-space lattice proves its accuracy in the backward pass (see
    // `group::FlushBudget`), so a call without a gradient keeps the log-space one.
    let gradient_wanted = grad.is_some();
    let job = |plan: &SeqPlan| {
        seq_job(acts_data, &layout, plan, &labels[plan.label_start..][..plan.label_len], opts)
    };
    let batch = layout.batch;
    let scale = |plan: &SeqPlan| match opts.reduction {
        Reduction::Mean => F::ONE / (F::from_usize(batch) * F::from_usize(plan.label_len.max(1))),
        Reduction::Sum | Reduction::None => F::ONE,
    };
    let mut grad = grad;
    let gview = grad.as_mut().map(|g| (SendPtr(g.as_mut_ptr()), g.layout()));
    // Each task makes its sequences' accessors from the one pointer: every sequence's rows are
    // disjoint, and only the task that runs a sequence writes them.
    let seq_grad = |plan: &SeqPlan| {
        gview.map(|(gptr, glay)| SeqGrad {
            ptr: gptr.get(),
            base: glay.sequence_base(plan.b),
            stride_t: glay.stride_t,
            stride_v: glay.stride_v,
            classes: glay.classes,
            max_time: glay.max_time,
        })
    };
    let run_forward = |unit: &mut [SeqPlan], region: &mut [F]| {
        if let [plan] = unit {
            if plan.tried_linear {
                // The dense part of the output rows comes with the normalisers (one `exp` per class
                // instead of two); on an error in the batch every output row is zeroed below.
                let mut sg = seq_grad(plan);
                let dense = sg.as_mut().map(|g| (scale(plan), g));
                match linear::forward_on::<F, K, V, W>(isa, k, &job(plan), region, dense) {
                    Ok(Some(ll)) => {
                        plan.linear = true;
                        plan.log_likelihood = ll;
                        return;
                    }
                    Err(e) => {
                        plan.error = Some(e);
                        return;
                    }
                    // A row out of range or a lost path: the log-space lattice below.
                    Ok(None) => {}
                }
            }
            match lattice::forward_on(isa, k, &job(plan), region) {
                Ok(ll) => plan.log_likelihood = ll,
                Err(e) => plan.error = Some(e),
            }
            return;
        }
        let n = unit.len();
        let member = |m: usize| &unit[m.min(n - 1)];
        let jobs: [SeqJob<'_, F>; group::MAX_LANES] = core::array::from_fn(|m| job(member(m)));
        let mut lls = [0.0f64; group::MAX_LANES];
        let mut errors: [Option<CtcError>; group::MAX_LANES] = Default::default();
        let table = &gather[unit[0].gather_start..][..(unit[0].label_len + 2) * n];
        let first_time = unit[0].time;
        // Long rows of logits: the dense part of the output rows comes with the normalisers, as for
        // sequences run alone.
        let suits = gview.is_some() && group::rows_suit_dense_in_forward::<F, V>(&jobs[..n]);
        let scales: [F; group::MAX_LANES] =
            if suits { core::array::from_fn(|m| scale(member(m))) } else { [F::ZERO; group::MAX_LANES] };
        let mut grads: Option<[SeqGrad<F>; group::MAX_LANES]> =
            suits.then(|| core::array::from_fn(|m| seq_grad(member(m)).expect("a gradient view was given")));
        let dense = match &mut grads {
            Some(g) if group::writes_dense_in_forward::<F, V>(&jobs[..n], &g[..n]) => {
                Some((&scales[..n], &mut g[..n]))
            }
            _ => None,
        };
        let dense_done = dense.is_some();
        let linear = group::forward_on::<F, K, V>(
            isa,
            k,
            &jobs[..n],
            table,
            region,
            &mut lls[..n],
            &mut errors[..n],
            gradient_wanted,
            false,
            dense,
        );
        let tried = gradient_wanted && first_time <= group::LINEAR_MAX_TIME;
        for ((plan, ll), error) in unit.iter_mut().zip(lls).zip(errors) {
            plan.linear = linear;
            plan.tried_linear = tried;
            plan.dense_done = dense_done;
            match error {
                Some(e) => plan.error = Some(e),
                None => plan.log_likelihood = ll,
            }
        }
    };
    for_each_unit(opts.parallelism, &mut ws.plans, &mut ws.floats, &run_forward);

    // Report the first error in batch order, so the message does not depend on scheduling.
    if let Some(e) = ws.plans.iter().filter_map(|p| p.error.clone().map(|e| (p.b, e))).min_by_key(|x| x.0) {
        // Forward passes may have written output rows: leave none half-done.
        for plan in &ws.plans {
            if let Some(mut sg) = seq_grad(plan) {
                for t in 0..sg.max_time {
                    // SAFETY: t < max_time; no task runs any more, and each plan is one sequence.
                    unsafe { lattice::zero_row(&mut sg, t) };
                }
            }
        }
        return Err(e.1);
    }

    let mut reduced = reduce(&mut ws.plans, losses, opts, batch);

    if gview.is_some() {
        let seq_grad = |plan: &SeqPlan| seq_grad(plan).expect("a gradient view was given");
        let run_backward = |unit: &mut [SeqPlan], region: &mut [F]| {
            if let [plan] = unit {
                let mut sg = seq_grad(plan);
                let job = job(plan);
                if !plan.linear {
                    lattice::backward_on(isa, k, &job, plan.log_likelihood, scale(plan), region, &mut sg);
                    return;
                }
                if linear::backward_on::<F, V, W>(
                    isa,
                    &job,
                    plan.log_likelihood,
                    scale(plan),
                    region,
                    &mut sg,
                ) {
                    return;
                }
                // As for groups below: the sequence again in log space, `ln p` included. Its frames
                // were validated by the first forward pass, so no error can come back.
                let mut ll = lattice::forward_on(isa, k, &job, region).unwrap_or(f64::NEG_INFINITY);
                if zero_infinity_applies::<F>(ll, opts) {
                    ll = f64::NEG_INFINITY;
                }
                lattice::backward_on(isa, k, &job, ll, scale(plan), region, &mut sg);
                plan.log_likelihood = ll;
                plan.redone = true;
                return;
            }
            let n = unit.len();
            let member = |m: usize| &unit[m.min(n - 1)];
            let jobs: [SeqJob<'_, F>; group::MAX_LANES] = core::array::from_fn(|m| job(member(m)));
            let mut grads: [SeqGrad<F>; group::MAX_LANES] = core::array::from_fn(|m| seq_grad(member(m)));
            let lls: [f64; group::MAX_LANES] = core::array::from_fn(|m| member(m).log_likelihood);
            let scales: [F; group::MAX_LANES] = core::array::from_fn(|m| scale(member(m)));
            let table = &gather[unit[0].gather_start..][..(unit[0].label_len + 2) * n];
            let (linear, dense_done) = (unit[0].linear, unit[0].dense_done);
            let (jobs, lls, scales, grads) = (&jobs[..n], &lls[..n], &scales[..n], &mut grads[..n]);
            if group::backward_on::<F, K, V>(
                isa, k, jobs, table, lls, scales, region, grads, linear, dense_done,
            ) {
                return;
            }
            // The probability-space lattice could not vouch for its accuracy (rare: peaked or
            // adversarial inputs): the group again in log space, `ln p` included.
            let mut lls = [0.0f64; group::MAX_LANES];
            let mut errors: [Option<CtcError>; group::MAX_LANES] = Default::default();
            group::forward_on::<F, K, V>(
                isa,
                k,
                jobs,
                table,
                region,
                &mut lls[..n],
                &mut errors[..n],
                false,
                true,
                None,
            );
            for ll in &mut lls[..n] {
                if zero_infinity_applies::<F>(*ll, opts) {
                    *ll = f64::NEG_INFINITY;
                }
            }
            // Every row again, dense part included: the rows hold part of the first try's posteriors.
            group::backward_on::<F, K, V>(
                isa,
                k,
                jobs,
                table,
                &lls[..n],
                scales,
                region,
                grads,
                false,
                false,
            );
            for (plan, ll) in unit.iter_mut().zip(lls) {
                plan.log_likelihood = ll;
                plan.redone = true;
            }
        };
        for_each_unit(opts.parallelism, &mut ws.plans, &mut ws.floats, &run_backward);
        if ws.plans.iter().any(|p| p.redone) {
            reduced = reduce(&mut ws.plans, losses, opts, batch);
        }
    }
    Ok(reduced)
}

/// Whether `zero_infinity` turns a sequence with this `ln p` into a zero loss with a zero gradient:
/// a loss beyond `F::MAX` cannot be reported, so it counts as infeasible.
fn zero_infinity_applies<F: Float>(log_likelihood: f64, opts: &CtcOptions) -> bool {
    opts.zero_infinity && F::from_f64(-log_likelihood) == F::INFINITY
}

/// Writes every sequence's loss from its plan's `ln p` and returns the reduction, applying
/// `zero_infinity` (which also sets the plan's `ln p` to `-inf`, for the backward pass).
fn reduce<F: Float>(plans: &mut [SeqPlan], losses: &mut [F], opts: &CtcOptions, batch: usize) -> F {
    // Reduced in f64 and rounded once: an f32 running sum can overflow although the mean fits, and
    // rounds at every addition.
    let mut reduced = 0.0f64;
    for p in plans.iter_mut() {
        let mut loss = -p.log_likelihood;
        if zero_infinity_applies::<F>(p.log_likelihood, opts) {
            loss = 0.0;
            p.log_likelihood = f64::NEG_INFINITY;
        }
        losses[p.b] = F::from_f64(loss);
        reduced += match opts.reduction {
            Reduction::Mean => loss / p.label_len.max(1) as f64,
            Reduction::Sum | Reduction::None => loss,
        };
    }
    if opts.reduction == Reduction::Mean && batch > 0 {
        reduced /= batch as f64;
    }
    F::from_f64(reduced)
}

/// A raw pointer that may cross threads. Only the gradient writers use it, each within the rows of
/// its own sequence (see the SAFETY comments in `lattice`).
#[derive(Clone, Copy)]
struct SendPtr<F>(*mut F);
// SAFETY: the pointee is a validated, non-aliasing view, and every task writes a disjoint set of
// elements (the rows of its own sequence b).
unsafe impl<F: Send> Send for SendPtr<F> {}
// SAFETY: as above; the pointer is only read (copied) through a shared reference.
unsafe impl<F: Send> Sync for SendPtr<F> {}
impl<F> SendPtr<F> {
    fn get(self) -> *mut F {
        self.0
    }
}

fn seq_job<'a, F: Float>(
    data: &'a [F],
    layout: &Layout,
    plan: &SeqPlan,
    labels: &'a [u32],
    opts: &CtcOptions,
) -> SeqJob<'a, F> {
    SeqJob {
        acts: seq_acts(data, layout, plan.b),
        labels,
        time: plan.time,
        sequence: plan.b,
        blank: opts.blank,
        input: opts.input,
        output: opts.output,
    }
}

fn seq_acts<'a, F: Float>(data: &'a [F], layout: &Layout, b: usize) -> SeqActs<'a, F> {
    SeqActs {
        data,
        base: layout.sequence_base(b),
        stride_t: layout.stride_t,
        stride_v: layout.stride_v,
        classes: layout.classes,
    }
}

/// Runs `f` on every unit of work (a sequence alone, or a group run interleaved) with its plans and
/// its own region of the workspace. The plans are in schedule order (most lattice cells first) and the
/// regions laid out in the same order, a group's members next to each other, so the recursion splits
/// plans and regions together with `split_at_mut`, at unit boundaries: no task can touch another's data.
fn for_each_unit<F: Float, G>(par: Parallelism, plans: &mut [SeqPlan], floats: &mut [F], f: &G)
where
    G: Fn(&mut [SeqPlan], &mut [F]) + Sync,
{
    fn go<F: Float, G>(parallel: bool, plans: &mut [SeqPlan], floats: &mut [F], base: usize, f: &G)
    where
        G: Fn(&mut [SeqPlan], &mut [F]) + Sync,
    {
        let Some(first) = plans.first() else { return };
        if first.unit == plans.len() {
            let start = first.offset - base;
            let len = plans.iter().map(|p| p.len).sum::<usize>();
            f(plans, &mut floats[start..start + len]);
            return;
        }
        // Below this many lattice cells (a few tens of microseconds of work) a rayon task costs
        // more than it saves: `tiny` has 256 sequences of 1050 cells, and splitting all the way
        // down to one sequence per task spent more time in `join` than in some lattices.
        const GRAIN_CELLS: usize = 1 << 15;
        let parallel =
            parallel && plans.iter().map(|p| p.time * (2 * p.label_len + 1)).sum::<usize>() >= GRAIN_CELLS;
        // The unit boundary nearest past the middle (there is one: the slice holds two units or more).
        let n = plans.len();
        let mid = (n / 2..n).chain((1..n / 2).rev()).find(|&i| plans[i].unit > 0).expect("two units or more");
        let (lp, rp) = plans.split_at_mut(mid);
        let split = rp[0].offset - base;
        let (lf, rf) = floats.split_at_mut(split);
        let rbase = base + split;
        if parallel {
            join(|| go(true, lp, lf, base, f), || go(true, rp, rf, rbase, f));
        } else {
            go(false, lp, lf, base, f);
            go(false, rp, rf, rbase, f);
        }
    }
    go(par == Parallelism::Rayon, plans, floats, 0, f)
}

/// Threads of the rayon pool the call runs in (1 without the `rayon` feature).
#[cfg(feature = "rayon")]
fn worker_threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(feature = "rayon"))]
fn worker_threads() -> usize {
    1
}

#[cfg(feature = "rayon")]
fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    rayon::join(a, b);
}

#[cfg(not(feature = "rayon"))]
fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    a();
    b();
}

/// Marks runs of `lanes` plans with equal input and target lengths as groups, to be run one sequence
/// per vector lane, and writes their gather tables. A group needs contiguous rows (class stride 1) in
/// the activations and the output, `T >= 1` and `L >= 1`, and offsets between its members' rows that
/// fit the 31 bits of an x86 gather index.
///
/// With a gradient, sequences longer than [`group::LINEAR_MAX_TIME`] are not grouped: a group of them
/// would run its lattice in log space (in `f32` the probability-space one runs out of range there),
/// and alone they run it in probability space in `f64`, which was faster: `chars_long` (16 x 1000
/// frames), CPU time per call 49-57 ms grouped against 41-46 ms alone (`bench 10 chars_long`, same
/// loaded machine, alternating runs).
fn group_plans<F: Float>(
    acts: &Layout,
    grad: Option<Layout>,
    blank: usize,
    lanes: usize,
    threads: usize,
    ws: &mut Workspace<F>,
) {
    if acts.stride_v != 1 || grad.is_some_and(|g| g.stride_v != 1) {
        return;
    }
    let plans = &mut ws.plans;
    // Units of work left if no more groups are formed; a group is formed only while at least one
    // unit per thread remains.
    let mut units = plans.len();
    let mut i = 0;
    while i + lanes <= plans.len() && units >= threads + lanes - 1 {
        let head = &plans[i];
        let members = &plans[i..i + lanes];
        let same = members.iter().all(|p| p.time == head.time && p.label_len == head.label_len);
        let bases = members.iter().map(|p| acts.sequence_base(p.b));
        let (lo, hi) = bases.clone().fold((usize::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let fits = hi.checked_add(acts.classes).is_some_and(|end| end - lo <= i32::MAX as usize);
        let long = grad.is_some() && head.time > group::LINEAR_MAX_TIME;
        if !(same && fits && head.time >= 1 && head.label_len >= 1) || long {
            i += 1;
            continue;
        }
        // Member 0 has the lowest base (bases grow with b, and members are in batch order); the
        // table is relative to it, so every offset is non-negative.
        let first = acts.sequence_base(head.b);
        if first != lo {
            i += 1;
            continue;
        }
        let start = ws.gather.len();
        // Per state j (labels, then the blank) and member, the offset of its class in the member's row;
        // then the rows' own offsets (class 0), from which the frame normalisers gather every class.
        for j in 0..head.label_len + 2 {
            for p in members {
                let class = match j.cmp(&head.label_len) {
                    core::cmp::Ordering::Less => ws.labels[p.label_start + j] as usize,
                    core::cmp::Ordering::Equal => blank,
                    core::cmp::Ordering::Greater => 0,
                };
                ws.gather.push((acts.sequence_base(p.b) - first + class) as u32);
            }
        }
        plans[i].unit = lanes;
        plans[i].gather_start = start;
        units -= lanes - 1;
        for p in &mut plans[i + 1..i + lanes] {
            p.unit = 0;
        }
        i += lanes;
    }
}

/// Checks every argument and fills the workspace's plans and labels. Writes nothing else.
#[allow(clippy::too_many_arguments)]
fn validate<F: Float, L: Index>(
    layout: &Layout,
    targets: &Targets<'_, L>,
    input_lengths: &[L],
    losses_len: usize,
    grad: Option<&ActsViewMut<'_, F>>,
    opts: &CtcOptions,
    lanes: usize,
    ws: &mut Workspace<F>,
) -> Result<(), CtcError> {
    let batch = layout.batch;
    let check_len = |what, got| {
        if got != batch {
            Err(CtcError::ShapeMismatch { what, expected: batch, got })
        } else {
            Ok(())
        }
    };
    check_len("input lengths vs batch", input_lengths.len())?;
    check_len("target lengths vs batch", targets.lengths().len())?;
    check_len("losses vs batch", losses_len)?;
    if let Some(g) = grad {
        let gl = g.layout();
        for (what, expected, got) in [
            ("gradient frames vs activations", layout.max_time, gl.max_time),
            ("gradient batch vs activations", layout.batch, gl.batch),
            ("gradient classes vs activations", layout.classes, gl.classes),
        ] {
            if expected != got {
                return Err(CtcError::ShapeMismatch { what, expected, got });
            }
        }
    }
    if batch > 0 && opts.blank >= layout.classes {
        return Err(CtcError::BlankOutOfRange { blank: opts.blank, classes: layout.classes });
    }

    ws.plans.clear();
    ws.labels.clear();
    let mut concat_pos = 0usize;
    for (b, &raw_time) in input_lengths.iter().enumerate() {
        let time = length(raw_time, "input length", b)?;
        if time > layout.max_time {
            return Err(CtcError::InputLengthTooLong {
                sequence: b,
                length: time,
                max_time: layout.max_time,
            });
        }
        let label_len = length(targets.lengths()[b], "target length", b)?;
        let seq_labels = match *targets {
            Targets::Concatenated { labels, .. } => {
                let end = concat_pos.checked_add(label_len).filter(|&e| e <= labels.len()).ok_or(
                    CtcError::BufferTooShort {
                        buffer: "labels",
                        needed: concat_pos.saturating_add(label_len),
                        got: labels.len(),
                    },
                )?;
                let s = &labels[concat_pos..end];
                concat_pos = end;
                s
            }
            Targets::Padded { labels, max_len, .. } => {
                if label_len > max_len {
                    return Err(CtcError::TargetLengthTooLong { sequence: b, length: label_len, max_len });
                }
                let start = b.checked_mul(max_len).ok_or(CtcError::LayoutOverflow { buffer: "labels" })?;
                let end = start + label_len;
                if end > labels.len() {
                    return Err(CtcError::BufferTooShort {
                        buffer: "labels",
                        needed: end,
                        got: labels.len(),
                    });
                }
                &labels[start..end]
            }
        };
        let label_start = ws.labels.len();
        for (position, &raw) in seq_labels.iter().enumerate() {
            let label = raw.to_usize().ok_or(CtcError::InvalidValue {
                what: "label",
                sequence: b,
                value: raw.to_i128(),
            })?;
            if label == opts.blank {
                return Err(CtcError::LabelIsBlank { sequence: b, position });
            }
            if label >= layout.classes {
                return Err(CtcError::LabelOutOfRange {
                    sequence: b,
                    position,
                    label,
                    classes: layout.classes,
                });
            }
            ws.labels.push(label as u32);
        }
        let seq = SeqLayout::new(time, label_len).ok_or(CtcError::LayoutOverflow { buffer: "workspace" })?;
        ws.plans.push(SeqPlan {
            b,
            time,
            label_start,
            label_len,
            offset: 0,
            len: seq.len,
            log_likelihood: 0.0,
            error: None,
            unit: 1,
            gather_start: 0,
            linear: false,
            redone: false,
            tried_linear: false,
            dense_done: false,
        });
    }
    // Longest first: the last tasks to start are the shortest, so threads finish together. Equal
    // lengths end up next to each other (the input length breaks ties between equal cell counts), in
    // batch order, ready to be grouped.
    ws.plans.sort_unstable_by_key(|p| {
        (core::cmp::Reverse(p.time.saturating_mul(2 * p.label_len + 1)), p.time, p.b)
    });
    ws.gather.clear();
    if lanes > 1 {
        // Grouping must not starve the threads: `bpe_large` (8 sequences) as one group ran on one of
        // two threads, 64 ms against 41 ms for eight sequences spread over both.
        let threads = match opts.parallelism {
            Parallelism::Rayon => worker_threads(),
            Parallelism::Sequential => 1,
        };
        group_plans(layout, grad.map(|g| g.layout()), opts.blank, lanes, threads, ws);
        // Sequences run alone take the probability-space lattice when a gradient is wanted (its
        // accuracy check needs beta), in a region large enough for it and for the log-space fallback.
        if grad.is_some() {
            for p in ws.plans.iter_mut().filter(|p| p.unit == 1 && p.time >= 1 && p.label_len >= 1) {
                let len = linear::region_len::<F>(p.time, p.label_len)
                    .ok_or(CtcError::LayoutOverflow { buffer: "workspace" })?;
                p.len = p.len.max(len);
                p.tried_linear = true;
            }
        }
    }
    let mut offset = 0usize;
    for p in ws.plans.iter_mut() {
        p.offset = offset;
        offset = offset.checked_add(p.len).ok_or(CtcError::LayoutOverflow { buffer: "workspace" })?;
    }
    if ws.floats.len() < offset {
        ws.floats.resize(offset, F::ZERO);
    }
    Ok(())
}
