//! The one scalar trait the kernel is generic over: `f32` or `f64`.
//!
//! The trait is sealed: the SIMD kernels and the tolerances in the tests are written for exactly these
//! two IEEE-754 types, and a third type would silently get neither.

use core::fmt::{Debug, Display};
use core::iter::Sum;
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type of activations, gradients and losses: `f32` or `f64`.
pub trait Float:
    sealed::Sealed
    + Copy
    + Default
    + Debug
    + Display
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + bytemuck::Pod
    + 'static
{
    /// The vector row kernels for this type (`f32x8` or `f64x4` lanes).
    type Simd: crate::simd::Kernels<Self> + Default + Copy + Send + Sync;
    /// The row kernels over AVX2 intrinsic lanes, which the kernel runs inside its runtime-dispatched
    /// `avx2,fma` clones (on other architectures, the portable ones, never used).
    type Avx2: crate::simd::Kernels<Self> + Copy + Send + Sync;
    /// The vector lanes of [`Float::Simd`] (`wide`'s `f32x8` or `f64x4`), which also run groups of
    /// sequences interleaved one per lane.
    type SimdLanes: crate::simd::Lanes<Self> + Send + Sync;
    /// The vector lanes of [`Float::Avx2`] (AVX2 intrinsics on x86-64; elsewhere `wide`'s).
    type Avx2Lanes: crate::simd::Lanes<Self> + Send + Sync;

    /// The AVX2 kernels, given proof that the CPU has AVX2 and FMA (which only this crate can give).
    fn avx2_kernels(proof: crate::simd::Avx2FmaToken) -> Self::Avx2;

    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// `+inf`.
    const INFINITY: Self;
    /// `-inf`: the log of a probability that is exactly zero.
    const NEG_INFINITY: Self;
    /// Machine epsilon: the gap between 1 and the next representable value.
    const EPSILON: Self;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// A short name for messages and benchmark ids (`"f32"`, `"f64"`).
    const NAME: &'static str;

    /// Rounds an `f64` to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens (or keeps) this value as an `f64`, exactly.
    fn to_f64(self) -> f64;
    /// Converts a count to this type (rounded where it exceeds the mantissa).
    fn from_usize(n: usize) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm; `ln(0) = -inf`.
    fn ln(self) -> Self;
    /// `ln(1 + self)`, accurate for small `self`.
    fn ln_1p(self) -> Self;
    /// The larger of two values; if one is NaN, the other.
    fn max(self, other: Self) -> Self;
    /// The smaller of two values; if one is NaN, the other.
    fn min(self, other: Self) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// NaN.
    fn is_nan(self) -> bool;
    /// Absolute value.
    fn abs(self) -> Self;
}

macro_rules! impl_float {
    ($t:ident, $v:ty, $a:ty) => {
        impl Float for $t {
            type Simd = crate::simd::Vector<$v>;
            type Avx2 = crate::simd::Avx2Kernels<$a>;
            type SimdLanes = $v;
            type Avx2Lanes = $a;

            #[inline(always)]
            fn avx2_kernels(proof: crate::simd::Avx2FmaToken) -> Self::Avx2 {
                crate::simd::Avx2Kernels::new(proof)
            }

            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = $t::INFINITY;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            const EPSILON: Self = $t::EPSILON;
            const MIN_POSITIVE: Self = $t::MIN_POSITIVE;
            const NAME: &'static str = stringify!($t);

            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                $t::ln_1p(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
impl_float!(f32, wide::f32x8, crate::simd::Avx2F32x8);
#[cfg(target_arch = "x86_64")]
impl_float!(f64, wide::f64x4, crate::simd::Avx2F64x4);
#[cfg(not(target_arch = "x86_64"))]
impl_float!(f32, wide::f32x8, wide::f32x8);
#[cfg(not(target_arch = "x86_64"))]
impl_float!(f64, wide::f64x4, wide::f64x4);
