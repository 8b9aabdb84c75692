//! Small batches through every code path that holds `unsafe`: the unchecked row loads and stores of
//! the vector kernels, the gradient writer's raw pointer (contiguous and strided rows), and the C ABI.
//! Sized so that Miri finishes in minutes:
//!
//! ```sh
//! cargo +nightly miri test --no-default-features --features rayon,ffi --test unsafe_paths
//! ```
//!
//! (Under Miri the CPU reports no AVX2, so `Backend::Auto` runs the portable vector kernels; the AVX2
//! lanes are checked by their own tests and by the suites on real hardware.)

mod common;

use common::{Problem, Rng};
use fastctc::loss::reference;
use fastctc::{
    ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, InputKind, Layout, Parallelism, Reduction,
    Targets, Workspace,
};

fn check(p: &Problem, layout: Layout, front: usize, backend: Backend, parallelism: Parallelism) {
    let (t, b, v) = (p.max_time, p.batch(), p.classes);
    let len = front + layout.required_len().unwrap() + 3;
    let mut acts = vec![f64::NAN; len];
    for tt in 0..t {
        for bb in 0..b {
            for k in 0..v {
                acts[front + layout.offset(tt, bb, k)] = p.acts[(tt * b + bb) * v + k];
            }
        }
    }
    let sentinel = -7.25;
    let mut grad = vec![sentinel; len];
    let view = ActsView::new(&acts[front..], layout).unwrap();
    let mut gview = ActsViewMut::new(&mut grad[front..], layout).unwrap();
    let labels: Vec<u32> = p.targets.iter().flatten().map(|&x| x as u32).collect();
    let lengths: Vec<u32> = p.targets.iter().map(|x| x.len() as u32).collect();
    let il: Vec<u32> = p.input_lengths.iter().map(|&x| x as u32).collect();
    let opts =
        CtcOptions { blank: p.blank, reduction: Reduction::Sum, backend, parallelism, ..Default::default() };
    let mut losses = vec![0.0f64; b];
    let mut ws = Workspace::new();
    let targets = Targets::Concatenated { labels: &labels, lengths: &lengths };
    ctc_compute(&view, &targets, &il, &mut losses, Some(&mut gview), &opts, &mut ws).unwrap();
    for (bb, &got) in losses.iter().enumerate() {
        let lp = p.ref_log_probs(bb, InputKind::Logits);
        let want = -reference::forward_backward(&lp, &p.targets[bb], p.blank).log_likelihood;
        assert!(
            got == want || (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{backend:?} b {bb}: {got} vs {want}"
        );
        // Every gradient row of a feasible sequence sums to zero (softmax minus posteriors).
        if want.is_finite() {
            for tt in 0..p.input_lengths[bb] {
                let s: f64 = (0..v).map(|k| gview.get(tt, bb, k).unwrap()).sum();
                assert!(s.abs() < 1e-9, "{backend:?} b {bb} t {tt}: row sum {s}");
            }
        }
    }
    // Nothing outside the view was written.
    let inside: std::collections::HashSet<usize> = (0..t)
        .flat_map(|tt| (0..b).flat_map(move |bb| (0..v).map(move |k| (tt, bb, k))))
        .map(|(tt, bb, k)| front + layout.offset(tt, bb, k))
        .collect();
    for (i, &x) in grad.iter().enumerate() {
        assert!(inside.contains(&i) || x == sentinel, "{backend:?}: element {i} outside the view written");
    }
}

#[test]
fn every_backend_and_layout_on_small_batches() {
    let mut rng = Rng::new(11);
    let cases = if cfg!(miri) { 2 } else { 40 };
    for _ in 0..cases {
        // Lengths around the vector width (8 f32, 4 f64 lanes) so that tails of every size occur.
        let v = 2 + rng.below(12);
        let p = Problem::random(&mut rng, 3, 7, 9, v, 1.5);
        let (t, b, v) = (p.max_time, p.batch(), p.classes);
        // Contiguous rows (class stride 1), batch-major, and a strided view (class stride 2, padded).
        let strided = Layout {
            max_time: t,
            batch: b,
            classes: v,
            stride_t: b * (2 * v + 1),
            stride_b: 2 * v + 1,
            stride_v: 2,
        };
        for (layout, front) in
            [(Layout::time_major(t, b, v), 0), (Layout::batch_major(t, b, v), 1), (strided, 2)]
        {
            for backend in [Backend::Scalar, Backend::Vector, Backend::Auto] {
                check(&p, layout, front, backend, Parallelism::Rayon);
            }
        }
    }
}

/// Batches with runs of equal lengths, which the vector kernels run as groups, one sequence per lane
/// (four f64 lanes): the interleaved rows' unchecked loads and stores, the gathers from the group's
/// offset table, the unchecked scatter of each member's posteriors.
#[test]
fn groups_of_equal_lengths() {
    let mut rng = Rng::new(12);
    let cases = if cfg!(miri) { 2 } else { 40 };
    for _ in 0..cases {
        let v = 2 + rng.below(6);
        // One shape, at least four sequences of it: at least one full group.
        let p = loop {
            let p = Problem::grouped(&mut rng, 1, 6, 3, v, 1.5);
            if p.batch() >= 4 {
                break p;
            }
        };
        let (t, b, v) = (p.max_time, p.batch(), p.classes);
        for (layout, front) in [(Layout::time_major(t, b, v), 0), (Layout::batch_major(t, b, v), 1)] {
            // Sequential: with threads, groups are formed only while a unit per thread remains.
            for backend in [Backend::Vector, Backend::Auto] {
                check(&p, layout, front, backend, Parallelism::Sequential);
            }
        }
    }
}

/// The C entry point under Miri. `tests/ffi.rs` compares it bit for bit with the Rust API, which Miri
/// cannot confirm (it perturbs the last bits of `exp` and `ln` on purpose); here only the pointer
/// handling is the point, so the check is that the costs come back finite and positive.
#[cfg(feature = "ffi")]
#[test]
fn c_entry_point_on_a_small_batch() {
    use fastctc::ffi::{fastctc_compute_f32, FastctcOptions, FASTCTC_OK};
    let (t, b, v) = (5usize, 2usize, 4usize);
    let mut rng = Rng::new(5);
    let acts: Vec<f32> = (0..t * b * v).map(|_| rng.normal() as f32).collect();
    let mut grads = vec![0.0f32; t * b * v];
    let labels = [1i32, 2, 3];
    let label_lengths = [2i32, 1];
    let input_lengths = [5i32, 3];
    let mut costs = [0.0f32; 2];
    let opts = FastctcOptions { blank: 0, input_kind: 0, reduction: 0, zero_infinity: 0, parallel: 1 };
    // SAFETY: every pointer covers the sizes the contract names.
    let status = unsafe {
        fastctc_compute_f32(
            acts.as_ptr(),
            grads.as_mut_ptr(),
            labels.as_ptr(),
            label_lengths.as_ptr(),
            input_lengths.as_ptr(),
            t as i32,
            v as i32,
            b as i32,
            costs.as_mut_ptr(),
            &opts,
        )
    };
    assert_eq!(status, FASTCTC_OK);
    assert!(costs.iter().all(|c| c.is_finite() && *c > 0.0), "{costs:?}");
}
