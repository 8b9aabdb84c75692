//! "No allocation after the first call": with a workspace sized by `Workspace::with_capacity_for`, a
//! call on such a batch allocates nothing, on every backend, grouped (equal lengths) or not. Counted
//! by a global allocator that tallies the calling thread's allocations.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

use fastctc::loss::shapes;
use fastctc::{
    ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, Parallelism, Reduction, Targets, Workspace,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local `Cell` (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_sized_workspace_makes_calls_allocation_free() {
    // `tiny` (equal lengths: grouped on the vector backends) and `ragged` (never grouped).
    let all = shapes::standard_shapes();
    for shape in all.iter().filter(|s| s.name == "tiny" || s.name == "ragged") {
        let (logits, labels) = shape.generate(3);
        let (t, b, v) = (shape.max_time(), shape.batch(), shape.classes);
        let il: Vec<u32> = shape.input_lengths.iter().map(|&x| x as u32).collect();
        let tl: Vec<u32> = shape.target_lengths.iter().map(|&x| x as u32).collect();
        let targets = Targets::Concatenated { labels: &labels, lengths: &tl };
        let view = ActsView::time_major(&logits, t, b, v).unwrap();
        let mut grad = vec![0.0f32; logits.len()];
        let mut losses = vec![0.0f32; b];
        for backend in [Backend::Scalar, Backend::Vector, Backend::Avx2, Backend::Auto] {
            // Sequential: rayon's own task bookkeeping is not the kernel's to count.
            let opts = CtcOptions {
                reduction: Reduction::Mean,
                parallelism: Parallelism::Sequential,
                backend,
                ..Default::default()
            };
            let mut ws = Workspace::<f32>::with_capacity_for(&il, &tl).unwrap();
            let mut gview = ActsViewMut::time_major(&mut grad, t, b, v).unwrap();
            let before = allocations();
            ctc_compute(&view, &targets, &il, &mut losses, Some(&mut gview), &opts, &mut ws).unwrap();
            let during = allocations() - before;
            assert_eq!(during, 0, "{} {backend:?}: {during} allocations in a call", shape.name);
            assert!(losses.iter().all(|l| l.is_finite()));
        }
    }
}
