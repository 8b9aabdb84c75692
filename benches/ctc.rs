//! Criterion benchmarks of loss + logits gradient, reported as lattice cells per second
//! (`sum_b T_b (2 L_b + 1)`, DESIGN §5).
//!
//! Groups:
//! - `shapes`: every standard shape, f32 and f64, 1 and 2 threads, the default backend (`auto`) beside
//!   the scalar one (and the portable `vector` one for f32), so the table shows what each path buys;
//! - `scaling_{T,L,V,B}`: one dimension swept around `chars` (B=32 T=150 L=40 V=29), f32, 1 thread.
//!
//! `cargo bench --bench ctc -- shapes/tiny` runs one shape.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastctc::loss::shapes::{standard_shapes, Shape};
use fastctc::{
    ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, Float, Reduction, Targets, Workspace,
};
use std::hint::black_box;

/// Inputs of one shape, converted to `F` once, outside the timed loop.
struct Case<F> {
    shape: Shape,
    logits: Vec<F>,
    labels: Vec<u32>,
    input_lengths: Vec<u32>,
    target_lengths: Vec<u32>,
}

impl<F: Float> Case<F> {
    fn new(shape: Shape) -> Self {
        let (logits, labels) = shape.generate(1);
        Case {
            logits: logits.into_iter().map(|x| F::from_f64(x as f64)).collect(),
            labels,
            input_lengths: shape.input_lengths.iter().map(|&x| x as u32).collect(),
            target_lengths: shape.target_lengths.iter().map(|&x| x as u32).collect(),
            shape,
        }
    }

    /// Returns a closure that runs one loss + gradient computation with a reused workspace.
    fn runner(&self, backend: Backend) -> impl FnMut() + '_ {
        let (t, b, v) = (self.shape.max_time(), self.shape.batch(), self.shape.classes);
        let acts = ActsView::time_major(&self.logits, t, b, v).expect("generated shape is consistent");
        let opts = CtcOptions { reduction: Reduction::Sum, backend, ..Default::default() };
        let mut grad = vec![F::ZERO; self.logits.len()];
        let mut losses = vec![F::ZERO; b];
        let mut ws = Workspace::new();
        move || {
            let mut g = ActsViewMut::time_major(&mut grad, t, b, v).expect("same shape as the logits");
            let r = ctc_compute(
                &acts,
                &Targets::Concatenated { labels: &self.labels, lengths: &self.target_lengths },
                &self.input_lengths,
                &mut losses,
                Some(&mut g),
                &opts,
                &mut ws,
            )
            .expect("generated batches are valid");
            black_box(r);
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool")
}

fn shapes_for<F: Float>(c: &mut Criterion, backends: &[(&str, Backend)]) {
    let mut group = c.benchmark_group(format!("shapes_{}", F::NAME));
    group.sample_size(10);
    for shape in standard_shapes() {
        group.throughput(Throughput::Elements(shape.cells() as u64));
        let case = Case::<F>::new(shape);
        for &(name, backend) in backends {
            for threads in [1, 2] {
                let p = pool(threads);
                let mut run = case.runner(backend);
                let id = BenchmarkId::new(format!("{}/{name}", case.shape.name), format!("{threads}t"));
                group.bench_function(id, |bch| bch.iter(|| p.install(&mut run)));
            }
        }
    }
    group.finish();
}

fn shapes(c: &mut Criterion) {
    shapes_for::<f32>(
        c,
        &[("auto", Backend::Auto), ("vector", Backend::Vector), ("scalar", Backend::Scalar)],
    );
    shapes_for::<f64>(c, &[("auto", Backend::Auto), ("scalar", Backend::Scalar)]);
}

fn sweep(c: &mut Criterion, dim: &str, points: &[usize], make: impl Fn(usize) -> Shape) {
    let mut group = c.benchmark_group(format!("scaling_{dim}"));
    group.sample_size(10);
    let p = pool(1);
    for &x in points {
        let shape = make(x);
        group.throughput(Throughput::Elements(shape.cells() as u64));
        let case = Case::<f32>::new(shape);
        for (name, backend) in [("auto", Backend::Auto), ("scalar", Backend::Scalar)] {
            let mut run = case.runner(backend);
            group.bench_function(BenchmarkId::new(name, x), |bch| bch.iter(|| p.install(&mut run)));
        }
    }
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let uniform = |b: usize, t: usize, l: usize, v: usize| Shape {
        name: "sweep",
        classes: v,
        input_lengths: vec![t; b],
        target_lengths: vec![l; b],
    };
    sweep(c, "T", &[100, 200, 400, 800], |t| uniform(32, t, 40, 29));
    sweep(c, "L", &[5, 20, 40, 70], |l| uniform(32, 150, l, 29));
    sweep(c, "V", &[29, 256, 1024, 4096], |v| uniform(32, 150, 40, v));
    sweep(c, "B", &[1, 8, 32, 128], |b| uniform(b, 150, 40, 29));
}

criterion_group!(benches, shapes, scaling);
criterion_main!(benches);
