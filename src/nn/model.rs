//! Acoustic models: convolutional subsampling + bidirectional GRUs, or an all-convolutional stack.

use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{
    check_channels, check_grad_len, conv_output_length, zero_padded_rows, Activation, ActivationLayer, Batch,
    BiGru, Conv1d, Conv1dSpec, Dropout, Layer, LayerNorm, Linear, Mode, NnError, NnFloat, Param,
    SubframeLinear, WordStartExpand,
};

/// Sizes of the recurrent model: `conv_layers` x (Conv1d(kernel `conv_kernel`, stride `conv_stride`,
/// padding `conv_kernel / 2`) -> `activation`) -> dropout -> `gru_layers` x (BiGru(`hidden`) -> dropout)
/// -> Linear(`2 hidden` -> `vocab`), or with `upsample` > 1 a [`SubframeLinear`] (`upsample` output
/// frames per recurrent frame).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GruModelConfig {
    /// Feature channels per input frame (80 log-mel bins).
    pub input_dim: usize,
    /// Output classes `V` (blank + symbols).
    pub vocab: usize,
    /// Number of subsampling convolutions (0 = none; each divides the frame rate by `conv_stride`).
    pub conv_layers: usize,
    /// Output channels of each subsampling convolution.
    pub conv_channels: usize,
    /// Kernel width of the subsampling convolutions, in frames (odd keeps them centred).
    pub conv_kernel: usize,
    /// Stride of each subsampling convolution, in frames.
    pub conv_stride: usize,
    /// Nonlinearity after each subsampling convolution.
    pub activation: Activation,
    /// Number of bidirectional GRU layers (>= 1).
    pub gru_layers: usize,
    /// Hidden size per direction of every GRU layer.
    pub hidden: usize,
    /// Dropout probability after the subsampling and after each GRU layer (0 disables).
    pub dropout: f64,
    /// Output frames per recurrent frame (1 = none): the output layer is a [`SubframeLinear`] that
    /// emits `upsample` frames of `vocab` logits per recurrent frame. With x4
    /// subsampling and `upsample` 2, CTC sees 20 ms frames while the GRUs run at 40 ms. Configs written
    /// before this field existed read as 1.
    #[serde(default = "one")]
    pub upsample: usize,
    /// Intermediate CTC (Lee and Watanabe, 2021): with `k` >= 1, an auxiliary output layer like the
    /// main one (a [`SubframeLinear`] with the same `upsample`, parameters `inter.*`) reads the output
    /// of GRU layer `k` (1-based, after its dropout; `k < gru_layers`), and a trainer adds the CTC loss
    /// of its logits to the main one ([`AcousticModel::forward_with_intermediate`]). Inference does not
    /// run it. 0 (the default, and what configs written before this field read as) has none.
    #[serde(default)]
    pub inter_ctc_layer: usize,
    /// Self-conditioned CTC (Nozaki and Komatsu, 2021), with intermediate CTC only: the auxiliary
    /// layer's posteriors (softmax of its logits, the `upsample` sub-frames of a recurrent frame side
    /// by side) go through a linear map back to the layer width (`inter.condition.*`, initialised to
    /// zero) and are added to the output the next GRU layer reads, so the upper layers see what the
    /// lower ones recognised. The auxiliary layer then runs at inference too. Absent from older
    /// configs, which read as `false`.
    #[serde(default)]
    pub self_condition: bool,
    /// A factored word-start output: `vocab = 2 K + 1` classes of a word-start vocabulary (blank,
    /// `K` symbols inside a word, the same `K` beginning a word), computed from `K + 2` logits of the
    /// output layer (blank, the `K` symbols, a word-boundary logit) by [`WordStartExpand`]; the
    /// intermediate output, if any, likewise. The model's logits are still `vocab` wide. Absent from
    /// older configs, which read as `false` (every class its own output unit).
    #[serde(default)]
    pub factored_word_start: bool,
    /// Output classes of the intermediate CTC layer when they differ from the main output's, e.g.
    /// characters with a space class under a word-start main output, so that the lower layers learn
    /// plain letters and the self-conditioning map tells the upper ones where the spaces are. 0 (the
    /// default, and what configs written before this field read as): the same classes as the main
    /// output (factored if it is). Otherwise its classes are its own output units, never factored.
    #[serde(default)]
    pub inter_vocab: usize,
}

fn one() -> usize {
    1
}

impl Default for GruModelConfig {
    /// About 2.1 M parameters: 80 mel bins, 2 convolutions of 256 channels (kernel 3, stride 2: x4
    /// subsampling), 3 bidirectional GRU layers of 192, 29 classes, dropout 0.1.
    fn default() -> Self {
        Self {
            input_dim: 80,
            vocab: 29,
            conv_layers: 2,
            conv_channels: 256,
            conv_kernel: 3,
            conv_stride: 2,
            activation: Activation::Relu,
            gru_layers: 3,
            hidden: 192,
            dropout: 0.1,
            upsample: 1,
            inter_ctc_layer: 0,
            self_condition: false,
            factored_word_start: false,
            inter_vocab: 0,
        }
    }
}

impl GruModelConfig {
    /// The faster preset: 2 convolutions of 192 channels (x4 subsampling), 2 bidirectional GRU layers
    /// of 128, 29 classes, dropout 0.1; about 0.71 M parameters and roughly a third of the default's
    /// training-step time.
    pub fn small() -> Self {
        Self { conv_channels: 192, gru_layers: 2, hidden: 128, ..Self::default() }
    }
}

/// Sizes of the all-convolutional model: `subsample_layers` x (Conv1d(kernel 3, stride 2, padding 1)
/// -> GELU) -> `blocks` x [`ResidualConvBlock`] (kernel `kernel`, dilation `dilation_cycle[i % len]`)
/// -> LayerNorm -> Linear(`channels` -> `vocab`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvModelConfig {
    /// Feature channels per input frame.
    pub input_dim: usize,
    /// Output classes `V`.
    pub vocab: usize,
    /// Channels of every layer after the first convolution.
    pub channels: usize,
    /// Number of stride-2 subsampling convolutions.
    pub subsample_layers: usize,
    /// Number of residual blocks.
    pub blocks: usize,
    /// Kernel width of the block convolutions, in frames (odd).
    pub kernel: usize,
    /// Dilations used by successive blocks, cycled (e.g. `[1, 2, 4]`); empty means all 1.
    pub dilation_cycle: Vec<usize>,
    /// Dropout probability inside each block.
    pub dropout: f64,
}

impl Default for ConvModelConfig {
    /// 80 mel bins, 256 channels, x4 subsampling, 6 blocks of kernel 5 with dilations 1, 2, 4, 29 classes.
    fn default() -> Self {
        Self {
            input_dim: 80,
            vocab: 29,
            channels: 256,
            subsample_layers: 2,
            blocks: 6,
            kernel: 5,
            dilation_cycle: vec![1, 2, 4],
            dropout: 0.1,
        }
    }
}

/// Which architecture, with its sizes; serialises as `{"arch": "gru", ...}` or `{"arch": "conv", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Convolutional subsampling + bidirectional GRUs.
    Gru(GruModelConfig),
    /// All-convolutional residual stack.
    Conv(ConvModelConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::Gru(GruModelConfig::default())
    }
}

fn positive(field: &'static str, v: usize) -> Result<(), NnError> {
    if v == 0 {
        return Err(NnError::InvalidConfig { field, value: 0.0, requirement: "at least 1" });
    }
    Ok(())
}

/// Most layers of one kind a config may ask for.
const MAX_LAYERS: usize = 1024;

/// Most output frames per recurrent frame a config may ask for.
const MAX_UPSAMPLE: usize = 16;

fn at_most(field: &'static str, v: usize, max: usize) -> Result<(), NnError> {
    if v > max {
        return Err(NnError::InvalidConfig { field, value: v as f64, requirement: "at most 1024" });
    }
    Ok(())
}

fn dropout_p(p: f64) -> Result<(), NnError> {
    if !(0.0..1.0).contains(&p) {
        return Err(NnError::InvalidConfig { field: "dropout", value: p, requirement: "in [0, 1)" });
    }
    Ok(())
}

impl ModelConfig {
    /// Checks every size.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), NnError> {
        match self {
            Self::Gru(c) => {
                positive("input_dim", c.input_dim)?;
                positive("vocab", c.vocab)?;
                positive("gru_layers", c.gru_layers)?;
                at_most("gru_layers", c.gru_layers, MAX_LAYERS)?;
                at_most("conv_layers", c.conv_layers, MAX_LAYERS)?;
                positive("hidden", c.hidden)?;
                positive("upsample", c.upsample)?;
                if c.upsample > MAX_UPSAMPLE {
                    return Err(NnError::InvalidConfig {
                        field: "upsample",
                        value: c.upsample as f64,
                        requirement: "at most 16",
                    });
                }
                // The output layers stack `upsample` frames of their classes side by side.
                for (field, classes, requirement) in [
                    ("vocab", c.vocab, "vocab * upsample must fit in usize"),
                    ("inter_vocab", c.inter_vocab, "inter_vocab * upsample must fit in usize"),
                ] {
                    if classes.checked_mul(c.upsample).is_none() {
                        return Err(NnError::InvalidConfig { field, value: classes as f64, requirement });
                    }
                }
                if c.inter_ctc_layer >= c.gru_layers {
                    return Err(NnError::InvalidConfig {
                        field: "inter_ctc_layer",
                        value: c.inter_ctc_layer as f64,
                        requirement: "below gru_layers (the last layer feeds the main output)",
                    });
                }
                if c.self_condition && c.inter_ctc_layer == 0 {
                    return Err(NnError::InvalidConfig {
                        field: "self_condition",
                        value: 1.0,
                        requirement: "false without an intermediate CTC layer (inter_ctc_layer 0)",
                    });
                }
                if c.factored_word_start {
                    WordStartExpand::new(c.vocab)?;
                }
                if c.inter_vocab > 0 && c.inter_ctc_layer == 0 {
                    return Err(NnError::InvalidConfig {
                        field: "inter_vocab",
                        value: c.inter_vocab as f64,
                        requirement: "0 without an intermediate CTC layer (inter_ctc_layer 0)",
                    });
                }
                if c.conv_layers > 0 {
                    positive("conv_channels", c.conv_channels)?;
                    positive("conv_kernel", c.conv_kernel)?;
                    positive("conv_stride", c.conv_stride)?;
                }
                if let Activation::HardTanh { min, max } = c.activation {
                    if min.is_nan() || max.is_nan() || min > max {
                        return Err(NnError::InvalidConfig {
                            field: "activation.max",
                            value: max,
                            requirement: "at least activation.min",
                        });
                    }
                }
                dropout_p(c.dropout)
            }
            Self::Conv(c) => {
                positive("input_dim", c.input_dim)?;
                positive("vocab", c.vocab)?;
                positive("channels", c.channels)?;
                at_most("blocks", c.blocks, MAX_LAYERS)?;
                at_most("subsample_layers", c.subsample_layers, MAX_LAYERS)?;
                positive("kernel", c.kernel)?;
                if c.kernel % 2 == 0 {
                    return Err(NnError::InvalidConfig {
                        field: "kernel",
                        value: c.kernel as f64,
                        requirement: "odd (so the residual blocks keep the length)",
                    });
                }
                if let Some(&d) = c.dilation_cycle.iter().find(|&&d| d == 0) {
                    return Err(NnError::InvalidConfig {
                        field: "dilation_cycle",
                        value: d as f64,
                        requirement: "all at least 1",
                    });
                }
                dropout_p(c.dropout)
            }
        }
    }

    /// Input feature channels.
    pub fn input_dim(&self) -> usize {
        match self {
            Self::Gru(c) => c.input_dim,
            Self::Conv(c) => c.input_dim,
        }
    }

    /// Output classes `V`.
    pub fn vocab(&self) -> usize {
        match self {
            Self::Gru(c) => c.vocab,
            Self::Conv(c) => c.vocab,
        }
    }

    /// Output classes of the intermediate CTC layer ([`GruModelConfig::inter_vocab`]), `None` without
    /// one.
    pub fn inter_vocab(&self) -> Option<usize> {
        match self {
            Self::Gru(c) if c.inter_ctc_layer > 0 => {
                Some(if c.inter_vocab > 0 { c.inter_vocab } else { c.vocab })
            }
            _ => None,
        }
    }

    /// Whether the output is a factored word-start one ([`GruModelConfig::factored_word_start`]).
    pub fn factored_word_start(&self) -> bool {
        matches!(self, Self::Gru(c) if c.factored_word_start)
    }

    /// The same architecture with an intermediate output of `classes` classes (0: the main output's;
    /// see [`GruModelConfig::inter_vocab`]). The convolutional model, which has no intermediate
    /// output, is returned unchanged.
    pub fn with_inter_vocab(mut self, classes: usize) -> Self {
        if let Self::Gru(c) = &mut self {
            c.inter_vocab = classes;
        }
        self
    }

    /// The same architecture reading `dim` input channels per frame (e.g. mel bins).
    pub fn with_input_dim(mut self, dim: usize) -> Self {
        match &mut self {
            Self::Gru(c) => c.input_dim = dim,
            Self::Conv(c) => c.input_dim = dim,
        }
        self
    }

    /// The same architecture with `vocab` output classes.
    pub fn with_vocab(mut self, vocab: usize) -> Self {
        match &mut self {
            Self::Gru(c) => c.vocab = vocab,
            Self::Conv(c) => c.vocab = vocab,
        }
        self
    }

    /// The subsampling convolutions' geometries, in order.
    fn subsampling(&self) -> Vec<Conv1dSpec> {
        let (n, input, channels, kernel, stride) = match self {
            Self::Gru(c) => (c.conv_layers, c.input_dim, c.conv_channels, c.conv_kernel, c.conv_stride),
            Self::Conv(c) => (c.subsample_layers, c.input_dim, c.channels, 3, 2),
        };
        (0..n)
            .map(|i| Conv1dSpec {
                in_channels: if i == 0 { input } else { channels },
                out_channels: channels,
                kernel,
                stride,
                padding: kernel / 2,
                dilation: 1,
            })
            .collect()
    }

    /// Output frames per frame after the subsampling (the GRU model's `upsample`, else 1).
    pub fn upsample(&self) -> usize {
        match self {
            Self::Gru(c) => c.upsample,
            Self::Conv(_) => 1,
        }
    }

    /// Input frames per output frame, away from the ends of an utterance: the product of the
    /// subsampling strides divided by [`ModelConfig::upsample`] (4 for x4 subsampling, 2 with
    /// `upsample` 2). Times the feature frame shift, this is the output frame period that alignment
    /// timestamps use.
    pub fn input_frames_per_output(&self) -> f64 {
        let strides: f64 = self.subsampling().iter().map(|s| s.stride as f64).product();
        strides / self.upsample() as f64
    }

    /// Number of output frames for `len` input frames (the subsampling convolutions' lengths, composed,
    /// times [`ModelConfig::upsample`]).
    pub fn output_length(&self, len: usize) -> usize {
        self.subsampled_length(len).saturating_mul(self.upsample())
    }

    /// Frames after the subsampling convolutions, before any output split.
    fn subsampled_length(&self, len: usize) -> usize {
        self.subsampling().iter().fold(len, conv_output_length)
    }
}

/// `y = x + dropout(GELU(conv(layer_norm(x))))`, a pre-norm residual convolution block.
///
/// Shapes: `(B, T, C)` in and out, same lengths; the convolution is `C -> C`, stride 1, padding
/// `dilation (kernel - 1) / 2` so the length is unchanged. Parameters `prefix.norm.{weight,bias}`,
/// `prefix.conv.{weight,bias}`.
pub struct ResidualConvBlock<F> {
    norm: LayerNorm<F>,
    conv: Conv1d<F>,
    act: ActivationLayer<F>,
    dropout: Dropout<F>,
    shape: Option<(usize, usize, Vec<usize>)>,
}

impl<F: NnFloat> ResidualConvBlock<F> {
    /// A block over `channels` with an odd `kernel` and `dilation`, dropout `p` seeded with `seed`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for a zero size, an even kernel, or `p` outside `[0, 1)`.
    pub fn new(
        prefix: &str,
        channels: usize,
        kernel: usize,
        dilation: usize,
        p: f64,
        seed: u64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        if kernel % 2 == 0 {
            return Err(NnError::InvalidConfig { field: "kernel", value: kernel as f64, requirement: "odd" });
        }
        positive("dilation", dilation)?;
        let spec = Conv1dSpec {
            in_channels: channels,
            out_channels: channels,
            kernel,
            stride: 1,
            padding: dilation * (kernel - 1) / 2,
            dilation,
        };
        Ok(Self {
            norm: LayerNorm::new(&format!("{prefix}.norm"), channels, 1e-5, rng)?,
            conv: Conv1d::new(&format!("{prefix}.conv"), spec, rng)?,
            act: ActivationLayer::new(Activation::Gelu),
            dropout: Dropout::new(p, seed)?,
            shape: None,
        })
    }
}

impl<F: NnFloat> Layer<F> for ResidualConvBlock<F> {
    fn forward(&mut self, input: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        let y = self.norm.forward(input, mode)?;
        let y = self.conv.forward(&y, mode)?;
        let y = self.act.forward(&y, mode)?;
        let mut y = self.dropout.forward(&y, mode)?;
        for (o, &x) in y.data_mut().iter_mut().zip(input.data()) {
            *o += x;
        }
        y.zero_padding();
        self.shape = Some((input.time(), input.channels(), input.lengths().to_vec()));
        Ok(y)
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let g = self.dropout.backward(grad_output)?;
        let g = self.act.backward(&g)?;
        let g = self.conv.backward(&g)?;
        let mut g = self.norm.backward(&g)?;
        for (a, &d) in g.iter_mut().zip(grad_output) {
            *a += d;
        }
        let (t, c, lengths) =
            self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "ResidualConvBlock" })?;
        zero_padded_rows(&mut g, *t, *c, lengths);
        Ok(g)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        self.norm.visit_params(f);
        self.conv.visit_params(f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        self.norm.visit_params_mut(f);
        self.conv.visit_params_mut(f);
    }
}

/// An acoustic model: log-mel features `(B, T, input_dim)` to logits `(B, T', vocab)`, with
/// `T' = config.output_length(T)` and output lengths `config.output_length(lengths[b])`, or, while the
/// output split is switched off ([`AcousticModel::set_output_split`]), the lengths before the split
/// ([`AcousticModel::output_lengths`] gives them either way).
///
/// Parameter names (PyTorch-like, unique): GRU model `conv.{i}.{weight,bias}`,
/// `rnn.{l}.{weight_ih_l0,weight_hh_l0,bias_ih_l0,bias_hh_l0}[_reverse]`, `output.{weight,bias}` (and
/// with `upsample` > 1 `output.subframe.{weight,bias}`), then with intermediate CTC
/// `inter.{weight,bias}`, `inter.subframe.{weight,bias}` and with self-conditioning
/// `inter.condition.{weight,bias}`, last; conv model `conv.{i}.*`, `blocks.{i}.norm.*`,
/// `blocks.{i}.conv.*`, `norm.*`, `output.*`.
///
/// Construction from a seed is deterministic: the same config and seed give bit-identical parameters
/// and dropout masks.
pub struct AcousticModel<F> {
    config: ModelConfig,
    layers: Vec<Box<dyn Layer<F>>>,
    /// The output layer when it splits frames (`upsample` > 1), kept apart from `layers` so that the
    /// split can be switched ([`AcousticModel::set_output_split`]); runs after them.
    head: Option<SubframeLinear<F>>,
    /// The factored word-start map after the output layer, if configured; runs last.
    expand: Option<WordStartExpand>,
    /// Intermediate CTC's auxiliary output layer, if configured.
    inter: Option<Intermediate<F>>,
}

/// The auxiliary output layer of intermediate CTC, where it branches off, and the optional
/// self-conditioning map back into the trunk.
struct Intermediate<F> {
    /// Index into `AcousticModel::layers` of the layer whose output it reads.
    after: usize,
    head: SubframeLinear<F>,
    /// The factored word-start map after `head`, as on the main output.
    expand: Option<WordStartExpand>,
    /// Self-conditioning: posteriors `(B, T, factor * V)` to the trunk's width.
    condition: Option<Linear<F>>,
    /// The posteriors of the last forward pass, `(B, T', V)` as the head (and `expand`) emitted them
    /// (padded frames zero), and whether they were tiled `factor` times to feed `condition` (split
    /// switched off).
    probs: Vec<F>,
    tiled: bool,
    /// Whether the last forward pass ran the head (so that a backward pass goes through it).
    ran: bool,
}

impl<F: NnFloat> Intermediate<F> {
    /// Runs the head on the trunk's output `x` and, with self-conditioning, adds the conditioning
    /// term to `x` in place. Returns the auxiliary logits.
    fn forward(&mut self, x: &mut Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        let mut z = self.head.forward(x, mode)?;
        if let Some(expand) = &mut self.expand {
            z = expand.forward(&z, mode)?;
        }
        self.ran = true;
        let Some(condition) = &mut self.condition else {
            return Ok(z);
        };
        let (b, t, _) = x.shape();
        let (v, factor) = (z.channels(), self.head.factor());
        let mut probs = z.data().to_vec();
        for (row, valid) in
            probs.chunks_exact_mut(v).enumerate().map(|(r, p)| (p, r % z.time() < z.lengths()[r / z.time()]))
        {
            if valid {
                let max = row.iter().fold(F::NEG_INFINITY, |m, &a| m.max(a));
                let mut sum = F::ZERO;
                for p in row.iter_mut() {
                    *p = (*p - max).exp();
                    sum += *p;
                }
                let inv = F::ONE / sum;
                row.iter_mut().for_each(|p| *p *= inv);
            } else {
                row.fill(F::ZERO);
            }
        }
        // Split on: (B, factor * T, V) row-major is already (B, T, factor * V). Split off (one frame of
        // V per recurrent frame): each frame's posteriors stand for all its sub-frames.
        self.tiled = z.time() != factor * t;
        let input = if self.tiled {
            probs.chunks_exact(v).flat_map(|p| std::iter::repeat_n(p, factor).flatten()).copied().collect()
        } else {
            probs.clone()
        };
        self.probs = probs;
        let c = condition.forward(&Batch::from_parts(input, b, t, factor * v, x.lengths().to_vec()), mode)?;
        for (a, &d) in x.data_mut().iter_mut().zip(c.data()) {
            *a += d;
        }
        Ok(z)
    }

    /// The gradient with respect to the trunk's output that the auxiliary path adds, given the
    /// gradient `grad_out` with respect to the (conditioned) output the next layer read and the
    /// gradient `grad_logits` with respect to the auxiliary logits, if any.
    fn backward(&mut self, grad_out: &[F], grad_logits: Option<&[F]>) -> Result<Vec<F>, NnError> {
        let dz = match &mut self.condition {
            Some(condition) => {
                let v = self.expand.as_ref().map_or(self.head.out_features(), WordStartExpand::out_features);
                let factor = self.head.factor();
                let gp = condition.backward(grad_out)?;
                let gp: Vec<F> = if self.tiled {
                    gp.chunks_exact(factor * v)
                        .flat_map(|frame| {
                            (0..v).map(move |k| frame.chunks_exact(v).fold(F::ZERO, |s, sub| s + sub[k]))
                        })
                        .collect()
                } else {
                    gp
                };
                check_grad_len("self-conditioning gradient", self.probs.len(), gp.len())?;
                // Softmax backward per frame: dz = p * (dp - <p, dp>); padded frames have p = 0.
                let mut dz = vec![F::ZERO; gp.len()];
                for ((d, p), g) in
                    dz.chunks_exact_mut(v).zip(self.probs.chunks_exact(v)).zip(gp.chunks_exact(v))
                {
                    let dot = p.iter().zip(g).fold(F::ZERO, |s, (&p, &g)| s + p * g);
                    for ((d, &p), &g) in d.iter_mut().zip(p).zip(g) {
                        *d = p * (g - dot);
                    }
                }
                if let Some(gl) = grad_logits {
                    check_grad_len("intermediate CTC gradient", dz.len(), gl.len())?;
                    for (d, &g) in dz.iter_mut().zip(gl) {
                        *d += g;
                    }
                }
                dz
            }
            None => grad_logits.ok_or(NnError::NoForwardCache { layer: "intermediate CTC output" })?.to_vec(),
        };
        match &mut self.expand {
            Some(expand) => self.head.backward(&Layer::<F>::backward(expand, &dz)?),
            None => self.head.backward(&dz),
        }
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        self.head.visit_params(f);
        if let Some(c) = &self.condition {
            c.visit_params(f);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        self.head.visit_params_mut(f);
        if let Some(c) = &mut self.condition {
            c.visit_params_mut(f);
        }
    }
}

/// Seed of the `i`-th dropout layer: distinct streams derived from the model seed.
fn dropout_seed(seed: u64, i: u64) -> u64 {
    seed ^ (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<F: NnFloat> AcousticModel<F> {
    /// Builds the model described by `config`, parameters initialised from `seed` (PyTorch's default
    /// uniform bounds; layer norms 1 and 0).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] from [`ModelConfig::validate`].
    pub fn new(config: &ModelConfig, seed: u64) -> Result<Self, NnError> {
        config.validate()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut layers: Vec<Box<dyn Layer<F>>> = Vec::new();
        let mut head = None;
        let mut expand = None;
        let mut inter = None;
        let mut n_dropout = 0u64;
        let mut next_seed = || {
            n_dropout += 1;
            dropout_seed(seed, n_dropout)
        };
        let subsampling = config.subsampling();
        match config {
            ModelConfig::Gru(c) => {
                // What the output layers emit: the classes, or with a factored word-start output the
                // logits they are expanded from.
                let new_expand = || c.factored_word_start.then(|| WordStartExpand::new(c.vocab)).transpose();
                let logits = new_expand()?.map_or(c.vocab, |e| e.in_features());
                let mut width = c.input_dim;
                for (i, spec) in subsampling.into_iter().enumerate() {
                    layers.push(Box::new(Conv1d::new(&format!("conv.{i}"), spec, &mut rng)?));
                    layers.push(Box::new(ActivationLayer::new(c.activation)));
                    width = spec.out_channels;
                }
                layers.push(Box::new(Dropout::new(c.dropout, next_seed())?));
                for l in 0..c.gru_layers {
                    layers.push(Box::new(BiGru::new(&format!("rnn.{l}"), width, c.hidden, &mut rng)?));
                    layers.push(Box::new(Dropout::new(c.dropout, next_seed())?));
                    width = 2 * c.hidden;
                    if l + 1 == c.inter_ctc_layer {
                        // Initialised from its own stream, so that adding it leaves the other
                        // parameters of a seed as they were.
                        let mut rng = Xoshiro256PlusPlus::seed_from_u64(dropout_seed(seed, u64::MAX - 1));
                        // Its own classes, or the main output's (factored like it).
                        let (classes, head_logits, expand) = match c.inter_vocab {
                            0 => (c.vocab, logits, new_expand()?),
                            v => (v, v, None),
                        };
                        let head = SubframeLinear::new("inter", width, head_logits, c.upsample, &mut rng)?;
                        let condition = if c.self_condition {
                            let mut map =
                                Linear::new("inter.condition", c.upsample * classes, width, &mut rng)?;
                            map.visit_params_mut(&mut |p| p.value_mut().fill(F::ZERO));
                            Some(map)
                        } else {
                            None
                        };
                        let after = layers.len() - 1;
                        inter = Some(Intermediate {
                            after,
                            head,
                            expand,
                            condition,
                            probs: Vec::new(),
                            tiled: false,
                            ran: false,
                        });
                    }
                }
                if c.upsample > 1 {
                    head = Some(SubframeLinear::new("output", width, logits, c.upsample, &mut rng)?);
                } else {
                    layers.push(Box::new(Linear::new("output", width, logits, &mut rng)?));
                }
                expand = new_expand()?;
            }
            ModelConfig::Conv(c) => {
                let mut width = c.input_dim;
                for (i, spec) in subsampling.into_iter().enumerate() {
                    layers.push(Box::new(Conv1d::new(&format!("conv.{i}"), spec, &mut rng)?));
                    layers.push(Box::new(ActivationLayer::new(Activation::Gelu)));
                    width = spec.out_channels;
                }
                if width != c.channels {
                    // No subsampling: a pointwise projection brings the features to the block width.
                    let spec = Conv1dSpec {
                        in_channels: width,
                        out_channels: c.channels,
                        kernel: 1,
                        stride: 1,
                        padding: 0,
                        dilation: 1,
                    };
                    layers.push(Box::new(Conv1d::new("conv.proj", spec, &mut rng)?));
                    width = c.channels;
                }
                for i in 0..c.blocks {
                    let dilation = if c.dilation_cycle.is_empty() {
                        1
                    } else {
                        c.dilation_cycle[i % c.dilation_cycle.len()]
                    };
                    layers.push(Box::new(ResidualConvBlock::new(
                        &format!("blocks.{i}"),
                        width,
                        c.kernel,
                        dilation,
                        c.dropout,
                        next_seed(),
                        &mut rng,
                    )?));
                }
                layers.push(Box::new(LayerNorm::new("norm", width, 1e-5, &mut rng)?));
                layers.push(Box::new(Linear::new("output", width, c.vocab, &mut rng)?));
            }
        }
        Ok(Self { config: config.clone(), layers, head, expand, inter })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Output classes `V`.
    pub fn vocab(&self) -> usize {
        self.config.vocab()
    }

    /// Output lengths (frames of logits) for the given input lengths (feature frames), with the
    /// output split as currently switched.
    pub fn output_lengths(&self, lengths: &[usize]) -> Vec<usize> {
        if self.output_split() {
            lengths.iter().map(|&l| self.config.output_length(l)).collect()
        } else {
            lengths.iter().map(|&l| self.config.subsampled_length(l)).collect()
        }
    }

    /// Switches the output split of a model with `upsample` > 1 on (the default after construction)
    /// or off (one output frame per subsampled frame, from the shared part of the output layer; see
    /// [`SubframeLinear::set_split`]). Does nothing to other models.
    pub fn set_output_split(&mut self, on: bool) {
        if let Some(head) = &mut self.head {
            head.set_split(on);
        }
        if let Some(inter) = &mut self.inter {
            if inter.head.factor() > 1 {
                inter.head.set_split(on);
            }
        }
    }

    /// Whether the output frames are split (`upsample` > 1 and the split switched on).
    pub fn output_split(&self) -> bool {
        self.head.as_ref().is_some_and(SubframeLinear::is_split)
    }

    /// Logits `(B, T', vocab)` for features `(B, T, input_dim)`, caching activations for
    /// [`AcousticModel::backward`]. Padded output frames are zero. With self-conditioning
    /// ([`GruModelConfig::self_condition`]) the auxiliary output layer runs too (its posteriors feed
    /// the layers above it), and the backward pass goes through it.
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] if the features do not have `input_dim` channels.
    pub fn forward(&mut self, features: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        Ok(self.forward_inner(features, mode, false)?.0)
    }

    /// As [`AcousticModel::forward`], and with intermediate CTC configured
    /// ([`GruModelConfig::inter_ctc_layer`]) also the auxiliary layer's logits, `(B, T', inter
    /// classes)` ([`ModelConfig::inter_vocab`]) with the main ones' frames and lengths; `None` without
    /// it. A following backward pass then takes the gradients of both
    /// ([`AcousticModel::backward_params_with_intermediate`]).
    ///
    /// # Errors
    /// As [`AcousticModel::forward`].
    pub fn forward_with_intermediate(
        &mut self,
        features: &Batch<F>,
        mode: Mode,
    ) -> Result<(Batch<F>, Option<Batch<F>>), NnError> {
        self.forward_inner(features, mode, true)
    }

    /// Whether the model has an intermediate-CTC output layer.
    pub fn has_intermediate(&self) -> bool {
        self.inter.is_some()
    }

    fn forward_inner(
        &mut self,
        features: &Batch<F>,
        mode: Mode,
        intermediate: bool,
    ) -> Result<(Batch<F>, Option<Batch<F>>), NnError> {
        check_channels("model input channels", self.config.input_dim(), features.channels())?;
        let mut x: Option<Batch<F>> = None;
        let mut aux = None;
        // Self-conditioning needs the auxiliary layer whether or not its logits are wanted.
        let branch = self.inter.as_mut().and_then(|i| {
            i.ran = false;
            (intermediate || i.condition.is_some()).then_some(i.after)
        });
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let mut y = layer.forward(x.as_ref().unwrap_or(features), mode)?;
            if branch == Some(i) {
                if let Some(inter) = &mut self.inter {
                    let z = inter.forward(&mut y, mode)?;
                    aux = intermediate.then_some(z);
                }
            }
            x = Some(y);
        }
        if let Some(head) = &mut self.head {
            x = Some(head.forward(x.as_ref().unwrap_or(features), mode)?);
        }
        if let Some(expand) = &mut self.expand {
            x = Some(expand.forward(x.as_ref().unwrap_or(features), mode)?);
        }
        Ok((x.unwrap_or_else(|| features.clone()), aux))
    }

    /// Back-propagates the gradient of the loss with respect to the logits (flat `(B, T', vocab)`, as
    /// returned by the CTC loss), adding into every parameter's gradient, and returns the gradient with
    /// respect to the features (flat `(B, T, input_dim)`).
    ///
    /// # Errors
    /// [`NnError::NoForwardCache`] without a preceding forward; [`NnError::ShapeMismatch`] if the
    /// gradient's length is not that of the last logits.
    pub fn backward(&mut self, grad_logits: &[F]) -> Result<Vec<F>, NnError> {
        Ok(self.backward_through(grad_logits, None, true)?.unwrap_or_else(|| grad_logits.to_vec()))
    }

    /// As [`AcousticModel::backward`], without the gradient with respect to the features, which
    /// training does not use: the first layer skips its input gradient (for the subsampling
    /// convolution, one of its two matrix products).
    ///
    /// # Errors
    /// As [`AcousticModel::backward`].
    pub fn backward_params(&mut self, grad_logits: &[F]) -> Result<(), NnError> {
        self.backward_through(grad_logits, None, false).map(drop)
    }

    /// As [`AcousticModel::backward`] after [`AcousticModel::forward_with_intermediate`]:
    /// `grad_inter` is the gradient with respect to the auxiliary logits (their layout, `(B, T', inter
    /// classes)`), and its back-propagation joins the main one at the layer the auxiliary output
    /// reads. A loss `(1 - w) L + w L_inter` passes gradients already scaled by `1 - w` and `w`.
    ///
    /// # Errors
    /// As [`AcousticModel::backward`]; [`NnError::NoForwardCache`] if the last forward pass did not
    /// run the auxiliary layer (or the model has none) and `grad_inter` is given.
    pub fn backward_with_intermediate(
        &mut self,
        grad_logits: &[F],
        grad_inter: Option<&[F]>,
    ) -> Result<Vec<F>, NnError> {
        Ok(self.backward_through(grad_logits, grad_inter, true)?.unwrap_or_else(|| grad_logits.to_vec()))
    }

    /// As [`AcousticModel::backward_with_intermediate`], without the gradient with respect to the
    /// features (see [`AcousticModel::backward_params`]).
    ///
    /// # Errors
    /// As [`AcousticModel::backward_with_intermediate`].
    pub fn backward_params_with_intermediate(
        &mut self,
        grad_logits: &[F],
        grad_inter: Option<&[F]>,
    ) -> Result<(), NnError> {
        self.backward_through(grad_logits, grad_inter, false).map(drop)
    }

    /// Back-propagates through the head and the layers, last first; the first stage back reads the
    /// caller's gradient in place. The auxiliary layer's input gradient (from `grad_inter`) is added to
    /// the gradient flowing into the layer it reads, before that layer's backward pass. Returns the
    /// input gradient when asked for (`None` also when the model has no stages: the gradient passes
    /// through unchanged).
    fn backward_through(
        &mut self,
        grad_logits: &[F],
        grad_inter: Option<&[F]>,
        input_grad: bool,
    ) -> Result<Option<Vec<F>>, NnError> {
        let ran = self.inter.as_ref().filter(|i| i.ran);
        if grad_inter.is_some() && ran.is_none() {
            return Err(NnError::NoForwardCache { layer: "intermediate CTC output" });
        }
        let branch = ran.filter(|i| grad_inter.is_some() || i.condition.is_some()).map(|i| i.after);
        let n = self.layers.len();
        let stages = n + usize::from(self.head.is_some()) + usize::from(self.expand.is_some());
        let expand = self.expand.iter_mut().map(|e| (n + 1, e as &mut dyn Layer<F>));
        let head = self.head.iter_mut().map(|h| (n, h as &mut dyn Layer<F>));
        let layers =
            self.layers.iter_mut().enumerate().rev().map(|(i, l)| (i, l.as_mut() as &mut dyn Layer<F>));
        let mut g: Option<Vec<F>> = None;
        for (k, (i, stage)) in expand.chain(head).chain(layers).enumerate() {
            if branch == Some(i) {
                // The layer that feeds the auxiliary output is never the last stage, so `g` holds the
                // gradient of its (conditioned) output by now.
                let g = g.as_mut().ok_or(NnError::NoForwardCache { layer: "intermediate CTC output" })?;
                if let Some(inter) = &mut self.inter {
                    let gb = inter.backward(g, grad_inter)?;
                    check_grad_len("intermediate CTC input gradient", g.len(), gb.len())?;
                    for (a, b) in g.iter_mut().zip(&gb) {
                        *a += *b;
                    }
                }
            }
            let upstream = g.as_deref().unwrap_or(grad_logits);
            if k + 1 == stages && !input_grad {
                stage.backward_params(upstream)?;
                return Ok(None);
            }
            g = Some(stage.backward(upstream)?);
        }
        Ok(g)
    }

    /// Every parameter, in a fixed order (input side first).
    pub fn params(&self) -> Vec<&Param<F>> {
        let mut out = Vec::new();
        self.visit_params(&mut |p| out.push(p));
        out
    }

    /// Every parameter, mutably, in the same order as [`AcousticModel::params`].
    pub fn params_mut(&mut self) -> Vec<&mut Param<F>> {
        let mut out = Vec::new();
        self.visit_params_mut(&mut |p| out.push(p));
        out
    }

    /// The parameter named `name`, if any.
    pub fn param(&self, name: &str) -> Option<&Param<F>> {
        self.params().into_iter().find(|p| p.name() == name)
    }

    /// Overwrites the values of the parameter named `name` (e.g. from a checkpoint), leaving its
    /// gradient alone.
    ///
    /// # Errors
    /// [`NnError::UnknownParam`] if no parameter has that name; [`NnError::ShapeMismatch`] if `values`
    /// does not have the parameter's number of elements.
    pub fn set_param(&mut self, name: &str, values: &[F]) -> Result<(), NnError> {
        let p = self
            .params_mut()
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| NnError::UnknownParam { name: name.to_string() })?;
        if p.len() != values.len() {
            return Err(NnError::ShapeMismatch {
                what: "parameter values",
                expected: p.len(),
                got: values.len(),
            });
        }
        p.value_mut().copy_from_slice(values);
        Ok(())
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |p| n += p.len());
        n
    }

    /// Sets every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |p| p.zero_grad());
    }

    /// Calls `f` on each parameter in order.
    pub fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        for layer in &self.layers {
            layer.visit_params(f);
        }
        if let Some(head) = &self.head {
            head.visit_params(f);
        }
        if let Some(inter) = &self.inter {
            inter.visit_params(f);
        }
    }

    /// Calls `f` on each parameter, mutably, in order.
    pub fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        for layer in &mut self.layers {
            layer.visit_params_mut(f);
        }
        if let Some(head) = &mut self.head {
            head.visit_params_mut(f);
        }
        if let Some(inter) = &mut self.inter {
            inter.visit_params_mut(f);
        }
    }
}

/// The model as one [`Layer`] (features in, logits out), so generic code and tests can treat it like
/// any layer; the inherent methods of the same names do the same.
impl<F: NnFloat> Layer<F> for AcousticModel<F> {
    fn forward(&mut self, input: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        AcousticModel::forward(self, input, mode)
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        AcousticModel::backward(self, grad_output)
    }

    fn backward_params(&mut self, grad_output: &[F]) -> Result<(), NnError> {
        AcousticModel::backward_params(self, grad_output)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        AcousticModel::visit_params(self, f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        AcousticModel::visit_params_mut(self, f);
    }
}
