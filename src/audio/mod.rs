//! The speech front end (feature `audio`): decoding, resampling, Kaldi log-mel features,
//! normalisation and SpecAugment.
//!
//! The pipeline an utterance goes through:
//!
//! ```text
//! read_audio(path)            WAV / FLAC / Ogg Vorbis -> mono f32 in [-1, 1] at 16 kHz
//!   -> speed_perturb(..)      (training, optional) 0.9 / 1.0 / 1.1 by resampling
//!   -> Fbank::compute(..)     (frames, 80) log-mel, Kaldi-compatible, row-major
//!   -> GlobalCmvn::apply(..)  or cmvn_utterance(..)
//!   -> spec_augment(..)       (training) frequency and time masks, mask value 0
//! ```
//!
//! Every fallible step returns [`AudioError`]; none panics on bad input.
//!
//! Decisions worth knowing:
//! - Streams at rates other than 16 kHz are resampled on read with our own windowed-sinc
//!   [`resample`] (Kaiser window, ~80 dB stop band), not refused; the same function drives
//!   [`speed_perturb`]. `DecodeOptions { target_rate: None, .. }` keeps the native rate.
//! - Multi-channel audio (up to [`MAX_CHANNELS`]) is down-mixed by averaging the channels.
//! - Features use Kaldi's integer sample scale by default (see [`FbankConfig::sample_scale`]), so
//!   they equal `torchaudio.compliance.kaldi.fbank(waveform * 32768, num_mel_bins=80)`.
//! - SpecAugment writes 0 into masked cells by default, which is the mean after normalisation:
//!   normalise first, then augment.

mod cmvn;
mod decode;
mod error;
mod fbank;
mod resample;
mod specaugment;

pub use cmvn::{cmvn_utterance, CmvnStats, GlobalCmvn, VARIANCE_FLOOR};
pub use decode::{
    decode_audio_bytes, decode_audio_bytes_with, read_audio, read_audio_with, Audio, DecodeOptions,
    FormatHint, MAX_CHANNELS, WORKING_RATE,
};
pub use error::AudioError;
pub use fbank::{Fbank, FbankConfig, Features, WindowType};
pub use resample::{resample, speed_perturb};
pub use specaugment::{spec_augment, Mask, MaskAxis, MaskValue, SpecAugmentConfig};
