//! Viterbi forced alignment against brute force over every path.
#![cfg(feature = "decode")]

use fastctc::align::{align_text, forced_align, AlignError, Alignment};
use fastctc::decode::{greedy_decode, DecodeError, Vocabulary};
use fastctc::loss::reference::{collapse, log_softmax};
use fastctc::ActsView;

mod common;
use common::Rng;

fn vocab(v: usize, blank: usize, separator: Option<usize>) -> Vocabulary {
    let tokens = (0..v).map(|i| match i {
        _ if i == blank => "_".to_string(),
        _ if Some(i) == separator => "|".to_string(),
        _ => char::from(b'a' + i as u8).to_string(),
    });
    Vocabulary::new(tokens.collect(), blank, separator).unwrap()
}

fn check_spans(a: &Alignment, tokens: &[usize], t: usize) {
    assert_eq!(a.tokens.len(), tokens.len());
    let mut prev_end = 0;
    for (s, &tok) in a.tokens.iter().zip(tokens) {
        assert_eq!(s.token, tok);
        assert!(s.start >= prev_end && s.start < s.end && s.end <= t, "{s:?}");
        assert!((0.0..=1.0).contains(&s.confidence));
        prev_end = s.end;
    }
}

#[test]
fn viterbi_score_is_the_best_alignment_by_brute_force() {
    let mut checked = 0;
    for seed in 0..400u64 {
        let mut rng = Rng::new(seed);
        let t = 1 + rng.below(6);
        let v = 2 + rng.below(3);
        let blank = rng.below(v);
        let scale = [0.5, 3.0][rng.below(2)];
        let lp = rng.log_probs(t, v, scale);
        // A random transcript, feasible or not.
        let len = rng.below(t + 1);
        let labels: Vec<usize> = (0..len).map(|_| (blank + 1 + rng.below(v - 1)) % v).collect();
        let mut best = f64::NEG_INFINITY;
        let mut path = vec![0usize; t];
        for mut code in 0..v.pow(t as u32) {
            for p in path.iter_mut() {
                *p = code % v;
                code /= v;
            }
            if collapse(&path, blank) == labels {
                best = best.max(path.iter().enumerate().map(|(i, &k)| lp[i][k]).sum::<f64>());
            }
        }
        let data: Vec<f64> = lp.iter().flatten().copied().collect();
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let result = forced_align(&view, &[t], std::slice::from_ref(&labels), &vocab(v, blank, None));
        if best == f64::NEG_INFINITY {
            assert!(
                matches!(result, Err(AlignError::TooLong { sequence: 0, .. })),
                "seed {seed}: {labels:?} cannot fit {t} frames"
            );
            continue;
        }
        let a = result.unwrap().remove(0);
        assert!((a.score - best).abs() < 1e-9, "seed {seed}: {} vs {best}", a.score);
        check_spans(&a, &labels, t);
        // The spans and the score agree: the path they describe (blanks elsewhere) scores `score`.
        let mut p = vec![blank; t];
        for s in &a.tokens {
            p[s.start..s.end].fill(s.token);
        }
        assert_eq!(collapse(&p, blank), labels, "seed {seed}");
        let score: f64 = p.iter().enumerate().map(|(i, &k)| lp[i][k]).sum();
        assert!((score - a.score).abs() < 1e-9, "seed {seed}");
        checked += 1;
    }
    assert!(checked > 200, "too few feasible cases: {checked}");
}

#[test]
fn aligning_greedy_output_reproduces_the_peaks() {
    for seed in 0..50u64 {
        let mut rng = Rng::new(900 + seed);
        let (v, blank, sep) = (6, 0, 1);
        let voc = vocab(v, blank, Some(sep));
        // A peaked posteriorgram: a random transcript, each token held 1-3 frames, blanks between.
        let mut path = Vec::new();
        for _ in 0..2 + rng.below(8) {
            let k = 1 + rng.below(v - 1);
            for _ in 0..1 + rng.below(3) {
                path.push(k);
            }
            for _ in 0..rng.below(4) {
                path.push(blank);
            }
        }
        let t = path.len();
        let mut logits: Vec<Vec<f64>> = (0..t).map(|_| (0..v).map(|_| rng.unit()).collect()).collect();
        for (row, &k) in logits.iter_mut().zip(&path) {
            row[k] += 6.0;
        }
        let data: Vec<f32> = log_softmax(&logits).into_iter().flatten().map(|x| x as f32).collect();
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let g = greedy_decode(&view, &[t], &voc).unwrap().remove(0);
        let a = forced_align(&view, &[t], std::slice::from_ref(&g.tokens), &voc).unwrap().remove(0);
        let spans: Vec<(usize, usize, usize)> = a.tokens.iter().map(|s| (s.token, s.start, s.end)).collect();
        let peaks: Vec<(usize, usize, usize)> =
            g.token_spans.iter().map(|s| (s.token, s.start, s.end)).collect();
        assert_eq!(spans, peaks, "seed {seed}");
        assert!((a.score - g.acoustic).abs() < 1e-4, "seed {seed}");
        let words: Vec<(&str, usize, usize)> =
            a.words.iter().map(|w| (w.word.as_str(), w.start, w.end)).collect();
        let gw: Vec<(&str, usize, usize)> =
            g.word_spans.iter().map(|w| (w.word.as_str(), w.start, w.end)).collect();
        assert_eq!(words, gw, "seed {seed}");
    }
}

fn clean(voc: &Vocabulary, path: &[usize], p: f64) -> Vec<f64> {
    let v = voc.len();
    let other = ((1.0 - p) / (v as f64 - 1.0)).ln();
    let mut d = vec![other; path.len() * v];
    for (t, &k) in path.iter().enumerate() {
        d[t * v + k] = p.ln();
    }
    d
}

#[test]
fn text_alignment_words_json_and_ctm() {
    let voc = Vocabulary::from_chars(" ab").unwrap(); // 0 blank, 1 ' ', 2 a, 3 b
                                                      // Frames: a a _ b ' ' b b _ a  →  "ab ba"
    let path = [2, 2, 0, 3, 1, 3, 3, 0, 2];
    let data = clean(&voc, &path, 0.8);
    let view = ActsView::time_major(&data, path.len(), 1, voc.len()).unwrap();
    let a = align_text(&view, &[9u32], &["ab  ba"], &voc).unwrap().remove(0);
    assert_eq!(a.frames, 9);
    let spans: Vec<(usize, usize, usize)> = a.tokens.iter().map(|s| (s.token, s.start, s.end)).collect();
    assert_eq!(spans, vec![(2, 0, 2), (3, 3, 4), (1, 4, 5), (3, 5, 7), (2, 8, 9)]);
    assert_eq!(a.words.len(), 2);
    assert_eq!((a.words[0].word.as_str(), a.words[0].start, a.words[0].end), ("ab", 0, 4));
    assert_eq!((a.words[1].word.as_str(), a.words[1].start, a.words[1].end), ("ba", 5, 9));
    assert!((a.words[0].confidence - 0.8).abs() < 1e-12);
    assert!((a.score - 9.0 * 0.8f64.ln()).abs() < 1e-9);

    let mut ctm = String::new();
    a.write_ctm(&mut ctm, "utt 1", "A", 0.04);
    assert_eq!(ctm, "utt_1 A 0.000 0.160 ab 0.8000\nutt_1 A 0.200 0.160 ba 0.8000\n");
    let json = a.to_json("utt1", &voc, 0.04);
    assert_eq!(json["utterance"], "utt1");
    assert_eq!(json["words"][1]["word"], "ba");
    assert_eq!(json["words"][1]["start_frame"], 5);
    assert_eq!(json["words"][1]["end_frame"], 9);
    assert!((json["words"][1]["end"].as_f64().unwrap() - 0.36).abs() < 1e-12);
    assert_eq!(json["tokens"][2]["text"], " ");
    assert_eq!(json["tokens"].as_array().unwrap().len(), 5);
}

#[test]
fn batched_alignment_and_typed_errors() {
    let voc = Vocabulary::from_chars(" ab").unwrap();
    let (t, v) = (4, voc.len());
    let mut rng = Rng::new(3);
    let lp: Vec<f64> = (0..2).flat_map(|_| rng.log_probs(t, v, 2.0)).flatten().collect();
    // Batch-major, two sequences: the first uses all frames, the second 3.
    let view = ActsView::batch_major(&lp, t, 2, v).unwrap();
    let out = forced_align(&view, &[4, 3], &[vec![2, 3], vec![2, 2]], &voc).unwrap();
    assert_eq!(out.len(), 2);
    check_spans(&out[1], &[2, 2], 3);
    let single = ActsView::time_major(&lp[t * v..], 3, 1, v).unwrap();
    assert_eq!(out[1], forced_align(&single, &[3], &[vec![2, 2]], &voc).unwrap()[0]);

    // Repeats need a blank between them: "aa" needs 3 frames, "aaa" needs 5.
    let e = forced_align(&view, &[4, 4], &[vec![2, 2, 2], vec![2]], &voc).unwrap_err();
    assert!(matches!(e, AlignError::TooLong { sequence: 0, tokens: 3, required: 5, frames: 4 }), "{e}");
    let e = forced_align(&view, &[4, 4], &[vec![2], vec![2, 0]], &voc).unwrap_err();
    assert!(matches!(e, AlignError::InvalidToken { sequence: 1, position: 1, token: 0, .. }), "{e}");
    let e = forced_align(&view, &[4, 4], &[vec![2], vec![7]], &voc).unwrap_err();
    assert!(matches!(e, AlignError::InvalidToken { token: 7, .. }), "{e}");
    let e = forced_align(&view, &[4, 4], &[vec![2]], &voc).unwrap_err();
    assert!(matches!(e, AlignError::TranscriptsMismatch { batch: 2, got: 1 }), "{e}");
    let e = align_text(&view, &[4, 4], &["ab", "ac"], &voc).unwrap_err();
    assert!(matches!(e, AlignError::UnknownToken { sequence: 1, byte_offset: 1, .. }), "{e}");
    let mut bad = lp.clone();
    bad[v + 2] = f64::NAN;
    let bview = ActsView::batch_major(&bad, t, 2, v).unwrap();
    let e = forced_align(&bview, &[4, 4], &[vec![2], vec![3]], &voc).unwrap_err();
    assert!(
        matches!(e, AlignError::Input(DecodeError::NonFinite { sequence: 0, frame: 1, class: 2, .. })),
        "{e}"
    );
    // A zero-probability token everywhere leaves no path.
    let mut zero = lp.clone();
    for tt in 0..t {
        zero[tt * v + 3] = f64::NEG_INFINITY;
    }
    let zview = ActsView::batch_major(&zero, t, 2, v).unwrap();
    let e = forced_align(&zview, &[4, 4], &[vec![3], vec![3]], &voc).unwrap_err();
    assert!(matches!(e, AlignError::NoPath { sequence: 0 }), "{e}");
    // Empty transcript: all blank; empty input with empty transcript: score 0.
    let out = forced_align(&view, &[4, 0], &[vec![], vec![]], &voc).unwrap();
    assert!(
        out[0].tokens.is_empty() && (out[0].score - (0..4).map(|tt| lp[tt * v]).sum::<f64>()).abs() < 1e-12
    );
    assert_eq!(out[1].score, 0.0);
}
