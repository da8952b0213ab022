//! What the codec tests share: a test tone and the Goertzel filter (the energy at one
//! frequency), at 8 kHz.

use super::FRAME_SAMPLES;

/// Frame `frame` of a 6000-peak sine at `hz`, as the mixer's sums.
pub fn tone(hz: f64, frame: usize) -> [i32; FRAME_SAMPLES] {
    let mut f = [0i32; FRAME_SAMPLES];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (frame * FRAME_SAMPLES + i) as f64 / 8000.0;
        *s = (6000.0 * (std::f64::consts::TAU * hz * t).sin()) as i32;
    }
    f
}

/// Power at `hz` in 8 kHz `samples`, normalised by length.
pub fn power(samples: &[i16], hz: f64) -> f64 {
    let c = 2.0 * (std::f64::consts::TAU * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}
