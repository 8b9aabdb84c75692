//! Greedy and prefix beam search against brute force over every path and every labelling.
#![cfg(feature = "decode")]

use fastctc::decode::{beam_search, greedy_decode, BeamOptions, DecodeError, Hypothesis, Vocabulary};
use fastctc::loss::reference::{collapse, forward_backward};
use fastctc::ActsView;

mod common;
use common::Rng;

fn vocab(v: usize, blank: usize) -> Vocabulary {
    let tokens =
        (0..v).map(|i| if i == blank { "_".to_string() } else { char::from(b'a' + i as u8).to_string() });
    Vocabulary::new(tokens.collect(), blank, None).unwrap()
}

fn flat(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().flatten().copied().collect()
}

/// Every path of `v^t`, as class sequences.
fn all_paths(t: usize, v: usize) -> Vec<Vec<usize>> {
    let count = v.pow(t as u32);
    (0..count)
        .map(|mut code| {
            (0..t)
                .map(|_| {
                    let k = code % v;
                    code /= v;
                    k
                })
                .collect()
        })
        .collect()
}

const TOL: f64 = 1e-9;

#[test]
fn beam_without_pruning_finds_the_most_probable_labelling() {
    for seed in 0..400u64 {
        let mut rng = Rng::new(seed);
        let t = 1 + rng.below(6);
        let v = 2 + rng.below(3);
        let blank = rng.below(v);
        let scale = [0.5, 2.0, 6.0][rng.below(3)];
        let lp = rng.log_probs(t, v, scale);
        let voc = vocab(v, blank);

        // Brute force: every labelling reachable by some path, with its probability summed over paths.
        let mut labellings: Vec<Vec<usize>> = all_paths(t, v).iter().map(|p| collapse(p, blank)).collect();
        labellings.sort();
        labellings.dedup();
        let scored: Vec<(f64, Vec<usize>)> =
            labellings.into_iter().map(|l| (forward_backward(&lp, &l, blank).log_likelihood, l)).collect();
        let best = scored.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);

        let data = flat(&lp);
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let opts = BeamOptions {
            beam_width: 100_000,
            n_best: 100_000,
            top_k: usize::MAX,
            prune_gap: f64::INFINITY,
            beam_prune: f64::INFINITY,
            ..BeamOptions::default()
        };
        let hyps = &beam_search(&view, &[t], &voc, &opts).unwrap()[0];
        assert_eq!(hyps.len(), scored.len(), "seed {seed}: every labelling is a hypothesis");
        assert!((hyps[0].acoustic - best).abs() < TOL, "seed {seed}: {} vs {best}", hyps[0].acoustic);
        let truth = forward_backward(&lp, &hyps[0].tokens, blank).log_likelihood;
        assert!((truth - best).abs() < TOL, "seed {seed}: best hypothesis is not a most probable labelling");
        for h in hyps {
            // Nothing was pruned, so each prefix's probability is the exact sum over its alignments.
            let exact = forward_backward(&lp, &h.tokens, blank).log_likelihood;
            assert!(
                (h.acoustic - exact).abs() < TOL,
                "seed {seed}: {:?} {} vs {exact}",
                h.tokens,
                h.acoustic
            );
            assert_eq!(h.total, h.acoustic);
            check_spans(h, t, seed);
        }
        for w in hyps.windows(2) {
            assert!(w[0].total >= w[1].total, "seed {seed}: N-best not sorted");
        }
    }
}

fn check_spans(h: &Hypothesis, t: usize, seed: u64) {
    assert_eq!(h.token_spans.len(), h.tokens.len(), "seed {seed}");
    let mut prev_end = 0;
    for (s, &tok) in h.token_spans.iter().zip(&h.tokens) {
        assert_eq!(s.token, tok, "seed {seed}");
        assert!(s.start >= prev_end && s.start < s.end && s.end <= t, "seed {seed}: span {s:?}");
        prev_end = s.end;
    }
}

#[test]
fn pruned_beam_never_overestimates_a_labelling() {
    for seed in 0..200u64 {
        let mut rng = Rng::new(1000 + seed);
        let t = 2 + rng.below(5);
        let v = 2 + rng.below(3);
        let blank = rng.below(v);
        let lp = rng.log_probs(t, v, 3.0);
        let data = flat(&lp);
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let opts = BeamOptions {
            beam_width: 3,
            n_best: 3,
            top_k: 2,
            prune_gap: 2.0,
            beam_prune: 1.5,
            ..BeamOptions::default()
        };
        let hyps = &beam_search(&view, &[t], &vocab(v, blank), &opts).unwrap()[0];
        assert!(!hyps.is_empty() && hyps.len() <= 3);
        assert!(hyps.iter().all(|h| h.total >= hyps[0].total - 1.5), "seed {seed}: beam prune not applied");
        for h in hyps {
            let exact = forward_backward(&lp, &h.tokens, blank).log_likelihood;
            assert!(
                h.acoustic <= exact + TOL,
                "seed {seed}: kept mass {} above the full sum {exact}",
                h.acoustic
            );
        }
    }
}

#[test]
fn greedy_is_the_collapse_of_the_best_path() {
    for seed in 0..400u64 {
        let mut rng = Rng::new(5000 + seed);
        let t = 1 + rng.below(6);
        let v = 2 + rng.below(3);
        let blank = rng.below(v);
        let lp = rng.log_probs(t, v, 3.0);
        let (best_score, best_path) = all_paths(t, v)
            .into_iter()
            .map(|p| (p.iter().enumerate().map(|(i, &k)| lp[i][k]).sum::<f64>(), p))
            .fold((f64::NEG_INFINITY, vec![]), |a, b| if b.0 > a.0 { b } else { a });
        let data = flat(&lp);
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let h = &greedy_decode(&view, &[t as u32], &vocab(v, blank)).unwrap()[0];
        assert_eq!(h.tokens, collapse(&best_path, blank), "seed {seed}");
        assert!((h.acoustic - best_score).abs() < TOL, "seed {seed}");
        check_spans(h, t, seed);
        // Each token's span is exactly its run in the best path.
        for s in &h.token_spans {
            assert!(best_path[s.start..s.end].iter().all(|&k| k == s.token), "seed {seed}");
            assert!(s.start == 0 || best_path[s.start - 1] != s.token, "seed {seed}");
            assert!(s.end == t || best_path[s.end] != s.token, "seed {seed}");
        }
    }
}

#[test]
fn batch_layout_and_float_type_do_not_change_results() {
    let mut rng = Rng::new(77);
    let (t_max, v, blank) = (9, 4, 2);
    let lens = [9usize, 4, 0, 7];
    let b = lens.len();
    let seqs: Vec<Vec<Vec<f64>>> = (0..b).map(|_| rng.log_probs(t_max, v, 4.0)).collect();
    let voc = vocab(v, blank);
    // Batch-major f32 buffer with NaN poison past each sequence's length: those frames must not be read.
    let mut bm = vec![f32::NAN; b * t_max * v];
    for (i, s) in seqs.iter().enumerate() {
        for t in 0..lens[i] {
            for k in 0..v {
                bm[i * t_max * v + t * v + k] = s[t][k] as f32;
            }
        }
    }
    let view = ActsView::batch_major(&bm, t_max, b, v).unwrap();
    let opts = BeamOptions { beam_width: 16, n_best: 3, ..BeamOptions::default() };
    let greedy = greedy_decode(&view, &lens, &voc).unwrap();
    let beams = beam_search(&view, &lens, &voc, &opts).unwrap();
    assert_eq!(greedy.len(), b);
    for i in 0..b {
        let one: Vec<f64> = seqs[i][..lens[i]].iter().flatten().map(|&x| x as f32 as f64).collect();
        let single = ActsView::time_major(&one, lens[i], 1, v).unwrap();
        assert_eq!(greedy[i], greedy_decode(&single, &[lens[i]], &voc).unwrap()[0], "sequence {i}");
        assert_eq!(beams[i], beam_search(&single, &[lens[i]], &voc, &opts).unwrap()[0], "sequence {i}");
    }
    assert!(greedy[2].tokens.is_empty() && greedy[2].acoustic == 0.0);
    assert_eq!(beams[2].len(), 1);
    assert!(beams[2][0].tokens.is_empty());
}

fn char_vocab() -> Vocabulary {
    Vocabulary::from_chars(" abc").unwrap()
}

#[test]
fn text_words_and_seconds_come_from_the_spans() {
    // Frames: a a _ b ' ' ' ' c _ ; vocabulary: 0 blank, 1 ' ', 2 a, 3 b, 4 c.
    let voc = char_vocab();
    let path = [2usize, 2, 0, 3, 1, 1, 4, 0];
    let mut data = vec![(0.02f64).ln(); path.len() * 5];
    for (t, &k) in path.iter().enumerate() {
        data[t * 5 + k] = (0.92f64).ln();
    }
    let view = ActsView::time_major(&data, path.len(), 1, 5).unwrap();
    let h = &greedy_decode(&view, &[8], &voc).unwrap()[0];
    assert_eq!(h.tokens, vec![2, 3, 1, 4]);
    assert_eq!(h.text, "ab c");
    assert_eq!(h.word_spans.len(), 2);
    assert_eq!((h.word_spans[0].word.as_str(), h.word_spans[0].start, h.word_spans[0].end), ("ab", 0, 4));
    assert_eq!((h.word_spans[1].word.as_str(), h.word_spans[1].start, h.word_spans[1].end), ("c", 6, 7));
    assert_eq!(h.word_spans[1].seconds(0.04), (6.0 * 0.04, 7.0 * 0.04));
    assert_eq!(h.token_spans[2].start, 4);
    assert_eq!(h.token_spans[2].end, 6);
    let beam = &beam_search(&view, &[8], &voc, &BeamOptions::default()).unwrap()[0][0];
    assert_eq!(beam.tokens, h.tokens);
    assert_eq!(beam.token_spans, h.token_spans);
    assert_eq!(beam.word_spans, h.word_spans);
}

#[test]
fn bad_input_is_a_typed_error() {
    let voc = char_vocab();
    let data = vec![(0.2f64).ln(); 3 * 5];
    let view = ActsView::time_major(&data, 3, 1, 5).unwrap();
    let bad = |opts: BeamOptions| beam_search(&view, &[3], &voc, &opts).unwrap_err();
    assert!(matches!(
        bad(BeamOptions { beam_width: 0, ..BeamOptions::default() }),
        DecodeError::InvalidOption { option: "beam_width", .. }
    ));
    assert!(matches!(
        bad(BeamOptions { n_best: 0, ..BeamOptions::default() }),
        DecodeError::InvalidOption { option: "n_best", .. }
    ));
    assert!(matches!(
        bad(BeamOptions { top_k: 0, ..BeamOptions::default() }),
        DecodeError::InvalidOption { .. }
    ));
    assert!(matches!(
        bad(BeamOptions { beam_prune: -1.0, ..BeamOptions::default() }),
        DecodeError::InvalidOption { option: "beam_prune", .. }
    ));
    assert!(matches!(
        bad(BeamOptions { prune_gap: f64::NAN, ..BeamOptions::default() }),
        DecodeError::InvalidOption { option: "prune_gap", .. }
    ));
    let small = Vocabulary::from_chars("ab").unwrap();
    assert!(matches!(
        greedy_decode(&view, &[3], &small).unwrap_err(),
        DecodeError::VocabSizeMismatch { classes: 5, vocabulary: 3 }
    ));
    assert!(matches!(
        greedy_decode(&view, &[3, 3], &voc).unwrap_err(),
        DecodeError::LengthsMismatch { batch: 1, got: 2 }
    ));
    assert!(matches!(
        greedy_decode(&view, &[4], &voc).unwrap_err(),
        DecodeError::InvalidLength { sequence: 0, value: 4, max_time: 3 }
    ));
    assert!(matches!(
        beam_search(&view, &[-1i32], &voc, &BeamOptions::default()).unwrap_err(),
        DecodeError::InvalidLength { value: -1, .. }
    ));
    for poison in [f64::NAN, f64::INFINITY] {
        let mut d = data.clone();
        d[2 * 5 + 3] = poison;
        let v = ActsView::time_major(&d, 3, 1, 5).unwrap();
        let e = greedy_decode(&v, &[3], &voc).unwrap_err();
        assert!(matches!(e, DecodeError::NonFinite { sequence: 0, frame: 2, class: 3, .. }), "{e}");
        assert!(matches!(
            beam_search(&v, &[3], &voc, &BeamOptions::default()).unwrap_err(),
            DecodeError::NonFinite { frame: 2, class: 3, .. }
        ));
        // Frames beyond the input length are never read.
        assert!(greedy_decode(&v, &[2], &voc).is_ok());
    }
    // -inf is a probability of zero, not an error.
    let mut d = data.clone();
    d[4] = f64::NEG_INFINITY;
    assert!(greedy_decode(&ActsView::time_major(&d, 3, 1, 5).unwrap(), &[3], &voc).is_ok());
}

#[test]
fn vocabulary_checks_and_round_trips() {
    let voc =
        Vocabulary::new(vec!["<b>".into(), "|".into(), "a".into(), "ab".into(), "c".into()], 0, Some(1))
            .unwrap();
    // Longest match: "ab" is one token; whitespace and the separator's own string both map to it.
    assert_eq!(voc.encode("  abc a|c ").unwrap(), vec![3, 4, 1, 2, 1, 4]);
    assert_eq!(voc.decode_text(&[1, 3, 4, 1, 1, 2, 1]), "abc a");
    assert!(matches!(voc.encode("abx").unwrap_err(), DecodeError::UnknownToken { byte_offset: 2, .. }));
    assert!(Vocabulary::new(vec!["a".into(), "a".into(), "b".into()], 2, None).is_err());
    assert!(Vocabulary::new(vec!["a".into()], 1, None).is_err());
    assert!(Vocabulary::new(vec!["_".into(), "a".into()], 0, Some(0)).is_err());
    assert!(Vocabulary::new(vec!["_".into(), "".into()], 0, None).is_err());
    let nosep = Vocabulary::from_chars("ab").unwrap();
    assert!(matches!(nosep.encode("a b").unwrap_err(), DecodeError::UnknownToken { byte_offset: 1, .. }));
}

/// A plain prefix beam search written for clarity: prefixes as vectors in a hash map, every
/// extension created, the beam cut to `width` by score. The library's floor pruning and arena must
/// return exactly what this returns.
fn reference_beam(lp: &[Vec<f64>], blank: usize, width: usize) -> Vec<(Vec<usize>, f64)> {
    use std::collections::HashMap;
    let la = |a: f64, b: f64| fastctc::loss::reference::logsumexp(&[a, b]);
    let mut beam: Vec<(Vec<usize>, f64, f64)> = vec![(vec![], 0.0, f64::NEG_INFINITY)];
    for row in lp {
        let mut next: HashMap<Vec<usize>, (f64, f64)> = HashMap::new();
        for (prefix, pb, pnb) in &beam {
            let total = la(*pb, *pnb);
            let e = next.entry(prefix.clone()).or_insert((f64::NEG_INFINITY, f64::NEG_INFINITY));
            e.0 = la(e.0, total + row[blank]);
            if let Some(&last) = prefix.last() {
                e.1 = la(e.1, pnb + row[last]);
            }
            for (c, &x) in row.iter().enumerate() {
                if c == blank {
                    continue;
                }
                let mut ext = prefix.clone();
                ext.push(c);
                let from = if prefix.last() == Some(&c) { *pb } else { total };
                let e = next.entry(ext).or_insert((f64::NEG_INFINITY, f64::NEG_INFINITY));
                e.1 = la(e.1, from + x);
            }
        }
        // Prefixes of probability zero (more tokens than frames allow) are not hypotheses.
        let mut all: Vec<(Vec<usize>, f64, f64)> = next
            .into_iter()
            .map(|(k, (b, n))| (k, b, n))
            .filter(|e| la(e.1, e.2) > f64::NEG_INFINITY)
            .collect();
        all.sort_by(|a, b| la(b.1, b.2).total_cmp(&la(a.1, a.2)));
        all.truncate(width);
        beam = all;
    }
    let mut out: Vec<(Vec<usize>, f64)> = beam.into_iter().map(|(k, b, n)| (k, la(b, n))).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[test]
fn narrow_beam_matches_a_plain_reference_search() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(20_000 + seed);
        let t = 1 + rng.below(12);
        let v = 2 + rng.below(5);
        let blank = rng.below(v);
        let width = 1 + rng.below(6);
        let scale = [1.0, 4.0, 8.0][rng.below(3)];
        let lp = rng.log_probs(t, v, scale);
        let data = flat(&lp);
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let opts = BeamOptions {
            beam_width: width,
            n_best: width,
            top_k: usize::MAX,
            prune_gap: f64::INFINITY,
            beam_prune: f64::INFINITY,
            ..BeamOptions::default()
        };
        let got = &beam_search(&view, &[t], &vocab(v, blank), &opts).unwrap()[0];
        let want = reference_beam(&lp, blank, width);
        assert_eq!(got.len(), want.len(), "seed {seed}");
        for (g, (tokens, score)) in got.iter().zip(&want) {
            assert_eq!(&g.tokens, tokens, "seed {seed}");
            assert!((g.acoustic - score).abs() < TOL, "seed {seed}");
        }
    }
}

#[test]
fn zero_probabilities_and_tight_pruning_never_panic() {
    use fastctc::align::forced_align;
    for seed in 0..300u64 {
        let mut rng = Rng::new(40_000 + seed);
        let t = rng.below(8);
        let v = 2 + rng.below(4);
        let blank = rng.below(v);
        let mut lp = rng.log_probs(t, v, 5.0);
        for row in lp.iter_mut() {
            for x in row.iter_mut() {
                if rng.below(4) == 0 {
                    *x = f64::NEG_INFINITY;
                }
            }
        }
        let data = flat(&lp);
        let view = ActsView::time_major(&data, t, 1, v).unwrap();
        let voc = vocab(v, blank);
        let opts = BeamOptions {
            beam_width: 1 + rng.below(4),
            n_best: 1 + rng.below(4),
            top_k: 1 + rng.below(v),
            prune_gap: [0.0, 1.0, f64::INFINITY][rng.below(3)],
            ..BeamOptions::default()
        };
        let hyps = &beam_search(&view, &[t], &voc, &opts).unwrap()[0];
        for h in hyps {
            assert!(h.acoustic.is_finite(), "seed {seed}");
            let exact = forward_backward(&lp, &h.tokens, blank).log_likelihood;
            assert!(h.acoustic <= exact + TOL, "seed {seed}");
            check_spans(h, t, seed);
        }
        let g = &greedy_decode(&view, &[t], &voc).unwrap()[0];
        // A row of only -inf makes every path impossible; otherwise the greedy labelling aligns.
        match forced_align(&view, &[t], std::slice::from_ref(&g.tokens), &voc) {
            Ok(a) => assert!((a[0].score - g.acoustic).abs() < TOL, "seed {seed}"),
            Err(e) => assert!(g.acoustic == f64::NEG_INFINITY, "seed {seed}: {e}"),
        }
    }
}
