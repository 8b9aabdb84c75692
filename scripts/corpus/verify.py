#!/usr/bin/env python3
"""Check a generated corpus and print its statistics (Markdown tables for data/README.md).

Usage: verify.py DIR

Checks, failing with a message naming the file and line at fault:
- every line of train/dev/test.jsonl parses as JSON with exactly the fields audio_filepath, text,
  duration, speaker, kind, in that order;
- texts use only a-z, apostrophe and single inner spaces; kind is digits or sentence and agrees with
  the text;
- every audio file exists and soxi reads it as 16 kHz, 1 channel, Vorbis, with the manifest's
  duration (to 1 ms);
- no speaker is in two splits; every split has both kinds;
- no file is silent (sox stat RMS amplitude above 0.005);
- every espeak speaker (accent+variant) and every plain accent gives different samples, so no
  variant is silently ignored (whisper and croak included).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

FIELDS = ["audio_filepath", "text", "duration", "speaker", "kind"]
TEXT_RE = re.compile(r"^[a-z']+( [a-z']+)*$")
DIGIT_WORDS = set("zero oh one two three four five six seven eight nine".split())
SPLITS = ("train", "dev", "test")
MIN_RMS = 0.005
BATCH = 400


def fail(msg):
    sys.exit("verify.py: " + msg)


def soxi(flag, paths):
    out = []
    for i in range(0, len(paths), BATCH):
        chunk = paths[i : i + BATCH]
        res = subprocess.run(["soxi", flag, *chunk], capture_output=True, text=True)
        if res.returncode != 0:
            fail("soxi %s failed: %s" % (flag, res.stderr.strip()))
        vals = res.stdout.splitlines()
        if len(vals) != len(chunk):
            fail("soxi %s gave %d answers for %d files" % (flag, len(vals), len(chunk)))
        out += vals
    return out


def rms(path):
    res = subprocess.run(["sox", path, "-n", "stat"], capture_output=True, text=True)
    m = re.search(r"RMS\s+amplitude:\s+([0-9.eE+-]+)", res.stderr)
    if res.returncode != 0 or not m:
        fail("%s: sox stat failed: %s" % (path, res.stderr.strip()))
    return float(m.group(1))


def main():
    if len(sys.argv) != 2:
        fail("usage: verify.py DIR")
    root = sys.argv[1]
    records = {}
    for split in SPLITS:
        mpath = os.path.join(root, split + ".jsonl")
        recs = []
        with open(mpath, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                where = "%s:%d" % (mpath, lineno)
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    fail("%s: not JSON: %s" % (where, e))
                if list(rec) != FIELDS:
                    fail("%s: fields %s, expected %s" % (where, list(rec), FIELDS))
                t = rec["text"]
                if not isinstance(t, str) or not TEXT_RE.match(t):
                    fail("%s: text %r outside the vocabulary" % (where, t))
                is_digits = set(t.split()) <= DIGIT_WORDS
                if rec["kind"] not in ("digits", "sentence") or is_digits != (rec["kind"] == "digits"):
                    fail("%s: kind %r does not fit text %r" % (where, rec["kind"], t))
                if not isinstance(rec["duration"], float) or rec["duration"] <= 0:
                    fail("%s: duration %r is not a positive float" % (where, rec["duration"]))
                if not rec["audio_filepath"].startswith(split + "/"):
                    fail("%s: %s is outside %s/" % (where, rec["audio_filepath"], split))
                path = os.path.join(root, rec["audio_filepath"])
                if not os.path.isfile(path):
                    fail("%s: %s does not exist" % (where, path))
                recs.append(rec)
        records[split] = recs

    for split, recs in records.items():
        paths = [os.path.join(root, r["audio_filepath"]) for r in recs]
        rates = soxi("-r", paths)
        chans = soxi("-c", paths)
        encs = soxi("-e", paths)
        durs = soxi("-D", paths)
        for p, r, c, e, d, rec in zip(paths, rates, chans, encs, durs, recs):
            if r != "16000" or c != "1" or e != "Vorbis":
                fail("%s: rate %s, channels %s, encoding %s; expected 16000, 1, Vorbis" % (p, r, c, e))
            if abs(float(d) - rec["duration"]) > 1e-3:
                fail("%s: soxi says %s s, manifest %s s" % (p, d, rec["duration"]))
        print("%s: formats and durations of %d files ok" % (split, len(recs)))

    owner = {}
    for split, recs in records.items():
        for r in recs:
            if owner.setdefault(r["speaker"], split) != split:
                fail("speaker %s is in %s and %s" % (r["speaker"], owner[r["speaker"]], split))
        kinds = {r["kind"] for r in recs}
        if kinds != {"digits", "sentence"}:
            fail("%s has kinds %s only" % (split, sorted(kinds)))
    print("no speaker crosses splits")

    lowest = (1.0, None)
    for recs in records.values():
        for r in recs:
            p = os.path.join(root, r["audio_filepath"])
            v = rms(p)
            if v < MIN_RMS:
                fail("%s: RMS amplitude %g, looks silent" % (p, v))
            lowest = min(lowest, (v, p))
    print("no silent file; lowest RMS amplitude %.4f (%s)" % lowest)

    # Variants are meant to change the voice; a spec espeak quietly ignores (en-gb+VARIANT) would
    # not, so every espeak speaker, and the plain accents, must give samples of their own.
    with tempfile.TemporaryDirectory() as tmp:
        specs = sorted(s.split(":", 1)[1] for s in owner if s.startswith("espeak:"))
        specs += sorted({s.split("+")[0] for s in specs})
        seen = {}
        for spec in specs:
            w = os.path.join(tmp, "v.wav")
            subprocess.run(["espeak-ng", "-v", spec, "-w", w, "one two three"], check=True)
            with open(w, "rb") as f:
                data = f.read()
            if data in seen:
                fail("espeak voices %s and %s produce the same samples" % (seen[data], spec))
            seen[data] = spec
    print("all %d espeak voice specs (speakers and plain accents) sound different" % len(specs))

    print()
    print("| split | kind | utterances | minutes | speakers |")
    print("|---|---|---:|---:|---:|")
    for split, recs in records.items():
        for kind in ("digits", "sentence", None):
            sel = [r for r in recs if kind is None or r["kind"] == kind]
            print(
                "| %s | %s | %d | %.1f | %d |"
                % (split, kind or "**all**", len(sel), sum(r["duration"] for r in sel) / 60,
                   len({r["speaker"] for r in sel}))
            )
    print()
    print("| split | engine | utterances | minutes |")
    print("|---|---|---:|---:|")
    for split, recs in records.items():
        for eng in ("espeak", "flite", "festival"):
            sel = [r for r in recs if r["speaker"].startswith(eng + ":")]
            if sel:
                print("| %s | %s | %d | %.1f |" % (split, eng, len(sel), sum(r["duration"] for r in sel) / 60))
    print()
    for split, recs in records.items():
        spk = sorted({r["speaker"] for r in recs})
        print("%s speakers (%d): %s" % (split, len(spk), " ".join(spk)))
        print()


if __name__ == "__main__":
    main()
