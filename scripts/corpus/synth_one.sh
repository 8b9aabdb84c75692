#!/usr/bin/env bash
# Synthesise one planned utterance and store it as 16 kHz mono Ogg Vorbis.
#
# Usage: synth_one.sh OUTDIR JOB
#   JOB is one tab-separated line from plan.py:
#   split relpath speaker kind engine voice p1 p2 p3 text
# p1..p3 by engine:
#   espeak    words per minute, pitch (0-99), unused
#   flite     duration stretch, mean F0 (Hz), unused
#   festival  Duration_Stretch, target F0 mean (Hz), target F0 std (Hz)
set -euo pipefail

out_dir=$1
IFS=$'\t' read -r _split rel _speaker _kind engine voice p1 p2 p3 text <<<"$2"
[[ -n ${text:-} ]] || { echo "synth_one.sh: malformed job: $2" >&2; exit 1; }

final="$out_dir/$rel"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw="$tmp/raw.wav"

case $engine in
espeak)
    espeak-ng -v "$voice" -s "$p1" -p "$p2" -w "$raw" "$text"
    ;;
flite)
    flite -voice "$voice" --setf "duration_stretch=$p1" --setf "int_f0_target_mean=$p2" \
        -t "$text" -o "$raw"
    ;;
festival)
    printf '%s\n' "$text" >"$tmp/text.txt"
    # model_f0_* are kal_diphone's own values; only the target (the speaker) moves.
    text2wave -o "$raw" \
        -eval "(voice_$voice)" \
        -eval "(Parameter.set 'Duration_Stretch $p1)" \
        -eval "(set! int_lr_params '((target_f0_mean $p2) (target_f0_std $p3) (model_f0_mean 170) (model_f0_std 34)))" \
        "$tmp/text.txt"
    ;;
*)
    echo "synth_one.sh: unknown engine '$engine'" >&2
    exit 1
    ;;
esac

# -R: repeatable mode, otherwise the Ogg stream serial number (and any dither) is random per run.
# The gain comes before the resampler, whose ringing would otherwise clip near full scale.
# Write next to the final file and rename, so an interrupted run never leaves a truncated .ogg.
part="$final.part"
sox -R "$raw" -t vorbis -C -1 -r 16000 -c 1 "$part" channels 1 gain -1 rate 16k
mv -f "$part" "$final"
