#!/usr/bin/env python3
"""Write train/dev/test.jsonl for a synthesised corpus from its plan.

Usage: manifest.py OUTDIR PLAN.tsv

Each line: {"audio_filepath", "text", "duration", "speaker", "kind"} in that order, with the path
relative to OUTDIR (where the manifests live) and the duration in seconds as `soxi -D` reports it for
the final .ogg. Lines follow the file numbering. Every manifest is written to a temporary file and
renamed, so a reader never sees half of one.
"""

import json
import os
import subprocess
import sys

BATCH = 400  # files per soxi call: one process per file would dominate the run time


def durations(paths):
    out = []
    for i in range(0, len(paths), BATCH):
        chunk = paths[i : i + BATCH]
        res = subprocess.run(["soxi", "-D", *chunk], check=True, capture_output=True, text=True)
        vals = res.stdout.split()
        if len(vals) != len(chunk):
            sys.exit("manifest.py: soxi gave %d durations for %d files" % (len(vals), len(chunk)))
        out += [float(v) for v in vals]
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    out_dir, plan_path = sys.argv[1], sys.argv[2]
    rows = {"train": [], "dev": [], "test": []}
    with open(plan_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 10 or fields[0] not in rows:
                sys.exit("manifest.py: %s:%d: malformed plan line" % (plan_path, lineno))
            split, rel, speaker, kind = fields[:4]
            rows[split].append((rel, fields[9], speaker, kind))

    for split, items in rows.items():
        items.sort()
        durs = durations([os.path.join(out_dir, rel) for rel, *_ in items])
        final = os.path.join(out_dir, split + ".jsonl")
        tmp = final + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for (rel, text, speaker, kind), dur in zip(items, durs):
                rec = {
                    "audio_filepath": rel,
                    "text": text,
                    "duration": dur,
                    "speaker": speaker,
                    "kind": kind,
                }
                f.write(json.dumps(rec) + "\n")
        os.replace(tmp, final)
        print("%s: %d utterances, %.1f min" % (split, len(items), sum(durs) / 60))


if __name__ == "__main__":
    main()
