//! The GRU and the strided convolution against PyTorch (float64), outputs and every gradient.
//! Fixture: `tests/nn_fixtures/golden.json`, written by `scripts/nn_golden.py` (packed sequences for the
//! GRU, each sequence convolved alone for the convolution; loss `sum(w * y)` over valid frames).

use fastctc::nn::{Batch, BiGru, Conv1d, Conv1dSpec, Layer, Mode};
use rand::SeedableRng;
use serde_json::Value;

/// PyTorch and we sum in different orders; in f64 that leaves differences around 1e-15.
const TOL: f64 = 1e-12;

fn fixture() -> Value {
    serde_json::from_str(include_str!("nn_fixtures/golden.json")).expect("fixture parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer") as usize).collect()
}

fn n(v: &Value, key: &str) -> usize {
    v[key].as_u64().expect("integer") as usize
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOL * w.abs().max(1.0), "{what}[{i}]: got {g}, PyTorch {w}");
    }
}

/// Loads PyTorch's values into the layer's parameters (names after the first `.`), runs forward and
/// backward, and compares output, input gradient and parameter gradients.
fn run(layer: &mut dyn Layer<f64>, case: &Value, x: Batch<f64>, out_lengths: &[usize]) {
    let mut loaded = 0;
    layer.visit_params_mut(&mut |p| {
        let short = p.name().split_once('.').expect("prefixed name").1.to_string();
        let values = floats(&case["params"][&short]);
        p.value_mut().copy_from_slice(&values);
        loaded += 1;
    });
    assert_eq!(loaded, case["params"].as_object().expect("params").len());
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.lengths(), out_lengths);
    assert_close("output", y.data(), &floats(&case["y"]));
    layer.zero_grad();
    let dx = layer.backward(&floats(&case["w"])).unwrap();
    assert_close("input gradient", &dx, &floats(&case["dx"]));
    layer.visit_params(&mut |p| {
        let short = p.name().split_once('.').expect("prefixed name").1;
        assert_close(p.name(), p.grad(), &floats(&case["grads"][short]));
    });
}

#[test]
fn bigru_matches_pytorch_packed_gru() {
    let f = fixture();
    let c = &f["gru"];
    let (b, t, i, h) = (n(c, "batch"), n(c, "time"), n(c, "input"), n(c, "hidden"));
    let lengths = usizes(&c["lengths"]);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
    let mut gru = BiGru::<f64>::new("rnn", i, h, &mut rng).unwrap();
    let x = Batch::new(floats(&c["x"]), b, t, i, lengths.clone()).unwrap();
    run(&mut gru, c, x, &lengths);
}

#[test]
fn conv1d_matches_pytorch_per_sequence() {
    let f = fixture();
    let c = &f["conv"];
    let spec = Conv1dSpec {
        in_channels: n(c, "in_channels"),
        out_channels: n(c, "out_channels"),
        kernel: n(c, "kernel"),
        stride: n(c, "stride"),
        padding: n(c, "padding"),
        dilation: 1,
    };
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
    let mut conv = Conv1d::<f64>::new("conv", spec, &mut rng).unwrap();
    let x = Batch::new(floats(&c["x"]), n(c, "batch"), n(c, "time"), spec.in_channels, usizes(&c["lengths"]))
        .unwrap();
    run(&mut conv, c, x, &usizes(&c["lengths_out"]));
}
