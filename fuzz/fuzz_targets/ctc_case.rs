//! One structured fuzz case for the CTC kernel, and the check that judges it.
//!
//! Shared, by `#[path]`, between the fuzz target `fuzz_targets/ctc.rs` and the replay test
//! `tests/fuzz_regressions.rs`, so that a committed crasher decodes to exactly the case that crashed.
//!
//! The check predicts, independently of the kernel, every fault the input has (bad views, lengths,
//! labels, blank, non-finite activations). With a fault, the call must return one of the predicted
//! errors and leave the loss and gradient buffers untouched; without one, it must succeed and agree
//! with the `f64` reference (`f64` kernel to 1e-9; `f32` kernel to a tolerance derived below).
#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use fastctc::loss::reference;
use fastctc::{
    ctc_compute, ActsView, ActsViewMut, Backend, CtcError, CtcOptions, Float, GradOutput, Index, InputKind,
    Layout, Parallelism, Reduction, Targets, Workspace,
};

/// Largest `T`, `B`, `V` generated: enough for repeats, ragged batches and several states per frame,
/// small enough that one case runs in microseconds.
const MAX_T: u8 = 8;
const MAX_B: u8 = 4;
const MAX_V: u8 = 7;
/// Views needing more elements than this are not allocated (a short buffer is passed instead, which
/// must then be rejected).
const MAX_ELEMS: usize = 1 << 14;

/// f64 kernel vs f64 reference: both sum the same terms in different orders; 1e-9 leaves several
/// orders of magnitude above their rounding on lattices this small, and is far below any real bug.
pub const F64_TOL: f64 = 1e-9;

/// One activation value, as the fuzzer chooses it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Val {
    /// `i / 16`: ordinary logits in `[-8, 8)`.
    Small(i8),
    /// `i / 64`: up to ±512, peaked softmaxes.
    Wide(i16),
    /// Raw IEEE bits: subnormals, huge magnitudes, NaN payloads.
    Bits(u64),
    NegInf,
    PosInf,
    Nan,
}

impl Val {
    fn to_f64(self) -> f64 {
        match self {
            Val::Small(i) => i as f64 / 16.0,
            Val::Wide(i) => i as f64 / 64.0,
            Val::Bits(b) => f64::from_bits(b),
            Val::NegInf => f64::NEG_INFINITY,
            Val::PosInf => f64::INFINITY,
            Val::Nan => f64::NAN,
        }
    }
}

/// How a `(T, B, V)` view is laid out in its flat buffer.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum LayoutChoice {
    TimeMajor,
    BatchMajor,
    /// Arbitrary small strides (0 and interleaving included: an aliasing writable view must be rejected).
    Strided {
        st: u8,
        sb: u8,
        sv: u8,
    },
    /// One stride (`which % 3`) is `usize::MAX`: offsets overflow unless that dimension has extent 1.
    Huge {
        which: u8,
    },
}

/// A whole call: shapes, lengths, labels, activations, layouts and options.
#[derive(Arbitrary, Clone, Debug)]
pub struct CtcCase {
    pub max_time: u8,
    pub batch: u8,
    pub classes: u8,
    pub blank: u8,
    pub logprobs: bool,
    pub reduction: u8,
    pub output: u8,
    pub zero_infinity: bool,
    pub parallel: bool,
    pub padded: bool,
    pub padded_width: u8,
    /// Lengths and labels as `i64` (negatives reach the kernel) or as `u32`.
    pub signed: bool,
    /// Non-zero values make a lengths array, the losses slice or the gradient shape the wrong size.
    pub skew: u8,
    pub input_lengths: Vec<i8>,
    pub target_lengths: Vec<i8>,
    pub labels: Vec<i8>,
    pub values: Vec<Val>,
    pub acts_layout: LayoutChoice,
    pub acts_front: u8,
    pub acts_slack: i8,
    pub with_grad: bool,
    pub grad_layout: LayoutChoice,
    pub grad_slack: i8,
}

impl CtcCase {
    /// Decodes a case from raw bytes exactly as `fuzz_target!` does.
    pub fn from_bytes(bytes: &[u8]) -> arbitrary::Result<Self> {
        CtcCase::arbitrary_take_rest(Unstructured::new(bytes))
    }
}

fn dims(case: &CtcCase) -> (usize, usize, usize) {
    (
        (case.max_time % (MAX_T + 1)) as usize,
        (case.batch % (MAX_B + 1)) as usize,
        (case.classes % (MAX_V + 1)) as usize,
    )
}

fn make_layout(choice: LayoutChoice, t: usize, b: usize, v: usize) -> Layout {
    match choice {
        LayoutChoice::TimeMajor => Layout::time_major(t, b, v),
        LayoutChoice::BatchMajor => Layout::batch_major(t, b, v),
        LayoutChoice::Strided { st, sb, sv } => Layout {
            max_time: t,
            batch: b,
            classes: v,
            stride_t: (st % 64) as usize,
            stride_b: (sb % 64) as usize,
            stride_v: (sv % 8) as usize,
        },
        LayoutChoice::Huge { which } => {
            let mut l = Layout::time_major(t, b, v);
            match which % 3 {
                0 => l.stride_t = usize::MAX,
                1 => l.stride_b = usize::MAX,
                _ => l.stride_v = usize::MAX,
            }
            l
        }
    }
}

/// The slice length a layout needs, computed here independently of `Layout::required_len`.
fn needed_len(l: &Layout) -> Option<usize> {
    l.max_time.checked_mul(l.batch)?.checked_mul(l.classes)?;
    if l.max_time == 0 || l.batch == 0 || l.classes == 0 {
        return Some(0);
    }
    let mut last = 0usize;
    for (n, s) in [(l.max_time, l.stride_t), (l.batch, l.stride_b), (l.classes, l.stride_v)] {
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)
}

fn offsets(l: &Layout) -> Vec<usize> {
    let mut out = Vec::new();
    for t in 0..l.max_time {
        for b in 0..l.batch {
            for v in 0..l.classes {
                out.push(t * l.stride_t + b * l.stride_b + v * l.stride_v);
            }
        }
    }
    out
}

/// Buffer length for a view: the need, adjusted by `slack` (negative = too short), capped.
fn buffer_len(need: Option<usize>, slack: i8) -> usize {
    match need {
        Some(n) if n <= MAX_ELEMS => (n as i64 + (slack % 4) as i64).max(0) as usize,
        _ => 16,
    }
}

fn view_error(l: &Layout, buffer: &'static str, len: usize) -> Option<CtcError> {
    match needed_len(l) {
        None => Some(CtcError::LayoutOverflow { buffer }),
        Some(n) if n > len => Some(CtcError::BufferTooShort { buffer, needed: n, got: len }),
        Some(_) => None,
    }
}

/// Runs the case through the public API in `f64` and in `f32`, with `i64` or `u32` indices, and
/// panics (with the case) on any disagreement with the prediction or the reference. Returns how many
/// of the two runs were valid input compared against the reference (the others were rejected, as
/// predicted).
pub fn check(case: &CtcCase) -> usize {
    if case.signed {
        run::<f64, i64>(case, |x| x) as usize + run::<f32, i64>(case, |x| x) as usize
    } else {
        // Negative bytes become large unsigned values: too long, or out of range.
        run::<f64, u32>(case, |x| x as u8 as u32) as usize
            + run::<f32, u32>(case, |x| x as u8 as u32) as usize
    }
}

/// What the kernel must report for an index value `x` (a length or label) read as `usize`.
fn as_usize<L: Index>(x: L) -> Option<usize> {
    let wide = x.to_i128();
    if wide < 0 {
        None
    } else {
        usize::try_from(wide).ok()
    }
}

/// One run in `F` with index type `L`; true if the input was valid and the result was compared.
fn run<F: Float, L: Index>(case: &CtcCase, idx: fn(i64) -> L) -> bool {
    let (t_max, batch, classes) = dims(case);
    let ctx = Ctx(case, F::NAME);

    // Lengths: mostly in range, sometimes one past, sometimes negative (as the index type allows).
    let skew = case.skew % 16;
    let n_il = match skew {
        1 => batch + 1,
        2 => batch.saturating_sub(1),
        _ => batch,
    };
    let n_tl = match skew {
        3 => batch + 1,
        4 => batch.saturating_sub(1),
        _ => batch,
    };
    let n_losses = match skew {
        5 => batch + 1,
        6 => batch.saturating_sub(1),
        _ => batch,
    };
    let pick = |v: &[i8], i: usize, modulus: i64| -> L {
        let raw = v.get(i).copied().unwrap_or(0) as i64;
        // Mostly in range (one past the end included); bytes below -64 stay negative.
        idx(if raw >= -64 { raw.abs() % modulus } else { raw })
    };
    let input_lengths: Vec<L> = (0..n_il).map(|i| pick(&case.input_lengths, i, t_max as i64 + 2)).collect();
    let target_lengths: Vec<L> = (0..n_tl).map(|i| pick(&case.target_lengths, i, 7)).collect();
    let label_mod = classes as i64 + 2;
    let padded_width = (case.padded_width % 8) as usize;
    let n_labels = case.labels.len().min(64);
    let labels: Vec<L> = (0..n_labels).map(|i| pick(&case.labels, i, label_mod)).collect();
    let targets = if case.padded {
        Targets::Padded { labels: &labels, max_len: padded_width, lengths: &target_lengths }
    } else {
        Targets::Concatenated { labels: &labels, lengths: &target_lengths }
    };

    let opts = CtcOptions {
        blank: (case.blank % (MAX_V + 2)) as usize,
        input: if case.logprobs { InputKind::LogProbs } else { InputKind::Logits },
        reduction: [Reduction::None, Reduction::Sum, Reduction::Mean][(case.reduction % 3) as usize],
        zero_infinity: case.zero_infinity,
        output: [GradOutput::Gradient, GradOutput::TorchLogProbs, GradOutput::Posterior]
            [(case.output % 3) as usize],
        parallelism: if case.parallel { Parallelism::Rayon } else { Parallelism::Sequential },
        // The otherwise unused high part of the reduction byte picks the inner loops.
        backend: [Backend::Auto, Backend::Scalar, Backend::Vector][((case.reduction / 3) % 3) as usize],
    };

    // Activations: the value stream repeated over the whole buffer (padding and gaps included), so
    // garbage outside the view and in unread frames is as wild as inside it.
    let alay = make_layout(case.acts_layout, t_max, batch, classes);
    let front = (case.acts_front % 4) as usize;
    let alen = buffer_len(needed_len(&alay), case.acts_slack);
    let vals: Vec<F> = if case.values.is_empty() {
        vec![F::ZERO; front + alen]
    } else {
        (0..front + alen).map(|i| F::from_f64(case.values[i % case.values.len()].to_f64())).collect()
    };
    let acts = match (ActsView::new(&vals[front..], alay), view_error(&alay, "activations", alen)) {
        (Ok(v), None) => v,
        (Err(e), Some(want)) => {
            assert_eq!(e, want, "{ctx}");
            return false;
        }
        (got, want) => panic!("{ctx}: activations view {got:?}, predicted error {want:?}"),
    };
    let at = |t: usize, b: usize, v: usize| acts.get(t, b, v).expect("in range").to_f64();

    // Gradient view, optionally of the wrong shape, in a buffer poisoned with a sentinel.
    let sentinel = F::from_f64(-7.25);
    let (gt, gb, gv) = match skew {
        7 => (t_max + 1, batch, classes),
        8 => (t_max, batch + 1, classes),
        9 => (t_max, batch, classes + 1),
        _ => (t_max, batch, classes),
    };
    let glay = make_layout(case.grad_layout, gt, gb, gv);
    let glen = buffer_len(needed_len(&glay), case.grad_slack);
    let mut gbuf = vec![sentinel; glen];
    let mut gview = if case.with_grad {
        let made = ActsViewMut::new(&mut gbuf, glay);
        let offs = if needed_len(&glay).is_some_and(|n| n <= glen) { offsets(&glay) } else { Vec::new() };
        let mut seen = offs.clone();
        seen.sort_unstable();
        seen.dedup();
        let aliasing = seen.len() != offs.len();
        match (made, view_error(&glay, "gradients", glen)) {
            (Ok(v), None) => {
                assert!(!aliasing, "{ctx}: an aliasing writable view was accepted");
                Some(v)
            }
            (Err(e), Some(want)) => {
                assert_eq!(e, want, "{ctx}");
                return false;
            }
            // The kernel's injectivity test is sufficient, not necessary: it may also reject exotic
            // layouts that happen not to overlap. It must never accept one that does.
            (Err(CtcError::AliasingOutput { buffer: "gradients" }), None) => return false,
            (got, want) => panic!("{ctx}: gradient view {got:?}, predicted error {want:?}"),
        }
    } else {
        None
    };

    // Every fault the arguments have, found without the kernel.
    let mut faults: Vec<CtcError> = Vec::new();
    if n_il != batch {
        faults.push(CtcError::ShapeMismatch { what: "input lengths vs batch", expected: batch, got: n_il });
    }
    if n_tl != batch {
        faults.push(CtcError::ShapeMismatch { what: "target lengths vs batch", expected: batch, got: n_tl });
    }
    if n_losses != batch {
        faults.push(CtcError::ShapeMismatch { what: "losses vs batch", expected: batch, got: n_losses });
    }
    if gview.is_some() {
        for (what, expected, got) in [
            ("gradient frames vs activations", t_max, gt),
            ("gradient batch vs activations", batch, gb),
            ("gradient classes vs activations", classes, gv),
        ] {
            if expected != got {
                faults.push(CtcError::ShapeMismatch { what, expected, got });
            }
        }
    }
    if batch > 0 && opts.blank >= classes {
        faults.push(CtcError::BlankOutOfRange { blank: opts.blank, classes });
    }
    let mut seqs: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut concat_pos = 0usize;
    for b in 0..batch.min(n_il).min(n_tl) {
        let mut ok = true;
        match as_usize(input_lengths[b]) {
            None => {
                faults.push(CtcError::InvalidValue {
                    what: "input length",
                    sequence: b,
                    value: input_lengths[b].to_i128(),
                });
                ok = false;
            }
            Some(len) if len > t_max => {
                faults.push(CtcError::InputLengthTooLong { sequence: b, length: len, max_time: t_max });
                ok = false;
            }
            Some(_) => {}
        }
        let Some(tl) = as_usize(target_lengths[b]) else {
            faults.push(CtcError::InvalidValue {
                what: "target length",
                sequence: b,
                value: target_lengths[b].to_i128(),
            });
            break; // later sequences' label positions are unknown, and the kernel stops here anyway
        };
        let slice = if case.padded {
            if tl > padded_width {
                faults.push(CtcError::TargetLengthTooLong { sequence: b, length: tl, max_len: padded_width });
                break;
            }
            let start = b * padded_width;
            if start + tl > labels.len() {
                faults.push(CtcError::BufferTooShort {
                    buffer: "labels",
                    needed: start + tl,
                    got: labels.len(),
                });
                break;
            }
            &labels[start..start + tl]
        } else {
            if concat_pos + tl > labels.len() {
                faults.push(CtcError::BufferTooShort {
                    buffer: "labels",
                    needed: concat_pos + tl,
                    got: labels.len(),
                });
                break;
            }
            concat_pos += tl;
            &labels[concat_pos - tl..concat_pos]
        };
        let mut seq_labels = Vec::new();
        for (position, &raw) in slice.iter().enumerate() {
            match as_usize(raw) {
                None => {
                    faults.push(CtcError::InvalidValue { what: "label", sequence: b, value: raw.to_i128() });
                    ok = false;
                }
                Some(l) if l == opts.blank => {
                    faults.push(CtcError::LabelIsBlank { sequence: b, position });
                    ok = false;
                }
                Some(l) if l >= classes => {
                    faults.push(CtcError::LabelOutOfRange { sequence: b, position, label: l, classes });
                    ok = false;
                }
                Some(l) => seq_labels.push(l),
            }
        }
        if ok {
            seqs.push((as_usize(input_lengths[b]).unwrap_or(0), seq_labels));
        }
    }
    // Non-finite values: only in frames t < T_b of each sequence; the first in (b, t, class) order.
    let mut non_finite = None;
    if faults.is_empty() {
        'seqs: for (b, (tb, _)) in seqs.iter().enumerate() {
            for t in 0..*tb {
                let row: Vec<f64> = (0..classes).map(|v| at(t, b, v)).collect();
                if let Some(c) = row.iter().position(|x| x.is_nan() || *x == f64::INFINITY) {
                    non_finite = Some(CtcError::NonFinite { sequence: b, frame: t, class: c, value: row[c] });
                    break 'seqs;
                }
                if !case.logprobs && row.iter().all(|&x| x == f64::NEG_INFINITY) {
                    non_finite = Some(CtcError::NonFinite {
                        sequence: b,
                        frame: t,
                        class: 0,
                        value: f64::NEG_INFINITY,
                    });
                    break 'seqs;
                }
            }
        }
    }

    let loss_sentinel = F::from_f64(-3.5);
    let mut losses = vec![loss_sentinel; n_losses];
    let mut ws = Workspace::<F>::new();
    let got = ctc_compute(&acts, &targets, &input_lengths, &mut losses, gview.as_mut(), &opts, &mut ws);

    let expect_err = |e: &CtcError| {
        assert!(losses.iter().all(|&x| x == loss_sentinel), "{ctx}: losses written on error {e:?}");
        // A non-finite value is found while the lattices run, after forward passes may have begun
        // writing output rows: the documented result is a zeroed view. Any other error is raised
        // before anything is written. Elements outside the view are never written.
        let inside: std::collections::HashSet<usize> = match e {
            CtcError::NonFinite { .. } if case.with_grad => offsets(&glay).into_iter().collect(),
            _ => Default::default(),
        };
        for (i, &x) in gbuf.iter().enumerate() {
            let want = if inside.contains(&i) { F::ZERO } else { sentinel };
            assert!(x == want, "{ctx}: gradient element {i} is {x:?} after error {e:?}");
        }
    };
    if !faults.is_empty() {
        match &got {
            Err(e) if faults.contains(e) => expect_err(e),
            _ => panic!("{ctx}: got {got:?}, predicted one of {faults:?}"),
        }
        return false;
    }
    if let Some(want) = non_finite {
        match &got {
            Err(e) if *e == want || (e_eq_nan(e, &want)) => expect_err(e),
            _ => panic!("{ctx}: got {got:?}, predicted {want:?}"),
        }
        return false;
    }
    let reduced = match got {
        Ok(r) => r.to_f64(),
        Err(e) => panic!("{ctx}: valid input rejected: {e}"),
    };

    // The reference, on the activations as rounded to F and widened back.
    let eps = F::EPSILON.to_f64();
    let is_f64 = eps < 1e-10;
    let mut want_reduced = 0.0;
    let mut red_tol = 0.0;
    for (b, (tb, labs)) in seqs.iter().enumerate() {
        let rows: Vec<Vec<f64>> = (0..*tb).map(|t| (0..classes).map(|v| at(t, b, v)).collect()).collect();
        let lp = if case.logprobs { rows.clone() } else { reference::log_softmax(&rows) };
        let lat = reference::forward_backward(&lp, labs, opts.blank);
        let mut feasible = lat.log_likelihood > f64::NEG_INFINITY;
        let mut loss = -lat.log_likelihood;
        if opts.zero_infinity && loss == f64::INFINITY {
            loss = 0.0;
        }
        // Conditioning: every frame's log-probabilities carry a rounding error of about eps times their
        // magnitude (the logits and their log-sum-exp), and the loss and each log-posterior add one such
        // error per frame, plus a few roundings of O(ln S) values per lattice step (rows are rescaled).
        // So `cond` bounds what any implementation in F can promise. In f64 on ordinary activations it is
        // ~1e-11, below the 1e-9 bar; with magnitudes near 1e15 even the f64 reference's posteriors are
        // noise (alpha + beta - ln p cancels catastrophically) and only the loss stays meaningful.
        let magnitude: f64 = rows
            .iter()
            .map(|r| {
                1.0 + (classes as f64).ln()
                    + 2.0 * r.iter().filter(|x| x.is_finite()).fold(0.0f64, |m, &x| m.max(x.abs()))
            })
            .sum();
        let cond = 16.0 * eps * magnitude;
        let base = if is_f64 { F64_TOL } else { 0.0 };
        let loss_tol = (base * loss.abs().max(1.0)).max(cond);
        let got_loss = losses[b].to_f64();
        // The kernel zeroes a loss that overflows F under `zero_infinity` (documented). Where the true
        // loss lies within rounding of F's largest value, the kernel's own sum may land on either side.
        if opts.zero_infinity
            && got_loss == 0.0
            && loss.is_finite()
            && rounded::<F>(loss + loss_tol).is_infinite()
        {
            loss = 0.0;
            feasible = false;
        }
        assert!(
            got_loss == loss || got_loss == rounded::<F>(loss) || (got_loss - loss).abs() <= loss_tol,
            "{ctx}: seq {b} loss {got_loss} vs reference {loss} (tol {loss_tol})"
        );
        let per = match opts.reduction {
            Reduction::Mean => 1.0 / (batch as f64 * labs.len().max(1) as f64),
            _ => 1.0,
        };
        want_reduced += loss * per;
        red_tol += loss_tol * per;

        let grad_tol = base.max(cond);
        if let Some(gl) = case.with_grad.then_some(glay) {
            let scale = if opts.output == GradOutput::Posterior { 1.0 } else { per };
            for t in 0..t_max {
                for v in 0..classes {
                    let got = gbuf[gl.offset(t, b, v)].to_f64();
                    let want = if t >= *tb || !feasible {
                        0.0
                    } else {
                        let g = lat.posterior[t][v];
                        let dense = lp[t][v].exp();
                        scale
                            * match (opts.output, opts.input) {
                                (GradOutput::Posterior, _) => g,
                                (GradOutput::Gradient, InputKind::LogProbs) => -g,
                                _ => dense - g,
                            }
                    };
                    if cond >= 1.0 {
                        // Ill-conditioned (see `cond`): the reference's own posteriors are noise, even
                        // NaN (`inf - inf` in its sums). The kernel must still not produce NaN.
                        assert!(!got.is_nan(), "{ctx}: seq {b} t {t} class {v}: NaN output");
                        continue;
                    }
                    let tol = grad_tol * want.abs().max(1.0);
                    assert!(
                        got == want || got == rounded::<F>(want) || (got - want).abs() <= tol,
                        "{ctx}: seq {b} t {t} class {v}: output {got} vs reference {want} (tol {tol})"
                    );
                }
            }
        }
    }
    assert!(
        reduced == want_reduced
            || reduced == rounded::<F>(want_reduced)
            || (reduced - want_reduced).abs() <= red_tol.max(F64_TOL * want_reduced.abs()),
        "{ctx}: reduced {reduced} vs reference {want_reduced} (tol {red_tol})"
    );
    if case.with_grad {
        // Nothing outside the view was written.
        let inside: std::collections::HashSet<usize> = offsets(&glay).into_iter().collect();
        for (i, &x) in gbuf.iter().enumerate() {
            assert!(
                inside.contains(&i) || x == sentinel,
                "{ctx}: element {i} outside the gradient view written"
            );
        }
    }
    true
}

/// `x` as the nearest `F`, widened back: a true value beyond `F`'s range (an `exp` of a large
/// unnormalised log-probability in the Torch convention, a loss over `3e38`) is infinite in `F`.
fn rounded<F: Float>(x: f64) -> f64 {
    F::from_f64(x).to_f64()
}

/// The case, formatted only when a check fails (formatting every case would dominate fuzzing time).
struct Ctx<'a>(&'a CtcCase, &'static str);

impl std::fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.1, self.0)
    }
}

/// NaN compares unequal to itself; the error names NaN as its value.
fn e_eq_nan(a: &CtcError, b: &CtcError) -> bool {
    match (a, b) {
        (
            CtcError::NonFinite { sequence: s1, frame: f1, class: c1, value: v1 },
            CtcError::NonFinite { sequence: s2, frame: f2, class: c2, value: v2 },
        ) => s1 == s2 && f1 == f2 && c1 == c2 && v1.is_nan() && v2.is_nan(),
        _ => false,
    }
}
