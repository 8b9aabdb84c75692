//! Shared helpers of the `nn_*` tests: ragged random batches with poisoned padding, and the
//! finite-difference gradient check every layer goes through.
#![allow(dead_code)]

use fastctc::nn::{Batch, Layer, Mode};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Central-difference step: small enough that the truncation error (~ step^2) is far below the
/// tolerance, large enough that f64 round-off in the loss (~ 1e-16 / step) is too.
pub const FD_STEP: f64 = 1e-5;
/// Allowed |analytic - numeric| relative to max(1, |analytic|, |numeric|): a wrong term in a backward
/// pass gives errors of order 1e-2 or more, the finite difference itself about 1e-9.
pub const FD_TOL: f64 = 1e-6;

pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

pub fn uniform(rng: &mut Xoshiro256PlusPlus, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * scale)
        .collect()
}

/// A `(B, T, C)` batch with uniform(-1, 1) values on valid frames and `poison` on padded ones.
pub fn ragged(
    rng: &mut Xoshiro256PlusPlus,
    t: usize,
    c: usize,
    lengths: &[usize],
    poison: f64,
) -> Batch<f64> {
    let b = lengths.len();
    let mut data = uniform(rng, b * t * c, 1.0);
    poison_padding(&mut data, t, c, lengths, poison);
    Batch::new(data, b, t, c, lengths.to_vec()).unwrap()
}

pub fn poison_padding(data: &mut [f64], t: usize, c: usize, lengths: &[usize], poison: f64) {
    for (b, &len) in lengths.iter().enumerate() {
        for x in &mut data[(b * t + len) * c..(b + 1) * t * c] {
            *x = poison;
        }
    }
}

/// Is frame `(b, t)` of a `(B, T, C)` buffer valid?
pub fn valid_rows(time: usize, lengths: &[usize]) -> impl Iterator<Item = (usize, bool)> + '_ {
    (0..lengths.len() * time).map(move |row| (row, row % time < lengths[row / time]))
}

/// `sum over valid output elements of w * y`: the scalar whose gradient `backward(w)` computes.
pub fn weighted_sum(y: &Batch<f64>, w: &[f64]) -> f64 {
    let c = y.channels();
    valid_rows(y.time(), y.lengths())
        .filter(|&(_, v)| v)
        .map(|(row, _)| {
            (row * c..(row + 1) * c)
                .map(|i| y.data()[i] * w[i])
                .sum::<f64>()
        })
        .sum()
}

fn close(analytic: f64, numeric: f64) -> bool {
    (analytic - numeric).abs() <= FD_TOL * 1f64.max(analytic.abs()).max(numeric.abs())
}

/// Checks `layer`'s backward pass on `x` (evaluation mode) against central finite differences of
/// `weighted_sum`, for every valid input element and every parameter element, and checks the
/// masking contract: padded outputs are zero, padded input gradients are zero, NaN in padded input
/// frames and in the padded part of the upstream gradient changes nothing valid.
pub fn check_layer(layer: &mut dyn Layer<f64>, x: &Batch<f64>, seed: u64) {
    let mut r = rng(seed);
    let y = layer.forward(x, Mode::Eval).unwrap();
    let (b, t_out, c_out) = y.shape();
    let mut w = uniform(&mut r, b * t_out * c_out, 1.0);
    poison_padding(&mut w, t_out, c_out, y.lengths(), f64::NAN);
    for (row, valid) in valid_rows(t_out, y.lengths()) {
        if !valid {
            assert!(
                y.data()[row * c_out..(row + 1) * c_out]
                    .iter()
                    .all(|&v| v == 0.0),
                "padded output row {row} not zero"
            );
        }
    }
    layer.zero_grad();
    let gin = layer.backward(&w).unwrap();
    let (_, t, c) = x.shape();
    assert_eq!(gin.len(), x.data().len());
    for (row, valid) in valid_rows(t, x.lengths()) {
        let g = &gin[row * c..(row + 1) * c];
        if valid {
            assert!(
                g.iter().all(|v| v.is_finite()),
                "non-finite input gradient at row {row}"
            );
        } else {
            assert!(
                g.iter().all(|&v| v == 0.0),
                "padded input row {row} has gradient {g:?}"
            );
        }
    }
    let mut param_grads = Vec::new();
    layer.visit_params(&mut |p| param_grads.push((p.name().to_string(), p.grad().to_vec())));
    for (name, g) in &param_grads {
        assert!(
            g.iter().all(|v| v.is_finite()),
            "non-finite gradient in {name}"
        );
    }

    // Padding invariance: different (finite) garbage in padded frames, identical valid outputs.
    let mut x2 = x.clone();
    poison_padding(x2.data_mut(), t, c, x.lengths(), 1e3);
    let y2 = layer.forward(&x2, Mode::Eval).unwrap();
    assert_eq!(y2.lengths(), y.lengths());
    assert_eq!(
        y2.data(),
        y.data(),
        "padded input values changed the output"
    );

    // Input gradient.
    for (row, valid) in valid_rows(t, x.lengths()) {
        if !valid {
            continue;
        }
        for (i, &analytic) in gin.iter().enumerate().take((row + 1) * c).skip(row * c) {
            let mut xp = x.clone();
            xp.data_mut()[i] += FD_STEP;
            let lp = weighted_sum(&layer.forward(&xp, Mode::Eval).unwrap(), &w);
            xp.data_mut()[i] -= 2.0 * FD_STEP;
            let lm = weighted_sum(&layer.forward(&xp, Mode::Eval).unwrap(), &w);
            let numeric = (lp - lm) / (2.0 * FD_STEP);
            assert!(
                close(analytic, numeric),
                "input grad [{i}] (row {row}): analytic {analytic} numeric {numeric} (seed {seed})"
            );
        }
    }

    // Parameter gradients.
    for (pi, (name, grad)) in param_grads.iter().enumerate() {
        for (j, &analytic) in grad.iter().enumerate() {
            let numeric = {
                let mut eval = |delta: f64| {
                    let mut k = 0;
                    layer.visit_params_mut(&mut |p| {
                        if k == pi {
                            p.value_mut()[j] += delta;
                        }
                        k += 1;
                    });
                    weighted_sum(&layer.forward(x, Mode::Eval).unwrap(), &w)
                };
                let lp = eval(FD_STEP);
                let lm = eval(-2.0 * FD_STEP);
                eval(FD_STEP);
                (lp - lm) / (2.0 * FD_STEP)
            };
            assert!(
                close(analytic, numeric),
                "{name}[{j}]: analytic {analytic} numeric {numeric} (seed {seed})"
            );
        }
    }
}
