//! Log-mel filterbank against torchaudio.compliance.kaldi.fbank goldens
//! (scripts/make_fbank_fixtures.py), plus properties that need no golden.
#![cfg(feature = "audio")]

use std::path::{Path, PathBuf};

use fastctc::audio::{read_audio_with, AudioError, DecodeOptions, Fbank, FbankConfig, WindowType};

/// Absolute tolerance on log-mel values. torchaudio computes in f32 with a different FFT and
/// summation order; over frames with energy well above the floor the difference is ~1e-5.
const TOL: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

fn load_wav(name: &str) -> Vec<f32> {
    let opts = DecodeOptions {
        target_rate: None,
        ..DecodeOptions::default()
    };
    let audio = read_audio_with(&fixtures().join(name), &opts).unwrap();
    assert_eq!(audio.sample_rate, 16_000);
    audio.samples
}

#[test]
fn matches_torchaudio_goldens() {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert!(cases.len() >= 5, "expected the full set of golden cases");
    let mut worst = 0.0f32;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let samples = load_wav(case["wav"].as_str().unwrap());
        let config = FbankConfig {
            num_mel_bins: case["num_mel_bins"].as_u64().unwrap() as usize,
            snip_edges: case["snip_edges"].as_bool().unwrap(),
            window: match case["window_type"].as_str().unwrap() {
                "povey" => WindowType::Povey,
                "hamming" => WindowType::Hamming,
                other => panic!("unknown window {other}"),
            },
            ..FbankConfig::default()
        };
        let mut fbank = Fbank::new(config).unwrap();
        let got = fbank.compute(&samples).unwrap();
        let bytes = std::fs::read(fixtures().join(case["file"].as_str().unwrap())).unwrap();
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            got.frames as u64,
            case["frames"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(got.bins as u64, case["bins"].as_u64().unwrap(), "{name}");
        assert_eq!(got.data.len(), want.len(), "{name}");
        let mut max_err = 0.0f32;
        let mut at = 0;
        for (i, (g, w)) in got.data.iter().zip(&want).enumerate() {
            let e = (g - w).abs();
            if e > max_err {
                max_err = e;
                at = i;
            }
        }
        println!(
            "{name}: max |err| {max_err:.3e} at frame {} bin {}",
            at / got.bins,
            at % got.bins
        );
        assert!(
            max_err <= TOL,
            "{name}: max |err| {max_err} at frame {} bin {} (got {}, want {})",
            at / got.bins,
            at % got.bins,
            got.data[at],
            want[at]
        );
        worst = worst.max(max_err);
    }
    println!("worst max |err| over all golden cases: {worst:.3e}");
}

fn chirp() -> Vec<f32> {
    load_wav("chirp_noise.wav")
}

#[test]
fn frame_counts_follow_kaldi() {
    let fb = Fbank::new(FbankConfig::default()).unwrap();
    assert_eq!(fb.window_and_shift(), (400, 160));
    assert_eq!(fb.num_frames(0), 0);
    assert_eq!(fb.num_frames(399), 0);
    assert_eq!(fb.num_frames(400), 1);
    assert_eq!(fb.num_frames(559), 1);
    assert_eq!(fb.num_frames(560), 2);
    let nosnip = Fbank::new(FbankConfig {
        snip_edges: false,
        ..FbankConfig::default()
    })
    .unwrap();
    assert_eq!(nosnip.num_frames(0), 0);
    assert_eq!(nosnip.num_frames(79), 0);
    assert_eq!(nosnip.num_frames(80), 1);
    assert_eq!(nosnip.num_frames(16_000), 100);
}

#[test]
fn short_inputs_give_empty_or_reflected_frames() {
    let mut fb = Fbank::new(FbankConfig::default()).unwrap();
    let f = fb.compute(&[0.1; 100]).unwrap();
    assert_eq!((f.frames, f.bins, f.data.len()), (0, 80, 0));
    // Without snip_edges a 100-sample input still yields one frame, read by repeated reflection.
    let mut nosnip = Fbank::new(FbankConfig {
        snip_edges: false,
        ..FbankConfig::default()
    })
    .unwrap();
    let samples: Vec<f32> = (0..100).map(|i| ((i * 37) % 19) as f32 / 40.0).collect();
    let f = nosnip.compute(&samples).unwrap();
    assert_eq!(f.frames, 1);
    assert!(f.data.iter().all(|v| v.is_finite()));
}

#[test]
fn scale_convention_is_a_constant_log_offset() {
    let samples = chirp();
    let mut kaldi = Fbank::new(FbankConfig::default()).unwrap();
    let mut unit = Fbank::new(FbankConfig {
        sample_scale: 1.0,
        ..FbankConfig::default()
    })
    .unwrap();
    let a = kaldi.compute(&samples).unwrap();
    let b = unit.compute(&samples).unwrap();
    let offset = 2.0 * 32768f32.ln();
    let mut compared = 0;
    for (x, y) in a.data.iter().zip(&b.data) {
        // Only where the unscaled energy is clear of the floor is the offset exact.
        if *y > f32::EPSILON.ln() + 5.0 {
            assert!((x - y - offset).abs() < 1e-3, "{x} - {y} != {offset}");
            compared += 1;
        }
    }
    assert!(compared > a.data.len() / 2);
}

#[test]
fn silence_sits_at_the_energy_floor() {
    let mut fb = Fbank::new(FbankConfig::default()).unwrap();
    let f = fb.compute(&[0.0; 1600]).unwrap();
    let floor = f32::EPSILON.ln();
    assert!(f.data.iter().all(|&v| v == floor));
}

#[test]
fn a_tone_peaks_in_the_right_mel_bin() {
    // 1 kHz: mel(1000) = 1000.0; filter centres are mel_low + (m + 1) delta.
    let samples: Vec<f32> = (0..8000)
        .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 16000.0).sin())
        .collect();
    let mut fb = Fbank::new(FbankConfig::default()).unwrap();
    let f = fb.compute(&samples).unwrap();
    let mel = |hz: f64| 1127.0 * (1.0 + hz / 700.0).ln();
    let delta = (mel(8000.0) - mel(20.0)) / 81.0;
    let expected = ((mel(1000.0) - mel(20.0)) / delta - 1.0).round() as usize;
    for t in 0..f.frames {
        let row = f.row(t);
        let argmax = (0..80).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert!(
            argmax.abs_diff(expected) <= 1,
            "frame {t}: peak {argmax}, want {expected}"
        );
    }
}

#[test]
fn dither_is_seeded_and_reseedable() {
    let samples = chirp();
    let config = FbankConfig {
        dither: 1.0,
        dither_seed: 7,
        ..FbankConfig::default()
    };
    let mut a = Fbank::new(config.clone()).unwrap();
    let mut b = Fbank::new(config).unwrap();
    let fa = a.compute(&samples).unwrap();
    let fb = b.compute(&samples).unwrap();
    assert_eq!(fa, fb);
    // The stream continues across calls; reseeding restarts it.
    let again = a.compute(&samples).unwrap();
    assert_ne!(again, fa);
    a.reseed(7);
    assert_eq!(a.compute(&samples).unwrap(), fa);
    // Dither lifts digital silence off the floor.
    let silent = a.compute(&[0.0; 1600]).unwrap();
    assert!(silent.data.iter().all(|&v| v > f32::EPSILON.ln()));
}

#[test]
fn compute_into_reuses_the_buffer_and_agrees() {
    let samples = chirp();
    let mut fb = Fbank::new(FbankConfig::default()).unwrap();
    let whole = fb.compute(&samples).unwrap();
    let mut buf = vec![f32::NAN; 5];
    let frames = fb.compute_into(&samples, &mut buf).unwrap();
    assert_eq!(frames, whole.frames);
    assert_eq!(buf, whole.data);
    // Dirty scratch: a second call after a different input gives the same result.
    fb.compute(&[0.3; 4000]).unwrap();
    assert_eq!(fb.compute(&samples).unwrap(), whole);
}

#[test]
fn other_windows_and_fft_sizes_run() {
    let samples = chirp();
    for window in [
        WindowType::Hanning,
        WindowType::Rectangular,
        WindowType::Blackman,
    ] {
        for round in [true, false] {
            let mut fb = Fbank::new(FbankConfig {
                window,
                round_to_power_of_two: round,
                num_mel_bins: 40,
                ..FbankConfig::default()
            })
            .unwrap();
            let f = fb.compute(&samples).unwrap();
            assert_eq!(f.frames, 98);
            assert!(f.data.iter().all(|v| v.is_finite()), "{window:?}");
        }
    }
}

#[test]
fn rejects_non_finite_samples() {
    let mut fb = Fbank::new(FbankConfig::default()).unwrap();
    let mut samples = vec![0.0f32; 1000];
    samples[321] = f32::NAN;
    match fb.compute(&samples) {
        Err(AudioError::NonFinite { index: 321, .. }) => {}
        other => panic!("{other:?}"),
    }
    samples[321] = f32::INFINITY;
    assert!(matches!(
        fb.compute(&samples),
        Err(AudioError::NonFinite { index: 321, .. })
    ));
}

#[test]
fn rejects_bad_configs() {
    let bad = [
        FbankConfig {
            sample_rate: 0,
            ..FbankConfig::default()
        },
        FbankConfig {
            frame_length_ms: 0.05,
            ..FbankConfig::default()
        },
        FbankConfig {
            frame_shift_ms: 0.0,
            ..FbankConfig::default()
        },
        FbankConfig {
            frame_length_ms: f64::NAN,
            ..FbankConfig::default()
        },
        FbankConfig {
            num_mel_bins: 0,
            ..FbankConfig::default()
        },
        FbankConfig {
            num_mel_bins: 300,
            ..FbankConfig::default()
        },
        FbankConfig {
            low_freq: 9000.0,
            ..FbankConfig::default()
        },
        FbankConfig {
            high_freq: 9000.0,
            ..FbankConfig::default()
        },
        FbankConfig {
            high_freq: -8000.0,
            ..FbankConfig::default()
        },
        FbankConfig {
            dither: -1.0,
            ..FbankConfig::default()
        },
        FbankConfig {
            sample_scale: 0.0,
            ..FbankConfig::default()
        },
    ];
    for config in bad {
        let err = Fbank::new(config.clone()).unwrap_err();
        assert!(
            matches!(err, AudioError::InvalidConfig { .. }),
            "{config:?}: {err}"
        );
    }
    // Negative high_freq is an offset from Nyquist, as in Kaldi.
    assert!(Fbank::new(FbankConfig {
        high_freq: -400.0,
        ..FbankConfig::default()
    })
    .is_ok());
}
