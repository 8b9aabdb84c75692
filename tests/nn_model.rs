//! Whole-model gradients, independence of batch neighbours, seeded construction, config files.

mod nn_util;

use fastctc::nn::{
    AcousticModel, Activation, Batch, ConvModelConfig, GruModelConfig, Mode, ModelConfig, NnError,
    ResidualConvBlock,
};
use nn_util::{check_layer, ragged, rng};

fn tiny_gru(conv_layers: usize) -> ModelConfig {
    ModelConfig::Gru(GruModelConfig {
        input_dim: 3,
        vocab: 4,
        conv_layers,
        conv_channels: 3,
        conv_kernel: 3,
        conv_stride: 2,
        activation: Activation::Tanh,
        gru_layers: 2,
        hidden: 2,
        dropout: 0.2,
    })
}

fn tiny_conv() -> ModelConfig {
    ModelConfig::Conv(ConvModelConfig {
        input_dim: 3,
        vocab: 4,
        channels: 4,
        subsample_layers: 1,
        blocks: 2,
        kernel: 3,
        dilation_cycle: vec![1, 2],
        dropout: 0.2,
    })
}

const LENGTHS: [usize; 3] = [9, 4, 1];
const T: usize = 9;

#[test]
fn gru_model_gradients() {
    for (i, conv_layers) in [2, 1, 0].into_iter().enumerate() {
        let seed = 100 + i as u64;
        let mut model = AcousticModel::<f64>::new(&tiny_gru(conv_layers), seed).unwrap();
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut model, &x, seed);
    }
}

#[test]
fn conv_model_gradients() {
    let mut model = AcousticModel::<f64>::new(&tiny_conv(), 110).unwrap();
    let x = ragged(&mut rng(110), T, 3, &LENGTHS, f64::NAN);
    check_layer(&mut model, &x, 110);
}

#[test]
fn residual_block_gradients() {
    let mut r = rng(120);
    let mut block = ResidualConvBlock::<f64>::new("b", 3, 3, 2, 0.0, 1, &mut r).unwrap();
    let x = ragged(&mut r, T, 3, &LENGTHS, f64::NAN);
    check_layer(&mut block, &x, 120);
}

/// A sequence's logits do not depend on its batch neighbours or on how much padding follows it.
#[test]
fn outputs_independent_of_batch_and_padding() {
    for config in [tiny_gru(2), tiny_conv()] {
        let mut model = AcousticModel::<f64>::new(&config, 130).unwrap();
        let x = ragged(&mut rng(131), T, 3, &LENGTHS, f64::NAN);
        let y = model.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.lengths(), model.output_lengths(&LENGTHS).as_slice());
        assert_eq!(y.time(), config.output_length(T));
        for (b, &len) in LENGTHS.iter().enumerate() {
            let alone = Batch::new(
                x.data()[b * T * 3..(b * T + len) * 3].to_vec(),
                1,
                len,
                3,
                vec![len],
            )
            .unwrap();
            let ya = model.forward(&alone, Mode::Eval).unwrap();
            let n = ya.lengths()[0] * 4;
            let start = b * y.time() * 4;
            for (a, c) in ya.data()[..n].iter().zip(&y.data()[start..start + n]) {
                assert!(
                    (a - c).abs() < 1e-12,
                    "{config:?}: sequence {b} differs alone vs batched"
                );
            }
        }
    }
}

#[test]
fn seeded_construction_is_reproducible() {
    let config = ModelConfig::default();
    let a = AcousticModel::<f32>::new(&config, 42).unwrap();
    let b = AcousticModel::<f32>::new(&config, 42).unwrap();
    let c = AcousticModel::<f32>::new(&config, 43).unwrap();
    let (pa, pb, pc) = (a.params(), b.params(), c.params());
    assert_eq!(pa.len(), pb.len());
    for ((x, y), z) in pa.iter().zip(&pb).zip(&pc) {
        assert_eq!(x.name(), y.name());
        assert_eq!(x.value(), y.value(), "{}", x.name());
        if x.name().contains("weight") && !x.name().starts_with("norm") {
            assert_ne!(
                x.value(),
                z.value(),
                "{} should depend on the seed",
                x.name()
            );
        }
    }
    // PyTorch's default bounds: GRU weights within 1/sqrt(hidden), conv.0 within 1/sqrt(80 * 3).
    for p in &pa {
        let bound = if p.name().starts_with("rnn.") {
            1.0 / 192f32.sqrt()
        } else if p.name().starts_with("conv.0") {
            1.0 / 240f32.sqrt()
        } else {
            continue;
        };
        let max = p.value().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound && max > 0.9 * bound,
            "{}: max |w| {max}, bound {bound}",
            p.name()
        );
    }
    // Dropout masks are seeded too: two models with the same seed train identically.
    let mut a = a;
    let mut b = b;
    let x = Batch::new(
        (0..2 * 20 * 80)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect(),
        2,
        20,
        80,
        vec![20, 13],
    )
    .unwrap();
    assert_eq!(
        a.forward(&x, Mode::Train).unwrap(),
        b.forward(&x, Mode::Train).unwrap()
    );
}

#[test]
fn default_model_sizes_and_names() {
    let model = AcousticModel::<f32>::new(&ModelConfig::default(), 0).unwrap();
    let n = model.num_params();
    assert!(
        (1_900_000..2_300_000).contains(&n),
        "default model has {n} parameters"
    );
    let mut names: Vec<String> = model
        .params()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("conv.0.weight"));
    assert!(names.contains(&"rnn.2.weight_hh_l0_reverse".to_string()));
    assert_eq!(names.last().map(String::as_str), Some("output.bias"));
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "parameter names must be unique");
    assert_eq!(model.output_lengths(&[300, 299, 1, 0]), vec![75, 75, 1, 0]);
    let conv =
        AcousticModel::<f32>::new(&ModelConfig::Conv(ConvModelConfig::default()), 0).unwrap();
    assert!(conv.num_params() > 100_000);
}

#[test]
fn zero_grad_and_accumulation() {
    let mut model = AcousticModel::<f64>::new(&tiny_gru(1), 140).unwrap();
    let x = ragged(&mut rng(141), T, 3, &LENGTHS, 0.0);
    let y = model.forward(&x, Mode::Eval).unwrap();
    let g = vec![0.5; y.data().len()];
    model.backward(&g).unwrap();
    let once: Vec<Vec<f64>> = model.params().iter().map(|p| p.grad().to_vec()).collect();
    model.forward(&x, Mode::Eval).unwrap();
    model.backward(&g).unwrap();
    for (p, o) in model.params().iter().zip(&once) {
        for (a, b) in p.grad().iter().zip(o) {
            assert!((a - 2.0 * b).abs() < 1e-12, "backward must accumulate");
        }
    }
    model.zero_grad();
    assert!(model
        .params()
        .iter()
        .all(|p| p.grad().iter().all(|&v| v == 0.0)));
}

#[test]
fn config_round_trips_through_json() {
    for config in [
        ModelConfig::default(),
        ModelConfig::Conv(ConvModelConfig::default()),
        tiny_gru(1),
    ] {
        let json = serde_json::to_string(&config).unwrap();
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
    let json = serde_json::to_string(&ModelConfig::default()).unwrap();
    assert!(json.contains("\"arch\":\"gru\""), "{json}");
}

#[test]
fn invalid_configs_are_rejected() {
    let c = GruModelConfig {
        hidden: 0,
        ..GruModelConfig::default()
    };
    assert!(matches!(
        AcousticModel::<f32>::new(&ModelConfig::Gru(c), 0),
        Err(NnError::InvalidConfig {
            field: "hidden",
            ..
        })
    ));
    let c = GruModelConfig {
        dropout: 1.5,
        ..GruModelConfig::default()
    };
    assert!(matches!(
        ModelConfig::Gru(c).validate(),
        Err(NnError::InvalidConfig {
            field: "dropout",
            ..
        })
    ));
    let c = ConvModelConfig {
        kernel: 4,
        ..ConvModelConfig::default()
    };
    assert!(matches!(
        ModelConfig::Conv(c).validate(),
        Err(NnError::InvalidConfig {
            field: "kernel",
            ..
        })
    ));
    let mut model = AcousticModel::<f32>::new(&ModelConfig::default(), 0).unwrap();
    let x = Batch::<f32>::zeros(1, 4, 40, vec![4]).unwrap();
    assert!(matches!(
        model.forward(&x, Mode::Eval),
        Err(NnError::ShapeMismatch {
            expected: 80,
            got: 40,
            ..
        })
    ));
    assert!(matches!(
        model.backward(&[0.0; 3]),
        Err(NnError::NoForwardCache { .. })
    ));
}

/// Empty batches, zero-length padded time and all-empty sequences go through without panicking and
/// give correctly shaped, all-zero outputs and gradients.
#[test]
fn empty_shapes() {
    for config in [tiny_gru(2), tiny_conv()] {
        let mut model = AcousticModel::<f32>::new(&config, 150).unwrap();
        for (b, t, lengths) in [(0, 5, vec![]), (2, 0, vec![0, 0]), (2, 4, vec![0, 0]), (1, 1, vec![1])] {
            let x = Batch::<f32>::zeros(b, t, 3, lengths.clone()).unwrap();
            let y = model.forward(&x, Mode::Train).unwrap();
            assert_eq!(y.shape(), (b, config.output_length(t), 4));
            assert_eq!(y.lengths(), model.output_lengths(&lengths).as_slice());
            let g = model.backward(&vec![1.0; y.data().len()]).unwrap();
            assert_eq!(g.len(), b * t * 3);
            if lengths.iter().all(|&l| l == 0) {
                assert!(y.data().iter().all(|&v| v == 0.0));
                assert!(g.iter().all(|&v| v == 0.0));
            }
        }
    }
}
