//! G.711 μ-law and A-law (ITU-T G.711), the codecs every desk phone and browser offers: the
//! conference mixer's decode and encode. Decoding is a 256-entry table built at compile time;
//! encoding is the reference segment search (a `leading_zeros` for μ-law), branch-light and
//! without tables. Pure functions, no state.

/// One of G.711's two companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law (PCMU, RTP payload type 0).
    Mu,
    /// A-law (PCMA, RTP payload type 8).
    A,
}

impl Law {
    /// The byte that decodes to silence (what a missing frame is filled with).
    pub const fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    /// The linear sample of one coded byte.
    #[inline]
    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Mu => ULAW_TO_LINEAR[b as usize],
            Law::A => ALAW_TO_LINEAR[b as usize],
        }
    }

    /// The coded byte of one linear sample.
    #[inline]
    pub fn encode(self, s: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(s),
            Law::A => linear_to_alaw(s),
        }
    }

    /// The magnitude of one coded byte (`|decode(b)|`), for talker detection without
    /// decoding a frame.
    #[inline]
    pub fn magnitude(self, b: u8) -> u16 {
        self.decode(b).unsigned_abs()
    }

    /// Decodes `coded` into `out` (the shorter length of both).
    pub fn decode_frame(self, coded: &[u8], out: &mut [i16]) {
        let table = match self {
            Law::Mu => &ULAW_TO_LINEAR,
            Law::A => &ALAW_TO_LINEAR,
        };
        for (o, b) in out.iter_mut().zip(coded) {
            *o = table[*b as usize];
        }
    }

    /// Encodes `pcm` (saturated to 16 bits) into `out`.
    pub fn encode_frame(self, pcm: &[i32], out: &mut [u8]) {
        match self {
            Law::Mu => {
                for (o, s) in out.iter_mut().zip(pcm) {
                    *o = linear_to_ulaw(saturate(*s));
                }
            }
            Law::A => {
                for (o, s) in out.iter_mut().zip(pcm) {
                    *o = linear_to_alaw(saturate(*s));
                }
            }
        }
    }
}

/// A mixed sample clipped to 16 bits.
#[inline]
pub fn saturate(s: i32) -> i16 {
    s.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// μ-law encoding (G.711 §2, the reference implementation's arithmetic).
#[inline]
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut s = pcm as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // s is in 0x84..=0x7FFF: its highest set bit is 7..=14.
    let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

const fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let s = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -s as i16
    } else {
        s as i16
    }
}

/// A-law encoding (G.711 §3, the reference implementation's segment search).
#[inline]
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut s = (pcm as i32) >> 3; // 13 bits
    let mask = if s >= 0 {
        0xD5
    } else {
        s = -s - 1;
        0x55
    };
    // The segment: the highest set bit of s above bit 4 (segment ends 0x1F, 0x3F, … 0xFFF).
    let seg = if s <= 0x1F {
        0
    } else {
        (32 - (s as u32).leading_zeros()) as i32 - 5
    };
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mantissa = if seg < 2 {
        (s >> 1) & 0x0F
    } else {
        (s >> seg) & 0x0F
    };
    (((seg << 4) | mantissa) ^ mask) as u8
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn table(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            Law::Mu => ulaw_to_linear(i as u8),
            Law::A => alaw_to_linear(i as u8),
        };
        i += 1;
    }
    t
}

static ULAW_TO_LINEAR: [i16; 256] = table(Law::Mu);
static ALAW_TO_LINEAR: [i16; 256] = table(Law::A);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_decode_then_encode() {
        for b in 0..=255u8 {
            assert_eq!(Law::A.encode(Law::A.decode(b)), b, "A-law {b:#x}");
            // μ-law has two zeros (0x7F is −0); encoding 0 gives 0xFF.
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(Law::Mu.encode(Law::Mu.decode(b)), want, "μ-law {b:#x}");
        }
    }

    #[test]
    fn reference_values() {
        // Silence, full scale and known points of the G.711 tables.
        assert_eq!(Law::Mu.decode(0xFF), 0);
        assert_eq!(Law::A.decode(0xD5), 8);
        assert_eq!(Law::Mu.decode(0x80), 32124);
        assert_eq!(Law::Mu.decode(0x00), -32124);
        assert_eq!(Law::A.decode(0xAA), 32256);
        assert_eq!(Law::A.decode(0x2A), -32256);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn quantisation_error_is_within_a_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            for law in [Law::Mu, Law::A] {
                let back = law.decode(law.encode(s)) as i32;
                let err = (back - s as i32).abs();
                // The largest G.711 step is 1024 (μ-law) / 1024 (A-law) at full scale.
                let limit = (s as i32).abs() / 16 + 16;
                assert!(err <= limit.max(24), "{law:?} {s} -> {back}");
            }
        }
    }

    #[test]
    fn saturation_clips() {
        assert_eq!(saturate(40000), i16::MAX);
        assert_eq!(saturate(-40000), i16::MIN);
        assert_eq!(saturate(123), 123);
    }
}
