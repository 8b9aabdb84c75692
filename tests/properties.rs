//! Metamorphic and differential properties of the kernel (quickcheck), for every implementation of the
//! inner loops and both float types.
//!
//! Each property is a generic function over `F: Float` and `K: Engine<F>`; the `backend_properties!`
//! macro instantiates all of them for one `(backend, type)` pair. A new SIMD backend gets the whole
//! suite with one more line at the bottom of this file.
//!
//! Cases are generated from a seed (printed in every failure, with the whole problem) through the
//! shared `common::Problem` generator. The number of cases per property is `QUICKCHECK_TESTS`
//! (default [`DEFAULT_TESTS`]).

// Index loops over (t, b, k) mirror the address formula and read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Mutex;

use common::{Problem, Rng};
use fastctc::loss::{ctc_compute_with, reference};
use fastctc::simd::{Kernels, Scalar};
use fastctc::{
    ActsView, ActsViewMut, CtcOptions, Float, GradOutput, InputKind, Layout, Parallelism, Reduction, Targets,
    Workspace,
};
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// Cases per property when `QUICKCHECK_TESTS` is unset: keeps this file's run well under 20 s with
/// every instantiation (measured: about 1 s for the two scalar instantiations on a loaded 2-core machine).
const DEFAULT_TESTS: u64 = 1000;

fn quickcheck<A: Arbitrary + std::fmt::Debug>(prop: fn(A)) {
    let n = std::env::var("QUICKCHECK_TESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_TESTS);
    QuickCheck::new().tests(n).max_tests(n * 10).quickcheck(prop);
}

/// One small batch: ragged lengths, repeats (small V), a random blank, some infeasible targets.
#[derive(Clone, Debug)]
struct Case {
    /// The seed the whole case is derived from; rerun a failure with `Case::from_seed(seed)`.
    seed: u64,
    kind: InputKind,
    reduction: Reduction,
    problem: Problem,
}

impl Case {
    fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let v = 2 + rng.below(6);
        let batch = 1 + rng.below(4);
        let max_time = rng.below(13);
        let scale = [0.1, 1.0, 4.0][rng.below(3)];
        let kind = if rng.below(2) == 0 { InputKind::Logits } else { InputKind::LogProbs };
        let reduction = [Reduction::None, Reduction::Sum, Reduction::Mean][rng.below(3)];
        let mut problem = Problem::random(&mut rng, batch, max_time, 6, v, scale);
        if kind == InputKind::LogProbs {
            problem.normalise();
        }
        Case { seed, kind, reduction, problem }
    }

    fn opts(&self) -> CtcOptions {
        CtcOptions {
            blank: self.problem.blank,
            input: self.kind,
            reduction: self.reduction,
            zero_infinity: false,
            output: GradOutput::Gradient,
            parallelism: Parallelism::Sequential,
            ..Default::default()
        }
    }
}

/// Prints the failing case's seed whatever assertion fired (quickcheck reports panics without the
/// arguments), so that `Case::from_seed` reproduces it.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing case: Case::from_seed({})", self.0);
        }
    }
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        Case::from_seed(u64::arbitrary(g))
    }
}

/// How the activations (and the gradient, in the same shape) are laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lay {
    TimeMajor,
    BatchMajor,
    /// A strided `(T, B, V)` window, starting at offset 3, of a larger NaN-filled buffer with gaps
    /// between frames and between sequences.
    SubView,
    /// Class stride 2 (the kernel's non-contiguous path), batch-major, NaN in between.
    ClassStride2,
}

impl Lay {
    fn layout(self, t: usize, b: usize, v: usize) -> (usize, Layout) {
        match self {
            Lay::TimeMajor => (0, Layout::time_major(t, b, v)),
            Lay::BatchMajor => (0, Layout::batch_major(t, b, v)),
            Lay::SubView => {
                let (sv, st) = (1, v + 3);
                let sb = st * t + 5;
                (3, Layout { max_time: t, batch: b, classes: v, stride_t: st, stride_b: sb, stride_v: sv })
            }
            Lay::ClassStride2 => {
                let st = 2 * v + 1;
                (0, Layout { max_time: t, batch: b, classes: v, stride_t: st, stride_b: st * t, stride_v: 2 })
            }
        }
    }
}

/// What a call returned, widened to f64; `grad` is time-major `(T, B, V)` whatever the layout.
#[derive(Clone, Debug, PartialEq)]
struct Out {
    losses: Vec<f64>,
    reduced: f64,
    grad: Vec<f64>,
}

/// What the properties run: a set of row kernels through `ctc_compute_with` (on the baseline
/// instruction set), or a [`Backend`] through `ctc_compute` (which is how the AVX2 kernels, compiled
/// in their `avx2,fma` clones, are reached: they cannot be named outside the crate).
trait Engine<F: Float>: Sync {
    #[allow(clippy::too_many_arguments)]
    fn compute<L: fastctc::Index>(
        &self,
        acts: &ActsView<'_, F>,
        targets: &Targets<'_, L>,
        input_lengths: &[L],
        losses: &mut [F],
        grad: Option<&mut ActsViewMut<'_, F>>,
        opts: &CtcOptions,
        ws: &mut Workspace<F>,
    ) -> Result<F, fastctc::CtcError>;
}

/// Row kernels, run through `ctc_compute_with`.
struct WithKernels<K>(K);

impl<F: Float, K: Kernels<F>> Engine<F> for WithKernels<K> {
    fn compute<L: fastctc::Index>(
        &self,
        acts: &ActsView<'_, F>,
        targets: &Targets<'_, L>,
        input_lengths: &[L],
        losses: &mut [F],
        grad: Option<&mut ActsViewMut<'_, F>>,
        opts: &CtcOptions,
        ws: &mut Workspace<F>,
    ) -> Result<F, fastctc::CtcError> {
        ctc_compute_with(&self.0, acts, targets, input_lengths, losses, grad, opts, ws)
    }
}

/// A backend chosen through the options (`Backend::Avx2` falls back to `Vector` on a CPU without it).
struct ViaBackend(fastctc::Backend);

impl<F: Float> Engine<F> for ViaBackend {
    fn compute<L: fastctc::Index>(
        &self,
        acts: &ActsView<'_, F>,
        targets: &Targets<'_, L>,
        input_lengths: &[L],
        losses: &mut [F],
        grad: Option<&mut ActsViewMut<'_, F>>,
        opts: &CtcOptions,
        ws: &mut Workspace<F>,
    ) -> Result<F, fastctc::CtcError> {
        let opts = CtcOptions { backend: self.0, ..*opts };
        fastctc::ctc_compute(acts, targets, input_lengths, losses, grad, &opts, ws)
    }
}

/// Runs `p` on backend `k` in type `F`, with the activations and the output in layout `lay`.
/// `padded_garbage`: targets as a padded matrix whose unused slots hold invalid labels.
fn run<F: Float, K: Engine<F>>(k: &K, p: &Problem, o: &CtcOptions, lay: Lay, padded_garbage: bool) -> Out {
    let (t, b, v) = (p.max_time, p.batch(), p.classes);
    let (front, layout) = lay.layout(t, b, v);
    let len = front + layout.required_len().unwrap() + 4;
    let mut buf = vec![F::from_f64(f64::NAN); len];
    for tt in 0..t {
        for bb in 0..b {
            for kk in 0..v {
                buf[front + layout.offset(tt, bb, kk)] = F::from_f64(p.acts[(tt * b + bb) * v + kk]);
            }
        }
    }
    let mut gbuf = vec![F::from_f64(f64::NAN); len];
    let view = ActsView::new(&buf[front..], layout).unwrap();
    let mut gview = ActsViewMut::new(&mut gbuf[front..], layout).unwrap();
    let (labels, lengths) = p.concat_labels();
    let il = p.lengths_u32();
    let width = p.targets.iter().map(Vec::len).max().unwrap_or(0) + 2;
    // Garbage in the padding: negative, blank and out-of-range labels, none of which may be read.
    let mut padded = vec![0i64; b * width];
    for (bb, tg) in p.targets.iter().enumerate() {
        for i in 0..width {
            padded[bb * width + i] = match tg.get(i) {
                Some(&l) => l as i64,
                None => [-1, p.blank as i64, v as i64 + 7, i64::MIN][(bb + i) % 4],
            };
        }
    }
    let lengths64: Vec<i64> = lengths.iter().map(|&x| x as i64).collect();
    let il64: Vec<i64> = il.iter().map(|&x| x as i64).collect();
    let mut losses = vec![F::from_f64(f64::NAN); b];
    let mut ws = Workspace::new();
    let reduced = if padded_garbage {
        let targets = Targets::Padded { labels: &padded, max_len: width, lengths: &lengths64 };
        k.compute(&view, &targets, &il64, &mut losses, Some(&mut gview), o, &mut ws)
    } else {
        let targets = Targets::Concatenated { labels: &labels, lengths: &lengths };
        k.compute(&view, &targets, &il, &mut losses, Some(&mut gview), o, &mut ws)
    }
    .unwrap_or_else(|e| panic!("valid problem rejected: {e}"));
    let mut grad = vec![0.0; t * b * v];
    for tt in 0..t {
        for bb in 0..b {
            for kk in 0..v {
                grad[(tt * b + bb) * v + kk] = gview.get(tt, bb, kk).unwrap().to_f64();
            }
        }
    }
    Out { losses: losses.iter().map(|x| x.to_f64()).collect(), reduced: reduced.to_f64(), grad }
}

/// Two results of the same computation with the operations possibly reassociated (a backend may sum
/// a row in a different order depending on its alignment): each rounding differs by at most an ulp of
/// the partial sums involved, and a lattice of `T` frames and `S` states chains about `T * S` of them,
/// so `8 * eps * T * S` relative to `max(1, |x|)` covers any reordering and nothing like a real bug.
/// (The scalar backend needs none of it: with this tolerance set to 0 every invariance holds bit for
/// bit.)
fn reassoc_tol<F: Float>(p: &Problem) -> f64 {
    let s = 2 * p.targets.iter().map(Vec::len).max().unwrap_or(0) + 1;
    8.0 * F::EPSILON.to_f64() * (p.max_time.max(1) * s) as f64
}

fn assert_close(what: &str, seed: u64, a: f64, b: f64, tol: f64) {
    let ok = a == b || (a - b).abs() <= tol * 1f64.max(a.abs()).max(b.abs());
    assert!(ok, "seed {seed}: {what}: {a} vs {b} (tolerance {tol:e})");
}

fn assert_out_close(what: &str, seed: u64, a: &Out, b: &Out, tol: f64) {
    for (i, (x, y)) in a.losses.iter().zip(&b.losses).enumerate() {
        assert_close(&format!("{what}: loss {i}"), seed, *x, *y, tol);
    }
    assert_close(&format!("{what}: reduced"), seed, a.reduced, b.reduced, tol);
    for (i, (x, y)) in a.grad.iter().zip(&b.grad).enumerate() {
        assert_close(&format!("{what}: gradient element {i}"), seed, *x, *y, tol);
    }
}

/// The rows of sequence `b` (every frame, `T * V` values) of a time-major output.
fn seq_rows(grad: &[f64], p: &Problem, b: usize) -> Vec<f64> {
    let (bsz, v) = (p.batch(), p.classes);
    (0..p.max_time).flat_map(|t| grad[(t * bsz + b) * v..(t * bsz + b + 1) * v].to_vec()).collect()
}

/// The sub-batch of `p` made of sequences `order` (in that order).
fn sub_batch(p: &Problem, order: &[usize]) -> Problem {
    let (bsz, v) = (p.batch(), p.classes);
    let mut acts = Vec::with_capacity(p.max_time * order.len() * v);
    for t in 0..p.max_time {
        for &b in order {
            acts.extend_from_slice(&p.acts[(t * bsz + b) * v..(t * bsz + b + 1) * v]);
        }
    }
    Problem {
        max_time: p.max_time,
        classes: v,
        blank: p.blank,
        input_lengths: order.iter().map(|&b| p.input_lengths[b]).collect(),
        targets: order.iter().map(|&b| p.targets[b].clone()).collect(),
        acts,
    }
}

/// A sequence's loss and gradient rows do not depend on its neighbours or on its place in the batch.
/// (Sum reduction: Mean scales by `1/B`, which a sub-batch changes by design.)
fn prop_batching<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let mut o = c.opts();
    o.reduction = Reduction::Sum;
    let whole = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    let tol = reassoc_tol::<F>(p);
    let bsz = p.batch();
    let mut rng = Rng::new(c.seed ^ 0xBA7C);
    let mut order: Vec<usize> = (0..bsz).collect();
    for i in (1..bsz).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let shuffled = run::<F, K>(k, &sub_batch(p, &order), &o, Lay::TimeMajor, false);
    for (pos, &b) in order.iter().enumerate() {
        let single = run::<F, K>(k, &sub_batch(p, &[b]), &o, Lay::TimeMajor, false);
        let sp = sub_batch(p, &order);
        for (what, other_loss, other_rows) in [
            ("alone", single.losses[0], single.grad.clone()),
            ("shuffled", shuffled.losses[pos], seq_rows(&shuffled.grad, &sp, pos)),
        ] {
            assert_close(&format!("seq {b} {what}: loss"), c.seed, whole.losses[b], other_loss, tol);
            for (i, (x, y)) in seq_rows(&whole.grad, p, b).iter().zip(&other_rows).enumerate() {
                assert_close(&format!("seq {b} {what}: gradient {i}"), c.seed, *x, *y, tol);
            }
        }
    }
}

/// Frames past a sequence's input length and padded target slots are never read: garbage there (NaN,
/// infinities, invalid labels) changes nothing, bit for bit.
fn prop_padding<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let o = c.opts();
    let clean = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    let mut dirty = p.clone();
    let (bsz, v) = (p.batch(), p.classes);
    let garbage = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30, -1e30];
    for t in 0..p.max_time {
        for b in 0..bsz {
            if t >= p.input_lengths[b] {
                for kk in 0..v {
                    dirty.acts[(t * bsz + b) * v + kk] = garbage[(t + b + kk) % garbage.len()];
                }
            }
        }
    }
    let got = run::<F, K>(k, &dirty, &o, Lay::TimeMajor, true);
    assert_eq!(
        (clean.losses.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), clean.reduced.to_bits()),
        (got.losses.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), got.reduced.to_bits()),
        "seed {}: losses changed by padding garbage",
        c.seed
    );
    assert!(
        clean.grad.iter().zip(&got.grad).all(|(a, b)| a.to_bits() == b.to_bits()),
        "seed {}: gradient changed by padding garbage",
        c.seed
    );
}

/// Time-major, batch-major, a strided window of a larger buffer and class stride 2 give the same
/// results (and the output lands in the same logical places).
fn prop_layouts<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let o = c.opts();
    let base = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    for lay in [Lay::BatchMajor, Lay::SubView, Lay::ClassStride2] {
        let got = run::<F, K>(k, p, &o, lay, false);
        assert_out_close(&format!("{lay:?}"), c.seed, &base, &got, reassoc_tol::<F>(p));
    }
}

/// Rounding budget of a problem in `F`: each frame's log-probabilities carry an error of a few eps
/// times their magnitude (logits, log-sum-exp), and the loss and each log-posterior accumulate one such
/// error per frame plus a few roundings of O(1) rescaled lattice values per step. Summed over frames
/// (a worst case; random rounding grows more slowly).
fn rounding_budget<F: Float>(p: &Problem, extra_magnitude: &[f64]) -> f64 {
    let (bsz, v) = (p.batch(), p.classes);
    let s = 2 * p.targets.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let mut worst_seq = 0.0f64;
    for b in 0..bsz {
        let mut m = 0.0;
        for t in 0..p.input_lengths[b] {
            let row = &p.acts[(t * bsz + b) * v..(t * bsz + b + 1) * v];
            let mag = row.iter().filter(|x| x.is_finite()).fold(0.0f64, |m, &x| m.max(x.abs()));
            m += 1.0
                + (s as f64).ln()
                + (v as f64).ln()
                + 2.0 * (mag + extra_magnitude.get(t).unwrap_or(&0.0));
        }
        worst_seq = worst_seq.max(m);
    }
    4.0 * F::EPSILON.to_f64() * worst_seq.max(1.0)
}

/// Adding a constant `c_t` to every logit of frame `t` (of every sequence) changes no log-probability,
/// so neither the loss nor the gradient, up to the rounding of the shifted values.
fn prop_shift<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let mut o = c.opts();
    o.input = InputKind::Logits;
    let base = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    let mut rng = Rng::new(c.seed ^ 0x5417);
    let shifts: Vec<f64> = (0..p.max_time).map(|_| rng.uniform(-40.0, 40.0)).collect();
    let mut q = p.clone();
    let row = p.batch() * p.classes;
    for (t, chunk) in q.acts.chunks_mut(row).enumerate() {
        chunk.iter_mut().for_each(|x| *x += shifts[t]);
    }
    let got = run::<F, K>(k, &q, &o, Lay::TimeMajor, false);
    let tol = rounding_budget::<F>(p, &shifts.iter().map(|s| s.abs()).collect::<Vec<_>>());
    // Loss errors are absolute (a sum of per-frame errors): compare with tol * max(1, loss).
    assert_out_close("frame shift", c.seed, &base, &got, tol);
}

/// For logits, each frame's gradient is `scale * (softmax - gamma)`: both sum to 1, so the row sums to
/// 0 (to a few eps per class); frames past the input length and infeasible sequences are exactly 0.
/// With posterior output, the rows of feasible sequences sum to exactly 1 (to rounding).
fn prop_row_sums<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let (bsz, v) = (p.batch(), p.classes);
    let tol = 8.0 * F::EPSILON.to_f64() * v as f64;
    let mut o = c.opts();
    o.input = InputKind::Logits;
    let g = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    o.output = GradOutput::Posterior;
    let post = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    for b in 0..bsz {
        let feasible = g.losses[b].is_finite();
        for t in 0..p.max_time {
            let r = (t * bsz + b) * v..(t * bsz + b + 1) * v;
            let gsum: f64 = g.grad[r.clone()].iter().sum();
            // Softmax and gamma each sum to `scale`; their difference cancels to rounding of that size.
            let scale = match c.reduction {
                Reduction::Mean => 1.0 / (bsz as f64 * p.targets[b].len().max(1) as f64),
                _ => 1.0,
            };
            assert!(
                gsum.abs() <= tol * scale,
                "seed {}: seq {b} frame {t}: gradient row sums to {gsum}",
                c.seed
            );
            let psum: f64 = post.grad[r].iter().sum();
            let want = if feasible && t < p.input_lengths[b] { 1.0 } else { 0.0 };
            assert!(
                (psum - want).abs() <= tol,
                "seed {}: seq {b} frame {t}: posterior row sums to {psum}",
                c.seed
            );
        }
    }
}

/// The Rayon schedule (longest sequence first, split across threads) gives bitwise the sequential
/// results: each sequence is computed by exactly the same operations wherever it runs.
fn prop_rayon<F: Float, K: Engine<F>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let p = &c.problem;
    let o = c.opts();
    let seq = run::<F, K>(k, p, &o, Lay::TimeMajor, false);
    let par_o = CtcOptions { parallelism: Parallelism::Rayon, ..o };
    let par = pool().install(|| run::<F, K>(k, p, &par_o, Lay::TimeMajor, false));
    let bits = |o: &Out| {
        (o.losses.iter().chain(&o.grad).map(|x| x.to_bits()).collect::<Vec<_>>(), o.reduced.to_bits())
    };
    assert!(bits(&seq) == bits(&par), "seed {}: rayon differs from sequential", c.seed);
}

fn pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap())
}

/// Largest f32 error seen, as a fraction of the f32 tolerance (loss, gradient), for the report.
static F32_WORST: Mutex<(f64, f64)> = Mutex::new((0.0, 0.0));

/// f32 against the f64 reference evaluated on the same (f32-rounded) activations, so that only the
/// kernel's f32 arithmetic is measured. The tolerance is [`rounding_budget`] in f32: a loss error of
/// `4 eps_f32 * sum_t (1 + ln S + ln V + 2 max_k |x_tk|)`, and the same bound on each gradient entry
/// (a posterior `exp(alpha + beta - ln p)` inherits the exponent's absolute error, times a value
/// <= 1). Derivation: every frame contributes its log-normaliser's rounding (`|x|`-sized operands) and
/// a few roundings in the rescaled lattice; the worst case adds them up over the frames.
fn prop_f32_vs_f64<K: Engine<f32>>(k: &K, c: &Case) {
    let _seed = SeedOnPanic(c.seed);
    let mut p = c.problem.clone();
    p.acts.iter_mut().for_each(|x| *x = *x as f32 as f64);
    let o = c.opts();
    let got = run::<f32, K>(k, &p, &o, Lay::TimeMajor, false);
    let tol = rounding_budget::<f32>(&p, &[]);
    let bsz = p.batch();
    let (mut wl, mut wg) = (0.0f64, 0.0f64);
    for b in 0..bsz {
        let lp = p.ref_log_probs(b, c.kind);
        let lat = reference::forward_backward(&lp, &p.targets[b], p.blank);
        let want = -lat.log_likelihood;
        let got_loss = got.losses[b];
        if want.is_infinite() {
            assert_eq!(got_loss, want, "seed {}: seq {b}", c.seed);
            continue;
        }
        let err = (got_loss - want).abs();
        assert!(err <= tol * want.abs().max(1.0), "seed {}: seq {b}: f32 loss {got_loss} vs {want}", c.seed);
        wl = wl.max(err / (tol * want.abs().max(1.0)));
        let scale = match c.reduction {
            Reduction::Mean => 1.0 / (bsz as f64 * p.targets[b].len().max(1) as f64),
            _ => 1.0,
        };
        for t in 0..p.input_lengths[b] {
            for kk in 0..p.classes {
                let gamma = lat.posterior[t][kk];
                let want = scale
                    * match c.kind {
                        InputKind::Logits => lp[t][kk].exp() - gamma,
                        InputKind::LogProbs => -gamma,
                    };
                let got_g = got.grad[(t * bsz + b) * p.classes + kk];
                let err = (got_g - want).abs();
                assert!(
                    err <= tol * scale,
                    "seed {}: seq {b} frame {t} class {kk}: f32 gradient {got_g} vs {want}",
                    c.seed
                );
                wg = wg.max(err / (tol * scale));
            }
        }
    }
    let mut w = F32_WORST.lock().unwrap();
    w.0 = w.0.max(wl);
    w.1 = w.1.max(wg);
}

/// Instantiates every property for one backend and float type.
macro_rules! backend_properties {
    ($name:ident, $backend:expr, $float:ty) => {
        mod $name {
            use super::*;

            #[test]
            fn batching_invariance() {
                quickcheck((|c: Case| prop_batching::<$float, _>(&$backend, &c)) as fn(Case));
            }

            #[test]
            fn padding_invariance() {
                quickcheck((|c: Case| prop_padding::<$float, _>(&$backend, &c)) as fn(Case));
            }

            #[test]
            fn layout_and_stride_invariance() {
                quickcheck((|c: Case| prop_layouts::<$float, _>(&$backend, &c)) as fn(Case));
            }

            #[test]
            fn frame_shift_invariance_of_logits() {
                quickcheck((|c: Case| prop_shift::<$float, _>(&$backend, &c)) as fn(Case));
            }

            #[test]
            fn gradient_rows_sum_to_zero_and_posteriors_to_one() {
                quickcheck((|c: Case| prop_row_sums::<$float, _>(&$backend, &c)) as fn(Case));
            }

            #[test]
            fn rayon_equals_sequential_bitwise() {
                quickcheck((|c: Case| prop_rayon::<$float, _>(&$backend, &c)) as fn(Case));
            }
        }
    };
}

/// Instantiates the f32-against-f64 property for one backend.
macro_rules! backend_precision {
    ($name:ident, $backend:expr) => {
        #[test]
        fn $name() {
            quickcheck((|c: Case| prop_f32_vs_f64(&$backend, &c)) as fn(Case));
            let w = *F32_WORST.lock().unwrap();
            eprintln!(
                "f32 vs f64: worst loss error {:.3}, worst gradient error {:.3} of the tolerance",
                w.0, w.1
            );
        }
    };
}

backend_properties!(scalar_f32, WithKernels(Scalar), f32);
backend_properties!(scalar_f64, WithKernels(Scalar), f64);
backend_precision!(scalar_f32_within_tolerance_of_f64, WithKernels(Scalar));
backend_properties!(vector_f32, WithKernels(<f32 as fastctc::Float>::Simd::default()), f32);
backend_properties!(vector_f64, WithKernels(<f64 as fastctc::Float>::Simd::default()), f64);
backend_precision!(vector_f32_within_tolerance_of_f64, WithKernels(<f32 as fastctc::Float>::Simd::default()));
backend_properties!(avx2_f32, ViaBackend(fastctc::Backend::Avx2), f32);
backend_properties!(avx2_f64, ViaBackend(fastctc::Backend::Avx2), f64);
backend_precision!(avx2_f32_within_tolerance_of_f64, ViaBackend(fastctc::Backend::Avx2));
