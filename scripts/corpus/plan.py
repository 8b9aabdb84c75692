#!/usr/bin/env python3
"""Plan the shipped speech corpus: which text, which speaker, which voice settings, which split.

Prints one tab-separated job per utterance on stdout:

    split  relpath  speaker  kind  engine  voice  p1  p2  p3  text

where `relpath` is relative to the output folder (e.g. `train/000123.ogg`) and p1..p3 are the
engine's prosody settings (see `synth_one.sh`). Nothing here touches audio; the same arguments always
print the same plan, because every random choice comes from the explicit SplitMix64 stream below
(Python's `random` is avoided on purpose: its algorithms for `randint`/`choice` have changed between
releases, and the corpus must be reproducible from the script alone).
"""

import argparse
import re
import sys

MASK64 = (1 << 64) - 1


class SplitMix64:
    """Steele, Lea and Flood's SplitMix64: tiny, fully specified, good enough for sampling."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        """Uniform integer in [0, n); rejection keeps it unbiased for every n."""
        limit = (1 << 64) - ((1 << 64) % n)
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n

    def int_in(self, lo, hi):
        """Uniform integer in [lo, hi], both ends included."""
        return lo + self.below(hi - lo + 1)

    def uniform(self, lo, hi):
        """Uniform float in [lo, hi) from the top 53 bits."""
        return lo + (hi - lo) * ((self.next_u64() >> 11) / float(1 << 53))

    def shuffle(self, xs):
        for i in range(len(xs) - 1, 0, -1):
            j = self.below(i + 1)
            xs[i], xs[j] = xs[j], xs[i]


# espeak-ng accents. `en` is espeak's British English (gmw/en); the spec `en-gb+VARIANT` would
# silently drop the variant, so British English is always spelled `en`.
ACCENTS = [
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]

# espeak-ng voice variants (files in espeak-ng-data/voices/!v). Chosen so that no two produce the same
# samples: `klatt6`, `caleb` (= klatt), `fast` and `Mr serious` (= no variant) are left out.
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
    "croak", "whisper", "whisperf",
    "Andy", "Annie", "anika", "grandma", "grandpa",
    "linda", "steph", "travis", "victor", "max",
]

# Natural-sounding voices, all in train. Every other flite/festival voice is kept for evaluation.
NATURAL = [
    ("flite:slt", "flite", "slt"),
    ("flite:awb", "flite", "awb"),
    ("festival:kal_diphone", "festival", "kal_diphone"),
]

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Common English words for the sentences (digit words are left out so the two kinds stay distinct).
WORDS = """
a about above across act add after again against age ago air all almost alone along already also
always am among an and animal another answer any anything are area arm around as ask at away baby
back bad ball bank be bear beautiful because bed been before began begin behind being believe below
best better between big bird black blue boat body book both box boy bread break bring brother brown
build busy but buy by call came can can't car card care carry case cat catch cause center chair
change check child children city class clean clear close cold color come common cook cool corner
could country course cover cross cry cup cut dark day dear deep did didn't different dinner do does
dog don't done door down draw dream dress drink drive dry during each early earth easy eat egg end
enough even evening ever every eye face fact fall family far farm fast father feel feet few field
fill find fine fire first fish floor flower fly follow food foot for forest form found free friend
from front fruit full game garden gave get girl give glass go gold gone good got great green ground
group grow had half hand happy hard has hat have he head hear heard heart heavy help her here high
hill him his hold home hope horse hot house how i i'm idea if in inside into is island it it's
just keep kept kind king kitchen knew know lake land large last late laugh lay lead learn leave
left leg less let letter life light like line list listen little live long look lost lot loud love
low made make man many map mark may me mean meet men might milk mind minute miss money month moon
more morning most mother mountain move much music must my name near need never new next nice night
no north not note nothing now of off often old on once only open or order other our out over own
page paper park part party pass past people pick picture piece place plan plant play please point
poor power pull push put question quick quiet rain ran reach read ready real red remember rest
rich ride right river road rock room round run said same sat saw say school sea second see seem
sell send set shall she ship shoe short should show side sign simple since sing sister sit sky sleep
slow small smile snow so soft some something song soon sound south speak spring stand star start
stay step still stone stop story street strong study such summer sun sure table take talk tall
teacher tell than thank that that's the their them then there these they thing think this those
though thought through time to today together told too took top toward town tree true try turn
under until up upon us use very visit voice wait walk wall want warm was watch water way we we're
wear weather week well went were west what when where which while white who whole why wide will
wind window winter wish with without woman won't wood word work world would write wrong yard year
yellow yes yesterday yet you you're young your
""".split()

TEXT_RE = re.compile(r"^[a-z']+( [a-z']+)*$")

# Share of the corpus per split, and of train spoken by the natural voices.
TRAIN_SHARE = 0.825
DEV_SHARE = 0.0875
NATURAL_SHARE = 0.15


def espeak_split(ai, vi):
    """Held-out (accent, variant) pairs on two diagonals: every accent keeps 3 dev and 3 test
    speakers, every variant at most one of each, and all accents and variants stay in train."""
    r = (ai + vi) % 10
    if r == 0:
        return "dev"
    if r == 5:
        return "test"
    return "train"


def digit_text(rng):
    words = []
    for _ in range(rng.int_in(1, 7)):
        d = rng.below(10)
        # TIDIGITS has both spoken forms of 0; use each about half the time.
        words.append(("oh" if rng.below(2) == 0 else "zero") if d == 0 else DIGITS[d])
    return " ".join(words)


def sentence_text(rng):
    words = []
    for _ in range(rng.int_in(3, 8)):
        w = WORDS[rng.below(len(WORDS))]
        while words and w == words[-1]:
            w = WORDS[rng.below(len(WORDS))]
        words.append(w)
    return " ".join(words)


def prosody(rng, engine, voice):
    """Per-utterance settings, p1..p3, as strings (ranges chosen by ear to stay intelligible)."""
    if engine == "espeak":
        # words per minute (espeak default 175), pitch 0-99 (default 50)
        return str(rng.int_in(130, 200)), str(rng.int_in(30, 70)), "-"
    stretch = "%.2f" % rng.uniform(0.85, 1.25)
    if engine == "flite":
        # mean F0 in Hz; measured defaults are about 172 (slt) and 131 (awb)
        lo, hi = (150, 210) if voice == "slt" else (100, 150)
        return stretch, str(rng.int_in(lo, hi)), "-"
    # festival kal_diphone: target F0 mean and spread in Hz (voice defaults 105 and 14)
    return stretch, str(rng.int_in(90, 135)), str(rng.int_in(10, 22))


def spread(total, n, rng):
    """`total` items over `n` owners as evenly as possible; who gets the remainder is random."""
    counts = [total // n] * n
    extra = list(range(n))
    rng.shuffle(extra)
    for i in extra[: total % n]:
        counts[i] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--utterances", type=int, required=True)
    args = ap.parse_args()
    if args.utterances < 30:
        sys.exit("plan.py: --utterances must be at least 30 so every split gets some of each kind")
    if len(set(WORDS)) != len(WORDS) or not all(TEXT_RE.match(w) for w in WORDS):
        sys.exit("plan.py: the word list has a duplicate or a character outside [a-z']")

    rng = SplitMix64(args.seed)
    n = args.utterances
    n_train = round(n * TRAIN_SHARE)
    n_dev = round(n * DEV_SHARE)
    sizes = {"train": n_train, "dev": n_dev, "test": n - n_train - n_dev}

    speakers = {"train": [], "dev": [], "test": []}
    for ai, accent in enumerate(ACCENTS):
        for vi, variant in enumerate(VARIANTS):
            spec = "%s+%s" % (accent, variant)
            speakers[espeak_split(ai, vi)].append(("espeak:" + spec, "espeak", spec))

    for split in ("train", "dev", "test"):
        size = sizes[split]
        # (speaker, engine, voice) per utterance, grouped by speaker for now
        slots = []
        if split == "train":
            n_nat = round(size * NATURAL_SHARE)
            for spk, c in zip(NATURAL, spread(n_nat, len(NATURAL), rng)):
                slots += [spk] * c
            size -= n_nat
        esp = speakers[split]
        for spk, c in zip(esp, spread(size, len(esp), rng)):
            slots += [spk] * c
        # Alternating kinds along the speaker-grouped list halves every speaker and the split.
        jobs = []
        for i, (spk, engine, voice) in enumerate(slots):
            kind = "digits" if i % 2 == 0 else "sentence"
            jobs.append((spk, engine, voice, kind))
        rng.shuffle(jobs)
        for idx, (spk, engine, voice, kind) in enumerate(jobs):
            text = digit_text(rng) if kind == "digits" else sentence_text(rng)
            assert TEXT_RE.match(text), text
            p1, p2, p3 = prosody(rng, engine, voice)
            rel = "%s/%06d.ogg" % (split, idx)
            print("\t".join([split, rel, spk, kind, engine, voice, p1, p2, p3, text]))


if __name__ == "__main__":
    main()
