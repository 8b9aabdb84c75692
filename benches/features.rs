//! Front-end throughput on 10 s of 16 kHz audio: log-mel filterbank (the hot path of training
//! and inference), plus resampling and SpecAugment for scale. Throughput is reported in input
//! samples per second; the real-time factor is that divided by 16000 (printed once at start).
//!
//! Run: `cargo bench --bench features` (single-threaded: nothing here uses rayon).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fastctc::audio::{resample, spec_augment, Fbank, FbankConfig, SpecAugmentConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SECONDS: usize = 10;
const RATE: usize = 16_000;

/// A chirp plus seeded noise: broadband, like speech, so no FFT shortcut flatters the numbers.
fn audio() -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..SECONDS * RATE)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            0.3 * (std::f32::consts::TAU * (100.0 + 300.0 * t) * t).sin() + 0.05 * (rng.random::<f32>() - 0.5)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let samples = audio();
    let mut fbank = Fbank::new(FbankConfig::default()).expect("default config is valid");
    let mut out = Vec::new();

    // A direct estimate of the real-time factor, so the number is in the log. On a shared machine
    // wall time includes waiting for a core; the thread's own CPU time (Linux) does not.
    let reps = 100;
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    for _ in 0..reps {
        fbank.compute_into(black_box(&samples), &mut out).unwrap();
    }
    let wall = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "fbank 80 bins, {SECONDS} s of audio: wall {:.3} ms per call = {:.0}x real time (one thread)",
        wall * 1e3,
        SECONDS as f64 / wall
    );
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_seconds()) {
        let cpu = (b - a) / reps as f64;
        println!(
            "fbank 80 bins, {SECONDS} s of audio: CPU {:.3} ms per call = {:.0}x real time (one core)",
            cpu * 1e3,
            SECONDS as f64 / cpu
        );
    }

    let mut group = c.benchmark_group("features_10s");
    group.throughput(Throughput::Elements((SECONDS * RATE) as u64));
    group
        .bench_function("fbank80", |b| b.iter(|| fbank.compute_into(black_box(&samples), &mut out).unwrap()));
    let mut feats = fbank.compute(&samples).unwrap();
    group.bench_function("specaugment_ld", |b| {
        let config = SpecAugmentConfig::librispeech_double();
        let mut rng = StdRng::seed_from_u64(1);
        b.iter(|| spec_augment(&config, black_box(&mut feats), &mut rng).unwrap())
    });
    group.bench_function("speed_perturb_0.9", |b| {
        b.iter(|| resample(black_box(&samples), 14_400, 16_000).unwrap())
    });
    group.finish();
}

/// User + system CPU time of the calling thread in seconds, from `/proc/thread-self/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s); `None` where that file does not exist.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
