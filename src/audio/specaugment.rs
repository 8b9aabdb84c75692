//! SpecAugment (Park et al., 2019): frequency and time masking of a `(frames, bins)` feature matrix,
//! with the adaptive time masks of Park et al. (2020) as an option. Time warping is not
//! implemented (the 2019 paper reports it as the least useful of the three).
//!
//! With `nu` bins and `tau` frames, each frequency mask draws a width `f ~ U{0..=F}` (clamped to
//! `nu`) and a start `f0 ~ U{0..=nu - f}` and overwrites bins `f0..f0 + f` of every frame; each time
//! mask draws `t ~ U{0..=T'}` and `t0 ~ U{0..=tau - t}` and overwrites frames `t0..t0 + t`, where
//! `T' = min(T, floor(p tau))` (and `min(.., floor(p_S tau))` with adaptive size). Frequency masks
//! are drawn first, then time masks, all from the caller's RNG, so a seeded RNG reproduces them.

use rand::{Rng, RngExt};

use super::error::AudioError;
use super::fbank::Features;

/// What masked cells are set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MaskValue {
    /// 0: the mean after mean normalisation, so use this on CMVN-normalised features (the paper's
    /// setting).
    #[default]
    Zero,
    /// Each bin's mean over the utterance (computed before masking), for unnormalised features.
    Mean,
}

/// Masking policy. The presets reproduce the policies of the papers; the fields are public for
/// custom ones.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecAugmentConfig {
    /// `m_F`: number of frequency masks.
    pub freq_masks: usize,
    /// `F`: largest frequency-mask width, in bins.
    pub max_freq_width: usize,
    /// `m_T`: number of time masks (the cap, with adaptive multiplicity).
    pub time_masks: usize,
    /// `T`: largest time-mask width, in frames.
    pub max_time_width: usize,
    /// `p`: a time mask covers at most `floor(p * frames)` frames; in `[0, 1]`.
    pub max_time_ratio: f64,
    /// `p_M` (adaptive multiplicity): use `min(time_masks, floor(p_M * frames))` time masks.
    pub adaptive_masks_per_frame: Option<f64>,
    /// `p_S` (adaptive size): time masks are also at most `floor(p_S * frames)` wide.
    pub adaptive_width_ratio: Option<f64>,
    /// Value written into masked cells.
    pub mask_value: MaskValue,
}

impl SpecAugmentConfig {
    /// LibriSpeech basic (LB): `F = 27, m_F = 1, T = 100, p = 1.0, m_T = 1`.
    pub fn librispeech_basic() -> Self {
        Self::fixed(1, 27, 1, 100, 1.0)
    }

    /// LibriSpeech double (LD): `F = 27, m_F = 2, T = 100, p = 1.0, m_T = 2`.
    pub fn librispeech_double() -> Self {
        Self::fixed(2, 27, 2, 100, 1.0)
    }

    /// Switchboard mild (SM): `F = 15, m_F = 2, T = 70, p = 0.2, m_T = 2`.
    pub fn switchboard_mild() -> Self {
        Self::fixed(2, 15, 2, 70, 0.2)
    }

    /// Switchboard strong (SS): `F = 27, m_F = 2, T = 40, p = 0.2, m_T = 2`.
    pub fn switchboard_strong() -> Self {
        Self::fixed(2, 27, 2, 40, 0.2)
    }

    /// LD with adaptive time masks (Park et al., 2020): `F = 27, m_F = 2`, up to 20 time masks with
    /// `p_M = 0.04` (one per 25 frames) and width at most `p_S = 0.04` of the utterance.
    pub fn librispeech_double_adaptive() -> Self {
        SpecAugmentConfig {
            adaptive_masks_per_frame: Some(0.04),
            adaptive_width_ratio: Some(0.04),
            ..Self::fixed(2, 27, 20, usize::MAX, 1.0)
        }
    }

    fn fixed(m_f: usize, f: usize, m_t: usize, t: usize, p: f64) -> Self {
        SpecAugmentConfig {
            freq_masks: m_f,
            max_freq_width: f,
            time_masks: m_t,
            max_time_width: t,
            max_time_ratio: p,
            adaptive_masks_per_frame: None,
            adaptive_width_ratio: None,
            mask_value: MaskValue::Zero,
        }
    }

    /// Checks that the ratios are finite and in `[0, 1]`.
    pub fn validate(&self) -> Result<(), AudioError> {
        let ratio = |field: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(AudioError::config(field, format!("{v} outside [0, 1]")))
            }
        };
        ratio("max_time_ratio", self.max_time_ratio)?;
        if let Some(v) = self.adaptive_masks_per_frame {
            ratio("adaptive_masks_per_frame", v)?;
        }
        if let Some(v) = self.adaptive_width_ratio {
            ratio("adaptive_width_ratio", v)?;
        }
        Ok(())
    }

    /// Number of time masks and largest time-mask width for an utterance of `frames` frames.
    pub fn time_policy(&self, frames: usize) -> (usize, usize) {
        // Ratios are decimal fractions (0.04, 0.2) that binary floats hold slightly off: without the
        // 1e-9 nudge, floor(0.29 * 100) would be 28.
        let of = |r: f64| (r * frames as f64 + 1e-9).floor() as usize;
        let count = match self.adaptive_masks_per_frame {
            Some(p_m) => self.time_masks.min(of(p_m)),
            None => self.time_masks,
        };
        let mut width = self.max_time_width.min(of(self.max_time_ratio));
        if let Some(p_s) = self.adaptive_width_ratio {
            width = width.min(of(p_s));
        }
        (count, width.min(frames))
    }
}

/// Which axis a mask covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskAxis {
    /// Bins `start..start + width` of every frame.
    Frequency,
    /// Every bin of frames `start..start + width`.
    Time,
}

/// One applied mask (width 0 is possible and masks nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mask {
    /// The axis masked.
    pub axis: MaskAxis,
    /// First bin or frame masked.
    pub start: usize,
    /// Number of bins or frames masked.
    pub width: usize,
}

/// Applies the masks of `config` to `features` in place, drawing from `rng`, and returns them in the
/// order drawn (frequency masks first). An empty matrix is left as is (masks of width 0).
///
/// Errors: an invalid config (see [`SpecAugmentConfig::validate`]).
pub fn spec_augment<R: Rng + ?Sized>(
    config: &SpecAugmentConfig,
    features: &mut Features,
    rng: &mut R,
) -> Result<Vec<Mask>, AudioError> {
    config.validate()?;
    features.validate()?;
    let (frames, bins) = (features.frames, features.bins);
    let fill: Vec<f32> = match config.mask_value {
        MaskValue::Zero => vec![0.0; bins],
        MaskValue::Mean => {
            let mut mean = vec![0.0f64; bins];
            for row in features.data.chunks_exact(bins.max(1)) {
                for (m, &x) in mean.iter_mut().zip(row) {
                    *m += f64::from(x);
                }
            }
            mean.iter()
                .map(|m| (m / frames.max(1) as f64) as f32)
                .collect()
        }
    };
    let (time_count, time_width) = config.time_policy(frames);
    let mut masks = Vec::with_capacity(config.freq_masks + time_count);
    for _ in 0..config.freq_masks {
        let width = rng.random_range(0..=config.max_freq_width).min(bins);
        let start = rng.random_range(0..=bins - width);
        masks.push(Mask {
            axis: MaskAxis::Frequency,
            start,
            width,
        });
    }
    for _ in 0..time_count {
        let width = rng.random_range(0..=time_width);
        let start = rng.random_range(0..=frames - width);
        masks.push(Mask {
            axis: MaskAxis::Time,
            start,
            width,
        });
    }
    for mask in &masks {
        match mask.axis {
            MaskAxis::Frequency => {
                for row in features.data.chunks_exact_mut(bins.max(1)) {
                    let r = mask.start..mask.start + mask.width;
                    row[r.clone()].copy_from_slice(&fill[r]);
                }
            }
            MaskAxis::Time => {
                for t in mask.start..mask.start + mask.width {
                    features.data[t * bins..(t + 1) * bins].copy_from_slice(&fill);
                }
            }
        }
    }
    Ok(masks)
}
