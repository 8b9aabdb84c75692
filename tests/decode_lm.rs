//! The ARPA reader, back-off queries, the Witten-Bell estimator, and the LM inside the beam.

use fastctc::decode::{
    beam_search, estimate_ngram, estimate_ngram_file, BeamOptions, DecodeError, EstimateOptions, Hotword, Lexicon,
    LmOptions, NgramModel, OovPolicy, Vocabulary,
};
use fastctc::ActsView;

const TOY: &str = "some preamble a tool may write

\\data\\
ngram 1=6
ngram 2=4
ngram 3=2

\\1-grams:
-99\t<s>\t-0.5
-0.7\t</s>
-0.5\ta\t-0.3
-0.6\tb\t-0.2
-0.9\tc
-1.2\t<unk>

\\2-grams:
-0.2\t<s> a\t-0.15
-0.4\ta b\t-0.05
-0.3\tb </s>
-0.25\tb c

\\3-grams:
-0.1\t<s> a b
-0.35\ta b c

\\end\\
";

fn toy() -> NgramModel {
    NgramModel::from_arpa_str(TOY, "toy.arpa").unwrap()
}

fn p(m: &NgramModel, ctx: &[&str], w: &str) -> f64 {
    m.log10_prob_words(ctx, w).unwrap()
}

const EPS: f64 = 1e-6;

#[test]
fn toy_model_matches_hand_computed_back_off() {
    let m = toy();
    assert_eq!(m.order(), 3);
    assert_eq!(m.counts(), vec![6, 4, 2]);
    let cases: &[(&[&str], &str, f64)] = &[
        (&[], "a", -0.5),
        (&["<s>"], "a", -0.2),
        // Unlisted bigram: backoff(<s>) + P(b).
        (&["<s>"], "b", -0.5 + -0.6),
        (&["a"], "b", -0.4),
        (&["b"], "a", -0.2 + -0.5),
        (&["a"], "</s>", -0.3 + -0.7),
        (&["<s>", "a"], "b", -0.1),
        // Trigram missing, bigram listed: backoff(<s> a) + P(c | a) = -0.15 + (-0.3 + -0.9).
        (&["<s>", "a"], "c", -0.15 + -0.3 + -0.9),
        // Two levels of back-off: backoff(a b) + backoff(b) + P(a).
        (&["a", "b"], "a", -0.05 + -0.2 + -0.5),
        (&["a", "b"], "c", -0.35),
        // Context not listed as a bigram: no backoff weight of its own, then P(c | b).
        (&["c", "b"], "c", -0.25),
        // Only the last N-1 words matter.
        (&["c", "c", "a", "b"], "c", -0.35),
    ];
    for &(ctx, w, want) in cases {
        let got = p(&m, ctx, w);
        assert!((got - want).abs() < EPS, "P({w} | {ctx:?}) = {got}, hand-computed {want}");
    }
    let s = m.log10_sentence(&["a", "b"]);
    assert!((s - (-0.2 + -0.1 + (-0.05 + -0.3))).abs() < EPS, "{s}");
    // Unknown words: an error through the strict query, <unk> through the sentence query.
    assert!(matches!(m.log10_prob_words(&["a"], "zebra"), Err(DecodeError::UnknownWord { .. })));
    let s = m.log10_sentence(&["zebra"]);
    assert!((s - (-0.5 + -1.2 + -0.7)).abs() < EPS, "{s}");
}

#[test]
fn missing_unk_gets_kenlm_default() {
    let text = "\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-0.3\tx\n\n\\end\\\n";
    let m = NgramModel::from_arpa_str(text, "m").unwrap();
    assert!((m.log10_prob(&[], m.unk()) - -100.0).abs() < EPS);
    assert!((m.log10_prob(&[m.bos()], m.word_id("x").unwrap()) - -0.3).abs() < EPS);
}

fn arpa_err(text: &str) -> (usize, String) {
    match NgramModel::from_arpa_str(text, "bad.arpa") {
        Err(DecodeError::Arpa { line, reason, source }) => {
            assert_eq!(source, "bad.arpa");
            (line, reason)
        }
        other => panic!("expected an ARPA error, got {other:?}"),
    }
}

#[test]
fn malformed_arpa_reports_the_line() {
    let replace = |from: &str, to: &str| TOY.replacen(from, to, 1);
    // Line numbers are 1-based lines of TOY (the preamble is lines 1-2, \data\ is line 3).
    assert_eq!(arpa_err(&replace("-0.6\tb\t-0.2", "-0.6x\tb\t-0.2")).0, 12);
    assert_eq!(arpa_err(&replace("-0.4\ta b", "-0.4\ta q")).0, 18);
    assert_eq!(arpa_err(&replace("-0.4\ta b", "0.4\ta b")).0, 18);
    assert_eq!(arpa_err(&replace("-0.4\ta b\t-0.05", "-0.4\ta")).0, 18);
    assert_eq!(arpa_err(&replace("ngram 2=4", "ngram 2=5")).0, 22, "count mismatch found at the next section");
    assert_eq!(arpa_err(&replace("ngram 2=4", "ngram 3=4")).0, 5);
    assert_eq!(arpa_err(&replace("-0.9\tc\n", "-0.9\tc\n-0.1\tc\n")).0, 14);
    assert_eq!(arpa_err(&replace("-0.3\tb </s>", "nan\tb </s>")).0, 19);
    assert_eq!(arpa_err(&TOY.replace("\\end\\\n", "")).0, 25);
    assert_eq!(arpa_err(&replace("\\3-grams:", "\\4-grams:")).0, 22);
    assert_eq!(arpa_err("hello\nworld\n").0, 2);
    assert!(arpa_err(&replace("-0.7\t</s>", "-0.7\t<eos>")).1.contains("</s>"));
    let missing = std::env::temp_dir().join("fastctc-no-such-dir/none.arpa");
    assert!(matches!(NgramModel::from_arpa_file(&missing), Err(DecodeError::Io { .. })));
}

const CORPUS: &str = "the cat sat on the mat
the dog sat
a cat and a dog

the cat ran
<unk> sat on a mat
";

fn all_words(m: &NgramModel) -> Vec<u32> {
    (0..m.num_words() as u32).filter(|&w| w != m.bos()).collect()
}

#[test]
fn estimated_distributions_sum_to_one() {
    for order in 1..=3 {
        let m = estimate_ngram(CORPUS, &EstimateOptions { order }).unwrap();
        assert_eq!(m.order(), order);
        let id = |w: &str| m.word_id(w).unwrap();
        let contexts: Vec<Vec<u32>> = vec![
            vec![],
            vec![m.bos()],
            vec![id("the")],
            vec![id("mat")],
            vec![m.bos(), id("the")],
            vec![id("the"), id("cat")],
            vec![id("cat"), id("the")], // never seen together
            vec![id("sat"), id("on")],
            vec![m.unk(), id("sat")],
        ];
        for ctx in &contexts {
            let total: f64 = all_words(&m).iter().map(|&w| 10f64.powf(m.log10_prob(ctx, w))).sum();
            assert!((total - 1.0).abs() < 1e-4, "order {order}, context {ctx:?}: sum {total}");
        }
    }
}

#[test]
fn witten_bell_unigrams_match_the_formula() {
    // Tokens predicted: a b </s> a </s>: N = 5, seen types U = 3, vocabulary {</s>, <unk>, a, b}: 4.
    let m = estimate_ngram("a b\na\n", &EstimateOptions { order: 1 }).unwrap();
    let want = |c: f64| ((c + 3.0 / 4.0) / (5.0 + 3.0)).log10();
    for (w, c) in [("a", 2.0), ("b", 1.0), ("</s>", 2.0), ("<unk>", 0.0)] {
        let got = m.log10_prob(&[], m.word_id(w).unwrap());
        assert!((got - want(c)).abs() < 1e-6, "{w}: {got} vs {}", want(c));
    }
    // Bigram: after "a" we saw b once and </s> once: c(a) = 2, T(a) = 2, so
    // P(b | a) = (1 + 2 P1(b)) / 4 and the back-off weight of "a" is 2 / 4.
    let m = estimate_ngram("a b\na\n", &EstimateOptions { order: 2 }).unwrap();
    let (a, b) = (m.word_id("a").unwrap(), m.word_id("b").unwrap());
    let p1b = (1.0 + 0.75) / 8.0;
    assert!((m.log10_prob(&[a], b) - ((1.0 + 2.0 * p1b) / 4.0f64).log10()).abs() < 1e-6);
    assert!((m.entry(&[a]).unwrap().1 as f64 - 0.5f64.log10()).abs() < 1e-6);
    assert!((m.log10_prob(&[a], a) - (0.5 * (2.0 + 0.75) / 8.0f64).log10()).abs() < 1e-6);
}

#[test]
fn arpa_round_trips_what_the_estimator_writes() {
    let m = estimate_ngram(CORPUS, &EstimateOptions::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("fastctc-decode-lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, CORPUS).unwrap();
    let out = dir.join("lm.arpa");
    let written = estimate_ngram_file(&corpus, &out, &EstimateOptions::default()).unwrap();
    let read = NgramModel::from_arpa_file(&out).unwrap();
    assert_eq!(read.counts(), m.counts());
    assert_eq!(read.to_arpa_string(), written.to_arpa_string());
    assert_eq!(read.to_arpa_string(), m.to_arpa_string());
    for w in m.words() {
        let (x, y) = (m.word_id(w).unwrap(), read.word_id(w).unwrap());
        assert_eq!(m.entry(&[x]), read.entry(&[y]), "{w}");
    }
    let id = |w: &str| read.word_id(w).unwrap();
    assert_eq!(read.entry(&[id("the"), id("cat"), id("sat")]), m.entry(&[id("the"), id("cat"), id("sat")]));
    // The temporary file was renamed away: only the corpus and the model are left.
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec!["corpus.txt", "lm.arpa"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(estimate_ngram("", &EstimateOptions::default()), Err(DecodeError::Estimate { .. })));
    assert!(matches!(estimate_ngram("a b", &EstimateOptions { order: 4 }), Err(DecodeError::Estimate { .. })));
    assert!(matches!(estimate_ngram("a <s> b", &EstimateOptions::default()), Err(DecodeError::Estimate { .. })));
}

/// Log-probs spelling `word` one letter per frame, blanks between, where at `ambiguous` position the
/// frame puts `p_first` on the letter written and `1 - p_first - rest` on `alt`.
fn posteriorgram(voc: &Vocabulary, word: &str, ambiguous: usize, alt: char, p_first: f64) -> (Vec<f64>, usize) {
    let v = voc.len();
    let floor = 1e-4;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut push = |k: usize, second: Option<(usize, f64)>| {
        let mut row = vec![floor; v];
        let mut mass = 1.0 - floor * (v as f64 - 1.0);
        if let Some((k2, p2)) = second {
            row[k2] = p2;
            mass -= p2 - floor;
        }
        row[k] = mass;
        rows.push(row.iter().map(|p| p.ln()).collect());
    };
    for (i, ch) in word.chars().enumerate() {
        let k = voc.id(&ch.to_string()).unwrap();
        if i == ambiguous {
            push(k, Some((voc.id(&alt.to_string()).unwrap(), 1.0 - p_first - floor * (v as f64 - 2.0))));
        } else {
            push(k, None);
        }
        push(voc.blank(), None);
    }
    let t = rows.len();
    (rows.into_iter().flatten().collect(), t)
}

#[test]
fn language_model_lexicon_and_hotwords_steer_the_beam() {
    let voc = Vocabulary::from_chars(" acdehnorst").unwrap();
    let model = estimate_ngram("the cat sat\na cat ran\nthe cat\n", &EstimateOptions { order: 2 }).unwrap();
    // The acoustics slightly prefer "cot" (0.55 vs 0.45 on the vowel).
    let (data, t) = posteriorgram(&voc, "cot", 1, 'a', 0.55);
    let view = ActsView::time_major(&data, t, 1, voc.len()).unwrap();
    let plain = BeamOptions { beam_width: 8, n_best: 4, ..BeamOptions::default() };
    let best = |o: &BeamOptions| beam_search(&view, &[t], &voc, o).unwrap()[0][0].clone();
    assert_eq!(best(&plain).text, "cot");

    let lm = LmOptions { model: &model, lexicon: None, alpha: 0.5, beta: 1.0, oov: OovPolicy::Penalize(-2.0) };
    let with_lm = BeamOptions { lm: Some(lm), ..plain.clone() };
    let h = best(&with_lm);
    assert_eq!(h.text, "cat");
    // The reported LM score is alpha * ln P(cat </s> | <s>); the bonus is beta for one in-lexicon word.
    let want_lm = 0.5 * std::f64::consts::LN_10 * model.log10_sentence(&["cat"]);
    assert!((h.lm - want_lm).abs() < 1e-9, "{} vs {want_lm}", h.lm);
    assert!((h.bonus - 1.0).abs() < 1e-12);
    assert!((h.total - (h.acoustic + h.lm + h.bonus)).abs() < 1e-12);
    // "cot" is still in the N-best, scored as <unk> with the out-of-lexicon penalty.
    let all = beam_search(&view, &[t], &voc, &with_lm).unwrap().remove(0);
    let cot = all.iter().find(|h| h.text == "cot").expect("cot kept");
    let want_unk = 0.5 * std::f64::consts::LN_10 * model.log10_sentence(&["<unk>"]);
    assert!((cot.lm - want_unk).abs() < 1e-9 && (cot.bonus - (1.0 - 2.0)).abs() < 1e-12);

    // Lexicon alone (alpha 0, no bonus), pruning words outside it.
    let lex = Lexicon::from_words(["cat", "sat"], &voc, &model).unwrap();
    assert_eq!(lex.num_words(), 2);
    let prune = LmOptions { model: &model, lexicon: Some(&lex), alpha: 0.0, beta: 0.0, oov: OovPolicy::Prune };
    let all = beam_search(&view, &[t], &voc, &BeamOptions { lm: Some(prune), ..plain.clone() }).unwrap().remove(0);
    assert!(all.iter().all(|h| h.text.is_empty() || h.text == "cat" || h.text == "sat"), "{all:?}");
    assert_eq!(all[0].text, "cat");

    // Hotwords, no LM.
    let hot = [Hotword::new("cat", 1.0, &voc).unwrap()];
    let h = best(&BeamOptions { hotwords: &hot, ..plain.clone() });
    assert_eq!(h.text, "cat");
    assert!((h.bonus - 1.0).abs() < 1e-12 && h.lm == 0.0);
    // A phrase must start at a word boundary: "at" is not completed inside "cat".
    let inner = [Hotword::new("at", 5.0, &voc).unwrap()];
    assert_eq!(best(&BeamOptions { hotwords: &inner, ..plain.clone() }).text, "cot");
    assert!(matches!(Hotword::new("cab!", 1.0, &voc), Err(DecodeError::UnknownWord { context: "hotword", .. })));
    assert!(matches!(Lexicon::from_words(["x y"], &voc, &model), Err(DecodeError::UnknownWord { .. })));
    let bad_alpha = LmOptions { model: &model, lexicon: None, alpha: -1.0, beta: 0.0, oov: OovPolicy::Prune };
    assert!(matches!(
        beam_search(&view, &[t], &voc, &BeamOptions { lm: Some(bad_alpha), ..plain.clone() }),
        Err(DecodeError::InvalidOption { option: "alpha", .. })
    ));
}

#[test]
fn multi_word_hypotheses_carry_word_history() {
    let voc = Vocabulary::from_chars(" acdehnorst").unwrap();
    let model = estimate_ngram("the cat sat\na cat ran\nthe cat\n", &EstimateOptions { order: 2 }).unwrap();
    let v = voc.len();
    // "the cat" spelled cleanly.
    let text = "the cat";
    let mut rows: Vec<f64> = Vec::new();
    for ch in text.chars() {
        for k in [voc.id(&ch.to_string()).unwrap(), voc.blank()] {
            let mut row = vec![(1e-4f64).ln(); v];
            row[k] = (1.0 - 1e-4 * (v as f64 - 1.0)).ln();
            rows.extend(row);
        }
    }
    let t = rows.len() / v;
    let view = ActsView::time_major(&rows, t, 1, v).unwrap();
    let lm = LmOptions { model: &model, lexicon: None, alpha: 0.8, beta: 0.5, oov: OovPolicy::Penalize(-3.0) };
    let h = beam_search(&view, &[t], &voc, &BeamOptions { lm: Some(lm), ..BeamOptions::default() }).unwrap();
    let h = &h[0][0];
    assert_eq!(h.text, "the cat");
    let want = 0.8 * std::f64::consts::LN_10 * model.log10_sentence(&["the", "cat"]);
    assert!((h.lm - want).abs() < 1e-9, "{} vs {want}", h.lm);
    assert!((h.bonus - 1.0).abs() < 1e-12);
    assert_eq!(h.word_spans.iter().map(|w| w.word.as_str()).collect::<Vec<_>>(), vec!["the", "cat"]);
}
