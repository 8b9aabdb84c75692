//! Band-limited resampling by windowed-sinc interpolation, and speed perturbation built on it.
//!
//! Output sample `j` sits at input time `t_j = j * from / to` (in input samples). It is
//! `sum_k x[k] * h(t_j - k)` with `h(x) = 2 fc sinc(2 fc x) * kaiser(x / W)`, where the cut-off
//! `fc = ROLLOFF * min(from, to) / (2 from)` (cycles per input sample) keeps the pass band below both
//! Nyquist frequencies, and the half-width `W = ZERO_CROSSINGS / (2 fc)` spans a fixed number of
//! sinc lobes. Samples outside the signal are zero. For rational ratios with a small reduced
//! numerator (every pair of common rates) the `to / gcd` distinct filter phases are tabulated once,
//! and each phase is normalised to unit DC gain; otherwise taps are computed per output sample.

use super::error::AudioError;

/// Sinc zero crossings on each side of the centre: more gives a sharper transition band.
const ZERO_CROSSINGS: f64 = 16.0;
/// Fraction of the lower Nyquist frequency kept in the pass band; the remaining 6% is the transition
/// band, so aliasing from above the new Nyquist frequency is attenuated by the Kaiser stop band.
const ROLLOFF: f64 = 0.94;
/// Kaiser window shape: about 80 dB stop-band attenuation.
const KAISER_BETA: f64 = 8.6;
/// Tabulate the polyphase filter when it has at most this many phases (memory: phases x taps x 4 B).
const MAX_TABLE_PHASES: u64 = 4096;
/// The highest rate accepted, in Hz; also keeps `len * to` far from overflowing u64.
const MAX_RATE: u32 = 1_000_000;

/// Resamples `samples` from `from_hz` to `to_hz` with a windowed-sinc low-pass filter.
///
/// The output has `ceil(len * to_hz / from_hz)` samples; `from_hz == to_hz` returns a copy. Content
/// below `0.94 * min(from, to) / 2` passes with unit gain (ripple well under 0.1 dB); content above
/// the new Nyquist frequency is attenuated by about 80 dB. Cost: about `32 * max(1, from / to)`
/// multiply-adds per output sample.
///
/// Errors: a rate of 0 or above 1 MHz ([`AudioError::InvalidSampleRate`]); a non-finite sample
/// ([`AudioError::NonFinite`]).
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    for hz in [from_hz, to_hz] {
        if hz == 0 || hz > MAX_RATE {
            return Err(AudioError::InvalidSampleRate {
                hz,
                detail: "resampling accepts 1 Hz to 1 MHz",
            });
        }
    }
    if let Some(index) = samples.iter().position(|v| !v.is_finite()) {
        return Err(AudioError::NonFinite {
            index,
            value: samples[index],
        });
    }
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    let g = gcd(u64::from(from_hz), u64::from(to_hz));
    let (up, down) = (u64::from(to_hz) / g, u64::from(from_hz) / g);
    let n = samples.len() as u64;
    // n * up can exceed u64 for huge inputs (n < 2^61, up < 2^20); u128 is exact.
    let out_len = ((u128::from(n) * u128::from(up)).div_ceil(u128::from(down))) as usize;

    let fc = ROLLOFF * f64::from(from_hz.min(to_hz)) / (2.0 * f64::from(from_hz));
    let half_width = ZERO_CROSSINGS / (2.0 * fc);
    // Taps k with |t - k| < W: for t = i + frac, k ranges over i - K + 1 ..= i + K.
    let k_half = half_width.ceil() as usize;
    let taps = 2 * k_half;
    let filter = Filter {
        fc,
        half_width,
        k_half,
    };

    let mut out = Vec::with_capacity(out_len);
    // Output j sits at input position (j * down) / up: track its whole part `i` and phase `p`
    // incrementally, so nothing overflows however long the input (p < up + down <= 2e6).
    let (mut i, mut p) = (0usize, 0u64);
    let advance = |i: &mut usize, p: &mut u64| {
        *p += down;
        *i += (*p / up) as usize;
        *p %= up;
    };
    if up <= MAX_TABLE_PHASES {
        let mut table = vec![0.0f32; up as usize * taps];
        for (phase, row) in table.chunks_exact_mut(taps).enumerate() {
            filter.fill(phase as f64 / up as f64, row);
        }
        for _ in 0..out_len {
            let row = &table[p as usize * taps..(p as usize + 1) * taps];
            out.push(dot_clamped(samples, i, k_half, row));
            advance(&mut i, &mut p);
        }
    } else {
        let mut row = vec![0.0f32; taps];
        for _ in 0..out_len {
            filter.fill(p as f64 / up as f64, &mut row);
            out.push(dot_clamped(samples, i, k_half, &row));
            advance(&mut i, &mut p);
        }
    }
    Ok(out)
}

/// Speed perturbation as in Kaldi's recipes (sox `speed`): plays `samples` (at `rate_hz`) `factor`
/// times faster, changing tempo and pitch together, and returns audio at the same rate
/// (`len / factor` samples). `factor` is rounded to a rate in whole Hz: `rate_hz * factor`.
///
/// Typical factors are 0.9, 1.0 and 1.1; they must lie in `[0.5, 2.0]`.
pub fn speed_perturb(samples: &[f32], rate_hz: u32, factor: f64) -> Result<Vec<f32>, AudioError> {
    if !(0.5..=2.0).contains(&factor) {
        return Err(AudioError::config(
            "factor",
            format!("speed factor {factor} outside [0.5, 2.0]"),
        ));
    }
    let virtual_rate = (f64::from(rate_hz) * factor).round();
    if virtual_rate < 1.0 || virtual_rate > f64::from(MAX_RATE) {
        return Err(AudioError::InvalidSampleRate {
            hz: rate_hz,
            detail: "speed perturbation needs rate * factor in 1 Hz ..= 1 MHz",
        });
    }
    resample(samples, virtual_rate as u32, rate_hz)
}

struct Filter {
    fc: f64,
    half_width: f64,
    k_half: usize,
}

impl Filter {
    /// Fills `row[m]` with the weight of input sample `i - k_half + 1 + m` for an output at input
    /// time `i + frac`, normalised so that the row sums to 1 (unit DC gain for every phase).
    fn fill(&self, frac: f64, row: &mut [f32]) {
        let mut sum = 0.0f64;
        for (m, w) in row.iter_mut().enumerate() {
            let x = (m as f64 - self.k_half as f64 + 1.0) - frac;
            let v = self.tap(x);
            sum += v;
            *w = v as f32;
        }
        if sum != 0.0 {
            let inv = 1.0 / sum;
            for w in row.iter_mut() {
                *w = (f64::from(*w) * inv) as f32;
            }
        }
    }

    fn tap(&self, x: f64) -> f64 {
        if x.abs() >= self.half_width {
            return 0.0;
        }
        let arg = 2.0 * self.fc * x;
        let sinc = if arg.abs() < 1e-12 {
            1.0
        } else {
            (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
        };
        let r = x / self.half_width;
        let window =
            bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA);
        2.0 * self.fc * sinc * window
    }
}

/// `sum_m x[i - k_half + 1 + m] * row[m]`, with zeros outside `x`.
fn dot_clamped(x: &[f32], i: usize, k_half: usize, row: &[f32]) -> f32 {
    let start = i as isize - k_half as isize + 1;
    let lo = (-start).max(0) as usize;
    let hi = row.len().min((x.len() as isize - start).max(0) as usize);
    if lo >= hi {
        return 0.0;
    }
    let xs = &x[(start + lo as isize) as usize..(start + hi as isize) as usize];
    let ws = &row[lo..hi];
    // Four accumulators break the add dependency chain so the loop vectorises and pipelines.
    let mut acc = [0.0f32; 4];
    let mut xc = xs.chunks_exact(4);
    let mut wc = ws.chunks_exact(4);
    for (a, b) in (&mut xc).zip(&mut wc) {
        for l in 0..4 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut tail = 0.0f32;
    for (a, b) in xc.remainder().iter().zip(wc.remainder()) {
        tail += a * b;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Modified Bessel function of the first kind, order 0, by its power series (converges for all x;
/// 40 terms give full f64 precision for the x <= 9 used here).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..60 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_i0_matches_known_values() {
        // I0(1) and I0(5) from tables.
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-14);
        assert!((bessel_i0(5.0) - 27.239_871_823_604_442).abs() < 1e-11);
    }

    #[test]
    fn every_phase_has_unit_dc_gain() {
        let f = Filter {
            fc: 0.47,
            half_width: 16.0 / 0.94,
            k_half: 18,
        };
        let mut row = vec![0.0f32; 36];
        for p in 0..10 {
            f.fill(p as f64 / 10.0, &mut row);
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "phase {p}: sum {s}");
        }
    }
}
