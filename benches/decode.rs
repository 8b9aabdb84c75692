//! Decoding and alignment throughput in frames per second on realistic (peaked) log-probabilities.
//!
//! A trained CTC model's output is mostly blank with short confident spikes, so uniform noise would
//! measure the wrong thing (every prefix equally likely, the beam thrashing). The posteriorgram here is
//! generated from a random transcript of English-like words: each character held 1-2 frames, 1-4 blank
//! frames between characters, logits `noise + 8` on the intended class and, on a fifth of the frames, a
//! confusable class at `+5`. V = 29 (blank, space, a-z, apostrophe), 16 utterances of ~500 frames.
//! Throughput counts frames (`sum of input lengths`) per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use fastctc::align::forced_align;
use fastctc::decode::{
    beam_search, estimate_ngram, greedy_decode, BeamOptions, EstimateOptions, Lexicon, LmOptions, OovPolicy,
    Vocabulary,
};
use fastctc::ActsView;

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WORDS: &[&str] = &[
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "ran",
    "to",
    "house",
    "and",
    "she",
    "said",
    "it",
    "was",
    "not",
    "time",
    "people",
    "would",
    "could",
    "there",
    "their",
    "about",
    "which",
    "first",
    "water",
    "sound",
    "place",
    "after",
    "thing",
    "our",
    "just",
    "name",
    "good",
    "sentence",
    "man",
    "think",
    "say",
    "great",
    "where",
    "help",
    "through",
    "much",
    "before",
    "line",
    "right",
    "too",
    "mean",
    "old",
    "any",
    "same",
    "tell",
    "boy",
    "follow",
    "came",
    "want",
    "show",
    "also",
    "around",
    "form",
    "three",
    "small",
    "set",
    "put",
    "end",
    "does",
    "another",
    "well",
    "large",
    "must",
    "big",
    "even",
    "such",
    "because",
    "turn",
    "here",
    "why",
    "ask",
    "went",
    "men",
    "read",
    "need",
    "land",
    "different",
    "home",
    "us",
    "move",
    "try",
    "kind",
    "hand",
    "picture",
    "again",
    "change",
    "off",
    "play",
    "spell",
    "air",
    "away",
    "animal",
    "don't",
];

struct Batch {
    data: Vec<f32>,
    lengths: Vec<usize>,
    transcripts: Vec<Vec<usize>>,
    max_time: usize,
    batch: usize,
}

fn sentence(rng: &mut Rng) -> String {
    (0..8 + rng.below(8)).map(|_| WORDS[rng.below(WORDS.len())]).collect::<Vec<_>>().join(" ")
}

fn make_batch(voc: &Vocabulary, batch: usize, rng: &mut Rng) -> Batch {
    let v = voc.len();
    let mut seqs: Vec<(Vec<Vec<f32>>, Vec<usize>)> = Vec::new();
    for _ in 0..batch {
        let text = sentence(rng);
        let tokens = voc.encode(&text).unwrap();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let mut frame = |rng: &mut Rng, k: usize| {
            let mut logits: Vec<f64> = (0..v).map(|_| rng.unit() * 2.0).collect();
            logits[k] += 8.0;
            if rng.below(5) == 0 {
                logits[1 + rng.below(v - 1)] += 5.0;
            }
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z = m + logits.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            rows.push(logits.iter().map(|x| (x - z) as f32).collect());
        };
        for &k in &tokens {
            for _ in 0..1 + rng.below(4) {
                frame(rng, voc.blank());
            }
            for _ in 0..1 + rng.below(2) {
                frame(rng, k);
            }
        }
        frame(rng, voc.blank());
        seqs.push((rows, tokens));
    }
    let max_time = seqs.iter().map(|s| s.0.len()).max().unwrap();
    let mut data = vec![0.0f32; max_time * batch * v];
    for (b, (rows, _)) in seqs.iter().enumerate() {
        for (t, row) in rows.iter().enumerate() {
            data[(t * batch + b) * v..(t * batch + b + 1) * v].copy_from_slice(row);
        }
    }
    Batch {
        data,
        lengths: seqs.iter().map(|s| s.0.len()).collect(),
        transcripts: seqs.into_iter().map(|s| s.1).collect(),
        max_time,
        batch,
    }
}

fn benches(c: &mut Criterion) {
    let voc = Vocabulary::from_chars(" abcdefghijklmnopqrstuvwxyz'").unwrap();
    let mut rng = Rng(2024);
    let b = make_batch(&voc, 16, &mut rng);
    let view = ActsView::time_major(&b.data, b.max_time, b.batch, voc.len()).unwrap();
    let frames: u64 = b.lengths.iter().sum::<usize>() as u64;
    let corpus: String = (0..2000).map(|_| sentence(&mut rng) + "\n").collect();
    let model = estimate_ngram(&corpus, &EstimateOptions { order: 3 }).unwrap();
    let lexicon = Lexicon::from_model(&model, &voc);
    // The data must look like a model that mostly works: report the greedy CER against the transcripts.
    let greedy = greedy_decode(&view, &b.lengths, &voc).unwrap();
    let refs: Vec<String> = b.transcripts.iter().map(|t| voc.decode_text(t)).collect();
    let hyps: Vec<String> = greedy.iter().map(|h| h.text.clone()).collect();
    eprintln!(
        "{} utterances, {frames} frames, greedy CER {:.3}",
        b.batch,
        fastctc::metrics::cer(&refs, &hyps).unwrap().rate
    );

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(frames));
    g.bench_function("greedy", |bench| {
        bench.iter(|| greedy_decode(black_box(&view), &b.lengths, &voc).unwrap())
    });
    for width in [8usize, 32, 128] {
        let plain = BeamOptions { beam_width: width, ..BeamOptions::default() };
        g.bench_with_input(BenchmarkId::new("beam", width), &plain, |bench, o| {
            bench.iter(|| beam_search(black_box(&view), &b.lengths, &voc, o).unwrap())
        });
        let lm = LmOptions {
            model: &model,
            lexicon: Some(&lexicon),
            alpha: 0.5,
            beta: 1.0,
            oov: OovPolicy::Penalize(-5.0),
        };
        let with_lm = BeamOptions { lm: Some(lm), ..plain.clone() };
        g.bench_with_input(BenchmarkId::new("beam_lm", width), &with_lm, |bench, o| {
            bench.iter(|| beam_search(black_box(&view), &b.lengths, &voc, o).unwrap())
        });
    }
    g.bench_function("align", |bench| {
        bench.iter(|| forced_align(black_box(&view), &b.lengths, &b.transcripts, &voc).unwrap())
    });
    g.finish();
}

criterion_group!(decode, benches);
criterion_main!(decode);
