//! Opus for the mixer (RFC 7587: `opus/48000/2`, an RTP clock of 48 kHz whatever the audio's
//! bandwidth). The room mixes at 8 kHz, so an Opus participant is decoded to 8 kHz mono (the
//! decoder's own resampling: any Opus packet decodes at any of its rates) and the mix is
//! encoded as narrowband Opus (SILK at 8 kHz, which every Opus decoder plays).
//!
//! Opus packets have no fixed size, so they cannot sit coded in the byte ring of G.711:
//! each one is decoded **when it arrives** (in arrival order: the decoder's state follows
//! the stream) and its samples go into a PCM [`Playout`] placed by timestamp, which is then
//! played like any other participant's, with packets of 10, 20, 40 or 60 ms alike. A packet
//! that is lost is silence after the decoder's concealment of the gap it noticed (a sequence
//! jump, concealed by the decoder for up to [`MAX_CONCEAL`] samples).
//!
//! Encoding: a talker hears the mix without itself, so it has its own encoder; everyone
//! else hears the one shared encoding of the room's mix ([`Mixer`](super::Mixer) keeps that
//! encoder). A participant that moves between the two streams gives its decoder a stream it
//! had not followed for one frame: Opus decoders take that (each packet is self-describing;
//! the prediction settles within a frame), as FreeSWITCH's and Asterisk's shared encodings
//! rely on. The codec is the `opus-rs` crate (a pure-Rust port of libopus 1.6; the tests
//! with baresip's libopus prove the interop).

use std::time::Duration;

use opus_rs::{Application, OpusDecoder, OpusEncoder};

use super::g711::saturate;
use super::jitter::Playout;
use super::FRAME_SAMPLES;

/// Opus's RTP clock per 8 kHz sample.
const CLOCK_RATIO: u32 = 6;
/// The longest packet decoded: 120 ms at 8 kHz.
pub const MAX_PACKET_SAMPLES: usize = 960;
/// A lost stretch longer than this (80 ms) is not concealed: silence.
const MAX_CONCEAL: usize = 640;
/// The largest Opus packet we send (narrowband at our bitrate needs far less).
pub const MAX_OUT: usize = 400;
/// Our encoders' bitrate: narrowband speech (libopus's own pick for 8 kHz VoIP is ~16–20k).
const BITRATE: i32 = 20_000;
/// Encoder complexity (0–10): 4, Janus AudioBridge's default (its `quality`), about half of
/// libopus's default cost for no audible loss in narrowband speech. Measured in
/// `benches/mixer.rs`.
pub const COMPLEXITY: i32 = 4;

/// An encoder for 20 ms frames of the 8 kHz mix.
pub struct Encoder {
    enc: OpusEncoder,
    pcm: [i16; FRAME_SAMPLES],
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("opus::Encoder")
    }
}

impl Encoder {
    pub fn new() -> Box<Encoder> {
        let mut enc =
            OpusEncoder::new(8000, 1, Application::Voip).expect("8 kHz mono is a valid Opus");
        enc.bitrate_bps = BITRATE;
        enc.complexity = COMPLEXITY;
        enc.use_cbr = false;
        Box::new(Encoder {
            enc,
            pcm: [0; FRAME_SAMPLES],
        })
    }

    /// Encodes one frame of sums (saturated here); the packet's length, 0 if the encoder
    /// failed (nothing is sent then).
    pub fn encode(&mut self, mix: &[i32; FRAME_SAMPLES], out: &mut [u8; MAX_OUT]) -> usize {
        for (o, s) in self.pcm.iter_mut().zip(mix) {
            *o = saturate(*s);
        }
        self.enc
            .encode_i16(&self.pcm, FRAME_SAMPLES, out)
            .unwrap_or(0)
    }
}

/// An Opus decoder to 8 kHz mono PCM (rooms and transcoded calls).
pub struct Decoder {
    dec: OpusDecoder,
    f32s: Box<[f32; MAX_PACKET_SAMPLES]>,
    pcm: Box<[i16; MAX_PACKET_SAMPLES]>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("opus::Decoder")
    }
}

impl Decoder {
    pub fn new() -> Box<Decoder> {
        Box::new(Decoder {
            dec: OpusDecoder::new(8000, 1).expect("8 kHz mono is a valid Opus"),
            f32s: Box::new([0.0; MAX_PACKET_SAMPLES]),
            pcm: Box::new([0; MAX_PACKET_SAMPLES]),
        })
    }

    /// The samples of one packet (at most 120 ms); `None` when the decoder refused it.
    pub fn decode(&mut self, payload: &[u8]) -> Option<&[i16]> {
        let n = match self
            .dec
            .decode(payload, MAX_PACKET_SAMPLES, &mut self.f32s[..])
        {
            Ok(n) if n > 0 && n <= MAX_PACKET_SAMPLES => n,
            _ => return None,
        };
        for (o, s) in self.pcm.iter_mut().zip(&self.f32s[..n]) {
            *o = (s * 32768.0).clamp(-32768.0, 32767.0) as i16;
        }
        Some(&self.pcm[..n])
    }

    /// Runs the decoder's concealment over lost samples (what it plays is not kept: the
    /// point is the decoder's state).
    fn conceal(&mut self, samples: usize) {
        let mut left = samples;
        while left >= FRAME_SAMPLES / 2 {
            let n = left.min(FRAME_SAMPLES);
            if self.dec.decode(&[], n, &mut self.f32s[..n]).is_err() {
                return;
            }
            left -= n;
        }
    }
}

/// One participant's Opus receive side: the decoder, its timestamp mapping, its playout.
pub struct Receiver {
    dec: Box<Decoder>,
    playout: Playout<i16>,
    /// (RTP timestamp at 48 kHz, the same instant at 8 kHz) of the last packet decoded.
    base: Option<(u32, u32)>,
    /// Where the last packet decoded ends, at 8 kHz.
    end8: Option<u32>,
    /// The sequence number expected next.
    next_seq: Option<u16>,
    /// Packets the decoder refused.
    pub refused: u64,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("opus::Receiver")
    }
}

impl Receiver {
    pub fn new(delay: Duration) -> Box<Receiver> {
        Box::new(Receiver {
            dec: Decoder::new(),
            playout: Playout::new(delay, 0),
            base: None,
            end8: None,
            next_seq: None,
            refused: 0,
        })
    }

    /// Decodes a packet and places its samples; false when it was refused or too late.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: &[u8]) -> bool {
        if payload.is_empty() {
            return false;
        }
        let ts8 = match self.base {
            // Relative to the last packet: no wrap of the 48 kHz clock is ever divided.
            Some((ts48, at8)) => {
                at8.wrapping_add((timestamp.wrapping_sub(ts48) as i32 / CLOCK_RATIO as i32) as u32)
            }
            None => timestamp / CLOCK_RATIO,
        };
        // A gap in the sequence: let the decoder conceal it (its state goes on smoothly).
        if let (Some(want), Some(end8)) = (self.next_seq, self.end8) {
            let lost = seq.wrapping_sub(want);
            if (1..8).contains(&lost) {
                let gap = ts8.wrapping_sub(end8) as i32;
                let missing = gap as usize;
                if gap > 0 && missing <= MAX_CONCEAL {
                    // The samples from the last packet's end to this one's start.
                    self.dec.conceal(missing);
                }
            }
        }
        let Some(pcm) = self.dec.decode(payload) else {
            self.refused += 1;
            return false;
        };
        self.next_seq = Some(seq.wrapping_add(1));
        // The next packet's 8 kHz timestamp is measured from this one's.
        self.base = Some((timestamp, ts8));
        self.end8 = Some(ts8.wrapping_add(pcm.len() as u32));
        self.playout.push(seq, ts8, pcm)
    }

    /// The next 20 ms at 8 kHz (silence where nothing arrived).
    pub fn pop(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        self.playout.pop(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mixer::testutil::{power, tone};

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_survives_the_round_trip_through_narrowband_opus() {
        let mut enc = Encoder::new();
        let mut rx = Receiver::new(Duration::from_millis(40));
        let start = u32::MAX - 5 * 960; // the 48 kHz clock wraps on the way
        let mut heard = Vec::new();
        let mut out = [0u8; MAX_OUT];
        for k in 0..60usize {
            let n = enc.encode(&tone(700.0, k), &mut out);
            assert!((2..MAX_OUT).contains(&n), "packet of {n} bytes");
            let ts = start.wrapping_add(960 * k as u32);
            assert!(rx.push(k as u16, ts, &out[..n]));
            let mut pcm = [0i16; FRAME_SAMPLES];
            rx.pop(&mut pcm);
            if k >= 15 {
                heard.extend_from_slice(&pcm);
            }
        }
        let level = rms(&heard);
        assert!(
            (3000.0..5000.0).contains(&level),
            "rms {level} of a 6000-peak tone"
        );
        assert!(power(&heard, 700.0) > 100.0 * power(&heard, 1900.0));
    }

    #[test]
    fn lost_and_garbage_packets_do_not_break_the_stream() {
        let mut enc = Encoder::new();
        let mut rx = Receiver::new(Duration::from_millis(40));
        let mut out = [0u8; MAX_OUT];
        let mut heard = Vec::new();
        for k in 0..80usize {
            let n = enc.encode(&tone(500.0, k), &mut out);
            // Every fifth packet lost, and garbage in between.
            if k % 5 != 3 {
                rx.push(k as u16, 960 * k as u32, &out[..n]);
            }
            rx.push(k as u16, 960 * k as u32 + 7, &[0xFF, 0xFF, 0xFF]);
            let mut pcm = [0i16; FRAME_SAMPLES];
            rx.pop(&mut pcm);
            if k >= 20 {
                heard.extend_from_slice(&pcm);
            }
        }
        assert!(power(&heard, 500.0) > 20.0 * power(&heard, 1500.0));
        assert!(rms(&heard) > 2000.0, "rms {}", rms(&heard));
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Random and mangled packets into the decoder the rooms and the transcoder use: refused
    /// or concealed, never a panic (a room thread must survive any datagram).
    #[test]
    fn random_and_mangled_opus_packets_never_panic() {
        let mut rx = Receiver::new(Duration::from_millis(40));
        let mut enc = Encoder::new();
        let mut good = [0u8; MAX_OUT];
        let n = enc.encode(&super::super::testutil::tone(440.0, 0), &mut good);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut pcm = [0i16; FRAME_SAMPLES];
        for k in 0..6_000u32 {
            let len = (next() % 300) as usize + 1;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if k % 3 == 0 {
                // A real packet with a few bytes flipped (the decoder gets past the TOC).
                p = good[..n].to_vec();
                for _ in 0..3 {
                    let at = (next() as usize) % p.len();
                    p[at] ^= next() as u8;
                }
            }
            rx.push(k as u16, k.wrapping_mul(960), &p);
            rx.pop(&mut pcm);
        }
    }
}
