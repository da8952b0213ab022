//! Untrusted RTP through the codecs of rooms and transcoded calls (G.711, G.722, Opus
//! decoders, the transcoder's re-encoding and RFC 4733 relaying; see `check_codec_input`): no
//! panic, and every packet out is well formed for the receiving leg.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_codec_input(data));
