//! CMVN (per utterance and global) and SpecAugment.
#![cfg(feature = "audio")]

use fastctc::audio::{
    cmvn_utterance, spec_augment, AudioError, CmvnStats, Features, GlobalCmvn, MaskAxis, MaskValue,
    SpecAugmentConfig,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn random_features(frames: usize, bins: usize, seed: u64) -> Features {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..frames * bins)
        .map(|i| {
            let b = (i % bins) as f32;
            // Each bin has its own offset and spread, like log-mel energies.
            10.0 + b * 0.3 + (1.0 + b * 0.05) * (rng.random::<f32>() - 0.5) * 4.0
        })
        .collect();
    Features::new(data, frames, bins).unwrap()
}

fn column_moments(f: &Features) -> Vec<(f64, f64)> {
    (0..f.bins)
        .map(|b| {
            let col: Vec<f64> = (0..f.frames).map(|t| f64::from(f.row(t)[b])).collect();
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let v = col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / col.len() as f64;
            (m, v)
        })
        .collect()
}

#[test]
fn utterance_cmvn_gives_zero_mean_unit_variance() {
    let mut f = random_features(300, 40, 1);
    cmvn_utterance(&mut f, true).unwrap();
    for (b, (m, v)) in column_moments(&f).into_iter().enumerate() {
        assert!(m.abs() < 1e-5, "bin {b} mean {m}");
        assert!((v - 1.0).abs() < 1e-4, "bin {b} var {v}");
    }
    let mut g = random_features(300, 40, 1);
    let before = column_moments(&g);
    cmvn_utterance(&mut g, false).unwrap();
    for ((m, v), (_, v0)) in column_moments(&g).into_iter().zip(before) {
        assert!(m.abs() < 1e-5);
        assert!(
            (v - v0).abs() < 1e-3 * v0,
            "mean-only must keep the variance"
        );
    }
}

#[test]
fn utterance_cmvn_edge_cases() {
    let mut empty = Features::new(vec![], 0, 80).unwrap();
    cmvn_utterance(&mut empty, true).unwrap();
    // A constant bin stays finite (variance floor) and centres to 0.
    let mut constant = Features::new(vec![3.0; 20], 10, 2).unwrap();
    cmvn_utterance(&mut constant, true).unwrap();
    assert!(constant.data.iter().all(|&v| v == 0.0));
    let mut bad = Features::new(vec![1.0, f32::NAN, 2.0, 3.0], 2, 2).unwrap();
    assert!(matches!(
        cmvn_utterance(&mut bad, true),
        Err(AudioError::NonFinite { index: 1, .. })
    ));
    assert_eq!(bad.data[0], 1.0, "nothing changes on error");
    let mut broken = Features {
        data: vec![0.0; 5],
        frames: 2,
        bins: 3,
    };
    assert!(cmvn_utterance(&mut broken, true).is_err());
}

#[test]
fn global_stats_equal_the_pooled_moments_and_merge() {
    let parts: Vec<Features> = (0..5)
        .map(|s| random_features(50 + 17 * s as usize, 8, s))
        .collect();
    let mut all = CmvnStats::new(8);
    for p in &parts {
        all.accumulate(p).unwrap();
    }
    // Two accumulators merged give the same statistics as one.
    let mut a = CmvnStats::new(8);
    let mut b = CmvnStats::new(8);
    for (i, p) in parts.iter().enumerate() {
        if i % 2 == 0 { &mut a } else { &mut b }
            .accumulate(p)
            .unwrap();
    }
    a.merge(&b).unwrap();
    assert_eq!(a.frames(), all.frames());
    let g = all.finalize().unwrap();
    let g2 = a.finalize().unwrap();
    for (x, y) in g.mean.iter().zip(&g2.mean) {
        assert!((x - y).abs() < 1e-5);
    }
    // Pooled moments computed directly.
    let pooled = Features::new(
        parts.iter().flat_map(|p| p.data.clone()).collect(),
        parts.iter().map(|p| p.frames).sum(),
        8,
    )
    .unwrap();
    for (bin, (m, v)) in column_moments(&pooled).into_iter().enumerate() {
        assert!((f64::from(g.mean[bin]) - m).abs() < 1e-4);
        assert!((f64::from(g.inv_std[bin]) - 1.0 / v.sqrt()).abs() < 1e-4 / v.sqrt());
    }
    // Applying them normalises the pooled set.
    let mut normed = pooled.clone();
    g.apply(&mut normed).unwrap();
    for (m, v) in column_moments(&normed) {
        assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3, "{m} {v}");
    }
}

#[test]
fn global_stats_errors() {
    assert!(matches!(
        CmvnStats::new(4).finalize(),
        Err(AudioError::InvalidStats { .. })
    ));
    let mut s = CmvnStats::new(4);
    assert!(matches!(
        s.accumulate(&random_features(3, 5, 0)),
        Err(AudioError::ShapeMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
    assert!(s.merge(&CmvnStats::new(3)).is_err());
    s.accumulate(&random_features(3, 4, 0)).unwrap();
    let g = s.finalize().unwrap();
    assert!(g.apply(&mut random_features(3, 5, 0)).is_err());
}

#[test]
fn global_stats_round_trip_through_json_and_disk() {
    let mut s = CmvnStats::new(6);
    s.accumulate(&random_features(40, 6, 9)).unwrap();
    let g = s.finalize().unwrap();
    assert_eq!(GlobalCmvn::from_json(&g.to_json()).unwrap(), g);

    let dir = std::env::temp_dir().join(format!("fastctc-cmvn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cmvn.json");
    g.save(&path).unwrap();
    assert!(
        !dir.join("cmvn.json.tmp").exists(),
        "temp file renamed away"
    );
    assert_eq!(GlobalCmvn::load(&path).unwrap(), g);

    for bad in [
        r#"{"mean": [1.0], "inv_std": [1.0, 2.0]}"#,
        r#"{"mean": [], "inv_std": []}"#,
        r#"{"mean": [1.0], "inv_std": [0.0]}"#,
        r#"{"mean": [1.0], "inv_std": [-1.0]}"#,
        r#"{"mean": [1.0]}"#,
        "not json",
    ] {
        assert!(
            matches!(
                GlobalCmvn::from_json(bad),
                Err(AudioError::InvalidStats { .. })
            ),
            "{bad}"
        );
    }
    std::fs::write(&path, r#"{"mean": [1.0], "inv_std": [0.0]}"#).unwrap();
    let err = GlobalCmvn::load(&path).unwrap_err();
    assert!(err.to_string().contains("cmvn.json"), "{err}");
    assert!(matches!(
        GlobalCmvn::load(&dir.join("missing.json")),
        Err(AudioError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spec_augment_is_deterministic_for_a_seed() {
    let config = SpecAugmentConfig::librispeech_double();
    let base = random_features(400, 80, 3);
    let run = |seed| {
        let mut f = base.clone();
        let masks = spec_augment(&config, &mut f, &mut StdRng::seed_from_u64(seed)).unwrap();
        (f, masks)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11).1, run(12).1);
}

#[test]
fn spec_augment_masks_exactly_what_it_reports_within_bounds() {
    let policies = [
        SpecAugmentConfig::librispeech_basic(),
        SpecAugmentConfig::librispeech_double(),
        SpecAugmentConfig::switchboard_mild(),
        SpecAugmentConfig::switchboard_strong(),
        SpecAugmentConfig::librispeech_double_adaptive(),
    ];
    for (pi, config) in policies.iter().enumerate() {
        for seed in 0..50u64 {
            let frames = 30 + (seed as usize * 37) % 500;
            let base = random_features(frames, 80, seed);
            let mut f = base.clone();
            let masks = spec_augment(config, &mut f, &mut StdRng::seed_from_u64(seed)).unwrap();
            let (time_count, time_width) = config.time_policy(frames);
            let nf = masks
                .iter()
                .filter(|m| m.axis == MaskAxis::Frequency)
                .count();
            assert_eq!(nf, config.freq_masks);
            assert_eq!(masks.len() - nf, time_count);
            let mut masked = vec![false; frames * 80];
            for m in &masks {
                match m.axis {
                    MaskAxis::Frequency => {
                        assert!(m.width <= config.max_freq_width && m.start + m.width <= 80);
                        for t in 0..frames {
                            for b in m.start..m.start + m.width {
                                masked[t * 80 + b] = true;
                            }
                        }
                    }
                    MaskAxis::Time => {
                        assert!(m.width <= time_width && m.start + m.width <= frames);
                        assert!(m.width as f64 <= config.max_time_ratio * frames as f64 + 1e-9);
                        for t in m.start..m.start + m.width {
                            for b in 0..80 {
                                masked[t * 80 + b] = true;
                            }
                        }
                    }
                }
            }
            for (i, (&x, &y)) in f.data.iter().zip(&base.data).enumerate() {
                if masked[i] {
                    assert_eq!(x, 0.0, "policy {pi} seed {seed} cell {i}");
                } else {
                    assert_eq!(x, y, "policy {pi} seed {seed} cell {i} changed");
                }
            }
        }
    }
}

#[test]
fn adaptive_policy_scales_with_length() {
    let c = SpecAugmentConfig::librispeech_double_adaptive();
    assert_eq!(c.time_policy(100), (4, 4));
    assert_eq!(c.time_policy(1000), (20, 40));
    assert_eq!(c.time_policy(10), (0, 0));
    let odd = SpecAugmentConfig {
        adaptive_masks_per_frame: Some(0.29),
        ..c
    };
    assert_eq!(odd.time_policy(100).0, 20, "capped at time_masks");
    let odd = SpecAugmentConfig {
        time_masks: 100,
        ..odd
    };
    assert_eq!(odd.time_policy(100).0, 29, "0.29 * 100 is 29, not 28");
    let sm = SpecAugmentConfig::switchboard_mild();
    assert_eq!(sm.time_policy(100), (2, 20));
    assert_eq!(sm.time_policy(1000), (2, 70));
}

#[test]
fn mean_mask_value_uses_the_bin_means() {
    let config = SpecAugmentConfig {
        freq_masks: 0,
        time_masks: 1,
        max_time_width: 50,
        max_time_ratio: 1.0,
        mask_value: MaskValue::Mean,
        ..SpecAugmentConfig::librispeech_basic()
    };
    let base = random_features(60, 4, 5);
    let means: Vec<f32> = column_moments(&base).iter().map(|m| m.0 as f32).collect();
    for seed in 0..20 {
        let mut f = base.clone();
        let masks = spec_augment(&config, &mut f, &mut StdRng::seed_from_u64(seed)).unwrap();
        let m = masks[0];
        for t in m.start..m.start + m.width {
            for b in 0..4 {
                assert!((f.row(t)[b] - means[b]).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn spec_augment_errors_and_empty_input() {
    let mut f = random_features(10, 8, 0);
    let bad = SpecAugmentConfig {
        max_time_ratio: 1.5,
        ..SpecAugmentConfig::librispeech_basic()
    };
    assert!(matches!(
        spec_augment(&bad, &mut f, &mut StdRng::seed_from_u64(0)),
        Err(AudioError::InvalidConfig { .. })
    ));
    let nan = SpecAugmentConfig {
        adaptive_width_ratio: Some(f64::NAN),
        ..SpecAugmentConfig::librispeech_basic()
    };
    assert!(spec_augment(&nan, &mut f, &mut StdRng::seed_from_u64(0)).is_err());
    let mut broken = Features {
        data: vec![0.0; 3],
        frames: 2,
        bins: 2,
    };
    assert!(spec_augment(
        &SpecAugmentConfig::librispeech_basic(),
        &mut broken,
        &mut StdRng::seed_from_u64(0)
    )
    .is_err());
    let mut empty = Features::new(vec![], 0, 80).unwrap();
    let masks = spec_augment(
        &SpecAugmentConfig::librispeech_double(),
        &mut empty,
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    assert!(masks
        .iter()
        .all(|m| m.axis == MaskAxis::Frequency || m.width == 0));
}
