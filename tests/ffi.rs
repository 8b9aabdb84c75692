//! The C ABI, called as C would call it, against the Rust API.
#![cfg(feature = "ffi")]

use fastctc::ffi::{
    fastctc_compute_f32, fastctc_status_string, FastctcOptions, FASTCTC_INVALID_VALUE, FASTCTC_NULL_POINTER,
    FASTCTC_OK,
};
use fastctc::{ctc_loss_and_grad, ActsView, ActsViewMut, CtcOptions, Reduction, Targets};

#[test]
fn c_abi_matches_rust_api_and_reports_errors() {
    let (t, b, v) = (6usize, 2usize, 4usize);
    let acts: Vec<f32> = (0..t * b * v).map(|i| ((i * 37 % 11) as f32) * 0.3 - 1.0).collect();
    let labels = [1i32, 2, 3, 3];
    let label_lengths = [2i32, 2];
    let input_lengths = [6i32, 5];
    let opts = FastctcOptions { blank: 0, input_kind: 0, reduction: 1, zero_infinity: 0, parallel: 1 };
    let mut grads = vec![0.0f32; t * b * v];
    let mut costs = [0.0f32; 2];
    // SAFETY: every buffer has the documented size.
    let status = unsafe {
        fastctc_compute_f32(
            acts.as_ptr(),
            grads.as_mut_ptr(),
            labels.as_ptr(),
            label_lengths.as_ptr(),
            input_lengths.as_ptr(),
            t as i32,
            v as i32,
            b as i32,
            costs.as_mut_ptr(),
            &opts,
        )
    };
    assert_eq!(status, FASTCTC_OK);

    let view = ActsView::time_major(&acts, t, b, v).unwrap();
    let mut want = vec![0.0f32; t * b * v];
    let mut g = ActsViewMut::time_major(&mut want, t, b, v).unwrap();
    let o = CtcOptions { reduction: Reduction::Sum, ..Default::default() };
    let out = ctc_loss_and_grad(
        &view,
        &Targets::Concatenated { labels: &labels, lengths: &label_lengths },
        &input_lengths,
        &mut g,
        &o,
    )
    .unwrap();
    assert_eq!(costs.to_vec(), out.losses);
    assert_eq!(grads, want);

    // Label equal to the blank, and a null pointer.
    let bad = [0i32, 2, 3, 3];
    // SAFETY: as above.
    let status = unsafe {
        fastctc_compute_f32(
            acts.as_ptr(),
            core::ptr::null_mut(),
            bad.as_ptr(),
            label_lengths.as_ptr(),
            input_lengths.as_ptr(),
            t as i32,
            v as i32,
            b as i32,
            costs.as_mut_ptr(),
            &opts,
        )
    };
    assert_eq!(status, FASTCTC_INVALID_VALUE);
    // SAFETY: null activations are rejected before any read.
    let status = unsafe {
        fastctc_compute_f32(
            core::ptr::null(),
            core::ptr::null_mut(),
            labels.as_ptr(),
            label_lengths.as_ptr(),
            input_lengths.as_ptr(),
            t as i32,
            v as i32,
            b as i32,
            costs.as_mut_ptr(),
            &opts,
        )
    };
    assert_eq!(status, FASTCTC_NULL_POINTER);
    // SAFETY: the returned pointer is a static NUL-terminated string.
    let msg = unsafe { std::ffi::CStr::from_ptr(fastctc_status_string(status)) };
    assert!(msg.to_str().unwrap().contains("null"));
}
