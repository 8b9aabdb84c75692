//! Decoding: every WAV coding (built in-test), FLAC and Ogg Vorbis fixtures, down-mixing,
//! resampling on read, and every error path.
#![cfg(feature = "audio")]

use std::path::{Path, PathBuf};

use fastctc::audio::{
    decode_audio_bytes, decode_audio_bytes_with, read_audio, read_audio_with, AudioError,
    DecodeOptions, FormatHint,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

fn native() -> DecodeOptions {
    DecodeOptions {
        target_rate: None,
        ..DecodeOptions::default()
    }
}

/// A RIFF/WAVE file with one `fmt ` chunk (16 bytes, or 40 for WAVE_FORMAT_EXTENSIBLE) and one
/// `data` chunk.
fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let align = channels * bits / 8;
    let mut fmt = Vec::new();
    let extensible = tag == 0xFFFE;
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    fmt.extend_from_slice(&align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&0u32.to_le_bytes());
        // KSDATAFORMAT_SUBTYPE_PCM
        fmt.extend_from_slice(&[
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38,
            0x9B, 0x71,
        ]);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    let riff_len = 4 + 8 + fmt.len() + 8 + data.len() + (data.len() & 1);
    out.extend_from_slice(&(riff_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() & 1 == 1 {
        out.push(0);
    }
    out
}

fn decode_native(bytes: &[u8]) -> Result<fastctc::audio::Audio, AudioError> {
    decode_audio_bytes_with(bytes, FormatHint::Wav, &native())
}

#[test]
fn wav_16bit_mono() {
    let vals: [i16; 5] = [0, 16384, -16384, 32767, -32768];
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = decode_native(&wav(1, 1, 16_000, 16, &data)).unwrap();
    assert_eq!(a.sample_rate, 16_000);
    assert_eq!(a.samples, vec![0.0, 0.5, -0.5, 32767.0 / 32768.0, -1.0]);
}

#[test]
fn wav_8_24_32_bit_int_and_float() {
    let u8data = [128u8, 192, 64, 0];
    let a = decode_native(&wav(1, 1, 8000, 8, &u8data)).unwrap();
    assert_eq!(a.samples, vec![0.0, 0.5, -0.5, -1.0]);

    let i24: Vec<u8> = [0x40_0000i32, -0x40_0000, -0x80_0000, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes()[..3].to_vec())
        .collect();
    let a = decode_native(&wav(1, 1, 16_000, 24, &i24)).unwrap();
    assert_eq!(a.samples, vec![0.5, -0.5, -1.0, 1.0 / 8_388_608.0]);

    let i32d: Vec<u8> = [1i32 << 30, -(1 << 30), i32::MIN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = decode_native(&wav(1, 1, 16_000, 32, &i32d)).unwrap();
    assert_eq!(a.samples, vec![0.5, -0.5, -1.0]);

    let f32d: Vec<u8> = [0.25f32, -0.75, 1.5, -3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = decode_native(&wav(3, 1, 16_000, 32, &f32d)).unwrap();
    // Beyond full scale is clipped.
    assert_eq!(a.samples, vec![0.25, -0.75, 1.0, -1.0]);

    let f64d: Vec<u8> = [0.125f64, -0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = decode_native(&wav(3, 1, 16_000, 64, &f64d)).unwrap();
    assert_eq!(a.samples, vec![0.125, -0.5]);

    // WAVE_FORMAT_EXTENSIBLE with the PCM sub-format decodes like plain PCM.
    let data: Vec<u8> = [8192i16, -8192]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = decode_native(&wav(0xFFFE, 1, 16_000, 16, &data)).unwrap();
    assert_eq!(a.samples, vec![0.25, -0.25]);
}

#[test]
fn wav_stereo_is_averaged() {
    let frames: [(i16, i16); 3] = [(16384, 0), (16384, 16384), (-16384, 16384)];
    let data: Vec<u8> = frames
        .iter()
        .flat_map(|(l, r)| [l.to_le_bytes(), r.to_le_bytes()].concat())
        .collect();
    let a = decode_native(&wav(1, 2, 16_000, 16, &data)).unwrap();
    assert_eq!(a.samples, vec![0.25, 0.5, 0.0]);
}

#[test]
fn wav_skips_unknown_chunks_and_odd_padding() {
    let data: Vec<u8> = [16384i16].iter().flat_map(|v| v.to_le_bytes()).collect();
    let plain = wav(1, 1, 16_000, 16, &data);
    // Insert a 3-byte LIST chunk (padded to 4) between fmt and data.
    let mut bytes = plain[..36].to_vec();
    bytes.extend_from_slice(b"LIST");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 0]);
    bytes.extend_from_slice(&plain[36..]);
    let riff = (bytes.len() - 8) as u32;
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    assert_eq!(decode_native(&bytes).unwrap().samples, vec![0.5]);
}

#[test]
fn wav_at_other_rates_is_resampled_to_16k() {
    let n = 22_050;
    let data: Vec<u8> = (0..n)
        .map(|i| ((std::f64::consts::TAU * 440.0 * i as f64 / 22_050.0).sin() * 16000.0) as i16)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = wav(1, 1, 22_050, 16, &data);
    let a = decode_audio_bytes(&bytes, FormatHint::Any).unwrap();
    assert_eq!(a.sample_rate, 16_000);
    assert_eq!(a.samples.len(), 16_000);
    assert!((a.duration_s() - 1.0).abs() < 1e-9);
    // The tone survives with its amplitude (16000 / 32768).
    let peak = a.samples[2000..14000]
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((peak - 16000.0 / 32768.0).abs() < 0.01, "peak {peak}");
}

fn sine(n: usize, rate: f64, amp: f64) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (std::f64::consts::TAU * 440.0 * i as f64 / rate).sin())
        .collect()
}

#[test]
fn flac_mono_and_stereo_are_lossless() {
    let want: Vec<f32> = sine(8000, 16_000.0, 0.5)
        .iter()
        .map(|v| ((v * 32767.0).round() / 32768.0) as f32)
        .collect();
    let mono = read_audio(&fixtures().join("sine440_16k_mono.flac")).unwrap();
    assert_eq!(mono.sample_rate, 16_000);
    assert_eq!(mono.samples, want);
    // Left the sine, right silent: the mix is exactly half.
    let stereo = read_audio(&fixtures().join("sine440_16k_stereo.flac")).unwrap();
    let half: Vec<f32> = want.iter().map(|v| v / 2.0).collect();
    assert_eq!(stereo.samples, half);
}

/// Largest deviation from `amp * sin(2 pi 440 t + phase)` after fitting the phase by projection,
/// over the middle of the clip (codec and filter edges excluded).
fn sine_fit_error(samples: &[f32], rate: f64, amp: f64) -> (f64, f64) {
    let mid = &samples[samples.len() / 8..samples.len() * 7 / 8];
    let off = samples.len() / 8;
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in mid.iter().enumerate() {
        let ph = std::f64::consts::TAU * 440.0 * (i + off) as f64 / rate;
        s += f64::from(v) * ph.sin();
        c += f64::from(v) * ph.cos();
    }
    let (a_s, a_c) = (2.0 * s / mid.len() as f64, 2.0 * c / mid.len() as f64);
    let fitted = (a_s * a_s + a_c * a_c).sqrt();
    let mut worst: f64 = 0.0;
    for (i, &v) in mid.iter().enumerate() {
        let ph = std::f64::consts::TAU * 440.0 * (i + off) as f64 / rate;
        worst = worst.max((f64::from(v) - a_s * ph.sin() - a_c * ph.cos()).abs());
    }
    assert!((fitted - amp).abs() < 0.01 * amp, "amplitude {fitted}");
    (fitted, worst)
}

#[test]
fn ogg_vorbis_mono_16k() {
    let a = read_audio(&fixtures().join("sine440_16k_mono.ogg")).unwrap();
    assert_eq!(a.sample_rate, 16_000);
    assert!(a.samples.len().abs_diff(8000) <= 16, "{}", a.samples.len());
    let (_, worst) = sine_fit_error(&a.samples, 16_000.0, 0.5);
    assert!(worst < 0.02, "lossy residual {worst}");
}

#[test]
fn ogg_vorbis_stereo_44k_is_mixed_and_resampled() {
    let raw = read_audio_with(&fixtures().join("sine440_44k_stereo.ogg"), &native()).unwrap();
    assert_eq!(raw.sample_rate, 44_100);
    let a = read_audio(&fixtures().join("sine440_44k_stereo.ogg")).unwrap();
    assert_eq!(a.sample_rate, 16_000);
    assert!(
        (a.duration_s() - raw.duration_s()).abs() < 1e-3,
        "{} vs {}",
        a.duration_s(),
        raw.duration_s()
    );
    let (_, worst) = sine_fit_error(&a.samples, 16_000.0, 0.5);
    assert!(worst < 0.02, "residual {worst}");
}

#[test]
fn content_decides_the_format_not_the_extension() {
    let dir = std::env::temp_dir().join(format!("fastctc-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let misnamed = dir.join("really_flac.wav");
    std::fs::copy(fixtures().join("sine440_16k_mono.flac"), &misnamed).unwrap();
    assert_eq!(read_audio(&misnamed).unwrap().samples.len(), 8000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_specific_hint_rejects_other_formats() {
    let flac = std::fs::read(fixtures().join("sine440_16k_mono.flac")).unwrap();
    let err = decode_audio_bytes(&flac, FormatHint::Wav).unwrap_err();
    assert!(matches!(err, AudioError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("FLAC"), "{err}");
    assert!(decode_audio_bytes(&flac, FormatHint::Flac).is_ok());
    assert!(decode_audio_bytes(&flac, FormatHint::Ogg).is_err());
}

fn cause(bytes: &[u8]) -> AudioError {
    decode_native(bytes).unwrap_err()
}

#[test]
fn wav_errors() {
    let data: Vec<u8> = [1i16, 2, 3, 4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let good = wav(1, 1, 16_000, 16, &data);

    assert!(matches!(cause(b""), AudioError::UnrecognisedFormat { .. }));
    assert!(matches!(
        cause(b"ID3\x04garbage"),
        AudioError::UnrecognisedFormat { .. }
    ));
    assert!(matches!(
        cause(b"RIFF\0\0\0\0AVI "),
        AudioError::Malformed { .. }
    ));
    assert!(matches!(
        cause(b"RIFX\0\0\0\0WAVE"),
        AudioError::Unsupported { .. }
    ));

    // Truncated anywhere: the RIFF size then overstates the file.
    for cut in 12..good.len() {
        let err = cause(&good[..cut]);
        assert!(
            matches!(err, AudioError::Malformed { .. }),
            "cut {cut}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "cut {cut}: {err}");
    }

    // A chunk claiming more than the RIFF holds.
    let mut bad = good.clone();
    bad[40..44].copy_from_slice(&1000u32.to_le_bytes());
    assert!(cause(&bad).to_string().contains("chunk \"data\""));

    // data before fmt, no data, no fmt.
    let mut swapped = b"RIFF\0\0\0\0WAVE".to_vec();
    swapped.extend_from_slice(&good[36..]);
    swapped.extend_from_slice(&good[12..36]);
    let l = (swapped.len() - 8) as u32;
    swapped[4..8].copy_from_slice(&l.to_le_bytes());
    assert!(cause(&swapped).to_string().contains("before any `fmt `"));
    let mut no_data = good[..36].to_vec();
    no_data[4..8].copy_from_slice(&28u32.to_le_bytes());
    assert!(cause(&no_data).to_string().contains("no `data`"));
    let no_fmt = b"RIFF\x04\0\0\0WAVE".to_vec();
    assert!(cause(&no_fmt).to_string().contains("no `fmt `"));

    // Short fmt chunk.
    let mut short_fmt = b"RIFF\x14\0\0\0WAVEfmt \x08\0\0\0".to_vec();
    short_fmt.extend_from_slice(&[1, 0, 1, 0, 0x80, 0x3e, 0, 0]);
    assert!(cause(&short_fmt).to_string().contains("needs at least 16"));

    // Zero samples.
    assert!(matches!(
        cause(&wav(1, 1, 16_000, 16, &[])),
        AudioError::Empty
    ));

    // A partial frame.
    let err = cause(&wav(1, 2, 16_000, 16, &[0, 0, 0, 0, 0, 0]));
    assert!(err.to_string().contains("whole number"), "{err}");

    // Unsupported codings and headers.
    for (tag, ch, rate, bits) in [
        (6u16, 1u16, 16_000u32, 8u16), // A-law
        (1, 1, 16_000, 12),
        (3, 1, 16_000, 16),
        (1, 0, 16_000, 16),
        (1, 9, 16_000, 16),
    ] {
        let bytes = wav(tag, ch, rate, bits, &[0; 36]);
        assert!(
            matches!(cause(&bytes), AudioError::Unsupported { .. }),
            "tag {tag} ch {ch} bits {bits}: {}",
            cause(&bytes)
        );
    }
    assert!(matches!(
        cause(&wav(1, 1, 0, 16, &[0; 4])),
        AudioError::InvalidSampleRate { hz: 0, .. }
    ));
    // block_align inconsistent with channels x bits.
    let mut bad_align = good.clone();
    bad_align[32..34].copy_from_slice(&4u16.to_le_bytes());
    assert!(cause(&bad_align).to_string().contains("block align"));
}

#[test]
fn float_wav_with_nan_or_inf_is_rejected() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let data: Vec<u8> = [0.0f32, 0.5, bad, 0.1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        match cause(&wav(3, 1, 16_000, 32, &data)) {
            AudioError::NonFinite { index: 2, .. } => {}
            other => panic!("{other}"),
        }
    }
}

#[test]
fn too_long_streams_are_refused() {
    let data = vec![0u8; 2 * 16_000 * 3];
    let opts = DecodeOptions {
        max_duration_s: 2.0,
        ..DecodeOptions::default()
    };
    let err =
        decode_audio_bytes_with(&wav(1, 1, 16_000, 16, &data), FormatHint::Any, &opts).unwrap_err();
    assert!(matches!(err, AudioError::TooLong { .. }), "{err}");
    let flac = std::fs::read(fixtures().join("sine440_16k_mono.flac")).unwrap();
    let opts = DecodeOptions {
        max_duration_s: 0.1,
        ..DecodeOptions::default()
    };
    let err = decode_audio_bytes_with(&flac, FormatHint::Any, &opts).unwrap_err();
    assert!(matches!(err, AudioError::TooLong { .. }), "{err}");
    let bad = DecodeOptions {
        max_duration_s: f64::NAN,
        ..DecodeOptions::default()
    };
    assert!(matches!(
        decode_audio_bytes_with(&flac, FormatHint::Any, &bad),
        Err(AudioError::InvalidConfig { .. })
    ));
}

#[test]
fn file_errors_name_the_file() {
    let missing = fixtures().join("does_not_exist.wav");
    let err = read_audio(&missing).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }));
    assert!(err.to_string().contains("does_not_exist.wav"), "{err}");

    let dir = std::env::temp_dir().join(format!("fastctc-decode-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.wav");
    std::fs::write(&path, &wav(1, 1, 16_000, 16, &[0; 8])[..30]).unwrap();
    let err = read_audio(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert!(matches!(err.cause(), AudioError::Malformed { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_flac_and_ogg_give_errors_not_panics() {
    for name in ["sine440_16k_mono.flac", "sine440_44k_stereo.ogg"] {
        let good = std::fs::read(fixtures().join(name)).unwrap();
        // Truncations and byte flips across the whole file.
        for cut in (4..good.len()).step_by(97) {
            let _ = decode_audio_bytes(&good[..cut], FormatHint::Any);
        }
        for (k, pos) in (4..good.len()).step_by(31).enumerate() {
            let mut bytes = good.clone();
            bytes[pos] ^= 0x5A ^ (k as u8);
            let _ = decode_audio_bytes(&bytes, FormatHint::Any);
        }
        // A stream cut right after its headers has no audio, or is reported truncated.
        let err = decode_audio_bytes(&good[..good.len().min(200)], FormatHint::Any).unwrap_err();
        assert!(
            matches!(
                err,
                AudioError::Empty | AudioError::Malformed { .. } | AudioError::Decoder { .. }
            ),
            "{name}: {err}"
        );
    }
}
