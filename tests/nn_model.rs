//! Whole-model gradients, independence of batch neighbours, seeded construction, config files.

mod nn_util;

use fastctc::nn::{
    AcousticModel, Activation, Batch, ConvModelConfig, GruModelConfig, Layer, Mode, ModelConfig, NnError,
    Param, ResidualConvBlock,
};
use nn_util::{check_layer, ragged, rng};

fn tiny_gru(conv_layers: usize, upsample: usize) -> ModelConfig {
    ModelConfig::Gru(GruModelConfig {
        input_dim: 3,
        vocab: 4,
        conv_layers,
        conv_channels: 3,
        conv_kernel: 3,
        conv_stride: 2,
        activation: Activation::Tanh,
        gru_layers: 2,
        hidden: 2,
        dropout: 0.2,
        upsample,
        inter_ctc_layer: 0,
        self_condition: false,
        factored_word_start: false,
        inter_vocab: 0,
    })
}

/// `tiny_gru` with an intermediate-CTC output after its first GRU layer.
fn tiny_gru_inter(conv_layers: usize, upsample: usize) -> ModelConfig {
    match tiny_gru(conv_layers, upsample) {
        ModelConfig::Gru(c) => ModelConfig::Gru(GruModelConfig { inter_ctc_layer: 1, ..c }),
        other => other,
    }
}

/// A model with intermediate CTC seen as one layer whose output is the main logits and the auxiliary
/// ones side by side (`vocab + inter classes` channels), so that the generic gradient check covers
/// both paths and where they join.
struct BothOutputs(AcousticModel<f64>);

impl Layer<f64> for BothOutputs {
    fn forward(&mut self, input: &Batch<f64>, mode: Mode) -> Result<Batch<f64>, NnError> {
        let (main, aux) = self.0.forward_with_intermediate(input, mode)?;
        let aux = aux.expect("the model has an intermediate output");
        let (b, t, v) = main.shape();
        let va = self.0.config().inter_vocab().unwrap();
        assert_eq!((aux.shape(), aux.lengths()), ((b, t, va), main.lengths()));
        let data = main
            .data()
            .chunks_exact(v)
            .zip(aux.data().chunks_exact(va))
            .flat_map(|(m, a)| m.iter().chain(a))
            .copied();
        Batch::new(data.collect(), b, t, v + va, main.lengths().to_vec())
    }

    fn backward(&mut self, grad_output: &[f64]) -> Result<Vec<f64>, NnError> {
        let v = self.0.vocab();
        let va = self.0.config().inter_vocab().unwrap();
        let (mut main, mut aux) = (Vec::new(), Vec::new());
        for row in grad_output.chunks_exact(v + va) {
            main.extend_from_slice(&row[..v]);
            aux.extend_from_slice(&row[v..]);
        }
        self.0.backward_with_intermediate(&main, Some(&aux))
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<f64>)) {
        self.0.visit_params(f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<f64>)) {
        self.0.visit_params_mut(f);
    }
}

fn tiny_conv() -> ModelConfig {
    ModelConfig::Conv(ConvModelConfig {
        input_dim: 3,
        vocab: 4,
        channels: 4,
        subsample_layers: 1,
        blocks: 2,
        kernel: 3,
        dilation_cycle: vec![1, 2],
        dropout: 0.2,
    })
}

const LENGTHS: [usize; 3] = [9, 4, 1];
const T: usize = 9;

#[test]
fn gru_model_gradients() {
    // With an output split (upsample > 1) the check covers the reshaping of the logits too.
    for (i, (conv_layers, upsample)) in [(2, 2), (1, 1), (0, 3)].into_iter().enumerate() {
        let seed = 100 + i as u64;
        let mut model = AcousticModel::<f64>::new(&tiny_gru(conv_layers, upsample), seed).unwrap();
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut model, &x, seed);
    }
}

#[test]
fn gru_model_with_intermediate_ctc_gradients() {
    for (i, (conv_layers, upsample)) in [(2, 2), (1, 1)].into_iter().enumerate() {
        let seed = 120 + i as u64;
        let model = AcousticModel::<f64>::new(&tiny_gru_inter(conv_layers, upsample), seed).unwrap();
        assert!(model.has_intermediate());
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut BothOutputs(model), &x, seed);
    }
}

/// Fills the self-conditioning map with random values from `seed`: it starts at zero, which would hide
/// a wrong backward pass through the posteriors that feed it.
fn randomise_condition(model: &mut AcousticModel<f64>, seed: u64) {
    let mut r = rng(seed);
    model.visit_params_mut(&mut |p| {
        if p.name().starts_with("inter.condition") {
            let n = p.len();
            p.value_mut().copy_from_slice(&nn_util::uniform(&mut r, n, 1.0));
        }
    });
}

/// Self-conditioning: the gradient reaches the trunk through the posteriors' softmax, with the split
/// on, off (posteriors tiled over the sub-frames) and without one. The conditioning map starts at zero,
/// which would hide a wrong softmax backward pass, so it is set to random values first.
#[test]
fn self_conditioned_model_gradients() {
    for (i, (conv_layers, upsample, split)) in
        [(2, 2, true), (1, 2, false), (0, 1, true)].into_iter().enumerate()
    {
        let seed = 125 + i as u64;
        let config = match tiny_gru_inter(conv_layers, upsample) {
            ModelConfig::Gru(c) => ModelConfig::Gru(GruModelConfig { self_condition: true, ..c }),
            other => other,
        };
        let mut model = AcousticModel::<f64>::new(&config, seed).unwrap();
        for name in ["inter.condition.weight", "inter.condition.bias"] {
            assert!(model.param(name).unwrap().value().iter().all(|&v| v == 0.0), "{name} starts at zero");
        }
        randomise_condition(&mut model, seed + 1000);
        model.set_output_split(split);
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut BothOutputs(model), &x, seed);
    }
}

/// A factored word-start output (5 classes: blank and 2 symbols, each inside a word or beginning one,
/// from 4 logits): the gradient goes through the expansion on the main output and, with
/// self-conditioning, on the intermediate one, whose expanded posteriors feed the trunk (split on,
/// off, and without a split).
#[test]
fn factored_word_start_model_gradients() {
    for (i, (conv_layers, upsample, inter, split)) in [
        (2, 2, false, true),
        (1, 1, false, true),
        (2, 2, true, true),
        (1, 2, true, false),
        (0, 1, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 140 + i as u64;
        let config = match tiny_gru(conv_layers, upsample) {
            ModelConfig::Gru(c) => ModelConfig::Gru(GruModelConfig {
                vocab: 5,
                factored_word_start: true,
                inter_ctc_layer: usize::from(inter),
                self_condition: inter,
                ..c
            }),
            other => other,
        };
        let mut model = AcousticModel::<f64>::new(&config, seed).unwrap();
        assert_eq!(model.param("output.weight").unwrap().len(), 4 * 4, "4 logits from 2 x 2 hidden");
        if inter {
            let weight = model.param("inter.condition.weight").unwrap();
            assert_eq!(weight.len(), 4 * upsample * 5, "expanded posteriors in, 4 channels out");
        }
        randomise_condition(&mut model, seed + 1000);
        model.set_output_split(split);
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        if inter {
            check_layer(&mut BothOutputs(model), &x, seed);
        } else {
            check_layer(&mut model, &x, seed);
        }
    }
}

/// An intermediate output with classes of its own (6 under a main output of 4, and 4 plain ones under
/// a factored main output of 5), self-conditioned: the conditioning map reads its posteriors.
#[test]
fn intermediate_output_with_its_own_classes_gradients() {
    for (i, (vocab, factored, inter_vocab, upsample, split)) in
        [(4, false, 6, 2, true), (5, true, 4, 2, false), (4, false, 3, 1, true)].into_iter().enumerate()
    {
        let seed = 150 + i as u64;
        let config = match tiny_gru_inter(1, upsample) {
            ModelConfig::Gru(c) => ModelConfig::Gru(GruModelConfig {
                vocab,
                factored_word_start: factored,
                self_condition: true,
                ..c
            }),
            other => other,
        }
        .with_inter_vocab(inter_vocab);
        assert_eq!(config.inter_vocab(), Some(inter_vocab));
        let mut model = AcousticModel::<f64>::new(&config, seed).unwrap();
        assert_eq!(model.param("inter.bias").unwrap().len(), inter_vocab);
        randomise_condition(&mut model, seed + 1000);
        model.set_output_split(split);
        let x = ragged(&mut rng(seed), T, 3, &LENGTHS, f64::NAN);
        check_layer(&mut BothOutputs(model), &x, seed);
    }
    // Without an intermediate layer there is nothing to give classes to.
    let c = GruModelConfig { inter_vocab: 29, ..GruModelConfig::default() };
    assert!(matches!(
        ModelConfig::Gru(c).validate(),
        Err(NnError::InvalidConfig { field: "inter_vocab", .. })
    ));
    assert_eq!(ModelConfig::Gru(GruModelConfig::default()).inter_vocab(), None);
}

/// The factored output's classes: blank and the symbols inside a word are the output layer's logits,
/// and each symbol beginning a word adds the same per-frame boundary logit to its symbol's.
#[test]
fn factored_word_start_classes_share_their_letters_logits() {
    let config = ModelConfig::Gru(GruModelConfig { factored_word_start: true, ..GruModelConfig::default() })
        .with_vocab(55);
    assert!(config.factored_word_start());
    let mut model = AcousticModel::<f64>::new(&config, 7).unwrap();
    assert_eq!(model.vocab(), 55);
    assert_eq!(model.param("output.bias").unwrap().len(), 29);
    let x = ragged(&mut rng(8), 12, 80, &[12, 7], 0.0);
    let y = model.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), (2, 3, 55));
    for (row, valid) in nn_util::valid_rows(3, y.lengths()) {
        let z = &y.data()[row * 55..(row + 1) * 55];
        if !valid {
            assert!(z.iter().all(|&v| v == 0.0));
            continue;
        }
        let boundary = z[28] - z[1];
        assert!(z[1..28].iter().zip(&z[28..]).all(|(i, s)| (s - i - boundary).abs() < 1e-12));
    }
    // Not a word-start vocabulary size (2 K + 1), or not the GRU model: refused.
    let even = GruModelConfig { factored_word_start: true, vocab: 29 - 1, ..GruModelConfig::default() };
    assert!(matches!(
        AcousticModel::<f32>::new(&ModelConfig::Gru(even), 0),
        Err(NnError::InvalidConfig { field: "vocab", .. })
    ));
    assert!(!ModelConfig::Conv(ConvModelConfig::default()).factored_word_start());
}

/// The auxiliary output changes nothing about the main one: same parameters for the same seed, the
/// same logits, and without its gradient the same parameter gradients; its own split follows the
/// main output's switch.
#[test]
fn intermediate_ctc_leaves_the_main_model_alone() {
    let x = ragged(&mut rng(130), T, 3, &LENGTHS, 0.0);
    let mut plain = AcousticModel::<f64>::new(&tiny_gru(2, 2), 131).unwrap();
    let mut inter = AcousticModel::<f64>::new(&tiny_gru_inter(2, 2), 131).unwrap();
    let names: Vec<String> = inter.params().iter().map(|p| p.name().to_string()).collect();
    let extra: Vec<&str> = names[plain.params().len()..].iter().map(String::as_str).collect();
    assert_eq!(extra, ["inter.weight", "inter.bias", "inter.subframe.weight", "inter.subframe.bias"]);
    for (a, b) in plain.params().iter().zip(inter.params()) {
        assert_eq!((a.name(), a.value()), (b.name(), b.value()));
    }
    let want = plain.forward(&x, Mode::Train).unwrap();
    let (main, aux) = inter.forward_with_intermediate(&x, Mode::Train).unwrap();
    assert_eq!(main, want);
    // (In evaluation mode: every training-mode pass draws new dropout masks.)
    assert_eq!(inter.forward(&x, Mode::Eval).unwrap(), plain.forward(&x, Mode::Eval).unwrap());
    let aux = aux.unwrap();
    assert_eq!((aux.shape(), aux.lengths()), (want.shape(), want.lengths()));
    let g: Vec<f64> = (0..want.data().len()).map(|i| ((i * 13) % 7) as f64 / 7.0 - 0.4).collect();
    plain.forward(&x, Mode::Train).unwrap();
    plain.backward_params(&g).unwrap();
    inter.forward_with_intermediate(&x, Mode::Train).unwrap();
    inter.backward_params_with_intermediate(&g, None).unwrap();
    for (a, b) in plain.params().iter().zip(inter.params()) {
        assert_eq!(a.grad(), b.grad(), "{}", a.name());
    }
    // A plain forward pass does not run the auxiliary layer, so there is nothing to back-propagate.
    inter.forward(&x, Mode::Train).unwrap();
    assert!(matches!(
        inter.backward_params_with_intermediate(&g, Some(&g)),
        Err(NnError::NoForwardCache { .. })
    ));
    assert!(matches!(
        plain.backward_params_with_intermediate(&g, Some(&g)),
        Err(NnError::NoForwardCache { .. })
    ));
    inter.set_output_split(false);
    let (main, aux) = inter.forward_with_intermediate(&x, Mode::Eval).unwrap();
    let aux = aux.unwrap();
    assert_eq!((aux.shape(), aux.lengths()), (main.shape(), main.lengths()));
    assert_eq!(main.lengths(), inter.output_lengths(&LENGTHS).as_slice());
    assert_eq!(main.shape().1, T.div_ceil(4), "unsplit: one output frame per subsampled frame");
}

#[test]
fn conv_model_gradients() {
    let mut model = AcousticModel::<f64>::new(&tiny_conv(), 110).unwrap();
    let x = ragged(&mut rng(110), T, 3, &LENGTHS, f64::NAN);
    check_layer(&mut model, &x, 110);
}

#[test]
fn residual_block_gradients() {
    let mut r = rng(120);
    let mut block = ResidualConvBlock::<f64>::new("b", 3, 3, 2, 0.0, 1, &mut r).unwrap();
    let x = ragged(&mut r, T, 3, &LENGTHS, f64::NAN);
    check_layer(&mut block, &x, 120);
}

/// A sequence's logits do not depend on its batch neighbours or on how much padding follows it.
#[test]
fn outputs_independent_of_batch_and_padding() {
    for config in [tiny_gru(2, 2), tiny_conv()] {
        let mut model = AcousticModel::<f64>::new(&config, 130).unwrap();
        let x = ragged(&mut rng(131), T, 3, &LENGTHS, f64::NAN);
        let y = model.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.lengths(), model.output_lengths(&LENGTHS).as_slice());
        assert_eq!(y.time(), config.output_length(T));
        for (b, &len) in LENGTHS.iter().enumerate() {
            let alone =
                Batch::new(x.data()[b * T * 3..(b * T + len) * 3].to_vec(), 1, len, 3, vec![len]).unwrap();
            let ya = model.forward(&alone, Mode::Eval).unwrap();
            let n = ya.lengths()[0] * 4;
            let start = b * y.time() * 4;
            for (a, c) in ya.data()[..n].iter().zip(&y.data()[start..start + n]) {
                assert!((a - c).abs() < 1e-12, "{config:?}: sequence {b} differs alone vs batched");
            }
        }
    }
}

#[test]
fn seeded_construction_is_reproducible() {
    let config = ModelConfig::default();
    let a = AcousticModel::<f32>::new(&config, 42).unwrap();
    let b = AcousticModel::<f32>::new(&config, 42).unwrap();
    let c = AcousticModel::<f32>::new(&config, 43).unwrap();
    let (pa, pb, pc) = (a.params(), b.params(), c.params());
    assert_eq!(pa.len(), pb.len());
    for ((x, y), z) in pa.iter().zip(&pb).zip(&pc) {
        assert_eq!(x.name(), y.name());
        assert_eq!(x.value(), y.value(), "{}", x.name());
        if x.name().contains("weight") && !x.name().starts_with("norm") {
            assert_ne!(x.value(), z.value(), "{} should depend on the seed", x.name());
        }
    }
    // PyTorch's default bounds: GRU weights within 1/sqrt(hidden), conv.0 within 1/sqrt(80 * 3).
    for p in &pa {
        let bound = if p.name().starts_with("rnn.") {
            1.0 / 192f32.sqrt()
        } else if p.name().starts_with("conv.0") {
            1.0 / 240f32.sqrt()
        } else {
            continue;
        };
        let max = p.value().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max <= bound && max > 0.9 * bound, "{}: max |w| {max}, bound {bound}", p.name());
    }
    // Dropout masks are seeded too: two models with the same seed train identically.
    let mut a = a;
    let mut b = b;
    let x = Batch::new(
        (0..2 * 20 * 80).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect(),
        2,
        20,
        80,
        vec![20, 13],
    )
    .unwrap();
    assert_eq!(a.forward(&x, Mode::Train).unwrap(), b.forward(&x, Mode::Train).unwrap());
}

#[test]
fn default_model_sizes_and_names() {
    let model = AcousticModel::<f32>::new(&ModelConfig::default(), 0).unwrap();
    let n = model.num_params();
    assert!((1_900_000..2_300_000).contains(&n), "default model has {n} parameters");
    let mut names: Vec<String> = model.params().iter().map(|p| p.name().to_string()).collect();
    assert_eq!(names.first().map(String::as_str), Some("conv.0.weight"));
    assert!(names.contains(&"rnn.2.weight_hh_l0_reverse".to_string()));
    assert_eq!(names.last().map(String::as_str), Some("output.bias"));
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "parameter names must be unique");
    assert_eq!(model.output_lengths(&[300, 299, 1, 0]), vec![75, 75, 1, 0]);
    let split = ModelConfig::Gru(GruModelConfig { upsample: 2, ..GruModelConfig::default() });
    let model = AcousticModel::<f32>::new(&split, 0).unwrap();
    assert_eq!(model.output_lengths(&[300, 299, 1, 0]), vec![150, 150, 2, 0]);
    assert_eq!(
        (ModelConfig::default().input_frames_per_output(), split.input_frames_per_output()),
        (4.0, 2.0)
    );
    let unsubsampled = GruModelConfig { conv_layers: 0, upsample: 2, ..GruModelConfig::default() };
    assert_eq!(ModelConfig::Gru(unsubsampled).input_frames_per_output(), 0.5);
    assert_eq!(model.param("output.weight").unwrap().shape(), &[29, 384]);
    assert_eq!(model.param("output.subframe.weight").unwrap().shape(), &[58, 384]);
    let x = Batch::<f32>::zeros(2, 300, 80, vec![300, 1]).unwrap();
    let y = AcousticModel::new(&split, 0).unwrap().forward(&x, Mode::Eval).unwrap();
    assert_eq!((y.shape(), y.lengths()), ((2, 150, 29), &[150usize, 2][..]));
    let conv = AcousticModel::<f32>::new(&ModelConfig::Conv(ConvModelConfig::default()), 0).unwrap();
    assert!(conv.num_params() > 100_000);
}

#[test]
fn zero_grad_and_accumulation() {
    let mut model = AcousticModel::<f64>::new(&tiny_gru(1, 1), 140).unwrap();
    let x = ragged(&mut rng(141), T, 3, &LENGTHS, 0.0);
    let y = model.forward(&x, Mode::Eval).unwrap();
    let g = vec![0.5; y.data().len()];
    model.backward(&g).unwrap();
    let once: Vec<Vec<f64>> = model.params().iter().map(|p| p.grad().to_vec()).collect();
    model.forward(&x, Mode::Eval).unwrap();
    model.backward(&g).unwrap();
    for (p, o) in model.params().iter().zip(&once) {
        for (a, b) in p.grad().iter().zip(o) {
            assert!((a - 2.0 * b).abs() < 1e-12, "backward must accumulate");
        }
    }
    model.zero_grad();
    assert!(model.params().iter().all(|p| p.grad().iter().all(|&v| v == 0.0)));
}

/// Training's backward pass without the features' gradient leaves the same parameter gradients, for
/// a first layer that skips work (a convolution), one that does not (a GRU), and the split head.
#[test]
fn backward_without_the_input_gradient_gives_the_same_parameter_gradients() {
    for (conv_layers, upsample) in [(2, 2), (0, 1), (1, 3)] {
        let config = tiny_gru(conv_layers, upsample);
        let x = ragged(&mut rng(150), T, 3, &LENGTHS, f64::NAN);
        let mut full = AcousticModel::<f64>::new(&config, 151).unwrap();
        let mut params_only = AcousticModel::<f64>::new(&config, 151).unwrap();
        let y = full.forward(&x, Mode::Train).unwrap();
        assert_eq!(params_only.forward(&x, Mode::Train).unwrap().data(), y.data());
        let g: Vec<f64> = (0..y.data().len()).map(|i| ((i * 37) % 11) as f64 / 10.0 - 0.5).collect();
        let gin = full.backward(&g).unwrap();
        assert_eq!(gin.len(), x.data().len());
        params_only.backward_params(&g).unwrap();
        for (a, b) in full.params().iter().zip(params_only.params()) {
            assert!(a.grad().iter().any(|&v| v != 0.0), "{} has a gradient", a.name());
            assert_eq!(a.grad(), b.grad(), "{}", a.name());
        }
    }
    let mut model = AcousticModel::<f64>::new(&tiny_gru(1, 1), 152).unwrap();
    assert!(matches!(model.backward_params(&[0.0; 4]), Err(NnError::NoForwardCache { .. })));
}

#[test]
fn config_round_trips_through_json() {
    for config in [
        ModelConfig::default(),
        ModelConfig::Conv(ConvModelConfig::default()),
        tiny_gru(1, 1),
        tiny_gru_inter(2, 2),
    ] {
        let json = serde_json::to_string(&config).unwrap();
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
    let json = serde_json::to_string(&ModelConfig::default()).unwrap();
    assert!(json.contains("\"arch\":\"gru\""), "{json}");
    // A config written before `upsample` and `inter_ctc_layer` existed reads as one output frame per
    // recurrent frame and no intermediate CTC.
    let old = json.replace(",\"upsample\":1", "").replace(",\"inter_ctc_layer\":0", "");
    assert!(!old.contains("upsample"), "{old}");
    assert_eq!(serde_json::from_str::<ModelConfig>(&old).unwrap(), ModelConfig::default());
}

#[test]
fn invalid_configs_are_rejected() {
    let c = GruModelConfig { hidden: 0, ..GruModelConfig::default() };
    assert!(matches!(
        AcousticModel::<f32>::new(&ModelConfig::Gru(c), 0),
        Err(NnError::InvalidConfig { field: "hidden", .. })
    ));
    let c = GruModelConfig { dropout: 1.5, ..GruModelConfig::default() };
    assert!(matches!(ModelConfig::Gru(c).validate(), Err(NnError::InvalidConfig { field: "dropout", .. })));
    for upsample in [0, 17] {
        let c = GruModelConfig { upsample, ..GruModelConfig::default() };
        assert!(matches!(
            ModelConfig::Gru(c).validate(),
            Err(NnError::InvalidConfig { field: "upsample", .. })
        ));
    }
    for inter_ctc_layer in [3, 4] {
        let c = GruModelConfig { inter_ctc_layer, ..GruModelConfig::default() };
        assert!(matches!(
            ModelConfig::Gru(c).validate(),
            Err(NnError::InvalidConfig { field: "inter_ctc_layer", .. })
        ));
    }
    let c = ConvModelConfig { kernel: 4, ..ConvModelConfig::default() };
    assert!(matches!(ModelConfig::Conv(c).validate(), Err(NnError::InvalidConfig { field: "kernel", .. })));
    // Absurd sizes are refused up front instead of overflowing or exhausting memory.
    let huge = GruModelConfig { hidden: usize::MAX / 2, ..GruModelConfig::default() };
    assert!(matches!(
        AcousticModel::<f32>::new(&ModelConfig::Gru(huge), 0),
        Err(NnError::InvalidConfig { .. })
    ));
    let huge = GruModelConfig { vocab: 1 << 40, ..GruModelConfig::default() };
    assert!(matches!(
        AcousticModel::<f32>::new(&ModelConfig::Gru(huge), 0),
        Err(NnError::InvalidConfig { .. })
    ));
    let huge = GruModelConfig { gru_layers: 1 << 40, ..GruModelConfig::default() };
    assert!(matches!(
        ModelConfig::Gru(huge).validate(),
        Err(NnError::InvalidConfig { field: "gru_layers", .. })
    ));
    let mut model = AcousticModel::<f32>::new(&ModelConfig::default(), 0).unwrap();
    let x = Batch::<f32>::zeros(1, 4, 40, vec![4]).unwrap();
    assert!(matches!(
        model.forward(&x, Mode::Eval),
        Err(NnError::ShapeMismatch { expected: 80, got: 40, .. })
    ));
    assert!(matches!(model.backward(&[0.0; 3]), Err(NnError::NoForwardCache { .. })));
}

/// Empty batches, zero-length padded time and all-empty sequences go through without panicking and
/// give correctly shaped, all-zero outputs and gradients.
#[test]
fn empty_shapes() {
    for config in [tiny_gru(2, 1), tiny_gru(2, 2), tiny_conv()] {
        let mut model = AcousticModel::<f32>::new(&config, 150).unwrap();
        for (b, t, lengths) in [(0, 5, vec![]), (2, 0, vec![0, 0]), (2, 4, vec![0, 0]), (1, 1, vec![1])] {
            let x = Batch::<f32>::zeros(b, t, 3, lengths.clone()).unwrap();
            let y = model.forward(&x, Mode::Train).unwrap();
            assert_eq!(y.shape(), (b, config.output_length(t), 4));
            assert_eq!(y.lengths(), model.output_lengths(&lengths).as_slice());
            let g = model.backward(&vec![1.0; y.data().len()]).unwrap();
            assert_eq!(g.len(), b * t * 3);
            if lengths.iter().all(|&l| l == 0) {
                assert!(y.data().iter().all(|&v| v == 0.0));
                assert!(g.iter().all(|&v| v == 0.0));
            }
        }
    }
}

#[test]
fn parameters_by_name() {
    let mut model = AcousticModel::<f32>::new(&tiny_gru(1, 1), 160).unwrap();
    let shape = model.param("output.weight").unwrap().shape().to_vec();
    assert_eq!(shape, vec![4, 4]);
    model.set_param("output.weight", &[0.5; 16]).unwrap();
    assert!(model.param("output.weight").unwrap().value().iter().all(|&v| v == 0.5));
    assert!(matches!(model.set_param("nope", &[0.0]), Err(NnError::UnknownParam { .. })));
    assert!(matches!(
        model.set_param("output.bias", &[0.0; 3]),
        Err(NnError::ShapeMismatch { expected: 4, got: 3, .. })
    ));
}

/// End to end in f32: the model, its backward pass, clipping and AdamW fit a fixed random target
/// (squared error on valid frames), i.e. the gradients point downhill and the optimizer follows.
#[test]
fn adamw_fits_a_small_regression() {
    use fastctc::optim::{clip_grad_norm, Adam, AdamConfig, LrSchedule};
    for config in [tiny_gru(2, 2), tiny_conv()] {
        let mut model = AcousticModel::<f32>::new(&config, 170).unwrap();
        let x64 = ragged(&mut rng(171), T, 3, &LENGTHS, 0.0);
        let x =
            Batch::new(x64.data().iter().map(|&v| v as f32).collect(), 3, T, 3, LENGTHS.to_vec()).unwrap();
        let y0 = model.forward(&x, Mode::Eval).unwrap();
        let target: Vec<f32> =
            nn_util::uniform(&mut rng(172), y0.data().len(), 1.0).iter().map(|&v| v as f32).collect();
        let loss_and_grad = |y: &Batch<f32>| {
            let mut g = vec![0.0f32; y.data().len()];
            let mut loss = 0.0f64;
            for (row, valid) in nn_util::valid_rows(y.time(), y.lengths()) {
                if valid {
                    for i in row * 4..(row + 1) * 4 {
                        let d = y.data()[i] - target[i];
                        loss += 0.5 * (d as f64) * (d as f64);
                        g[i] = d;
                    }
                }
            }
            (loss, g)
        };
        let initial = loss_and_grad(&y0).0;
        let schedule =
            LrSchedule::WarmupCosine { peak_lr: 2e-2, warmup_steps: 10, total_steps: 300, min_lr: 1e-3 };
        let mut adam = Adam::<f32>::new(AdamConfig { weight_decay: 1e-4, ..AdamConfig::default() }).unwrap();
        let mut last = initial;
        for step in 0..300 {
            let y = model.forward(&x, Mode::Eval).unwrap();
            let (loss, g) = loss_and_grad(&y);
            last = loss;
            model.zero_grad();
            model.backward(&g).unwrap();
            let mut params = model.params_mut();
            let norm = clip_grad_norm(&mut params, 10.0).unwrap();
            assert!(norm.is_finite());
            adam.step(&mut params, schedule.lr(step)).unwrap();
        }
        assert!(last < 0.2 * initial, "{config:?}: loss {initial} -> {last}");
    }
}

/// With the split switched off, a model with `upsample` 2 is the unsplit model of the same seed; switched
/// back on before the offsets have learnt anything, it gives every frame's logits to both sub-frames.
#[test]
fn output_split_switches_between_the_unsplit_model_and_each_frame_twice() {
    let mut split = AcousticModel::<f64>::new(&tiny_gru(2, 2), 7).unwrap();
    let mut plain = AcousticModel::<f64>::new(&tiny_gru(2, 1), 7).unwrap();
    let x = ragged(&mut rng(8), T, 3, &LENGTHS, 0.0);
    let want = plain.forward(&x, Mode::Eval).unwrap();
    assert!(split.output_split() && !plain.output_split());
    split.set_output_split(false);
    assert!(!split.output_split());
    assert_eq!(split.output_lengths(&LENGTHS), plain.output_lengths(&LENGTHS));
    assert_eq!(split.forward(&x, Mode::Eval).unwrap(), want);
    split.set_output_split(true);
    let twice = split.forward(&x, Mode::Eval).unwrap();
    assert_eq!(twice.lengths(), split.output_lengths(&LENGTHS).as_slice());
    let (b, t, v) = want.shape();
    assert_eq!(twice.shape(), (b, 2 * t, v));
    for (frame, pair) in want.data().chunks_exact(v).zip(twice.data().chunks_exact(2 * v)) {
        assert_eq!((&pair[..v], &pair[v..]), (frame, frame));
    }
    // Switching does nothing to a model without a split.
    plain.set_output_split(true);
    assert!(!plain.output_split());
}
