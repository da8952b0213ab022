//! An `Authorization` / `Proxy-Authorization` value through the digest credentials parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_credentials(data));
