//! Resampling and speed perturbation, judged on sines: frequency, amplitude, residual, aliasing.
#![cfg(feature = "audio")]

use fastctc::audio::{resample, speed_perturb, AudioError};
use std::f64::consts::TAU;

fn tone(freq: f64, rate: u32, seconds: f64, amp: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| (amp * (TAU * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Least-squares fit of `a sin(2 pi f t) + b cos(2 pi f t)` over the middle 80% (the filter's edge
/// transients excluded): returns the amplitude and the largest residual.
fn fit(samples: &[f32], rate: u32, freq: f64) -> (f64, f64) {
    let lo = samples.len() / 10;
    let hi = samples.len() - lo;
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &y) in samples.iter().enumerate().take(hi).skip(lo) {
        let ph = TAU * freq * i as f64 / f64::from(rate);
        let (s, c) = ph.sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += f64::from(y) * s;
        yc += f64::from(y) * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let mut worst: f64 = 0.0;
    for (i, &y) in samples.iter().enumerate().take(hi).skip(lo) {
        let ph = TAU * freq * i as f64 / f64::from(rate);
        worst = worst.max((f64::from(y) - a * ph.sin() - b * ph.cos()).abs());
    }
    ((a * a + b * b).sqrt(), worst)
}

#[test]
fn common_rate_pairs_keep_frequency_and_amplitude() {
    for (from, to, freq) in [
        (44_100u32, 16_000u32, 1000.0),
        (48_000, 16_000, 3000.0),
        (22_050, 16_000, 440.0),
        (8_000, 16_000, 1000.0),
        (16_000, 8_000, 2500.0),
        (16_000, 44_100, 5000.0),
    ] {
        let x = tone(freq, from, 0.5, 0.8);
        let y = resample(&x, from, to).unwrap();
        let want_len = (x.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
        assert_eq!(y.len(), want_len, "{from}->{to}");
        let (amp, resid) = fit(&y, to, freq);
        assert!(
            (amp - 0.8).abs() < 0.8 * 0.003,
            "{from}->{to} {freq} Hz: amplitude {amp}"
        );
        assert!(resid < 2e-3, "{from}->{to} {freq} Hz: residual {resid}");
        // The tone is at the stated frequency at the new rate, not just "some" sinusoid: a 1%
        // frequency error would leave a residual of order amp * 2 pi * 0.01 * cycles.
        let (_, off) = fit(&y, to, freq * 1.01);
        assert!(
            off > 0.1,
            "{from}->{to}: a shifted frequency also fits ({off})"
        );
    }
}

#[test]
fn content_above_the_new_nyquist_is_removed() {
    // 7.5 kHz at 48 kHz, taken to 8 kHz (Nyquist 4 kHz): must vanish, not alias to 0.5 kHz.
    let x = tone(7500.0, 48_000, 0.5, 0.9);
    let y = resample(&x, 48_000, 8_000).unwrap();
    let mid = &y[400..y.len() - 400];
    let peak = mid.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak < 0.9 * 1e-3, "alias peak {peak}");
}

#[test]
fn identity_and_edge_cases() {
    let x = tone(300.0, 16_000, 0.1, 0.5);
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    assert!(resample(&[], 44_100, 16_000).unwrap().is_empty());
    assert_eq!(resample(&[0.5], 8_000, 16_000).unwrap().len(), 2);
    // A constant signal stays constant away from the edges (unit DC gain in every phase).
    let ones = vec![0.25f32; 4000];
    let y = resample(&ones, 44_100, 16_000).unwrap();
    for v in &y[100..y.len() - 100] {
        assert!((v - 0.25).abs() < 1e-5, "{v}");
    }
}

#[test]
fn awkward_ratios_use_the_direct_path_and_agree() {
    // 16001 Hz -> 16000 Hz reduces to 16000/16001: too many phases to tabulate.
    let x = tone(1000.0, 16_001, 0.3, 0.6);
    let y = resample(&x, 16_001, 16_000).unwrap();
    let (amp, resid) = fit(&y, 16_000, 1000.0);
    assert!((amp - 0.6).abs() < 0.002 && resid < 2e-3, "{amp} {resid}");
}

#[test]
fn speed_perturbation_scales_length_and_frequency() {
    let x = tone(500.0, 16_000, 1.0, 0.5);
    for factor in [0.9, 1.0, 1.1] {
        let y = speed_perturb(&x, 16_000, factor).unwrap();
        let want = (16_000.0 / factor).ceil() as usize;
        assert!(
            y.len().abs_diff(want) <= 1,
            "{factor}: {} vs {want}",
            y.len()
        );
        // Played faster, a 500 Hz tone becomes 500 * factor Hz.
        let (amp, resid) = fit(&y, 16_000, 500.0 * factor);
        assert!(
            (amp - 0.5).abs() < 0.002 && resid < 2e-3,
            "{factor}: {amp} {resid}"
        );
    }
}

#[test]
fn errors() {
    let x = [0.0f32; 10];
    for (from, to) in [(0, 16_000), (16_000, 0), (2_000_000, 16_000)] {
        assert!(matches!(
            resample(&x, from, to),
            Err(AudioError::InvalidSampleRate { .. })
        ));
    }
    let mut bad = x;
    bad[4] = f32::NAN;
    assert!(matches!(
        resample(&bad, 8_000, 16_000),
        Err(AudioError::NonFinite { index: 4, .. })
    ));
    for factor in [0.0, 0.3, 2.5, f64::NAN] {
        assert!(matches!(
            speed_perturb(&x, 16_000, factor),
            Err(AudioError::InvalidConfig { .. })
        ));
    }
}
