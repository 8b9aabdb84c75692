//! Decoding WAV, FLAC and Ogg Vorbis into mono `f32` samples at the working rate.
//!
//! WAV is parsed here, by a small strict reader: it is the format most corpora ship, and owning the
//! parser means every malformed header becomes a typed error that names the chunk and byte offset,
//! with no third-party panic in the path (it is the target of `fuzz/fuzz_targets/wav.rs`). FLAC and
//! Ogg Vorbis go through symphonia, whose whole bitstream we cannot re-validate ourselves; see
//! [`decode_symphonia`] for how its failures are contained.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::error::AudioError;
use super::resample::resample;

/// The sample rate the whole speech stack works at, in Hz.
pub const WORKING_RATE: u32 = 16_000;

/// The most channels a stream may have; more is almost surely a corrupt header, and bounding it
/// bounds the per-frame work of the down-mix.
pub const MAX_CHANNELS: usize = 8;

/// Decoded audio: mono samples in `[-1, 1]`, one per sampling instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Mono samples, nominally in `[-1, 1]` (full scale of the source format maps to 1).
    pub samples: Vec<f32>,
    /// Samples per second, in Hz.
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds: `samples.len() / sample_rate`.
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Which container the caller expects the bytes to be in.
///
/// The container is always recognised from the bytes' own signature; a specific hint is a
/// constraint, so that a caller expecting WAV gets an error (not a FLAC decode) when the bytes are
/// something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FormatHint {
    /// Accept any supported container, recognised by its signature.
    #[default]
    Any,
    /// RIFF/WAVE only.
    Wav,
    /// Native FLAC (`fLaC`) only.
    Flac,
    /// Ogg (`OggS`) carrying Vorbis only.
    Ogg,
}

impl FormatHint {
    fn name(self) -> &'static str {
        match self {
            FormatHint::Any => "any",
            FormatHint::Wav => "WAV",
            FormatHint::Flac => "FLAC",
            FormatHint::Ogg => "Ogg",
        }
    }
}

/// How to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Resample to this rate in Hz (with [`resample`]); `None` keeps the stream's own rate.
    /// Default: `Some(WORKING_RATE)` (16 kHz).
    pub target_rate: Option<u32>,
    /// Refuse streams longer than this many seconds (at their own rate), so that a small corrupt or
    /// hostile file cannot make us allocate without bound (FLAC can code silence at ~10,000:1).
    /// Default: 600 s, far beyond any training utterance.
    pub max_duration_s: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            target_rate: Some(WORKING_RATE),
            max_duration_s: 600.0,
        }
    }
}

/// Reads and decodes an audio file (WAV, FLAC or Ogg Vorbis, recognised by content, not extension)
/// into mono samples at 16 kHz, resampling other rates.
///
/// Errors name the file: [`AudioError::Io`] when it cannot be read, otherwise
/// [`AudioError::InFile`] around the decoding error.
pub fn read_audio(path: &Path) -> Result<Audio, AudioError> {
    read_audio_with(path, &DecodeOptions::default())
}

/// [`read_audio`] with explicit options (e.g. `target_rate: None` to keep the native rate).
pub fn read_audio_with(path: &Path, options: &DecodeOptions) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_audio_bytes_with(&bytes, FormatHint::Any, options).map_err(|e| e.in_file(path))
}

/// Decodes an in-memory file into mono samples at 16 kHz (see [`read_audio`]).
pub fn decode_audio_bytes(bytes: &[u8], hint: FormatHint) -> Result<Audio, AudioError> {
    decode_audio_bytes_with(bytes, hint, &DecodeOptions::default())
}

/// [`decode_audio_bytes`] with explicit options.
pub fn decode_audio_bytes_with(
    bytes: &[u8],
    hint: FormatHint,
    options: &DecodeOptions,
) -> Result<Audio, AudioError> {
    if !(options.max_duration_s > 0.0) {
        return Err(AudioError::config(
            "max_duration_s",
            format!("{} (must be > 0)", options.max_duration_s),
        ));
    }
    let found = sniff(bytes)?;
    if hint != FormatHint::Any && hint != found {
        return Err(AudioError::unsupported(format!(
            "expected {} but the content is {}",
            hint.name(),
            found.name()
        )));
    }
    let audio = match found {
        FormatHint::Wav => decode_wav(bytes, options.max_duration_s)?,
        _ => decode_symphonia(bytes, found, options.max_duration_s)?,
    };
    if audio.samples.is_empty() {
        return Err(AudioError::Empty);
    }
    match options.target_rate {
        Some(rate) if rate != audio.sample_rate => Ok(Audio {
            samples: resample(&audio.samples, audio.sample_rate, rate)?,
            sample_rate: rate,
        }),
        _ => Ok(audio),
    }
}

fn sniff(bytes: &[u8]) -> Result<FormatHint, AudioError> {
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Ok(FormatHint::Wav);
    }
    if bytes.starts_with(b"fLaC") {
        return Ok(FormatHint::Flac);
    }
    if bytes.starts_with(b"OggS") {
        return Ok(FormatHint::Ogg);
    }
    if bytes.starts_with(b"RIFX") || bytes.starts_with(b"RF64") {
        return Err(AudioError::unsupported(
            "big-endian (RIFX) and RF64 WAV are not supported",
        ));
    }
    if bytes.starts_with(b"RIFF") {
        return Err(AudioError::malformed(
            "RIFF file that is not WAVE, or a header shorter than 12 bytes",
        ));
    }
    Err(AudioError::UnrecognisedFormat {
        magic: bytes.iter().take(4).copied().collect(),
    })
}

/// Samples in one WAV frame, as the `fmt ` chunk describes them.
#[derive(Debug, Clone, Copy)]
enum WavCoding {
    /// Unsigned 8-bit, signed 16/24/32-bit little-endian integers.
    Int { bytes: usize },
    /// IEEE float, 4 or 8 bytes.
    Float { bytes: usize },
}

#[derive(Debug, Clone, Copy)]
struct WavFormat {
    coding: WavCoding,
    channels: usize,
    sample_rate: u32,
    block_align: usize,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// The tail shared by the KSDATAFORMAT_SUBTYPE GUIDs: bytes 2..16 after the 16-bit format tag.
const GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

fn parse_fmt(body: &[u8], offset: usize) -> Result<WavFormat, AudioError> {
    if body.len() < 16 {
        return Err(AudioError::malformed(format!(
            "`fmt ` chunk at byte {offset} has {} bytes, needs at least 16",
            body.len()
        )));
    }
    let mut tag = le_u16(body, 0);
    let channels = usize::from(le_u16(body, 2));
    let sample_rate = le_u32(body, 4);
    let block_align = usize::from(le_u16(body, 12));
    let bits = usize::from(le_u16(body, 14));
    if tag == WAVE_FORMAT_EXTENSIBLE {
        if body.len() < 40 {
            return Err(AudioError::malformed(format!(
                "WAVE_FORMAT_EXTENSIBLE `fmt ` chunk at byte {offset} has {} bytes, needs 40",
                body.len()
            )));
        }
        let valid_bits = usize::from(le_u16(body, 18));
        if valid_bits != 0 && valid_bits != bits {
            // Samples padded inside a wider container (e.g. 20 bits in 24) would still decode
            // correctly as the container width, but are rare enough that we refuse rather than guess.
            return Err(AudioError::unsupported(format!(
                "{valid_bits} valid bits in {bits}-bit containers"
            )));
        }
        if body[26..40] != GUID_TAIL {
            return Err(AudioError::unsupported(
                "WAVE_FORMAT_EXTENSIBLE with a non-standard sub-format GUID",
            ));
        }
        tag = le_u16(body, 24);
    }
    let coding = match (tag, bits) {
        (WAVE_FORMAT_PCM, 8 | 16 | 24 | 32) => WavCoding::Int { bytes: bits / 8 },
        (WAVE_FORMAT_IEEE_FLOAT, 32 | 64) => WavCoding::Float { bytes: bits / 8 },
        (WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT, _) => {
            return Err(AudioError::unsupported(format!(
                "{bits}-bit {} samples",
                if tag == WAVE_FORMAT_PCM {
                    "integer PCM"
                } else {
                    "float"
                }
            )))
        }
        _ => {
            return Err(AudioError::unsupported(format!(
                "WAV format tag {tag:#06x} (only PCM 1 and IEEE float 3 are decoded)"
            )))
        }
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(AudioError::unsupported(format!(
            "{channels} channels (1 to {MAX_CHANNELS} are decoded)"
        )));
    }
    if sample_rate == 0 {
        return Err(AudioError::InvalidSampleRate {
            hz: 0,
            detail: "the WAV header says 0 Hz",
        });
    }
    let bytes = match coding {
        WavCoding::Int { bytes } | WavCoding::Float { bytes } => bytes,
    };
    if block_align != channels * bytes {
        return Err(AudioError::malformed(format!(
            "block align {block_align} does not match {channels} channels of {bits} bits"
        )));
    }
    Ok(WavFormat {
        coding,
        channels,
        sample_rate,
        block_align,
    })
}

/// Parses RIFF/WAVE strictly: chunks must fit in the file, `fmt ` must come before `data`, the data
/// length must be a whole number of frames.
fn decode_wav(bytes: &[u8], max_duration_s: f64) -> Result<Audio, AudioError> {
    let riff_len = le_u32(bytes, 4) as usize;
    // A RIFF size that overstates the file is the signature of truncation; one that understates it
    // leaves trailing bytes (some writers append junk), which we ignore.
    let end = riff_len
        .checked_add(8)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            AudioError::malformed(format!(
                "truncated: the RIFF header says {} bytes, the file has {}",
                riff_len.saturating_add(8),
                bytes.len()
            ))
        })?;
    let mut format: Option<WavFormat> = None;
    let mut pos = 12usize;
    while pos < end {
        if end - pos < 8 {
            return Err(AudioError::malformed(format!(
                "truncated chunk header at byte {pos}"
            )));
        }
        let id = &bytes[pos..pos + 4];
        let size = le_u32(bytes, pos + 4) as usize;
        let body_start = pos + 8;
        let body_end = body_start
            .checked_add(size)
            .filter(|&e| e <= end)
            .ok_or_else(|| {
                AudioError::malformed(format!(
                    "truncated: chunk {:?} at byte {pos} claims {size} bytes, {} remain",
                    String::from_utf8_lossy(id),
                    end - body_start
                ))
            })?;
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " if format.is_none() => format = Some(parse_fmt(body, pos)?),
            b"data" => {
                let fmt = format.ok_or_else(|| {
                    AudioError::malformed(format!(
                        "`data` chunk at byte {pos} before any `fmt ` chunk"
                    ))
                })?;
                return wav_samples(body, fmt, max_duration_s);
            }
            _ => {}
        }
        // Chunks are padded to an even length; a missing pad byte at the very end is tolerated.
        pos = body_end + (size & 1);
    }
    Err(AudioError::malformed(if format.is_none() {
        "no `fmt ` chunk"
    } else {
        "no `data` chunk"
    }))
}

fn wav_samples(data: &[u8], fmt: WavFormat, max_duration_s: f64) -> Result<Audio, AudioError> {
    if data.len() % fmt.block_align != 0 {
        return Err(AudioError::malformed(format!(
            "truncated: `data` holds {} bytes, not a whole number of {}-byte frames",
            data.len(),
            fmt.block_align
        )));
    }
    let frames = data.len() / fmt.block_align;
    let seconds = frames as f64 / f64::from(fmt.sample_rate);
    if seconds > max_duration_s {
        return Err(AudioError::TooLong {
            seconds,
            limit: max_duration_s,
        });
    }
    let mut samples = Vec::with_capacity(frames);
    let inv_channels = 1.0 / fmt.channels as f64;
    for (index, frame) in data.chunks_exact(fmt.block_align).enumerate() {
        // Sum in f64: exact for every integer format, so the mono mix does not depend on order.
        let mut sum = 0.0f64;
        match fmt.coding {
            WavCoding::Int { bytes } => {
                for s in frame.chunks_exact(bytes) {
                    sum += int_sample(s);
                }
            }
            WavCoding::Float { bytes } => {
                for s in frame.chunks_exact(bytes) {
                    let v = if bytes == 4 {
                        f64::from(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                    } else {
                        f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
                    };
                    if !v.is_finite() {
                        return Err(AudioError::NonFinite {
                            index,
                            value: v as f32,
                        });
                    }
                    // Float WAV may exceed full scale; clip as a converter to integer PCM would.
                    sum += v.clamp(-1.0, 1.0);
                }
            }
        }
        samples.push((sum * inv_channels) as f32);
    }
    Ok(Audio {
        samples,
        sample_rate: fmt.sample_rate,
    })
}

/// One little-endian integer PCM sample scaled so that full scale is 1 (8-bit WAV is unsigned).
fn int_sample(s: &[u8]) -> f64 {
    match s.len() {
        1 => (f64::from(s[0]) - 128.0) / 128.0,
        2 => f64::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0,
        3 => f64::from(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) / 8_388_608.0,
        _ => f64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])) / 2_147_483_648.0,
    }
}

/// Decodes FLAC or Ogg Vorbis with symphonia.
///
/// Symphonia is `#![forbid(unsafe_code)]`, but a decoder for a complex bitstream can still hit an
/// index or arithmetic panic on hostile input, which validation on our side cannot rule out short
/// of re-implementing the codec. We therefore run it under `catch_unwind` and turn a panic into
/// [`AudioError::Decoder`]: unwinding out of safe code cannot leave undefined behaviour, and all the
/// decoder state touched is local to this call and dropped. (A build with `panic = "abort"` would
/// abort instead; we do not set that profile.) The WAV path does not rely on this.
fn decode_symphonia(
    bytes: &[u8],
    kind: FormatHint,
    max_duration_s: f64,
) -> Result<Audio, AudioError> {
    let owned = bytes.to_vec();
    match catch_unwind(AssertUnwindSafe(|| {
        decode_symphonia_inner(owned, kind, max_duration_s)
    })) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Decoder {
            detail: format!("the {} decoder panicked on this input", kind.name()),
        }),
    }
}

fn sym_error(e: SymError) -> AudioError {
    match e {
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::malformed("truncated stream")
        }
        SymError::DecodeError(msg) => AudioError::malformed(msg),
        SymError::Unsupported(msg) => AudioError::unsupported(msg),
        other => AudioError::Decoder {
            detail: other.to_string(),
        },
    }
}

fn decode_symphonia_inner(
    bytes: Vec<u8>,
    kind: FormatHint,
    max_duration_s: f64,
) -> Result<Audio, AudioError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(if kind == FormatHint::Flac {
        "flac"
    } else {
        "ogg"
    });
    let mut reader = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(sym_error)?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::malformed("no audio track"))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::malformed("the audio track has no codec parameters"))?
        .clone();
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| AudioError::malformed("the stream does not state its sample rate"))?;
    if sample_rate == 0 {
        return Err(AudioError::InvalidSampleRate {
            hz: 0,
            detail: "the stream header says 0 Hz",
        });
    }
    let channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(AudioError::unsupported(format!(
            "{channels} channels (1 to {MAX_CHANNELS} are decoded)"
        )));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(sym_error)?;
    let max_samples = (max_duration_s * f64::from(sample_rate)).ceil();
    let mut samples: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    while let Some(packet) = reader.next_packet().map_err(sym_error)? {
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(sym_error)?;
        let spec = buf.spec();
        if spec.rate() != sample_rate || spec.channels().count() != channels {
            return Err(AudioError::unsupported(format!(
                "the stream changes format mid-way ({} Hz x {} channels, then {} Hz x {})",
                sample_rate,
                channels,
                spec.rate(),
                spec.channels().count()
            )));
        }
        buf.copy_to_vec_interleaved(&mut interleaved);
        let start = samples.len();
        for frame in interleaved.chunks_exact(channels) {
            let sum: f32 = frame.iter().sum();
            samples.push(sum / channels as f32);
        }
        if let Some(bad) = samples[start..].iter().position(|v| !v.is_finite()) {
            let index = start + bad;
            return Err(AudioError::NonFinite {
                index,
                value: samples[index],
            });
        }
        if samples.len() as f64 > max_samples {
            return Err(AudioError::TooLong {
                seconds: samples.len() as f64 / f64::from(sample_rate),
                limit: max_duration_s,
            });
        }
    }
    // Decoded floats can overshoot full scale slightly (lossy codecs); clip to the documented range.
    for v in &mut samples {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(Audio {
        samples,
        sample_rate,
    })
}
