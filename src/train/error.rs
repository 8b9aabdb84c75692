//! The trainer's error type.

use std::fmt;
use std::path::PathBuf;

use crate::audio::AudioError;
use crate::decode::DecodeError;
use crate::nn::NnError;
use crate::optim::OptimError;
use crate::CtcError;

use super::manifest::ManifestError;

/// Everything that can go wrong while preparing data, training, saving or loading a model.
///
/// Every variant names what is at fault: the file, the manifest line, the tensor or the option.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainError {
    /// A manifest could not be read or parsed.
    Manifest(ManifestError),
    /// A transcript uses a character the vocabulary cannot spell (both [`super::OutputUnits`] spell
    /// the space, apostrophe and a-z).
    BadTranscript {
        /// The manifest.
        manifest: PathBuf,
        /// 1-based line number in it.
        line: usize,
        /// The character that is not in the vocabulary.
        character: char,
        /// The whole transcript.
        text: String,
    },
    /// An audio file is missing, corrupt, or its features could not be computed.
    Audio {
        /// The audio file.
        path: PathBuf,
        /// What the front end said.
        source: AudioError,
    },
    /// A manifest (after skipping bad files) has no usable utterance.
    EmptyManifest {
        /// The manifest.
        manifest: PathBuf,
    },
    /// An option is out of its range.
    InvalidOption {
        /// The option's name (as on the command line).
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A model error (shapes, configuration).
    Model(NnError),
    /// An optimizer error (state mismatch, bad hyperparameter).
    Optim(OptimError),
    /// The CTC kernel rejected a batch for a reason other than a non-finite value.
    Ctc(CtcError),
    /// A decoding or language-model error.
    Decode(DecodeError),
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A checkpoint file (config, weights, optimizer state) is malformed or does not match the model.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Manifest(e) => write!(f, "{e}"),
            TrainError::BadTranscript { manifest, line, character, text } => write!(
                f,
                "{}:{line}: transcript {text:?} has the character {character:?}, outside the vocabulary \
                 (space, apostrophe, a-z)",
                manifest.display()
            ),
            TrainError::Audio { path, source } => write!(f, "audio file {}: {source}", path.display()),
            TrainError::EmptyManifest { manifest } => {
                write!(f, "manifest {} has no usable utterance", manifest.display())
            }
            TrainError::InvalidOption { option, reason } => write!(f, "option {option}: {reason}"),
            TrainError::Model(e) => write!(f, "model: {e}"),
            TrainError::Optim(e) => write!(f, "optimizer: {e}"),
            TrainError::Ctc(e) => write!(f, "CTC loss: {e}"),
            TrainError::Decode(e) => write!(f, "decoding: {e}"),
            TrainError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TrainError::Checkpoint { path, detail } => {
                write!(f, "checkpoint file {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for TrainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrainError::Manifest(e) => Some(e),
            TrainError::Audio { source, .. } => Some(source),
            TrainError::Model(e) => Some(e),
            TrainError::Optim(e) => Some(e),
            TrainError::Ctc(e) => Some(e),
            TrainError::Decode(e) => Some(e),
            TrainError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ManifestError> for TrainError {
    fn from(e: ManifestError) -> Self {
        TrainError::Manifest(e)
    }
}
impl From<NnError> for TrainError {
    fn from(e: NnError) -> Self {
        TrainError::Model(e)
    }
}
impl From<OptimError> for TrainError {
    fn from(e: OptimError) -> Self {
        TrainError::Optim(e)
    }
}
impl From<CtcError> for TrainError {
    fn from(e: CtcError) -> Self {
        TrainError::Ctc(e)
    }
}
impl From<DecodeError> for TrainError {
    fn from(e: DecodeError) -> Self {
        TrainError::Decode(e)
    }
}

/// An I/O error naming `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}
