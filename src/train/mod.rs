//! Training: manifests, and (feature `train`) the trainer of the acoustic model on the fastctc loss.
//!
//! The pipeline of `fastctc train` ([`train`]):
//!
//! ```text
//! manifest -> load_corpus (audio decoded in parallel, transcripts -> classes of OutputUnits: 29 or 55)
//!          -> features_of_corpus (80-dim log-mel, cached in memory) -> global CMVN (saved with the model)
//!          -> per epoch: bucket_batches (seeded shuffle, similar lengths)
//!               -> per batch: speed perturbation / noise / SpecAugment (seeded per utterance and epoch)
//!               -> forward -> ctc_compute (logits, mean, zero_infinity) -> backward
//!               -> clip by global norm -> AdamW (warm-up, cosine decay over the budget)
//!          -> dev CER/WER each epoch (best model kept) -> test: greedy, beam, beam + word 3-gram LM
//! ```
//!
//! A run directory holds `config.json` ([`ModelFile`]), `model.safetensors` (best by dev CER),
//! `last.safetensors`, `optimizer.safetensors`, `ema.safetensors` (with a weight average, see
//! `TrainOptions::ema_decay`), `trainer_state.json`, `train_options.json`,
//! `metrics.jsonl`, `curves.svg`, `lm.arpa` and `results.json`, each written atomically.

pub mod manifest;

#[cfg(feature = "train")]
pub mod checkpoint;
#[cfg(feature = "train")]
pub mod curves;
#[cfg(feature = "train")]
pub mod data;
#[cfg(feature = "train")]
mod error;
#[cfg(feature = "train")]
pub mod recognizer;
#[cfg(feature = "train")]
pub mod trainer;

#[cfg(feature = "train")]
pub use checkpoint::{ModelFile, TrainerState};
#[cfg(feature = "train")]
pub use data::{vocabulary, AugmentOptions, FeatureSettings, OutputUnits, TrimSilence, CHARS};
#[cfg(feature = "train")]
pub use error::TrainError;
#[cfg(feature = "train")]
pub use recognizer::{evaluate, Decoding, EvalReport, Rates, Recognizer};
#[cfg(feature = "train")]
pub use trainer::{
    default_model, train, EpochMetrics, StepProfile, TrainOptions, TrainReport, DEFAULT_BUDGET_MINUTES,
    DEFAULT_MEL_BINS,
};
