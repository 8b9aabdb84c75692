//! Edit distance, CER and WER on hand-computed cases.

use fastctc::metrics::{cer, chars, levenshtein, wer, EditCounts, EditOp, MetricsError};

fn counts(s: usize, d: usize, i: usize, r: usize, h: usize) -> EditCounts {
    EditCounts {
        hits: r - s - d,
        substitutions: s,
        deletions: d,
        insertions: i,
        reference_len: r,
        hypothesis_len: h,
    }
}

#[test]
fn kitten_sitting() {
    let r: Vec<char> = "kitten".chars().collect();
    let h: Vec<char> = "sitting".chars().collect();
    let (c, ops) = levenshtein(&r, &h);
    assert_eq!(c, counts(2, 0, 1, 6, 7));
    assert_eq!(c.errors(), 3);
    assert!((c.rate() - 0.5).abs() < 1e-15);
    assert_eq!(ops[0], EditOp::Substitute { ref_index: 0, hyp_index: 0 });
    assert_eq!(ops[4], EditOp::Substitute { ref_index: 4, hyp_index: 4 });
    assert_eq!(ops.last(), Some(&EditOp::Insert { hyp_index: 6 }));
    assert_eq!(ops.len(), 7);
}

#[test]
fn operations_cover_both_sequences_in_order() {
    let (c, ops) = levenshtein(&[1, 2, 3, 4], &[1, 3, 4, 5]);
    assert_eq!(c, counts(0, 1, 1, 4, 4));
    assert_eq!(
        ops,
        vec![
            EditOp::Match { ref_index: 0, hyp_index: 0 },
            EditOp::Delete { ref_index: 1 },
            EditOp::Match { ref_index: 2, hyp_index: 1 },
            EditOp::Match { ref_index: 3, hyp_index: 2 },
            EditOp::Insert { hyp_index: 3 },
        ]
    );
    let (c, ops) = levenshtein::<u8>(&[], &[]);
    assert_eq!((c, ops), (EditCounts::default(), vec![]));
}

#[test]
fn wer_pools_over_the_corpus() {
    let refs = ["the cat sat", "on the mat", "a b c d"];
    let hyps = ["the cat sat down", "on mat", "a x c d"];
    let r = wer(&refs, &hyps).unwrap();
    assert_eq!(r.per_utterance[0], counts(0, 0, 1, 3, 4));
    assert_eq!(r.per_utterance[1], counts(0, 1, 0, 3, 2));
    assert_eq!(r.per_utterance[2], counts(1, 0, 0, 4, 4));
    assert_eq!(r.total, counts(1, 1, 1, 10, 10));
    // Pooled 3 / 10, not the mean of 1/3, 1/3, 1/4.
    assert!((r.rate - 0.3).abs() < 1e-15);
}

#[test]
fn empty_hypothesis_and_empty_reference() {
    let r = wer(&["a b c"], &[""]).unwrap();
    assert_eq!(r.total, counts(0, 3, 0, 3, 0));
    assert_eq!(r.rate, 1.0);
    // Empty reference, empty hypothesis: no errors, rate 0.
    let r = wer(&[""], &["  "]).unwrap();
    assert_eq!(r.total, EditCounts::default());
    assert_eq!(r.rate, 0.0);
    // Empty reference, non-empty hypothesis: all insertions, nothing to divide by: infinite rate.
    let r = wer(&[""], &["x y"]).unwrap();
    assert_eq!(r.total, counts(0, 0, 2, 0, 2));
    assert_eq!(r.rate, f64::INFINITY);
    // In a corpus the empty reference adds its insertions to the numerator only.
    let r = wer(&["a b", ""], &["a b", "x"]).unwrap();
    assert_eq!(r.total.errors(), 1);
    assert_eq!(r.rate, 0.5);
    assert_eq!(r.per_utterance[1].rate(), f64::INFINITY);
}

#[test]
fn cer_counts_characters_with_normalised_spaces() {
    assert_eq!(chars("  ab   c "), vec!['a', 'b', ' ', 'c']);
    let r = cer(&["ab  c"], &[" ab c"]).unwrap();
    assert_eq!(r.rate, 0.0);
    // "héllo wörld" vs "hello world": two substitutions over 11 characters (é and ö are one char each).
    let r = cer(&["héllo wörld"], &["hello world"]).unwrap();
    assert_eq!(r.total, counts(2, 0, 0, 11, 11));
    // Dropping the space merges words: one deletion for CER, two errors for WER.
    let r = cer(&["ab cd"], &["abcd"]).unwrap();
    assert_eq!(r.total, counts(0, 1, 0, 5, 4));
    let w = wer(&["ab cd"], &["abcd"]).unwrap();
    assert_eq!(w.total, counts(1, 1, 0, 2, 1));
}

#[test]
fn mismatched_corpus_sizes_are_an_error() {
    assert_eq!(wer(&["a", "b"], &["a"]).unwrap_err(), MetricsError::LengthMismatch { references: 2, hypotheses: 1 });
    assert!(cer::<&str>(&[], &["a"]).is_err());
    let r = cer::<&str>(&[], &[]).unwrap();
    assert_eq!(r.rate, 0.0);
    assert!(r.per_utterance.is_empty());
}
