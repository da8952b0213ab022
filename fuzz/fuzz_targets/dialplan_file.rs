//! One dialplan file (an OPD file or `province.toml`, chosen by the first byte; see
//! `check_dialplan_input`) validated among shipped ones: no panic, every error on a line of a
//! named file, the same answer twice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_dialplan_input(data));
