//! Adam(W) against hand-computed steps, clipping, schedules, state save/restore.

use fastctc::nn::Param;
use fastctc::optim::{
    clip_grad_norm, grad_norm, Adam, AdamConfig, AdamState, LrSchedule, OptimError,
};

fn param(name: &str, values: &[f64]) -> Param<f64> {
    Param::from_values(name, vec![values.len()], values.to_vec()).unwrap()
}

/// Two steps on p = [1, -2] with gradients [0.5, -1] then [0.1, 0.2], lr 0.1, betas (0.9, 0.999),
/// eps 1e-8. By hand:
/// step 1: m = [0.05, -0.1], v = [2.5e-4, 1e-3], m_hat = [0.5, -1], v_hat = [0.25, 1],
///         p -= 0.1 * m_hat / (sqrt(v_hat) + 1e-8) -> [0.900000002, -1.900000001];
/// step 2: m = [0.055, -0.07], v = [2.5975e-4, 1.039e-3], bias corrections 0.19 and 0.001999,
///         m_hat = [0.2894737, -0.3684211], v_hat = [0.1299400, 0.5197599],
///         p -= 0.1 * m_hat / (sqrt(v_hat) + 1e-8) -> [0.8196959063846517, -1.8488973939904945].
/// With weight decay 0.1 the same arithmetic gives the other two rows (decoupled: p *= 1 - lr wd
/// first; L2: g += wd p).
#[test]
fn adam_two_steps_by_hand() {
    let cases = [
        (
            true,
            0.0,
            [
                [0.900000002, -1.900000001],
                [0.8196959063846517, -1.8488973939904945],
            ],
        ),
        (
            true,
            0.1,
            [
                [0.890000002, -1.880000001],
                [0.8007959063646517, -1.8100973939804945],
            ],
        ),
        (
            false,
            0.1,
            [
                [0.9000000016666666, -1.9000000008333333],
                [0.8136483454297575, -1.8336169077420748],
            ],
        ),
    ];
    for (decoupled, weight_decay, expect) in cases {
        let config = AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled,
        };
        let mut adam = Adam::<f64>::new(config).unwrap();
        let mut p = param("w", &[1.0, -2.0]);
        for (step, grad) in [[0.5, -1.0], [0.1, 0.2]].iter().enumerate() {
            p.grad_mut().copy_from_slice(grad);
            adam.step(&mut [&mut p], 0.1).unwrap();
            for (got, want) in p.value().iter().zip(&expect[step]) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "decoupled {decoupled} wd {weight_decay} step {step}: {got} vs {want}"
                );
            }
        }
        assert_eq!(adam.step_count(), 2);
    }
}

#[test]
fn adam_state_resumes_exactly() {
    let config = AdamConfig::default();
    let grads = [
        [0.3, -0.2, 0.1],
        [0.05, 0.4, -0.6],
        [-0.1, 0.1, 0.2],
        [0.7, 0.0, -0.3],
    ];
    let mut full = Adam::<f64>::new(config).unwrap();
    let mut p_full = param("layer.weight", &[0.1, 0.2, 0.3]);
    for g in &grads {
        p_full.grad_mut().copy_from_slice(g);
        full.step(&mut [&mut p_full], 1e-2).unwrap();
    }
    let mut first = Adam::<f64>::new(config).unwrap();
    let mut p = param("layer.weight", &[0.1, 0.2, 0.3]);
    for g in &grads[..2] {
        p.grad_mut().copy_from_slice(g);
        first.step(&mut [&mut p], 1e-2).unwrap();
    }
    let saved = serde_json::to_string(first.state()).unwrap();
    let state: AdamState<f64> = serde_json::from_str(&saved).unwrap();
    assert_eq!(state.step, 2);
    assert_eq!(state.moments[0].name, "layer.weight");
    let mut resumed = Adam::<f64>::new(config).unwrap();
    resumed.load_state(state).unwrap();
    for g in &grads[2..] {
        p.grad_mut().copy_from_slice(g);
        resumed.step(&mut [&mut p], 1e-2).unwrap();
    }
    assert_eq!(p.value(), p_full.value());
}

#[test]
fn adam_rejects_mismatched_parameters() {
    let mut adam = Adam::<f32>::new(AdamConfig::default()).unwrap();
    let mut a = Param::from_values("a", vec![2], vec![1.0f32, 2.0]).unwrap();
    let mut b = Param::from_values("b", vec![1], vec![1.0f32]).unwrap();
    adam.step(&mut [&mut a, &mut b], 1e-3).unwrap();
    let before = a.value().to_vec();
    let err = adam.step(&mut [&mut b, &mut a], 1e-3).unwrap_err();
    assert!(
        matches!(err, OptimError::StateMismatch { index: 0, .. }),
        "{err}"
    );
    assert_eq!(
        a.value(),
        before.as_slice(),
        "a failed step changes nothing"
    );
    assert!(matches!(
        adam.step(&mut [&mut a], 1e-3),
        Err(OptimError::StateMismatch { index: 1, .. })
    ));
    assert!(matches!(
        adam.step(&mut [&mut a, &mut b], f64::NAN),
        Err(OptimError::InvalidHyperparameter { field: "lr", .. })
    ));
    let bad = AdamConfig {
        beta1: 1.0,
        ..AdamConfig::default()
    };
    assert!(matches!(
        Adam::<f32>::new(bad),
        Err(OptimError::InvalidHyperparameter { field: "beta1", .. })
    ));
}

#[test]
fn clipping_by_global_norm() {
    let mut a = param("a", &[0.0, 0.0]);
    let mut b = param("b", &[0.0]);
    a.grad_mut().copy_from_slice(&[3.0, 0.0]);
    b.grad_mut().copy_from_slice(&[4.0]);
    let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap();
    assert_eq!(norm, 5.0);
    let scale = 1.0 / (5.0 + 1e-6);
    assert!((a.grad()[0] - 3.0 * scale).abs() < 1e-15 && (b.grad()[0] - 4.0 * scale).abs() < 1e-15);
    assert!((grad_norm(&[&mut a, &mut b]) - 1.0).abs() < 1e-6);
    // Below the limit: untouched.
    let norm = clip_grad_norm(&mut [&mut a, &mut b], 10.0).unwrap();
    assert!((norm - 1.0).abs() < 1e-6);
    assert!((a.grad()[0] - 3.0 * scale).abs() < 1e-15);
    // Non-finite: reported, gradients untouched.
    b.grad_mut()[0] = f64::INFINITY;
    let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap();
    assert!(!norm.is_finite());
    assert!((a.grad()[0] - 3.0 * scale).abs() < 1e-15);
    b.grad_mut()[0] = f64::NAN;
    assert!(clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap().is_nan());
    assert!(clip_grad_norm(&mut [&mut a], 0.0).is_err());
}

#[test]
fn schedule_values_at_named_steps() {
    let cos = LrSchedule::WarmupCosine {
        peak_lr: 1e-3,
        warmup_steps: 10,
        total_steps: 110,
        min_lr: 1e-5,
    };
    cos.validate().unwrap();
    assert!((cos.lr(0) - 1e-4).abs() < 1e-15, "first warm-up step");
    assert!((cos.lr(4) - 5e-4).abs() < 1e-15);
    assert!(
        (cos.lr(9) - 1e-3).abs() < 1e-15,
        "end of warm-up reaches the peak"
    );
    assert!(
        (cos.lr(10) - 1e-3).abs() < 1e-15,
        "cosine starts at the peak"
    );
    assert!(
        (cos.lr(60) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-15,
        "halfway"
    );
    assert!((cos.lr(110) - 1e-5).abs() < 1e-15 && (cos.lr(10_000) - 1e-5).abs() < 1e-15);

    let inv = LrSchedule::WarmupInvSqrt {
        peak_lr: 2e-3,
        warmup_steps: 100,
    };
    assert!((inv.lr(99) - 2e-3).abs() < 1e-15);
    assert!(
        (inv.lr(399) - 1e-3).abs() < 1e-15,
        "4x the warm-up: half the peak"
    );

    let exp = LrSchedule::WarmupExponential {
        peak_lr: 1e-3,
        warmup_steps: 0,
        gamma: 0.5,
        decay_steps: 100,
        min_lr: 1e-4,
    };
    assert!((exp.lr(0) - 1e-3).abs() < 1e-15);
    assert!((exp.lr(100) - 5e-4).abs() < 1e-15);
    assert!((exp.lr(200) - 2.5e-4).abs() < 1e-15);
    assert!((exp.lr(1000) - 1e-4).abs() < 1e-15, "floored");

    assert_eq!(LrSchedule::Constant { lr: 3e-4 }.lr(12345), 3e-4);
    let bad = LrSchedule::WarmupCosine {
        peak_lr: 1e-3,
        warmup_steps: 10,
        total_steps: 10,
        min_lr: 0.0,
    };
    assert!(matches!(
        bad.validate(),
        Err(OptimError::InvalidHyperparameter {
            field: "total_steps",
            ..
        })
    ));
    let json = serde_json::to_string(&cos).unwrap();
    assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), cos);
}
