//! The audio mixer of one conference room: a media endpoint of the one media plane (the room
//! answers its participants' INVITEs; the media thread that owns the room's sockets feeds it).
//! Sans-IO: RTP payloads and an `Instant` in ([`Mixer::handle_rtp`], [`Mixer::handle_timeout`]),
//! RTP packets to send ([`Mixer::poll_transmit`]), events ([`Mixer::poll_event`]) and the next
//! tick ([`Mixer::poll_timeout`]) out. No socket, clock, thread or lock in here.
//!
//! Every 20 ms tick: each participant's jitter buffer ([`jitter::Playout`]) gives one frame;
//! its loudness (a table lookup per coded byte, no decoding) drives talker detection; only
//! talkers (the `max_mixed` loudest, not muted) are decoded and summed. Each talker gets the
//! sum minus itself, encoded for its codec; everyone else gets one shared encoding of the sum
//! per G.711 law and one for Opus (cost grows with talkers, not listeners). G.722
//! participants are the exception ([`g722`]): ADPCM has state, so each is decoded and encoded
//! every frame. Opus participants ([`opus`]) are decoded as their packets arrive (loudness
//! needs samples), and only talkers have an encoder of their own. An empty room has no tick. Join and
//! leave tones are mixed in for everyone; DTMF (RFC 4733, or digits from SIP INFO through
//! [`Mixer::handle_digit`]) comes out as events, and `*6` toggles the sender's self-mute.
//!
//! Codecs: G.711 μ-law and A-law ([`g711`]), G.722 ([`g722`]) and Opus ([`opus`]), all
//! mixed at 8 kHz.

pub mod g711;
pub mod g722;
pub mod jitter;
pub mod opus;
#[cfg(test)]
pub(crate) mod testutil;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use g711::Law;
use jitter::Playout;

use crate::media::rtp::{rtp_payload, RtpHeader};

/// The mixing period.
pub const FRAME: Duration = Duration::from_millis(20);
/// Samples per frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Events kept for the owner at most (a DTMF flood cannot grow the queue).
const MAX_EVENTS: usize = 256;
/// DTMF digits a participant may send per second; more are dropped and counted.
const MAX_DIGITS_PER_SECOND: u32 = 10;
/// After this many ticks behind (the thread was stalled), the room skips ahead instead of
/// sending a burst.
const MAX_CATCH_UP: u32 = 5;

/// A participant of a room (its index in the room; reused after it leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u32);

/// The codec a participant negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    G711(Law),
    /// RFC 3551 payload type 9 (or a dynamic one), mixed at 8 kHz.
    G722,
    /// RFC 7587 `opus/48000/2` (a dynamic payload type), mixed at 8 kHz.
    Opus,
}

impl Codec {
    /// RTP timestamp units per 20 ms frame.
    pub fn frame_clock(self) -> u32 {
        match self {
            Codec::Opus => 960,
            _ => FRAME_SAMPLES as u32,
        }
    }

    /// The codec of an SDP encoding as [`crate::sip::sdp::formats_of`] gives it (lower-case
    /// `name/clock[/channels]`); `None` for anything the mixer does not speak.
    pub fn from_encoding(encoding: &str) -> Option<Codec> {
        let name = encoding.split('/').take(2).collect::<Vec<_>>();
        Some(match name[..] {
            ["pcmu", "8000"] => Codec::G711(Law::Mu),
            ["pcma", "8000"] => Codec::G711(Law::A),
            ["g722", "8000"] => Codec::G722,
            ["opus", "48000"] => Codec::Opus,
            _ => return None,
        })
    }

    /// Its name as SDP writes it (`PCMU`, `G722`, `opus`).
    pub fn name(self) -> &'static str {
        self.rtpmap().split('/').next().unwrap_or("")
    }

    /// The SDP rtpmap encoding of the codec.
    pub fn rtpmap(self) -> &'static str {
        match self {
            Codec::G711(Law::Mu) => "PCMU/8000",
            Codec::G711(Law::A) => "PCMA/8000",
            Codec::G722 => "G722/8000",
            Codec::Opus => "opus/48000/2",
        }
    }
}

/// How a participant's RTP looks.
#[derive(Debug, Clone)]
pub struct ParticipantSpec {
    pub codec: Codec,
    /// The payload type of its audio (both ways).
    pub pt: u8,
    /// The payload type of its RFC 4733 telephone-events, if negotiated.
    pub dtmf_pt: Option<u8>,
    /// Our SSRC toward it.
    pub ssrc: u32,
    /// The room asks for a PIN: until it is entered (DTMF, then `#` or the PIN's length),
    /// the participant hears nothing and is not heard.
    pub pin: Option<PinGate>,
}

/// The PINs of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinGate {
    pub pin: String,
    /// Entering this one makes the participant a moderator.
    pub moderator_pin: Option<String>,
}

/// Wrong PINs before the participant is refused ([`MixerEvent::PinRejected`]).
pub const PIN_ATTEMPTS: u8 = 3;

/// A participant still entering its PIN.
#[derive(Debug, Clone)]
struct PinEntry {
    gate: PinGate,
    entered: String,
    failures: u8,
}

/// Tunables of a room.
#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// At most this many talkers are mixed (the loudest).
    pub max_mixed: usize,
    /// Mean magnitude of a frame above which it counts as speech (of 32767).
    pub talk_threshold: u16,
    /// Loud frames in a row before a participant is a talker.
    pub talk_attack: u8,
    /// Quiet frames in a row before a talker is no longer one.
    pub talk_release: u8,
    /// The jitter buffer's playout delay.
    pub playout_delay: Duration,
    /// Join and leave tones.
    pub tones: bool,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            max_mixed: 8,
            talk_threshold: 300,
            talk_attack: 2,
            talk_release: 15,
            playout_delay: Duration::from_millis(60),
            tones: true,
        }
    }
}

/// What the room tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixerEvent {
    /// A participant started or stopped talking.
    Talking {
        participant: ParticipantId,
        talking: bool,
    },
    /// A DTMF digit (`0`–`9`, `*`, `#`, `A`–`D`).
    Digit {
        participant: ParticipantId,
        digit: char,
    },
    /// `*6`: the participant muted or unmuted itself.
    SelfMuted {
        participant: ParticipantId,
        muted: bool,
    },
    /// The participant entered the room's PIN (or its moderator PIN): it is in the room.
    PinAccepted {
        participant: ParticipantId,
        moderator: bool,
    },
    /// A wrong PIN (`failures` so far); after [`PIN_ATTEMPTS`] the owner should end the call.
    PinRejected {
        participant: ParticipantId,
        failures: u8,
    },
}

/// Errors of the mixer, by what was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixerError {
    #[error("mixer: no participant {0:?}")]
    NoParticipant(ParticipantId),
    #[error("mixer: not an RTP packet")]
    NotRtp,
    #[error("mixer: payload type {0} not negotiated")]
    PayloadType(u8),
    #[error("mixer: bad telephone-event payload")]
    BadDtmf,
    #[error("mixer: an Opus packet the decoder refused")]
    NotOpus,
}

/// Counters and state of one participant, for `tambun conf show` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantStats {
    /// Its codec's name as SDP writes it (`PCMU`, `G722`, `opus`).
    pub codec: &'static str,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Packets that came too late to be played, or too early to be kept.
    pub late: u64,
    /// Packets refused (not RTP, wrong payload type, bad DTMF).
    pub refused: u64,
    pub digits: u64,
    pub digits_dropped: u64,
    pub talking: bool,
    pub muted: bool,
    pub self_muted: bool,
    /// Still entering the room's PIN.
    pub waiting_for_pin: bool,
    /// Mean magnitude of its last frame (0–32767).
    pub level: u16,
}

/// One participant.
struct Participant {
    spec: ParticipantSpec,
    voice: Voice,
    /// Coded bytes by timestamp (G.711, G.722; unused for Opus, which has its own).
    playout: Playout,
    /// Its current frame, coded, and decoded when it is mixed.
    frame: [u8; FRAME_SAMPLES],
    pcm: [i16; FRAME_SAMPLES],
    loud: u8,
    quiet: u8,
    mixed: bool,
    /// Our RTP toward it.
    seq: u16,
    timestamp: u32,
    first: bool,
    /// DTMF: the timestamp of the last event seen, the last digit, the rate window.
    dtmf_ts: Option<u32>,
    last_digit: Option<char>,
    digit_window: (Instant, u32),
    pin: Option<PinEntry>,
    stats: ParticipantStats,
}

/// A participant's codec state.
enum Voice {
    G711(Law),
    /// Its decoder and encoder, run every frame.
    G722(Box<g722::G722>),
    /// Its decoder and PCM playout, and its own encoder once it has been a talker.
    Opus {
        rx: Box<opus::Receiver>,
        own: Option<Box<opus::Encoder>>,
    },
}

/// `out` = the mix without a talker's own samples.
fn mix_minus(
    out: &mut [i32; FRAME_SAMPLES],
    mix: &[i32; FRAME_SAMPLES],
    own: &[i16; FRAME_SAMPLES],
) {
    for ((o, m), s) in out.iter_mut().zip(mix).zip(own) {
        *o = *m - i32::from(*s);
    }
}

/// A tone being played to everyone (join, leave).
#[derive(Debug, Clone)]
struct Tone {
    /// (frequency Hz, samples) segments, 0 Hz is a pause.
    segments: Vec<(f32, usize)>,
    at: usize,
    done_in_segment: usize,
    phase: f32,
}

/// The mixer of one room.
pub struct Mixer {
    config: MixerConfig,
    participants: Vec<Option<Participant>>,
    free: Vec<u32>,
    count: usize,
    next_tick: Option<Instant>,
    tone: Option<Tone>,
    events: VecDeque<MixerEvent>,
    /// The sum of this tick's mixed talkers (and tone).
    mix: [i32; FRAME_SAMPLES],
    scratch: [i32; FRAME_SAMPLES],
    /// The shared encodings of `mix`, per law (valid for this tick).
    shared: [[u8; FRAME_SAMPLES]; 2],
    /// The Opus listeners' shared encoder (made when the first Opus participant joins), its
    /// packet of this tick and that packet's length (0: not encoded yet this tick).
    shared_opus: Option<Box<opus::Encoder>>,
    shared_opus_out: [u8; opus::MAX_OUT],
    shared_opus_len: usize,
    /// A talker's own Opus packet of this tick.
    opus_out: [u8; opus::MAX_OUT],
    /// This tick's packets: bytes, and (participant, end offset) per packet.
    out: Vec<u8>,
    out_index: Vec<(ParticipantId, usize)>,
    out_cursor: usize,
    /// This tick's talkers to mix: (level, participant), kept for its allocation.
    candidates: Vec<(u16, u32)>,
    /// Talkers mixed in the last tick.
    mixed_last: usize,
    ticks: u64,
}

impl Mixer {
    pub fn new(config: MixerConfig) -> Mixer {
        Mixer {
            config,
            participants: Vec::new(),
            free: Vec::new(),
            count: 0,
            next_tick: None,
            tone: None,
            events: VecDeque::new(),
            mix: [0; FRAME_SAMPLES],
            scratch: [0; FRAME_SAMPLES],
            shared: [[0; FRAME_SAMPLES]; 2],
            shared_opus: None,
            shared_opus_out: [0; opus::MAX_OUT],
            shared_opus_len: 0,
            opus_out: [0; opus::MAX_OUT],
            out: Vec::new(),
            out_index: Vec::new(),
            out_cursor: 0,
            candidates: Vec::new(),
            mixed_last: 0,
            ticks: 0,
        }
    }

    /// A participant joins: it is heard from its first packets on and hears the room from
    /// the next tick. The first one starts the room's clock.
    pub fn add(&mut self, spec: ParticipantSpec, now: Instant) -> ParticipantId {
        let (voice, fill) = match spec.codec {
            Codec::G711(law) => (Voice::G711(law), law.silence()),
            Codec::G722 => (Voice::G722(Box::default()), g722::MISSING),
            Codec::Opus => {
                if self.shared_opus.is_none() {
                    self.shared_opus = Some(opus::Encoder::new());
                }
                let rx = opus::Receiver::new(self.config.playout_delay);
                (Voice::Opus { rx, own: None }, 0)
            }
        };
        let pin = spec.pin.clone().map(|gate| PinEntry {
            gate,
            entered: String::new(),
            failures: 0,
        });
        let waiting = pin.is_some();
        let p = Participant {
            pin,
            voice,
            playout: Playout::new(self.config.playout_delay, fill),
            frame: [fill; FRAME_SAMPLES],
            pcm: [0; FRAME_SAMPLES],
            loud: 0,
            quiet: 0,
            mixed: false,
            seq: (spec.ssrc >> 16) as u16,
            timestamp: spec.ssrc.rotate_left(7),
            first: true,
            dtmf_ts: None,
            last_digit: None,
            digit_window: (now, 0),
            stats: ParticipantStats {
                codec: spec.codec.name(),
                waiting_for_pin: waiting,
                ..ParticipantStats::default()
            },
            spec,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.participants[i as usize] = Some(p);
                i
            }
            None => {
                self.participants.push(Some(p));
                self.participants.len() as u32 - 1
            }
        };
        self.count += 1;
        if self.next_tick.is_none() {
            self.next_tick = Some(now + FRAME);
        }
        if self.config.tones && self.count > 1 && !waiting {
            self.tone = Some(Tone::join());
        }
        ParticipantId(id)
    }

    /// A participant leaves; the last one stops the room's clock. Its final counters.
    pub fn remove(&mut self, id: ParticipantId) -> Option<ParticipantStats> {
        let p = self.participants.get_mut(id.0 as usize)?.take()?;
        self.free.push(id.0);
        self.count -= 1;
        if self.count == 0 {
            self.next_tick = None;
            self.tone = None;
        } else if self.config.tones {
            self.tone = Some(Tone::leave());
        }
        let mut stats = p.stats;
        stats.talking = false;
        Some(stats)
    }

    /// The number of participants.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The participants and their counters, in id order.
    pub fn participants(&self) -> impl Iterator<Item = (ParticipantId, &ParticipantStats)> {
        self.participants
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((ParticipantId(i as u32), &p.as_ref()?.stats)))
    }

    /// The talkers mixed in the last tick.
    pub fn mixed_last_tick(&self) -> usize {
        self.mixed_last
    }

    /// Ticks run since the room was made.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The moderator mutes or unmutes a participant: muted, it still hears the room.
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), MixerError> {
        let p = self.participant(id)?;
        p.stats.muted = muted;
        Ok(())
    }

    fn participant(&mut self, id: ParticipantId) -> Result<&mut Participant, MixerError> {
        self.participants
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(MixerError::NoParticipant(id))
    }

    /// An RTP packet from a participant (the caller checked it came from its address).
    pub fn handle_rtp(
        &mut self,
        id: ParticipantId,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), MixerError> {
        let p = self
            .participants
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(MixerError::NoParticipant(id))?;
        let Some(h) = RtpHeader::parse(packet) else {
            p.stats.refused += 1;
            return Err(MixerError::NotRtp);
        };
        let Some(payload) = rtp_payload(packet) else {
            p.stats.refused += 1;
            return Err(MixerError::NotRtp);
        };
        if h.payload_type == p.spec.pt {
            p.stats.packets_in += 1;
            let placed = match &mut p.voice {
                Voice::Opus { rx, .. } => {
                    let refused = rx.refused;
                    let placed = rx.push(h.sequence, h.timestamp, payload);
                    if rx.refused != refused {
                        // Not Opus: refused, as any payload that is not what was negotiated.
                        p.stats.packets_in -= 1;
                        p.stats.refused += 1;
                        return Err(MixerError::NotOpus);
                    }
                    placed
                }
                _ => p.playout.push(h.sequence, h.timestamp, payload),
            };
            if !placed {
                p.stats.late += 1;
            }
            return Ok(());
        }
        if Some(h.payload_type) == p.spec.dtmf_pt {
            p.stats.packets_in += 1;
            if payload.len() < 4 || payload[0] > 15 {
                p.stats.refused += 1;
                return Err(MixerError::BadDtmf);
            }
            // One digit per event: the first packet of a new event timestamp.
            if p.dtmf_ts == Some(h.timestamp) {
                return Ok(());
            }
            p.dtmf_ts = Some(h.timestamp);
            let digit = b"0123456789*#ABCD"[payload[0] as usize] as char;
            self.handle_digit(id, digit, now)?;
            return Ok(());
        }
        p.stats.refused += 1;
        Err(MixerError::PayloadType(h.payload_type))
    }

    /// A DTMF digit from a participant (RFC 4733, or SIP INFO through the signalling core).
    pub fn handle_digit(
        &mut self,
        id: ParticipantId,
        digit: char,
        now: Instant,
    ) -> Result<(), MixerError> {
        let p = self.participant(id)?;
        let (since, n) = p.digit_window;
        if now.saturating_duration_since(since) >= Duration::from_secs(1) {
            p.digit_window = (now, 0);
        } else if n >= MAX_DIGITS_PER_SECOND {
            p.stats.digits_dropped += 1;
            return Ok(());
        }
        p.digit_window.1 += 1;
        p.stats.digits += 1;
        if let Some(entry) = p.pin.as_mut() {
            // Entering the PIN: digits are not the room's business yet.
            let verdict = pin_digit(entry, digit);
            match verdict {
                PinVerdict::More => {}
                PinVerdict::Accepted { moderator } => {
                    p.pin = None;
                    p.stats.waiting_for_pin = false;
                    self.event(MixerEvent::PinAccepted {
                        participant: id,
                        moderator,
                    });
                    if self.config.tones {
                        self.tone = Some(Tone::join());
                    }
                }
                PinVerdict::Wrong(failures) => self.event(MixerEvent::PinRejected {
                    participant: id,
                    failures,
                }),
            }
            return Ok(());
        }
        let star_six = p.last_digit == Some('*') && digit == '6';
        p.last_digit = Some(digit);
        if star_six {
            p.stats.self_muted = !p.stats.self_muted;
            p.last_digit = None;
        }
        let muted = p.stats.self_muted;
        self.event(MixerEvent::Digit {
            participant: id,
            digit,
        });
        if star_six {
            self.event(MixerEvent::SelfMuted {
                participant: id,
                muted,
            });
        }
        Ok(())
    }

    fn event(&mut self, e: MixerEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MixerEvent> {
        self.events.pop_front()
    }

    /// When the next tick is due; `None` for an empty room.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Runs the ticks that are due by `now`. Their packets are then in [`Mixer::poll_transmit`]
    /// (the previous ones are dropped: drain them before).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.clear();
        self.out_index.clear();
        self.out_cursor = 0;
        let Some(mut next) = self.next_tick else {
            return;
        };
        let mut ran = 0;
        while next <= now {
            if ran == MAX_CATCH_UP {
                // Stalled: skip the ticks we missed (their frames are lost, not bunched).
                let behind = now.duration_since(next).as_nanos() / FRAME.as_nanos();
                next += FRAME * (behind as u32 + 1);
                break;
            }
            self.tick();
            ran += 1;
            next += FRAME;
        }
        self.next_tick = Some(next);
    }

    /// The next packet of the last [`Mixer::handle_timeout`]: to whom, and its bytes.
    pub fn poll_transmit(&mut self) -> Option<(ParticipantId, &[u8])> {
        let (id, end) = *self.out_index.get(self.out_cursor)?;
        let start = match self.out_cursor {
            0 => 0,
            c => self.out_index[c - 1].1,
        };
        self.out_cursor += 1;
        Some((id, &self.out[start..end]))
    }

    /// One 20 ms frame of the room.
    fn tick(&mut self) {
        self.ticks += 1;
        let cfg = &self.config;
        // 1. Each participant's frame and loudness; talker detection.
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for (i, slot) in self.participants.iter_mut().enumerate() {
            let Some(p) = slot else { continue };
            let sum: u32 = match &mut p.voice {
                // Decoded on arrival: its loudness is the samples'.
                Voice::Opus { rx, .. } => {
                    rx.pop(&mut p.pcm);
                    p.pcm.iter().map(|s| s.unsigned_abs() as u32).sum()
                }
                // Decoded every frame (its state), so its loudness is the samples'.
                Voice::G722(g) => {
                    p.playout.pop(&mut p.frame);
                    g.decode(&p.frame, &mut p.pcm);
                    p.pcm.iter().map(|s| s.unsigned_abs() as u32).sum()
                }
                Voice::G711(law) => {
                    p.playout.pop(&mut p.frame);
                    p.frame.iter().map(|b| law.magnitude(*b) as u32).sum()
                }
            };
            let level = (sum / FRAME_SAMPLES as u32) as u16;
            p.stats.level = level;
            let was = p.stats.talking;
            if p.pin.is_some() {
                // Not in the room yet: never a talker.
                p.loud = 0;
            } else if level >= cfg.talk_threshold {
                p.quiet = 0;
                p.loud = p.loud.saturating_add(1);
                if p.loud >= cfg.talk_attack {
                    p.stats.talking = true;
                }
            } else {
                p.loud = 0;
                p.quiet = p.quiet.saturating_add(1);
                if p.quiet >= cfg.talk_release {
                    p.stats.talking = false;
                }
            }
            if was != p.stats.talking && self.events.len() < MAX_EVENTS {
                self.events.push_back(MixerEvent::Talking {
                    participant: ParticipantId(i as u32),
                    talking: p.stats.talking,
                });
            }
            p.mixed = false;
            if p.stats.talking && !p.stats.muted && !p.stats.self_muted && p.pin.is_none() {
                candidates.push((level, i as u32));
            }
        }
        // 2. The loudest talkers are mixed: decoded and summed.
        if candidates.len() > cfg.max_mixed {
            candidates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            candidates.truncate(cfg.max_mixed);
        }
        self.mixed_last = candidates.len();
        self.mix = [0; FRAME_SAMPLES];
        for &(_, i) in &candidates {
            let Some(p) = self.participants[i as usize].as_mut() else {
                continue;
            };
            p.mixed = true;
            if let Voice::G711(law) = p.voice {
                law.decode_frame(&p.frame, &mut p.pcm);
            }
            for (m, s) in self.mix.iter_mut().zip(&p.pcm) {
                *m += *s as i32;
            }
        }
        if let Some(tone) = self.tone.as_mut() {
            if tone.add_to(&mut self.mix) {
                self.tone = None;
            }
        }
        let silent = candidates.is_empty() && self.tone.is_none() && self.mix == [0; FRAME_SAMPLES];
        // 3. One shared encoding per law (and for Opus) for the listeners (encoded only if
        // someone uses it).
        let mut encoded = [false; 2];
        self.shared_opus_len = 0;
        for (i, slot) in self.participants.iter_mut().enumerate() {
            let Some(p) = slot else { continue };
            let payload: &[u8] = match &mut p.voice {
                Voice::Opus { own, .. } => {
                    if p.mixed && p.pin.is_none() {
                        // A talker: the mix without itself, from its own encoder.
                        mix_minus(&mut self.scratch, &self.mix, &p.pcm);
                        let n = own
                            .get_or_insert_with(opus::Encoder::new)
                            .encode(&self.scratch, &mut self.opus_out);
                        &self.opus_out[..n]
                    } else if p.pin.is_some() {
                        // Not in the room yet: silence, from its own encoder (the shared
                        // stream may carry the room).
                        let n = own
                            .get_or_insert_with(opus::Encoder::new)
                            .encode(&[0; FRAME_SAMPLES], &mut self.opus_out);
                        &self.opus_out[..n]
                    } else {
                        if self.shared_opus_len == 0 {
                            if let Some(enc) = self.shared_opus.as_mut() {
                                self.shared_opus_len =
                                    enc.encode(&self.mix, &mut self.shared_opus_out);
                            }
                        }
                        &self.shared_opus_out[..self.shared_opus_len]
                    }
                }
                Voice::G722(g) => {
                    // Its own encoder, every frame (silence too: the encoder's state goes on).
                    if p.pin.is_some() || (silent && !p.mixed) {
                        self.scratch = [0; FRAME_SAMPLES];
                    } else if p.mixed {
                        mix_minus(&mut self.scratch, &self.mix, &p.pcm);
                    } else {
                        self.scratch = self.mix;
                    }
                    g.encode(&self.scratch, &mut p.frame);
                    &p.frame
                }
                Voice::G711(law) => {
                    let k = law_index(*law);
                    if p.pin.is_some() {
                        // Not in the room yet: it hears nothing of it.
                        &SILENCE[k]
                    } else if p.mixed {
                        // A talker hears everyone but itself.
                        mix_minus(&mut self.scratch, &self.mix, &p.pcm);
                        law.encode_frame(&self.scratch, &mut p.frame);
                        &p.frame
                    } else if silent {
                        &SILENCE[k]
                    } else {
                        if !encoded[k] {
                            law.encode_frame(&self.mix, &mut self.shared[k]);
                            encoded[k] = true;
                        }
                        &self.shared[k]
                    }
                }
            };
            // 4. Its RTP packet (none if its encoder failed).
            if payload.is_empty() {
                p.timestamp = p.timestamp.wrapping_add(p.spec.codec.frame_clock());
                continue;
            }
            let marker = std::mem::take(&mut p.first);
            self.out.push(0x80);
            self.out.push(p.spec.pt | if marker { 0x80 } else { 0 });
            self.out.extend_from_slice(&p.seq.to_be_bytes());
            self.out.extend_from_slice(&p.timestamp.to_be_bytes());
            self.out.extend_from_slice(&p.spec.ssrc.to_be_bytes());
            self.out.extend_from_slice(payload);
            self.out_index
                .push((ParticipantId(i as u32), self.out.len()));
            p.seq = p.seq.wrapping_add(1);
            p.timestamp = p.timestamp.wrapping_add(p.spec.codec.frame_clock());
            p.stats.packets_out += 1;
        }
        self.candidates = candidates;
    }
}

/// What one PIN digit did.
enum PinVerdict {
    More,
    Accepted { moderator: bool },
    Wrong(u8),
}

/// A digit of a PIN being entered: `#` ends it (an empty entry is ignored), and an entry as
/// long as the longest PIN is judged at once.
fn pin_digit(entry: &mut PinEntry, digit: char) -> PinVerdict {
    let longest = entry
        .gate
        .pin
        .len()
        .max(entry.gate.moderator_pin.as_ref().map_or(0, String::len));
    if digit != '#' {
        entry.entered.push(digit);
    }
    let judged = digit == '#' && !entry.entered.is_empty() || entry.entered.len() >= longest;
    if !judged {
        // A shorter PIN matches as soon as it is complete, unless a longer one could follow.
        return PinVerdict::More;
    }
    let entered = std::mem::take(&mut entry.entered);
    if entry.gate.moderator_pin.as_deref() == Some(entered.as_str()) {
        return PinVerdict::Accepted { moderator: true };
    }
    if entry.gate.pin == entered {
        return PinVerdict::Accepted { moderator: false };
    }
    entry.failures = entry.failures.saturating_add(1);
    PinVerdict::Wrong(entry.failures)
}

/// A silent frame of each law, by [`law_index`].
static SILENCE: [[u8; FRAME_SAMPLES]; 2] = [
    [Law::Mu.silence(); FRAME_SAMPLES],
    [Law::A.silence(); FRAME_SAMPLES],
];

fn law_index(law: Law) -> usize {
    match law {
        Law::Mu => 0,
        Law::A => 1,
    }
}

impl Tone {
    /// Two rising beeps.
    fn join() -> Tone {
        Tone::of(vec![(660.0, 800), (0.0, 400), (880.0, 800)])
    }

    /// Two falling beeps.
    fn leave() -> Tone {
        Tone::of(vec![(880.0, 800), (0.0, 400), (660.0, 800)])
    }

    fn of(segments: Vec<(f32, usize)>) -> Tone {
        Tone {
            segments,
            at: 0,
            done_in_segment: 0,
            phase: 0.0,
        }
    }

    /// Adds one frame of the tone to `mix` (at about −20 dBov); true when it is over.
    fn add_to(&mut self, mix: &mut [i32; FRAME_SAMPLES]) -> bool {
        for m in mix.iter_mut() {
            let Some(&(hz, len)) = self.segments.get(self.at) else {
                return true;
            };
            if hz > 0.0 {
                *m += (self.phase.sin() * 3000.0) as i32;
                self.phase += std::f32::consts::TAU * hz / 8000.0;
                if self.phase > std::f32::consts::TAU {
                    self.phase -= std::f32::consts::TAU;
                }
            }
            self.done_in_segment += 1;
            if self.done_in_segment == len {
                self.at += 1;
                self.done_in_segment = 0;
                self.phase = 0.0;
            }
        }
        self.at >= self.segments.len()
    }
}

#[cfg(test)]
mod tests;
