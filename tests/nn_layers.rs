//! Every layer's backward pass against finite differences (f64), on ragged batches with poisoned
//! padding, plus forward passes against naive references.

mod nn_util;

use fastctc::nn::{
    conv_output_length, Activation, ActivationLayer, Batch, BiGru, Conv1d, Conv1dSpec, Dropout, Layer,
    LayerNorm, Linear, Mode, NnError, Param, SubframeLinear,
};
use nn_util::{check_layer, ragged, rng, uniform};

/// Lengths with a full-length sequence, a short one, and an empty one.
const LENGTHS: [usize; 4] = [7, 3, 0, 5];
const T: usize = 7;

fn params_of(layer: &dyn Layer<f64>) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    layer.visit_params(&mut |p| out.push(p.value().to_vec()));
    out
}

#[test]
fn linear_gradients() {
    for seed in 0..3 {
        let mut r = rng(seed);
        let mut layer = Linear::<f64>::new("lin", 4, 5, &mut r).unwrap();
        let x = ragged(&mut r, T, 4, &LENGTHS, f64::NAN);
        check_layer(&mut layer, &x, seed);
    }
}

#[test]
fn subframe_linear_gradients() {
    for (seed, factor) in [(10, 2), (11, 3), (12, 1)] {
        let mut r = rng(seed);
        let mut layer = SubframeLinear::<f64>::new("out", 4, 5, factor, &mut r).unwrap();
        // The offsets start at zero; random ones make a mix-up of shared and per-sub-frame parts visible.
        layer.visit_params_mut(&mut |p| {
            let fresh = uniform(&mut r, p.len(), 0.5);
            p.value_mut().copy_from_slice(&fresh);
        });
        let x = ragged(&mut r, T, 4, &LENGTHS, f64::NAN);
        check_layer(&mut layer, &x, seed);
    }
}

#[test]
fn linear_forward_matches_definition() {
    let mut r = rng(1);
    let mut layer = Linear::<f64>::new("lin", 3, 2, &mut r).unwrap();
    let x = ragged(&mut r, 2, 3, &[2], 0.0);
    let y = layer.forward(&x, Mode::Eval).unwrap();
    let p = params_of(&layer);
    for t in 0..2 {
        for o in 0..2 {
            let want = p[1][o] + (0..3).map(|i| p[0][o * 3 + i] * x.data()[t * 3 + i]).sum::<f64>();
            assert!((y.data()[t * 2 + o] - want).abs() < 1e-14);
        }
    }
}

fn conv_specs() -> Vec<Conv1dSpec> {
    let s = |in_channels, out_channels, kernel, stride, padding, dilation| Conv1dSpec {
        in_channels,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
    };
    vec![
        s(3, 4, 3, 2, 1, 1),
        s(3, 2, 3, 1, 2, 2),
        s(2, 3, 1, 1, 0, 1),
        s(2, 2, 5, 3, 0, 1),
        s(2, 3, 2, 1, 1, 1),
    ]
}

#[test]
fn conv_gradients() {
    for (i, spec) in conv_specs().into_iter().enumerate() {
        let seed = 10 + i as u64;
        let mut r = rng(seed);
        let mut layer = Conv1d::<f64>::new("conv", spec, &mut r).unwrap();
        let x = ragged(&mut r, T, spec.in_channels, &LENGTHS, f64::NAN);
        check_layer(&mut layer, &x, seed);
    }
}

#[test]
fn conv_forward_matches_direct_convolution() {
    for (i, spec) in conv_specs().into_iter().enumerate() {
        let mut r = rng(20 + i as u64);
        let mut layer = Conv1d::<f64>::new("conv", spec, &mut r).unwrap();
        let x = ragged(&mut r, T, spec.in_channels, &LENGTHS, f64::NAN);
        let y = layer.forward(&x, Mode::Eval).unwrap();
        let p = params_of(&layer);
        let (w, bias) = (&p[0], &p[1]);
        let (ci_n, co_n, k) = (spec.in_channels, spec.out_channels, spec.kernel);
        let t_out = y.time();
        for (b, &len) in LENGTHS.iter().enumerate() {
            assert_eq!(y.lengths()[b], conv_output_length(len, &spec));
            for to in 0..y.lengths()[b] {
                for co in 0..co_n {
                    let mut acc = bias[co];
                    for ci in 0..ci_n {
                        for j in 0..k {
                            let pos = (to * spec.stride + j * spec.dilation) as isize - spec.padding as isize;
                            if pos >= 0 && (pos as usize) < len {
                                acc += w[(co * ci_n + ci) * k + j]
                                    * x.data()[(b * T + pos as usize) * ci_n + ci];
                            }
                        }
                    }
                    let got = y.data()[(b * t_out + to) * co_n + co];
                    assert!((got - acc).abs() < 1e-12, "spec {spec:?} b {b} t {to} co {co}: {got} vs {acc}");
                }
            }
        }
    }
}

#[test]
fn conv_output_lengths_follow_pytorch() {
    let spec = |kernel, stride, padding, dilation| Conv1dSpec {
        in_channels: 1,
        out_channels: 1,
        kernel,
        stride,
        padding,
        dilation,
    };
    // floor((L + 2p - d(k-1) - 1) / s) + 1, values from torch.nn.Conv1d.
    assert_eq!(conv_output_length(300, &spec(3, 2, 1, 1)), 150);
    assert_eq!(conv_output_length(150, &spec(3, 2, 1, 1)), 75);
    assert_eq!(conv_output_length(301, &spec(3, 2, 1, 1)), 151);
    assert_eq!(conv_output_length(300, &spec(3, 2, 0, 1)), 149);
    assert_eq!(conv_output_length(10, &spec(3, 1, 0, 2)), 6);
    assert_eq!(conv_output_length(1, &spec(3, 2, 0, 1)), 0);
    assert_eq!(conv_output_length(0, &spec(3, 2, 1, 1)), 0);
    assert_eq!(conv_output_length(1, &spec(3, 2, 1, 1)), 1);
}

#[test]
fn activation_gradients() {
    let kinds = [
        Activation::Relu,
        Activation::Gelu,
        Activation::Silu,
        Activation::Tanh,
        Activation::HardTanh { min: -0.5, max: 0.5 },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let seed = 30 + i as u64;
        let mut r = rng(seed);
        let mut layer = ActivationLayer::<f64>::new(kind);
        let x = ragged(&mut r, T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut layer, &x, seed);
    }
}

#[test]
fn activation_values() {
    let gelu = Activation::Gelu;
    // PyTorch's tanh-form GELU evaluated independently with Python's `math` module:
    // 0.5*x*(1+math.tanh(math.sqrt(2/math.pi)*(x+0.044715*x**3))).
    assert!((gelu.apply(1.0f64) - 0.841_191_990_608_276_8).abs() < 1e-13);
    assert!((gelu.apply(-2.0f64) - (-0.045_402_305_912_224_94)).abs() < 1e-13);
    assert_eq!(Activation::Relu.apply(-3.0f64), 0.0);
    assert_eq!(Activation::HardTanh { min: 0.0, max: 20.0 }.apply(25.0f64), 20.0);
    assert!((Activation::Silu.apply(1.0f64) - 0.731_058_578_630_004_9).abs() < 1e-12);
}

#[test]
fn layer_norm_gradients() {
    for seed in 40..43 {
        let mut r = rng(seed);
        let mut layer = LayerNorm::<f64>::new("ln", 5, 1e-5, &mut r).unwrap();
        // Non-trivial gain and bias, so their gradients and the gain's role in dx are both exercised.
        layer.visit_params_mut(&mut |p| {
            let v = uniform(&mut r, p.len(), 1.0);
            p.value_mut().copy_from_slice(&v);
        });
        let x = ragged(&mut r, T, 5, &LENGTHS, f64::NAN);
        check_layer(&mut layer, &x, seed);
    }
}

#[test]
fn layer_norm_normalises() {
    let mut r = rng(44);
    let mut layer = LayerNorm::<f64>::new("ln", 6, 1e-5, &mut r).unwrap();
    let x = ragged(&mut r, 3, 6, &[3], 0.0);
    let y = layer.forward(&x, Mode::Eval).unwrap();
    for row in y.data().chunks(6) {
        let mean = row.iter().sum::<f64>() / 6.0;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 6.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-3, "mean {mean} var {var}");
    }
}

/// Longest first: the GRU then restricts each step's product to the sequences still running.
const SORTED: [usize; 4] = [7, 5, 3, 0];

#[test]
fn gru_gradients() {
    for seed in 50..53 {
        for lengths in [LENGTHS, SORTED] {
            let mut r = rng(seed);
            let mut layer = BiGru::<f64>::new("rnn", 3, 4, &mut r).unwrap();
            let x = ragged(&mut r, T, 3, &lengths, f64::NAN);
            check_layer(&mut layer, &x, seed);
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One direction of PyTorch's GRU on one unpadded sequence, straight from the equations.
fn naive_gru(
    x: &[Vec<f64>],
    w_ih: &[f64],
    w_hh: &[f64],
    b_ih: &[f64],
    b_hh: &[f64],
    h: usize,
) -> Vec<Vec<f64>> {
    let i_n = x.first().map_or(0, Vec::len);
    let mut state = vec![0.0; h];
    let mut out = Vec::new();
    for xt in x {
        let gi: Vec<f64> =
            (0..3 * h).map(|g| b_ih[g] + (0..i_n).map(|i| w_ih[g * i_n + i] * xt[i]).sum::<f64>()).collect();
        let gh: Vec<f64> =
            (0..3 * h).map(|g| b_hh[g] + (0..h).map(|k| w_hh[g * h + k] * state[k]).sum::<f64>()).collect();
        let new: Vec<f64> = (0..h)
            .map(|k| {
                let r = sigmoid(gi[k] + gh[k]);
                let z = sigmoid(gi[h + k] + gh[h + k]);
                let n = (gi[2 * h + k] + r * gh[2 * h + k]).tanh();
                (1.0 - z) * n + z * state[k]
            })
            .collect();
        state = new.clone();
        out.push(new);
    }
    out
}

#[test]
fn gru_forward_matches_pytorch_equations_per_sequence() {
    for lengths in [LENGTHS, SORTED] {
        gru_forward_check(&lengths);
    }
}

fn gru_forward_check(lengths: &[usize]) {
    let (i_n, h) = (3, 4);
    let mut r = rng(55);
    let mut layer = BiGru::<f64>::new("rnn", i_n, h, &mut r).unwrap();
    let x = ragged(&mut r, T, i_n, lengths, f64::NAN);
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.channels(), 2 * h);
    let p = params_of(&layer);
    for (b, &len) in lengths.iter().enumerate() {
        let seq: Vec<Vec<f64>> =
            (0..len).map(|t| x.data()[(b * T + t) * i_n..(b * T + t + 1) * i_n].to_vec()).collect();
        let fwd = naive_gru(&seq, &p[0], &p[1], &p[2], &p[3], h);
        let rev_in: Vec<Vec<f64>> = seq.iter().rev().cloned().collect();
        let mut rev = naive_gru(&rev_in, &p[4], &p[5], &p[6], &p[7], h);
        rev.reverse();
        for t in 0..len {
            let row = &y.data()[(b * T + t) * 2 * h..(b * T + t + 1) * 2 * h];
            for k in 0..h {
                assert!((row[k] - fwd[t][k]).abs() < 1e-13, "fwd b {b} t {t} k {k}");
                assert!((row[h + k] - rev[t][k]).abs() < 1e-13, "rev b {b} t {t} k {k}");
            }
        }
    }
    let mut names = Vec::new();
    layer.visit_params(&mut |p: &Param<f64>| names.push((p.name().to_string(), p.shape().to_vec())));
    assert_eq!(names[0], ("rnn.weight_ih_l0".to_string(), vec![12, 3]));
    assert_eq!(names[1], ("rnn.weight_hh_l0".to_string(), vec![12, 4]));
    assert_eq!(names[7], ("rnn.bias_hh_l0_reverse".to_string(), vec![12]));
}

#[test]
fn dropout_train_and_eval() {
    let mut r = rng(60);
    let (t, c) = (50, 40);
    let lengths = [50, 20];
    let x = ragged(&mut r, t, c, &lengths, f64::NAN);
    let mut d = Dropout::<f64>::new(0.25, 7).unwrap();
    let y = d.forward(&x, Mode::Eval).unwrap();
    let mut x0 = x.clone();
    x0.zero_padding();
    assert_eq!(y.data(), x0.data(), "eval mode must be the identity");

    let y = d.forward(&x, Mode::Train).unwrap();
    let mut dropped = 0;
    let mut valid = 0;
    for (i, (&yi, &xi)) in y.data().iter().zip(x0.data()).enumerate() {
        let row = i / c;
        if row % t >= lengths[row / t] {
            assert_eq!(yi, 0.0);
            continue;
        }
        valid += 1;
        if yi == 0.0 {
            dropped += 1;
        } else {
            assert!((yi - xi / 0.75).abs() < 1e-15, "survivors are scaled by 1/(1-p)");
        }
    }
    let frac = dropped as f64 / valid as f64;
    assert!((frac - 0.25).abs() < 0.03, "dropped fraction {frac}");

    let g = uniform(&mut r, y.data().len(), 1.0);
    let gin = d.backward(&g).unwrap();
    for i in 0..gin.len() {
        let row = i / c;
        let expect = if row % t >= lengths[row / t] || y.data()[i] == 0.0 { 0.0 } else { g[i] / 0.75 };
        assert!((gin[i] - expect).abs() < 1e-15);
    }

    // Same seed, same masks; a different seed, different masks.
    let mut d2 = Dropout::<f64>::new(0.25, 7).unwrap();
    assert_eq!(d2.forward(&x, Mode::Train).unwrap().data(), y.data());
    let mut d3 = Dropout::<f64>::new(0.25, 8).unwrap();
    assert_ne!(d3.forward(&x, Mode::Train).unwrap().data(), y.data());
    assert!(matches!(Dropout::<f64>::new(1.0, 0), Err(NnError::InvalidConfig { .. })));
}

#[test]
fn errors_are_typed() {
    let mut r = rng(70);
    assert!(matches!(
        Batch::<f32>::new(vec![0.0; 5], 1, 2, 3, vec![2]),
        Err(NnError::ShapeMismatch { expected: 6, got: 5, .. })
    ));
    assert!(matches!(
        Batch::<f32>::new(vec![0.0; 6], 1, 2, 3, vec![3]),
        Err(NnError::LengthTooLong { index: 0, length: 3, max: 2 })
    ));
    assert!(matches!(Batch::<f32>::new(vec![], 1, 0, 3, vec![]), Err(NnError::ShapeMismatch { .. })));
    let mut lin = Linear::<f32>::new("l", 3, 2, &mut r).unwrap();
    assert!(matches!(lin.backward(&[0.0; 4]), Err(NnError::NoForwardCache { .. })));
    let x = Batch::<f32>::zeros(1, 2, 4, vec![2]).unwrap();
    assert!(matches!(lin.forward(&x, Mode::Eval), Err(NnError::ShapeMismatch { expected: 3, got: 4, .. })));
    let x = Batch::<f32>::zeros(1, 2, 3, vec![2]).unwrap();
    lin.forward(&x, Mode::Eval).unwrap();
    assert!(matches!(lin.backward(&[0.0; 3]), Err(NnError::ShapeMismatch { expected: 4, got: 3, .. })));
    let bad = Conv1dSpec { in_channels: 1, out_channels: 1, kernel: 3, stride: 0, padding: 0, dilation: 1 };
    assert!(matches!(
        Conv1d::<f32>::new("c", bad, &mut r),
        Err(NnError::InvalidConfig { field: "stride", .. })
    ));
    assert!(BiGru::<f32>::new("g", 0, 3, &mut r).is_err());
    let huge = Conv1dSpec {
        in_channels: 1,
        out_channels: 1,
        kernel: 3,
        stride: 1,
        padding: usize::MAX,
        dilation: 1,
    };
    assert!(matches!(
        Conv1d::<f32>::new("c", huge, &mut r),
        Err(NnError::InvalidConfig { field: "padding", .. })
    ));
    let huge = Conv1dSpec {
        in_channels: 1,
        out_channels: 1,
        kernel: 3,
        stride: 1,
        padding: 0,
        dilation: usize::MAX,
    };
    assert!(matches!(
        Conv1d::<f32>::new("c", huge, &mut r),
        Err(NnError::InvalidConfig { field: "dilation", .. })
    ));
    let e = NnError::LengthTooLong { index: 2, length: 9, max: 4 };
    assert!(e.to_string().contains("sequence 2") && e.to_string().contains('9'));
}

#[test]
fn f32_layers_agree_with_f64() {
    // The same GRU built from the same seed in both precisions; hidden sizes below, at and across the
    // f32 kernel's 8 lanes, so its SIMD body and scalar tail are both compared with the f64 reference.
    for hidden in [5, 8, 11, 16] {
        let lengths = [6, 4];
        let mut r64 = rng(80);
        let mut g64 = BiGru::<f64>::new("g", 3, hidden, &mut r64).unwrap();
        let mut r32 = rng(80);
        let mut g32 = BiGru::<f32>::new("g", 3, hidden, &mut r32).unwrap();
        let x64 = ragged(&mut rng(81), 6, 3, &lengths, 0.0);
        let x32 =
            Batch::new(x64.data().iter().map(|&v| v as f32).collect(), 2, 6, 3, lengths.to_vec()).unwrap();
        let y64 = g64.forward(&x64, Mode::Eval).unwrap();
        let y32 = g32.forward(&x32, Mode::Eval).unwrap();
        for (a, b) in y64.data().iter().zip(y32.data()) {
            assert!((a - *b as f64).abs() < 1e-5);
        }
        let w: Vec<f64> = uniform(&mut rng(82), y64.data().len(), 1.0);
        let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let gi64 = g64.backward(&w).unwrap();
        let gi32 = g32.backward(&w32).unwrap();
        for (a, b) in gi64.iter().zip(&gi32) {
            assert!((a - *b as f64).abs() < 1e-4, "hidden {hidden}: {a} vs {b}");
        }
        let mut p64 = Vec::new();
        g64.visit_params(&mut |p| p64.extend_from_slice(p.grad()));
        let mut p32 = Vec::new();
        g32.visit_params(&mut |p| p32.extend_from_slice(p.grad()));
        for (a, b) in p64.iter().zip(&p32) {
            assert!((a - *b as f64).abs() < 1e-4, "hidden {hidden}: parameter gradient {a} vs {b}");
        }
    }
}

#[test]
fn gelu_f32_kernel_matches_f64() {
    // 2 x 5 x 13 = 130 elements: sixteen 8-lane blocks and a 2-element scalar tail, over [-6, 6].
    let lengths = [5, 4];
    let x64 = ragged(&mut rng(90), 5, 13, &lengths, 0.0);
    let scaled: Vec<f64> = x64.data().iter().map(|v| v * 6.0).collect();
    let x64 = Batch::new(scaled, 2, 5, 13, lengths.to_vec()).unwrap();
    let x32 = Batch::new(x64.data().iter().map(|&v| v as f32).collect(), 2, 5, 13, lengths.to_vec()).unwrap();
    let mut a64 = ActivationLayer::<f64>::new(Activation::Gelu);
    let mut a32 = ActivationLayer::<f32>::new(Activation::Gelu);
    let y64 = a64.forward(&x64, Mode::Eval).unwrap();
    let y32 = a32.forward(&x32, Mode::Eval).unwrap();
    for (a, b) in y64.data().iter().zip(y32.data()) {
        assert!((a - *b as f64).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
    let g64 = uniform(&mut rng(91), y64.data().len(), 1.0);
    let g32: Vec<f32> = g64.iter().map(|&v| v as f32).collect();
    let d64 = a64.backward(&g64).unwrap();
    let d32 = a32.backward(&g32).unwrap();
    for (a, b) in d64.iter().zip(&d32) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
}
