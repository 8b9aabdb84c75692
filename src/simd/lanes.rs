//! Array lanes: a vector of `N` floats as a plain aligned array whose every operation is a loop over
//! the lanes, for the runtime-dispatched paths.
//!
//! Why not `wide` there: `wide` chooses its instructions with `cfg(target_feature)` at compile time,
//! so in a default x86-64 build its `f32x8` is two SSE halves even inside a function compiled with
//! `#[target_feature(enable = "avx2,fma")]`. A loop over an array has no such commitment: inlined
//! into such a function, LLVM turns each loop into one AVX2 instruction (checked in the generated
//! code: `vfmadd...ps ymm`, `vmaxps ymm`, `vblendvps ymm`). Outside such a function the same code is
//! correct but slow (`mul_add` becomes a library call), so these types are only used by
//! [`crate::loss`] inside its `avx2,fma` clones, where the CPU was checked at run time.

use super::math::{exp_f32_lane, exp_f64_lane, ln_f32_lane, ln_f64_lane};
use super::vector::Lanes;
use core::ops::{Add, Mul, Sub};

macro_rules! array_lanes {
    ($name:ident, $f:ident, $n:expr, $align:expr, $exp:ident, $ln:ident, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        #[repr(C, align($align))]
        pub struct $name(pub [$f; $n]);

        impl $name {
            #[inline(always)]
            fn map(self, f: impl Fn($f) -> $f) -> Self {
                let mut o = [0.0; $n];
                for i in 0..$n {
                    o[i] = f(self.0[i]);
                }
                $name(o)
            }
            #[inline(always)]
            fn zip(self, b: Self, f: impl Fn($f, $f) -> $f) -> Self {
                let mut o = [0.0; $n];
                for i in 0..$n {
                    o[i] = f(self.0[i], b.0[i]);
                }
                $name(o)
            }
        }

        impl Add for $name {
            type Output = Self;
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                self.zip(b, |x, y| x + y)
            }
        }
        impl Sub for $name {
            type Output = Self;
            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                self.zip(b, |x, y| x - y)
            }
        }
        impl Mul for $name {
            type Output = Self;
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                self.zip(b, |x, y| x * y)
            }
        }

        impl Lanes<$f> for $name {
            const N: usize = $n;
            #[inline(always)]
            fn splat(x: $f) -> Self {
                $name([x; $n])
            }
            #[inline(always)]
            fn load_or(src: &[$f], fill: $f) -> Self {
                let mut a = [fill; $n];
                for (d, &s) in a.iter_mut().zip(src) {
                    *d = s;
                }
                $name(a)
            }
            #[inline(always)]
            fn load(src: &[$f]) -> Self {
                $name(src[..$n].try_into().expect("caller passes at least N elements"))
            }
            #[inline(always)]
            fn store(self, dst: &mut [$f]) {
                for (d, &s) in dst.iter_mut().zip(&self.0) {
                    *d = s;
                }
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                // `maxps` semantics (no NaN reaches the lattice): one instruction, unlike `f32::max`.
                self.zip(o, |x, y| if x > y { x } else { y })
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                self.zip(o, |x, y| if x < y { x } else { y })
            }
            #[inline(always)]
            fn exp(self) -> Self {
                self.map($exp)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                self.map($ln)
            }
            #[inline(always)]
            fn neg_inf_where_neg_inf(self, mask_src: Self) -> Self {
                self.zip(mask_src, |x, m| if m == $f::NEG_INFINITY { m } else { x })
            }
            #[inline(always)]
            fn reduce_max(self) -> $f {
                self.0.into_iter().fold($f::NEG_INFINITY, |m, x| if x > m { x } else { m })
            }
            #[inline(always)]
            fn reduce_add(self) -> $f {
                // Pairwise, as the vector instructions would do it.
                let mut a = self.0;
                let mut w = $n / 2;
                while w > 0 {
                    for i in 0..w {
                        a[i] += a[i + w];
                    }
                    w /= 2;
                }
                a[0]
            }
            #[inline(always)]
            fn any_invalid(self) -> bool {
                self.0.into_iter().fold(false, |bad, x| bad | x.is_nan() | (x == $f::INFINITY))
            }
        }
    };
}

array_lanes!(ArrayF32x8, f32, 8, 32, exp_f32_lane, ln_f32_lane, "Eight `f32` lanes (one AVX2 register).");
array_lanes!(ArrayF64x4, f64, 4, 32, exp_f64_lane, ln_f64_lane, "Four `f64` lanes (one AVX2 register).");
