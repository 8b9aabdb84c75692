//! Run directories: the model's JSON config, safetensors weights, optimizer state, trainer state;
//! every file written atomically (temporary file in the same folder, then rename).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::audio::GlobalCmvn;
use crate::decode::Vocabulary;
use crate::nn::{AcousticModel, ModelConfig};
use crate::optim::{AdamState, Ema, Moments};

use super::data::FeatureSettings;
use super::error::{io_err, TrainError};

/// File names inside a run directory.
pub mod files {
    /// The model's configuration: vocabulary, features (with CMVN statistics), architecture.
    pub const CONFIG: &str = "config.json";
    /// Weights of the best model by dev CER.
    pub const BEST: &str = "model.safetensors";
    /// Weights after the last completed step.
    pub const LAST: &str = "last.safetensors";
    /// Adam moments (safetensors, `m.<param>` and `v.<param>`, step count in the metadata).
    pub const OPTIMIZER: &str = "optimizer.safetensors";
    /// The moving average of the weights after the last completed step (with `--ema-decay`): a
    /// weights file like the others (loadable as a model), decay and update count in the metadata.
    pub const EMA: &str = "ema.safetensors";
    /// Where training stopped (epoch, batch, step, time used), to resume.
    pub const STATE: &str = "trainer_state.json";
    /// One JSON object per epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// Training loss and dev CER against epochs.
    pub const CURVES: &str = "curves.svg";
    /// The word 3-gram language model estimated from the training transcripts.
    pub const LM: &str = "lm.arpa";

    /// With [`TrainOptions::keep_epochs`](crate::train::TrainOptions::keep_epochs): the weights
    /// evaluated on dev after epoch `epoch` (1-based, as in `metrics.jsonl`), e.g.
    /// `epoch-007.safetensors`; a partial last epoch is saved under its own number.
    pub fn epoch_weights(epoch: u64) -> String {
        format!("epoch-{epoch:03}.safetensors")
    }
}

/// Everything inference needs besides the weights; saved as `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Format marker, `"fastctc-model"`.
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// Class strings in class order; class `blank` is the CTC blank.
    pub vocabulary: Vec<String>,
    /// The blank class.
    pub blank: usize,
    /// The word-separator class (the space).
    pub separator: Option<usize>,
    /// Feature extraction settings.
    pub features: FeatureSettings,
    /// Global CMVN statistics over the training set's features.
    pub cmvn: GlobalCmvn,
    /// The acoustic model's architecture.
    pub model: ModelConfig,
    /// Seconds per model output frame (feature shift times the subsampling factor).
    pub frame_shift_s: f64,
}

impl ModelFile {
    /// The decoding vocabulary described by this file.
    pub fn vocab(&self, path: &Path) -> Result<Vocabulary, TrainError> {
        Vocabulary::new(self.vocabulary.clone(), self.blank, self.separator)
            .map_err(|e| TrainError::Checkpoint { path: path.to_path_buf(), detail: e.to_string() })
    }
}

/// Writes `bytes` to `path` atomically: a temporary file next to it, flushed and synced, then renamed
/// over `path`, so a reader sees the old file or the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Reads a whole file, naming it on error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(io_err(path))
}

fn bad(path: &Path, detail: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), detail: detail.into() }
}

/// Saves the config as pretty JSON.
pub fn save_config(path: &Path, config: &ModelFile) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(config).map_err(|e| bad(path, e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Loads and checks a config (format marker, vocabulary, CMVN size against the model input).
pub fn load_config(path: &Path) -> Result<ModelFile, TrainError> {
    let bytes = read_file(path)?;
    let config: ModelFile = serde_json::from_slice(&bytes).map_err(|e| bad(path, e.to_string()))?;
    if config.format != "fastctc-model" || config.version != 1 {
        return Err(bad(
            path,
            format!("format {:?} version {} is not fastctc-model 1", config.format, config.version),
        ));
    }
    config.vocab(path)?;
    if config.vocabulary.len() != config.model.vocab() {
        return Err(bad(
            path,
            format!(
                "{} vocabulary entries but the model has {} outputs",
                config.vocabulary.len(),
                config.model.vocab()
            ),
        ));
    }
    if config.cmvn.bins() != config.model.input_dim()
        || config.features.num_mel_bins != config.model.input_dim()
    {
        return Err(bad(path, "feature bins, CMVN statistics and model input dimension differ"));
    }
    config.cmvn.validate().map_err(|e| bad(path, e.to_string()))?;
    config.model.validate().map_err(|e| bad(path, e.to_string()))?;
    Ok(config)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn serialize_tensors(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, TrainError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, shape, bytes) in &tensors {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| bad(path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, metadata).map_err(|e| bad(path, e.to_string()))
}

/// Saves the model's weights as f32 safetensors, one tensor per parameter under its nn name.
pub fn save_weights(path: &Path, model: &AcousticModel<f32>) -> Result<(), TrainError> {
    let tensors = model
        .params()
        .into_iter()
        .map(|p| (p.name().to_string(), p.shape().to_vec(), f32_bytes(p.value())))
        .collect();
    let bytes = serialize_tensors(path, tensors, None)?;
    write_atomic(path, &bytes)
}

/// Tensor `name` of `st` (read from `path`), which must be f32 with `shape`: a missing tensor, another
/// type or another shape is an error naming the file and the parameter.
fn param_tensor<'a>(
    st: &'a SafeTensors<'a>,
    path: &Path,
    name: &str,
    shape: &[usize],
) -> Result<safetensors::tensor::TensorView<'a>, TrainError> {
    let t = st.tensor(name).map_err(|e| bad(path, format!("parameter {name}: {e}")))?;
    if t.dtype() != Dtype::F32 || t.shape() != shape {
        return Err(bad(
            path,
            format!("parameter {name}: {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape()),
        ));
    }
    Ok(t)
}

/// Loads weights saved by [`save_weights`] into `model`: every parameter must be present, in f32,
/// with its shape; extra tensors are an error too (they mean a different architecture).
pub fn load_weights(path: &Path, model: &mut AcousticModel<f32>) -> Result<(), TrainError> {
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut expected = 0;
    for p in model.params_mut() {
        expected += 1;
        let t = param_tensor(&st, path, p.name(), p.shape())?;
        p.value_mut().copy_from_slice(&f32_from_bytes(t.data()));
    }
    if st.len() != expected {
        return Err(bad(path, format!("{} tensors, but the model has {expected} parameters", st.len())));
    }
    Ok(())
}

/// Saves Adam's state: tensors `m.<param>` and `v.<param>` (flat), the step count in the metadata.
pub fn save_optimizer(path: &Path, state: &AdamState<f32>) -> Result<(), TrainError> {
    let mut tensors = Vec::with_capacity(2 * state.moments.len());
    let mut order = Vec::with_capacity(state.moments.len());
    for m in &state.moments {
        tensors.push((format!("m.{}", m.name), vec![m.m.len()], f32_bytes(&m.m)));
        tensors.push((format!("v.{}", m.name), vec![m.v.len()], f32_bytes(&m.v)));
        order.push(m.name.clone());
    }
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), state.step.to_string());
    meta.insert("order".to_string(), serde_json::to_string(&order).map_err(|e| bad(path, e.to_string()))?);
    let bytes = serialize_tensors(path, tensors, Some(meta))?;
    write_atomic(path, &bytes)
}

/// Loads a state saved by [`save_optimizer`] (the parameter order is restored from the metadata).
pub fn load_optimizer(path: &Path) -> Result<AdamState<f32>, TrainError> {
    let bytes = read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let step: u64 = info
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(path, "metadata has no step count"))?;
    let order: Vec<String> = info
        .get("order")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad(path, "metadata has no parameter order"))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut moments = Vec::with_capacity(order.len());
    for name in order {
        let m = st.tensor(&format!("m.{name}")).map_err(|e| bad(path, format!("m.{name}: {e}")))?;
        let v = st.tensor(&format!("v.{name}")).map_err(|e| bad(path, format!("v.{name}: {e}")))?;
        if m.dtype() != Dtype::F32 || v.dtype() != Dtype::F32 {
            return Err(bad(path, format!("moments of {name} are not f32")));
        }
        moments.push(Moments { name, m: f32_from_bytes(m.data()), v: f32_from_bytes(v.data()) });
    }
    Ok(AdamState { step, moments })
}

/// Saves a weight average as f32 safetensors, one tensor per parameter under its name with the
/// model's shapes (so the file loads as model weights too), `decay` and `updates` in the metadata.
pub fn save_ema(path: &Path, ema: &Ema<f32>, model: &AcousticModel<f32>) -> Result<(), TrainError> {
    let params = model.params();
    if params.len() != ema.layout().len() {
        return Err(bad(
            path,
            format!("{} averaged tensors for {} parameters", ema.layout().len(), params.len()),
        ));
    }
    let mut tensors = Vec::with_capacity(params.len());
    for (p, (name, values)) in params.iter().zip(ema.split()) {
        if p.name() != name || p.len() != values.len() {
            return Err(bad(path, format!("averaged tensor {name} does not match parameter {}", p.name())));
        }
        tensors.push((name.to_string(), p.shape().to_vec(), f32_bytes(values)));
    }
    let mut meta = HashMap::new();
    // `{:?}` prints the shortest string that parses back to the same f64.
    meta.insert("decay".to_string(), format!("{:?}", ema.decay()));
    meta.insert("updates".to_string(), ema.updates().to_string());
    let bytes = serialize_tensors(path, tensors, Some(meta))?;
    write_atomic(path, &bytes)
}

/// Loads a weight average saved by [`save_ema`] for `model`'s parameters (every one present, with its
/// shape; no others).
pub fn load_ema(path: &Path, model: &AcousticModel<f32>) -> Result<Ema<f32>, TrainError> {
    let bytes = read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let decay: f64 =
        info.get("decay").and_then(|s| s.parse().ok()).ok_or_else(|| bad(path, "metadata has no decay"))?;
    let updates: u64 = info
        .get("updates")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(path, "metadata has no update count"))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let params = model.params();
    if st.len() != params.len() {
        return Err(bad(
            path,
            format!("{} tensors, but the model has {} parameters", st.len(), params.len()),
        ));
    }
    let mut layout = Vec::with_capacity(params.len());
    let mut values = Vec::with_capacity(model.num_params());
    for p in params {
        let t = param_tensor(&st, path, p.name(), p.shape())?;
        layout.push((p.name().to_string(), p.len()));
        values.extend(f32_from_bytes(t.data()));
    }
    Ema::from_parts(decay, updates, layout, values).map_err(|e| bad(path, e.to_string()))
}

/// A model and its config, loaded from a run directory (`config.json` + `model.safetensors`, or
/// another weights file of the directory).
pub fn load_model(dir: &Path, weights: &str) -> Result<(ModelFile, AcousticModel<f32>), TrainError> {
    let config = load_config(&dir.join(files::CONFIG))?;
    let mut model = AcousticModel::new(&config.model, 0)?;
    load_weights(&dir.join(weights), &mut model)?;
    Ok((config, model))
}

/// Where a run stopped, saved as `trainer_state.json` with every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Batches of that epoch already done.
    pub batch_in_epoch: usize,
    /// Optimizer steps attempted (applied + skipped); the schedule's step counter.
    pub step: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// Seconds of training used so far (excluding feature extraction and final evaluation).
    pub train_seconds: f64,
    /// Best dev CER so far (1.0 before the first evaluation... or more).
    pub best_dev_cer: f64,
    /// Epoch of the best dev CER.
    pub best_epoch: Option<u64>,
    /// Sum of training losses and their count over the epoch in progress.
    pub epoch_loss: (f64, u64),
    /// Whether training has finished (budget or epochs reached).
    pub finished: bool,
}

/// Saves the trainer state as JSON.
pub fn save_state(path: &Path, state: &TrainerState) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(state).map_err(|e| bad(path, e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Loads a trainer state.
pub fn load_state(path: &Path) -> Result<TrainerState, TrainError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| bad(path, e.to_string()))
}

/// `dir/name`.
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::GruModelConfig;

    fn small(hidden: usize) -> AcousticModel<f32> {
        let config = GruModelConfig { conv_channels: 8, gru_layers: 1, hidden, ..GruModelConfig::default() };
        AcousticModel::new(&ModelConfig::Gru(config), 1).unwrap()
    }

    #[test]
    fn weights_of_another_shape_are_refused_naming_the_parameter() {
        let dir = std::env::temp_dir().join(format!("fastctc-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        save_weights(&path, &small(4)).unwrap();
        let mut same = small(4);
        load_weights(&path, &mut same).unwrap();
        let err = load_weights(&path, &mut small(6)).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("parameter ") && err.contains("expected F32"), "{err}");
    }
}
