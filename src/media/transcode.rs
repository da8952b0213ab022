//! Transcoding for a call whose two legs share no codec (an Opus-only softphone calling a
//! G.711 desk phone): one [`Transcoder`] per direction of the call's audio stream, run by the
//! forwarding thread on each packet of that stream (sans-IO: RTP in, RTP out, no clock).
//!
//! Every packet is decoded to 8 kHz PCM (G.711, G.722's lower sub-band, Opus at 8 kHz:
//! the codecs of [`crate::media::mixer`]), queued, and re-encoded in 20 ms frames for the
//! other leg with our own sequence numbers and timestamps (the other codec's clock), the
//! sender's SSRC and marker bit kept. No jitter buffer: packets go on as they come, and the
//! receiving phone's own jitter buffer evens them out. RFC 4733 events cross when both legs
//! negotiated them: their payload type becomes the other leg's, their timestamp the next
//! frame's on our timeline, their duration the other clock's. Anything else on the stream
//! (comfort noise, unknown payload types) is dropped. The signalling core decides when
//! (docs/decisions.md, "Transcoding").

use std::collections::VecDeque;

use super::mixer::g711::Law;
use super::mixer::g722::G722;
use super::mixer::{opus, FRAME_SAMPLES};
use super::rtp::{rtp_payload, RtpHeader, RTP_HEADER_LEN};

/// The codecs the transcoder speaks: the mixer's.
pub use super::mixer::Codec;

/// A codec and the payload type a leg uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSpec {
    pub codec: Codec,
    pub pt: u8,
    /// Its RFC 4733 telephone-events, if negotiated: (payload type, RTP clock).
    pub dtmf: Option<(u8, u32)>,
}

/// Samples queued at most (200 ms): a sender far ahead of its clock loses the oldest.
const MAX_QUEUED: usize = 1600;

enum Decoder {
    G711(Law),
    G722(Box<G722>),
    Opus(Box<opus::Decoder>),
}

enum Encoder {
    G711(Law),
    G722(Box<G722>),
    Opus(Box<opus::Encoder>),
}

/// One direction of a transcoded stream.
pub struct Transcoder {
    from: CodecSpec,
    to: CodecSpec,
    decoder: Decoder,
    encoder: Encoder,
    queue: VecDeque<i16>,
    /// Our RTP toward the other leg; the sequence numbers go on from the sender's first
    /// packet (`None` before it).
    seq: Option<u16>,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    /// An event packet waiting to go out (before any audio), and its length.
    event: Option<([u8; RTP_HEADER_LEN + 16], usize)>,
    /// The input timestamp of the event being relayed, and the timestamp it has on our side.
    event_ts: Option<(u32, u32)>,
    /// Packets transcoded, and packets dropped (not the audio payload type, undecodable).
    pub packets: u64,
    pub dropped: u64,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    /// A transcoder from `from` to `to`; `seed` starts our timestamps.
    pub fn new(from: CodecSpec, to: CodecSpec, seed: u32) -> Transcoder {
        let decoder = match from.codec {
            Codec::G711(law) => Decoder::G711(law),
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Opus => Decoder::Opus(opus::Decoder::new()),
        };
        let encoder = match to.codec {
            Codec::G711(law) => Encoder::G711(law),
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Opus => Encoder::Opus(opus::Encoder::new()),
        };
        Transcoder {
            from,
            to,
            decoder,
            encoder,
            queue: VecDeque::with_capacity(MAX_QUEUED + opus::MAX_PACKET_SAMPLES),
            seq: None,
            timestamp: seed.rotate_left(11),
            ssrc: 0,
            marker: false,
            event: None,
            event_ts: None,
            packets: 0,
            dropped: 0,
        }
    }

    /// An RTP packet from the sending leg: decoded and queued (false: dropped). Take what it
    /// gives with [`Transcoder::pop`].
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let (Some(h), Some(payload)) = (RtpHeader::parse(packet), rtp_payload(packet)) else {
            self.dropped += 1;
            return false;
        };
        if let (Some((pt, clock)), Some((to_pt, to_clock))) = (self.from.dtmf, self.to.dtmf) {
            if h.payload_type == pt && payload.len() >= 4 && payload.len() <= 16 {
                return self.push_event(packet, &h, payload, (clock, to_pt, to_clock));
            }
        }
        if h.payload_type != self.from.pt || payload.is_empty() {
            self.dropped += 1;
            return false;
        }
        self.ssrc = h.ssrc;
        self.start_seq(h.sequence);
        self.marker |= packet[1] & 0x80 != 0;
        match &mut self.decoder {
            Decoder::G711(law) => self.queue.extend(payload.iter().map(|b| law.decode(*b))),
            Decoder::G722(g) => {
                for chunk in payload.chunks_exact(FRAME_SAMPLES) {
                    let mut pcm = [0i16; FRAME_SAMPLES];
                    let coded: &[u8; FRAME_SAMPLES] = chunk.try_into().expect("a whole chunk");
                    g.decode(coded, &mut pcm);
                    self.queue.extend(pcm);
                }
            }
            Decoder::Opus(dec) => match dec.decode(payload) {
                Some(pcm) => self.queue.extend(pcm),
                None => {
                    self.dropped += 1;
                    return false;
                }
            },
        }
        while self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
        }
        self.packets += 1;
        true
    }

    /// The sender's first packet starts our sequence numbers where its own are, so a
    /// receiver that got its packets before the transcoder was set up (the first
    /// milliseconds of the call) sees one stream, not a jump it would drop as invalid.
    fn start_seq(&mut self, seq: u16) {
        self.seq.get_or_insert(seq);
    }

    fn next_seq(&mut self) -> u16 {
        let seq = self.seq.unwrap_or(0);
        self.seq = Some(seq.wrapping_add(1));
        seq
    }

    /// An RFC 4733 event packet: queued for the other leg with its payload type, our
    /// timeline's timestamp (one per event) and its duration on the other clock.
    fn push_event(
        &mut self,
        packet: &[u8],
        h: &RtpHeader,
        payload: &[u8],
        (clock, to_pt, to_clock): (u32, u8, u32),
    ) -> bool {
        self.start_seq(h.sequence);
        let ts = match self.event_ts {
            Some((input, ours)) if input == h.timestamp => ours,
            _ => {
                self.event_ts = Some((h.timestamp, self.timestamp));
                self.timestamp
            }
        };
        let mut p = [0u8; RTP_HEADER_LEN + 16];
        p[0] = 0x80;
        p[1] = to_pt | (packet[1] & 0x80);
        p[2..4].copy_from_slice(&self.next_seq().to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
        let body = &mut p[RTP_HEADER_LEN..RTP_HEADER_LEN + payload.len()];
        body.copy_from_slice(payload);
        let duration = u64::from(u16::from_be_bytes([payload[2], payload[3]]));
        let scaled = (duration * u64::from(to_clock) / u64::from(clock.max(1))).min(0xffff) as u16;
        body[2..4].copy_from_slice(&scaled.to_be_bytes());
        self.event = Some((p, RTP_HEADER_LEN + payload.len()));
        self.packets += 1;
        true
    }

    /// The next packet for the other leg (an event first, then 20 ms of audio), written into
    /// `out` (at least [`MAX_PACKET`] bytes); its length, or `None` until 20 ms are queued.
    pub fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        if out.len() < MAX_PACKET {
            return None;
        }
        if let Some((p, n)) = self.event.take() {
            out[..n].copy_from_slice(&p[..n]);
            return Some(n);
        }
        if self.queue.len() < FRAME_SAMPLES {
            return None;
        }
        let mut pcm = [0i32; FRAME_SAMPLES];
        for (p, s) in pcm.iter_mut().zip(self.queue.drain(..FRAME_SAMPLES)) {
            *p = i32::from(s);
        }
        let (head, body) = out.split_at_mut(RTP_HEADER_LEN);
        let len = match &mut self.encoder {
            Encoder::G711(law) => {
                law.encode_frame(&pcm, &mut body[..FRAME_SAMPLES]);
                FRAME_SAMPLES
            }
            Encoder::G722(g) => {
                let coded: &mut [u8; FRAME_SAMPLES] = (&mut body[..FRAME_SAMPLES])
                    .try_into()
                    .expect("room for a frame");
                g.encode(&pcm, coded);
                FRAME_SAMPLES
            }
            Encoder::Opus(enc) => {
                let mut coded = [0u8; opus::MAX_OUT];
                let n = enc.encode(&pcm, &mut coded);
                body[..n].copy_from_slice(&coded[..n]);
                n
            }
        };
        if len == 0 {
            return None;
        }
        head[0] = 0x80;
        head[1] = self.to.pt
            | if std::mem::take(&mut self.marker) {
                0x80
            } else {
                0
            };
        head[2..4].copy_from_slice(&self.next_seq().to_be_bytes());
        head[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        head[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.timestamp = self.timestamp.wrapping_add(self.to.codec.frame_clock());
        Some(RTP_HEADER_LEN + len)
    }
}

/// Room a transcoded packet needs.
pub const MAX_PACKET: usize = RTP_HEADER_LEN + opus::MAX_OUT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mixer::testutil::power as goertzel;

    /// 20 ms of a tone at `hz` as a G.711 μ-law RTP packet, frame `n`.
    fn ulaw_packet(n: u32, hz: f64) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&(n as u16).to_be_bytes());
        p.extend_from_slice(&(n * 160).to_be_bytes());
        p.extend_from_slice(&0xabcdu32.to_be_bytes());
        for i in 0..160 {
            let t = f64::from(n * 160 + i) / 8000.0;
            p.push(Law::Mu.encode((5000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16));
        }
        p
    }

    #[test]
    fn a_tone_crosses_from_g711_to_opus_and_back() {
        let pcmu = CodecSpec {
            codec: Codec::G711(Law::Mu),
            pt: 0,
            dtmf: None,
        };
        let opus = CodecSpec {
            codec: Codec::Opus,
            pt: 111,
            dtmf: None,
        };
        let mut there = Transcoder::new(pcmu, opus, 7);
        let mut back = Transcoder::new(opus, pcmu, 9);
        let mut heard = Vec::new();
        let mut out = [0u8; MAX_PACKET];
        let mut back_out = [0u8; MAX_PACKET];
        let mut last_ts = None;
        for n in 0..60 {
            assert!(there.push(&ulaw_packet(n, 600.0)));
            let len = there.pop(&mut out).expect("20 ms in, 20 ms out");
            let h = RtpHeader::parse(&out[..len]).unwrap();
            assert_eq!((h.payload_type, h.ssrc), (111, 0xabcd));
            assert_eq!(h.sequence, n as u16, "the sender's sequence numbers go on");
            if let Some(ts) = last_ts {
                assert_eq!(h.timestamp.wrapping_sub(ts), 960, "Opus's 48 kHz clock");
            }
            last_ts = Some(h.timestamp);
            assert!(there.pop(&mut out).is_none(), "one packet per packet");
            assert!(back.push(&out[..len]));
            let blen = back.pop(&mut back_out).unwrap();
            assert_eq!(blen, 12 + 160);
            if n >= 15 {
                heard.extend(back_out[12..blen].iter().map(|b| Law::Mu.decode(*b)));
            }
        }
        assert!(goertzel(&heard, 600.0) > 1e6, "{}", goertzel(&heard, 600.0));
        assert!(goertzel(&heard, 600.0) > 100.0 * goertzel(&heard, 1500.0));
        // Events and garbage are dropped, not passed on.
        let mut event = ulaw_packet(99, 0.0);
        event[1] = 101;
        assert!(!there.push(&event));
        assert!(!there.push(b"not rtp"));
        assert_eq!(there.dropped, 2);
        // An Opus payload of garbage: refused or concealed, never a panic.
        let mut bad = ulaw_packet(100, 0.0);
        bad[1] = 111;
        bad.truncate(16);
        bad[12..].copy_from_slice(&[0xff; 4]);
        let _ = back.push(&bad);
        let _ = back.pop(&mut back_out);
    }

    #[test]
    fn thirty_millisecond_packets_come_out_in_twenty() {
        let pcmu = CodecSpec {
            codec: Codec::G711(Law::Mu),
            pt: 0,
            dtmf: None,
        };
        let g722 = CodecSpec {
            codec: Codec::G722,
            pt: 9,
            dtmf: None,
        };
        let mut t = Transcoder::new(pcmu, g722, 1);
        let mut out = [0u8; MAX_PACKET];
        let mut packets = 0;
        for n in 0..20u32 {
            // 240 samples a packet.
            let mut p = ulaw_packet(n, 400.0);
            p.extend(ulaw_packet(n, 400.0)[12..92].iter());
            t.push(&p);
            while let Some(len) = t.pop(&mut out) {
                assert_eq!(len, 12 + 160);
                packets += 1;
            }
        }
        assert_eq!(packets, 20 * 240 / 160);
    }

    #[test]
    fn dtmf_events_cross_with_the_other_legs_payload_type_and_clock() {
        let opus = CodecSpec {
            codec: Codec::Opus,
            pt: 111,
            dtmf: Some((126, 48000)),
        };
        let pcmu = CodecSpec {
            codec: Codec::G711(Law::Mu),
            pt: 0,
            dtmf: Some((101, 8000)),
        };
        let mut t = Transcoder::new(opus, pcmu, 5);
        let mut out = [0u8; MAX_PACKET];
        // Digit 5 (three packets of one event, durations 960/1920/2880 at 48 kHz, the last
        // with E), then digit 9 (a new event timestamp).
        let mut firsts = Vec::new();
        for (k, (digit, ts, dur)) in [
            (5u8, 48000u32, 960u16),
            (5, 48000, 1920),
            (5, 48000, 2880),
            (9, 96000, 960),
        ]
        .into_iter()
        .enumerate()
        {
            let mut p = vec![0x80, 126];
            p.extend_from_slice(&(k as u16).to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&0x99u32.to_be_bytes());
            p.extend_from_slice(&[digit, if k == 2 { 0x8a } else { 0x0a }]);
            p.extend_from_slice(&dur.to_be_bytes());
            assert!(t.push(&p));
            let n = t.pop(&mut out).expect("the event goes on at once");
            let h = RtpHeader::parse(&out[..n]).unwrap();
            assert_eq!((h.payload_type, out[12]), (101, digit));
            assert_eq!(
                u16::from_be_bytes([out[14], out[15]]),
                dur / 6,
                "8 kHz units"
            );
            assert_eq!(out[13], if k == 2 { 0x8a } else { 0x0a });
            firsts.push(h.timestamp);
            assert!(t.pop(&mut out).is_none());
        }
        assert!(
            firsts[0] == firsts[1] && firsts[1] == firsts[2],
            "one timestamp per event"
        );
        // Without events on the other leg they are dropped, as before.
        let mut plain = Transcoder::new(opus, CodecSpec { dtmf: None, ..pcmu }, 5);
        let mut p = vec![0x80, 126, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 5, 0x0a, 0, 160];
        assert!(!plain.push(&p));
        p[1] = 0; // and garbage stays garbage
        assert!(!plain.push(&p[..8]));
    }
}
