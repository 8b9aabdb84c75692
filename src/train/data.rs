//! Corpus preparation: the character vocabulary, transcripts to labels, audio to features, global
//! CMVN, length-bucketed batches and the training-time augmentations (speed perturbation, additive
//! noise, SpecAugment).

use std::path::{Path, PathBuf};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::{
    read_audio, spec_augment, speed_perturb, AudioError, CmvnStats, Fbank, FbankConfig, Features, GlobalCmvn,
    SpecAugmentConfig, WORKING_RATE,
};
use crate::decode::{DecodeError, Vocabulary};
use crate::nn::Batch;

use super::error::TrainError;
use super::manifest::read_manifest;

/// The characters after the blank, in class order: class 0 is the blank, 1 the space (the word
/// separator), 2 the apostrophe, 3..=28 `a`..=`z`; 29 classes in all.
pub const CHARS: &str = " 'abcdefghijklmnopqrstuvwxyz";

/// The 29-class character vocabulary (blank 0, separator = space at 1): [`OutputUnits::Chars`].
pub fn vocabulary() -> Vocabulary {
    OutputUnits::Chars.vocabulary()
}

/// What the acoustic model's output classes are, i.e. how transcripts become CTC targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputUnits {
    /// 29 classes: the blank, then [`CHARS`] (space, apostrophe, `a`-`z`); a word boundary is a
    /// space class of its own, which needs an output frame between the words.
    #[default]
    Chars,
    /// 55 classes, no space: the blank, then the apostrophe and `a`-`z` inside a word (classes
    /// 1-27), then the same 27 beginning a word (28-54, strings `"\u{2581}a"`; see
    /// [`Vocabulary::word_start_chars`]). A word boundary is marked on the first letter of the next
    /// word, so it costs no frame: in fast speech, "two oh" needs 5 output frames instead of 6.
    WordStart,
}

impl OutputUnits {
    /// The decoding vocabulary of these units.
    pub fn vocabulary(self) -> Vocabulary {
        // CHARS has no duplicate and no empty token, so construction cannot fail.
        let v = match self {
            OutputUnits::Chars => Vocabulary::from_chars(CHARS),
            OutputUnits::WordStart => Vocabulary::word_start_chars(CHARS),
        };
        v.unwrap_or_else(|_| unreachable!("CHARS is a valid vocabulary"))
    }
}

/// Log-mel feature settings saved with a model, so that inference computes the same features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSettings {
    /// Sample rate the audio is resampled to, in Hz.
    pub sample_rate: u32,
    /// Mel bins per frame (the model's input dimension).
    pub num_mel_bins: usize,
    /// Analysis window, in milliseconds.
    pub frame_length_ms: f64,
    /// Hop between frames, in milliseconds.
    pub frame_shift_ms: f64,
}

impl Default for FeatureSettings {
    /// 16 kHz, 80 bins, 25 ms windows every 10 ms (Kaldi's defaults with 80 bins).
    fn default() -> Self {
        FeatureSettings {
            sample_rate: WORKING_RATE,
            num_mel_bins: 80,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
        }
    }
}

impl FeatureSettings {
    /// The filterbank extractor for these settings (no dither: features are deterministic).
    pub fn fbank(&self) -> Result<Fbank, TrainError> {
        let config = FbankConfig {
            sample_rate: self.sample_rate,
            num_mel_bins: self.num_mel_bins,
            frame_length_ms: self.frame_length_ms,
            frame_shift_ms: self.frame_shift_ms,
            dither: 0.0,
            ..FbankConfig::default()
        };
        Fbank::new(config)
            .map_err(|source| TrainError::Audio { path: PathBuf::from("<feature settings>"), source })
    }
}

/// One utterance held in memory: its waveform, transcript and labels.
#[derive(Clone, Debug)]
pub struct Utterance {
    /// The audio file it came from.
    pub path: PathBuf,
    /// Mono samples at [`FeatureSettings::sample_rate`], in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// The transcript.
    pub text: String,
    /// The transcript as class indices of the vocabulary it was loaded with (see [`load_corpus`]).
    pub labels: Vec<u32>,
    /// The manifest's `kind` field (`digits`, `sentence`) when present.
    pub kind: Option<String>,
    /// The manifest's `speaker` field (e.g. `espeak:en-us+m3`) when present (see
    /// [`ManifestEntry::speaker`](super::manifest::ManifestEntry::speaker)).
    pub speaker: Option<String>,
}

/// A manifest loaded into memory.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The manifest.
    pub manifest: PathBuf,
    /// The usable utterances, in manifest order.
    pub utterances: Vec<Utterance>,
    /// Audio files that could not be read (only when skipping bad files), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Reads a manifest and decodes all its audio (in parallel), spelling each transcript with `vocab`
/// (e.g. [`OutputUnits::vocabulary`], or a trained model's). Transcripts `vocab` cannot spell are an
/// error naming the manifest line; a missing or corrupt audio file is an error naming the file,
/// unless `skip_bad`, in which case it is listed in [`Corpus::skipped`] and left out.
pub fn load_corpus(manifest: &Path, skip_bad: bool, vocab: &Vocabulary) -> Result<Corpus, TrainError> {
    let entries = read_manifest(manifest)?;
    let mut labels = Vec::with_capacity(entries.len());
    for e in &entries {
        match vocab.encode(&e.text) {
            Ok(l) => labels.push(l.into_iter().map(|c| c as u32).collect()),
            Err(err) => {
                let character = match err {
                    DecodeError::UnknownToken { byte_offset, .. } => {
                        e.text[byte_offset..].chars().next().unwrap_or(' ')
                    }
                    // `encode` reports nothing else; the line and text still name the problem.
                    _ => ' ',
                };
                return Err(TrainError::BadTranscript {
                    manifest: manifest.to_path_buf(),
                    line: e.line,
                    character,
                    text: e.text.clone(),
                });
            }
        }
    }
    let decoded: Vec<Result<Vec<f32>, TrainError>> = entries
        .par_iter()
        .map(|e| {
            read_audio(&e.audio_filepath)
                .map(|a| a.samples)
                .map_err(|source| TrainError::Audio { path: e.audio_filepath.clone(), source })
        })
        .collect();
    let mut utterances = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    for ((e, l), r) in entries.into_iter().zip(labels).zip(decoded) {
        match r {
            Ok(samples) => utterances.push(Utterance {
                path: e.audio_filepath.clone(),
                samples,
                kind: e.extra.get("kind").and_then(|k| k.as_str()).map(str::to_string),
                speaker: e.speaker(),
                text: e.text,
                labels: l,
            }),
            Err(TrainError::Audio { path, source }) if skip_bad => skipped.push((path, source.to_string())),
            Err(err) => return Err(err),
        }
    }
    if utterances.is_empty() {
        return Err(TrainError::EmptyManifest { manifest: manifest.to_path_buf() });
    }
    Ok(Corpus { manifest: manifest.to_path_buf(), utterances, skipped })
}

/// Silence trimming of training audio: which part of a waveform to keep.
///
/// The waveform is cut into 10 ms frames; a frame is speech when its mean square is within
/// `threshold_db` of the loudest frame's. The kept range runs from `margin_s` before the first speech
/// frame to `margin_s` after the end of the last one (clamped to the waveform).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrimSilence {
    /// How far below the loudest 10 ms frame a frame still counts as speech, in dB (negative).
    pub threshold_db: f64,
    /// Silence kept on each side of the speech, in seconds.
    pub margin_s: f64,
}

impl Default for TrimSilence {
    /// Frames within 40 dB of the loudest are speech; 100 ms of silence is kept on each side.
    fn default() -> Self {
        TrimSilence { threshold_db: -40.0, margin_s: 0.1 }
    }
}

impl TrimSilence {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.threshold_db.is_finite() && self.threshold_db < 0.0) {
            return Err(TrainError::InvalidOption {
                option: "trim_silence.threshold_db",
                reason: format!("{} dB is not a negative number", self.threshold_db),
            });
        }
        if !(self.margin_s.is_finite() && self.margin_s >= 0.0) {
            return Err(TrainError::InvalidOption {
                option: "trim_silence.margin_s",
                reason: format!("{} s is not a non-negative duration", self.margin_s),
            });
        }
        Ok(())
    }

    /// The sample range of `samples` (at `rate` Hz) to keep: the whole waveform when it has no frame
    /// above zero energy (nothing to measure against) or is shorter than one frame.
    pub fn keep_range(&self, samples: &[f32], rate: u32) -> std::ops::Range<usize> {
        let hop = (rate as usize / 100).max(1);
        let energy: Vec<f64> = samples
            .chunks(hop)
            .map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / c.len() as f64)
            .collect();
        let peak = energy.iter().copied().fold(0.0f64, f64::max);
        if !(peak > 0.0 && peak.is_finite()) {
            return 0..samples.len();
        }
        let floor = peak * 10f64.powf(self.threshold_db / 10.0);
        let first = energy.iter().position(|&e| e >= floor).unwrap_or(0);
        let last = energy.iter().rposition(|&e| e >= floor).unwrap_or(energy.len() - 1);
        let margin = (self.margin_s * f64::from(rate)).round() as usize;
        let start = (first * hop).saturating_sub(margin);
        let end = ((last + 1) * hop).saturating_add(margin).min(samples.len());
        start..end
    }
}

/// Trims every utterance of `corpus` to [`TrimSilence::keep_range`]; returns the fraction of samples
/// removed (0 for an empty corpus).
pub fn trim_corpus(corpus: &mut Corpus, trim: &TrimSilence, rate: u32) -> f64 {
    let before: usize = corpus.utterances.iter().map(|u| u.samples.len()).sum();
    corpus.utterances.par_iter_mut().for_each(|u| {
        let r = trim.keep_range(&u.samples, rate);
        u.samples.truncate(r.end);
        u.samples.drain(..r.start);
    });
    let after: usize = corpus.utterances.iter().map(|u| u.samples.len()).sum();
    if before == 0 {
        0.0
    } else {
        1.0 - after as f64 / before as f64
    }
}

/// Log-mel features of `samples` (no normalisation), `(frames, bins)` row-major.
pub fn compute_features(fbank: &mut Fbank, samples: &[f32], path: &Path) -> Result<Features, TrainError> {
    fbank.compute(samples).map_err(|source| TrainError::Audio { path: path.to_path_buf(), source })
}

/// Features of every utterance (in parallel, one extractor per worker), in corpus order.
pub fn features_of_corpus(settings: &FeatureSettings, corpus: &Corpus) -> Result<Vec<Features>, TrainError> {
    settings.fbank()?;
    corpus
        .utterances
        .par_iter()
        .map_init(|| settings.fbank(), |fb, u| compute_features(worker_fbank(fb)?, &u.samples, &u.path))
        .collect()
}

/// A worker's extractor, or the error its construction gave (the settings were checked once before
/// the workers started, so this is not expected).
fn worker_fbank(fb: &mut Result<Fbank, TrainError>) -> Result<&mut Fbank, TrainError> {
    match fb {
        Ok(f) => Ok(f),
        Err(e) => Err(TrainError::InvalidOption { option: "features", reason: e.to_string() }),
    }
}

/// Global mean/variance statistics over a set of feature matrices.
pub fn global_cmvn(features: &[Features], manifest: &Path) -> Result<GlobalCmvn, TrainError> {
    let bins = features.first().map_or(0, |f| f.bins);
    let mut stats = CmvnStats::new(bins);
    for f in features {
        stats.accumulate(f).map_err(|source| TrainError::Audio { path: manifest.to_path_buf(), source })?;
    }
    stats.finalize().map_err(|source| TrainError::Audio { path: manifest.to_path_buf(), source })
}

/// Training-time augmentation switches and ranges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentOptions {
    /// Speed perturbation: each utterance of each epoch is played at one of `speeds` times its speed
    /// (equally likely), by resampling.
    pub speed_perturb: bool,
    /// The speed factors of speed perturbation (each in `[0.5, 2.0]`; 1.0 is the audio as it is).
    /// Absent from the options of older runs, which used [`SPEEDS`].
    #[serde(default = "default_speeds")]
    pub speeds: Vec<f64>,
    /// Probability that an utterance gets additive white noise; 0 disables noise.
    pub noise_prob: f64,
    /// Signal-to-noise ratio range of the additive noise, in dB (drawn uniformly).
    pub noise_snr_db: (f64, f64),
    /// SpecAugment: frequency masks (count, widest in bins); `(0, 0)` disables them.
    pub freq_masks: (usize, usize),
    /// SpecAugment: time masks (count, widest in frames); `(0, 0)` disables them.
    pub time_masks: (usize, usize),
    /// Vocal-tract-length perturbation: each utterance of each epoch gets a frequency warp factor
    /// drawn uniformly from `[1 - vtlp, 1 + vtlp]` (see [`vtlp_warp`]); 0 disables it. Absent from
    /// the options of older runs, which had none.
    #[serde(default)]
    pub vtlp: f64,
    /// Tempo perturbation: each utterance of each epoch is stretched in time by a factor drawn
    /// uniformly from `[tempo_center - tempo, tempo_center + tempo]` (see [`tempo_stretch`]; above 1
    /// is faster), after speed perturbation, so that tempo and pitch vary independently; 0 disables
    /// it (unless `tempo_rate` is set, which replaces the range). Absent from the options of older
    /// runs, which had none.
    #[serde(default)]
    pub tempo: f64,
    /// Centre of the tempo factors (1 = as fast on average as the corpus); above 1 shifts training
    /// towards faster speech than any training voice has; ignored when `tempo` is 0. Absent from the
    /// options of older runs, which had 1.
    #[serde(default = "unit_tempo")]
    pub tempo_center: f64,
    /// Speaking-rate targets instead of a factor range: when set to `(lo, hi)` (characters of the
    /// transcript, spaces included, per second of the training audio as trimmed and
    /// speed-perturbed), each utterance of each epoch is stretched towards a rate drawn uniformly
    /// from `[lo, hi]`, the factor clamped to [`TEMPO_FACTORS`]; `tempo` and `tempo_center` are then
    /// ignored. Where a factor range makes a slow voice a little faster and a fast voice a lot
    /// faster, this gives every voice the whole range of rates. Absent from the options of older
    /// runs, which had none.
    #[serde(default)]
    pub tempo_rate: Option<(f64, f64)>,
}

fn unit_tempo() -> f64 {
    1.0
}

fn default_speeds() -> Vec<f64> {
    SPEEDS.to_vec()
}

impl Default for AugmentOptions {
    /// Speed perturbation on, tempo factors from 0.95 to 1.35; no additive noise (`noise_prob` 0; the
    /// SNR range 10-30 dB applies when it is raised); no VTLP; no SpecAugment (see
    /// [`AugmentOptions::with_spec_augment`]).
    ///
    /// Within the training budget the model underfits, and both noise and SpecAugment slowed learning
    /// far more than they helped on the clean held-out voices of the dev split (dev CER after 8
    /// epochs: 30.9 % with both, 24.5 % without noise, 23.5 % without noise and with silence trimming,
    /// 18.1 % without SpecAugment as well; docs/TRAINING.md). Noise also forces the features of noisy
    /// items to be recomputed every epoch.
    fn default() -> Self {
        AugmentOptions {
            speed_perturb: true,
            speeds: default_speeds(),
            noise_prob: 0.0,
            noise_snr_db: (10.0, 30.0),
            freq_masks: (0, 0),
            time_masks: (0, 0),
            vtlp: 0.0,
            // Tempo factors 0.95-1.35 on top of the speed factors (docs/TRAINING.md, "Training on
            // faster speech"): at a fixed 26 epochs, seeds 1-3, the test greedy digit word errors fell
            // from 18 (0.88 %) to 11 (0.54 %) in all against 0.85-1.15, nearly all of them on the
            // fastest test voice, with the mean sentences CER (13.35 against 13.19 %) and dev CER
            // (7.87 against 7.77 %) within seed noise; and an epoch takes about 10 % less time
            // (220 against 199 utterances per second), since the utterances are shorter.
            tempo: 0.2,
            tempo_center: 1.15,
            tempo_rate: None,
        }
    }
}

impl AugmentOptions {
    /// These options with SpecAugment on as in the earlier default: two frequency masks of up to 15
    /// bins and two time masks of up to 20 frames (capped at 20 % of the utterance).
    pub fn with_spec_augment(self) -> Self {
        AugmentOptions { freq_masks: (2, 15), time_masks: (2, 20), ..self }
    }

    /// No augmentation at all.
    pub fn none() -> Self {
        AugmentOptions {
            speed_perturb: false,
            speeds: default_speeds(),
            noise_prob: 0.0,
            noise_snr_db: (10.0, 30.0),
            freq_masks: (0, 0),
            time_masks: (0, 0),
            vtlp: 0.0,
            tempo: 0.0,
            tempo_center: 1.0,
            tempo_rate: None,
        }
    }

    /// The range `[tempo_center - tempo, tempo_center + tempo]` the tempo factors are drawn from.
    pub fn tempo_range(&self) -> (f64, f64) {
        (self.tempo_center - self.tempo, self.tempo_center + self.tempo)
    }

    /// Whether tempo perturbation is on, by factor range or by rate targets.
    pub fn tempo_on(&self) -> bool {
        self.tempo > 0.0 || self.tempo_rate.is_some()
    }

    /// Whether features must be recomputed from the waveform for every use (noise changes them).
    pub fn needs_waveform(&self) -> bool {
        self.noise_prob > 0.0
    }

    fn spec_augment(&self) -> Option<SpecAugmentConfig> {
        if self.freq_masks.0 * self.freq_masks.1 == 0 && self.time_masks.0 * self.time_masks.1 == 0 {
            return None;
        }
        let mut c = SpecAugmentConfig::librispeech_basic();
        c.freq_masks = if self.freq_masks.1 == 0 { 0 } else { self.freq_masks.0 };
        c.max_freq_width = self.freq_masks.1;
        c.time_masks = if self.time_masks.1 == 0 { 0 } else { self.time_masks.0 };
        c.max_time_width = self.time_masks.1;
        c.max_time_ratio = 0.2;
        Some(c)
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(0.0..=1.0).contains(&self.noise_prob) {
            return Err(TrainError::InvalidOption {
                option: "--noise-prob",
                reason: format!("{} is not a probability in [0, 1]", self.noise_prob),
            });
        }
        if !(0.0..0.5).contains(&self.vtlp) {
            return Err(TrainError::InvalidOption {
                option: "--vtlp",
                reason: format!("{} is not a warp range in [0, 0.5)", self.vtlp),
            });
        }
        if !(0.0..0.5).contains(&self.tempo) {
            return Err(TrainError::InvalidOption {
                option: "--tempo",
                reason: format!("{} is not a tempo range in [0, 0.5)", self.tempo),
            });
        }
        let (lo, hi) = self.tempo_range();
        if !TEMPO_FACTORS.contains(&lo) || !TEMPO_FACTORS.contains(&hi) {
            return Err(TrainError::InvalidOption {
                option: "--tempo-center",
                reason: format!(
                    "tempo factors {lo}-{hi} (centre {} +- {}) leave [0.5, 2]",
                    self.tempo_center, self.tempo
                ),
            });
        }
        if let Some((lo, hi)) = self.tempo_rate {
            if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi) {
                return Err(TrainError::InvalidOption {
                    option: "--tempo-rate",
                    reason: format!("{lo},{hi} is not a range of positive speaking rates"),
                });
            }
        }
        if self.speed_perturb && self.speeds.is_empty() {
            return Err(TrainError::InvalidOption {
                option: "--speeds",
                reason: "speed perturbation needs at least one factor".into(),
            });
        }
        check_speeds(&self.speeds)?;
        for (option, (count, _)) in [("--freq-masks", self.freq_masks), ("--time-masks", self.time_masks)] {
            if count > MAX_MASKS {
                return Err(TrainError::InvalidOption {
                    option,
                    reason: format!("{count} masks per utterance; at most {MAX_MASKS}"),
                });
            }
        }
        let (a, b) = self.noise_snr_db;
        if !(a.is_finite() && b.is_finite() && a <= b) {
            return Err(TrainError::InvalidOption {
                option: "--noise-snr",
                reason: format!("SNR range {a}..{b} dB must be finite and ordered"),
            });
        }
        Ok(())
    }
}

/// The most SpecAugment masks of one kind per utterance: more would blank out any utterance and
/// only cost time.
pub const MAX_MASKS: usize = 16;

/// The default speed factors of speed perturbation (Kaldi's recipes).
pub const SPEEDS: [f64; 3] = [0.9, 1.0, 1.1];

/// Every speed factor must be one [`speed_perturb`] accepts.
fn check_speeds(speeds: &[f64]) -> Result<(), TrainError> {
    match speeds.iter().find(|f| !(0.5..=2.0).contains(*f)) {
        Some(f) => Err(TrainError::InvalidOption {
            option: "--speeds",
            reason: format!("speed factor {f} is outside [0.5, 2.0]"),
        }),
        None => Ok(()),
    }
}

/// A seeded generator for one (purpose, epoch, item) triple, so that every random choice of a run is
/// reproducible and independent of thread scheduling and of where a run was resumed.
pub fn rng_for(seed: u64, purpose: u64, epoch: u64, item: u64) -> Xoshiro256PlusPlus {
    let mut z = seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(epoch.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z ^= item.wrapping_mul(0x94D0_49BB_1331_11EB);
    Xoshiro256PlusPlus::seed_from_u64(z)
}

/// Adds white Gaussian noise to `samples` at `snr_db` (relative to the signal's mean power).
pub fn add_noise(samples: &mut [f32], snr_db: f64, rng: &mut Xoshiro256PlusPlus) {
    let power =
        samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / samples.len().max(1) as f64;
    if power <= 0.0 {
        return;
    }
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    let mut i = 0;
    while i < samples.len() {
        // Box-Muller: two independent normals from two uniforms.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * sigma;
        let th = 2.0 * std::f64::consts::PI * u2;
        samples[i] = (f64::from(samples[i]) + r * th.cos()) as f32;
        if i + 1 < samples.len() {
            samples[i + 1] = (f64::from(samples[i + 1]) + r * th.sin()) as f32;
        }
        i += 2;
    }
}

/// Vocal-tract-length perturbation (after Jaitly and Hinton, 2013) applied to log-mel features
/// instead of the spectrum, so that cached features can be reused: bin `k` of every frame is replaced
/// by the (linearly interpolated) value the unwarped features have at frequency `g(f_k)`, where `f_k`
/// is the centre of mel filter `k` and `g` stretches the frequency axis by `alpha` below a boundary
/// and joins `(nyquist, nyquist)` linearly above it, so that the band edge stays in place:
///
/// ```text
/// b = 0.6 * nyquist * min(alpha, 1) / alpha
/// g(f) = alpha * f                                             for f <= b
/// g(f) = alpha * b + (nyquist - alpha * b) * (f - b) / (nyquist - b)   above
/// ```
///
/// `alpha > 1` reads each filter from higher frequencies, i.e. moves the spectral envelope (the
/// formants) down, as a longer vocal tract would; `alpha < 1` moves it up; `alpha == 1` leaves the
/// features unchanged. The filter centres are those of [`Fbank`]: `num_mel_bins` filters equally
/// spaced on `mel(f) = 1127 ln(1 + f / 700)` between `low_hz` and `nyquist` (in Hz). `features` is
/// `(frames, bins)` row-major log-mel, before normalisation. Values read beyond the first or last
/// filter take the edge filter's value. Against warping the filters themselves this ignores the
/// change of each filter's bandwidth (a ~`ln(alpha)` offset of the log energy, which global CMVN and
/// the training noise absorb); its cost is one interpolation per cell.
///
/// Errors: `alpha` not finite or outside `[0.5, 2]`, or `0 <= low_hz < nyquist` not holding.
pub fn vtlp_warp(features: &mut Features, alpha: f64, low_hz: f64, nyquist: f64) -> Result<(), AudioError> {
    if !(alpha.is_finite() && (0.5..=2.0).contains(&alpha)) {
        return Err(AudioError::config("vtlp alpha", format!("{alpha} is outside [0.5, 2]")));
    }
    if !(low_hz.is_finite() && nyquist.is_finite() && 0.0 <= low_hz && low_hz < nyquist) {
        return Err(AudioError::config("vtlp band", format!("{low_hz}..{nyquist} Hz is not a band")));
    }
    let bins = features.bins;
    if alpha == 1.0 || bins < 2 || features.frames == 0 {
        return Ok(());
    }
    let map = vtlp_source_bins(bins, alpha, low_hz, nyquist);
    let mut row = vec![0.0f32; bins];
    for frame in features.data.chunks_exact_mut(bins) {
        row.copy_from_slice(frame);
        for (out, &(i, w)) in frame.iter_mut().zip(&map) {
            *out = row[i] + w * (row[i + 1] - row[i]);
        }
    }
    Ok(())
}

/// For each of `bins` mel filters, the unwarped filter just below the frequency it reads under the
/// warp `alpha` of [`vtlp_warp`] and the interpolation weight of the next one: `(i, w)` with
/// `i + 1 < bins` and `w` in `[0, 1]`.
fn vtlp_source_bins(bins: usize, alpha: f64, low_hz: f64, nyquist: f64) -> Vec<(usize, f32)> {
    let mel = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let hz = |m: f64| 700.0 * ((m / 1127.0).exp() - 1.0);
    let (m_lo, m_hi) = (mel(low_hz), mel(nyquist));
    let step = (m_hi - m_lo) / (bins + 1) as f64;
    let b = 0.6 * nyquist * alpha.min(1.0) / alpha;
    let warp = |f: f64| {
        if f <= b {
            alpha * f
        } else {
            alpha * b + (nyquist - alpha * b) * (f - b) / (nyquist - b)
        }
    };
    (0..bins)
        .map(|k| {
            let centre = hz(m_lo + (k + 1) as f64 * step);
            // Position of the warped frequency on the axis of filter indices (filter k's centre is
            // at m_lo + (k + 1) step), clamped to the first and last filters.
            let x = ((mel(warp(centre)) - m_lo) / step - 1.0).clamp(0.0, (bins - 1) as f64);
            let i = (x.floor() as usize).min(bins - 2);
            (i, (x - i as f64) as f32)
        })
        .collect()
}

/// The tempo factors [`tempo_stretch`] accepts: at most twice as fast or half as fast.
pub const TEMPO_FACTORS: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// The tempo factor that makes an utterance of `chars` transcript characters over `seconds` of audio
/// say `target` characters per second, clamped to [`TEMPO_FACTORS`] (so an utterance too slow or too
/// fast to reach the target gets the nearest factor [`tempo_stretch`] accepts; one without
/// characters gets the fastest).
pub fn tempo_factor_for_rate(chars: usize, seconds: f64, target: f64) -> f64 {
    let rate = chars as f64 / seconds;
    let factor = target / rate;
    if factor.is_nan() {
        return *TEMPO_FACTORS.end();
    }
    factor.clamp(*TEMPO_FACTORS.start(), *TEMPO_FACTORS.end())
}

/// Changes the tempo of an utterance without changing its pitch or spectral envelope: frame `j` of
/// the result is the unstretched features linearly interpolated at frame position `j * factor`
/// (clamped to the last frame), for `round(frames / factor)` frames (at least 1). `factor > 1` makes
/// the speech faster (fewer frames), `factor < 1` slower; `factor == 1` changes nothing.
///
/// Speed perturbation by resampling changes tempo, pitch and formants together; stretching the
/// log-mel frames (each a 25 ms spectrum) changes only how fast they follow each other, like a
/// time-domain tempo change (SoX `tempo`, WSOLA) seen through the filterbank. `features` is
/// `(frames, bins)` row-major log-mel, before normalisation; with 0 frames it stays empty.
///
/// Errors: `factor` not finite or outside [`TEMPO_FACTORS`].
pub fn tempo_stretch(features: &Features, factor: f64) -> Result<Features, AudioError> {
    if !(factor.is_finite() && TEMPO_FACTORS.contains(&factor)) {
        return Err(AudioError::config("tempo factor", format!("{factor} is outside [0.5, 2]")));
    }
    let (n, bins) = (features.frames, features.bins);
    if factor == 1.0 || n == 0 {
        return Ok(features.clone());
    }
    let out_frames = ((n as f64 / factor).round() as usize).max(1);
    let last = (n - 1) as f64;
    let mut data = Vec::with_capacity(out_frames * bins);
    for j in 0..out_frames {
        let x = (j as f64 * factor).min(last);
        let i = (x.floor() as usize).min(n.saturating_sub(2));
        let w = (x - i as f64) as f32;
        let a = &features.data[i * bins..(i + 1) * bins];
        if i + 1 < n {
            let b = &features.data[(i + 1) * bins..(i + 2) * bins];
            data.extend(a.iter().zip(b).map(|(&a, &b)| a + w * (b - a)));
        } else {
            data.extend_from_slice(a);
        }
    }
    Ok(Features { data, frames: out_frames, bins })
}

/// One utterance of a training batch: (utterance index, speed index into [`FeatureStore::speeds`],
/// additive noise as (SNR in dB, generator seed) or none).
pub type BatchItem = (usize, usize, Option<(f64, u64)>);

/// Training features: cached per (utterance, speed) when no noise is added, recomputed otherwise.
pub struct FeatureStore {
    settings: FeatureSettings,
    /// Speed factors by index; 1.0 is among them.
    speeds: Vec<f64>,
    /// `cache[speed][utt]`: log-mel features (not normalised).
    cache: Vec<Vec<Option<Features>>>,
}

impl FeatureStore {
    /// A store for the speed factors `speeds` (in this order, then 1.0 if it is not among them) whose
    /// speed-1.0 entries are `base` (features of every utterance, corpus order).
    ///
    /// # Errors
    /// [`TrainError::InvalidOption`] for a factor outside `[0.5, 2.0]`, or feature settings the
    /// extractor refuses.
    pub fn new(settings: &FeatureSettings, base: Vec<Features>, speeds: &[f64]) -> Result<Self, TrainError> {
        check_speeds(speeds)?;
        let mut speeds = speeds.to_vec();
        if !speeds.contains(&1.0) {
            speeds.push(1.0);
        }
        let n = base.len();
        let cache: Vec<Vec<Option<Features>>> = (0..speeds.len()).map(|_| vec![None; n]).collect();
        settings.fbank()?;
        let mut store = FeatureStore { settings: settings.clone(), speeds, cache };
        let unit = store.unit_speed();
        store.cache[unit] = base.into_iter().map(Some).collect();
        Ok(store)
    }

    /// The speed factors by index: those given to [`FeatureStore::new`], then 1.0 if they lacked it.
    pub fn speeds(&self) -> &[f64] {
        &self.speeds
    }

    /// The index of speed 1.0 (the audio as it is).
    pub fn unit_speed(&self) -> usize {
        self.speeds.iter().position(|&f| f == 1.0).unwrap_or_default()
    }

    /// Features for a batch of utterances: `items[i] = (utterance index, speed index, noise seed)`,
    /// computed in parallel. Cached entries are reused; with noise the features are always recomputed.
    pub fn get(&mut self, corpus: &Corpus, items: &[BatchItem]) -> Result<Vec<Features>, TrainError> {
        let rate = self.settings.sample_rate;
        let settings = &self.settings;
        let speeds = &self.speeds;
        let cache = &self.cache;
        let computed: Vec<Result<(Features, bool), TrainError>> = items
            .par_iter()
            .map_init(
                || settings.fbank(),
                |fb, &(u, s, noise)| {
                    if noise.is_none() {
                        if let Some(f) = &cache[s][u] {
                            return Ok((f.clone(), false));
                        }
                    }
                    let utt = &corpus.utterances[u];
                    let mut samples = if speeds[s] == 1.0 {
                        utt.samples.clone()
                    } else {
                        speed_perturb(&utt.samples, rate, speeds[s])
                            .map_err(|source| TrainError::Audio { path: utt.path.clone(), source })?
                    };
                    if let Some((snr, seed)) = noise {
                        add_noise(&mut samples, snr, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
                    }
                    Ok((compute_features(worker_fbank(fb)?, &samples, &utt.path)?, noise.is_none()))
                },
            )
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for (&(u, s, _), r) in items.iter().zip(computed) {
            let (f, cacheable) = r?;
            if cacheable {
                self.cache[s][u] = Some(f.clone());
            }
            out.push(f);
        }
        Ok(out)
    }
}

/// Normalises features with `cmvn`, optionally applies SpecAugment (seeded per item), and pads them
/// into a `(B, T, bins)` batch with per-sequence lengths.
pub fn make_batch(
    mut features: Vec<Features>,
    cmvn: &GlobalCmvn,
    augment: Option<(&AugmentOptions, &[u64])>,
    path_for_errors: &Path,
) -> Result<Batch<f32>, TrainError> {
    let audio_err = |source| TrainError::Audio { path: path_for_errors.to_path_buf(), source };
    let spec = augment.and_then(|(a, _)| a.spec_augment());
    for (i, f) in features.iter_mut().enumerate() {
        cmvn.apply(f).map_err(audio_err)?;
        if let (Some(spec), Some((_, seeds))) = (&spec, augment) {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seeds[i]);
            spec_augment(spec, f, &mut rng).map_err(audio_err)?;
        }
    }
    let bins = cmvn.bins();
    let time = features.iter().map(|f| f.frames).max().unwrap_or(0);
    let mut data = vec![0.0f32; features.len() * time * bins];
    let lengths: Vec<usize> = features.iter().map(|f| f.frames).collect();
    for (b, f) in features.iter().enumerate() {
        data[b * time * bins..b * time * bins + f.data.len()].copy_from_slice(&f.data);
    }
    Ok(Batch::new(data, features.len(), time, bins, lengths)?)
}

/// Splits utterance indices into batches of similar length: indices are shuffled (seeded by `seed`
/// and `epoch`), sorted by length within windows of 50 batches' worth, cut into batches whose padded
/// size `count * longest` stays within `max_frames` (and at most `max_batch` utterances), and the
/// batch order is shuffled again. `lengths[i]` is utterance `i`'s length in frames.
pub fn bucket_batches(
    lengths: &[usize],
    max_frames: usize,
    max_batch: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = rng_for(seed, 1, epoch, 0);
    let mut idx: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut idx, &mut rng);
    let mean = (lengths.iter().sum::<usize>() / lengths.len().max(1)).max(1);
    let window = (max_frames / mean).max(1) * 50;
    let mut batches = Vec::new();
    for chunk in idx.chunks_mut(window) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        let mut current: Vec<usize> = Vec::new();
        let mut longest = 0;
        for &i in chunk.iter() {
            let l = lengths[i].max(longest);
            if !current.is_empty() && ((current.len() + 1) * l > max_frames || current.len() >= max_batch) {
                batches.push(std::mem::take(&mut current));
                longest = 0;
            }
            longest = longest.max(lengths[i]);
            current.push(i);
        }
        if !current.is_empty() {
            batches.push(current);
        }
    }
    shuffle(&mut batches, &mut rng);
    batches
}

/// Fisher-Yates shuffle with our seeded generator.
pub fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        bucket_batches, features_of_corpus, tempo_factor_for_rate, tempo_stretch, vtlp_source_bins,
        vtlp_warp, AugmentOptions, Corpus, FeatureSettings, FeatureStore, TrimSilence, Utterance,
    };
    use crate::audio::Features;

    fn tone(hz: f32, seconds: f32) -> Vec<f32> {
        let rate = 16_000.0f32;
        (0..(rate * seconds) as usize)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate).sin())
            .collect()
    }

    /// The filter with the most energy, averaged over frames.
    fn peak_bin(f: &Features) -> usize {
        let mut sum = vec![0.0f64; f.bins];
        for t in 0..f.frames {
            for (s, &x) in sum.iter_mut().zip(f.row(t)) {
                *s += f64::from(x);
            }
        }
        (0..f.bins).max_by(|&a, &b| sum[a].total_cmp(&sum[b])).unwrap()
    }

    #[test]
    fn vtlp_moves_a_tone_to_where_the_warped_tone_lies() {
        // Warping by alpha makes filter k read the frequency alpha * f_k, so a 1 kHz tone must peak
        // where an unwarped tone of 1000 / alpha Hz peaks (below the 4.8 kHz boundary the warp is
        // linear).
        let mut fb = FeatureSettings::default().fbank().unwrap();
        for alpha in [0.9, 1.1, 1.2] {
            let mut warped = fb.compute(&tone(1000.0, 0.3)).unwrap();
            vtlp_warp(&mut warped, alpha, 20.0, 8000.0).unwrap();
            let expected = fb.compute(&tone(1000.0 / alpha as f32, 0.3)).unwrap();
            let (got, want) = (peak_bin(&warped), peak_bin(&expected));
            assert!(got.abs_diff(want) <= 1, "alpha {alpha}: peak at filter {got}, expected {want}");
            assert_ne!(
                got,
                peak_bin(&fb.compute(&tone(1000.0, 0.3)).unwrap()),
                "alpha {alpha} moved nothing"
            );
        }
    }

    #[test]
    fn vtlp_of_one_is_the_identity_and_keeps_the_band_edges() {
        let mut fb = FeatureSettings::default().fbank().unwrap();
        let orig = fb.compute(&tone(700.0, 0.2)).unwrap();
        let mut f = orig.clone();
        vtlp_warp(&mut f, 1.0, 20.0, 8000.0).unwrap();
        assert_eq!(f, orig);
        // The source positions of the unit warp are the filters themselves (up to rounding).
        for (k, &(i, w)) in vtlp_source_bins(80, 1.0, 20.0, 8000.0).iter().enumerate() {
            let x = i as f32 + w;
            assert!((x - k as f32).abs() < 1e-4, "filter {k} reads {x}");
        }
        for alpha in [0.8, 0.9, 1.1, 1.25] {
            let map = vtlp_source_bins(80, alpha, 20.0, 8000.0);
            let pos: Vec<f32> = map.iter().map(|&(i, w)| i as f32 + w).collect();
            assert!(map.iter().all(|&(i, w)| i + 1 < 80 && (0.0..=1.0).contains(&w)), "alpha {alpha}");
            assert!(pos.windows(2).all(|p| p[0] <= p[1]), "alpha {alpha}: the warp must be monotone");
            // The top filter stays (nearly) in place: the warp joins (nyquist, nyquist).
            assert!((pos[79] - 79.0).abs() < 0.5, "alpha {alpha}: top filter reads {}", pos[79]);
        }
    }

    #[test]
    fn vtlp_interpolates_within_each_frame_and_rejects_bad_factors() {
        let data: Vec<f32> = (0..3 * 80).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let orig = Features::new(data, 3, 80).unwrap();
        let mut f = orig.clone();
        vtlp_warp(&mut f, 1.07, 20.0, 8000.0).unwrap();
        for t in 0..3 {
            let (lo, hi) = orig.row(t).iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            assert!(f.row(t).iter().all(|&x| (lo..=hi).contains(&x)), "frame {t} left its range");
        }
        assert_ne!(f, orig);
        for bad in [f64::NAN, 0.3, 2.5] {
            assert!(vtlp_warp(&mut f, bad, 20.0, 8000.0).is_err(), "alpha {bad} accepted");
        }
        assert!(vtlp_warp(&mut f, 1.0, 9000.0, 8000.0).is_err(), "empty band accepted");
        let opts = AugmentOptions { vtlp: 0.7, ..AugmentOptions::default() };
        assert!(opts.validate().is_err(), "--vtlp 0.7 accepted");
        assert!(AugmentOptions { vtlp: 0.1, ..opts }.validate().is_ok());
    }

    /// Frames whose every bin holds a value linear in time (frame `t`, bin `k`: `t + 100 k`), so that
    /// a stretched frame's value says exactly which position it read.
    fn ramp(frames: usize, bins: usize) -> Features {
        let data = (0..frames * bins).map(|i| ((i / bins) + 100 * (i % bins)) as f32).collect();
        Features::new(data, frames, bins).unwrap()
    }

    #[test]
    fn tempo_stretch_reads_each_frame_at_its_scaled_position() {
        let orig = ramp(100, 4);
        assert_eq!(tempo_stretch(&orig, 1.0).unwrap(), orig);
        for (factor, frames) in [(1.25, 80), (0.8, 125), (2.0, 50), (0.5, 200), (1.1, 91)] {
            let f = tempo_stretch(&orig, factor).unwrap();
            assert_eq!((f.frames, f.bins), (frames, 4), "factor {factor}");
            for j in 0..f.frames {
                // Clamped at the last frame: slowing down repeats it rather than reading past it.
                let x = (j as f64 * factor).min(99.0) as f32;
                for k in 0..4 {
                    let want = x + 100.0 * k as f32;
                    assert!((f.row(j)[k] - want).abs() < 1e-3, "factor {factor} frame {j} bin {k}");
                }
            }
        }
    }

    #[test]
    fn tempo_factor_for_rate_reaches_the_target_within_bounds() {
        // 12 characters in 1.2 s is 10 per second: 15 per second needs 1.5 times the tempo.
        assert!((tempo_factor_for_rate(12, 1.2, 15.0) - 1.5).abs() < 1e-12);
        assert!((tempo_factor_for_rate(12, 1.2, 8.0) - 0.8).abs() < 1e-12);
        assert_eq!(tempo_factor_for_rate(12, 1.2, 30.0), 2.0);
        assert_eq!(tempo_factor_for_rate(12, 1.2, 4.0), 0.5);
        assert_eq!(tempo_factor_for_rate(0, 1.2, 10.0), 2.0);
        assert_eq!(tempo_factor_for_rate(0, 0.0, 10.0), 2.0);
        let opts = AugmentOptions { tempo_rate: Some((10.0, 22.0)), ..AugmentOptions::none() };
        assert!(opts.validate().is_ok() && opts.tempo_on());
        assert!(!AugmentOptions::none().tempo_on());
        for (lo, hi) in [(0.0, 10.0), (12.0, 10.0), (f64::NAN, 10.0), (5.0, f64::INFINITY)] {
            let bad = AugmentOptions { tempo_rate: Some((lo, hi)), ..AugmentOptions::none() };
            assert!(bad.validate().is_err(), "--tempo-rate {lo},{hi} accepted");
        }
    }

    #[test]
    fn tempo_stretch_edges_and_bad_factors() {
        // A single frame slowed down is repeated (round(1 / 0.6) = 2 frames) and sped up kept; no
        // frames stay none; a short utterance sped up keeps at least one frame.
        let one = ramp(1, 3);
        let slow = tempo_stretch(&one, 0.6).unwrap();
        assert_eq!((slow.frames, slow.row(0), slow.row(1)), (2, one.row(0), one.row(0)));
        assert_eq!(tempo_stretch(&one, 1.9).unwrap(), one);
        let empty = Features::new(Vec::new(), 0, 3).unwrap();
        assert_eq!(tempo_stretch(&empty, 1.3).unwrap(), empty);
        assert_eq!(tempo_stretch(&ramp(2, 3), 2.0).unwrap().frames, 1);
        for bad in [0.0, 0.49, 2.01, f64::NAN, f64::INFINITY, -1.0] {
            assert!(tempo_stretch(&ramp(5, 2), bad).is_err(), "factor {bad} accepted");
        }
        let opts = AugmentOptions { tempo: 0.5, ..AugmentOptions::default() };
        assert!(opts.validate().is_err(), "--tempo 0.5 accepted");
        assert!(AugmentOptions { tempo: -0.1, ..opts.clone() }.validate().is_err(), "--tempo -0.1 accepted");
        assert!(AugmentOptions { tempo: 0.15, ..opts.clone() }.validate().is_ok());
        // The centre moves the range, which must stay inside the factors tempo_stretch accepts.
        assert!(AugmentOptions { tempo: 0.2, tempo_center: 1.15, ..opts.clone() }.validate().is_ok());
        for (tempo, center) in [(0.3, 1.8), (0.2, 0.6), (0.0, f64::NAN), (0.1, 0.0)] {
            let bad = AugmentOptions { tempo, tempo_center: center, ..opts.clone() };
            assert!(bad.validate().is_err(), "--tempo {tempo} --tempo-center {center} accepted");
        }
    }

    /// 0.5 s of silence, 0.3 s of a 440 Hz tone, 0.7 s of silence at 16 kHz.
    fn padded_tone() -> Vec<f32> {
        let rate = 16_000.0f32;
        let mut s = vec![0.0f32; 8000];
        s.extend((0..4800).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate).sin()));
        s.extend(std::iter::repeat_n(0.0, 11_200));
        s
    }

    #[test]
    fn trimming_keeps_the_speech_and_the_margins() {
        let s = padded_tone();
        let r = TrimSilence { threshold_db: -40.0, margin_s: 0.1 }.keep_range(&s, 16_000);
        // The tone occupies frames 50..80 (10 ms frames of 160 samples); 1600 samples of margin.
        assert_eq!(r, 8000 - 1600..12_800 + 1600);
        let r = TrimSilence { threshold_db: -40.0, margin_s: 1.0 }.keep_range(&s, 16_000);
        assert_eq!(r, 0..s.len(), "margins are clamped to the waveform");
    }

    #[test]
    fn faint_tails_above_the_threshold_are_speech() {
        let mut s = padded_tone();
        // A tail 30 dB below the tone (amplitude ratio ~0.0316) right after it counts as speech.
        for (i, x) in s[12_800..14_400].iter_mut().enumerate() {
            *x = 0.5 * 0.0316 * if i % 2 == 0 { 1.0 } else { -1.0 };
        }
        let r = TrimSilence { threshold_db: -40.0, margin_s: 0.0 }.keep_range(&s, 16_000);
        assert_eq!(r, 8000..14_400);
        let r = TrimSilence { threshold_db: -20.0, margin_s: 0.0 }.keep_range(&s, 16_000);
        assert_eq!(r, 8000..12_800);
    }

    #[test]
    fn silent_or_empty_audio_is_kept_whole() {
        let t = TrimSilence::default();
        assert_eq!(t.keep_range(&[0.0; 500], 16_000), 0..500);
        assert_eq!(t.keep_range(&[], 16_000), 0..0);
        assert!(TrimSilence { threshold_db: 3.0, margin_s: 0.1 }.validate().is_err());
        assert!(TrimSilence { threshold_db: -40.0, margin_s: f64::NAN }.validate().is_err());
    }

    /// Lengths 20..=400 frames, a few far above the batch limit.
    fn ragged_lengths() -> Vec<usize> {
        let mut l: Vec<usize> = (0..500).map(|i| 20 + (i * 7919) % 381).collect();
        l.extend([5000, 7000]);
        l
    }

    #[test]
    fn length_buckets_cover_every_utterance_once_within_the_limits() {
        let lengths = ragged_lengths();
        let (max_frames, max_batch) = (2000, 12);
        let batches = bucket_batches(&lengths, max_frames, max_batch, 3, 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(!b.is_empty() && b.len() <= max_batch);
            // An utterance longer than the limit goes alone; otherwise the padded size fits.
            assert!(b.len() * longest <= max_frames || b.len() == 1, "{} x {longest}", b.len());
        }
        // Reproducible from (seed, epoch); another epoch draws another order.
        assert_eq!(batches, bucket_batches(&lengths, max_frames, max_batch, 3, 0));
        assert_ne!(batches, bucket_batches(&lengths, max_frames, max_batch, 3, 1));
    }

    /// The store serves every configured speed (1.0 added when missing) from the right audio: the
    /// features at speed `f` have about `1 / f` times the frames of the original, and speed 1.0 is
    /// the base features themselves.
    #[test]
    fn feature_store_speeds() {
        let settings = FeatureSettings::default();
        let utterance = |hz| Utterance {
            path: format!("{hz}.wav").into(),
            samples: tone(hz, 1.2),
            text: String::new(),
            labels: Vec::new(),
            kind: None,
            speaker: None,
        };
        let corpus = Corpus {
            manifest: "m".into(),
            utterances: vec![utterance(300.0), utterance(900.0)],
            skipped: Vec::new(),
        };
        let base = features_of_corpus(&settings, &corpus).unwrap();
        let mut store = FeatureStore::new(&settings, base.clone(), &[1.2, 0.8]).unwrap();
        assert_eq!((store.speeds(), store.unit_speed()), (&[1.2, 0.8, 1.0][..], 2));
        let got = store.get(&corpus, &[(1, 2, None), (0, 0, None), (1, 1, None)]).unwrap();
        assert_eq!(got[0], base[1]);
        let frames = base[0].frames as f64;
        assert!((got[1].frames as f64 - frames / 1.2).abs() <= 2.0, "{} frames at 1.2", got[1].frames);
        assert!((got[2].frames as f64 - frames / 0.8).abs() <= 2.0, "{} frames at 0.8", got[2].frames);
        // Cached: the same request gives the same features.
        assert_eq!(store.get(&corpus, &[(0, 0, None)]).unwrap()[0], got[1]);
        let store = FeatureStore::new(&settings, base.clone(), &[0.9, 1.0, 1.1]).unwrap();
        assert_eq!((store.speeds().len(), store.unit_speed()), (3, 1));
        assert!(FeatureStore::new(&settings, base, &[1.0, 2.5]).is_err());
    }
}
