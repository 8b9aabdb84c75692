//! AVX2 + FMA lanes on `core::arch` intrinsics, for the runtime-dispatched paths.
//!
//! Why intrinsics: `wide` picks its instructions with `cfg(target_feature)` at compile time, so in a
//! default x86-64 build its `f32x8` is two SSE halves even inside a `#[target_feature(enable =
//! "avx2,fma")]` function; plain arrays looped over lane by lane (the previous way) were vectorised by
//! LLVM only in part (the exp/ln selects and integer steps came out scalar: 71-100 instructions per
//! lattice cell where the arithmetic needs about 20). Here every operation is one instruction.
//!
//! The algorithms and constants of `exp` and `ln` are those of [`super::math`] (same reduction, same
//! series, same special values), with fused multiply-adds.
//!
//! # Safety
//! Every method executes AVX2/FMA instructions. These types are crate-private and are instantiated
//! only by [`crate::loss`] inside its `avx2,fma` clones, which run only after
//! `is_x86_feature_detected!` confirmed both features (the `Isa::Avx2Fma` token). That is the one
//! invariant the `unsafe` blocks below rely on.

use super::math::EXP_F32;
use super::math::EXP_F64;
use super::vector::Lanes;
use core::arch::x86_64::*;
use core::ops::{Add, Div, Mul, Sub};

/// Eight `f32` lanes in one `ymm` register.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct F32x8(__m256);

/// Four `f64` lanes in one `ymm` register.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct F64x4(__m256d);

// One macro for both widths: the operations are the same, only the intrinsic names and the
// constants of the format differ.
macro_rules! avx2_lanes {
    (
        $name:ident, $f:ident, $n:expr, $reg:ty, $ireg:ty,
        set1 = $set1:ident, loadu = $loadu:ident, storeu = $storeu:ident,
        maskload = $maskload:ident, gather = $gather:ident, store_tail = $store_tail:ident,
        columns = $columns:ident, store_columns = $store_columns:ident, fast_columns = $fast_columns:expr,
        sub_at_columns = $sub_at_columns:ident, load_at_columns = $load_at_columns:ident,
        add = $add:ident, sub = $sub:ident, mul = $mul:ident, div = $div:ident,
        max = $max:ident, min = $min:ident, cmp = $cmp:ident, blendv = $blendv:ident,
        and = $and:ident, or = $or:ident, movemask = $movemask:ident,
        fmadd = $fmadd:ident, fnmadd = $fnmadd:ident,
        cast_to_i = $to_i:ident, cast_from_i = $from_i:ident,
        iset1 = $iset1:ident, iadd = $iadd:ident, isub = $isub:ident, slli = $slli:ident,
        srli = $srli:ident, iand = $iand:ident, ior = $ior:ident, icmpgt = $icmpgt:ident,
        iota = $iota:expr, hadd = $hadd:ident,
        magic = $magic:expr, mantissa_bits = $mbits:expr, bias = $bias:expr,
        exp_hi = $exp_hi:expr, exp_lo = $exp_lo:expr,
        ln2_hi = $ln2_hi:expr, ln2_lo = $ln2_lo:expr,
        exp_terms = $exp_terms:expr, ln_terms = $ln_terms:expr,
        subnormal_scale = $sub_scale:expr, subnormal_bits = $sub_bits:expr
    ) => {
        impl $name {
            #[inline(always)]
            fn splat_raw(x: $f) -> $reg {
                // SAFETY: see the module documentation (AVX2/FMA checked before any use).
                unsafe { $set1(x) }
            }

            /// Lanes `0..count` all ones (as a mask), the others zero.
            #[inline(always)]
            fn first(count: usize) -> $ireg {
                // SAFETY: as above.
                unsafe { $icmpgt($iset1(count as _), $iota) }
            }

            /// `e^r`'s series and the power of two, shared by both `exp` forms: `xc` is already clamped
            /// to `[exp_lo, exp_hi]`. Returns `(y, top)`: `y = p * 2^n` with `2^n` taken as `2^(n-1)`
            /// when `n` is the top exponent (then `y` must be doubled where `top` is set).
            #[inline(always)]
            fn exp_core<const TOP: bool>(xc: $reg) -> ($reg, $reg) {
                // SAFETY: as above.
                unsafe {
                    let magic = $set1($magic);
                    // Adding 1.5 * 2^mbits rounds to an integer and leaves it in the low mantissa bits.
                    let t = $fmadd(xc, $set1(core::$f::consts::LOG2_E), magic);
                    let n = $sub(t, magic);
                    let r = $fnmadd(n, $set1($ln2_hi), xc);
                    let r = $fnmadd(n, $set1($ln2_lo), r);
                    let c = $exp_terms;
                    let mut p = $set1(c[0]);
                    let mut k = 1;
                    while k < c.len() {
                        p = $fmadd(p, r, $set1(c[k]));
                        k += 1;
                    }
                    // Only a positive argument can reach the top exponent; the forms for x <= 0 skip it.
                    let top = if TOP { $cmp::<_CMP_GT_OQ>(n, $set1($bias as $f)) } else { $set1(0.0) };
                    let ni = $isub($to_i(t), $to_i(magic));
                    let ni = if TOP { $iadd(ni, $to_i(top)) } else { ni };
                    let pow = $from_i($slli::<$mbits>($iadd(ni, $iset1($bias))));
                    ($mul(p, pow), top)
                }
            }

            /// `ln m` for `m` in `[sqrt(1/2), sqrt 2)`, plus `e ln 2`: the shared tail of both `ln`
            /// forms, from the raw bits of a positive normal `x`.
            #[inline(always)]
            fn ln_core(bits: $ireg, e: $ireg) -> $reg {
                // SAFETY: as above.
                unsafe {
                    let one = $set1(1.0);
                    let magic = $set1($magic);
                    let mant_mask = $iset1(((1i64 << $mbits) - 1) as _);
                    let m = $from_i($ior($iand(bits, mant_mask), $iset1((($bias as i64) << $mbits) as _)));
                    let big = $cmp::<_CMP_GT_OQ>(m, $set1(core::$f::consts::SQRT_2));
                    let m = $blendv(m, $mul(m, $set1(0.5)), big);
                    let ef = $sub($from_i($iadd(e, $to_i(magic))), magic);
                    let ef = $add(ef, $and(big, one));
                    let s = $div($sub(m, one), $add(m, one));
                    let s2 = $mul(s, s);
                    let terms: usize = $ln_terms;
                    let mut p = $set1(2.0 / (2 * terms - 1) as $f);
                    let mut k = terms - 1;
                    while k > 0 {
                        k -= 1;
                        p = $fmadd(p, s2, $set1(2.0 / (2 * k + 1) as $f));
                    }
                    let lnm = $mul(p, s);
                    $fmadd(ef, $set1($ln2_hi), $fmadd(ef, $set1($ln2_lo), lnm))
                }
            }

            /// Biased exponent field minus the bias, as integers in the lanes.
            #[inline(always)]
            fn exponent(bits: $ireg) -> $ireg {
                // SAFETY: as above.
                unsafe { $isub($iand($srli::<$mbits>(bits), $iset1((2 * $bias + 1) as _)), $iset1($bias)) }
            }
        }

        impl Add for $name {
            type Output = Self;
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $add(self.0, b.0) })
            }
        }
        impl Sub for $name {
            type Output = Self;
            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $sub(self.0, b.0) })
            }
        }
        impl Div for $name {
            type Output = Self;
            #[inline(always)]
            fn div(self, b: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $div(self.0, b.0) })
            }
        }
        impl Mul for $name {
            type Output = Self;
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $mul(self.0, b.0) })
            }
        }

        impl Lanes<$f> for $name {
            const N: usize = $n;
            const FAST_COLUMNS: bool = $fast_columns;
            #[inline(always)]
            fn splat(x: $f) -> Self {
                $name(Self::splat_raw(x))
            }
            #[inline(always)]
            fn load_or(src: &[$f], fill: $f) -> Self {
                let count = src.len().min($n);
                let mask = Self::first(count);
                // SAFETY: the masked load touches only lanes `0..count`, all inside `src` (the masked-off
                // lanes are never read, so no fault past the end); AVX2 as in the module docs.
                unsafe {
                    let v = $maskload(src.as_ptr(), mask);
                    $name($blendv($set1(fill), v, $from_i(mask)))
                }
            }
            #[inline(always)]
            fn load(src: &[$f]) -> Self {
                let src = &src[..$n];
                // SAFETY: `src` has exactly N elements (checked by the slice above); unaligned load.
                $name(unsafe { $loadu(src.as_ptr()) })
            }
            #[inline(always)]
            fn store(self, dst: &mut [$f]) {
                if dst.len() >= $n {
                    // SAFETY: N elements are writable at `dst`.
                    unsafe { $storeu(dst.as_mut_ptr(), self.0) }
                } else {
                    // Not a masked store: `vmaskmovps` to memory is microcoded on AMD cores; nor a copy
                    // through the stack, which LLVM turns into a libc `memcpy` call (both measured on
                    // `tiny`, whose short rows are mostly tails).
                    $store_tail(dst, self.0);
                }
            }
            #[inline(always)]
            fn gather_or(row: &[$f], idx: &[u32], fill: $f) -> Self {
                $name($gather(row, idx, fill))
            }
            #[inline(always)]
            fn load_columns(src: &[$f], rows: &[u32], cols: &mut [$f]) {
                $columns(src, rows, cols)
            }
            #[inline(always)]
            fn store_columns(cols: &[$f], rows: &mut [&mut [$f]]) {
                $store_columns(cols, rows)
            }
            #[inline(always)]
            fn sub_at_columns(self, cols: &mut [$f], at: &[u32], rows: &[u32]) {
                $sub_at_columns(self, cols, at, rows)
            }
            #[inline(always)]
            fn load_at_columns(cols: &[$f], at: &[u32], rows: &[u32]) -> Self {
                $load_at_columns(cols, at, rows)
            }
            #[inline(always)]
            fn all_at_least(self, bound: Self) -> bool {
                // SAFETY: see the module documentation.
                unsafe { $movemask($cmp::<_CMP_GE_OQ>(self.0, bound.0)) == (1 << $n) - 1 }
            }
            #[inline(always)]
            fn split_exponent(self) -> (Self, Self) {
                // SAFETY: integer and bit operations; see the module documentation.
                unsafe {
                    let e = Self::exponent($to_i(self.0));
                    let inv = $from_i($slli::<$mbits>($isub($iset1($bias), e)));
                    // `e` as a float: added to the magic number's integer bits, as in `ln_core`.
                    let magic = $set1($magic);
                    ($name($sub($from_i($iadd(e, $to_i(magic))), magic)), $name(inv))
                }
            }
            #[inline(always)]
            fn flag_nan(self, flags: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $or(flags.0, $cmp::<_CMP_UNORD_Q>(self.0, self.0)) })
            }
            #[inline(always)]
            fn any_flagged(self) -> bool {
                // SAFETY: see the module documentation.
                unsafe { $movemask(self.0) != 0 }
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $max(self.0, o.0) })
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                // SAFETY: see the module documentation.
                $name(unsafe { $min(self.0, o.0) })
            }
            #[inline(always)]
            fn exp(self) -> Self {
                let x = self.0;
                // SAFETY: see the module documentation.
                unsafe {
                    let hi = $set1($exp_hi);
                    let lo = $set1($exp_lo);
                    // max/min return their second operand for NaN: xc is never NaN; NaN is restored last.
                    let xc = $min($max(x, lo), hi);
                    let (y, top) = Self::exp_core::<true>(xc);
                    let y = $blendv(y, $add(y, y), top);
                    let y = $blendv(y, $set1($f::INFINITY), $cmp::<_CMP_GT_OQ>(x, hi));
                    let y = $blendv(y, $set1(0.0), $cmp::<_CMP_LT_OQ>(x, lo));
                    $name($blendv(y, x, $cmp::<_CMP_UNORD_Q>(x, x)))
                }
            }
            #[inline(always)]
            fn exp_nonpositive(self) -> Self {
                let x = self.0;
                // SAFETY: see the module documentation.
                unsafe {
                    // x <= 0 or NaN (the caller discards NaN lanes): no overflow, no top exponent; below
                    // exp_lo the series at exp_lo gives about 1e-38 (f32) instead of 0, which vanishes in
                    // the sums with 1 that this form feeds.
                    let xc = $max(x, $set1($exp_lo));
                    Self(Self::exp_core::<false>(xc).0)
                }
            }
            #[inline(always)]
            fn exp_le0(self) -> Self {
                let x = self.0;
                // SAFETY: see the module documentation.
                unsafe {
                    // x <= 0, not NaN: no overflow and no top exponent; below exp_lo (and -inf) the
                    // exact answer in the normal range is 0.
                    let lo = $set1($exp_lo);
                    let (y, _) = Self::exp_core::<false>($max(x, lo));
                    $name($blendv(y, $set1(0.0), $cmp::<_CMP_LT_OQ>(x, lo)))
                }
            }
            #[inline(always)]
            fn ln(self) -> Self {
                let x = self.0;
                // SAFETY: see the module documentation.
                unsafe {
                    let zero = $set1(0.0);
                    let subnormal =
                        $and($cmp::<_CMP_LT_OQ>(x, $set1($f::MIN_POSITIVE)), $cmp::<_CMP_GT_OQ>(x, zero));
                    let xs = $blendv(x, $mul(x, $set1($sub_scale)), subnormal);
                    let bits = $to_i(xs);
                    let e = $isub(Self::exponent(bits), $iand($to_i(subnormal), $iset1($sub_bits)));
                    let y = Self::ln_core(bits, e);
                    let y = $blendv(y, $set1($f::NEG_INFINITY), $cmp::<_CMP_EQ_OQ>(x, zero));
                    let y = $blendv(y, x, $cmp::<_CMP_EQ_OQ>(x, $set1($f::INFINITY)));
                    let bad = $or($cmp::<_CMP_LT_OQ>(x, zero), $cmp::<_CMP_UNORD_Q>(x, x));
                    $name($blendv(y, $set1($f::NAN), bad))
                }
            }
            #[inline(always)]
            fn ln_normal(self) -> Self {
                let bits = $to_i(self.0);
                $name(Self::ln_core(bits, Self::exponent(bits)))
            }
            #[inline(always)]
            fn neg_inf_where_neg_inf(self, mask_src: Self) -> Self {
                // SAFETY: see the module documentation.
                unsafe {
                    let m = $cmp::<_CMP_EQ_OQ>(mask_src.0, $set1($f::NEG_INFINITY));
                    $name($blendv(self.0, mask_src.0, m))
                }
            }
            #[inline(always)]
            fn where_at_most(self, bound: Self, a: Self) -> Self {
                // SAFETY: see the module documentation.
                unsafe { $name($blendv($set1(0.0), a.0, $cmp::<_CMP_LE_OQ>(self.0, bound.0))) }
            }
            #[inline(always)]
            fn reduce_max(self) -> $f {
                let mut a = [0.0 as $f; $n];
                self.store(&mut a);
                a.into_iter().fold($f::NEG_INFINITY, |m, x| if x > m { x } else { m })
            }
            #[inline(always)]
            fn reduce_add(self) -> $f {
                $hadd(self.0)
            }
            #[inline(always)]
            fn any_invalid(self) -> bool {
                // SAFETY: see the module documentation.
                unsafe {
                    let x = self.0;
                    let bad = $or($cmp::<_CMP_UNORD_Q>(x, x), $cmp::<_CMP_EQ_OQ>(x, $set1($f::INFINITY)));
                    $movemask(bad) != 0
                }
            }
        }
    };
}

avx2_lanes!(
    F32x8,
    f32,
    8,
    __m256,
    __m256i,
    set1 = _mm256_set1_ps,
    loadu = _mm256_loadu_ps,
    storeu = _mm256_storeu_ps,
    maskload = _mm256_maskload_ps,
    gather = gather_ps,
    store_tail = store_tail_ps,
    columns = load_columns_ps,
    store_columns = store_columns_ps,
    fast_columns = true,
    sub_at_columns = sub_at_columns_ps,
    load_at_columns = load_at_columns_ps,
    add = _mm256_add_ps,
    sub = _mm256_sub_ps,
    mul = _mm256_mul_ps,
    div = _mm256_div_ps,
    max = _mm256_max_ps,
    min = _mm256_min_ps,
    cmp = _mm256_cmp_ps,
    blendv = _mm256_blendv_ps,
    and = _mm256_and_ps,
    or = _mm256_or_ps,
    movemask = _mm256_movemask_ps,
    fmadd = _mm256_fmadd_ps,
    fnmadd = _mm256_fnmadd_ps,
    cast_to_i = cast_ps_si,
    cast_from_i = cast_si_ps,
    iset1 = _mm256_set1_epi32,
    iadd = _mm256_add_epi32,
    isub = _mm256_sub_epi32,
    slli = _mm256_slli_epi32,
    srli = _mm256_srli_epi32,
    iand = _mm256_and_si256,
    ior = _mm256_or_si256,
    icmpgt = _mm256_cmpgt_epi32,
    iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    hadd = hadd_ps,
    magic = 12_582_912.0,
    mantissa_bits = 23,
    bias = 127,
    exp_hi = 88.722_83,
    exp_lo = -87.336_55,
    ln2_hi = 0.693_359_4,
    ln2_lo = -2.121_944_4e-4,
    exp_terms = EXP_F32,
    ln_terms = 5,
    subnormal_scale = 16_777_216.0,
    subnormal_bits = 24
);

avx2_lanes!(
    F64x4,
    f64,
    4,
    __m256d,
    __m256i,
    set1 = _mm256_set1_pd,
    loadu = _mm256_loadu_pd,
    storeu = _mm256_storeu_pd,
    maskload = _mm256_maskload_pd,
    gather = gather_pd,
    store_tail = store_tail_pd,
    columns = load_columns_pd,
    store_columns = store_columns_pd,
    fast_columns = false,
    sub_at_columns = sub_at_columns_pd,
    load_at_columns = load_at_columns_pd,
    add = _mm256_add_pd,
    sub = _mm256_sub_pd,
    mul = _mm256_mul_pd,
    div = _mm256_div_pd,
    max = _mm256_max_pd,
    min = _mm256_min_pd,
    cmp = _mm256_cmp_pd,
    blendv = _mm256_blendv_pd,
    and = _mm256_and_pd,
    or = _mm256_or_pd,
    movemask = _mm256_movemask_pd,
    fmadd = _mm256_fmadd_pd,
    fnmadd = _mm256_fnmadd_pd,
    cast_to_i = cast_pd_si,
    cast_from_i = cast_si_pd,
    iset1 = _mm256_set1_epi64x,
    iadd = _mm256_add_epi64,
    isub = _mm256_sub_epi64,
    slli = _mm256_slli_epi64,
    srli = _mm256_srli_epi64,
    iand = _mm256_and_si256,
    ior = _mm256_or_si256,
    icmpgt = _mm256_cmpgt_epi64,
    iota = _mm256_setr_epi64x(0, 1, 2, 3),
    hadd = hadd_pd,
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

#[inline(always)]
fn cast_ps_si(x: __m256) -> __m256i {
    // SAFETY: a bit cast; AVX as in the module documentation.
    unsafe { _mm256_castps_si256(x) }
}
#[inline(always)]
fn cast_si_ps(x: __m256i) -> __m256 {
    // SAFETY: a bit cast.
    unsafe { _mm256_castsi256_ps(x) }
}
#[inline(always)]
fn cast_pd_si(x: __m256d) -> __m256i {
    // SAFETY: a bit cast.
    unsafe { _mm256_castpd_si256(x) }
}
#[inline(always)]
fn cast_si_pd(x: __m256i) -> __m256d {
    // SAFETY: a bit cast.
    unsafe { _mm256_castsi256_pd(x) }
}

/// Sum of the lanes, pairwise: the two halves, then within the half.
#[inline(always)]
fn hadd_ps(v: __m256) -> f32 {
    // SAFETY: AVX as in the module documentation.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}
#[inline(always)]
fn hadd_pd(v: __m256d) -> f64 {
    // SAFETY: AVX as in the module documentation.
    unsafe {
        let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }
}

/// `row[idx[k]]` for `k < min(8, idx.len())`, `fill` in the other lanes. Indices are clamped to the
/// row (`min(idx, len - 1)`), so no lane ever reads outside it whatever the caller passes; callers pass
/// validated labels, which the clamp leaves alone.
#[inline(always)]
fn gather_ps(row: &[f32], idx: &[u32], fill: f32) -> __m256 {
    let count = idx.len().min(8);
    if row.is_empty() || count == 0 {
        // SAFETY: AVX as in the module documentation.
        return unsafe { _mm256_set1_ps(fill) };
    }
    // SAFETY: the masked index load reads `idx[..count]` only; the gather reads, in enabled lanes
    // only, `row[min(idx, len - 1)]`, inside `row`; AVX2 as in the module documentation.
    unsafe {
        let lanes =
            _mm256_cmpgt_epi32(_mm256_set1_epi32(count as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let ix = _mm256_maskload_epi32(idx.as_ptr().cast(), lanes);
        let ix = _mm256_min_epu32(ix, _mm256_set1_epi32((row.len() - 1).min(i32::MAX as usize) as i32));
        _mm256_mask_i32gather_ps::<4>(_mm256_set1_ps(fill), row.as_ptr(), ix, _mm256_castsi256_ps(lanes))
    }
}

/// As [`gather_ps`], four `f64` lanes.
#[inline(always)]
fn gather_pd(row: &[f64], idx: &[u32], fill: f64) -> __m256d {
    let count = idx.len().min(4);
    if row.is_empty() || count == 0 {
        // SAFETY: AVX as in the module documentation.
        return unsafe { _mm256_set1_pd(fill) };
    }
    // SAFETY: as in `gather_ps`.
    unsafe {
        let lanes = _mm_cmpgt_epi32(_mm_set1_epi32(count as i32), _mm_setr_epi32(0, 1, 2, 3));
        let ix = _mm_maskload_epi32(idx.as_ptr().cast(), lanes);
        let ix = _mm_min_epu32(ix, _mm_set1_epi32((row.len() - 1).min(i32::MAX as usize) as i32));
        let wide = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(lanes));
        _mm256_mask_i32gather_pd::<8>(_mm256_set1_pd(fill), row.as_ptr(), ix, wide)
    }
}

/// [`Lanes::load_columns`] for eight `f32` lanes: each block of eight columns loaded as one vector
/// per row, then transposed. A last, partial block is the eight columns that end the rows, which
/// overlap the block before (their columns are written twice, with the same values): whole loads
/// inside the rows, and no per-column branches. Rows of fewer than eight columns are loaded masked.
/// Short rows of logits (`tiny`, `chars`: 29 classes) gathered one column at a time cost a load per
/// lane and column, half the instructions of the frame normalisers; the bounds are checked once
/// per frame, not per row (a check per row and block was as costly as the gathers).
#[inline(always)]
fn load_columns_ps(src: &[f32], rows: &[u32], cols: &mut [f32]) {
    let classes = cols.len() / 8;
    let rows: &[u32; 8] = rows[..8].try_into().expect("eight rows");
    let mut hi = 0usize;
    for &r in rows {
        hi = hi.max(r as usize);
    }
    // The one bounds check: every row's `classes` columns lie inside `src` (no overflow: `hi` < 2^32
    // and `classes` is at most `src.len()` here, or the check fails).
    assert!(classes <= src.len() && hi <= src.len() - classes);
    let p = src.as_ptr();
    if classes < 8 {
        let mask = F32x8::first(classes);
        let mut r = [F32x8::splat_raw(0.0); 8];
        for (v, &row) in r.iter_mut().zip(rows) {
            // SAFETY: the enabled lanes, `row..row + classes`, are inside `src` (the check above);
            // the others are never accessed.
            *v = unsafe { _mm256_maskload_ps(p.add(row as usize), mask) };
        }
        for (dst, v) in cols[..classes * 8].chunks_exact_mut(8).zip(transpose_ps(r)) {
            F32x8(v).store(dst);
        }
        return;
    }
    let mut col = 0;
    while col < classes {
        // The last block ends at the rows' end.
        let at = col.min(classes - 8);
        let mut r = [F32x8::splat_raw(0.0); 8];
        for (v, &row) in r.iter_mut().zip(rows) {
            // SAFETY: `row + at + 8 <= hi + classes <= src.len()` (the check above); unaligned load.
            *v = unsafe { _mm256_loadu_ps(p.add(row as usize + at)) };
        }
        for (dst, v) in cols[at * 8..(at + 8) * 8].chunks_exact_mut(8).zip(transpose_ps(r)) {
            F32x8(v).store(dst);
        }
        col += 8;
    }
}

/// [`Lanes::store_columns`] for eight `f32` lanes: each block of eight columns transposed into one
/// vector per row and stored whole; a last, partial block as the eight columns that end the rows
/// (overlapping the block before, with the same values), never past a row: what follows it may be
/// another sequence's. Rows of fewer than eight columns are stored by parts.
#[inline(always)]
fn store_columns_ps(cols: &[f32], rows: &mut [&mut [f32]]) {
    let classes = cols.len() / 8;
    let rows = &mut rows[..8];
    // The one bounds check of the rows.
    assert!(rows.iter().all(|r| r.len() >= classes));
    if classes < 8 {
        let mut r = [F32x8::splat_raw(0.0); 8];
        for (v, src) in r.iter_mut().zip(cols.chunks_exact(8)) {
            *v = F32x8::load(src).0;
        }
        for (row, v) in rows.iter_mut().zip(transpose_ps(r)) {
            store_tail_ps(&mut row[..classes], v);
        }
        return;
    }
    let mut col = 0;
    while col < classes {
        // The last block ends at the rows' end.
        let at = col.min(classes - 8);
        let mut r = [F32x8::splat_raw(0.0); 8];
        for (i, v) in r.iter_mut().enumerate() {
            // SAFETY: `(at + i + 1) * 8 <= classes * 8 <= cols.len()`; unaligned load. (One load per
            // column: loading the block as a run let LLVM copy it to the stack with `memcpy`.)
            *v = unsafe { _mm256_loadu_ps(cols.as_ptr().add((at + i) * 8)) };
        }
        for (row, v) in rows.iter_mut().zip(transpose_ps(r)) {
            // SAFETY: `at + 8 <= classes <= row.len()` (checked above); unaligned store.
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(at), v) };
        }
        col += 8;
    }
}

/// The indices of [`Lanes::load_at_columns`] and [`Lanes::sub_at_columns`] into a frame of `classes`
/// columns of eight lanes: `(at[m] - rows[m]) * 8 + m`, the column clamped to `classes - 1`, so
/// every index is `< classes * 8`.
#[inline(always)]
fn column_indices(at: &[u32], rows: &[u32], classes: usize) -> __m256i {
    let (at, rows) = (&at[..8], &rows[..8]);
    assert!(classes >= 1 && classes <= i32::MAX as usize / 8);
    // SAFETY: the loads read `at[..8]` and `rows[..8]` (sliced above); AVX2 as in the module
    // documentation.
    unsafe {
        let c = _mm256_sub_epi32(
            _mm256_loadu_si256(at.as_ptr().cast()),
            _mm256_loadu_si256(rows.as_ptr().cast()),
        );
        let c = _mm256_min_epu32(c, _mm256_set1_epi32((classes - 1) as i32));
        _mm256_add_epi32(_mm256_slli_epi32::<3>(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }
}

/// [`Lanes::load_at_columns`] for eight `f32` lanes: one gather.
#[inline(always)]
fn load_at_columns_ps(cols: &[f32], at: &[u32], rows: &[u32]) -> F32x8 {
    let idx = column_indices(at, rows, cols.len() / 8);
    // SAFETY: every index is `< (cols.len() / 8) * 8 <= cols.len()` (column_indices); AVX2 as in the
    // module documentation.
    F32x8(unsafe { _mm256_i32gather_ps::<4>(cols.as_ptr(), idx) })
}

/// [`Lanes::sub_at_columns`] for eight `f32` lanes: the eight elements gathered, less `v`, and
/// stored back one by one (AVX2 has no scatter). The labels' posteriors per member, one at a time,
/// took a bounds check and a loop step each: eleven instructions per label (callgrind, `chars`).
#[inline(always)]
fn sub_at_columns_ps(v: F32x8, cols: &mut [f32], at: &[u32], rows: &[u32]) {
    let idx = column_indices(at, rows, cols.len() / 8);
    // SAFETY: every index is `< (cols.len() / 8) * 8 <= cols.len()` (column_indices), for the gather
    // and the stores; AVX2 as in the module documentation.
    unsafe {
        let new = _mm256_sub_ps(_mm256_i32gather_ps::<4>(cols.as_ptr(), idx), v.0);
        let mut i = [0u32; 8];
        let mut x = [0f32; 8];
        _mm256_storeu_si256(i.as_mut_ptr().cast(), idx);
        _mm256_storeu_ps(x.as_mut_ptr(), new);
        for (&i, &x) in i.iter().zip(&x) {
            *cols.get_unchecked_mut(i as usize) = x;
        }
    }
}

/// [`Lanes::load_at_columns`] for four `f64` lanes, one element at a time (clamped as the `f32` form).
#[inline(always)]
fn load_at_columns_pd(cols: &[f64], at: &[u32], rows: &[u32]) -> F64x4 {
    let classes = cols.len() / 4;
    let mut lanes = [0.0f64; 4];
    for (m, (x, (&a, &r))) in lanes.iter_mut().zip(at.iter().zip(rows)).enumerate() {
        *x = cols[(a.wrapping_sub(r) as usize).min(classes - 1) * 4 + m];
    }
    F64x4::load(&lanes)
}

/// [`Lanes::sub_at_columns`] for four `f64` lanes, one element at a time (clamped as the `f32` form).
#[inline(always)]
fn sub_at_columns_pd(v: F64x4, cols: &mut [f64], at: &[u32], rows: &[u32]) {
    let classes = cols.len() / 4;
    let mut lanes = [0.0f64; 4];
    v.store(&mut lanes);
    for (m, ((&a, &r), &x)) in at.iter().zip(rows).zip(&lanes).enumerate() {
        cols[(a.wrapping_sub(r) as usize).min(classes - 1) * 4 + m] -= x;
    }
}

/// The transpose of an 8 x 8 block: lane `m` of vector `c` of the result is lane `c` of `r[m]`.
#[inline(always)]
fn transpose_ps(r: [__m256; 8]) -> [__m256; 8] {
    // SAFETY: shuffles only; AVX as in the module documentation.
    unsafe {
        let a0 = _mm256_unpacklo_ps(r[0], r[1]);
        let a1 = _mm256_unpackhi_ps(r[0], r[1]);
        let a2 = _mm256_unpacklo_ps(r[2], r[3]);
        let a3 = _mm256_unpackhi_ps(r[2], r[3]);
        let a4 = _mm256_unpacklo_ps(r[4], r[5]);
        let a5 = _mm256_unpackhi_ps(r[4], r[5]);
        let a6 = _mm256_unpacklo_ps(r[6], r[7]);
        let a7 = _mm256_unpackhi_ps(r[6], r[7]);
        // Columns (c, c + 4), one per 128-bit half, of rows 0..4 (b0..b4) and 4..8 (b4..b8).
        let b0 = _mm256_shuffle_ps::<0x44>(a0, a2);
        let b1 = _mm256_shuffle_ps::<0xEE>(a0, a2);
        let b2 = _mm256_shuffle_ps::<0x44>(a1, a3);
        let b3 = _mm256_shuffle_ps::<0xEE>(a1, a3);
        let b4 = _mm256_shuffle_ps::<0x44>(a4, a6);
        let b5 = _mm256_shuffle_ps::<0xEE>(a4, a6);
        let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
        let b7 = _mm256_shuffle_ps::<0xEE>(a5, a7);
        [
            _mm256_permute2f128_ps::<0x20>(b0, b4),
            _mm256_permute2f128_ps::<0x20>(b1, b5),
            _mm256_permute2f128_ps::<0x20>(b2, b6),
            _mm256_permute2f128_ps::<0x20>(b3, b7),
            _mm256_permute2f128_ps::<0x31>(b0, b4),
            _mm256_permute2f128_ps::<0x31>(b1, b5),
            _mm256_permute2f128_ps::<0x31>(b2, b6),
            _mm256_permute2f128_ps::<0x31>(b3, b7),
        ]
    }
}

/// [`Lanes::load_columns`] for four `f64` lanes: a gather per column (no `f64` shape has rows short
/// enough for the transpose to matter).
#[inline(always)]
fn load_columns_pd(src: &[f64], rows: &[u32], cols: &mut [f64]) {
    let rows = &rows[..4];
    for (c, col) in cols.chunks_exact_mut(4).enumerate() {
        let row = &src[c..];
        assert!(rows.iter().all(|&r| (r as usize) < row.len()));
        F64x4(gather_pd(row, rows, f64::NEG_INFINITY)).store(col);
    }
}

/// [`Lanes::store_columns`] for four `f64` lanes, one element at a time.
#[inline(always)]
fn store_columns_pd(cols: &[f64], rows: &mut [&mut [f64]]) {
    for (c, col) in cols.chunks_exact(4).enumerate() {
        for (row, &x) in rows.iter_mut().zip(col) {
            row[c] = x;
        }
    }
}

/// The first `dst.len() < 8` lanes of `v` into `dst`, by halves: 4, then 2, then 1.
#[inline(always)]
fn store_tail_ps(dst: &mut [f32], v: __m256) {
    let k = dst.len().min(7);
    let p = dst.as_mut_ptr();
    // SAFETY: each store writes lanes `i..i + w` with `i + w <= k <= dst.len()`; AVX as in the module
    // documentation.
    unsafe {
        let mut i = 0;
        let mut x = _mm256_castps256_ps128(v);
        if k >= 4 {
            _mm_storeu_ps(p, x);
            x = _mm256_extractf128_ps::<1>(v);
            i = 4;
        }
        if k - i >= 2 {
            // `_mm_storel_epi64` writes its 8 bytes unaligned; `_mm_store_sd` stores through an
            // `f64` pointer, which needs 8-byte alignment that an `f32` slice does not have (Miri
            // reports it as undefined behaviour). Same instruction (`vmovq` / `vmovsd` to memory).
            _mm_storel_epi64(p.add(i).cast(), _mm_castps_si128(x));
            x = _mm_movehl_ps(x, x);
            i += 2;
        }
        if k > i {
            _mm_store_ss(p.add(i), x);
        }
    }
}

/// The first `dst.len() < 4` lanes of `v` into `dst`.
#[inline(always)]
fn store_tail_pd(dst: &mut [f64], v: __m256d) {
    let k = dst.len().min(3);
    let p = dst.as_mut_ptr();
    // SAFETY: as in `store_tail_ps`.
    unsafe {
        let mut x = _mm256_castpd256_pd128(v);
        let mut i = 0;
        if k >= 2 {
            _mm_storeu_pd(p, x);
            x = _mm256_extractf128_pd::<1>(v);
            i = 2;
        }
        if k > i {
            _mm_store_sd(p.add(i), x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::simd::ulps::worst;

    /// The AVX2 lanes are the ones the dispatched kernel runs: the error table of `super::math`, again,
    /// for them, and for the reduced-range forms log-sum-exp uses, on the ranges it feeds them.
    #[test]
    fn avx2_exp_and_ln_error_table() {
        if crate::simd::Avx2FmaToken::detect().is_none() {
            eprintln!("no AVX2+FMA on this CPU: nothing to check");
            return;
        }
        let specials = [
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
        ];
        let mut xs: Vec<f32> = (0..=400_000).map(|i| -104.0 + 194.0 * i as f32 / 400_000.0).collect();
        xs.extend(specials);
        let e = worst(|v: F32x8| v.exp(), f32::exp, &xs, true);
        let mut ls: Vec<f32> =
            (0..2_000_000u32).map(|i| f32::from_bits(i.wrapping_mul(2147) % 0x7f80_0000)).collect();
        ls.extend(specials);
        let l = worst(|v: F32x8| v.ln(), f32::ln, &ls, true);
        let neg: Vec<f32> = (0..=400_000).map(|i| -87.0 * i as f32 / 400_000.0).collect();
        let en = worst(|v: F32x8| v.exp_nonpositive(), f32::exp, &neg, false);
        let mut le0: Vec<f32> = (0..=400_000).map(|i| -104.0 * i as f32 / 400_000.0).collect();
        le0.extend([f32::NEG_INFINITY, -0.0, 0.0, f32::MIN]);
        let e0 = worst(|v: F32x8| v.exp_le0(), f32::exp, &le0, true);
        assert!(e0 <= 1.0, "exp on x <= 0: {e0} ulps");
        let sums: Vec<f32> = (0..=400_000).map(|i| 1.0 + 2.0 * i as f32 / 400_000.0).collect();
        let ln = worst(|v: F32x8| v.ln_normal(), f32::ln, &sums, false);
        println!("AVX2 worst error in ulps: exp {e:.2}, ln {l:.2}, exp(x <= 0) {en:.2}, ln([1, 3]) {ln:.2}");
        assert!(e <= 2.0 && l <= 2.0 && en <= 2.0 && ln <= 2.0, "{e} {l} {en} {ln}");
        // Below the reduced exp's range its result is negligible next to 1, as log-sum-exp needs.
        let mut out = [0.0f32; 8];
        F32x8::splat(-1e30).exp_nonpositive().store(&mut out);
        assert!(out.iter().all(|&y| (0.0..f32::EPSILON).contains(&y)), "{out:?}");
    }

    /// f64 lanes: the same checks, against `f64`'s functions.
    #[test]
    fn avx2_f64_exp_and_ln() {
        if crate::simd::Avx2FmaToken::detect().is_none() {
            return;
        }
        let mut xs: Vec<f64> = (0..=200_000).map(|i| -746.0 + 1456.0 * i as f64 / 200_000.0).collect();
        xs.extend([f64::NEG_INFINITY, f64::INFINITY, f64::NAN, 0.0, -1.0]);
        let e = worst(|v: F64x4| v.exp(), f64::exp, &xs, true);
        let mut ls: Vec<f64> = (0..1_000_000u64)
            .map(|i| f64::from_bits(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 0x7ff0_0000_0000_0000))
            .collect();
        ls.extend([f64::NEG_INFINITY, f64::INFINITY, f64::NAN, 0.0, -1.0, 5e-324]);
        let l = worst(|v: F64x4| v.ln(), f64::ln, &ls, true);
        let worst = e.max(l);
        println!("AVX2 f64 worst error in ulps: {worst:.2}");
        assert!(worst <= 2.0, "{worst}");
    }

    /// The column forms against their definitions, for every frame width up to four blocks (a
    /// partial last block included), rows spread with gaps and ending at the slice's end (where the
    /// tail block must be loaded masked), and the scatter and gather at columns.
    #[test]
    fn columns_transpose_rows() {
        if crate::simd::Avx2FmaToken::detect().is_none() {
            return;
        }
        for classes in 1..=29 {
            let rows: Vec<u32> = (0..8).map(|m| (m * (classes + 3)) as u32).collect();
            let len = rows[7] as usize + classes;
            let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut cols = vec![0.0f32; classes * 8];
            F32x8::load_columns(&src, &rows, &mut cols);
            for c in 0..classes {
                for m in 0..8 {
                    assert_eq!(cols[c * 8 + m], src[rows[m] as usize + c], "classes {classes} c {c} m {m}");
                }
            }
            let mut out = vec![-1.0f32; len + 5];
            {
                let mut dst: Vec<&mut [f32]> = Vec::new();
                let mut rest = &mut out[..];
                let mut at = 0;
                for &r in &rows {
                    let (_, tail) = rest.split_at_mut(r as usize - at);
                    let (row, tail) = tail.split_at_mut(classes);
                    dst.push(row);
                    rest = tail;
                    at = r as usize + classes;
                }
                F32x8::store_columns(&cols, &mut dst);
            }
            for (i, &x) in out.iter().enumerate() {
                let inside = rows.iter().any(|&r| (r as usize..r as usize + classes).contains(&i));
                assert_eq!(x, if inside { src[i] } else { -1.0 }, "classes {classes} element {i}");
            }
            let at: Vec<u32> = (0..8).map(|m| rows[m] + ((m * 5) % classes) as u32).collect();
            let got = F32x8::load_at_columns(&cols, &at, &rows);
            let mut lanes = [0.0f32; 8];
            got.store(&mut lanes);
            for m in 0..8 {
                assert_eq!(lanes[m], cols[((m * 5) % classes) * 8 + m]);
            }
            let before = cols.clone();
            F32x8::splat(0.25).sub_at_columns(&mut cols, &at, &rows);
            for (i, (&x, &y)) in cols.iter().zip(&before).enumerate() {
                let hit = (0..8).any(|m| i == ((m * 5) % classes) * 8 + m);
                assert_eq!(x, if hit { y - 0.25 } else { y }, "classes {classes} element {i}");
            }
        }
    }

    /// The rescaling step's lane operations against their scalar definitions.
    #[test]
    fn exponents_and_bounds() {
        if crate::simd::Avx2FmaToken::detect().is_none() {
            return;
        }
        let xs = [1.0f32, 1.5, 2.0, 3.99, 1e-30, 7e30, f32::MIN_POSITIVE, 0.75];
        let (e, inv) = F32x8::load(&xs).split_exponent();
        let (mut es, mut invs) = ([0.0f32; 8], [0.0f32; 8]);
        e.store(&mut es);
        inv.store(&mut invs);
        for ((&x, &e), &inv) in xs.iter().zip(&es).zip(&invs) {
            // From the bits (not log2 and powf, whose last bits Miri perturbs on purpose).
            let want = ((x.to_bits() >> 23) & 0xff) as i32 - 127;
            assert_eq!(e, want as f32, "{x}");
            assert_eq!(inv, f32::from_bits(((127 - want) as u32) << 23), "{x}");
            assert!((1.0..2.0).contains(&(x * inv)), "{x}");
        }
        let v = F32x8::load(&xs);
        assert!(v.all_at_least(F32x8::splat(f32::MIN_POSITIVE)));
        assert!(!v.all_at_least(F32x8::splat(1.0)));
        let mut nan = xs;
        nan[3] = f32::NAN;
        assert!(!F32x8::load(&nan).all_at_least(F32x8::splat(f32::MIN_POSITIVE)));
        assert!(F32x8::load(&nan).flag_nan(F32x8::splat(0.0)).any_flagged());
        assert!(!v.flag_nan(F32x8::splat(0.0)).any_flagged());
    }

    #[test]
    fn gathers_and_tails() {
        if crate::simd::Avx2FmaToken::detect().is_none() {
            return;
        }
        let row: Vec<f32> = (0..29).map(|i| i as f32).collect();
        let idx = [3u32, 28, 0, 7, 7];
        let mut out = [0.0f32; 8];
        F32x8::gather_or(&row, &idx, -1.0).store(&mut out);
        assert_eq!(out, [3.0, 28.0, 0.0, 7.0, 7.0, -1.0, -1.0, -1.0]);
        // An index past the row is clamped to its last element, never read past it.
        F32x8::gather_or(&row, &[99], -1.0).store(&mut out[..1]);
        assert_eq!(out[0], 28.0);
        for k in 0..8 {
            let mut dst = vec![7.5f32; k + 1];
            F32x8::load(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).store(&mut dst[..k]);
            assert_eq!(&dst[..k], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0][..k]);
            assert_eq!(dst[k], 7.5, "wrote past the tail of {k}");
        }
        let rowd: Vec<f64> = (0..5).map(|i| i as f64).collect();
        let mut outd = [0.0f64; 4];
        F64x4::gather_or(&rowd, &[4, 1, 9], -1.0).store(&mut outd);
        assert_eq!(outd, [4.0, 1.0, 4.0, -1.0]);
        for k in 0..4 {
            let mut dst = vec![7.5f64; k + 1];
            F64x4::load(&[1.0, 2.0, 3.0, 4.0]).store(&mut dst[..k]);
            assert_eq!(&dst[..k], &[1.0, 2.0, 3.0, 4.0][..k]);
            assert_eq!(dst[k], 7.5);
        }
    }
}
