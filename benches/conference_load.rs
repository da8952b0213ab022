//! Conference load client (issue 12): `cargo bench --bench conference_load -- tambun|janus ARGS`.
//!
//! N participants join conference rooms of at most `--room-size` each (split evenly), then
//! every participant sends 20 ms PCMU frames (160 bytes, 50 pps) from its own UDP socket: a
//! fixed share of each room (`--talkers-pct`, at least `--min-talkers`) sends a steady tone
//! (400-750 Hz, amplitude 3000 of 32767), everyone else silence (μ-law 0xFF, which decodes to
//! 0). Everything that comes back is received and counted per participant: packets in the
//! measured window, RFC 3550-style loss from the sequence numbers, the packet rate, and
//! whether the mix carries the talkers (the mean magnitude of a decoded frame above 300, the
//! share of such frames per participant). The server's CPU over the same window (the
//! scheduler's `/proc/PID/task/*/schedstat`, in ns; `/proc/PID/stat` utime + stime printed
//! beside it; all threads, children included) gives participants per core = joined
//! participants / (CPU seconds / wall seconds).
//!
//! * `tambun`: each participant is an extension (`--first-user`.., password `pwN`) that sends
//!   `INVITE sip:ROOM@SWITCH` over UDP with a PCMU offer from one shared SIP socket, answers
//!   the 407 with digest (MD5), ACKs the 200 and sends its RTP to the port of the 200's SDP;
//!   BYE at the end. Join time: the first INVITE sent → the first RTP packet received.
//! * `janus`: the AudioBridge plugin through Janus's HTTP API: one session (long-polled for
//!   every event, so each join also carries the `joined` notices to everyone before it), a
//!   handle per participant, rooms created with `sampling_rate` 8000 (G.711's), plain-RTP participants
//!   allowed, no recording, no audio-level extension or events; each participant `join`s with
//!   `codec: pcmu` and an `rtp` object (our address), reads the `joined` event (long poll)
//!   for the plugin's port and sends there. Join time: the `join` request sent → the first
//!   RTP packet received (the plugin sends only after it has received one). At the end the
//!   rooms and the session are destroyed.
//! * `tambun --video-pps N` (video rooms, the SFU): each participant also binds a video
//!   socket and offers `m=video VPORT RTP/AVP 96` (VP8/90000, sendrecv, **a=rtcp-mux**, so the
//!   room's PLIs come to that same socket); the 200's first video m-line (`sdp_media`) names
//!   the room's port. From its join on it sends N VP8 packets a second of `--video-bytes`
//!   (RTP header included; one packet = one frame: marker, S bit, seq + 1, timestamp +
//!   90000 / N), a keyframe start every `--keyframe-every` packets (default 2 N) and as the
//!   next packet after every PLI/FIR. What the room sends back is counted per participant in
//!   the window (packets, loss from the slot's sequence numbers, keyframes, PLIs); RESULT adds
//!   video_in_pps / video_out_pps (all participants, per wall second), video_out_rate (out /
//!   (participants × N): one slot each), video_per_core = video_out_pps / (server CPU s /
//!   wall s), plis, and the rooms' own `video` counters from `--admin` (`srv_*`: forwarded per
//!   second and keyframe requests over the window, publishers, subscriptions, last_n at its
//!   end). Without the option nothing changes.
//! * `janus-video --video-pps N` (the same video load on Janus VideoRoom, to compare with the
//!   SFU): no SIP and no audio. One session and one control handle; rooms created with
//!   `publishers` = the room's size, VP8, no bitrate cap, no periodic FIR, no RTP
//!   extensions, no recording. Each participant is a *remote publisher*
//!   (`add_remote_publisher`, one video stream, mid 0, on 127.0.0.1: plain RTP in on the port
//!   it answers, which the plugin tells apart by SSRC, so every participant sends with SSRC
//!   1000, the first stream's) and sends the same VP8 packets there, from an unconnected
//!   video socket, with one empty RTCP receiver report to the answer's `rtcp_port` first
//!   (which latches where the plugin's PLIs go). Its one subscribed stream is an
//!   `rtp_forward` (plain RTP out, SSRC and PT rewritten) of its room's first talker to its
//!   video socket; the first talker gets the second talker's: N subscriptions, N − 1 of one
//!   publisher and 1 of another, as Tambun's last-N = 1 slots once the talkers have spoken.
//!   The RESULT line has the same video fields; `srv_subscriptions` counts the rooms'
//!   forwarders (`listforwarders`) after the joins; the audio fields are empty
//!   (`audio_lines=0`). At the end the rooms and the session are destroyed.
//!
//! One thread sends and receives: every `--tick-us` (1 ms) it sends the frames that are due
//! (each participant on its own 20 ms schedule from its join), reads every socket epoll
//! reports readable (level-triggered, connected non-blocking sockets; one datagram per
//! audio socket, up to 64 per video socket) and sleeps, so it
//! wakes up 1000 times a second however the server spreads its packets. Signalling runs on a
//! second thread, one participant after another (at most `--join-budget` s), while the ones
//! already in the room are sending. Loopback only: every address must
//! be in 127/8. Prints human-readable lines on stderr and one `RESULT key=value ...` line.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each load client uses its part
mod common;
use common::{
    authorization, cpu_of, parse_pid, sdp_media, sdp_media_addr, token, with_descendants, Epoll,
    Msg,
};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::Rng;
use serde_json::{json, Value};

const PERIOD: Duration = Duration::from_millis(20);
const FRAME: usize = 160;
/// A decoded frame whose mean magnitude is above this carries speech (the talkers' tones
/// mix to thousands; silence decodes to 0).
const LOUD: f64 = 300.0;
const TONE_AMPLITUDE: f64 = 3000.0;
const SIP_WAIT: Duration = Duration::from_secs(5);
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The payload type we offer for VP8.
const VP8_PT: u8 = 96;
/// The smallest video packet: RTP header, VP8 payload descriptor, a keyframe's 10-byte header.
const RTP_VP8_MIN: usize = 12 + 1 + 10;

#[derive(Parser)]
#[command(
    about = "Conference load client for Tambun rooms, Janus AudioBridge and Janus VideoRoom (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// (added by `cargo bench`; ignored)
    #[arg(long, hide = true, global = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Participants join Tambun's rooms by SIP INVITE
    Tambun(TambunArgs),
    /// Participants join Janus AudioBridge rooms as plain-RTP participants (HTTP API)
    Janus(JanusArgs),
    /// Participants publish VP8 to Janus VideoRoom rooms as plain-RTP remote publishers;
    /// `rtp_forward` sends each one the camera of its room's talker (HTTP API)
    JanusVideo(JanusVideoArgs),
}

#[derive(Args, Clone)]
struct Load {
    /// Participants in all
    #[arg(long)]
    participants: usize,
    /// At most this many participants per room (N is split evenly over ceil(N / size) rooms)
    #[arg(long, default_value_t = 500)]
    room_size: usize,
    /// Share of each room's participants that talk (a tone), in percent
    #[arg(long, default_value_t = 10.0)]
    talkers_pct: f64,
    /// At least this many talkers per room
    #[arg(long, default_value_t = 3)]
    min_talkers: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The client's loop period in µs: sends due by then go out, arrivals are read
    #[arg(long, default_value_t = 1000)]
    tick_us: u64,
    /// Give up joining after this many seconds (the rest count as failed joins)
    #[arg(long, default_value_t = 60.0)]
    join_budget: f64,
    /// Seconds after the last join before the window (not counted)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A server process to measure, NAME=PID (its threads and children count); repeatable
    #[arg(long = "server-pid", value_parser = parse_pid)]
    server_pids: Vec<(String, u32)>,
    /// Name printed in the RESULT line
    #[arg(long, default_value = "server")]
    label: String,
    /// The participants' codec: PCMU (160-byte frames) or Opus (48 kHz, a browser's 32 kbps)
    #[arg(long, value_enum, default_value_t = AudioCodec::Pcmu)]
    codec: AudioCodec,
    /// Opus: the sampling rate the participants encode from: 48000 (a browser's default:
    /// hybrid fullband packets) or 8000 (a browser that honours Tambun's
    /// `maxplaybackrate=8000`: narrowband SILK)
    #[arg(long, default_value_t = 48000)]
    opus_capture: i32,
}

/// The codec every participant of a run speaks.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum AudioCodec {
    Pcmu,
    Opus,
}

/// The payload type we offer (and ask Janus for) for Opus.
const OPUS_PT: u8 = 111;

impl AudioCodec {
    fn pt(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Opus => OPUS_PT,
        }
    }

    /// RTP clock per 20 ms frame.
    fn frame_clock(self) -> u32 {
        match self {
            AudioCodec::Pcmu => FRAME as u32,
            AudioCodec::Opus => 960,
        }
    }

    /// The audio m-line of our offer.
    fn sdp(self, port: u16) -> String {
        match self {
            AudioCodec::Pcmu => format!("m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
            AudioCodec::Opus => format!(
                "m=audio {port} RTP/AVP {OPUS_PT}\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\n\
                 a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1\r\n"
            ),
        }
    }

    fn janus_name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "pcmu",
            AudioCodec::Opus => "opus",
        }
    }
}

#[derive(Args)]
struct TambunArgs {
    #[command(flatten)]
    load: Load,
    /// The switch's SIP over UDP address
    #[arg(long)]
    sip: SocketAddr,
    /// SIP domain of From/To
    #[arg(long, default_value = "127.0.0.1")]
    domain: String,
    /// Room numbers: FIRST, FIRST+1, ... (one per room the load needs)
    #[arg(long, default_value_t = 8000)]
    first_room: u32,
    /// Extensions of the participants: FIRST.. (password pwN)
    #[arg(long, default_value_t = 10000)]
    first_user: u32,
    /// The switch's admin API: its `/api/conf` is read once everyone joined (and, with
    /// video, at both ends of the window for the rooms' video counters)
    #[arg(long)]
    admin: Option<SocketAddr>,
    #[command(flatten)]
    video: VideoArgs,
}

/// Video (Tambun's SFU): off unless `--video-pps` is given.
#[derive(Args, Clone)]
struct VideoArgs {
    /// VP8 packets per second each participant sends on a video line of its own (0: no video)
    #[arg(long, default_value_t = 0)]
    video_pps: u32,
    /// Bytes of each video packet, RTP header included
    #[arg(long, default_value_t = 1100)]
    video_bytes: usize,
    /// A keyframe start every this many video packets (default: 2 s of packets, 2 × pps);
    /// also the next packet after a PLI
    #[arg(long)]
    keyframe_every: Option<u32>,
}

/// The video part of a run.
#[derive(Clone)]
struct Video {
    pps: u32,
    bytes: usize,
    keyframe_every: u64,
    /// The admin API and the rooms to read `video` counters from.
    admin: Option<(SocketAddr, u32, usize)>,
    /// Every publisher's SSRC, when the server wants a given one (Janus's remote publishers
    /// find a stream by its SSRC); else random.
    publisher_ssrc: Option<u32>,
}

impl Video {
    const OFF: Video = Video {
        pps: 0,
        bytes: 0,
        keyframe_every: 0,
        admin: None,
        publisher_ssrc: None,
    };

    fn of(v: &VideoArgs) -> anyhow::Result<Video> {
        if v.video_pps > 0 && !(RTP_VP8_MIN..=1400).contains(&v.video_bytes) {
            bail!("--video-bytes must be {RTP_VP8_MIN} to 1400");
        }
        if v.video_pps > 100_000 {
            bail!("--video-pps must be at most 100000");
        }
        Ok(Video {
            pps: v.video_pps,
            bytes: v.video_bytes,
            keyframe_every: u64::from(
                v.keyframe_every
                    .unwrap_or(v.video_pps.saturating_mul(2))
                    .max(1),
            ),
            admin: None,
            publisher_ssrc: None,
        })
    }

    fn on(&self) -> bool {
        self.pps > 0
    }
}

#[derive(Args)]
struct JanusArgs {
    #[command(flatten)]
    load: Load,
    /// Janus's HTTP transport (http://ADDR/janus)
    #[arg(long)]
    http: SocketAddr,
    /// AudioBridge room ids: FIRST, FIRST+1, ...
    #[arg(long, default_value_t = 7000)]
    first_room: u64,
}

#[derive(Args)]
struct JanusVideoArgs {
    #[command(flatten)]
    load: Load,
    /// Janus's HTTP transport (http://ADDR/janus)
    #[arg(long)]
    http: SocketAddr,
    /// VideoRoom room ids: FIRST, FIRST+1, ...
    #[arg(long, default_value_t = 9000)]
    first_room: u64,
    #[command(flatten)]
    video: VideoArgs,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        // `cargo bench` with no arguments runs every bench: nothing to do without a server.
        None => {
            eprintln!("conference_load: needs a server; see `cargo bench --bench conference_load -- --help` and benches/conference-load.sh");
            Ok(())
        }
        Some(Cmd::Tambun(a)) => {
            loopback(a.sip)?;
            if let Some(admin) = a.admin {
                loopback(admin)?;
            }
            let load = a.load.clone();
            let plan = Plan::of(&load);
            let video = Video {
                admin: a.admin.map(|ad| (ad, a.first_room, plan.rooms)),
                ..Video::of(&a.video)?
            };
            let sig = TambunSig::bind(&a, &plan)?;
            run(load, plan, sig, video)
        }
        Some(Cmd::JanusVideo(a)) => {
            loopback(a.http)?;
            if a.video.video_pps == 0 {
                bail!("janus-video needs --video-pps");
            }
            let load = a.load.clone();
            let plan = Plan::of(&load);
            let video = Video {
                publisher_ssrc: Some(REMOTE_PUBLISHER_SSRC),
                ..Video::of(&a.video)?
            };
            let sig = JanusVideoSig::connect(&a, &plan)?;
            run(load, plan, sig, video)
        }
        Some(Cmd::Janus(a)) => {
            loopback(a.http)?;
            let load = a.load.clone();
            let plan = Plan::of(&load);
            let sig = JanusSig::connect(&a, &plan)?;
            run(load, plan, sig, Video::OFF)
        }
    }
}

fn loopback(a: SocketAddr) -> anyhow::Result<()> {
    if !a.ip().is_loopback() {
        bail!("{a} is not a loopback address: this tool only talks to 127.0.0.0/8");
    }
    Ok(())
}

// ---------------------------------------------------------------- the load's shape

/// Who is in which room and who talks.
struct Plan {
    rooms: usize,
    /// Per participant: its room index.
    room: Vec<usize>,
    /// Per participant: the tone frame it sends, if it talks.
    tone: Vec<Option<usize>>,
    talkers: usize,
}

impl Plan {
    fn of(l: &Load) -> Plan {
        let n = l.participants.max(1);
        let rooms = n.div_ceil(l.room_size.max(2));
        let mut room = vec![0; n];
        let mut tone = vec![None; n];
        let mut talkers = 0;
        // Participant i is member i / rooms of room i % rooms: the rooms fill together.
        for r in 0..rooms {
            let members: Vec<usize> = (r..n).step_by(rooms).collect();
            let size = members.len();
            let want = ((size as f64 * l.talkers_pct / 100.0).ceil() as usize)
                .max(l.min_talkers)
                .min(size);
            let stride = (size / want.max(1)).max(1);
            for (k, &i) in members.iter().enumerate() {
                room[i] = r;
                if want > 0 && k % stride == 0 && k / stride < want {
                    tone[i] = Some(talkers % TONES);
                    talkers += 1;
                }
            }
        }
        Plan {
            rooms,
            room,
            tone,
            talkers,
        }
    }
}

// ---------------------------------------------------------------- G.711 μ-law

const TONES: usize = 8;

fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(32635) + BIAS;
    let exp = (0..8).rev().find(|e| s & (0x80 << e) != 0).unwrap_or(0);
    let mant = (s >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) | mant) as u8
}

fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exp = (u >> 4) & 7;
    let mant = i32::from(u & 0x0f);
    let s = (((mant << 3) + 0x84) << exp) - 0x84;
    if u & 0x80 != 0 {
        -s as i16
    } else {
        s as i16
    }
}

/// What participants send, frame after frame: per talker tone, and for silence.
struct Frames {
    tones: Vec<Vec<Vec<u8>>>,
    silence: Vec<Vec<u8>>,
}

impl Frames {
    fn of(codec: AudioCodec, capture: i32) -> anyhow::Result<Frames> {
        Ok(match codec {
            AudioCodec::Pcmu => Frames {
                tones: tone_frames()
                    .into_iter()
                    .map(|f| vec![f.to_vec()])
                    .collect(),
                silence: vec![vec![0xff; FRAME]],
            },
            AudioCodec::Opus => Frames {
                tones: (0..TONES)
                    .map(|k| opus_frames(400.0 + 50.0 * k as f64, capture))
                    .collect::<anyhow::Result<_>>()?,
                silence: opus_frames(0.0, capture)?,
            },
        })
    }

    /// The payload of frame `seq` of talker `tone` (or of silence).
    fn get(&self, tone: Option<usize>, seq: u16) -> &[u8] {
        let frames = tone.map_or(&self.silence, |k| &self.tones[k]);
        &frames[usize::from(seq) % frames.len()]
    }
}

/// One second of 20 ms Opus packets of a tone at `hz` (0: silence), as a browser sends them:
/// VoIP, 32 kbps VBR, from audio at `rate` Hz. Played in a loop (50 frames: the tone's
/// phase goes on).
fn opus_frames(hz: f64, rate: i32) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = opus_rs::OpusEncoder::new(rate, 1, opus_rs::Application::Voip)
        .map_err(|e| anyhow!("opus encoder at {rate} Hz: {e}"))?;
    enc.bitrate_bps = 32000;
    let mut out = [0u8; 1500];
    let fs = rate as usize / 50;
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..fs)
                .map(|i| {
                    let t = (f * fs + i) as f64 / f64::from(rate);
                    (TONE_AMPLITUDE * (std::f64::consts::TAU * hz * t).sin()) as i16
                })
                .collect();
            let n = enc
                .encode_i16(&pcm, fs, &mut out)
                .map_err(|e| anyhow!("opus encode: {e}"))?;
            Ok(out[..n].to_vec())
        })
        .collect()
}

/// Talker k's frame: 400 + 50 k Hz, a whole number of cycles in 20 ms, so one frame repeats.
fn tone_frames() -> Vec<[u8; FRAME]> {
    (0..TONES)
        .map(|k| {
            let hz = 400.0 + 50.0 * k as f64;
            let mut f = [0u8; FRAME];
            for (i, b) in f.iter_mut().enumerate() {
                let x = TONE_AMPLITUDE * (std::f64::consts::TAU * hz * i as f64 / 8000.0).sin();
                *b = ulaw_encode(x as i16);
            }
            f
        })
        .collect()
}

// ---------------------------------------------------------------- signalling

/// What the signalling thread tells the media loop.
enum Joined {
    Ok {
        idx: usize,
        media: Media,
        started: Instant,
    },
    Failed {
        idx: usize,
        error: String,
    },
    Done,
}

/// Where a joined participant sends: its audio (none in a Janus VideoRoom), and its video
/// if it offered video.
#[derive(Clone, Copy)]
struct Media {
    audio: Option<SocketAddr>,
    video: Option<SocketAddr>,
    /// The video socket is connected to `video` (so it receives only from there); false when
    /// the server sends from another port than the one it receives on (Janus's forwarders).
    video_connect: bool,
    /// Where one RTCP packet from the video socket makes the server send its keyframe
    /// requests to that socket (a Janus remote publisher's `rtcp_port` latches).
    video_latch: Option<SocketAddr>,
}

trait Signalling: Send + 'static {
    /// Joins participant `idx` (its RTP socket at 127.0.0.1:`port`, its video socket at
    /// `video_port` if it has one) to room index `room`; returns where it sends its RTP and
    /// when the join request went out.
    fn join(
        &mut self,
        idx: usize,
        room: usize,
        port: u16,
        video_port: Option<u16>,
    ) -> anyhow::Result<(Media, Instant)>;
    /// After everyone joined: the server's own count of participants, if it tells.
    fn server_count(&mut self) -> Option<usize> {
        None
    }
    /// After everyone joined: the server's own count of video subscriptions (streams it
    /// sends to a participant), if the admin API does not tell it (`--admin`) and it does.
    fn subscriptions(&mut self) -> Option<usize> {
        None
    }
    /// Everyone leaves; a line for the log.
    fn leave_all(&mut self) -> anyhow::Result<String>;
}

// ---- SIP (Tambun)

/// A participant's dialog with a room, for its BYE.
struct Dialog {
    call_id: String,
    from: String,
    to: String,
    target: String,
    cseq: u32,
}

/// Tambun: one shared SIP socket; participant i is extension `first_user + i`.
struct TambunSig {
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    domain: String,
    first_room: u32,
    first_user: u32,
    admin: Option<SocketAddr>,
    dialogs: Vec<Dialog>,
    /// The ACK of each answered Call-ID, sent again if the 200 comes again.
    acks: HashMap<String, String>,
    rooms: usize,
    codec: AudioCodec,
}

impl TambunSig {
    fn bind(a: &TambunArgs, plan: &Plan) -> anyhow::Result<TambunSig> {
        let sock = UdpSocket::bind((LOCALHOST, 0)).context("SIP socket")?;
        Ok(TambunSig {
            local: sock.local_addr()?,
            sock,
            server: a.sip,
            domain: a.domain.clone(),
            first_room: a.first_room,
            first_user: a.first_user,
            admin: a.admin,
            dialogs: vec![],
            acks: HashMap::new(),
            rooms: plan.rooms,
            codec: a.load.codec,
        })
    }

    /// The next SIP message, answering what a phone answers by itself (requests from the
    /// switch: 200; a repeated 200 to an INVITE we ACKed: the ACK again).
    fn recv(&mut self, deadline: Instant) -> Option<Msg> {
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => continue,
            };
            let Some(m) = Msg::parse(&buf[..n]) else {
                continue;
            };
            if m.status() == 0 {
                if m.method() != "ACK" {
                    self.respond_ok(&m);
                }
                continue;
            }
            if m.status() == 200 && m.cseq().1 == "INVITE" {
                if let Some(ack) = self.acks.get(m.call_id()) {
                    let _ = self.sock.send_to(ack.as_bytes(), self.server);
                    continue;
                }
            }
            return Some(m);
        }
    }

    fn respond_ok(&self, m: &Msg) {
        let mut r = "SIP/2.0 200 OK\r\n".to_string();
        for v in m.all("via") {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        r.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            m.header("from").unwrap_or(""),
            m.header("to").unwrap_or(""),
            m.call_id(),
            m.header("cseq").unwrap_or("")
        ));
        let _ = self.sock.send_to(r.as_bytes(), self.server);
    }

    /// Sends `req` and waits for its final response (same Call-ID and CSeq), resending it
    /// every 500 ms until something answers.
    fn transact(&mut self, req: &str, call_id: &str, cseq: u32) -> anyhow::Result<Msg> {
        self.sock.send_to(req.as_bytes(), self.server)?;
        let deadline = Instant::now() + SIP_WAIT;
        let mut resend = Instant::now() + Duration::from_millis(500);
        let mut provisional = false;
        loop {
            let wait = if provisional {
                deadline
            } else {
                resend.min(deadline)
            };
            match self.recv(wait) {
                Some(m) if m.call_id() == call_id && m.cseq().0 == cseq => {
                    if m.status() >= 200 {
                        return Ok(m);
                    }
                    provisional = true;
                }
                Some(_) => {}
                None if Instant::now() >= deadline => bail!("no final answer in {SIP_WAIT:?}"),
                None => {
                    if !provisional {
                        self.sock.send_to(req.as_bytes(), self.server)?;
                    }
                    resend = Instant::now() + Duration::from_millis(500);
                }
            }
        }
    }
}

impl Signalling for TambunSig {
    fn join(
        &mut self,
        idx: usize,
        room: usize,
        port: u16,
        video_port: Option<u16>,
    ) -> anyhow::Result<(Media, Instant)> {
        let user = (self.first_user + idx as u32).to_string();
        let number = self.first_room + room as u32;
        let uri = format!("sip:{number}@{}", self.server);
        let call_id = token("c");
        let from = format!("<sip:{user}@{}>;tag={}", self.domain, token("f"));
        let to = format!("<sip:{number}@{}>", self.domain);
        let mut sdp = format!(
            "v=0\r\no=- {port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             {}a=ptime:20\r\na=sendrecv\r\n",
            self.codec.sdp(port)
        );
        if let Some(v) = video_port {
            // rtcp-mux: the room's PLIs come to the video socket itself.
            sdp.push_str(&format!(
                "m=video {v} RTP/AVP {VP8_PT}\r\na=rtpmap:{VP8_PT} VP8/90000\r\na=sendrecv\r\na=rtcp-mux\r\n"
            ));
        }
        let local = self.local;
        let invite = |cseq: u32, branch: &str, auth: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\nMax-Forwards: 70\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:{user}@{l}>\r\n{auth}Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
                 User-Agent: tambun-conference-load\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len(),
                l = local,
            )
        };
        let started = Instant::now();
        let mut auth = String::new();
        for cseq in 1..=2u32 {
            let branch = token("z9hG4bK");
            let r = self
                .transact(&invite(cseq, &branch, &auth), &call_id, cseq)
                .with_context(|| format!("{user} → room {number}: INVITE"))?;
            match r.status() {
                200 => {
                    let remote = sdp_media_addr(&r.body)
                        .ok_or_else(|| anyhow!("{user}: a 200 without a usable SDP"))?;
                    if !remote.ip().is_loopback() {
                        bail!("{user}: the room's SDP names {remote}, not a loopback address");
                    }
                    let video = match video_port {
                        None => None,
                        Some(_) => {
                            let (v, pt) = sdp_media(&r.body, "video").ok_or_else(|| {
                                anyhow!("{user}: the room refused our video line: {}", r.body)
                            })?;
                            if !v.ip().is_loopback() || pt != VP8_PT {
                                bail!("{user}: the room's video answer is {v} PT {pt}, not loopback PT {VP8_PT}");
                            }
                            if !r.body.contains("a=rtcp-mux") {
                                bail!("{user}: the room did not take rtcp-mux on video");
                            }
                            Some(v)
                        }
                    };
                    let to_tagged = r.header("to").unwrap_or("").to_string();
                    let target = r.contact_uri().unwrap_or_else(|| uri.clone());
                    let ack = format!(
                        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={b};rport\r\nMax-Forwards: 70\r\n\
                         From: {from}\r\nTo: {to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\n\
                         Content-Length: 0\r\n\r\n",
                        l = self.local,
                        b = token("z9hG4bK"),
                    );
                    self.sock.send_to(ack.as_bytes(), self.server)?;
                    self.acks.insert(call_id.clone(), ack);
                    self.dialogs.push(Dialog {
                        call_id,
                        from,
                        to: to_tagged,
                        target,
                        cseq: cseq + 1,
                    });
                    return Ok((
                        Media {
                            audio: Some(remote),
                            video,
                            video_connect: true,
                            video_latch: None,
                        },
                        started,
                    ));
                }
                401 | 407 if cseq == 1 => {
                    // ACK the failure (same branch, the response's To), then answer the challenge.
                    let ack = format!(
                        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\nMax-Forwards: 70\r\n\
                         From: {from}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        r.header("to").unwrap_or(""),
                        l = self.local,
                    );
                    self.sock.send_to(ack.as_bytes(), self.server)?;
                    let (h, out) = if r.status() == 401 {
                        ("www-authenticate", "Authorization")
                    } else {
                        ("proxy-authenticate", "Proxy-Authorization")
                    };
                    let v = authorization(&r.all(h), &user, &format!("pw{user}"), "INVITE", &uri)?;
                    auth = format!("{out}: {v}\r\n");
                }
                s => bail!(
                    "{user} → room {number}: {s} {}",
                    r.start.get(12..).unwrap_or("")
                ),
            }
        }
        bail!("{user} → room {number}: INVITE with credentials refused")
    }

    fn server_count(&mut self) -> Option<usize> {
        let admin = self.admin?;
        let mut http = Http::new(admin);
        let mut total = 0;
        for r in 0..self.rooms {
            let path = format!("/api/conf?room={}", self.first_room + r as u32);
            let body = http.request("GET", &path, None).ok()?;
            total += body.matches("\"extension\"").count();
        }
        Some(total)
    }

    fn leave_all(&mut self) -> anyhow::Result<String> {
        let t0 = Instant::now();
        let dialogs = std::mem::take(&mut self.dialogs);
        let mut open: HashMap<String, String> = HashMap::new();
        let mut unanswered = 0;
        // BYEs in batches of 50, each batch answered (or given up on) before the next.
        for chunk in dialogs.chunks(50) {
            for d in chunk {
                let bye = format!(
                    "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={b};rport\r\nMax-Forwards: 70\r\n\
                     From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
                    d.target,
                    d.from,
                    d.to,
                    d.call_id,
                    d.cseq,
                    l = self.local,
                    b = token("z9hG4bK"),
                );
                self.sock.send_to(bye.as_bytes(), self.server)?;
                open.insert(d.call_id.clone(), bye);
            }
            let mut resend = Instant::now() + Duration::from_millis(500);
            let deadline = Instant::now() + Duration::from_secs(3);
            while !open.is_empty() && Instant::now() < deadline {
                match self.recv(resend.min(deadline)) {
                    Some(m) if m.cseq().1 == "BYE" && m.status() >= 200 => {
                        open.remove(m.call_id());
                    }
                    Some(_) => {}
                    None => {
                        for bye in open.values() {
                            self.sock.send_to(bye.as_bytes(), self.server)?;
                        }
                        resend = Instant::now() + Duration::from_millis(500);
                    }
                }
            }
            unanswered += open.len();
            open.clear();
        }
        Ok(format!(
            "{} BYEs in {:.1}s, {unanswered} unanswered",
            dialogs.len(),
            t0.elapsed().as_secs_f64()
        ))
    }
}

// ---- HTTP (Janus's REST API, Tambun's admin API)

/// A plain HTTP/1.1 client on one keep-alive connection (reconnects when it closes).
struct Http {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            conn: None,
            buf: vec![],
        }
    }

    /// One request; the response body (status 200 only).
    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
        for attempt in 0..2 {
            match self.try_request(method, path, body) {
                Ok(b) => return Ok(b),
                Err(e) if attempt == 0 && self.conn.is_none() => {
                    let _ = e; // the server closed a kept-alive connection: once more
                }
                Err(e) => return Err(e),
            }
        }
        bail!("{method} {path}: no answer")
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<String> {
        if self.conn.is_none() {
            let c = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))
                .with_context(|| format!("connect {}", self.addr))?;
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(40)))?;
            self.conn = Some(c);
            self.buf.clear();
        }
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let conn = self.conn.as_mut().expect("connected above");
        if conn.write_all(req.as_bytes()).is_err() {
            self.conn = None;
            bail!("{method} {path}: connection closed");
        }
        match self.read_response() {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => bail!("{method} {path}: HTTP {status}: {body}"),
            Err(e) => {
                self.conn = None;
                Err(e.context(format!("{method} {path}")))
            }
        }
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 65536];
        let conn = self.conn.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_response(&mut self) -> anyhow::Result<(u16, String)> {
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        self.buf.drain(..head_end);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("not HTTP: {head}"))?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = vec![];
            loop {
                let line_end = loop {
                    if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    self.fill()?;
                };
                let size_line = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| anyhow!("bad chunk size '{size_line}'"))?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill()?;
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        } else {
            // No length: the body runs to the end of the connection.
            while self.fill().is_ok() {}
            self.conn = None;
            std::mem::take(&mut self.buf)
        };
        if close {
            self.conn = None;
        }
        Ok((status, String::from_utf8_lossy(&body).to_string()))
    }
}

/// Janus: one session; a control handle for the rooms, one handle per participant.
struct JanusSig {
    http: Http,
    session: u64,
    control: u64,
    first_room: u64,
    rooms: usize,
    handles: usize,
    /// Events read while waiting for another one.
    events_read: usize,
    codec: AudioCodec,
}

impl JanusSig {
    fn connect(a: &JanusArgs, plan: &Plan) -> anyhow::Result<JanusSig> {
        let mut http = Http::new(a.http);
        let session = janus_id(&janus_post(
            &mut http,
            "/janus",
            json!({"janus": "create"}),
        )?)?;
        let mut j = JanusSig {
            http,
            session,
            control: 0,
            first_room: a.first_room,
            rooms: plan.rooms,
            handles: 0,
            events_read: 0,
            codec: a.load.codec,
        };
        j.control = j.attach()?;
        for r in 0..plan.rooms {
            let room = a.first_room + r as u64;
            let create = json!({
                "request": "create", "room": room, "description": format!("bench {room}"),
                "sampling_rate": 8000, "allow_rtp_participants": true, "record": false,
                "audiolevel_ext": false, "audiolevel_event": false, "permanent": false,
            });
            let mut data = j.control_request(create.clone())?;
            if data["error_code"].as_u64() == Some(486) {
                // left over from an interrupted run: recreate it
                j.control_request(json!({"request": "destroy", "room": room}))?;
                data = j.control_request(create)?;
            }
            if data["audiobridge"] != "created" {
                bail!("janus: creating room {room}: {data}");
            }
        }
        Ok(j)
    }

    fn attach(&mut self) -> anyhow::Result<u64> {
        self.handles += 1;
        let path = format!("/janus/{}", self.session);
        let r = janus_post(
            &mut self.http,
            &path,
            json!({"janus": "attach", "plugin": "janus.plugin.audiobridge"}),
        )?;
        janus_id(&r)
    }

    /// A synchronous AudioBridge request on the control handle: its `plugindata.data`.
    fn control_request(&mut self, body: Value) -> anyhow::Result<Value> {
        let path = format!("/janus/{}/{}", self.session, self.control);
        let r = janus_post(
            &mut self.http,
            &path,
            json!({"janus": "message", "body": body}),
        )?;
        Ok(r["plugindata"]["data"].clone())
    }

    /// Long-polls the session until the event of `transaction` arrives; its `plugindata.data`.
    fn wait_event(&mut self, transaction: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + SIP_WAIT;
        while Instant::now() < deadline {
            let path = format!("/janus/{}?maxev=5000&rid={}", self.session, token(""));
            let body = self.http.request("GET", &path, None)?;
            let v: Value = serde_json::from_str(&body).context("janus event JSON")?;
            let events = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            for e in events {
                self.events_read += 1;
                if e["transaction"] == transaction {
                    return Ok(e["plugindata"]["data"].clone());
                }
            }
        }
        bail!("janus: no event for transaction {transaction} in {SIP_WAIT:?}")
    }
}

fn janus_post(http: &mut Http, path: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = Value::String(token("t"));
    let r: Value = serde_json::from_str(&http.request("POST", path, Some(&body.to_string()))?)
        .context("janus JSON")?;
    if r["janus"] == "error" {
        bail!("janus: {path}: {}", r["error"]);
    }
    Ok(r)
}

fn janus_id(r: &Value) -> anyhow::Result<u64> {
    r["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("janus: no id in {r}"))
}

impl Signalling for JanusSig {
    fn join(
        &mut self,
        idx: usize,
        room: usize,
        port: u16,
        video_port: Option<u16>,
    ) -> anyhow::Result<(Media, Instant)> {
        if video_port.is_some() {
            bail!("janus: this client sends video to Tambun only");
        }
        let handle = self.attach()?;
        let room = self.first_room + room as u64;
        let transaction = token("j");
        let body = json!({
            "janus": "message", "transaction": transaction,
            "body": {
                "request": "join", "room": room, "display": format!("p{idx}"),
                "codec": self.codec.janus_name(), "muted": false,
                "rtp": {"ip": "127.0.0.1", "port": port, "payload_type": self.codec.pt()},
            },
        });
        let started = Instant::now();
        let path = format!("/janus/{}/{handle}", self.session);
        let r: Value =
            serde_json::from_str(&self.http.request("POST", &path, Some(&body.to_string()))?)?;
        if r["janus"] != "ack" {
            bail!("janus: join p{idx}: {r}");
        }
        let data = self.wait_event(&transaction)?;
        if data["audiobridge"] != "joined" {
            bail!("janus: join p{idx}: {data}");
        }
        let ip: Ipv4Addr = data["rtp"]["ip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("janus: joined without an rtp address: {data}"))?;
        let rport = data["rtp"]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| anyhow!("janus: joined without an rtp port: {data}"))?;
        let remote = SocketAddr::new(IpAddr::V4(ip), rport);
        if !remote.ip().is_loopback() {
            bail!("janus: the plugin's RTP address {remote} is not a loopback address");
        }
        Ok((
            Media {
                audio: Some(remote),
                video: None,
                video_connect: true,
                video_latch: None,
            },
            started,
        ))
    }

    fn server_count(&mut self) -> Option<usize> {
        let mut total = 0;
        for r in 0..self.rooms {
            let room = self.first_room + r as u64;
            let d = self
                .control_request(json!({"request": "listparticipants", "room": room}))
                .ok()?;
            total += d["participants"].as_array()?.len();
        }
        Some(total)
    }

    fn leave_all(&mut self) -> anyhow::Result<String> {
        let t0 = Instant::now();
        for r in 0..self.rooms {
            let room = self.first_room + r as u64;
            let d = self.control_request(json!({"request": "destroy", "room": room}))?;
            if d["audiobridge"] != "destroyed" {
                eprintln!("janus: destroying room {room}: {d}");
            }
        }
        let path = format!("/janus/{}", self.session);
        janus_post(&mut self.http, &path, json!({"janus": "destroy"}))?;
        Ok(format!(
            "{} rooms and the session ({} handles) destroyed in {:.1}s; {} events read while joining",
            self.rooms,
            self.handles,
            t0.elapsed().as_secs_f64(),
            self.events_read
        ))
    }
}

// ---- Janus VideoRoom

/// The SSRC of a Janus remote publisher's first stream (mindex 0): the plugin demultiplexes a
/// remote publisher's packets by SSRC, `REMOTE_PUBLISHER_BASE_SSRC` (1000) + mindex ×
/// `REMOTE_PUBLISHER_SSRC_STEP` (+ the simulcast substream); anything else is dropped.
const REMOTE_PUBLISHER_SSRC: u32 = 1000;

/// Janus VideoRoom: one session and one control handle; each participant is a remote
/// publisher (plain RTP in, one VP8 stream, mid "0") and receives the camera of its room's
/// first talker through an `rtp_forward` of that publisher to its video socket (the first
/// talker receives the second talker's): one subscribed stream each, N − 1 from one
/// publisher and 1 from another, as Tambun's last-N = 1 slots.
struct JanusVideoSig {
    http: Http,
    session: u64,
    control: u64,
    first_room: u64,
    rooms: usize,
    /// Per room: its first two talkers (participant indexes), if it has them.
    talkers: Vec<(Option<usize>, Option<usize>)>,
    /// Per participant that joined: its video port.
    video_ports: HashMap<usize, u16>,
    forwarders: usize,
}

impl JanusVideoSig {
    fn connect(a: &JanusVideoArgs, plan: &Plan) -> anyhow::Result<JanusVideoSig> {
        let mut http = Http::new(a.http);
        let session = janus_id(&janus_post(
            &mut http,
            "/janus",
            json!({"janus": "create"}),
        )?)?;
        let path = format!("/janus/{session}");
        let control = janus_id(&janus_post(
            &mut http,
            &path,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )?)?;
        let mut talkers = vec![(None, None); plan.rooms];
        for (i, t) in plan.tone.iter().enumerate() {
            if t.is_none() {
                continue;
            }
            let slot = &mut talkers[plan.room[i]];
            match slot {
                (None, _) => slot.0 = Some(i),
                (Some(_), None) => slot.1 = Some(i),
                _ => {}
            }
        }
        let mut j = JanusVideoSig {
            http,
            session,
            control,
            first_room: a.first_room,
            rooms: plan.rooms,
            talkers,
            video_ports: HashMap::new(),
            forwarders: 0,
        };
        let size = (0..plan.rooms)
            .map(|r| plan.room.iter().filter(|&&x| x == r).count())
            .max()
            .unwrap_or(1);
        for r in 0..plan.rooms {
            let room = a.first_room + r as u64;
            // No REMB cap, no periodic FIR, no recording, no RTP extensions to negotiate
            // (remote publishers have none), room for everyone to publish.
            let create = json!({
                "request": "create", "room": room, "description": format!("bench {room}"),
                "publishers": size, "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
                "record": false, "permanent": false, "audiolevel_ext": false,
                "videoorient_ext": false, "playoutdelay_ext": false, "transport_wide_cc_ext": false,
            });
            let mut data = j.control_request(create.clone())?;
            if data["error_code"].as_u64() == Some(427) {
                // left over from an interrupted run: recreate it
                j.control_request(json!({"request": "destroy", "room": room}))?;
                data = j.control_request(create)?;
            }
            if data["videoroom"] != "created" {
                bail!("janus: creating video room {room}: {data}");
            }
        }
        Ok(j)
    }

    /// A VideoRoom request on the control handle: its `plugindata.data` (from the event,
    /// if the plugin answers asynchronously).
    fn control_request(&mut self, body: Value) -> anyhow::Result<Value> {
        let path = format!("/janus/{}/{}", self.session, self.control);
        let r = janus_post(
            &mut self.http,
            &path,
            json!({"janus": "message", "body": body}),
        )?;
        if r["janus"] == "ack" {
            bail!("janus: {body}: answered asynchronously, which this client does not wait for");
        }
        Ok(r["plugindata"]["data"].clone())
    }

    /// `rtp_forward` of publisher `from`'s video to participant `to`'s video socket, with
    /// the SSRC and payload type rewritten (as Tambun's slots do).
    fn forward(&mut self, room: u64, from: usize, to: usize) -> anyhow::Result<()> {
        let port = *self
            .video_ports
            .get(&to)
            .ok_or_else(|| anyhow!("janus: p{to} has no video port"))?;
        let body = json!({
            "request": "rtp_forward", "room": room, "publisher_id": from as u64 + 1,
            "host": "127.0.0.1", "host_family": "ipv4",
            "streams": [{"mid": "0", "port": port, "ssrc": 0x7000_0000u32 + to as u32, "pt": VP8_PT}],
        });
        // The remote publisher enters the room from its own thread, just after
        // add_remote_publisher answered: until then it is "no such feed".
        for _ in 0..200 {
            let data = self.control_request(body.clone())?;
            if data["videoroom"] == "rtp_forward" {
                self.forwarders += 1;
                return Ok(());
            }
            if data["error_code"].as_u64() != Some(428) {
                bail!("janus: rtp_forward p{from} → p{to}: {data}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        bail!("janus: rtp_forward p{from} → p{to}: the publisher never appeared")
    }
}

impl Signalling for JanusVideoSig {
    fn join(
        &mut self,
        idx: usize,
        room: usize,
        _port: u16,
        video_port: Option<u16>,
    ) -> anyhow::Result<(Media, Instant)> {
        let vport = video_port.ok_or_else(|| anyhow!("janus-video: p{idx} has no video socket"))?;
        let started = Instant::now();
        let rid = self.first_room + room as u64;
        let data = self.control_request(json!({
            "request": "add_remote_publisher", "room": rid, "id": idx as u64 + 1,
            "display": format!("p{idx}"), "iface": "127.0.0.1",
            "streams": [{"type": "video", "mindex": 0, "mid": "0", "codec": "vp8"}],
        }))?;
        if data["videoroom"] != "success" {
            bail!("janus: add_remote_publisher p{idx}: {data}");
        }
        let port = |k: &str| {
            data[k]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
        };
        let rtp = port("port")
            .ok_or_else(|| anyhow!("janus: remote publisher without a port: {data}"))?;
        let to = SocketAddr::new(IpAddr::V4(LOCALHOST), rtp);
        self.video_ports.insert(idx, vport);
        let (first, second) = self.talkers[room];
        match first {
            Some(t) if t != idx => self.forward(rid, t, idx)?,
            _ => {}
        }
        if let (Some(t0), Some(t1)) = (first, second) {
            if t1 == idx {
                self.forward(rid, idx, t0)?;
            }
        }
        Ok((
            Media {
                audio: None,
                video: Some(to),
                video_connect: false,
                video_latch: port("rtcp_port").map(|p| SocketAddr::new(IpAddr::V4(LOCALHOST), p)),
            },
            started,
        ))
    }

    fn server_count(&mut self) -> Option<usize> {
        let mut total = 0;
        for r in 0..self.rooms {
            let room = self.first_room + r as u64;
            let d = self
                .control_request(json!({"request": "listparticipants", "room": room}))
                .ok()?;
            total += d["participants"].as_array()?.len();
        }
        Some(total)
    }

    fn subscriptions(&mut self) -> Option<usize> {
        let mut total = 0;
        for r in 0..self.rooms {
            let room = self.first_room + r as u64;
            let d = self
                .control_request(json!({"request": "listforwarders", "room": room}))
                .ok()?;
            for p in d["publishers"].as_array()? {
                total += p["forwarders"].as_array().map_or(0, Vec::len);
            }
        }
        Some(total)
    }

    fn leave_all(&mut self) -> anyhow::Result<String> {
        let t0 = Instant::now();
        for r in 0..self.rooms {
            let room = self.first_room + r as u64;
            let d = self.control_request(json!({"request": "destroy", "room": room}))?;
            if d["videoroom"] != "destroyed" {
                eprintln!("janus: destroying video room {room}: {d}");
            }
        }
        let path = format!("/janus/{}", self.session);
        janus_post(&mut self.http, &path, json!({"janus": "destroy"}))?;
        Ok(format!(
            "{} video rooms ({} rtp_forwards) and the session destroyed in {:.1}s",
            self.rooms,
            self.forwarders,
            t0.elapsed().as_secs_f64()
        ))
    }
}

// ---------------------------------------------------------------- measuring

/// CPU seconds of `pids` from the scheduler (`/proc/PID/task/TID/schedstat`: time on a CPU in
/// ns, every thread; threads that ended before the reading are not counted, so only use it
/// over a window in which the server's threads stay).
fn sched_cpu_of(pids: &[u32]) -> f64 {
    let mut ns = 0u64;
    for p in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in rd.flatten() {
            let path = t.path().join("schedstat");
            ns += std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// One participant's media state.
struct Member {
    sock: UdpSocket,
    /// Where it sends, once joined.
    remote: Option<SocketAddr>,
    join_started: Option<Instant>,
    first_rtp: Option<Instant>,
    seq: u16,
    ssrc: u32,
    /// What came back (its sequence numbers and the window's count); loud frames in the window.
    rx: Received,
    loud: u64,
    foreign: u64,
    video: Option<VideoMember>,
    /// Opus: what comes back is decoded (8 kHz mono) to tell whether it carries the talkers.
    opus: Option<Box<opus_rs::OpusDecoder>>,
}

/// A participant's video line (one socket, rtcp-mux): its camera out, its slot in, PLIs in.
struct VideoMember {
    sock: UdpSocket,
    remote: Option<SocketAddr>,
    /// `sock` is connected to `remote` (else each packet names it).
    connected: bool,
    ssrc: u32,
    seq: u16,
    ts0: u32,
    /// Packets sent so far (their timestamps: ts0 + sent × 90000 / pps).
    sent: u64,
    /// A PLI came: the next packet starts a keyframe.
    keyframe_due: bool,
    first_rx: Option<Instant>,
    /// What came back; keyframe starts in the window.
    rx: Received,
    keyframes_rx: u64,
    /// PLIs (all, and in the window), FIRs, packets that were neither our VP8 nor RTCP.
    plis: u64,
    plis_window: u64,
    firs: u64,
    foreign: u64,
}

/// Video totals of a run (the client's side).
#[derive(Default)]
struct VideoTally {
    sent_window: u64,
    sent_errors: u64,
    keyframes_sent: u64,
    keyframes_on_pli: u64,
    lag_max: Duration,
}

impl VideoMember {
    fn new(sock: UdpSocket, ssrc: Option<u32>) -> VideoMember {
        let mut r = rand::thread_rng();
        VideoMember {
            sock,
            remote: None,
            connected: false,
            ssrc: ssrc.unwrap_or_else(|| r.gen()),
            seq: r.gen(),
            ts0: r.gen(),
            sent: 0,
            keyframe_due: false,
            first_rx: None,
            rx: Received::default(),
            keyframes_rx: 0,
            plis: 0,
            plis_window: 0,
            firs: 0,
            foreign: 0,
        }
    }

    /// Fills `pkt` with the next VP8 packet (one packet is one frame: S bit and marker set);
    /// a keyframe every `every` packets and right after a PLI. Returns whether it is one.
    fn next_packet(&mut self, pkt: &mut [u8], pps: u32, every: u64) -> bool {
        let on_pli = self.keyframe_due;
        let key = on_pli || self.sent.is_multiple_of(every);
        self.keyframe_due = false;
        self.seq = self.seq.wrapping_add(1);
        let ts = self
            .ts0
            .wrapping_add((self.sent * 90_000 / u64::from(pps.max(1))) as u32);
        self.sent += 1;
        pkt[0] = 0x80;
        pkt[1] = 0x80 | VP8_PT;
        pkt[2..4].copy_from_slice(&self.seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        // VP8 payload descriptor (RFC 7741): S = 1, partition 0, no extensions.
        pkt[12] = 0x10;
        if key {
            // VP8 frame tag, P = 0 (keyframe), show_frame; start code; 320×240.
            pkt[13..23]
                .copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
        } else {
            // P = 1 (interframe).
            pkt[13..23].copy_from_slice(&[0x11, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0]);
        }
        key
    }

    /// A datagram on the video socket: the room's RTCP (PLI/FIR) or a slot's RTP.
    fn handle(&mut self, b: &[u8], now: Instant, counting: bool) {
        if b.len() >= 8 && b[0] >> 6 == 2 && (192..=223).contains(&b[1]) {
            // RTCP, maybe compound: every PLI (PSFB FMT 1) or FIR (FMT 4) asks a keyframe.
            let mut off = 0;
            while let Some(h) = b.get(off..off + 4) {
                let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
                if h[1] == 206 && h[0] & 0x1f == 1 {
                    self.plis += 1;
                    if counting {
                        self.plis_window += 1;
                    }
                    self.keyframe_due = true;
                } else if h[1] == 206 && h[0] & 0x1f == 4 {
                    self.firs += 1;
                    self.keyframe_due = true;
                }
                off += len;
            }
            return;
        }
        if b.len() < 14 || b[0] >> 6 != 2 || b[1] & 0x7f != VP8_PT {
            self.foreign += 1;
            return;
        }
        if self.first_rx.is_none() {
            self.first_rx = Some(now);
        }
        if !self.rx.packet(u16::from_be_bytes([b[2], b[3]]), counting) {
            return;
        }
        // Our packets have no CSRCs or extensions: the descriptor is byte 12.
        if b[12] & 0x10 != 0 && b[13] & 0x01 == 0 {
            self.keyframes_rx += 1;
        }
    }
}

/// The rooms' `video` counters from the admin API (summed over the rooms).
#[derive(Default, Clone, Copy)]
struct RoomVideo {
    publishers: u64,
    subscriptions: u64,
    last_n: u64,
    forwarded: u64,
    keyframe_requests: u64,
    dropped: u64,
}

fn room_video(admin: SocketAddr, first_room: u32, rooms: usize) -> Option<RoomVideo> {
    let mut http = Http::new(admin);
    let mut t = RoomVideo::default();
    for r in 0..rooms {
        let path = format!("/api/conf?room={}", first_room + r as u32);
        let body: Value = serde_json::from_str(&http.request("GET", &path, None).ok()?).ok()?;
        for room in body.as_array()? {
            // null when the room's forwarding thread did not answer in time
            let v = room["video"].as_object()?;
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            t.publishers += n("publishers");
            t.subscriptions += n("subscriptions");
            t.last_n = t.last_n.max(n("last_n"));
            t.forwarded += n("forwarded");
            t.keyframe_requests += n("keyframe_requests");
            t.dropped += n("dropped");
        }
    }
    Some(t)
}

impl Member {
    fn handle_rtp(
        &mut self,
        b: &[u8],
        now: Instant,
        counting: bool,
        magnitude: &[f64; 256],
        pcm: &mut [f32],
    ) {
        if b.len() < 12 || b[0] >> 6 != 2 || (72..=76).contains(&(b[1] & 0x7f)) {
            self.foreign += 1;
            return;
        }
        let mut start = 12 + 4 * (b[0] & 0x0f) as usize;
        if b[0] & 0x10 != 0 {
            let Some(w) = b.get(start + 2..start + 4) else {
                return;
            };
            start += 4 + 4 * u16::from_be_bytes([w[0], w[1]]) as usize;
        }
        let Some(payload) = b.get(start..) else {
            return;
        };
        let pt = if self.opus.is_some() { OPUS_PT } else { 0 };
        if b[1] & 0x7f != pt || payload.is_empty() {
            self.foreign += 1; // not our codec (comfort noise, events): not counted
            return;
        }
        if self.first_rtp.is_none() {
            self.first_rtp = Some(now);
        }
        if !self.rx.packet(u16::from_be_bytes([b[2], b[3]]), counting) {
            return;
        }
        let mean = match self.opus.as_mut() {
            Some(dec) => match dec.decode(payload, pcm.len(), pcm) {
                Ok(n) if n > 0 => {
                    pcm[..n]
                        .iter()
                        .map(|s| f64::from(s.abs()) * 32768.0)
                        .sum::<f64>()
                        / n as f64
                }
                _ => 0.0,
            },
            None => {
                payload.iter().map(|&u| magnitude[u as usize]).sum::<f64>() / payload.len() as f64
            }
        };
        if mean > LOUD {
            self.loud += 1;
        }
    }
}

/// The phases of a step, by time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Joining,
    Warmup(Instant),
    Window(Instant, Instant),
}

/// The epoll token of participant i's video socket (its audio socket's is i).
const VIDEO_TOKEN: u64 = 1 << 40;

/// The packets of one received stream: extended sequence numbers (RFC 3550 A.1, simplified)
/// and, in the measured window, the count and the lowest and highest seen (for loss).
#[derive(Default)]
struct Received {
    last_seq: Option<u16>,
    cycles: u64,
    /// Packets in the window.
    rx: u64,
    ext_range: Option<(u64, u64)>,
}

impl Received {
    /// A packet with `seq`; counted when `counting` (which it returns). Late packets from
    /// before a wrap would be misplaced; at these rates that is rare enough.
    fn packet(&mut self, seq: u16, counting: bool) -> bool {
        if let Some(last) = self.last_seq {
            if seq < last && last - seq > 0x8000 {
                self.cycles += 1 << 16;
            }
        }
        self.last_seq = Some(seq);
        let ext = self.cycles + u64::from(seq);
        if counting {
            self.rx += 1;
            self.ext_range = Some(match self.ext_range {
                None => (ext, ext),
                Some((lo, hi)) => (lo.min(ext), hi.max(ext)),
            });
        }
        counting
    }

    /// Packets the window should have held, from the sequence numbers seen in it.
    fn expected(&self) -> Option<u64> {
        self.ext_range.map(|(lo, hi)| hi - lo + 1)
    }
}

fn run(l: Load, plan: Plan, mut sig: impl Signalling, video: Video) -> anyhow::Result<()> {
    let n = l.participants;
    let label = l.label.clone();
    let groups: Vec<(String, Vec<u32>)> = l
        .server_pids
        .iter()
        .map(|(name, p)| (name.clone(), with_descendants(*p)))
        .collect();
    let server_cpu = || groups.iter().map(|(_, p)| cpu_of(p)).sum::<f64>();
    let server_sched = || groups.iter().map(|(_, p)| sched_cpu_of(p)).sum::<f64>();
    let self_cpu = || cpu_of(&[std::process::id()]);
    let frames = Frames::of(l.codec, l.opus_capture)?;
    let mut pcm = vec![0f32; 960];
    let tick = Duration::from_micros(l.tick_us.max(50));
    let mut magnitude = [0f64; 256];
    for (u, m) in magnitude.iter_mut().enumerate() {
        *m = f64::from(ulaw_decode(u as u8)).abs();
    }

    let epoll = Epoll::new()?;
    let mut members = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for i in 0..n {
        let sock = UdpSocket::bind((LOCALHOST, 0)).context("an RTP socket")?;
        sock.set_nonblocking(true)?;
        epoll.add(sock.as_raw_fd(), i as u64)?;
        let vm = if video.on() {
            let v = UdpSocket::bind((LOCALHOST, 0)).context("a video socket")?;
            v.set_nonblocking(true)?;
            epoll.add(v.as_raw_fd(), VIDEO_TOKEN | i as u64)?;
            Some(VideoMember::new(v, video.publisher_ssrc))
        } else {
            None
        };
        let vport = match &vm {
            Some(v) => Some(v.sock.local_addr()?.port()),
            None => None,
        };
        ports.push((sock.local_addr()?.port(), vport));
        members.push(Member {
            sock,
            remote: None,
            join_started: None,
            first_rtp: None,
            seq: rand::thread_rng().gen(),
            ssrc: rand::thread_rng().gen(),
            rx: Received::default(),
            loud: 0,
            foreign: 0,
            video: vm,
            opus: match l.codec {
                AudioCodec::Opus => Some(Box::new(
                    opus_rs::OpusDecoder::new(8000, 1).map_err(|e| anyhow!("opus decoder: {e}"))?,
                )),
                AudioCodec::Pcmu => None,
            },
        });
    }
    eprintln!(
        "{label}: {n} participants in {} room(s), {} talkers ({}% per room, at least {})",
        plan.rooms, plan.talkers, l.talkers_pct, l.min_talkers
    );
    if video.on() {
        eprintln!(
            "{label}: video: every participant publishes VP8 at {} pps, {} bytes a packet, a keyframe every {} packets and after each PLI (rtcp-mux)",
            video.pps, video.bytes, video.keyframe_every
        );
    }

    // Signalling thread: joins one after another, then waits for the word to leave.
    let (tx, rx) = mpsc::channel::<Joined>();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    let (count_tx, count_rx) = mpsc::channel::<(Option<usize>, Option<usize>)>();
    let rooms_of = plan.room.clone();
    let t_join0 = Instant::now();
    let cpu_join0 = server_cpu();
    let budget = t_join0 + Duration::from_secs_f64(l.join_budget);
    let signalling = std::thread::spawn(move || -> anyhow::Result<String> {
        for (idx, (port, vport)) in ports.into_iter().enumerate() {
            if Instant::now() > budget {
                let _ = tx.send(Joined::Failed {
                    idx,
                    error: "the join budget ran out".to_string(),
                });
                continue;
            }
            match sig.join(idx, rooms_of[idx], port, vport) {
                Ok((media, started)) => {
                    let _ = tx.send(Joined::Ok {
                        idx,
                        media,
                        started,
                    });
                }
                Err(e) => {
                    let _ = tx.send(Joined::Failed {
                        idx,
                        error: format!("{e:#}"),
                    });
                }
            }
        }
        let _ = tx.send(Joined::Done);
        let _ = count_tx.send((sig.server_count(), sig.subscriptions()));
        let _ = leave_rx.recv();
        sig.leave_all()
    });

    // Media loop.
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = [0u8; 2048];
    let mut phase = Phase::Joining;
    let mut join_failed = 0usize;
    let mut errors: Vec<String> = vec![];
    let mut sent_window = 0u64;
    let mut send_errors = 0u64;
    let mut lag_max = Duration::ZERO;
    let mut lags: Vec<Duration> = vec![];
    let mut cpu_w0 = 0.0;
    let mut sched_w0 = 0.0;
    let mut self_w0 = 0.0;
    let mut server_count = None;
    let mut server_subscriptions = None;
    let mut join_s = 0.0;
    let mut join_cpu = 0.0;
    let mut pkt = [0u8; 12 + 1500];
    let mut vschedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let vperiod = Duration::from_nanos(1_000_000_000 / u64::from(video.pps.max(1)));
    let mut vpkt = vec![0u8; video.bytes.max(RTP_VP8_MIN)];
    let mut vt = VideoTally::default();
    let mut room_video_w0: Option<std::thread::JoinHandle<Option<RoomVideo>>> = None;
    let room_video_at = |admin: Option<(SocketAddr, u32, usize)>| {
        admin.map(|(a, f, r)| std::thread::spawn(move || room_video(a, f, r)))
    };
    let (w0, w1) = loop {
        let now = Instant::now();
        // Sends that are due.
        while let Some(Reverse((due, i))) = schedule.peek().copied() {
            if due > now {
                break;
            }
            schedule.pop();
            let m = &mut members[i];
            if m.remote.is_none() {
                continue;
            }
            let lag = now - due;
            lag_max = lag_max.max(lag);
            if let Phase::Window(..) = phase {
                lags.push(lag);
                sent_window += 1;
            }
            m.seq = m.seq.wrapping_add(1);
            let ts = u32::from(m.seq).wrapping_mul(l.codec.frame_clock());
            pkt[0] = 0x80;
            pkt[1] = l.codec.pt();
            pkt[2..4].copy_from_slice(&m.seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&m.ssrc.to_be_bytes());
            let frame = frames.get(plan.tone[i], m.seq);
            pkt[12..12 + frame.len()].copy_from_slice(frame);
            if m.sock.send(&pkt[..12 + frame.len()]).is_err() {
                send_errors += 1;
            }
            // The next frame is due 20 ms after this one was; a stall skips frames rather
            // than sending a burst (a real phone does the same).
            let mut next = due + PERIOD;
            while next + PERIOD < now {
                next += PERIOD;
            }
            schedule.push(Reverse((next, i)));
        }
        // Video sends that are due (the same rules, at the video rate).
        while let Some(Reverse((due, i))) = vschedule.peek().copied() {
            if due > now {
                break;
            }
            vschedule.pop();
            let Some(v) = members[i].video.as_mut() else {
                continue;
            };
            vt.lag_max = vt.lag_max.max(now - due);
            if let Phase::Window(..) = phase {
                vt.sent_window += 1;
            }
            let on_pli = v.keyframe_due;
            if v.next_packet(&mut vpkt, video.pps, video.keyframe_every) {
                vt.keyframes_sent += 1;
                if on_pli {
                    vt.keyframes_on_pli += 1;
                }
            }
            let sent = match v.remote {
                Some(to) if !v.connected => v.sock.send_to(&vpkt, to),
                _ => v.sock.send(&vpkt),
            };
            if sent.is_err() {
                vt.sent_errors += 1;
            }
            let mut next = due + vperiod;
            while next + vperiod < now {
                next += vperiod;
            }
            vschedule.push(Reverse((next, i)));
        }
        // New participants and the end of the joins.
        while let Ok(j) = rx.try_recv() {
            match j {
                Joined::Ok {
                    idx,
                    media,
                    started,
                } => {
                    // Connected: sends need no address, and only the server's packets arrive.
                    if let Some(remote) = media.audio {
                        if let Err(e) = members[idx].sock.connect(remote) {
                            join_failed += 1;
                            errors.push(format!("p{idx}: connect {remote}: {e}"));
                            continue;
                        }
                    }
                    if let (Some(v), Some(to)) = (members[idx].video.as_mut(), media.video) {
                        if media.video_connect {
                            if let Err(e) = v.sock.connect(to) {
                                join_failed += 1;
                                errors.push(format!("p{idx}: connect video {to}: {e}"));
                                continue;
                            }
                        }
                        if let Some(latch) = media.video_latch {
                            // An empty receiver report: the server now knows where its
                            // keyframe requests go.
                            let mut rr = [0x80, 201, 0, 1, 0, 0, 0, 0];
                            rr[4..].copy_from_slice(&v.ssrc.to_be_bytes());
                            let _ = v.sock.send_to(&rr, latch);
                        }
                        v.connected = media.video_connect;
                        v.remote = Some(to);
                        vschedule.push(Reverse((Instant::now(), idx)));
                    }
                    members[idx].remote = media.audio;
                    members[idx].join_started = Some(started);
                    if media.audio.is_some() {
                        schedule.push(Reverse((Instant::now(), idx)));
                    }
                }
                Joined::Failed { idx, error } => {
                    join_failed += 1;
                    if errors.len() < 3 {
                        errors.push(format!("p{idx}: {error}"));
                    }
                }
                Joined::Done => {
                    join_s = t_join0.elapsed().as_secs_f64();
                    join_cpu = server_cpu() - cpu_join0;
                    phase = Phase::Warmup(Instant::now() + Duration::from_secs_f64(l.warmup));
                }
            }
        }
        match phase {
            Phase::Warmup(until) if now >= until => {
                if video.on() {
                    room_video_w0 = room_video_at(video.admin);
                }
                cpu_w0 = server_cpu();
                sched_w0 = server_sched();
                self_w0 = self_cpu();
                phase = Phase::Window(now, now + Duration::from_secs_f64(l.duration));
            }
            Phase::Window(a, b) if now >= b => break (a, b),
            _ => {}
        }
        // Everything that arrived, then sleep to the next tick: one wake-up per tick however
        // the server spreads its packets (a wake-up per packet costs the client more than the
        // packets do).
        loop {
            let ready = epoll.wait(&mut events, 0);
            let now = Instant::now();
            let counting = matches!(phase, Phase::Window(a, b) if now >= a && now < b);
            for ev in &events[..ready] {
                let token = ev.u64;
                if token & VIDEO_TOKEN != 0 {
                    // Video: a slot may bring more than one datagram a tick; read up to 64.
                    let Some(v) = members[(token & !VIDEO_TOKEN) as usize].video.as_mut() else {
                        continue;
                    };
                    for _ in 0..64 {
                        let Ok(len) = v.sock.recv(&mut buf) else {
                            break;
                        };
                        v.handle(&buf[..len], now, counting);
                    }
                    continue;
                }
                // One datagram per readiness (level-triggered: more is reported again), which
                // saves the EAGAIN read at 50 pps.
                let m = &mut members[token as usize];
                if let Ok(len) = m.sock.recv(&mut buf) {
                    m.handle_rtp(&buf[..len], now, counting, &magnitude, &mut pcm);
                }
            }
            if ready < events.len() {
                break;
            }
        }
        if let Some(d) = (now + tick).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    };
    let wall = w1.duration_since(w0).as_secs_f64();
    let stat_cpu = server_cpu() - cpu_w0;
    let cpu = server_sched() - sched_w0;
    let client_cpu = self_cpu() - self_w0;
    // The rooms' counters at the window's end, before anyone leaves (it changes them).
    let room_video_w1 = match video.admin {
        Some((a, f, r)) if video.on() => room_video(a, f, r),
        _ => None,
    };
    if let Ok((c, subs)) = count_rx.recv_timeout(Duration::from_secs(5)) {
        server_count = c;
        server_subscriptions = subs;
    }
    let _ = leave_tx.send(());
    let leave = match signalling.join() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => format!("leaving failed: {e:#}"),
        Err(_) => "the signalling thread panicked".to_string(),
    };

    // Results.
    let joined: Vec<&Member> = members
        .iter()
        .filter(|m| m.join_started.is_some())
        .collect();
    let with_audio = joined.iter().filter(|m| m.remote.is_some()).count();
    let mut join_times: Vec<Duration> = joined
        .iter()
        .filter_map(|m| Some(m.first_rtp?.duration_since(m.join_started?)))
        .collect();
    join_times.sort();
    let never_heard = joined.iter().filter(|m| m.first_rtp.is_none()).count();
    let silent = joined.iter().filter(|m| m.rx.rx == 0).count();
    let (mut expected, mut received) = (0u64, 0u64);
    for m in &joined {
        if let Some(e) = m.rx.expected() {
            expected += e;
            received += m.rx.rx;
        }
    }
    let loss_pct = if expected == 0 {
        100.0
    } else {
        100.0 * expected.saturating_sub(received) as f64 / expected as f64
    };
    // Packets per participant-second against 50: a mixer that falls behind sends fewer
    // packets without gaps in its sequence numbers.
    let rate = received as f64 / (with_audio.max(1) as f64 * wall * 50.0);
    // A participant hears the mix when ≥ 90 % of its frames in the window are loud.
    let hearing = joined
        .iter()
        .filter(|m| m.rx.rx > 0 && m.loud as f64 >= 0.9 * m.rx.rx as f64)
        .count();
    let loud_share = joined.iter().map(|m| m.loud).sum::<u64>() as f64 / received.max(1) as f64;
    let foreign: u64 = members.iter().map(|m| m.foreign).sum();
    let per_core = if cpu > 0.0 {
        joined.len() as f64 / (cpu / wall)
    } else {
        f64::INFINITY
    };
    lags.sort();
    let lag_p99 = quantile_ms(&lags, 0.99);
    eprintln!(
        "{label}: {} of {n} joined in {join_s:.1}s (server CPU {join_cpu:.2}s); join → first RTP p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {never_heard} got no RTP",
        joined.len(),
        quantile_ms(&join_times, 0.5),
        quantile_ms(&join_times, 0.95),
        quantile_ms(&join_times, 1.0),
    );
    for e in &errors {
        eprintln!("{label}: join failed: {e}");
    }
    eprintln!(
        "{label}: window {wall:.1}s: sent {sent_window}, received {received} of {expected} expected (loss {loss_pct:.3} %, rate {rate:.3} of 50 pps), \
         {hearing} of {} hear the talkers ({:.1} % loud frames), {silent} silent; server CPU {cpu:.2}s (utime+stime {stat_cpu:.2}s) = {:.1} % → {per_core:.0} participants/core; \
         client CPU {:.1} %, send lag p99 {lag_p99:.2} ms max {:.1} ms, send errors {send_errors}, foreign {foreign}; server counts {}; {leave}",
        joined.len(),
        100.0 * loud_share,
        100.0 * cpu / wall,
        100.0 * client_cpu / wall,
        lag_max.as_secs_f64() * 1000.0,
        server_count.map_or("-".to_string(), |c| c.to_string()),
    );
    print!(
        "RESULT label={label} codec={:?} opus_capture={} participants={n} rooms={} talkers={} joined={} join_failed={join_failed} no_rtp={never_heard} \
         silent={silent} hearing={hearing} loud_pct={:.1} loss_pct={loss_pct:.3} rate={rate:.4} received={received} expected={expected} \
         wall={wall:.3} server_cpu={cpu:.3} server_cpu_stat={stat_cpu:.2} server_cpu_pct={:.1} per_core={per_core:.0} join_p50_ms={:.2} join_p95_ms={:.2} \
         join_max_ms={:.2} join_s={join_s:.2} join_server_cpu={join_cpu:.2} client_cpu_pct={:.1} send_lag_p99_ms={lag_p99:.2} \
         send_errors={send_errors} server_count={} audio_lines={with_audio}",
        l.codec,
        l.opus_capture,
        plan.rooms,
        plan.talkers,
        joined.len(),
        100.0 * loud_share,
        100.0 * cpu / wall,
        quantile_ms(&join_times, 0.5),
        quantile_ms(&join_times, 0.95),
        quantile_ms(&join_times, 1.0),
        100.0 * client_cpu / wall,
        server_count.map_or(-1, |c| c as i64),
    );
    // The video fields continue the RESULT line.
    if video.on() {
        let srv0 = room_video_w0.and_then(|h| h.join().ok().flatten());
        let srv1 = room_video_w1;
        video_result(
            &label,
            &joined,
            &video,
            &vt,
            wall,
            cpu,
            srv0.zip(srv1),
            server_subscriptions,
        );
    }
    println!();
    Ok(())
}

/// The video part of the RESULT line (appended to it) and its human-readable summary.
#[allow(clippy::too_many_arguments)] // one call, the run's results
fn video_result(
    label: &str,
    joined: &[&Member],
    video: &Video,
    vt: &VideoTally,
    wall: f64,
    cpu: f64,
    srv: Option<(RoomVideo, RoomVideo)>,
    subscriptions: Option<usize>,
) {
    let vs: Vec<&VideoMember> = joined.iter().filter_map(|m| m.video.as_ref()).collect();
    let with_video = vs.iter().filter(|v| v.remote.is_some()).count();
    let rx: u64 = vs.iter().map(|v| v.rx.rx).sum();
    let expected: u64 = vs.iter().filter_map(|v| v.rx.expected()).sum();
    let receiving = vs.iter().filter(|v| v.rx.rx > 0).count();
    let never = vs.iter().filter(|v| v.first_rx.is_none()).count();
    let loss_pct = if expected == 0 {
        100.0
    } else {
        100.0 * expected.saturating_sub(rx) as f64 / expected as f64
    };
    let out_pps = rx as f64 / wall;
    let in_pps = vt.sent_window as f64 / wall;
    let per_core = if cpu > 0.0 {
        out_pps / (cpu / wall)
    } else {
        f64::INFINITY
    };
    // Each participant has one slot: with two cameras or more, it receives one stream.
    let out_rate = out_pps / (with_video.max(1) as f64 * f64::from(video.pps));
    let plis: u64 = vs.iter().map(|v| v.plis).sum();
    let plis_window: u64 = vs.iter().map(|v| v.plis_window).sum();
    let firs: u64 = vs.iter().map(|v| v.firs).sum();
    let keyframes_rx: u64 = vs.iter().map(|v| v.keyframes_rx).sum();
    let foreign: u64 = vs.iter().map(|v| v.foreign).sum();
    let (srv_fwd_pps, srv_kf, srv_dropped, srv_pub, srv_subs, srv_n) = match srv {
        Some((a, b)) => (
            (b.forwarded.saturating_sub(a.forwarded)) as f64 / wall,
            b.keyframe_requests.saturating_sub(a.keyframe_requests) as i64,
            b.dropped.saturating_sub(a.dropped) as i64,
            b.publishers as i64,
            b.subscriptions as i64,
            b.last_n as i64,
        ),
        // A server without Tambun's room counters may still count its subscriptions.
        None => (
            f64::NAN,
            -1,
            -1,
            -1,
            subscriptions.map_or(-1, |s| s as i64),
            -1,
        ),
    };
    eprintln!(
        "{label}: video window {wall:.1}s: sent {} ({in_pps:.0} pps), received {rx} of {expected} expected (loss {loss_pct:.3} %, {out_pps:.0} pps = {:.3} of one stream each), \
         {receiving} of {with_video} receiving ({never} never); {per_core:.0} video packets out per core-second; PLIs {plis} ({plis_window} in the window), FIRs {firs}, \
         keyframes sent {} ({} after a PLI), received {keyframes_rx} in the window; foreign {foreign}, send errors {}, send lag max {:.1} ms; \
         the rooms say: forwarded {srv_fwd_pps:.0} pps, {srv_kf} keyframe requests and {srv_dropped} dropped in the window, {srv_pub} publishers, {srv_subs} subscriptions, last_n {srv_n}",
        vt.sent_window,
        out_rate,
        vt.keyframes_sent,
        vt.keyframes_on_pli,
        vt.sent_errors,
        vt.lag_max.as_secs_f64() * 1000.0,
    );
    print!(
        " video_pps={} video_bytes={} video_joined={with_video} video_receiving={receiving} video_never={never} video_in_pps={in_pps:.1} \
         video_out_pps={out_pps:.1} video_out_rate={out_rate:.4} video_received={rx} video_expected={expected} video_loss_pct={loss_pct:.3} \
         video_per_core={per_core:.0} plis={plis} plis_window={plis_window} firs={firs} keyframes_sent={} keyframes_on_pli={} \
         keyframes_rx={keyframes_rx} video_foreign={foreign} video_send_errors={} srv_forwarded_pps={srv_fwd_pps:.1} \
         srv_keyframe_requests={srv_kf} srv_dropped={srv_dropped} srv_publishers={srv_pub} srv_subscriptions={srv_subs} srv_last_n={srv_n}",
        video.pps,
        video.bytes,
        vt.keyframes_sent,
        vt.keyframes_on_pli,
        vt.sent_errors,
    );
}
