//! The operator CLI changes the DB while `tambun serve` runs; each change is seen over SIP
//! within 2 s (the switch polls the DB).

use std::time::{Duration, Instant};

use crate::common::sip::{Conn, Ua};
use crate::common::Switch;

/// How long a change may take to reach the running switch: the 2 s of the contract plus
/// what one REGISTER round trip and the test's polling add.
const WITHIN: Duration = Duration::from_millis(2_600);

/// A fresh UA's full registration (REGISTER, 401, REGISTER with credentials): the final status.
fn try_register(switch: &Switch, user: &str, password: &str) -> u16 {
    let mut ua = Ua::new(Conn::udp(switch.sip), user, password);
    ua.register_self(300).status
}

/// Repeats `check` until it holds; returns how long that took, or panics after `WITHIN`.
fn observed(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            let took = start.elapsed();
            eprintln!("{what}: observed after {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < WITHIN,
            "{what}: not observed within {WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ext_add_lets_a_new_extension_register() {
    let switch = Switch::start();
    assert_eq!(try_register(&switch, "1900", "rahasia1900"), 401);
    switch.add_ext("1900", "kesbangpol", "rahasia1900");
    observed("ext add", || {
        try_register(&switch, "1900", "rahasia1900") == 200
    });
    assert_eq!(switch.regs_of("1900").len(), 1);
}

#[test]
fn ext_passwd_refuses_the_old_password() {
    let switch = Switch::start_with_extensions(&[("1901", "kesbangpol", "lama-1901")]);
    assert_eq!(try_register(&switch, "1901", "lama-1901"), 200);
    switch.cli_ok(&["ext", "passwd", "1901", "--password", "baru-1901"]);
    observed("ext passwd (old password refused)", || {
        try_register(&switch, "1901", "lama-1901") == 401
    });
    assert_eq!(try_register(&switch, "1901", "baru-1901"), 200);
    // and it stays refused
    assert_eq!(try_register(&switch, "1901", "lama-1901"), 401);
}

#[test]
fn ext_disable_refuses_and_drops_registrations_and_enable_restores() {
    let switch = Switch::start_with_extensions(&[("1902", "kesbangpol", "rahasia1902")]);
    assert_eq!(try_register(&switch, "1902", "rahasia1902"), 200);
    assert_eq!(switch.regs_of("1902").len(), 1);
    switch.cli_ok(&["ext", "disable", "1902"]);
    observed("ext disable", || {
        switch.regs_of("1902").is_empty() && try_register(&switch, "1902", "rahasia1902") == 401
    });
    assert!(
        switch.regs_of("1902").is_empty(),
        "a refused REGISTER must not bind"
    );
    switch.cli_ok(&["ext", "enable", "1902"]);
    observed("ext enable", || {
        try_register(&switch, "1902", "rahasia1902") == 200
    });
}

#[test]
fn ext_rm_refuses_and_drops_registrations() {
    let switch = Switch::start_with_extensions(&[
        ("1903", "kesbangpol", "rahasia1903"),
        ("1904", "kesbangpol", "rahasia1904"),
    ]);
    assert_eq!(try_register(&switch, "1903", "rahasia1903"), 200);
    assert_eq!(try_register(&switch, "1904", "rahasia1904"), 200);
    switch.cli_ok(&["ext", "rm", "1903"]);
    observed("ext rm", || {
        switch.regs_of("1903").is_empty() && try_register(&switch, "1903", "rahasia1903") == 401
    });
    assert!(switch.regs_of("1903").is_empty());
    // the neighbour is untouched
    assert_eq!(switch.regs_of("1904").len(), 1);
    assert_eq!(try_register(&switch, "1904", "rahasia1904"), 200);
}
