//! `exp(-q/2)` for the rasterizer's weights, in a form compilers vectorize.
//!
//! `exp(x) = 2^n · 2^f` with `n` the integer nearest to `x·log2 e` and `f` in [-½, ½]. `n` is
//! found by the float trick `(t + 1.5·2^23) − 1.5·2^23` (round to nearest, no float→int
//! conversion, so no saturation checks that would stop vectorization); `2^f` is a degree-5
//! polynomial fitted on [-½, ½] (relative error 2.2e-7 evaluated in binary32); `2^n` is added to
//! the result's exponent bits.

const C0: f32 = 1.000_000_1;
const C1: f32 = 0.693_146_94;
const C2: f32 = 0.240_221_22;
const C3: f32 = 0.055_507_425;
const C4: f32 = 0.009_675_46;
const C5: f32 = 0.001_326_697;
/// 1.5 · 2^23: adding it rounds a small float to an integer held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `exp(-q / 2)` for `0 ≤ q ≤ 9`, relative error below 5e-7 (mostly the rounding of `q·log2 e`). Larger `q` give a finite positive
/// value the caller masks out (the argument is clamped).
#[inline(always)]
pub fn exp_neg_half(q: f32) -> f32 {
    let t = (q * (-0.5 * std::f32::consts::LOG2_E)).max(-12.0);
    let r = t + ROUND;
    let n = r.to_bits() as i32 - ROUND.to_bits() as i32;
    let f = t - (r - ROUND);
    let p = C0 + f * (C1 + f * (C2 + f * (C3 + f * (C4 + f * C5))));
    f32::from_bits((p.to_bits() as i32).wrapping_add(n << 23) as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_to_std_exp_on_the_cutoff_range() {
        let mut worst = 0f64;
        for i in 0..=900_000 {
            let q = i as f32 * 1e-5;
            let want = (-0.5 * q as f64).exp();
            let got = super::exp_neg_half(q) as f64;
            worst = worst.max((got / want - 1.0).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!(super::exp_neg_half(1e30).is_finite());
    }
}
