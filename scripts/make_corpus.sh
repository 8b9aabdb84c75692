#!/usr/bin/env bash
# Generate fastctc's shipped speech corpus (data/) with espeak-ng, flite, festival and sox.
#
# Usage: scripts/make_corpus.sh [--seed N] [--utterances N] [--out DIR] [--jobs N]
#
#   --seed N        seed of the planner's SplitMix64 stream (default 20261125)
#   --utterances N  total over train/dev/test, split 82.5/8.75/8.75 % (default 4000, minimum 30)
#   --out DIR       output folder (default data); its train/ dev/ test/ folders and *.jsonl
#                   manifests are replaced, nothing else in it is touched
#   --jobs N        synthesis processes in parallel (default 2)
#
# Needs (Debian 12): espeak-ng flite festival festvox-kallpc16k sox libsox-fmt-all python3.
# The same arguments give the same manifests, texts and audio bytes (checked with md5sum).
# What goes where, and why, is in scripts/corpus/plan.py; data/README.md describes the result.
set -euo pipefail

seed=20261125
utterances=4000
out=data
jobs=2

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --seed) seed=${2:?}; shift 2 ;;
    --utterances) utterances=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --jobs) jobs=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "make_corpus.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
for n in "$seed" "$utterances" "$jobs"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "make_corpus.sh: '$n' is not a non-negative integer" >&2; exit 2; }
done

here=$(cd "$(dirname "$0")" && pwd)
for tool in espeak-ng flite text2wave sox soxi python3 xargs; do
    command -v "$tool" >/dev/null || { echo "make_corpus.sh: '$tool' not found" >&2; exit 1; }
done
# The default voice list of flite and festival does not prove these voices exist; ask for them.
flite -lv | grep -qw slt && flite -lv | grep -qw awb ||
    { echo "make_corpus.sh: flite voices slt and awb are needed" >&2; exit 1; }
[[ -d /usr/share/festival/voices/english/kal_diphone ]] ||
    { echo "make_corpus.sh: festival voice kal_diphone (festvox-kallpc16k) is needed" >&2; exit 1; }

start=$(date +%s)
mkdir -p "$out"
rm -rf "$out/train" "$out/dev" "$out/test" "$out/train.jsonl" "$out/dev.jsonl" "$out/test.jsonl"
mkdir -p "$out/train" "$out/dev" "$out/test"

plan="$out/.plan.tsv"
python3 "$here/corpus/plan.py" --seed "$seed" --utterances "$utterances" >"$plan.tmp"
mv -f "$plan.tmp" "$plan"
echo "planned $(wc -l <"$plan") utterances (seed $seed)"

# One job per line; a tab-separated line is a single argument, so texts need no quoting.
xargs -d '\n' -P "$jobs" -n 1 "$here/corpus/synth_one.sh" "$out" <"$plan"

python3 "$here/corpus/manifest.py" "$out" "$plan"
rm -f "$plan"
echo "done in $(($(date +%s) - start)) s; $(du -sb "$out" | cut -f1) bytes in $out"
