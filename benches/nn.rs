//! One training step (forward, and backward without the features' gradient as the trainer runs it,
//! through the intermediate-CTC output layer too where the model has one; f32) of the acoustic models on a realistic batch: B = 16 utterances of T = 300 frames of 80 log-mel
//! features (3 s each, 10 ms shift), ragged lengths 240..=300, on a 2-thread rayon pool. Throughput is
//! reported in utterances per second.
//!
//! `cargo bench --bench nn` (set `NN_BENCH_THREADS` to change the pool size).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastctc::nn::{AcousticModel, Batch, ConvModelConfig, GruModelConfig, Mode, ModelConfig};

const B: usize = 16;
const T: usize = 300;
const FEATS: usize = 80;

fn batch() -> Batch<f32> {
    // Deterministic pseudo-features in [-1, 1); lengths spread like a length-sorted bucket.
    let data = (0..B * T * FEATS)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let lengths = (0..B).map(|b| T - b * 4).collect();
    Batch::new(data, B, T, FEATS, lengths).expect("valid batch")
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        // What `fastctc train` trains: 192-channel convolutions, three GRU layers, 20 ms output frames,
        // intermediate CTC.
        ("train_default", fastctc::train::default_model()),
        ("gru3x192", ModelConfig::Gru(GruModelConfig::default())),
        ("gru2x128", ModelConfig::Gru(GruModelConfig::small())),
        ("conv6x256", ModelConfig::Conv(ConvModelConfig::default())),
    ]
}

fn step(c: &mut Criterion) {
    let threads = std::env::var("NN_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let x = batch();
    let mut group = c.benchmark_group(format!("nn_train_step_{threads}t"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(B as u64));
    for (name, config) in configs() {
        let mut model = AcousticModel::<f32>::new(&config, 0).expect("model");
        let params = model.num_params();
        let grad = {
            let y = model.forward(&x, Mode::Train).expect("forward");
            vec![1e-3f32; y.data().len()]
        };
        group.bench_function(BenchmarkId::new(name, format!("{params}params")), |bench| {
            bench.iter(|| {
                pool.install(|| {
                    model.zero_grad();
                    let (y, inter) = model.forward_with_intermediate(&x, Mode::Train).expect("forward");
                    std::hint::black_box((y.data()[0], inter.as_ref().map(|z| z.data()[0])));
                    let grad_inter = inter.as_ref().map(|_| grad.as_slice());
                    model.backward_params_with_intermediate(&grad, grad_inter).expect("backward");
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
