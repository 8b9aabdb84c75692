//! Cepstral (here: log-mel) mean and variance normalisation, per utterance or with global statistics.
//!
//! Per bin `b`: `y[t][b] = (x[t][b] - mean[b]) * inv_std[b]`, with `std = sqrt(max(var, floor))`
//! where `var` is the population variance (divide by the frame count) and the floor
//! [`VARIANCE_FLOOR`] keeps constant bins (e.g. silence at the energy floor) finite.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::AudioError;
use super::fbank::Features;

/// Smallest variance used when dividing, in squared feature units: a bin whose variance is below
/// this (constant over the utterance or the corpus) is only centred, up to a factor of 1e5.
pub const VARIANCE_FLOOR: f64 = 1e-10;

/// Normalises one utterance in place with its own statistics: every bin gets mean 0 and, when
/// `variance` is true, variance 1 (bins with variance below [`VARIANCE_FLOOR`] are only centred
/// and scaled by `1 / sqrt(VARIANCE_FLOOR)`, which leaves them at 0). Zero frames: no-op.
///
/// Errors: [`AudioError::NonFinite`] (flat index) if any value is NaN or infinite; then nothing is
/// changed.
pub fn cmvn_utterance(features: &mut Features, variance: bool) -> Result<(), AudioError> {
    if features.frames == 0 {
        return Ok(());
    }
    let mut stats = CmvnStats::new(features.bins);
    stats.accumulate(features)?;
    let norm = stats.finalize_unchecked();
    apply(
        features,
        &norm.mean,
        if variance { Some(&norm.inv_std) } else { None },
    );
    Ok(())
}

fn apply(features: &mut Features, mean: &[f32], inv_std: Option<&[f32]>) {
    for row in features.data.chunks_exact_mut(features.bins.max(1)) {
        match inv_std {
            Some(inv) => {
                for ((x, m), s) in row.iter_mut().zip(mean).zip(inv) {
                    *x = (*x - m) * s;
                }
            }
            None => {
                for (x, m) in row.iter_mut().zip(mean) {
                    *x -= m;
                }
            }
        }
    }
}

/// Running sums for global statistics, in f64 so that millions of frames lose no precision.
///
/// Accumulate utterance by utterance (or per thread and [`CmvnStats::merge`]), then
/// [`CmvnStats::finalize`].
#[derive(Debug, Clone, PartialEq)]
pub struct CmvnStats {
    frames: u64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl CmvnStats {
    /// Empty statistics for `bins`-dimensional features.
    pub fn new(bins: usize) -> CmvnStats {
        CmvnStats {
            frames: 0,
            sum: vec![0.0; bins],
            sum_sq: vec![0.0; bins],
        }
    }

    /// Frames accumulated so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Adds every frame of `features`. Errors: a different bin count
    /// ([`AudioError::ShapeMismatch`]) or a non-finite value ([`AudioError::NonFinite`], flat
    /// index); on error nothing is added.
    pub fn accumulate(&mut self, features: &Features) -> Result<(), AudioError> {
        features.validate()?;
        if features.bins != self.sum.len() {
            return Err(AudioError::ShapeMismatch {
                what: "CMVN statistics",
                expected: self.sum.len(),
                got: features.bins,
            });
        }
        if let Some(index) = features.data.iter().position(|v| !v.is_finite()) {
            return Err(AudioError::NonFinite {
                index,
                value: features.data[index],
            });
        }
        for row in features.data.chunks_exact(features.bins.max(1)) {
            for ((s, q), &x) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(row) {
                let x = f64::from(x);
                *s += x;
                *q += x * x;
            }
        }
        self.frames += features.frames as u64;
        Ok(())
    }

    /// Adds another accumulator's sums (e.g. from another thread). Errors on a bin-count mismatch.
    pub fn merge(&mut self, other: &CmvnStats) -> Result<(), AudioError> {
        if other.sum.len() != self.sum.len() {
            return Err(AudioError::ShapeMismatch {
                what: "merging CMVN statistics",
                expected: self.sum.len(),
                got: other.sum.len(),
            });
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
        self.frames += other.frames;
        Ok(())
    }

    /// Mean and inverse standard deviation per bin. Errors ([`AudioError::InvalidStats`]) when no
    /// frame was accumulated.
    pub fn finalize(&self) -> Result<GlobalCmvn, AudioError> {
        if self.frames == 0 {
            return Err(AudioError::InvalidStats {
                detail: "no frames accumulated".into(),
            });
        }
        Ok(self.finalize_unchecked())
    }

    fn finalize_unchecked(&self) -> GlobalCmvn {
        let n = self.frames.max(1) as f64;
        let mut mean = Vec::with_capacity(self.sum.len());
        let mut inv_std = Vec::with_capacity(self.sum.len());
        for (&s, &q) in self.sum.iter().zip(&self.sum_sq) {
            let m = s / n;
            // E[x^2] - m^2 can come out slightly negative from rounding; the floor covers it.
            let var = (q / n - m * m).max(VARIANCE_FLOOR);
            mean.push(m as f32);
            inv_std.push((1.0 / var.sqrt()) as f32);
        }
        GlobalCmvn { mean, inv_std }
    }
}

/// Global normalisation statistics: `y[t][b] = (x[t][b] - mean[b]) * inv_std[b]`. Saved with the
/// model as JSON (`{"mean": [...], "inv_std": [...]}`), so that inference normalises exactly as
/// training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalCmvn {
    /// Per-bin mean, in feature units (log-mel).
    pub mean: Vec<f32>,
    /// Per-bin `1 / std`, in inverse feature units; always finite and positive.
    pub inv_std: Vec<f32>,
}

impl GlobalCmvn {
    /// Feature dimension.
    pub fn bins(&self) -> usize {
        self.mean.len()
    }

    /// Checks the invariants a deserialised value may violate: equal lengths, at least one bin,
    /// finite means, finite positive `inv_std`.
    pub fn validate(&self) -> Result<(), AudioError> {
        if self.mean.is_empty() || self.mean.len() != self.inv_std.len() {
            return Err(AudioError::InvalidStats {
                detail: format!(
                    "mean has {} bins and inv_std {}; need equal and non-zero",
                    self.mean.len(),
                    self.inv_std.len()
                ),
            });
        }
        if let Some(b) = self.mean.iter().position(|v| !v.is_finite()) {
            return Err(AudioError::InvalidStats {
                detail: format!("mean[{b}] = {} is not finite", self.mean[b]),
            });
        }
        if let Some(b) = self
            .inv_std
            .iter()
            .position(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(AudioError::InvalidStats {
                detail: format!(
                    "inv_std[{b}] = {} is not finite and positive",
                    self.inv_std[b]
                ),
            });
        }
        Ok(())
    }

    /// Normalises `features` in place. Errors on a bin-count mismatch.
    pub fn apply(&self, features: &mut Features) -> Result<(), AudioError> {
        features.validate()?;
        if features.bins != self.bins() {
            return Err(AudioError::ShapeMismatch {
                what: "global CMVN",
                expected: self.bins(),
                got: features.bins,
            });
        }
        apply(features, &self.mean, Some(&self.inv_std));
        Ok(())
    }

    /// The statistics as a JSON string.
    pub fn to_json(&self) -> String {
        // Serialising two Vec<f32> of finite values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates statistics written by [`GlobalCmvn::to_json`].
    pub fn from_json(text: &str) -> Result<GlobalCmvn, AudioError> {
        let stats: GlobalCmvn =
            serde_json::from_str(text).map_err(|e| AudioError::InvalidStats {
                detail: format!("bad JSON: {e}"),
            })?;
        stats.validate()?;
        Ok(stats)
    }

    /// Writes the JSON atomically: to `path` + `.tmp`, flushed and synced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), AudioError> {
        let io = |source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(self.to_json().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads statistics saved by [`GlobalCmvn::save`]; errors name the file.
    pub fn load(path: &Path) -> Result<GlobalCmvn, AudioError> {
        let text = std::fs::read_to_string(path).map_err(|source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        GlobalCmvn::from_json(&text).map_err(|e| e.in_file(path))
    }
}
