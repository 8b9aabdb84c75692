//! Structured fuzzing of the CTC kernel through its public API: shapes, strides, lengths, labels,
//! raw float bits and options from [`ctc_case::CtcCase`]; no panic, the predicted error on bad
//! input, agreement with the f64 reference on good input.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "ctc_case.rs"]
mod ctc_case;

fuzz_target!(|case: ctc_case::CtcCase| {
    ctc_case::check(&case);
});
