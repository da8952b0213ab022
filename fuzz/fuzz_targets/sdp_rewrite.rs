//! An SDP body (after a header choosing the relay address and ports; see `check_sdp_input`)
//! through `sdp::parse` and `sdp::rewrite`: only `c=`, `m=` ports and `a=rtcp:` may change,
//! and every enabled stream must point at the relay afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tambun_fuzz::check_sdp_input(data));
