//! Every error path of the kernel: the typed variant with the fields that locate the fault, and no
//! write to the loss or gradient buffers (both are poisoned with a sentinel and must stay so), except
//! the one documented write: a [`CtcError::NonFinite`] found while the lattices run leaves every
//! element of the gradient view zero (the forward passes may have begun writing it), and every other
//! element of its buffer untouched.

mod common;

use common::Rng;
use fastctc::{
    ctc_compute, ctc_loss, ActsView, ActsViewMut, CtcError, CtcOptions, Float, Index, InputKind, Layout,
    Parallelism, Reduction, Targets, Workspace,
};

/// A sentinel no kernel output can produce by accident (losses are >= 0 or +inf; gradients of
/// these small problems are in [-1, 1]).
const SENTINEL: f64 = -7.25;

/// The buffer indices of every element of a view, sorted.
fn view_elements(l: Layout) -> Vec<usize> {
    let mut v = Vec::new();
    for t in 0..l.max_time {
        for b in 0..l.batch {
            for k in 0..l.classes {
                v.push(t * l.stride_t + b * l.stride_b + k * l.stride_v);
            }
        }
    }
    v.sort_unstable();
    v
}

/// One call of the kernel, described by value so that each test changes one thing.
#[derive(Clone, Debug)]
struct Call<L> {
    acts: Vec<f64>,
    acts_layout: Layout,
    labels: Vec<L>,
    target_lengths: Vec<L>,
    /// `Some(width)`: padded targets; `None`: concatenated.
    padded: Option<usize>,
    input_lengths: Vec<L>,
    losses_len: usize,
    /// Gradient layout and its buffer length; `None`: no gradient requested.
    grad: Option<(Layout, usize)>,
    opts: CtcOptions,
}

impl<L: Index> Call<L> {
    /// A valid batch of 3 sequences, T = 6, V = 5, blank 0, time-major logits, gradient requested.
    fn valid(idx: impl Fn(i64) -> L) -> Self {
        let (t, b, v) = (6, 3, 5);
        let mut rng = Rng::new(42);
        let acts = (0..t * b * v).map(|_| rng.normal()).collect();
        Call {
            acts,
            acts_layout: Layout::time_major(t, b, v),
            labels: [1, 2, 2, 3, 4, 1].map(&idx).to_vec(),
            target_lengths: [2, 1, 3].map(&idx).to_vec(),
            padded: None,
            input_lengths: [6, 4, 5].map(&idx).to_vec(),
            losses_len: b,
            grad: Some((Layout::time_major(t, b, v), t * b * v)),
            opts: CtcOptions {
                reduction: Reduction::Sum,
                parallelism: Parallelism::Sequential,
                ..Default::default()
            },
        }
    }

    /// Runs the call in `F` with poisoned outputs. On error, asserts nothing was written.
    fn run<F: Float>(&self) -> Result<Vec<f64>, CtcError> {
        let acts: Vec<F> = self.acts.iter().map(|&x| F::from_f64(x)).collect();
        let view = ActsView::new(&acts, self.acts_layout)?;
        let targets = match self.padded {
            Some(max_len) => Targets::Padded { labels: &self.labels, max_len, lengths: &self.target_lengths },
            None => Targets::Concatenated { labels: &self.labels, lengths: &self.target_lengths },
        };
        let sentinel = F::from_f64(SENTINEL);
        let mut losses = vec![sentinel; self.losses_len];
        let mut gbuf = vec![sentinel; self.grad.map_or(0, |g| g.1)];
        let mut ws = Workspace::new();
        let result = match self.grad {
            Some((glay, _)) => {
                let mut g = ActsViewMut::new(&mut gbuf, glay)?;
                ctc_compute(
                    &view,
                    &targets,
                    &self.input_lengths,
                    &mut losses,
                    Some(&mut g),
                    &self.opts,
                    &mut ws,
                )
            }
            None => ctc_compute(&view, &targets, &self.input_lengths, &mut losses, None, &self.opts, &mut ws),
        };
        match result {
            Ok(_) => Ok(losses.iter().map(|x| x.to_f64()).collect()),
            Err(e) => {
                assert!(losses.iter().all(|&x| x == sentinel), "{}: losses written before {e:?}", F::NAME);
                let in_view = self.grad.map_or(vec![], |(glay, _)| view_elements(glay));
                let zeroed = matches!(e, CtcError::NonFinite { .. });
                for (i, &x) in gbuf.iter().enumerate() {
                    let want = if zeroed && in_view.binary_search(&i).is_ok() { F::ZERO } else { sentinel };
                    assert!(x == want, "{}: gradient element {i} is {x:?} after {e:?}", F::NAME);
                }
                // Every message names its fault in words; none is empty.
                assert!(!e.to_string().is_empty());
                Err(e)
            }
        }
    }

    /// The error, in both float types, which must agree.
    fn err(&self) -> CtcError {
        let e64 = self.run::<f64>().expect_err("f64 call should fail");
        let e32 = self.run::<f32>().expect_err("f32 call should fail");
        match (&e64, &e32) {
            // NaN payloads differ between types and NaN != NaN: compare the location.
            (
                CtcError::NonFinite { sequence: s1, frame: f1, class: c1, value: v1 },
                CtcError::NonFinite { sequence: s2, frame: f2, class: c2, value: v2 },
            ) => {
                assert_eq!((s1, f1, c1), (s2, f2, c2));
                assert!(v1 == v2 || (v1.is_nan() && v2.is_nan()));
            }
            _ => assert_eq!(e64, e32),
        }
        e64
    }

    fn set(&mut self, t: usize, b: usize, k: usize, x: f64) {
        let off = self.acts_layout.offset(t, b, k);
        self.acts[off] = x;
    }
}

fn i64s(x: i64) -> i64 {
    x
}

fn i32s(x: i64) -> i32 {
    x as i32
}

fn u32s(x: i64) -> u32 {
    x as u32
}

#[test]
fn the_valid_call_is_valid() {
    // The baseline every other test perturbs must itself succeed, in every index type.
    let l64 = Call::valid(i64s).run::<f64>().unwrap();
    assert_eq!(Call::valid(i32s).run::<f64>().unwrap(), l64);
    assert_eq!(Call::valid(u32s).run::<f64>().unwrap(), l64);
    assert!(l64.iter().all(|l| l.is_finite() && *l > 0.0));
    let mut c = Call::valid(i64s);
    c.opts.parallelism = Parallelism::Rayon;
    assert_eq!(c.run::<f64>().unwrap(), l64);
}

#[test]
fn activations_buffer_too_short_for_shape_and_strides() {
    let mut c = Call::valid(i64s);
    c.acts.pop();
    assert_eq!(c.err(), CtcError::BufferTooShort { buffer: "activations", needed: 90, got: 89 });
    // Strided: (t, b, k) at t*40 + b*12 + k*3 needs 5*40 + 2*12 + 4*3 + 1 = 237 elements.
    let mut c = Call::valid(i64s);
    c.acts_layout = Layout { max_time: 6, batch: 3, classes: 5, stride_t: 40, stride_b: 12, stride_v: 3 };
    c.acts = vec![0.0; 236];
    assert_eq!(c.err(), CtcError::BufferTooShort { buffer: "activations", needed: 237, got: 236 });
    c.acts.push(0.0);
    assert!(c.run::<f64>().is_ok(), "237 elements are enough");
}

#[test]
fn gradient_buffer_too_short_for_shape_and_strides() {
    let mut c = Call::valid(i64s);
    c.grad = Some((Layout::batch_major(6, 3, 5), 89));
    assert_eq!(c.err(), CtcError::BufferTooShort { buffer: "gradients", needed: 90, got: 89 });
    let glay = Layout { max_time: 6, batch: 3, classes: 5, stride_t: 5, stride_b: 31, stride_v: 1 };
    c.grad = Some((glay, 25 + 62 + 4));
    assert_eq!(c.err(), CtcError::BufferTooShort { buffer: "gradients", needed: 92, got: 91 });
}

#[test]
fn stride_and_offset_overflow() {
    for which in 0..3 {
        let mut l = Layout::time_major(6, 3, 5);
        match which {
            0 => l.stride_t = usize::MAX,
            1 => l.stride_b = usize::MAX,
            _ => l.stride_v = usize::MAX,
        }
        let mut c = Call::valid(i64s);
        c.acts_layout = l;
        assert_eq!(c.err(), CtcError::LayoutOverflow { buffer: "activations" }, "stride {which}");
        let mut c = Call::valid(i64s);
        c.grad = Some((l, 90));
        assert_eq!(c.err(), CtcError::LayoutOverflow { buffer: "gradients" }, "stride {which}");
    }
    // Each product fits but their sum does not.
    let half = usize::MAX / 2 + 1;
    let l = Layout { max_time: 2, batch: 2, classes: 1, stride_t: half, stride_b: half, stride_v: 1 };
    assert_eq!(
        ActsView::new(&[0.0f32; 4], l).unwrap_err(),
        CtcError::LayoutOverflow { buffer: "activations" }
    );
    // The element count T * B * V itself overflows (strides 0, so offsets do not).
    let l = Layout { max_time: usize::MAX, batch: 2, classes: 1, stride_t: 0, stride_b: 0, stride_v: 0 };
    assert_eq!(
        ActsView::new(&[0.0f64; 4], l).unwrap_err(),
        CtcError::LayoutOverflow { buffer: "activations" }
    );
}

/// A view with no frames is empty whatever its strides, and the view constructors accept it. The
/// kernel must then not compute offsets with those strides: `b * stride_b` overflows for `b >= 2`.
/// (Found by the fuzzer: `fuzz/regressions/ctc/overflow-empty-view-batch-stride-max`.)
#[test]
fn empty_view_with_huge_batch_stride_does_not_overflow() {
    for grad in [false, true] {
        let mut lay = Layout::time_major(0, 3, 4);
        lay.stride_b = usize::MAX;
        let acts: [f64; 0] = [];
        let zeros = [0u32; 3];
        let result = std::panic::catch_unwind(|| {
            let view = ActsView::new(&acts, lay)?;
            let targets = Targets::Concatenated { labels: &[], lengths: &zeros };
            let mut losses = [SENTINEL; 3];
            let mut gbuf: [f64; 0] = [];
            let mut g = ActsViewMut::new(&mut gbuf, lay)?;
            let opts = CtcOptions { parallelism: Parallelism::Sequential, ..Default::default() };
            ctc_compute(
                &view,
                &targets,
                &zeros,
                &mut losses,
                grad.then_some(&mut g),
                &opts,
                &mut Workspace::new(),
            )
            .map(|_| losses)
        });
        match result {
            // Either answer is acceptable: three empty sequences with loss 0, or a refused layout.
            Ok(Ok(losses)) => assert_eq!(losses, [0.0; 3]),
            Ok(Err(e)) => assert_eq!(e, CtcError::LayoutOverflow { buffer: "activations" }),
            Err(_) => {
                panic!("the kernel panicked on an empty view with stride_b = usize::MAX (grad: {grad})")
            }
        }
    }
}

#[test]
fn aliasing_writable_views_are_rejected() {
    let mut c = Call::valid(i64s);
    // A zero class stride: every class of a frame is one element.
    let glay = Layout { stride_v: 0, ..Layout::time_major(6, 3, 5) };
    c.grad = Some((glay, 90));
    assert_eq!(c.err(), CtcError::AliasingOutput { buffer: "gradients" });
    // Interleaved: frame stride 2 with 5 classes at stride 1 overlaps the next frame.
    let glay = Layout { max_time: 6, batch: 3, classes: 5, stride_t: 2, stride_b: 30, stride_v: 1 };
    c.grad = Some((glay, 90));
    assert_eq!(c.err(), CtcError::AliasingOutput { buffer: "gradients" });
    // Sequences sharing frames (stride_b = 0).
    let glay = Layout { stride_b: 0, ..Layout::batch_major(6, 3, 5) };
    c.grad = Some((glay, 90));
    assert_eq!(c.err(), CtcError::AliasingOutput { buffer: "gradients" });
    // A read-only view may broadcast: one frame for every sequence gives each the same loss.
    let mut c = Call::valid(i64s);
    c.acts_layout = Layout { stride_b: 0, ..Layout::time_major(6, 3, 5) };
    c.input_lengths = vec![6, 6, 6];
    c.labels = vec![1, 2, 1, 2, 1, 2];
    c.target_lengths = vec![2, 2, 2];
    let l = c.run::<f64>().unwrap();
    assert!(l[0] == l[1] && l[1] == l[2], "{l:?}");
}

#[test]
fn input_length_longer_than_the_activations() {
    let mut c = Call::valid(i64s);
    c.input_lengths[2] = 7;
    assert_eq!(c.err(), CtcError::InputLengthTooLong { sequence: 2, length: 7, max_time: 6 });
    let mut c = Call::valid(u32s);
    c.input_lengths[1] = u32::MAX;
    assert_eq!(c.err(), CtcError::InputLengthTooLong { sequence: 1, length: u32::MAX as usize, max_time: 6 });
}

#[test]
fn negative_lengths_and_labels() {
    let mut c = Call::valid(i32s);
    c.input_lengths[1] = -1;
    assert_eq!(c.err(), CtcError::InvalidValue { what: "input length", sequence: 1, value: -1 });
    let mut c = Call::valid(i64s);
    c.target_lengths[2] = i64::MIN;
    assert_eq!(
        c.err(),
        CtcError::InvalidValue { what: "target length", sequence: 2, value: i64::MIN as i128 }
    );
    let mut c = Call::valid(i32s);
    c.labels[2] = -5; // sequence 1's only label (sequence 0 has 2)
    assert_eq!(c.err(), CtcError::InvalidValue { what: "label", sequence: 1, value: -5 });
    let mut c = Call::valid(i64s);
    c.labels[4] = -1; // sequence 2, position 1
    assert_eq!(c.err(), CtcError::InvalidValue { what: "label", sequence: 2, value: -1 });
}

#[test]
fn label_equal_to_blank_and_out_of_range() {
    let mut c = Call::valid(i64s);
    c.labels[4] = 0;
    assert_eq!(c.err(), CtcError::LabelIsBlank { sequence: 2, position: 1 });
    let mut c = Call::valid(i64s);
    c.opts.blank = 2;
    assert_eq!(c.err(), CtcError::LabelIsBlank { sequence: 0, position: 1 });
    let mut c = Call::valid(u32s);
    c.labels[0] = 5;
    assert_eq!(c.err(), CtcError::LabelOutOfRange { sequence: 0, position: 0, label: 5, classes: 5 });
    let mut c = Call::valid(i64s);
    c.labels[5] = 1000;
    assert_eq!(c.err(), CtcError::LabelOutOfRange { sequence: 2, position: 2, label: 1000, classes: 5 });
    // Labels after the last sequence's end are never read.
    let mut c = Call::valid(i64s);
    c.labels.extend([-1, 0, 99]);
    assert!(c.run::<f64>().is_ok());
}

#[test]
fn blank_out_of_range() {
    let mut c = Call::valid(i64s);
    c.opts.blank = 5;
    assert_eq!(c.err(), CtcError::BlankOutOfRange { blank: 5, classes: 5 });
    c.opts.blank = usize::MAX;
    assert_eq!(c.err(), CtcError::BlankOutOfRange { blank: usize::MAX, classes: 5 });
}

#[test]
fn lengths_and_losses_of_the_wrong_size() {
    let mut c = Call::valid(i64s);
    c.input_lengths.push(1);
    assert_eq!(c.err(), CtcError::ShapeMismatch { what: "input lengths vs batch", expected: 3, got: 4 });
    let mut c = Call::valid(i64s);
    c.target_lengths.pop();
    assert_eq!(c.err(), CtcError::ShapeMismatch { what: "target lengths vs batch", expected: 3, got: 2 });
    let mut c = Call::valid(i64s);
    c.losses_len = 2;
    assert_eq!(c.err(), CtcError::ShapeMismatch { what: "losses vs batch", expected: 3, got: 2 });
    c.losses_len = 4;
    assert_eq!(c.err(), CtcError::ShapeMismatch { what: "losses vs batch", expected: 3, got: 4 });
    // The allocating call sizes its losses from the input lengths: the mismatch surfaces there.
    let acts = vec![0.0f64; 90];
    let view = ActsView::time_major(&acts, 6, 3, 5).unwrap();
    let err =
        ctc_loss(&view, &Targets::Concatenated { labels: &[1u32], lengths: &[1, 0, 0] }, &[1u32, 1], &c.opts)
            .unwrap_err();
    assert_eq!(err, CtcError::ShapeMismatch { what: "input lengths vs batch", expected: 3, got: 2 });
    // The workspace size query checks its own pair of arrays.
    assert_eq!(
        Workspace::<f32>::required_len(&[1u32, 2], &[1u32]).unwrap_err(),
        CtcError::ShapeMismatch { what: "target lengths vs input lengths", expected: 2, got: 1 }
    );
    assert_eq!(
        Workspace::<f32>::required_len(&[1i32, -2], &[1i32, 0]).unwrap_err(),
        CtcError::InvalidValue { what: "input length", sequence: 1, value: -2 }
    );
}

#[test]
fn gradient_view_of_a_different_shape() {
    for (dt, db, dv, what, expected, got) in [
        (1, 0, 0, "gradient frames vs activations", 6, 7),
        (0, 1, 0, "gradient batch vs activations", 3, 4),
        (0, 0, 1, "gradient classes vs activations", 5, 6),
    ] {
        let mut c = Call::valid(i64s);
        let glay = Layout::time_major(6 + dt, 3 + db, 5 + dv);
        c.grad = Some((glay, (6 + dt) * (3 + db) * (5 + dv)));
        assert_eq!(c.err(), CtcError::ShapeMismatch { what, expected, got });
    }
    // Different strides, same shape: fine.
    let mut c = Call::valid(i64s);
    c.grad = Some((Layout::batch_major(6, 3, 5), 90));
    assert!(c.run::<f64>().is_ok());
}

#[test]
fn concatenated_labels_too_short() {
    let mut c = Call::valid(i64s);
    c.labels.truncate(5);
    assert_eq!(c.err(), CtcError::BufferTooShort { buffer: "labels", needed: 6, got: 5 });
    // A target length so large that the running offset would overflow is just "too short".
    let mut c = Call::valid(u32s);
    c.target_lengths[1] = u32::MAX;
    let e = c.err();
    assert!(
        matches!(e, CtcError::BufferTooShort { buffer: "labels", got: 6, needed } if needed == 2 + u32::MAX as usize),
        "{e:?}"
    );
}

#[test]
fn padded_targets_errors() {
    let mut c = Call::valid(i64s);
    c.padded = Some(3);
    c.labels = vec![1, 2, -9, 2, -9, -9, 3, 4, 1];
    // The padding (-9) is never read: valid.
    let losses = c.run::<f64>().unwrap();
    assert_eq!(losses, Call::valid(i64s).run::<f64>().unwrap());
    let mut d = c.clone();
    d.target_lengths[1] = 4;
    assert_eq!(d.err(), CtcError::TargetLengthTooLong { sequence: 1, length: 4, max_len: 3 });
    let mut d = c.clone();
    d.labels.truncate(8);
    assert_eq!(d.err(), CtcError::BufferTooShort { buffer: "labels", needed: 9, got: 8 });
    let mut d = c.clone();
    d.target_lengths[1] = 2; // reads the padding value -9 at position 1
    assert_eq!(d.err(), CtcError::InvalidValue { what: "label", sequence: 1, value: -9 });
}

#[test]
fn nan_and_infinity_in_logits_and_log_probs() {
    for kind in [InputKind::Logits, InputKind::LogProbs] {
        for bad in [f64::NAN, f64::INFINITY] {
            for strided in [false, true] {
                for (seq, frame, class) in [(0, 0, 0), (1, 3, 4), (2, 4, 2)] {
                    let mut c = Call::valid(i64s);
                    c.opts.input = kind;
                    if strided {
                        // Class stride 2 takes the kernel's non-contiguous path.
                        c.acts_layout = Layout {
                            max_time: 6,
                            batch: 3,
                            classes: 5,
                            stride_t: 30,
                            stride_b: 10,
                            stride_v: 2,
                        };
                        let mut rng = Rng::new(3);
                        c.acts = (0..180).map(|_| rng.normal() - 3.0).collect();
                    }
                    c.set(frame, seq, class, bad);
                    let e = c.err();
                    match e {
                        CtcError::NonFinite { sequence, frame: f, class: k, value } => {
                            assert_eq!(
                                (sequence, f, k),
                                (seq, frame, class),
                                "{kind:?} {bad} strided {strided}"
                            );
                            assert!(value.is_nan() == bad.is_nan() && (bad.is_nan() || value == bad));
                        }
                        other => panic!("{other:?}"),
                    }
                    // The first bad value in (sequence, frame, class) order is reported.
                    let mut d = c.clone();
                    d.set(frame, seq, (class + 1) % 5, f64::NAN);
                    d.set(5, 0, 1, f64::NAN);
                    let first = [(seq, frame, class), (seq, frame, (class + 1) % 5), (0, 5, 1)]
                        .into_iter()
                        .min()
                        .unwrap();
                    match d.err() {
                        CtcError::NonFinite { sequence, frame, class, .. } => {
                            assert_eq!((sequence, frame, class), first)
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn non_finite_values_that_are_never_read_are_not_errors() {
    let mut c = Call::valid(i64s);
    let want = c.run::<f64>().unwrap();
    // Sequence 1 has 4 frames and sequence 2 has 5: their later frames are padding.
    for k in 0..5 {
        c.set(4, 1, k, f64::NAN);
        c.set(5, 1, k, f64::INFINITY);
        c.set(5, 2, k, f64::NAN);
    }
    for kind in [InputKind::Logits, InputKind::LogProbs] {
        c.opts.input = kind;
        let mut base = Call::valid(i64s);
        base.opts.input = kind;
        assert_eq!(c.run::<f64>().unwrap(), base.run::<f64>().unwrap(), "{kind:?}");
        assert_eq!(c.run::<f32>().unwrap(), base.run::<f32>().unwrap(), "{kind:?}");
    }
    assert_eq!(Call::valid(i64s).run::<f64>().unwrap(), want);
    // NaN in the gaps of a strided buffer, between the elements of the view, is not read either.
    let mut c = Call::valid(i64s);
    c.acts_layout = Layout { max_time: 6, batch: 3, classes: 5, stride_t: 33, stride_b: 11, stride_v: 2 };
    c.acts = vec![f64::NAN; 6 * 33];
    let src = Call::valid(i64s);
    for t in 0..6 {
        for b in 0..3 {
            for k in 0..5 {
                c.set(t, b, k, src.acts[(t * 3 + b) * 5 + k]);
            }
        }
    }
    // A class stride of 2 takes the strided path, whose exp/ln are the standard library's: equal to
    // the contiguous result to rounding, not bit for bit.
    let got = c.run::<f64>().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-13 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn a_logits_frame_of_all_minus_infinity() {
    let mut c = Call::valid(i64s);
    for k in 0..5 {
        c.set(2, 1, k, f64::NEG_INFINITY);
    }
    assert_eq!(c.err(), CtcError::NonFinite { sequence: 1, frame: 2, class: 0, value: f64::NEG_INFINITY });
    // The same frame of log-probabilities is a frame where nothing is possible: an infinite loss.
    c.opts.input = InputKind::LogProbs;
    let losses = c.run::<f64>().unwrap();
    assert_eq!(losses[1], f64::INFINITY);
    assert!(losses[0].is_finite() && losses[2].is_finite());
    // One finite logit is enough for a softmax.
    c.opts.input = InputKind::Logits;
    c.set(2, 1, 3, 0.0);
    assert!(c.run::<f64>().is_ok());
}

/// No combination of the above panics: random perturbations of the valid call, each either
/// accepted or rejected with poisoned outputs intact (checked inside `run`).
#[test]
fn random_perturbations_never_panic() {
    let mut rng = Rng::new(2024);
    let mut errors = 0;
    for seed in 0..3000 {
        let mut c = Call::valid(i64s);
        for _ in 0..1 + rng.below(3) {
            match rng.below(8) {
                0 => c.input_lengths[rng.below(3)] = rng.below(10) as i64 - 2,
                1 => c.target_lengths[rng.below(3)] = rng.below(8) as i64 - 1,
                2 => c.labels[rng.below(6)] = rng.below(8) as i64 - 1,
                3 => c.opts.blank = rng.below(7),
                4 => {
                    let (t, b, k) = (rng.below(6), rng.below(3), rng.below(5));
                    c.set(t, b, k, [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30][rng.below(4)]);
                }
                5 => c.losses_len = rng.below(5),
                6 => c.padded = Some(rng.below(5)),
                _ => c.opts.input = InputKind::LogProbs,
            }
        }
        let r64 = c.run::<f64>();
        let r32 = c.run::<f32>();
        assert_eq!(r64.is_err(), r32.is_err(), "seed {seed}: {c:?}");
        errors += r64.is_err() as usize;
    }
    // The perturbations must exercise both outcomes.
    assert!(errors > 500 && errors < 2900, "{errors} errors in 3000");
}
