//! Kaldi-compatible log-mel filterbank features.
//!
//! Matches `torchaudio.compliance.kaldi.fbank` (itself a port of Kaldi's `compute-fbank-feats`)
//! option for option, with `use_energy = false` (no energy column) and `vtln_warp = 1` (no VTLN),
//! which are torchaudio's defaults. Per frame of `window_size` samples:
//!
//! 1. extract the frame (with `snip_edges = false`, frames are centred on `t * shift + shift / 2`
//!    and samples outside the signal are reflected: index `-k` reads `x[k - 1]`, index `n - 1 + k`
//!    reads `x[n - k]`);
//! 2. optionally add Gaussian dither; subtract the frame mean (DC offset);
//! 3. pre-emphasis `y[i] = x[i] - c x[i - 1]`, with `y[0] = x[0] - c x[0]`;
//! 4. multiply by the window (Povey: `(0.5 - 0.5 cos(2 pi i / (N - 1)))^0.85`), zero-pad to the FFT
//!    length (next power of two: 512 for 400 samples);
//! 5. power spectrum `|X_k|^2` for `k = 0 ..= fft / 2`;
//! 6. triangular mel filters, equally spaced on `mel(f) = 1127 ln(1 + f / 700)` between `low_freq`
//!    and `high_freq`, evaluated at the mel value of each FFT bin's centre frequency (Kaldi's
//!    construction; the Nyquist bin always has weight 0);
//! 7. `ln(max(energy, f32::EPSILON))`.
//!
//! The frame arithmetic, the FFT and the mel sums run in f64 and only the result is rounded to f32.
//! Low-energy bins are small differences of large spectra: in f32, FFT rounding relative to the
//! loudest bin moves them by up to ~4e-3 in log space (torchaudio's own f32 evaluation deviates from
//! its f64 one by up to ~2e-3 on our fixtures); in f64 we match the exact values to ~1e-5. The cost is
//! an f64 FFT, still thousands of times faster than real time.
//!
//! # Scale convention
//!
//! Kaldi reads 16-bit WAV as integers in `[-32768, 32767]`, so its features are those of
//! `32768 x` our `[-1, 1]` samples. [`FbankConfig::sample_scale`] (default 32768) multiplies the
//! input before step 1, so our default features equal `torchaudio.compliance.kaldi.fbank(wave *
//! 32768, ...)` and Kaldi's own, and models trained on either transfer. With `sample_scale = 1` the
//! output instead matches torchaudio called on the `[-1, 1]` waveform; in log space the two differ by
//! exactly `2 ln 32768 = 20.79` per bin wherever the energy is above the floor. The dither amount is
//! in the scaled units (Kaldi's `--dither=1` is one integer step at the default scale).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::error::AudioError;

/// The window applied to each frame before the FFT (Kaldi's `--window-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WindowType {
    /// Hann window raised to the power 0.85 (Kaldi's default).
    #[default]
    Povey,
    /// `0.54 - 0.46 cos(2 pi i / (N - 1))`.
    Hamming,
    /// `0.5 - 0.5 cos(2 pi i / (N - 1))` (symmetric Hann).
    Hanning,
    /// All ones.
    Rectangular,
    /// `b - 0.5 cos(a i) + (0.5 - b) cos(2 a i)` with `a = 2 pi / (N - 1)` and
    /// `b =` [`FbankConfig::blackman_coeff`].
    Blackman,
}

/// Filterbank options; the defaults are Kaldi's and torchaudio's except `num_mel_bins` (80, not 23)
/// and [`FbankConfig::sample_scale`] (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FbankConfig {
    /// Rate of the input samples, in Hz. Default 16000.
    pub sample_rate: u32,
    /// Frame length in milliseconds; the window is `floor(sample_rate * ms / 1000)` samples. Default 25.
    pub frame_length_ms: f64,
    /// Frame shift in milliseconds, truncated to samples the same way. Default 10.
    pub frame_shift_ms: f64,
    /// Number of triangular mel filters, i.e. feature dimension. Default 80.
    pub num_mel_bins: usize,
    /// Lower edge of the first filter, in Hz. Default 20.
    pub low_freq: f64,
    /// Upper edge of the last filter, in Hz; `<= 0` means Nyquist plus this value (Kaldi's
    /// convention). Default 0 (Nyquist).
    pub high_freq: f64,
    /// Pre-emphasis coefficient `c`; 0 disables it. Default 0.97.
    pub preemphasis: f32,
    /// Subtract each frame's mean before pre-emphasis. Default true.
    pub remove_dc_offset: bool,
    /// Frame window. Default [`WindowType::Povey`].
    pub window: WindowType,
    /// Constant of the Blackman window. Default 0.42.
    pub blackman_coeff: f64,
    /// Zero-pad frames to the next power of two for the FFT (else the FFT has the window's
    /// length). Default true.
    pub round_to_power_of_two: bool,
    /// true: only frames that fit entirely inside the signal (`1 + (n - window) / shift` frames);
    /// false: `(n + shift / 2) / shift` frames centred on the shifts, edges reflected. Default true.
    pub snip_edges: bool,
    /// Power spectrum (true) or magnitude spectrum (false). Default true.
    pub use_power: bool,
    /// Natural log of the floored mel energies (true) or the energies themselves. Default true.
    pub use_log: bool,
    /// Standard deviation of Gaussian noise added to every sample of every frame, in scaled units.
    /// Default 0 (off); Kaldi's training default is 1.
    pub dither: f32,
    /// Seed of the dither noise generator (the stream continues across calls; see
    /// [`Fbank::reseed`]). Default 0.
    pub dither_seed: u64,
    /// Factor applied to the `[-1, 1]` input samples before anything else. Default 32768 (Kaldi's
    /// integer scale; see the module docs).
    pub sample_scale: f32,
}

impl Default for FbankConfig {
    fn default() -> Self {
        FbankConfig {
            sample_rate: 16_000,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            num_mel_bins: 80,
            low_freq: 20.0,
            high_freq: 0.0,
            preemphasis: 0.97,
            remove_dc_offset: true,
            window: WindowType::Povey,
            blackman_coeff: 0.42,
            round_to_power_of_two: true,
            snip_edges: true,
            use_power: true,
            use_log: true,
            dither: 0.0,
            dither_seed: 0,
            sample_scale: 32_768.0,
        }
    }
}

/// A feature matrix: `frames` rows of `bins` values, row-major: `data[t * bins + b]` is bin `b` of
/// frame `t`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    /// `frames * bins` values, row-major.
    pub data: Vec<f32>,
    /// Number of frames (rows).
    pub frames: usize,
    /// Number of bins per frame (columns).
    pub bins: usize,
}

impl Features {
    /// Wraps `data` as a `(frames, bins)` matrix; errors unless `data.len() == frames * bins`.
    pub fn new(data: Vec<f32>, frames: usize, bins: usize) -> Result<Features, AudioError> {
        let f = Features { data, frames, bins };
        f.validate()?;
        Ok(f)
    }

    /// Checks `data.len() == frames * bins` (the fields are public, so a caller can break it).
    pub fn validate(&self) -> Result<(), AudioError> {
        if self.frames.checked_mul(self.bins) != Some(self.data.len()) {
            return Err(AudioError::config(
                "data",
                format!(
                    "{} values cannot form {} frames of {} bins",
                    self.data.len(),
                    self.frames,
                    self.bins
                ),
            ));
        }
        Ok(())
    }

    /// Frame `t` as a slice of `bins` values; panics if `t >= frames`, like slice indexing.
    pub fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.bins..(t + 1) * self.bins]
    }
}

/// A reusable filterbank extractor: window, mel filters, FFT plan and scratch are built once by
/// [`Fbank::new`]; [`Fbank::compute`] then allocates only its output.
pub struct Fbank {
    config: FbankConfig,
    window_size: usize,
    shift: usize,
    window: Vec<f64>,
    /// Mel filter `m` covers FFT bins `first[m] ..first[m] + weights[m].len()`.
    banks: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn RealToComplex<f64>>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    rng: StdRng,
}

impl std::fmt::Debug for Fbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fbank")
            .field("config", &self.config)
            .field("window_size", &self.window_size)
            .field("shift", &self.shift)
            .field("fft_len", &self.frame.len())
            .finish()
    }
}

fn mel(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

impl Fbank {
    /// Validates `config` and precomputes everything the per-frame loop needs.
    ///
    /// Errors ([`AudioError::InvalidConfig`]): sample rate 0, a window shorter than 2 samples or a
    /// shift of 0 samples, no mel bins, `0 <= low_freq < high_freq <= Nyquist` violated, a mel filter
    /// that covers no FFT bin (too many bins for the FFT resolution, as Kaldi rejects), non-finite or
    /// negative dither, non-finite or zero `sample_scale`.
    pub fn new(config: FbankConfig) -> Result<Fbank, AudioError> {
        if config.sample_rate == 0 {
            return Err(AudioError::config("sample_rate", "0 Hz"));
        }
        let sr = f64::from(config.sample_rate);
        // Truncation, as torchaudio's `int(sample_frequency * frame_length * 0.001)`.
        let window_size = (sr * config.frame_length_ms * 0.001) as usize;
        let shift = (sr * config.frame_shift_ms * 0.001) as usize;
        if !config.frame_length_ms.is_finite() || window_size < 2 {
            return Err(AudioError::config(
                "frame_length_ms",
                format!(
                    "{} ms gives {window_size} samples; need at least 2",
                    config.frame_length_ms
                ),
            ));
        }
        if !config.frame_shift_ms.is_finite() || shift < 1 {
            return Err(AudioError::config(
                "frame_shift_ms",
                format!(
                    "{} ms gives {shift} samples; need at least 1",
                    config.frame_shift_ms
                ),
            ));
        }
        if config.num_mel_bins == 0 {
            return Err(AudioError::config("num_mel_bins", "0 bins"));
        }
        let nyquist = 0.5 * sr;
        let high = if config.high_freq <= 0.0 {
            nyquist + config.high_freq
        } else {
            config.high_freq
        };
        if !(config.low_freq >= 0.0 && config.low_freq < high && high <= nyquist) {
            return Err(AudioError::config(
                "low_freq/high_freq",
                format!(
                    "need 0 <= low_freq < high_freq <= {nyquist} Hz, got low {} high {} (from {})",
                    config.low_freq, high, config.high_freq
                ),
            ));
        }
        if !(config.dither.is_finite() && config.dither >= 0.0) {
            return Err(AudioError::config(
                "dither",
                format!("{} (must be finite and >= 0)", config.dither),
            ));
        }
        if !(config.sample_scale.is_finite() && config.sample_scale != 0.0) {
            return Err(AudioError::config(
                "sample_scale",
                format!("{} (must be finite and non-zero)", config.sample_scale),
            ));
        }
        if !config.preemphasis.is_finite() || !config.blackman_coeff.is_finite() {
            return Err(AudioError::config(
                "preemphasis/blackman_coeff",
                "must be finite",
            ));
        }
        let fft_len = if config.round_to_power_of_two {
            window_size.next_power_of_two()
        } else {
            window_size
        };

        let window = make_window(config.window, window_size, config.blackman_coeff);
        let banks = make_banks(config.num_mel_bins, fft_len, sr, config.low_freq, high)?;

        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_len);
        let frame = fft.make_input_vec();
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        let power = vec![0.0f64; spectrum.len()];
        let rng = StdRng::seed_from_u64(config.dither_seed);
        Ok(Fbank {
            config,
            window_size,
            shift,
            window,
            banks,
            fft,
            frame,
            spectrum,
            scratch,
            power,
            rng,
        })
    }

    /// The configuration this extractor was built with.
    pub fn config(&self) -> &FbankConfig {
        &self.config
    }

    /// Feature dimension: [`FbankConfig::num_mel_bins`].
    pub fn bins(&self) -> usize {
        self.banks.len()
    }

    /// Window length and shift, in samples.
    pub fn window_and_shift(&self) -> (usize, usize) {
        (self.window_size, self.shift)
    }

    /// Restarts the dither noise stream from `seed` (so one utterance's features can be reproduced).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Number of frames produced for `num_samples` input samples (see [`FbankConfig::snip_edges`]).
    pub fn num_frames(&self, num_samples: usize) -> usize {
        if self.config.snip_edges {
            if num_samples < self.window_size {
                0
            } else {
                1 + (num_samples - self.window_size) / self.shift
            }
        } else {
            (num_samples + self.shift / 2) / self.shift
        }
    }

    /// Features of `samples` (mono, in `[-1, 1]`, at [`FbankConfig::sample_rate`]): a
    /// `(num_frames(len), bins)` matrix. Too short an input gives 0 frames, not an error.
    ///
    /// Errors: [`AudioError::NonFinite`] naming the first NaN or infinite sample.
    pub fn compute(&mut self, samples: &[f32]) -> Result<Features, AudioError> {
        let mut data = Vec::new();
        let frames = self.compute_into(samples, &mut data)?;
        Ok(Features {
            data,
            frames,
            bins: self.bins(),
        })
    }

    /// [`Fbank::compute`] into a caller-owned buffer (cleared, then filled row-major with
    /// `frames * bins` values), so that a loop over utterances reuses one allocation. Returns the
    /// number of frames.
    pub fn compute_into(
        &mut self,
        samples: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<usize, AudioError> {
        if let Some(index) = samples.iter().position(|v| !v.is_finite()) {
            return Err(AudioError::NonFinite {
                index,
                value: samples[index],
            });
        }
        let frames = self.num_frames(samples.len());
        let bins = self.bins();
        out.clear();
        out.resize(frames * bins, 0.0);
        for (t, row) in out.chunks_exact_mut(bins.max(1)).enumerate().take(frames) {
            self.frame_features(samples, t, row);
        }
        Ok(frames)
    }

    fn frame_features(&mut self, samples: &[f32], t: usize, row: &mut [f32]) {
        let ws = self.window_size;
        let scale = f64::from(self.config.sample_scale);
        let n = samples.len() as i64;
        let start = if self.config.snip_edges {
            (t * self.shift) as i64
        } else {
            (t * self.shift) as i64 + (self.shift / 2) as i64 - (ws / 2) as i64
        };
        // realfft uses its input as scratch, so the whole buffer (padding included) is rewritten.
        let (head, pad) = self.frame.split_at_mut(ws);
        pad.fill(0.0);
        if start >= 0 && start + ws as i64 <= n {
            let s = start as usize;
            for (d, &x) in head.iter_mut().zip(&samples[s..s + ws]) {
                *d = f64::from(x) * scale;
            }
        } else {
            for (i, d) in head.iter_mut().enumerate() {
                *d = f64::from(samples[reflect(start + i as i64, n)]) * scale;
            }
        }
        if self.config.dither > 0.0 {
            let dither = f64::from(self.config.dither);
            for d in head.iter_mut() {
                *d += dither * gaussian(&mut self.rng);
            }
        }
        if self.config.remove_dc_offset {
            let mean = head.iter().sum::<f64>() / ws as f64;
            for d in head.iter_mut() {
                *d -= mean;
            }
        }
        let c = f64::from(self.config.preemphasis);
        if c != 0.0 {
            for i in (1..ws).rev() {
                head[i] -= c * head[i - 1];
            }
            head[0] -= c * head[0];
        }
        for (d, &w) in head.iter_mut().zip(&self.window) {
            *d *= w;
        }
        // The buffers were made by this plan, so their lengths always match and this cannot fail.
        let fft_ok = self
            .fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .is_ok();
        debug_assert!(fft_ok);
        if self.config.use_power {
            for (p, z) in self.power.iter_mut().zip(&self.spectrum) {
                *p = z.norm_sqr();
            }
        } else {
            for (p, z) in self.power.iter_mut().zip(&self.spectrum) {
                *p = z.norm_sqr().sqrt();
            }
        }
        for (out, (first, weights)) in row.iter_mut().zip(&self.banks) {
            let energy: f64 = self.power[*first..*first + weights.len()]
                .iter()
                .zip(weights)
                .map(|(p, w)| p * w)
                .sum();
            *out = if self.config.use_log {
                energy.max(f64::from(f32::EPSILON)).ln() as f32
            } else {
                energy as f32
            };
        }
    }
}

/// Kaldi's reflection of an out-of-range sample index into `0..n` (`n >= 1`), repeated for inputs
/// shorter than the overhang.
fn reflect(mut s: i64, n: i64) -> usize {
    while s < 0 || s >= n {
        s = if s < 0 { -s - 1 } else { 2 * n - 1 - s };
    }
    s as usize
}

/// One standard normal draw by the Box-Muller transform (rand's own distributions live in
/// `rand_distr`, a dependency not worth adding for this).
fn gaussian(rng: &mut StdRng) -> f64 {
    // u1 in (0, 1]: avoids ln(0).
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn make_window(kind: WindowType, n: usize, blackman_coeff: f64) -> Vec<f64> {
    let a = std::f64::consts::TAU / (n - 1) as f64;
    (0..n)
        .map(|i| {
            let i = i as f64;
            let v = match kind {
                WindowType::Povey => (0.5 - 0.5 * (a * i).cos()).powf(0.85),
                WindowType::Hamming => 0.54 - 0.46 * (a * i).cos(),
                WindowType::Hanning => 0.5 - 0.5 * (a * i).cos(),
                WindowType::Rectangular => 1.0,
                WindowType::Blackman => {
                    blackman_coeff - 0.5 * (a * i).cos()
                        + (0.5 - blackman_coeff) * (2.0 * a * i).cos()
                }
            };
            v
        })
        .collect()
}

/// Kaldi's mel filters, as sparse rows over FFT bins `0..fft_len / 2` (the Nyquist bin never
/// contributes).
fn make_banks(
    num_bins: usize,
    fft_len: usize,
    sample_rate: f64,
    low: f64,
    high: f64,
) -> Result<Vec<(usize, Vec<f64>)>, AudioError> {
    let num_fft_bins = fft_len / 2;
    let bin_width = sample_rate / fft_len as f64;
    let (mel_low, mel_high) = (mel(low), mel(high));
    let delta = (mel_high - mel_low) / (num_bins + 1) as f64;
    let mut banks = Vec::with_capacity(num_bins);
    for m in 0..num_bins {
        let left = mel_low + m as f64 * delta;
        let center = left + delta;
        let right = center + delta;
        let mut first = None;
        let mut weights = Vec::new();
        for k in 0..num_fft_bins {
            let x = mel(bin_width * k as f64);
            let w = ((x - left) / (center - left)).min((right - x) / (right - center));
            if w > 0.0 {
                first.get_or_insert(k);
                // Triangles are convex, so the positive weights are contiguous.
                weights.push(w);
            }
        }
        let first = first.ok_or_else(|| {
            AudioError::config(
                "num_mel_bins",
                format!(
                    "mel filter {m} covers no FFT bin ({num_bins} bins over {low}..{high} Hz with \
                     {fft_len}-point FFT); use fewer bins"
                ),
            )
        })?;
        banks.push((first, weights));
    }
    Ok(banks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_kaldi() {
        assert_eq!(reflect(-1, 5), 0);
        assert_eq!(reflect(-3, 5), 2);
        assert_eq!(reflect(5, 5), 4);
        assert_eq!(reflect(7, 5), 2);
        // Inputs shorter than the overhang bounce more than once.
        assert_eq!(reflect(-4, 2), 0);
        for s in -50..50 {
            assert!(reflect(s, 3) < 3);
        }
    }

    #[test]
    fn povey_window_is_hann_to_the_085() {
        let w = make_window(WindowType::Povey, 400, 0.42);
        assert_eq!(w[0], 0.0);
        assert!((w[399]).abs() < 1e-12);
        let mid = (0.5 - 0.5 * (std::f64::consts::TAU * 200.0 / 399.0).cos()).powf(0.85);
        assert!((w[200] - mid).abs() < 1e-12);
    }
}
