//! G.722 for the mixer (RFC 3551: payload type 9, an RTP clock of 8000 although it samples at
//! 16 kHz, 160 bytes per 20 ms). The room mixes at 8 kHz, so a G.722 participant is decoded
//! to its lower sub-band only (0–4 kHz at 8 kHz: the codec's own QMF split, no resampling)
//! and the mix is encoded from 8 kHz doubled to 16 kHz by linear interpolation. ADPCM keeps
//! state from frame to frame, so each G.722 participant has its own decoder and encoder and
//! is decoded every frame (its loudness comes from the decoded samples) and encoded every
//! frame (one shared encoding for listeners would give each a stream its decoder had not
//! followed). The codec is the `audio-codec` crate's (a port of the ITU-T reference).

use audio_codec::g722::{Bitrate, G722Decoder, G722Encoder};
use audio_codec::{Decoder, Encoder};

use super::g711::saturate;
use super::FRAME_SAMPLES;

/// The byte a missing frame is filled with in the jitter buffer: a frame made only of it is
/// taken for a lost one (silence, the decoder's state left as it was). A real G.722 frame of
/// 160 equal codes does not occur.
pub const MISSING: u8 = 0x00;

/// One participant's G.722 state.
pub struct G722 {
    decoder: G722Decoder,
    encoder: G722Encoder,
    wide: [i16; 2 * FRAME_SAMPLES],
    /// The last sample of the previous frame, for the interpolation across frames.
    last: i16,
}

impl std::fmt::Debug for G722 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G722")
    }
}

impl Default for G722 {
    fn default() -> Self {
        G722 {
            // (rate, packed, eight_k): the lower sub-band at 8 kHz out.
            decoder: G722Decoder::with_options(Bitrate::Mode1_64000, false, true),
            encoder: G722Encoder::new(),
            wide: [0; 2 * FRAME_SAMPLES],
            last: 0,
        }
    }
}

impl G722 {
    /// Decodes one frame to 8 kHz; a missing frame is silence.
    pub fn decode(&mut self, coded: &[u8; FRAME_SAMPLES], out: &mut [i16; FRAME_SAMPLES]) {
        if coded.iter().all(|b| *b == MISSING) {
            out.fill(0);
            return;
        }
        match self.decoder.decode_into(coded, out) {
            Ok(n) if n == FRAME_SAMPLES => {}
            _ => out.fill(0),
        }
    }

    /// Encodes one 8 kHz frame (sums, saturated here) as 160 bytes of G.722.
    pub fn encode(&mut self, pcm: &[i32; FRAME_SAMPLES], out: &mut [u8; FRAME_SAMPLES]) {
        let mut prev = self.last;
        for (i, s) in pcm.iter().enumerate() {
            let s = saturate(*s);
            self.wide[2 * i] = ((i32::from(prev) + i32::from(s)) / 2) as i16;
            self.wide[2 * i + 1] = s;
            prev = s;
        }
        self.last = prev;
        if !matches!(self.encoder.encode_into(&self.wide, out), Ok(n) if n == FRAME_SAMPLES) {
            out.fill(MISSING);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mixer::testutil::{power, tone};

    #[test]
    fn a_tone_survives_the_round_trip_through_g722_at_8_khz() {
        let (mut a, mut b) = (G722::default(), G722::default());
        let mut heard = Vec::new();
        for k in 0..50 {
            let mut coded = [0u8; FRAME_SAMPLES];
            a.encode(&tone(700.0, k), &mut coded);
            let mut pcm = [0i16; FRAME_SAMPLES];
            b.decode(&coded, &mut pcm);
            if k >= 10 {
                heard.extend_from_slice(&pcm);
            }
        }
        let rms =
            (heard.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / heard.len() as f64).sqrt();
        assert!(
            (3500.0..5000.0).contains(&rms),
            "rms {rms} of a 6000-peak tone"
        );
        assert!(power(&heard, 700.0) > 100.0 * power(&heard, 1900.0));
        // A lost frame is silence.
        let mut pcm = [1i16; FRAME_SAMPLES];
        b.decode(&[MISSING; FRAME_SAMPLES], &mut pcm);
        assert!(pcm.iter().all(|s| *s == 0));
    }
}
