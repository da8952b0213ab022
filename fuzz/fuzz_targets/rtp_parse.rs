//! Untrusted datagrams through the RTP header parser, the RFC 3550 counters and the relay
//! table's per-packet path on an open session (the input is read as one datagram and as a
//! timed packet sequence; see `check_rtp_input`): no panic, headers read from inside the
//! packet, forwarding and counters as documented. Tambun has no RTCP parser: RTCP is
//! forwarded unparsed, and the RTP parser must reject RTCP multiplexed on the RTP port.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_rtp_input(data));
