//! Optimizers over named parameters: Adam / AdamW, gradient clipping by global norm, learning-rate
//! schedules, and an exponential moving average of the weights for evaluation ([`Ema`]).
//!
//! Parameters are the [`Param`]s of a model, passed as `&mut [&mut Param<F>]` in a fixed order (e.g.
//! `model.params_mut()`); the optimizer keys its state by parameter name and checks the names and
//! sizes on every step, so a state restored from a checkpoint cannot silently be applied to the wrong
//! tensors.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::nn::{NnFloat, Param};

/// What can go wrong in an optimizer.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum OptimError {
    /// A hyperparameter is out of range.
    InvalidHyperparameter {
        /// Its name.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What it must satisfy.
        requirement: &'static str,
    },
    /// The parameters passed do not match the optimizer's state (count, names or sizes).
    StateMismatch {
        /// Position of the first mismatching parameter.
        index: usize,
        /// Name (and size) the state expects, or `"<none>"`.
        expected: String,
        /// Name (and size) given, or `"<none>"`.
        got: String,
    },
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHyperparameter { field, value, requirement } => {
                write!(f, "optimizer setting `{field}` = {value}: must be {requirement}")
            }
            Self::StateMismatch { index, expected, got } => {
                write!(f, "optimizer state mismatch at parameter {index}: expected {expected}, got {got}")
            }
        }
    }
}

impl std::error::Error for OptimError {}

fn check(field: &'static str, value: f64, ok: bool, requirement: &'static str) -> Result<(), OptimError> {
    if ok {
        Ok(())
    } else {
        Err(OptimError::InvalidHyperparameter { field, value, requirement })
    }
}

/// Adam's hyperparameters (the learning rate comes from the schedule at each step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Decay of the first-moment average, in `[0, 1)` (PyTorch default 0.9).
    pub beta1: f64,
    /// Decay of the second-moment average, in `[0, 1)` (PyTorch default 0.999).
    pub beta2: f64,
    /// Added to `sqrt(v_hat)` in the denominator, `> 0` (PyTorch default 1e-8).
    pub eps: f64,
    /// Weight decay coefficient, `>= 0`.
    pub weight_decay: f64,
    /// `true`: AdamW, decay applied to the weights directly (`p -= lr * wd * p`, before the Adam
    /// update); `false`: classic Adam, `wd * p` added to the gradient (L2 penalty).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    /// AdamW with PyTorch's `AdamW` defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: true }
    }
}

impl AdamConfig {
    /// Checks the ranges documented on each field.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), OptimError> {
        check("beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "in [0, 1)")?;
        check("beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "in [0, 1)")?;
        check("eps", self.eps, self.eps > 0.0 && self.eps.is_finite(), "positive and finite")?;
        check(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            "non-negative and finite",
        )
    }
}

/// The moments of one parameter, by name: `m` and `v` have the parameter's length and layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moments<F> {
    /// The parameter's name.
    pub name: String,
    /// First-moment running average, flat like the parameter.
    pub m: Vec<F>,
    /// Second-moment running average (of squared gradients), flat like the parameter.
    pub v: Vec<F>,
}

/// Everything Adam needs to resume: the number of steps taken and the moments of every parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamState<F> {
    /// Steps taken so far (the bias corrections use `step`).
    pub step: u64,
    /// One entry per parameter, in the order the parameters are passed to [`Adam::step`]; empty
    /// before the first step.
    pub moments: Vec<Moments<F>>,
}

/// Adam / AdamW with bias correction, exactly PyTorch's update:
///
/// ```text
/// t += 1
/// g = grad (+ wd * p when not decoupled)
/// p -= lr * wd * p                       (when decoupled)
/// m = beta1 m + (1 - beta1) g
/// v = beta2 v + (1 - beta2) g^2
/// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
#[derive(Clone, Debug)]
pub struct Adam<F> {
    config: AdamConfig,
    state: AdamState<F>,
}

impl<F: NnFloat> Adam<F> {
    /// An optimizer with no state yet (moments are created at the first step, sized from the
    /// parameters).
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] from [`AdamConfig::validate`].
    pub fn new(config: AdamConfig) -> Result<Self, OptimError> {
        config.validate()?;
        Ok(Self { config, state: AdamState { step: 0, moments: Vec::new() } })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.state.step
    }

    /// The state to save for resuming (moments by name, flat).
    pub fn state(&self) -> &AdamState<F> {
        &self.state
    }

    /// Replaces the state with one saved earlier; it is checked against the parameters at the next
    /// [`Adam::step`].
    ///
    /// # Errors
    /// [`OptimError::StateMismatch`] if an entry's `m` and `v` differ in length.
    pub fn load_state(&mut self, state: AdamState<F>) -> Result<(), OptimError> {
        if let Some((index, e)) = state.moments.iter().enumerate().find(|(_, e)| e.m.len() != e.v.len()) {
            return Err(OptimError::StateMismatch {
                index,
                expected: format!("{} with m and v of equal length ({})", e.name, e.m.len()),
                got: format!("v of length {}", e.v.len()),
            });
        }
        self.state = state;
        Ok(())
    }

    /// One update of every parameter with learning rate `lr`, from the gradients accumulated in them.
    /// Gradients are left as they are (zero them before the next backward pass).
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] if `lr` is negative or not finite;
    /// [`OptimError::StateMismatch`] if the parameters are not those of earlier steps (count, names,
    /// sizes). On error nothing is changed.
    pub fn step(&mut self, params: &mut [&mut Param<F>], lr: f64) -> Result<(), OptimError> {
        check("lr", lr, lr >= 0.0 && lr.is_finite(), "non-negative and finite")?;
        if self.state.moments.is_empty() && self.state.step == 0 {
            self.state.moments = params
                .iter()
                .map(|p| Moments {
                    name: p.name().to_string(),
                    m: vec![F::ZERO; p.len()],
                    v: vec![F::ZERO; p.len()],
                })
                .collect();
        }
        self.check_params(params)?;
        self.state.step += 1;
        let t = self.state.step as f64;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powf(t);
        let bc2 = 1.0 - c.beta2.powf(t);
        let step_size = F::from_f64(lr / bc1);
        let inv_sqrt_bc2 = F::from_f64(1.0 / bc2.sqrt());
        let (b1, b2) = (F::from_f64(c.beta1), F::from_f64(c.beta2));
        let (one_b1, one_b2) = (F::from_f64(1.0 - c.beta1), F::from_f64(1.0 - c.beta2));
        let eps = F::from_f64(c.eps);
        let wd = F::from_f64(c.weight_decay);
        let decay = F::from_f64(1.0 - lr * c.weight_decay);
        for (p, mom) in params.iter_mut().zip(&mut self.state.moments) {
            let (value, grad) = p.value_and_grad_mut();
            for (((w, &g), m), v) in value.iter_mut().zip(grad).zip(&mut mom.m).zip(&mut mom.v) {
                let g = if c.decoupled {
                    *w *= decay;
                    g
                } else {
                    g + wd * *w
                };
                *m = b1 * *m + one_b1 * g;
                *v = b2 * *v + one_b2 * g * g;
                *w -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        }
        Ok(())
    }

    fn check_params(&self, params: &[&mut Param<F>]) -> Result<(), OptimError> {
        let n = params.len().max(self.state.moments.len());
        for index in 0..n {
            let expected = self.state.moments.get(index);
            let got = params.get(index);
            let ok =
                matches!((expected, got), (Some(e), Some(g)) if e.name == g.name() && e.m.len() == g.len());
            if !ok {
                return Err(OptimError::StateMismatch {
                    index,
                    expected: expected
                        .map_or("<none>".into(), |e| format!("{} ({} elements)", e.name, e.m.len())),
                    got: got.map_or("<none>".into(), |g| format!("{} ({} elements)", g.name(), g.len())),
                });
            }
        }
        Ok(())
    }
}

/// An exponential moving average (EMA) of a model's parameters, for evaluation and for the saved
/// model, while training goes on with the raw weights.
///
/// The average is kept in one flat buffer, the parameters concatenated in the order they are passed
/// (each flat row-major, as in [`Param::value`]), and updated after every applied optimizer step with
/// a bias-corrected rate:
///
/// ```text
/// t += 1
/// r_t = (1 - decay) / (1 - decay^t)
/// avg = avg + r_t * (p - avg)
/// ```
///
/// This equals Adam-style bias correction of an average started at zero: after `t` updates `avg` is
/// `sum_k decay^(t-k) p_k / sum_k decay^(t-k)` over the weights `p_1 .. p_t` after each step, so the
/// initial weights never enter it (`r_1 = 1`), the first steps are averaged uniformly, and from about
/// `1 / (1 - decay)` steps on it is the plain EMA with that time constant. Stored this way (rather
/// than as the uncorrected sum) the buffer always holds usable weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Ema<F> {
    decay: f64,
    updates: u64,
    /// Name and element count of each parameter, in buffer order.
    layout: Vec<(String, usize)>,
    values: Vec<F>,
}

impl<F: NnFloat> Ema<F> {
    /// An average of the given parameters (their current values fill the buffer, but the first
    /// [`Ema::update`] replaces them entirely).
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] if `decay` is not in `[0, 1)`.
    pub fn new(decay: f64, params: &[&Param<F>]) -> Result<Self, OptimError> {
        check("ema_decay", decay, (0.0..1.0).contains(&decay), "in [0, 1)")?;
        Ok(Self {
            decay,
            updates: 0,
            layout: params.iter().map(|p| (p.name().to_string(), p.len())).collect(),
            values: params.iter().flat_map(|p| p.value().iter().copied()).collect(),
        })
    }

    /// An average restored from a checkpoint: `layout` is (name, element count) per parameter in
    /// buffer order, `values` the concatenated averages, `updates` the updates already made.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] if `decay` is not in `[0, 1)`;
    /// [`OptimError::StateMismatch`] if `values` does not hold exactly the elements of `layout`.
    pub fn from_parts(
        decay: f64,
        updates: u64,
        layout: Vec<(String, usize)>,
        values: Vec<F>,
    ) -> Result<Self, OptimError> {
        check("ema_decay", decay, (0.0..1.0).contains(&decay), "in [0, 1)")?;
        let n: usize = layout.iter().map(|(_, len)| len).sum();
        if n != values.len() {
            return Err(OptimError::StateMismatch {
                index: layout.len(),
                expected: format!("{n} averaged elements in all"),
                got: format!("{} elements", values.len()),
            });
        }
        Ok(Self { decay, updates, layout, values })
    }

    /// The decay per update.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Updates made so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// (name, element count) of each parameter, in buffer order.
    pub fn layout(&self) -> &[(String, usize)] {
        &self.layout
    }

    /// The averaged values, all parameters concatenated in [`Ema::layout`] order.
    pub fn values(&self) -> &[F] {
        &self.values
    }

    /// The averaged values of each parameter, in [`Ema::layout`] order.
    pub fn split(&self) -> impl Iterator<Item = (&str, &[F])> + '_ {
        let mut offset = 0;
        self.layout.iter().map(move |(name, len)| {
            let part = &self.values[offset..offset + len];
            offset += len;
            (name.as_str(), part)
        })
    }

    /// The rate `r_t` the next update will use: `(1 - decay) / (1 - decay^t)` with `t` the update's
    /// 1-based number (so 1 for the first).
    pub fn next_rate(&self) -> f64 {
        let t = self.updates.saturating_add(1).min(i32::MAX as u64) as i32;
        let bias = 1.0 - self.decay.powi(t);
        if bias > 0.0 {
            (1.0 - self.decay) / bias
        } else {
            1.0
        }
    }

    /// Folds the parameters' current values into the average (one pass over the buffer).
    ///
    /// # Errors
    /// [`OptimError::StateMismatch`] if the parameters are not those the average was made of (count,
    /// names, sizes); nothing is changed then.
    pub fn update(&mut self, params: &[&mut Param<F>]) -> Result<(), OptimError> {
        self.check_params(params.iter().map(|p| &**p))?;
        let rate = F::from_f64(self.next_rate());
        let mut rest = self.values.as_mut_slice();
        for p in params {
            let (avg, tail) = rest.split_at_mut(p.len());
            for (a, &w) in avg.iter_mut().zip(p.value()) {
                *a += rate * (w - *a);
            }
            rest = tail;
        }
        self.updates += 1;
        Ok(())
    }

    /// Exchanges the parameters' values with the averaged ones: called once, the parameters hold the
    /// average (e.g. for evaluation or saving) and the average holds the raw weights; called again, both
    /// are back. An exact exchange, so training resumes bit for bit.
    ///
    /// # Errors
    /// [`OptimError::StateMismatch`] as in [`Ema::update`]; nothing is changed then.
    pub fn swap(&mut self, params: &mut [&mut Param<F>]) -> Result<(), OptimError> {
        self.check_params(params.iter().map(|p| &**p))?;
        let mut rest = self.values.as_mut_slice();
        for p in params.iter_mut() {
            let (avg, tail) = rest.split_at_mut(p.len());
            p.value_mut().swap_with_slice(avg);
            rest = tail;
        }
        Ok(())
    }

    fn check_params<'a>(&self, params: impl ExactSizeIterator<Item = &'a Param<F>>) -> Result<(), OptimError>
    where
        F: 'a,
    {
        let params: Vec<&Param<F>> = params.collect();
        let n = params.len().max(self.layout.len());
        for index in 0..n {
            let expected = self.layout.get(index);
            let got = params.get(index);
            let ok = matches!((expected, got), (Some((name, len)), Some(g)) if name == g.name() && *len == g.len());
            if !ok {
                return Err(OptimError::StateMismatch {
                    index,
                    expected: expected
                        .map_or("<none>".into(), |(name, len)| format!("{name} ({len} elements)")),
                    got: got.map_or("<none>".into(), |g| format!("{} ({} elements)", g.name(), g.len())),
                });
            }
        }
        Ok(())
    }
}

/// The global L2 norm of all gradients, `sqrt(sum of grad^2)`, accumulated in `f64`.
pub fn grad_norm<F: NnFloat>(params: &[&mut Param<F>]) -> f64 {
    params
        .iter()
        .flat_map(|p| p.grad().iter())
        .map(|&g| {
            let g = g.to_f64();
            g * g
        })
        .sum::<f64>()
        .sqrt()
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1), and returns the norm *before*
/// clipping.
///
/// A non-finite norm (an inf or NaN gradient) is returned as is and the gradients are left untouched:
/// the caller should skip the optimizer step (and typically zero the gradients).
///
/// # Errors
/// [`OptimError::InvalidHyperparameter`] if `max_norm` is not positive and finite.
pub fn clip_grad_norm<F: NnFloat>(params: &mut [&mut Param<F>], max_norm: f64) -> Result<f64, OptimError> {
    check("max_norm", max_norm, max_norm > 0.0 && max_norm.is_finite(), "positive and finite")?;
    let norm = grad_norm(params);
    if norm.is_finite() {
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            let f = F::from_f64(factor);
            for p in params.iter_mut() {
                for g in p.grad_mut() {
                    *g *= f;
                }
            }
        }
    }
    Ok(norm)
}

/// A learning-rate schedule over optimizer steps `0, 1, 2, ...` (the step about to be taken).
///
/// Every variant with a warm-up rises linearly `peak_lr * (step + 1) / warmup_steps` for
/// `step < warmup_steps` (so the first step already moves, and step `warmup_steps - 1` reaches the peak),
/// then decays.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` at every step.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Warm-up, then half a cosine from `peak_lr` down to `min_lr` at `total_steps`, `min_lr` after.
    WarmupCosine {
        /// Learning rate at the end of warm-up.
        peak_lr: f64,
        /// Warm-up length, in steps.
        warmup_steps: u64,
        /// Step at which the cosine reaches `min_lr` (`> warmup_steps`).
        total_steps: u64,
        /// Floor of the decay.
        min_lr: f64,
    },
    /// Warm-up, then `peak_lr * sqrt(warmup_steps / (step + 1))` (the Transformer / Noam decay).
    WarmupInvSqrt {
        /// Learning rate at the end of warm-up.
        peak_lr: f64,
        /// Warm-up length, in steps (`>= 1`).
        warmup_steps: u64,
    },
    /// Warm-up, then `peak_lr * gamma^((step - warmup_steps) / decay_steps)` (continuous), floored at
    /// `min_lr`.
    WarmupExponential {
        /// Learning rate at the end of warm-up.
        peak_lr: f64,
        /// Warm-up length, in steps.
        warmup_steps: u64,
        /// Factor per `decay_steps`, in `(0, 1]`.
        gamma: f64,
        /// Steps over which the rate is multiplied by `gamma` (`>= 1`).
        decay_steps: u64,
        /// Floor of the decay.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// Checks the ranges documented on each variant.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), OptimError> {
        let lr_ok = |x: f64| x >= 0.0 && x.is_finite();
        match *self {
            Self::Constant { lr } => check("lr", lr, lr_ok(lr), "non-negative and finite"),
            Self::WarmupCosine { peak_lr, warmup_steps, total_steps, min_lr } => {
                check("peak_lr", peak_lr, lr_ok(peak_lr), "non-negative and finite")?;
                check("min_lr", min_lr, lr_ok(min_lr) && min_lr <= peak_lr, "in [0, peak_lr]")?;
                check(
                    "total_steps",
                    total_steps as f64,
                    total_steps > warmup_steps,
                    "greater than warmup_steps",
                )
            }
            Self::WarmupInvSqrt { peak_lr, warmup_steps } => {
                check("peak_lr", peak_lr, lr_ok(peak_lr), "non-negative and finite")?;
                check("warmup_steps", warmup_steps as f64, warmup_steps >= 1, "at least 1")
            }
            Self::WarmupExponential { peak_lr, gamma, decay_steps, min_lr, .. } => {
                check("peak_lr", peak_lr, lr_ok(peak_lr), "non-negative and finite")?;
                check("min_lr", min_lr, lr_ok(min_lr) && min_lr <= peak_lr, "in [0, peak_lr]")?;
                check("gamma", gamma, gamma > 0.0 && gamma <= 1.0, "in (0, 1]")?;
                check("decay_steps", decay_steps as f64, decay_steps >= 1, "at least 1")
            }
        }
    }

    /// The learning rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let warm = |peak: f64, warmup: u64| -> Option<f64> {
            (step < warmup).then(|| peak * (step + 1) as f64 / warmup as f64)
        };
        match *self {
            Self::Constant { lr } => lr,
            Self::WarmupCosine { peak_lr, warmup_steps, total_steps, min_lr } => warm(peak_lr, warmup_steps)
                .unwrap_or_else(|| {
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                    min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + (core::f64::consts::PI * progress).cos())
                }),
            Self::WarmupInvSqrt { peak_lr, warmup_steps } => warm(peak_lr, warmup_steps)
                .unwrap_or_else(|| peak_lr * (warmup_steps.max(1) as f64 / (step + 1) as f64).sqrt()),
            Self::WarmupExponential { peak_lr, warmup_steps, gamma, decay_steps, min_lr } => {
                warm(peak_lr, warmup_steps).unwrap_or_else(|| {
                    let e = (step - warmup_steps) as f64 / decay_steps.max(1) as f64;
                    (peak_lr * gamma.powf(e)).max(min_lr)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, values: &[f64]) -> Param<f64> {
        Param::from_values(name, vec![values.len()], values.to_vec()).unwrap()
    }

    /// The bias-corrected average after `t` updates is the normalised weighted sum
    /// `sum_k d^(t-k) p_k / sum_k d^(t-k)`, computed here directly.
    #[test]
    fn ema_update_is_the_bias_corrected_weighted_average() {
        let decay = 0.9;
        let mut a = param("a", &[100.0, -100.0]);
        let mut b = param("b", &[7.0]);
        let mut ema = Ema::new(decay, &[&a, &b]).unwrap();
        let mut history: Vec<Vec<f64>> = Vec::new();
        for t in 1..=25u32 {
            let x = f64::from(t);
            a.value_mut().copy_from_slice(&[x.sin(), x * 0.5]);
            b.value_mut().copy_from_slice(&[1.0 / x]);
            history.push(vec![x.sin(), x * 0.5, 1.0 / x]);
            let expected_rate = (1.0 - decay) / (1.0 - decay.powi(t as i32));
            assert!((ema.next_rate() - expected_rate).abs() < 1e-15);
            ema.update(&[&mut a, &mut b]).unwrap();
            let weights: Vec<f64> = (1..=t).map(|k| decay.powi((t - k) as i32)).collect();
            let total: f64 = weights.iter().sum();
            for (i, &got) in ema.values().iter().enumerate() {
                let want: f64 = history.iter().zip(&weights).map(|(h, w)| w * h[i]).sum::<f64>() / total;
                assert!((got - want).abs() < 1e-12, "t {t} element {i}: {got} vs {want}");
            }
        }
        assert_eq!(ema.updates(), 25);
        // The first update replaced the initial values entirely (rate 1), so they left no trace:
        // the average of a constant sequence is that constant whatever the start.
        let mut c = param("c", &[1e6]);
        let mut ema = Ema::new(0.999, &[&c]).unwrap();
        c.value_mut()[0] = 3.0;
        for _ in 0..5 {
            ema.update(&[&mut c]).unwrap();
        }
        assert!((ema.values()[0] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn ema_swap_is_exact_and_reversible() {
        let mut a = param("a", &[1.0, 2.0]);
        let mut b = param("b", &[3.0]);
        let mut ema = Ema::new(0.5, &[&a, &b]).unwrap();
        ema.update(&[&mut a, &mut b]).unwrap();
        a.value_mut().copy_from_slice(&[5.0, 6.0]);
        b.value_mut()[0] = 7.0;
        ema.update(&[&mut a, &mut b]).unwrap();
        // Rate of the second update: 0.5 / 0.75 = 2/3.
        let avg = [1.0 + 2.0 / 3.0 * 4.0, 2.0 + 2.0 / 3.0 * 4.0, 3.0 + 2.0 / 3.0 * 4.0];
        assert_eq!(ema.values(), &avg);
        ema.swap(&mut [&mut a, &mut b]).unwrap();
        assert_eq!((a.value(), b.value()), (&avg[..2], &avg[2..]));
        assert_eq!(ema.values(), &[5.0, 6.0, 7.0]);
        ema.swap(&mut [&mut a, &mut b]).unwrap();
        assert_eq!((a.value(), b.value(), ema.values()), (&[5.0, 6.0][..], &[7.0][..], &avg[..]));
        let parts: Vec<(&str, &[f64])> = ema.split().collect();
        assert_eq!(parts, vec![("a", &avg[..2]), ("b", &avg[2..])]);
        let restored = Ema::from_parts(0.5, 2, ema.layout().to_vec(), ema.values().to_vec()).unwrap();
        assert_eq!(restored, ema);
    }

    #[test]
    fn ema_rejects_bad_decay_and_other_parameters() {
        let mut a = param("a", &[1.0, 2.0]);
        for bad in [-0.1, 1.0, f64::NAN] {
            assert!(matches!(
                Ema::new(bad, &[&a]),
                Err(OptimError::InvalidHyperparameter { field: "ema_decay", .. })
            ));
        }
        let mut ema = Ema::new(0.9, &[&a]).unwrap();
        let mut other = param("b", &[1.0, 2.0]);
        let before = ema.clone();
        assert!(matches!(ema.update(&[&mut other]), Err(OptimError::StateMismatch { index: 0, .. })));
        assert!(matches!(ema.update(&[&mut a, &mut other]), Err(OptimError::StateMismatch { index: 1, .. })));
        assert!(matches!(ema.swap(&mut [&mut other]), Err(OptimError::StateMismatch { index: 0, .. })));
        assert_eq!(ema, before);
        assert!(Ema::<f64>::from_parts(0.9, 0, vec![("a".into(), 3)], vec![0.0; 2]).is_err());
    }
}
