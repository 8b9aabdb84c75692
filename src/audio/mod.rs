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
