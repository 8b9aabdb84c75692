//! Vector `exp` and `ln` over `wide` lanes, with every special value resolved explicitly.
//!
//! Both reduce the argument with exact operations and evaluate a short series on a small interval:
//! - `exp(x) = 2^n * exp(r)`, `n = round(x / ln 2)`, `r = x - n ln 2` (ln 2 split in a high part with
//!   trailing zero bits and a low part, so `n * LN2_HI` is exact), `|r| <= ln 2 / 2`, and `exp(r)` by
//!   its Taylor series to degree 7 (f32) or 13 (f64): the truncation error is below half an ulp.
//! - `ln(x) = e ln 2 + ln(m)`, `x = m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`, and
//!   `ln(m) = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, `|s| < 0.172`, by the odd series in `s` to degree 9
//!   (f32) or 21 (f64).
//!
//! Special values: `exp(-inf) = 0`, `exp(+inf) = +inf`, `exp(NaN) = NaN`; results that would be
//! subnormal are flushed to 0 (below `e^-87.3` in f32, `e^-708.4` in f64: far below anything the lattice
//! can tell from 0 relative to the row maximum it subtracts); overflow gives `+inf`.
//! `ln(0) = -inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, `ln(NaN) = NaN`, subnormal inputs are exact
//! (rescaled before the reduction). The measured worst-case errors against the standard library are in
//! the tests of this module and quoted in the crate documentation.

use wide::{f32x8, f64x4, i32x8, i64x4, u32x8, u64x4};

macro_rules! vector_math {
    (
        $exp:ident, $ln:ident, $fv:ident, $iv:ident, $uv:ident, $f:ident, $i:ident,
        magic = $magic:expr,
        mantissa_bits = $mbits:expr, bias = $bias:expr,
        exp_hi = $exp_hi:expr, exp_lo = $exp_lo:expr,
        ln2_hi = $ln2_hi:expr, ln2_lo = $ln2_lo:expr,
        exp_terms = $exp_terms:expr, ln_terms = $ln_terms:expr,
        subnormal_scale = $sub_scale:expr, subnormal_bits = $sub_bits:expr
    ) => {
        /// Lane-wise `e^x`; see the module documentation for the special values and the error.
        #[inline(always)]
        pub fn $exp(x: $fv) -> $fv {
            let log2e = $fv::splat(core::$f::consts::LOG2_E);
            let hi = $fv::splat($exp_hi);
            let lo = $fv::splat($exp_lo);
            let magic = $fv::splat($magic);
            // Clamp first so n stays a small integer; NaN is restored last.
            let xc = x.fast_max(lo).fast_min(hi);
            // Adding 1.5 * 2^mbits rounds to an integer (the ulp there is 1) and leaves that integer in
            // the low mantissa bits: one add in place of `round` (slow on SSE2) and of the float->int
            // conversion (no packed f64->i64 instruction before AVX-512DQ).
            let t = xc.mul_add(log2e, magic);
            let n = t - magic;
            let r = n.mul_neg_add($fv::splat($ln2_hi), xc);
            let r = n.mul_neg_add($fv::splat($ln2_lo), r);
            // Horner on the Taylor coefficients 1/k!, highest first.
            let c = $exp_terms;
            let mut p = $fv::splat(c[0]);
            for &ck in &c[1..] {
                p = p.mul_add(r, $fv::splat(ck));
            }
            // 2^n = 2^(n - 1) * 2 when n is the top exponent, which has no normal encoding; the mask
            // (all ones, -1 as an integer) does the subtraction.
            let top = n.simd_gt($fv::splat($bias as $f));
            let ni: $iv = bytemuck::cast::<$fv, $iv>(t) - bytemuck::cast::<$fv, $iv>(magic)
                + bytemuck::cast::<$fv, $iv>(top);
            let pow: $fv = bytemuck::cast((ni + $iv::splat($bias)) << $mbits);
            let y = p * pow;
            let y = top.select(y + y, y);
            let y = x.simd_gt(hi).select($fv::splat($f::INFINITY), y);
            let y = x.simd_lt(lo).select($fv::splat(0.0), y);
            x.is_nan().select(x, y)
        }

        /// Lane-wise natural logarithm; see the module documentation for the special values and the error.
        #[inline(always)]
        pub fn $ln(x: $fv) -> $fv {
            let zero = $fv::splat(0.0);
            let magic = $fv::splat($magic);
            let subnormal = x.simd_lt($fv::splat($f::MIN_POSITIVE)) & x.simd_gt(zero);
            let xs = subnormal.select(x * $fv::splat($sub_scale), x);
            let bits: $iv = bytemuck::cast(xs);
            let mant_mask: $i = (1 << $mbits) - 1;
            // A logical shift (the sign bit is masked off anyway): SSE2 has no arithmetic 64-bit shift.
            let exp_field: $iv = bytemuck::cast::<$uv, $iv>(bytemuck::cast::<$iv, $uv>(bits) >> $mbits)
                & $iv::splat((2 * $bias + 1) as $i);
            let adjust: $iv = bytemuck::cast::<$fv, $iv>(subnormal) & $iv::splat($sub_bits);
            let e: $iv = exp_field - $iv::splat($bias) - adjust;
            let m: $fv = bytemuck::cast((bits & $iv::splat(mant_mask)) | $iv::splat(($bias as $i) << $mbits));
            // m in [1, 2); move the upper half down to [sqrt(1/2), 1) so |s| stays small.
            let big = m.simd_gt($fv::splat(core::$f::consts::SQRT_2));
            let m = big.select(m * $fv::splat(0.5), m);
            // int -> float by the magic number (no packed i64 -> f64 before AVX-512DQ): |e| < 2^11.
            let ef = bytemuck::cast::<$iv, $fv>(e + bytemuck::cast::<$fv, $iv>(magic)) - magic
                + big.select($fv::splat(1.0), zero);
            let s = (m - $fv::splat(1.0)) / (m + $fv::splat(1.0));
            let s2 = s * s;
            // 2 * (s + s^3/3 + s^5/5 + ...), Horner in s^2, highest term first.
            let terms = $ln_terms;
            let mut p = $fv::splat(2.0 / (2 * terms - 1) as $f);
            for k in (0..terms - 1).rev() {
                p = p.mul_add(s2, $fv::splat(2.0 / (2 * k + 1) as $f));
            }
            let lnm = p * s;
            let y = ef.mul_add($fv::splat($ln2_hi), ef.mul_add($fv::splat($ln2_lo), lnm));
            let y = x.simd_eq(zero).select($fv::splat($f::NEG_INFINITY), y);
            let y = x.simd_eq($fv::splat($f::INFINITY)).select(x, y);
            (x.simd_lt(zero) | x.is_nan()).select($fv::splat($f::NAN), y)
        }
    };
}

const fn taylor<const N: usize>() -> [f64; N] {
    // c[0] = 1/(N-1)!, ..., c[N-1] = 1/0!; computed in f64 and rounded once per type.
    let mut c = [0.0; N];
    let mut k = 0;
    while k < N {
        let deg = N - 1 - k;
        let mut f = 1.0;
        let mut j = 2;
        while j <= deg {
            f *= j as f64;
            j += 1;
        }
        c[k] = 1.0 / f;
        k += 1;
    }
    c
}

const fn to_f32<const N: usize>(c: [f64; N]) -> [f32; N] {
    let mut out = [0.0f32; N];
    let mut k = 0;
    while k < N {
        out[k] = c[k] as f32;
        k += 1;
    }
    out
}

pub(super) const EXP_F32: [f32; 8] = to_f32(taylor::<8>());
pub(super) const EXP_F64: [f64; 14] = taylor::<14>();

vector_math!(
    exp_f32x8,
    ln_f32x8,
    f32x8,
    i32x8,
    u32x8,
    f32,
    i32,
    magic = 12_582_912.0,
    mantissa_bits = 23,
    bias = 127,
    exp_hi = 88.722_83,
    exp_lo = -87.336_55,
    // 0.693359375 has 9 significant bits: n * LN2_HI is exact for |n| < 2^15.
    ln2_hi = 0.693_359_4,
    ln2_lo = -2.121_944_4e-4,
    exp_terms = EXP_F32,
    ln_terms = 5,
    subnormal_scale = 16_777_216.0,
    subnormal_bits = 24
);

vector_math!(
    exp_f64x4,
    ln_f64x4,
    f64x4,
    i64x4,
    u64x4,
    f64,
    i64,
    magic = 6_755_399_441_055_744.0,
    mantissa_bits = 52,
    bias = 1023,
    exp_hi = 709.782_712_893_384,
    exp_lo = -708.396_418_532_264_1,
    ln2_hi = 0.693_147_180_369_123_8,
    ln2_lo = 1.908_214_929_270_587_7e-10,
    exp_terms = EXP_F64,
    ln_terms = 11,
    subnormal_scale = 18_014_398_509_481_984.0,
    subnormal_bits = 54
);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::simd::ulps::worst;

    fn sweep(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..=n).map(|i| lo + (hi - lo) * i as f64 / n as f64).collect()
    }

    fn specials<T: From<f32>>() -> Vec<T> {
        [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            -1.0,
            1.0,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            f32::MIN,
        ]
        .into_iter()
        .map(T::from)
        .collect()
    }

    /// The error table quoted in the crate docs (in ulps of the result), over the whole finite range.
    #[test]
    fn exp_and_ln_error_table() {
        let mut xs: Vec<f32> = sweep(-104.0, 90.0, 400_000).into_iter().map(|x| x as f32).collect();
        xs.extend(specials::<f32>());
        let e32 = worst(exp_f32x8, f32::exp, &xs, true);
        // ln over every binade, subnormals included.
        let mut ls: Vec<f32> =
            (0..2_000_000u32).map(|i| f32::from_bits(i.wrapping_mul(2147) % 0x7f80_0000)).collect();
        ls.extend(specials::<f32>());
        let l32 = worst(ln_f32x8, f32::ln, &ls, true);
        let mut xd = sweep(-746.0, 710.0, 400_000);
        xd.extend(specials::<f64>());
        let e64 = worst(exp_f64x4, f64::exp, &xd, true);
        let mut ld: Vec<f64> = (0..2_000_000u64)
            .map(|i| f64::from_bits(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 0x7ff0_0000_0000_0000))
            .collect();
        ld.extend(specials::<f64>());
        let l64 = worst(ln_f64x4, f64::ln, &ld, true);
        println!("worst error in ulps: exp f32 {e32:.2}, ln f32 {l32:.2}, exp f64 {e64:.2}, ln f64 {l64:.2}");
        assert!(e32 <= 2.0 && l32 <= 2.0 && e64 <= 2.0 && l64 <= 2.0, "{e32} {l32} {e64} {l64}");
    }
}
