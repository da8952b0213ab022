//! RTP receive statistics for one direction of one stream: RFC 3550 sequence tracking
//! (appendix A.1, extended highest sequence, loss = expected − received) and interarrival
//! jitter (§6.4.1, appendix A.8). Pure: bytes and arrival times in, counters out; no I/O,
//! no clock (the caller passes `now`).

use std::time::{Duration, Instant};

/// The fixed RTP header length (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// A sequence jump larger than this (forwards) is a source restart, not loss (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// A sequence this far behind the highest one is a late packet, not a restart (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;
/// The default clock rate: 8 kHz covers G.711, G.729 and (by its RTP clock) G.722.
pub const DEFAULT_CLOCK_RATE: u32 = 8000;

/// The fields of an RTP header the counters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// The payload of an RTP packet: after the CSRCs and the header extension, without padding.
pub fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    let b0 = *packet.first()?;
    let mut start = RTP_HEADER_LEN + 4 * (b0 & 0x0F) as usize;
    if b0 & 0x10 != 0 {
        let ext = packet.get(start..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = packet.len();
    if b0 & 0x20 != 0 {
        let pad = *packet.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    packet.get(start..end)
}

impl RtpHeader {
    /// Parses the first 12 bytes of an RTP packet; `None` for anything that is not RTP version
    /// 2 or is RTCP multiplexed on the RTP port (RFC 5761 §4: second octet 192..=223).
    #[inline]
    pub fn parse(bytes: &[u8]) -> Option<RtpHeader> {
        let h: &[u8; RTP_HEADER_LEN] = bytes.get(..RTP_HEADER_LEN)?.try_into().ok()?;
        if h[0] >> 6 != 2 || (192..=223).contains(&h[1]) {
            return None;
        }
        Some(RtpHeader {
            payload_type: h[1] & 0x7f,
            sequence: u16::from_be_bytes([h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        })
    }
}

/// Sequence and jitter state of one received RTP flow (one SSRC at a time: a new SSRC
/// restarts the counting, as after a re-INVITE to another codec or phone).
#[derive(Debug, Clone, Default)]
pub struct RtpCounters {
    started: bool,
    ssrc: u32,
    /// Sequence numbers seen at the current SSRC's start, the highest, and its wrap count.
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    /// A candidate restart sequence (RFC 3550 A.1 `bad_seq`), `None` when none pending.
    bad_seq: Option<u16>,
    /// Packets counted since the current SSRC's start.
    received: u64,
    /// Loss accumulated from earlier SSRCs (or restarts), so `lost` never goes backwards.
    lost_before: u64,
    /// Previous arrival and RTP timestamp, for the transit difference.
    last_arrival: Option<(Instant, u32)>,
    /// Jitter in timestamp units, scaled by 16 as in RFC 3550 A.8.
    jitter_q4: u64,
}

impl RtpCounters {
    /// Counts one RTP packet that arrived at `now`, with the stream's clock rate in Hz.
    #[inline]
    pub fn record(&mut self, header: &RtpHeader, now: Instant, clock_rate: u32) {
        if !self.started || header.ssrc != self.ssrc {
            self.restart(header);
            self.last_arrival = Some((now, header.timestamp));
            return;
        }
        let seq = header.sequence;
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            // A duplicate: counted neither as received nor as lost.
            return;
        } else if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A very large jump: a restart if the next packet follows it, else a stray.
            if self.bad_seq == Some(seq) {
                self.restart(header);
                self.last_arrival = Some((now, header.timestamp));
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
            }
            return;
        }
        // else: a late (reordered) packet: counted, `max_seq` unchanged.
        self.bad_seq = None;
        self.received += 1;
        self.update_jitter(header.timestamp, now, clock_rate);
    }

    fn restart(&mut self, header: &RtpHeader) {
        if self.started {
            self.lost_before += self.lost_current();
        }
        let jitter_q4 = self.jitter_q4;
        *self = RtpCounters {
            started: true,
            ssrc: header.ssrc,
            base_seq: header.sequence,
            max_seq: header.sequence,
            received: 1,
            lost_before: self.lost_before,
            jitter_q4,
            ..RtpCounters::default()
        };
    }

    #[inline]
    fn update_jitter(&mut self, timestamp: u32, now: Instant, clock_rate: u32) {
        if let Some((prev_at, prev_ts)) = self.last_arrival {
            // D(i,j) = (Rj − Ri) − (Sj − Si), both in timestamp units (RFC 3550 §6.4.1).
            let arrival = now.saturating_duration_since(prev_at);
            // (saturating: a long silence times a high clock rate must not overflow)
            let arrival_units =
                (arrival.as_nanos() as u64).saturating_mul(clock_rate as u64) / 1_000_000_000;
            let sent_units = timestamp.wrapping_sub(prev_ts) as i32 as i64;
            let d = (arrival_units as i64 - sent_units).unsigned_abs();
            // J += (|D| − J) / 16, kept scaled by 16 (A.8).
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_arrival = Some((now, timestamp));
    }

    fn lost_current(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let extended_max = ((self.cycles as u64) << 16) + self.max_seq as u64;
        let expected = extended_max - self.base_seq as u64 + 1;
        expected.saturating_sub(self.received)
    }

    /// Packets lost so far (from sequence gaps; duplicates and late packets do not count).
    pub fn lost(&self) -> u64 {
        self.lost_before + self.lost_current()
    }

    /// The interarrival jitter as a duration, for the clock rate of the stream.
    pub fn jitter(&self, clock_rate: u32) -> Duration {
        let units = self.jitter_q4 >> 4;
        Duration::from_nanos(units * 1_000_000_000 / clock_rate.max(1) as u64)
    }
}

/// Does a compound RTCP packet carry a PLI (PSFB FMT 1) or FIR (PSFB FMT 4)?
pub fn rtcp_asks_keyframe(mut b: &[u8]) -> bool {
    while b.len() >= 4 {
        let len = (usize::from(u16::from_be_bytes([b[2], b[3]])) + 1) * 4;
        if len > b.len() {
            return false;
        }
        let (fmt, pt) = (b[0] & 0x1f, b[1]);
        if pt == 206 && (fmt == 1 || fmt == 4) && len >= 12 {
            return true;
        }
        b = &b[len..];
    }
    false
}

/// An RTCP PLI (RFC 4585 §6.3.1) from `sender` about `media`.
pub fn pli(sender: u32, media: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = 0x81;
    p[1] = 206;
    p[3] = 2;
    p[4..8].copy_from_slice(&sender.to_be_bytes());
    p[8..12].copy_from_slice(&media.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, ssrc: u32) -> [u8; 172] {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn feed(c: &mut RtpCounters, seqs: &[u16], start: Instant) {
        for (i, &s) in seqs.iter().enumerate() {
            let h = RtpHeader::parse(&packet(s, s as u32 * 160, 7)).unwrap();
            c.record(&h, start + Duration::from_millis(20 * i as u64), 8000);
        }
    }

    #[test]
    fn parses_rtp_and_rejects_rtcp_and_garbage() {
        let h = RtpHeader::parse(&packet(5, 800, 9)).unwrap();
        assert_eq!(
            (h.sequence, h.timestamp, h.ssrc, h.payload_type),
            (5, 800, 9, 0)
        );
        let mut rtcp = packet(0, 0, 0);
        rtcp[1] = 200;
        assert!(RtpHeader::parse(&rtcp).is_none());
        assert!(RtpHeader::parse(b"hello world!").is_none());
        assert!(RtpHeader::parse(&[0x80; 11]).is_none());
    }

    #[test]
    fn gaps_count_as_loss_and_wraps_do_not() {
        let mut c = RtpCounters::default();
        feed(
            &mut c,
            &[65533, 65534, 65535, 0, 1, 3, 4, 7],
            Instant::now(),
        );
        assert_eq!(c.lost(), 3); // 2, 5, 6
    }

    #[test]
    fn duplicates_and_late_packets_are_not_loss() {
        let mut c = RtpCounters::default();
        feed(&mut c, &[10, 11, 13, 12, 13, 14], Instant::now());
        assert_eq!(c.lost(), 0);
    }

    #[test]
    fn a_restart_keeps_earlier_loss() {
        let mut c = RtpCounters::default();
        feed(&mut c, &[1, 2, 4, 40000, 40001, 40002], Instant::now());
        assert_eq!(c.lost(), 1);
    }

    #[test]
    fn steady_packets_have_no_jitter_and_uneven_ones_do() {
        let t0 = Instant::now();
        let mut c = RtpCounters::default();
        feed(&mut c, &(0..100).collect::<Vec<_>>(), t0);
        assert_eq!(c.jitter(8000), Duration::ZERO);
        let mut c = RtpCounters::default();
        for i in 0..200u16 {
            let h = RtpHeader::parse(&packet(i, i as u32 * 160, 7)).unwrap();
            // Alternately 5 ms early and on time: |D| = 40 units (5 ms) for every packet.
            let skew = if i % 2 == 0 { 0 } else { 5 };
            c.record(&h, t0 + Duration::from_millis(20 * i as u64 - skew), 8000);
        }
        let j = c.jitter(8000).as_secs_f64() * 1000.0;
        assert!((4.5..=5.0).contains(&j), "jitter {j} ms");
    }

    #[test]
    fn a_long_silence_at_a_high_clock_rate_does_not_overflow() {
        // 5 s at u32::MAX Hz overflowed u64 before (a panic in debug builds).
        let t0 = Instant::now();
        let mut c = RtpCounters::default();
        for (i, at) in [0u64, 5, 10].iter().enumerate() {
            let h = RtpHeader::parse(&packet(i as u16, i as u32, 7)).unwrap();
            c.record(&h, t0 + Duration::from_secs(*at), u32::MAX);
        }
        assert!(c.jitter(u32::MAX) > Duration::ZERO);
    }
}
