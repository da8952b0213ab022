//! A TCP byte stream framed in arbitrary chunks (input layout: see `check_stream_input`).
//! Framing must not depend on the chunking and must agree with the parser on where each
//! message ends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_stream_input(data));
