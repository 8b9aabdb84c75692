//! The one error type of the audio front end.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while decoding, resampling, extracting features, normalising or
/// augmenting audio.
///
/// Errors raised while reading a file are wrapped in [`AudioError::InFile`], so their `Display`
/// starts with the path; [`AudioError::cause`] strips that wrapper for matching.
#[derive(Debug)]
#[non_exhaustive]
pub enum AudioError {
    /// The file could not be opened or read.
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An error found while decoding the named file.
    InFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<AudioError>,
    },
    /// The bytes start with no container signature that we decode (RIFF/WAVE, `fLaC`, `OggS`).
    UnrecognisedFormat {
        /// The first bytes seen, for the message (at most 4).
        magic: Vec<u8>,
    },
    /// The container or stream is truncated or internally inconsistent.
    Malformed {
        /// What is inconsistent, and where (byte offsets where known).
        detail: String,
    },
    /// A well-formed stream that uses something we do not decode (A-law WAV, 12-bit PCM, ...).
    Unsupported {
        /// The feature that is not supported.
        detail: String,
    },
    /// The stream holds no audio samples at all.
    Empty,
    /// The decoded stream is longer than [`crate::audio::DecodeOptions::max_duration_s`].
    TooLong {
        /// Seconds decoded before stopping (at least this long).
        seconds: f64,
        /// The configured limit, in seconds.
        limit: f64,
    },
    /// A sample is NaN or infinite (only float WAV and caller-provided buffers can hold these).
    NonFinite {
        /// Index of the sample: a frame index (per channel) in decoded audio, a flat index in buffers.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A sample rate that is zero or outside what the operation supports.
    InvalidSampleRate {
        /// The rate, in Hz.
        hz: u32,
        /// Why it is rejected.
        detail: &'static str,
    },
    /// An error reported by the FLAC or Vorbis decoder (symphonia).
    Decoder {
        /// The decoder's message.
        detail: String,
    },
    /// A configuration value (feature extraction, SpecAugment, resampling) is out of range.
    InvalidConfig {
        /// The field at fault.
        field: &'static str,
        /// The value and the allowed range.
        detail: String,
    },
    /// A feature matrix or statistics vector has the wrong number of bins.
    ShapeMismatch {
        /// What was being combined.
        what: &'static str,
        /// The number of bins expected.
        expected: usize,
        /// The number of bins found.
        got: usize,
    },
    /// Normalisation statistics are unusable (no frames, non-finite, zero variance floor...).
    InvalidStats {
        /// What is wrong.
        detail: String,
    },
}

impl AudioError {
    /// The error without its [`AudioError::InFile`] wrapper(s): what went wrong, not where.
    pub fn cause(&self) -> &AudioError {
        match self {
            AudioError::InFile { source, .. } => source.cause(),
            other => other,
        }
    }

    /// Wraps `self` with the file it came from (once; an error that already names a file keeps it).
    pub(crate) fn in_file(self, path: &Path) -> AudioError {
        match self {
            e @ (AudioError::InFile { .. } | AudioError::Io { .. }) => e,
            e => AudioError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }

    #[cold]
    pub(crate) fn malformed(detail: impl Into<String>) -> AudioError {
        AudioError::Malformed {
            detail: detail.into(),
        }
    }

    #[cold]
    pub(crate) fn unsupported(detail: impl Into<String>) -> AudioError {
        AudioError::Unsupported {
            detail: detail.into(),
        }
    }

    #[cold]
    pub(crate) fn config(field: &'static str, detail: impl Into<String>) -> AudioError {
        AudioError::InvalidConfig {
            field,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            AudioError::InFile { path, source } => write!(f, "{}: {source}", path.display()),
            AudioError::UnrecognisedFormat { magic } => write!(
                f,
                "unrecognised audio format (first bytes {magic:02x?}); expected WAV, FLAC or Ogg Vorbis"
            ),
            AudioError::Malformed { detail } => write!(f, "malformed audio: {detail}"),
            AudioError::Unsupported { detail } => write!(f, "unsupported audio: {detail}"),
            AudioError::Empty => write!(f, "the stream holds no audio samples"),
            AudioError::TooLong { seconds, limit } => write!(
                f,
                "audio longer than the limit: at least {seconds:.2} s decoded, limit {limit:.2} s"
            ),
            AudioError::NonFinite { index, value } => {
                write!(f, "sample {index} is not finite ({value})")
            }
            AudioError::InvalidSampleRate { hz, detail } => {
                write!(f, "invalid sample rate {hz} Hz: {detail}")
            }
            AudioError::Decoder { detail } => write!(f, "decoder error: {detail}"),
            AudioError::InvalidConfig { field, detail } => {
                write!(f, "invalid configuration `{field}`: {detail}")
            }
            AudioError::ShapeMismatch {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected {expected} bins, got {got}"),
            AudioError::InvalidStats { detail } => {
                write!(f, "invalid normalisation statistics: {detail}")
            }
        }
    }
}

impl std::error::Error for AudioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AudioError::Io { source, .. } => Some(source),
            AudioError::InFile { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
