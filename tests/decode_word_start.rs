//! Vocabularies whose word boundaries are marked on a word's first token (`"\u{2581}a"`) instead of a
//! separator class: spelling, text, word spans, the LM inside the beam, hotwords and alignment must
//! come out as they do for the same words under a separator vocabulary.
#![cfg(feature = "decode")]

use fastctc::align::align_text;
use fastctc::decode::{
    beam_search, estimate_ngram, greedy_decode, BeamOptions, DecodeError, EstimateOptions, Hotword, Lexicon,
    LmOptions, OovPolicy, Vocabulary, WORD_START,
};
use fastctc::ActsView;

mod common;
use common::Rng;

const LETTERS: &str = "'acdehnorst";

fn marked() -> Vocabulary {
    Vocabulary::word_start_chars(LETTERS).unwrap()
}

fn spaced() -> Vocabulary {
    Vocabulary::from_chars(&format!(" {LETTERS}")).unwrap()
}

/// Peaked log-probabilities (`p` on the path's class, the rest shared) for a frame path.
fn clean(voc: &Vocabulary, path: &[usize], p: f64) -> Vec<f64> {
    let v = voc.len();
    let rest = ((1.0 - p) / (v - 1) as f64).ln();
    let mut d = vec![rest; path.len() * v];
    for (t, &k) in path.iter().enumerate() {
        d[t * v + k] = p.ln();
    }
    d
}

/// Every token of `tokens` for one frame, then a blank.
fn spelled(voc: &Vocabulary, tokens: &[usize]) -> Vec<usize> {
    tokens.iter().flat_map(|&k| [k, voc.blank()]).collect()
}

#[test]
fn word_start_vocabulary_spells_and_writes_text() {
    let voc = marked();
    let n = LETTERS.chars().count();
    assert_eq!(voc.len(), 1 + 2 * n);
    assert!(voc.has_word_start() && voc.separator().is_none());
    let id = |s: &str| voc.id(s).unwrap();
    let ws = |c: char| id(&format!("{WORD_START}{c}"));
    assert!(voc.is_word_start(ws('c')) && !voc.is_word_start(id("c")) && !voc.is_word_start(voc.blank()));
    assert!(!voc.is_word_start(voc.len()));
    assert_eq!(voc.text_of(ws('c')), "c");
    // Runs of whitespace, leading and trailing whitespace: one boundary each, none at the ends.
    let tokens = voc.encode("  the  cat's\tred ").unwrap();
    assert_eq!(
        tokens,
        vec![
            ws('t'),
            id("h"),
            id("e"),
            ws('c'),
            id("a"),
            id("t"),
            id("'"),
            id("s"),
            ws('r'),
            id("e"),
            id("d")
        ]
    );
    assert_eq!(voc.decode_text(&tokens), "the cat's red");
    // A labelling may start inside a word; blanks and out-of-range indices are skipped.
    assert_eq!(voc.decode_text(&[id("a"), 0, ws('t'), 99, ws('a')]), "a t a");
    assert_eq!(voc.decode_text(&[]), "");
    assert!(matches!(voc.encode("cab").unwrap_err(), DecodeError::UnknownToken { byte_offset: 2, .. }));
    assert!(matches!(voc.encode("at bx").unwrap_err(), DecodeError::UnknownToken { byte_offset: 3, .. }));
    // Word-start tokens and a separator do not mix.
    let both = vec!["_".into(), " ".into(), "a".into(), format!("{WORD_START}a")];
    assert!(matches!(Vocabulary::new(both, 0, Some(1)), Err(DecodeError::InvalidVocabulary { .. })));
    // The blank's string is never read as a word start.
    let odd = Vocabulary::new(vec![format!("{WORD_START}b"), "a".into(), format!("{WORD_START}a")], 0, None);
    assert!(!odd.unwrap().is_word_start(0));
}

#[test]
fn sub_word_vocabulary_with_a_bare_marker() {
    // SentencePiece-like: longest word-start match first, else the bare marker and ordinary pieces.
    let tokens = ["<b>", "\u{2581}", "\u{2581}th", "e", "c", "at", "\u{2581}c"];
    let voc = Vocabulary::new(tokens.iter().map(|s| s.to_string()).collect(), 0, None).unwrap();
    assert_eq!(voc.encode("the cat").unwrap(), vec![2, 3, 6, 5]);
    assert_eq!(voc.encode("at e").unwrap(), vec![1, 5, 1, 3]);
    assert_eq!(voc.decode_text(&[2, 3, 6, 5]), "the cat");
    assert_eq!(voc.decode_text(&[1, 5, 1, 3]), "at e");
    // A bare marker at the end opens no word.
    assert_eq!(voc.decode_text(&[2, 3, 1]), "the");
    // Greedy word spans: the bare marker starts the word it precedes.
    let path = spelled(&voc, &[1, 5, 1, 3]);
    let data = clean(&voc, &path, 0.9);
    let view = ActsView::time_major(&data, path.len(), 1, voc.len()).unwrap();
    let h = &greedy_decode(&view, &[path.len()], &voc).unwrap()[0];
    let words: Vec<(&str, usize, usize)> =
        h.word_spans.iter().map(|w| (w.word.as_str(), w.start, w.end)).collect();
    assert_eq!(words, vec![("at", 0, 3), ("e", 4, 7)]);
}

#[test]
fn a_boundary_needs_no_frame_of_its_own() {
    // "to oh" in 5 frames: impossible with a space class (6 tokens), exact with word-start tokens.
    let voc = Vocabulary::word_start_chars("ohtw").unwrap();
    let tokens = voc.encode("to oh").unwrap();
    assert_eq!(tokens.len(), 4);
    let path = [tokens[0], tokens[1], tokens[2], tokens[3], voc.blank()];
    let data = clean(&voc, &path, 0.9);
    let view = ActsView::time_major(&data, 5, 1, voc.len()).unwrap();
    let h = &greedy_decode(&view, &[5], &voc).unwrap()[0];
    assert_eq!(h.text, "to oh");
    let words: Vec<(&str, usize, usize)> =
        h.word_spans.iter().map(|w| (w.word.as_str(), w.start, w.end)).collect();
    assert_eq!(words, vec![("to", 0, 2), ("oh", 2, 4)]);
    let b = &beam_search(&view, &[5], &voc, &BeamOptions::default()).unwrap()[0][0];
    assert_eq!((b.text.as_str(), &b.word_spans), (h.text.as_str(), &h.word_spans));

    let a = align_text(&view, &[5u32], &["to oh"], &voc).unwrap().remove(0);
    let aligned: Vec<(&str, usize, usize)> =
        a.words.iter().map(|w| (w.word.as_str(), w.start, w.end)).collect();
    assert_eq!(aligned, vec![("to", 0, 2), ("oh", 2, 4)]);
    let mut ctm = String::new();
    a.write_ctm(&mut ctm, "u", "A", 0.02);
    assert!(ctm.starts_with("u A 0.000 0.040 to ") && ctm.contains("\nu A 0.040 0.040 oh "), "{ctm}");
}

/// The beam with an LM, lexicon pruning off: the same words under both kinds of vocabulary get the
/// same LM score and bonuses, whether or not the LM knows them (out-of-lexicon words are `<unk>` and
/// penalised once).
#[test]
fn the_language_model_scores_the_same_words_under_both_units() {
    let model =
        estimate_ngram("the cat sat\na cat ran\nthe cat\nred hat\n", &EstimateOptions { order: 3 }).unwrap();
    let words = ["the", "cat", "sat", "ran", "red", "hat", "dot", "cod's", "a", "rose"];
    let (sp, mk) = (spaced(), marked());
    let mut rng = Rng::new(7);
    for case in 0..40 {
        let n = 1 + rng.below(4);
        let text: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
        let text = text.join(" ");
        let mut results = Vec::new();
        for voc in [&sp, &mk] {
            let path = spelled(voc, &voc.encode(&text).unwrap());
            let data = clean(voc, &path, 0.97);
            let view = ActsView::time_major(&data, path.len(), 1, voc.len()).unwrap();
            let lm = LmOptions {
                model: &model,
                lexicon: None,
                alpha: 0.7,
                beta: 0.4,
                oov: OovPolicy::Penalize(-1.5),
            };
            let opts = BeamOptions { beam_width: 8, lm: Some(lm), ..BeamOptions::default() };
            let h = beam_search(&view, &[path.len()], voc, &opts).unwrap().remove(0).remove(0);
            assert_eq!(h.text, text, "case {case}");
            results.push(h);
        }
        let (a, b) = (&results[0], &results[1]);
        assert!((a.lm - b.lm).abs() < 1e-9, "case {case} {text:?}: lm {} vs {}", a.lm, b.lm);
        assert!((a.bonus - b.bonus).abs() < 1e-9, "case {case} {text:?}: bonus {} vs {}", a.bonus, b.bonus);
        let split: Vec<&str> = text.split(' ').collect();
        let known: Vec<&str> =
            split.iter().map(|w| if model.word_id(w).is_some() { *w } else { "<unk>" }).collect();
        let want = 0.7 * std::f64::consts::LN_10 * model.log10_sentence(&known);
        assert!((b.lm - want).abs() < 1e-9, "case {case} {text:?}: lm {} vs {want}", b.lm);
        let oov = known.iter().filter(|w| **w == "<unk>").count() as f64;
        assert!((b.bonus - (0.4 * split.len() as f64 - 1.5 * oov)).abs() < 1e-9, "case {case} {text:?}");
        assert_eq!(
            a.word_spans.iter().map(|w| &w.word).collect::<Vec<_>>(),
            b.word_spans.iter().map(|w| &w.word).collect::<Vec<_>>()
        );
    }
}

#[test]
fn lexicon_and_hotwords_respect_word_starts() {
    let voc = marked();
    let model = estimate_ngram("the cat sat\na cat ran\nthe cat\n", &EstimateOptions { order: 2 }).unwrap();
    // The acoustics prefer "the cot" (0.55 against 0.45 on the vowel of the second word).
    let tokens = voc.encode("the cot").unwrap();
    let path = spelled(&voc, &tokens);
    let mut data = clean(&voc, &path, 0.9);
    let v = voc.len();
    let (o, a) = (voc.id("o").unwrap(), voc.id("a").unwrap());
    let vowel = 2 * 4; // frame of "o" in the second word: ▁t h e ▁c o, each followed by a blank
    assert_eq!(path[vowel], o);
    let rest = (0.05 / (v - 2) as f64).ln();
    for k in 0..v {
        data[vowel * v + k] = rest;
    }
    data[vowel * v + o] = 0.5f64.ln();
    data[vowel * v + a] = 0.45f64.ln();
    let view = ActsView::time_major(&data, path.len(), 1, v).unwrap();
    let plain = BeamOptions { beam_width: 8, n_best: 4, ..BeamOptions::default() };
    let best = |o: &BeamOptions| beam_search(&view, &[path.len()], &voc, o).unwrap()[0][0].clone();
    assert_eq!(best(&plain).text, "the cot");

    let lex = Lexicon::from_words(["the", "cat", "sat"], &voc, &model).unwrap();
    let prune =
        LmOptions { model: &model, lexicon: Some(&lex), alpha: 0.0, beta: 0.0, oov: OovPolicy::Prune };
    let all = beam_search(&view, &[path.len()], &voc, &BeamOptions { lm: Some(prune), ..plain.clone() })
        .unwrap()
        .remove(0);
    assert_eq!(all[0].text, "the cat");
    assert!(all
        .iter()
        .all(|h| h.text.split(' ').all(|w| w.is_empty() || ["the", "cat", "sat"].contains(&w))));

    let hot = [Hotword::new("the cat", 1.0, &voc).unwrap()];
    let h = best(&BeamOptions { hotwords: &hot, ..plain.clone() });
    assert_eq!(h.text, "the cat");
    assert!((h.bonus - 1.0).abs() < 1e-12);
    // A one-word phrase after another word: its word-start token is the boundary.
    let second = [Hotword::new("cat", 1.0, &voc).unwrap()];
    let h = best(&BeamOptions { hotwords: &second, ..plain.clone() });
    assert_eq!(h.text, "the cat");
    assert!((h.bonus - 1.0).abs() < 1e-12);
    // A phrase starts at a word start: "at" inside "cat" is not completed.
    let inner = [Hotword::new("at", 5.0, &voc).unwrap()];
    assert_eq!(best(&BeamOptions { hotwords: &inner, ..plain.clone() }).text, "the cot");
}
