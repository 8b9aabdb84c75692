//! Every edge case the kernel defines, each against a closed form or the reference.

// Index loops over (t, b, k) mirror the address formula and read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

mod common;

use common::{close, Problem, Rng};
use fastctc::loss::reference;
use std::cell::Cell;

use fastctc::{
    ctc_compute, ctc_loss, ActsView, ActsViewMut, Backend, CtcOptions, GradOutput, InputKind, Layout,
    Parallelism, Reduction, Targets, Workspace,
};

/// Every implementation of the inner loops; each test below runs once per backend.
const BACKENDS: [Backend; 3] = [Backend::Scalar, Backend::Vector, Backend::Avx2];

thread_local! {
    /// The backend `opts` hands out: set by `every_backend` around a test's body.
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Auto) };
}

/// Runs `body` once per backend, with `opts` returning that backend.
fn every_backend(body: impl Fn()) {
    for backend in BACKENDS {
        BACKEND.with(|b| b.set(backend));
        body();
    }
    BACKEND.with(|b| b.set(Backend::Auto));
}

fn opts(blank: usize) -> CtcOptions {
    CtcOptions {
        blank,
        reduction: Reduction::None,
        parallelism: Parallelism::Sequential,
        backend: BACKEND.with(Cell::get),
        ..Default::default()
    }
}

fn single(t: usize, v: usize, blank: usize, labels: &[usize], acts: Vec<f64>) -> Problem {
    Problem { max_time: t, classes: v, blank, input_lengths: vec![t], targets: vec![labels.to_vec()], acts }
}

#[test]
fn empty_target_is_minus_sum_of_blank_log_probs() {
    every_backend(|| {
        let mut rng = Rng::new(1);
        let (t, v) = (7, 5);
        let acts: Vec<f64> = (0..t * v).map(|_| rng.normal()).collect();
        let p = single(t, v, 3, &[], acts);
        let (losses, _, grad) = p.run::<f64>(&opts(3)).unwrap();
        let lp = p.ref_log_probs(0, InputKind::Logits);
        let want: f64 = -lp.iter().map(|r| r[3]).sum::<f64>();
        assert!(close(losses[0], want, 1e-13), "{} vs {want}", losses[0]);
        // Gradient: softmax everywhere, minus 1 at the blank.
        for tt in 0..t {
            for k in 0..v {
                let want = lp[tt][k].exp() - if k == 3 { 1.0 } else { 0.0 };
                assert!((grad[tt * v + k] - want).abs() < 1e-14);
            }
        }
    });
}

#[test]
fn zero_frames() {
    every_backend(|| {
        // Empty target: the empty path is the empty labelling, probability 1.
        let p = Problem {
            max_time: 3,
            classes: 4,
            blank: 0,
            input_lengths: vec![0, 0],
            targets: vec![vec![], vec![2]],
            acts: vec![0.5; 3 * 2 * 4],
        };
        let (losses, _, grad) = p.run::<f64>(&opts(0)).unwrap();
        assert_eq!(losses[0], 0.0);
        assert_eq!(losses[1], f64::INFINITY);
        assert!(grad.iter().all(|&g| g == 0.0), "frames past the input length are zero");
        let mut o = opts(0);
        o.zero_infinity = true;
        let (losses, _, _) = p.run::<f64>(&o).unwrap();
        assert_eq!(losses, vec![0.0, 0.0]);
        // A zero-length time axis.
        let p = Problem {
            max_time: 0,
            classes: 4,
            blank: 0,
            input_lengths: vec![0],
            targets: vec![vec![]],
            acts: vec![],
        };
        assert_eq!(p.run::<f64>(&opts(0)).unwrap().0, vec![0.0]);
    });
}

#[test]
fn empty_batch_reduces_to_zero() {
    every_backend(|| {
        let acts: Vec<f32> = vec![];
        let view = ActsView::time_major(&acts, 5, 0, 3).unwrap();
        let empty: [u32; 0] = [];
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = CtcOptions { reduction, ..Default::default() };
            let out = ctc_loss(&view, &Targets::Concatenated { labels: &empty, lengths: &empty }, &empty, &o)
                .unwrap();
            assert_eq!(out.reduced, 0.0);
            assert!(out.losses.is_empty());
        }
    });
}

#[test]
fn minimum_length_is_feasible_and_one_short_is_not() {
    every_backend(|| {
        // labels with 2 repeats: a a b b c -> minimum T = 5 + 2 = 7.
        let labels = [1, 1, 2, 2, 3];
        let v = 4;
        for (t, feasible) in [(7, true), (6, false), (8, true)] {
            let mut rng = Rng::new(t as u64);
            let acts: Vec<f64> = (0..t * v).map(|_| rng.normal()).collect();
            let p = single(t, v, 0, &labels, acts);
            let (losses, _, grad) = p.run::<f64>(&opts(0)).unwrap();
            assert_eq!(losses[0].is_finite(), feasible, "T = {t}");
            assert!(grad.iter().all(|g| g.is_finite()), "never NaN, T = {t}");
            if !feasible {
                assert_eq!(losses[0], f64::INFINITY);
                assert!(grad.iter().all(|&g| g == 0.0));
                let mut o = opts(0);
                o.zero_infinity = true;
                let (l, _, g) = p.run::<f64>(&o).unwrap();
                assert_eq!(l[0], 0.0);
                assert!(g.iter().all(|&x| x == 0.0));
            } else {
                let lp = p.ref_log_probs(0, InputKind::Logits);
                let want = -reference::forward_backward(&lp, &labels, 0).log_likelihood;
                assert!(close(losses[0], want, 1e-12));
            }
        }
        // At the minimum length exactly one path survives: a _ a b _ b c.
        let t = 7;
        let p = single(t, v, 0, &labels, vec![0.0; t * v]);
        let (losses, _, _) = p.run::<f64>(&opts(0)).unwrap();
        assert!(close(losses[0], t as f64 * (v as f64).ln(), 1e-13));
    });
}

#[test]
fn uniform_distribution_closed_form() {
    every_backend(|| {
        for (t, labels, v, blank) in [
            (10usize, vec![1usize, 2, 3], 5usize, 0usize),
            (12, vec![1, 1, 1], 3, 2),
            (20, vec![0, 1, 0, 1, 0], 2, 2 - 1 + 1),
        ] {
            let v = v.max(labels.iter().max().unwrap() + 1).max(blank + 1);
            let labels: Vec<usize> =
                labels.into_iter().map(|l| if l == blank { (blank + 1) % v } else { l }).collect();
            let p = single(t, v, blank, &labels, vec![0.0; t * v]);
            let (losses, _, _) = p.run::<f64>(&opts(blank)).unwrap();
            let count = reference::count_alignments(t, &labels, blank);
            let want = -count.ln() + t as f64 * (v as f64).ln();
            assert!(close(losses[0], want, 1e-12), "{labels:?}: {} vs {want}", losses[0]);
        }
    });
}

#[test]
fn single_frame_closed_form() {
    every_backend(|| {
        // T = 1: the target is empty (blank) or one label.
        let lp = [0.1f64, 0.6, 0.3].map(f64::ln);
        for (labels, want) in [(vec![], -lp[0]), (vec![1usize], -lp[1]), (vec![2], -lp[2])] {
            let p = single(1, 3, 0, &labels, lp.to_vec());
            let mut o = opts(0);
            o.input = InputKind::LogProbs;
            let (losses, _, _) = p.run::<f64>(&o).unwrap();
            assert!(close(losses[0], want, 1e-14));
            let lat = reference::forward_backward(&[lp.to_vec()], &labels, 0);
            assert!(close(-lat.log_likelihood, want, 1e-14));
        }
    });
}

#[test]
fn blank_last_class_and_binary_vocabulary() {
    every_backend(|| {
        let mut rng = Rng::new(5);
        for (v, blank) in [(2usize, 1usize), (2, 0), (6, 5)] {
            let label = if blank == 0 { 1 } else { 0 };
            let t = 9;
            let acts: Vec<f64> = (0..t * v).map(|_| rng.normal()).collect();
            let p = single(t, v, blank, &[label, label, label], acts);
            let (losses, _, _) = p.run::<f64>(&opts(blank)).unwrap();
            let lp = p.ref_log_probs(0, InputKind::Logits);
            let want = -reference::forward_backward(&lp, &[label; 3], blank).log_likelihood;
            assert!(close(losses[0], want, 1e-12), "V {v} blank {blank}");
        }
    });
}

#[test]
fn ten_thousand_frames() {
    every_backend(|| {
        let mut rng = Rng::new(10);
        let (t, v) = (10_000, 8);
        let labels: Vec<usize> = (0..500).map(|_| 1 + rng.below(v - 1)).collect();
        let acts: Vec<f64> = (0..t * v).map(|_| rng.normal() * 2.0).collect();
        let p = single(t, v, 0, &labels, acts);
        let (l64, _, g64) = p.run::<f64>(&opts(0)).unwrap();
        let lp = p.ref_log_probs(0, InputKind::Logits);
        let want = -reference::forward_backward(&lp, &labels, 0).log_likelihood;
        assert!(close(l64[0], want, 1e-12), "{} vs {want}", l64[0]);
        let (l32, _, g32) = p.run::<f32>(&opts(0)).unwrap();
        // f32 over 10^4 frames: the error of a sum of T normalisers grows like sqrt(T) * eps per frame.
        assert!(close(l32[0], want, 1e-5), "f32 {} vs {want}", l32[0]);
        let max_err = g64.iter().zip(&g32).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        // Measured 3.8e-4 (seed 10): the forward and backward passes accumulate independent rounding over
        // 10^4 steps; without rescaling and per-frame normalisation it was 0.1.
        assert!(max_err < 2e-3, "f32 gradient error {max_err}");
    });
}

#[test]
fn peaked_flat_and_huge_logits() {
    every_backend(|| {
        let mut rng = Rng::new(11);
        for scale in [1e-6, 1.0, 50.0, 1e4] {
            let p = Problem::random(&mut rng, 4, 30, 8, 6, scale);
            let (losses, _, grad) = p.run::<f64>(&opts(p.blank)).unwrap();
            for b in 0..4 {
                let lp = p.ref_log_probs(b, InputKind::Logits);
                let want = -reference::forward_backward(&lp, &p.targets[b], p.blank).log_likelihood;
                assert!(
                    close(losses[b], want, 1e-12) || (want.is_infinite() && losses[b] == want),
                    "scale {scale}"
                );
            }
            assert!(grad.iter().all(|g| g.is_finite()), "scale {scale}");
            let (l32, _, g32) = p.run::<f32>(&opts(p.blank)).unwrap();
            assert!(g32.iter().all(|g| g.is_finite()), "f32 scale {scale}");
            assert!(l32.iter().all(|l| !l.is_nan()));
        }
    });
}

#[test]
fn hard_zeros_on_and_off_the_only_path() {
    every_backend(|| {
        // T = 3, target [1, 1]: the only path is 1 _ 1.
        let ninf = f64::NEG_INFINITY;
        let half = 0.5f64.ln();
        let third = (1.0f64 / 3.0).ln();
        // Off the path: class 2 impossible everywhere.
        let lp = vec![half, half, ninf, half, half, ninf, half, half, ninf];
        let p = single(3, 3, 0, &[1, 1], lp.clone());
        let mut o = opts(0);
        o.input = InputKind::LogProbs;
        let (losses, _, grad) = p.run::<f64>(&o).unwrap();
        assert!(close(losses[0], -3.0 * half, 1e-14));
        assert!(grad.iter().all(|g| g.is_finite()));
        // On the path: the blank is impossible at frame 1, so nothing fits.
        let mut lp2 = vec![third; 9];
        lp2[3] = ninf;
        let p = single(3, 3, 0, &[1, 1], lp2);
        let (losses, _, grad) = p.run::<f64>(&o).unwrap();
        assert_eq!(losses[0], f64::INFINITY);
        assert!(grad.iter().all(|&g| g == 0.0));
        o.zero_infinity = true;
        assert_eq!(p.run::<f64>(&o).unwrap().0[0], 0.0);
    });
}

#[test]
fn logits_with_minus_infinity_entries() {
    every_backend(|| {
        let ninf = f64::NEG_INFINITY;
        let p = single(2, 3, 0, &[2], vec![0.0, ninf, 1.0, 0.5, ninf, 0.0]);
        let (losses, _, grad) = p.run::<f64>(&opts(0)).unwrap();
        let lp = p.ref_log_probs(0, InputKind::Logits);
        let want = -reference::forward_backward(&lp, &[2], 0).log_likelihood;
        assert!(close(losses[0], want, 1e-14));
        assert_eq!(grad[1], 0.0, "an impossible class has zero gradient");
    });
}

#[test]
fn reductions_scale_losses_and_gradients() {
    every_backend(|| {
        let mut rng = Rng::new(12);
        let p = Problem::random(&mut rng, 5, 20, 4, 6, 1.0);
        let mut o = opts(p.blank);
        o.zero_infinity = true;
        let (losses, sum_none, g_none) = p.run::<f64>(&o).unwrap();
        o.reduction = Reduction::Sum;
        let (_, sum, g_sum) = p.run::<f64>(&o).unwrap();
        assert_eq!(sum_none, sum);
        assert_eq!(g_none, g_sum);
        assert!(close(sum, losses.iter().sum::<f64>(), 1e-14));
        o.reduction = Reduction::Mean;
        let (_, mean, g_mean) = p.run::<f64>(&o).unwrap();
        let want: f64 =
            losses.iter().zip(&p.targets).map(|(l, t)| l / t.len().max(1) as f64).sum::<f64>() / 5.0;
        assert!(close(mean, want, 1e-14));
        for t in 0..p.max_time {
            for b in 0..5 {
                let s = 1.0 / (5.0 * p.targets[b].len().max(1) as f64);
                for k in 0..p.classes {
                    let i = (t * 5 + b) * p.classes + k;
                    assert!((g_mean[i] - g_sum[i] * s).abs() < 1e-15);
                }
            }
        }
    });
}

#[test]
fn torch_convention_and_posterior_outputs() {
    every_backend(|| {
        let mut rng = Rng::new(13);
        let mut p = Problem::random(&mut rng, 3, 15, 4, 5, 1.0);
        p.normalise();
        let mut o = opts(p.blank);
        o.input = InputKind::LogProbs;
        let (_, _, g) = p.run::<f64>(&o).unwrap();
        o.output = GradOutput::TorchLogProbs;
        let (_, _, torch) = p.run::<f64>(&o).unwrap();
        o.output = GradOutput::Posterior;
        let (losses, _, post) = p.run::<f64>(&o).unwrap();
        for b in 0..3 {
            for t in 0..p.max_time {
                for k in 0..p.classes {
                    let i = (t * 3 + b) * p.classes + k;
                    if t < p.input_lengths[b] && losses[b].is_finite() {
                        assert!((g[i] + post[i]).abs() < 1e-15, "log-probs gradient is -gamma");
                        assert!(
                            (torch[i] - (p.acts[i].exp() - post[i])).abs() < 1e-14,
                            "torch: exp(lp) - gamma"
                        );
                    } else {
                        assert_eq!((g[i], torch[i], post[i]), (0.0, 0.0, 0.0));
                    }
                }
            }
        }
    });
}

/// Every element outside the view, and every frame past a sequence's length, is left alone or zeroed
/// as documented; a dirty workspace changes nothing.
#[test]
fn strided_subviews_poison_and_dirty_workspace() {
    every_backend(|| {
        let mut rng = Rng::new(14);
        let p = Problem::random(&mut rng, 3, 9, 4, 5, 1.5);
        let (t, bsz, v) = (p.max_time, p.batch(), p.classes);
        let (want_losses, _, want_grad) = p.run::<f64>(&opts(p.blank)).unwrap();
        // Embed batch-major with padding: element (t, b, k) at 3 + b*st_b + t*st_t + k*2.
        let (st_t, st_b, st_v) = (2 * v + 1, (2 * v + 1) * t + 5, 2);
        let len = 3 + (bsz - 1) * st_b + (t - 1) * st_t + (v - 1) * st_v + 1 + 4;
        let mut buf = vec![f64::NAN; len];
        for tt in 0..t {
            for b in 0..bsz {
                for k in 0..v {
                    buf[3 + b * st_b + tt * st_t + k * st_v] = p.acts[(tt * bsz + b) * v + k];
                }
            }
        }
        let layout =
            Layout { max_time: t, batch: bsz, classes: v, stride_t: st_t, stride_b: st_b, stride_v: st_v };
        let view = ActsView::new(&buf[3..], layout).unwrap();
        let mut gbuf = vec![f64::NAN; len];
        let sentinel = -12345.0;
        gbuf.iter_mut().for_each(|x| *x = sentinel);
        let mut gview = ActsViewMut::new(&mut gbuf[3..], layout).unwrap();
        let (labels, lengths) = p.concat_labels();
        let il = p.lengths_u32();
        let mut ws = Workspace::<f64>::new();
        let mut losses = vec![0.0; bsz];
        let mut first_round = None;
        for round in 0..2 {
            ctc_compute(
                &view,
                &Targets::Concatenated { labels: &labels, lengths: &lengths },
                &il,
                &mut losses,
                Some(&mut gview),
                &opts(p.blank),
                &mut ws,
            )
            .unwrap();
            // A class stride of 2 takes the strided path (scalar exp/ln): equal to rounding.
            for (l, w) in losses.iter().zip(&want_losses) {
                assert!(close(*l, *w, 1e-14), "round {round}: {l} vs {w}");
            }
            let snapshot: Vec<f64> =
                (0..t * bsz * v).map(|i| gview.get(i / (bsz * v), (i / v) % bsz, i % v).unwrap()).collect();
            for (i, (g, w)) in snapshot.iter().zip(&want_grad).enumerate() {
                assert!((g - w).abs() < 1e-14, "round {round} element {i}: {g} vs {w}");
            }
            // A dirty workspace changes nothing, bit for bit.
            if let Some(first) = &first_round {
                assert_eq!(&(losses.clone(), snapshot.clone()), first, "round {round}");
            }
            first_round = Some((losses.clone(), snapshot));
            // Dirty the workspace for the next round by running an unrelated batch through it.
            let junk = Problem::random(&mut rng, 4, 30, 10, 7, 3.0);
            let _ = junk.run::<f64>(&opts(junk.blank));
            let (jl, jlen) = junk.concat_labels();
            let jacts = ActsView::time_major(&junk.acts, junk.max_time, 4, junk.classes).unwrap();
            let mut jloss = vec![0.0; 4];
            let jil = junk.lengths_u32();
            ctc_compute(
                &jacts,
                &Targets::Concatenated { labels: &jl, lengths: &jlen },
                &jil,
                &mut jloss,
                None,
                &opts(junk.blank),
                &mut ws,
            )
            .unwrap();
        }
        // Nothing outside the view was touched.
        let touched: std::collections::HashSet<usize> = (0..t)
            .flat_map(|tt| {
                (0..bsz).flat_map(move |b| (0..v).map(move |k| 3 + b * st_b + tt * st_t + k * st_v))
            })
            .collect();
        for (i, &x) in gbuf.iter().enumerate() {
            if !touched.contains(&i) {
                assert_eq!(x, sentinel, "element {i} outside the view was written");
            }
        }
    });
}

#[test]
fn padded_and_concatenated_targets_agree_and_label_types() {
    every_backend(|| {
        let mut rng = Rng::new(15);
        let p = Problem::random(&mut rng, 4, 12, 5, 6, 1.0);
        let lmax = 7;
        let mut padded = vec![-1i64; 4 * lmax];
        for (b, t) in p.targets.iter().enumerate() {
            for (i, &l) in t.iter().enumerate() {
                padded[b * lmax + i] = l as i64;
            }
        }
        let lengths: Vec<i64> = p.targets.iter().map(|t| t.len() as i64).collect();
        let il: Vec<i64> = p.input_lengths.iter().map(|&x| x as i64).collect();
        let view = ActsView::time_major(&p.acts, p.max_time, 4, p.classes).unwrap();
        // Both without a gradient, so both take the same lattice (a call with a gradient may run the
        // probability-space one, whose rounding differs in the last bits).
        let (concatenated, concatenated_lengths) = p.concat_labels();
        let want = ctc_loss(
            &view,
            &Targets::Concatenated { labels: &concatenated, lengths: &concatenated_lengths },
            &p.lengths_u32(),
            &opts(p.blank),
        )
        .unwrap();
        let got = ctc_loss(
            &view,
            &Targets::Padded { labels: &padded, max_len: lmax, lengths: &lengths },
            &il,
            &opts(p.blank),
        )
        .unwrap();
        assert_eq!(got.losses, want.losses);
    });
}

#[test]
fn thread_count_and_parallelism_do_not_change_results() {
    every_backend(|| {
        let mut rng = Rng::new(16);
        let p = Problem::random(&mut rng, 13, 40, 12, 9, 2.0);
        let (l_seq, r_seq, g_seq) = p.run::<f32>(&opts(p.blank)).unwrap();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut o = opts(p.blank);
            o.parallelism = Parallelism::Rayon;
            let (l, r, g) = pool.install(|| p.run::<f32>(&o)).unwrap();
            assert_eq!((l, r), (l_seq.clone(), r_seq), "{threads} threads");
            assert_eq!(g, g_seq, "bitwise identical, {threads} threads");
        }
    });
}

/// Runs `p` (time-major, or batch-major when asked) in `F` with `o`, widened to f64, the output
/// time-major whatever the layout.
fn run_layout<F: fastctc::Float>(
    p: &Problem,
    o: &CtcOptions,
    batch_major: bool,
) -> Result<(Vec<f64>, Vec<f64>), fastctc::CtcError> {
    let (bsz, v, tm) = (p.batch(), p.classes, p.max_time);
    let time_major_at = |t: usize, b: usize, k: usize| (t * bsz + b) * v + k;
    let layout = if batch_major { Layout::batch_major(tm, bsz, v) } else { Layout::time_major(tm, bsz, v) };
    let mut acts = vec![F::ZERO; p.acts.len()];
    for t in 0..tm {
        for b in 0..bsz {
            for k in 0..v {
                acts[layout.offset(t, b, k)] = F::from_f64(p.acts[time_major_at(t, b, k)]);
            }
        }
    }
    let (labels, lengths) = p.concat_labels();
    let il = p.lengths_u32();
    let mut grad = vec![F::from_f64(f64::NAN); acts.len()];
    let mut losses = vec![F::ZERO; bsz];
    ctc_compute(
        &ActsView::new(&acts, layout)?,
        &Targets::Concatenated { labels: &labels, lengths: &lengths },
        &il,
        &mut losses,
        Some(&mut ActsViewMut::new(&mut grad, layout)?),
        o,
        &mut Workspace::new(),
    )?;
    let mut out = vec![0.0; grad.len()];
    for t in 0..tm {
        for b in 0..bsz {
            for k in 0..v {
                out[time_major_at(t, b, k)] = grad[layout.offset(t, b, k)].to_f64();
            }
        }
    }
    Ok((losses.iter().map(|x| x.to_f64()).collect(), out))
}

/// Sequences of equal lengths run interleaved, one per vector lane, on the vector backends. Whatever
/// its neighbours in the group (infeasible, hard zeros, peaked or huge activations, an invalid value),
/// every member must get what the scalar backend, which never groups, gives it: in every output
/// convention, with `zero_infinity` on and off, in both layouts and both precisions.
#[test]
fn grouped_sequences_match_the_scalar_backend() {
    let mut rng = Rng::new(15);
    for case in 0..48u64 {
        let v = 2 + rng.below(7);
        let scale = [1e-6, 1.0, 50.0, 1e4][case as usize % 4];
        let max_label = 1 + rng.below(8);
        let max_time = 1 + rng.below(2 * max_label + 6);
        let shapes = 1 + rng.below(2);
        let mut p = Problem::grouped(&mut rng, shapes, max_time, max_label, v, scale);
        let kind = if case % 3 == 0 { InputKind::Logits } else { InputKind::LogProbs };
        if kind == InputKind::LogProbs {
            p.normalise();
            // Hard zeros: an impossible class at about one entry in six. And in every fourth case,
            // log-probs of magnitude 1e30 (unnormalised, as the kernel accepts them), where the
            // posterior shift cancels catastrophically and the frame's own maximum takes over.
            let huge = case % 4 == 1;
            for x in p.acts.iter_mut() {
                if huge {
                    *x = -1e30 * rng.unit();
                }
                if rng.below(6) == 0 {
                    *x = f64::NEG_INFINITY;
                }
            }
        }
        let output = [GradOutput::Gradient, GradOutput::TorchLogProbs, GradOutput::Posterior][rng.below(3)];
        let o = CtcOptions {
            blank: p.blank,
            input: kind,
            reduction: Reduction::Mean,
            zero_infinity: case % 2 == 0,
            output,
            // Mostly sequential: with threads, groups are formed only while a unit per thread remains.
            parallelism: if case % 4 == 3 { Parallelism::Rayon } else { Parallelism::Sequential },
            backend: Backend::Scalar,
        };
        let batch_major = case % 4 >= 2;
        let (want, want_grad) = run_layout::<f64>(&p, &o, batch_major).unwrap();
        let (want32, want_grad32) = run_layout::<f32>(&p, &o, batch_major).unwrap();
        for backend in [Backend::Vector, Backend::Avx2] {
            let o = CtcOptions { backend, ..o };
            let (got, grad) = run_layout::<f64>(&p, &o, batch_major).unwrap();
            for (b, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(close(g, w, 1e-12), "case {case} {backend:?} seq {b}: loss {g} vs scalar {w}");
            }
            for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
                assert!((g - w).abs() <= 1e-12, "case {case} {backend:?} element {i}: {g} vs scalar {w}");
            }
            let (got, grad) = run_layout::<f32>(&p, &o, batch_major).unwrap();
            for (b, (&g, &w)) in got.iter().zip(&want32).enumerate() {
                assert!(close(g, w, 2e-6), "case {case} {backend:?} f32 seq {b}: loss {g} vs scalar {w}");
            }
            for (i, (&g, &w)) in grad.iter().zip(&want_grad32).enumerate() {
                assert!((g - w).abs() <= 5e-6, "case {case} {backend:?} f32 element {i}: {g} vs scalar {w}");
            }
        }
        // An invalid value in one member: the same error, naming the same sequence and frame.
        let b = rng.below(p.batch());
        if p.input_lengths[b] > 0 {
            let t = rng.below(p.input_lengths[b]);
            let k = rng.below(p.classes);
            let at = (t * p.batch() + b) * p.classes + k;
            // +inf rather than NaN: the error carries the value, and NaN != NaN.
            p.acts[at] = f64::INFINITY;
            let want = run_layout::<f64>(&p, &o, batch_major).unwrap_err();
            for backend in [Backend::Vector, Backend::Avx2] {
                let got = run_layout::<f32>(&p, &CtcOptions { backend, ..o }, batch_major).unwrap_err();
                assert_eq!(got, want, "case {case} {backend:?}");
            }
        }
    }
}
