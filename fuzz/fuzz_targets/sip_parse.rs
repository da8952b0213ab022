//! One datagram through the parser, validation, every typed view, a proxy splice and a body
//! swap; an edited valid message must reparse, validate and keep its views.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_datagram(data));
