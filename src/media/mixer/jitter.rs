//! The jitter buffer of one conference participant: samples (coded G.711 or G.722 bytes, or
//! Opus decoded on arrival to 8 kHz PCM) placed by RTP timestamp (of an 8 kHz clock) in a
//! ring of 256 ms and played out one 20 ms frame per tick, a fixed delay behind the
//! first packet. Lost or late samples play as silence; a packet that lands outside the window
//! (a new talk spurt after a long pause, a sender restart, a timestamp jump) starts a new
//! playout point; a buffer that keeps growing (the sender's clock runs fast) drops one frame.
//! Any packet size (10, 20, 30 ms) works, since placement is by sample. Pure: no clock.

use std::time::Duration;

use super::FRAME_SAMPLES;

/// Samples in the ring (a power of two): 256 ms at 8 kHz.
const RING: usize = 2048;
/// Buffered beyond the delay by this much, for this many ticks in a row: drop a frame.
const DRIFT_SLACK: u32 = 2 * FRAME_SAMPLES as u32;
const DRIFT_TICKS: u32 = 50;
/// Late packets in a row that make a new playout point.
const LATE_RESTART: u32 = 3;

/// The playout state of one participant.
pub struct Playout<T: Copy = u8> {
    ring: Box<[T; RING]>,
    silence: T,
    /// Playout delay in samples.
    delay: u32,
    /// The timestamp of the next sample to play; `None` before the first packet.
    play: Option<u32>,
    /// One past the newest sample written.
    newest: u32,
    over: u32,
    /// Packets in a row that came too late.
    late_run: u32,
}

impl<T: Copy> Playout<T> {
    pub fn new(delay: Duration, silence: T) -> Playout<T> {
        let delay = (delay.as_millis() as u32 * 8).clamp(FRAME_SAMPLES as u32, RING as u32 / 2);
        Playout {
            ring: Box::new([silence; RING]),
            silence,
            delay,
            play: None,
            newest: 0,
            over: 0,
            late_run: 0,
        }
    }

    /// Places a packet's payload; false when it was dropped (too late, or did not fit).
    pub fn push(&mut self, _seq: u16, timestamp: u32, payload: &[T]) -> bool {
        if payload.is_empty() || payload.len() > RING / 2 {
            return false;
        }
        let len = payload.len() as u32;
        let play = match self.play {
            Some(p) => p,
            None => self.restart(timestamp),
        };
        let offset = timestamp.wrapping_sub(play) as i32;
        let play = if offset < 0 {
            if offset + (len as i32) <= 0 {
                // Wholly in the past: late. Far in the past, or late again and again (the
                // sender paused without moving its timestamps on, or its clock is behind):
                // a new start at it.
                self.late_run += 1;
                if offset > -(RING as i32) && self.late_run < LATE_RESTART {
                    return false;
                }
                self.restart(timestamp)
            } else {
                play
            }
        } else if offset as usize + payload.len() > RING {
            // Beyond the window: a new start.
            self.restart(timestamp)
        } else {
            play
        };
        self.late_run = 0;
        // Write the part at or after `play`.
        let skip = play.wrapping_sub(timestamp) as i32;
        let skip = skip.clamp(0, len as i32) as usize;
        let ts = timestamp.wrapping_add(skip as u32);
        self.write(ts, &payload[skip..]);
        let end = timestamp.wrapping_add(len);
        if self.newest.wrapping_sub(play) as i32 <= 0 || end.wrapping_sub(self.newest) as i32 > 0 {
            self.newest = end;
        }
        true
    }

    fn restart(&mut self, timestamp: u32) -> u32 {
        self.ring.fill(self.silence);
        let play = timestamp.wrapping_sub(self.delay);
        self.play = Some(play);
        self.newest = timestamp;
        self.over = 0;
        self.late_run = 0;
        play
    }

    fn write(&mut self, ts: u32, bytes: &[T]) {
        let at = ts as usize % RING;
        let first = bytes.len().min(RING - at);
        self.ring[at..at + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
    }

    /// The next frame (silence where nothing arrived), consumed.
    pub fn pop(&mut self, out: &mut [T; FRAME_SAMPLES]) {
        let Some(play) = self.play else {
            out.fill(self.silence);
            return;
        };
        let buffered = self.newest.wrapping_sub(play) as i32;
        let mut play = play;
        if buffered > (self.delay + DRIFT_SLACK) as i32 {
            self.over += 1;
            if self.over >= DRIFT_TICKS {
                // The sender runs fast: drop one frame to come back to the delay.
                self.clear(play, FRAME_SAMPLES);
                play = play.wrapping_add(FRAME_SAMPLES as u32);
                self.over = 0;
            }
        } else {
            self.over = 0;
        }
        let at = play as usize % RING;
        let first = FRAME_SAMPLES.min(RING - at);
        out[..first].copy_from_slice(&self.ring[at..at + first]);
        out[first..].copy_from_slice(&self.ring[..FRAME_SAMPLES - first]);
        self.clear(play, FRAME_SAMPLES);
        self.play = Some(play.wrapping_add(FRAME_SAMPLES as u32));
    }

    fn clear(&mut self, ts: u32, n: usize) {
        let at = ts as usize % RING;
        let first = n.min(RING - at);
        let s = self.silence;
        self.ring[at..at + first].fill(s);
        self.ring[..n - first].fill(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: u8) -> Vec<u8> {
        vec![v; FRAME_SAMPLES]
    }

    /// Pops frames until one is not silence; returns how many silent ones came first.
    fn silent_frames_before(p: &mut Playout<u8>) -> usize {
        let mut out = [0u8; FRAME_SAMPLES];
        for n in 0..100 {
            p.pop(&mut out);
            if out.iter().any(|b| *b != 0xFF) {
                return n;
            }
        }
        panic!("never played");
    }

    #[test]
    fn plays_after_the_delay_in_order_even_when_reordered() {
        let mut p = Playout::new(Duration::from_millis(60), 0xFF);
        p.push(1, 1000, &frame(1));
        p.push(3, 1320, &frame(3));
        p.push(2, 1160, &frame(2));
        assert_eq!(silent_frames_before(&mut p), 3, "60 ms of delay");
        let mut out = [0u8; FRAME_SAMPLES];
        assert!(out.iter().all(|b| *b == 0));
        for want in [2u8, 3] {
            p.pop(&mut out);
            assert!(out.iter().all(|b| *b == want), "{want}: {:?}", &out[..4]);
        }
        p.pop(&mut out);
        assert!(out.iter().all(|b| *b == 0xFF), "nothing more: silence");
    }

    #[test]
    fn late_packets_are_refused_and_a_jump_restarts() {
        let mut p = Playout::new(Duration::from_millis(40), 0xFF);
        assert!(p.push(1, 8000, &frame(1)));
        let mut out = [0u8; FRAME_SAMPLES];
        for _ in 0..4 {
            p.pop(&mut out);
        }
        // Its time has passed.
        assert!(!p.push(0, 7840, &frame(9)));
        // Ten seconds later (a new talk spurt after silence suppression): a new start.
        assert!(p.push(2, 88000, &frame(5)));
        assert_eq!(silent_frames_before(&mut p), 2);
    }

    #[test]
    fn a_sender_that_paused_without_moving_its_timestamps_on_is_followed() {
        let mut p = Playout::new(Duration::from_millis(40), 0xFF);
        let mut out = [0u8; FRAME_SAMPLES];
        p.push(0, 0, &frame(1));
        for _ in 0..3 {
            p.pop(&mut out);
        }
        // 200 ms without packets (within the ring), then the next timestamps: late, twice,
        // then followed. (A longer pause lands outside the ring: an immediate new start.)
        for _ in 0..10 {
            p.pop(&mut out);
        }
        assert!(!p.push(1, 160, &frame(2)));
        assert!(!p.push(2, 320, &frame(3)));
        assert!(p.push(3, 480, &frame(4)), "the third late one restarts");
        assert!(p.push(4, 640, &frame(5)));
        assert_eq!(silent_frames_before(&mut p), 2);
        p.pop(&mut out);
        assert!(out.iter().all(|b| *b == 5));
    }

    #[test]
    fn odd_packet_sizes_and_wrapping_timestamps() {
        let mut p = Playout::new(Duration::from_millis(20), 0xFF);
        let start = u32::MAX - 100;
        // 30 ms packets across the 32-bit wrap.
        for k in 0..4u32 {
            assert!(p.push(
                k as u16,
                start.wrapping_add(240 * k),
                &vec![k as u8 + 1; 240]
            ));
        }
        let mut out = [0u8; FRAME_SAMPLES];
        p.pop(&mut out); // the delay
        let mut got = Vec::new();
        for _ in 0..6 {
            p.pop(&mut out);
            got.extend_from_slice(&out);
        }
        let want: Vec<u8> = (1..=4u8).flat_map(|v| vec![v; 240]).collect();
        assert_eq!(&got[..960], &want[..]);
    }

    #[test]
    fn a_fast_sender_is_brought_back_to_the_delay() {
        let mut p = Playout::new(Duration::from_millis(40), 0xFF);
        let mut out = [0u8; FRAME_SAMPLES];
        let mut ts = 0u32;
        // Two packets per tick for a while: the buffer would grow without bound.
        for i in 0..400u32 {
            for _ in 0..if i % 2 == 0 { 2 } else { 1 } {
                p.push(0, ts, &frame(7));
                ts = ts.wrapping_add(160);
            }
            p.pop(&mut out);
        }
        let buffered = p.newest.wrapping_sub(p.play.unwrap());
        assert!(buffered <= RING as u32, "buffered {buffered}");
    }
}
