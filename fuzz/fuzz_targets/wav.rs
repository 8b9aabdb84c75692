//! Arbitrary bytes through the WAV decoder and then the filterbank: neither may panic, and what
//! decodes must be finite, in [-1, 1], at the requested rate, and give finite features.
#![no_main]

use fastctc::audio::{decode_audio_bytes_with, DecodeOptions, Fbank, FbankConfig, FormatHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A short duration cap keeps each run fast; the rate varies with the input so the resampler is
    // exercised from every header rate.
    let options = DecodeOptions { target_rate: Some(16_000), max_duration_s: 5.0 };
    let Ok(audio) = decode_audio_bytes_with(data, FormatHint::Wav, &options) else {
        return;
    };
    assert_eq!(audio.sample_rate, 16_000);
    assert!(!audio.samples.is_empty());
    assert!(audio.samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-3));
    let mut fbank = Fbank::new(FbankConfig { snip_edges: data.len() % 2 == 0, ..FbankConfig::default() })
        .expect("default config is valid");
    let feats = fbank.compute(&audio.samples).expect("decoded samples are finite");
    assert_eq!(feats.frames, fbank.num_frames(audio.samples.len()));
    assert!(feats.data.iter().all(|v| v.is_finite()));
});
