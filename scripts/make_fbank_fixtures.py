#!/usr/bin/env python3
"""Writes the golden audio fixtures of tests/audio_*.rs into tests/fixtures/audio/.

1. Filterbank goldens: short 16 kHz 16-bit clips (a seeded chirp + noise, a speech clip from
   espeak-ng when it is installed) and the output of torchaudio.compliance.kaldi.fbank on them,
   called as Kaldi reads WAV: on the int16 values, i.e. waveform * 32768 (our FbankConfig default
   sample_scale), in float64 (see fbank_case). Each case is a little-endian f32 file of frames x bins values, row-major, listed
   with its options in cases.json.
2. Codec fixtures for the decoder tests: a 440 Hz sine (and a stereo variant) as FLAC and Ogg
   Vorbis, written by libsndfile through the soundfile package.

Run from the repository root with a venv holding torch, torchaudio, numpy and soundfile:
    python3 -m venv /work/venv-audio
    /work/venv-audio/bin/pip install torch torchaudio numpy soundfile
    /work/venv-audio/bin/python scripts/make_fbank_fixtures.py
The crate's tests never need Python; they read the committed files.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import soundfile as sf
import torch

OUT = os.path.join("tests", "fixtures", "audio")
SR = 16000


def load_kaldi():
    """torchaudio.compliance.kaldi, even when torchaudio's compiled extension refuses to load next to
    a newer torch (a CUDA-version check at import): fbank is pure Python over torch, and the module
    only touches the torchaudio package for MFCC's DCT, so it is loaded from its file with a stub
    parent package in that case."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi, "torchaudio " + __import__("torchaudio").__version__
    except Exception as exc:  # noqa: BLE001 - any import failure means: fall back
        spec = importlib.util.find_spec("torchaudio")
        if spec is None or not spec.submodule_search_locations:
            raise
        root = list(spec.submodule_search_locations)[0]
        version = "?"
        for name in os.listdir(os.path.dirname(root)):
            if name.startswith("torchaudio-") and name.endswith(".dist-info"):
                version = name[len("torchaudio-") : -len(".dist-info")]
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
        path = os.path.join(root, "compliance", "kaldi.py")
        mod_spec = importlib.util.spec_from_file_location("kaldi_fbank", path)
        kaldi = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(kaldi)
        print(f"note: torchaudio import failed ({exc}); loaded {path} directly", file=sys.stderr)
        return kaldi, f"torchaudio {version} (compliance/kaldi.py loaded directly)"


def chirp_noise(seconds, seed):
    """Linear chirp 100 Hz -> 7 kHz at 0.3 full scale, plus seeded white noise at 0.02, plus a short
    run of digital silence (exercises the energy floor) and a DC offset (exercises its removal)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0, f1 = 100.0, 7000.0
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t * t)
    x = 0.3 * np.sin(phase) + 0.02 * rng.standard_normal(n) + 0.01
    x[n // 2 : n // 2 + 800] = 0.0
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def espeak_clip():
    """A short spoken phrase, or None when espeak-ng or sox is missing."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        print("note: espeak-ng or sox not installed; skipping the speech clip", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        conv = os.path.join(tmp, "conv.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", raw, "seven bright fish"], check=True)
        subprocess.run(["sox", raw, "-r", str(SR), "-b", "16", "-c", "1", conv], check=True)
        data, sr = sf.read(conv, dtype="int16")
        assert sr == SR
        return data


def write_wav(name, pcm16):
    sf.write(os.path.join(OUT, name), pcm16, SR, subtype="PCM_16")


def fbank_case(kaldi, name, wav, pcm16, **options):
    """The golden is torchaudio's fbank evaluated in float64, i.e. the exact value of the Kaldi
    definition: torchaudio's own float32 evaluation deviates from it by up to ~2e-3 in low-energy
    bins (FFT rounding relative to the loudest bin), which would make a 1e-3 comparison test the
    reference's rounding rather than our implementation. That float32 deviation is recorded too.
    (torchaudio builds its mel filters in float32 whatever the input dtype; that alone moves the
    output by up to ~2.2e-4 from a fully float64 evaluation, which is the residual our f64 pipeline
    shows against these goldens.)"""
    wave = torch.from_numpy(pcm16.astype(np.float64)).unsqueeze(0)  # int16 values = samples * 32768
    opts = dict(num_mel_bins=80, dither=0.0, sample_frequency=float(SR))
    opts.update(options)
    exact = kaldi.fbank(wave, **opts).numpy()
    single = kaldi.fbank(wave.float(), **opts).numpy()
    feats = exact.astype("<f4")
    file = f"{name}.f32"
    feats.tofile(os.path.join(OUT, file))
    return {
        "name": name,
        "wav": wav,
        "file": file,
        "frames": int(feats.shape[0]),
        "bins": int(feats.shape[1]),
        "num_mel_bins": opts["num_mel_bins"],
        "snip_edges": opts.get("snip_edges", True),
        "window_type": opts.get("window_type", "povey"),
        "torchaudio_f32_max_abs_dev": float(np.abs(single - exact).max()),
    }


def codec_fixtures():
    t = np.arange(int(0.5 * SR)) / SR
    sine = np.round(0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    sf.write(os.path.join(OUT, "sine440_16k_mono.flac"), sine, SR, format="FLAC", subtype="PCM_16")
    # Stereo: left the sine, right silent, so the down-mix is exactly half the sine.
    stereo = np.stack([sine, np.zeros_like(sine)], axis=1)
    sf.write(os.path.join(OUT, "sine440_16k_stereo.flac"), stereo, SR, format="FLAC", subtype="PCM_16")
    sf.write(os.path.join(OUT, "sine440_16k_mono.ogg"), sine.astype(np.float32) / 32768, SR,
             format="OGG", subtype="VORBIS")
    t44 = np.arange(int(0.5 * 44100)) / 44100
    s44 = 0.5 * np.sin(2 * np.pi * 440 * t44)
    sf.write(os.path.join(OUT, "sine440_44k_stereo.ogg"), np.stack([s44, s44], axis=1).astype(np.float32),
             44100, format="OGG", subtype="VORBIS")


def main():
    os.makedirs(OUT, exist_ok=True)
    kaldi, version = load_kaldi()
    cases = []
    chirp = chirp_noise(1.0, seed=1234)
    write_wav("chirp_noise.wav", chirp)
    cases.append(fbank_case(kaldi, "chirp_default", "chirp_noise.wav", chirp))
    cases.append(fbank_case(kaldi, "chirp_nosnip", "chirp_noise.wav", chirp, snip_edges=False))
    cases.append(fbank_case(kaldi, "chirp_mel40", "chirp_noise.wav", chirp, num_mel_bins=40))
    cases.append(fbank_case(kaldi, "chirp_hamming", "chirp_noise.wav", chirp, window_type="hamming"))
    short = chirp_noise(0.137, seed=99)
    write_wav("short.wav", short)
    cases.append(fbank_case(kaldi, "short_nosnip", "short.wav", short, snip_edges=False))
    speech = espeak_clip()
    if speech is not None:
        write_wav("speech.wav", speech)
        cases.append(fbank_case(kaldi, "speech_default", "speech.wav", speech))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generator": version, "torch": torch.__version__, "sample_rate": SR, "cases": cases}, f, indent=1)
    codec_fixtures()
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(cases)} fbank cases with {version}; fixtures total {total} bytes")


if __name__ == "__main__":
    main()
