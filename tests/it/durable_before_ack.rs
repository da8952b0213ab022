//! Durable before acknowledged, deterministically: the test holds SQLite's write lock on the
//! switch's own database file (a second connection in `BEGIN IMMEDIATE`, as a backup tool or
//! `sqlite3` session might), so the store thread cannot commit a new binding. The 200 to that
//! REGISTER must wait for the commit; a `kill -9` while it waits loses a registration the phone
//! was never told about, and one the phone was told about is back after the restart.
//! (`tests/crash_safety.rs` kills under SIPp load; it catches a broken hold only sometimes.)

use std::time::{Duration, Instant};

use crate::common::sip::{Conn, RegisterSpec, Ua};
use crate::common::{json_str, Switch};

const PHONES: [(&str, &str, &str); 2] = [
    ("1000", "setda", "Kunci-1000-aman"),
    ("1001", "setda", "Kunci-1001-aman"),
];

/// A phone that has its challenge and sends the authenticated REGISTER exactly once, so the
/// test sees when (and whether) the switch answers it.
struct Phone {
    ua: Ua,
    spec: RegisterSpec,
}

impl Phone {
    fn challenged(switch: &Switch, (user, _, password): (&str, &str, &str)) -> Phone {
        let mut ua = Ua::new(Conn::udp(switch.sip), user, password);
        let spec = RegisterSpec::one(&ua.contact_uri(""), 600);
        assert_eq!(ua.register_plain(&spec).status, 401);
        Phone { ua, spec }
    }

    fn send_authenticated(&mut self) {
        let challenge = self.ua.last_challenge.clone().expect("a challenge");
        self.ua.nc += 1;
        let auth = challenge.authorization(
            &self.ua.user,
            &self.ua.password,
            "REGISTER",
            &self.ua.request_uri(),
            self.ua.nc,
        );
        let request = self.ua.render(&self.spec, Some(&auth));
        let Conn::Udp(c) = &self.ua.conn else {
            unreachable!("a UDP phone")
        };
        c.send(&request);
    }

    fn final_status(&self, wait: Duration) -> Option<u16> {
        let Conn::Udp(c) = &self.ua.conn else {
            unreachable!("a UDP phone")
        };
        c.recv_final(wait).map(|r| r.status)
    }
}

/// Takes SQLite's write lock on `switch`'s database until dropped (rolled back).
fn write_lock(switch: &Switch) -> rusqlite::Connection {
    let lock = rusqlite::Connection::open(&switch.db).expect("open the switch's DB");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    lock
}

/// `phone` sends its authenticated REGISTER while the test holds the write lock (returned):
/// no final response may come while the binding cannot be written.
fn register_while_locked(
    switch: &Switch,
    phone: (&str, &str, &str),
) -> (Phone, rusqlite::Connection) {
    let mut phone = Phone::challenged(switch, phone);
    let lock = write_lock(switch);
    phone.send_authenticated();
    assert_eq!(
        phone.final_status(Duration::from_millis(1500)),
        None,
        "the 200 went out while the binding could not be written"
    );
    (phone, lock)
}

fn registered(switch: &Switch) -> Vec<String> {
    switch
        .regs()
        .iter()
        .map(|r| json_str(r, "extension"))
        .collect()
}

#[test]
fn a_registration_is_acknowledged_only_once_it_is_durable() {
    let mut switch = Switch::start_with_extensions(&PHONES);

    // 1000: the 200 waits for the lock, then comes.
    let (first, lock) = register_while_locked(&switch, PHONES[0]);
    let released = Instant::now();
    drop(lock);
    assert_eq!(
        first.final_status(Duration::from_secs(3)),
        Some(200),
        "no 200 once the binding could be written"
    );
    eprintln!(
        "200 came {:?} after the lock was released",
        released.elapsed()
    );

    // 1001: killed while its binding waits for the lock. The phone never saw a 200.
    let (second, lock) = register_while_locked(&switch, PHONES[1]);
    switch.kill9();
    drop(lock);

    switch.restart();
    assert_eq!(
        registered(&switch),
        ["1000"],
        "after the restart: the acknowledged registration, and only it"
    );
    assert_eq!(second.final_status(Duration::from_millis(500)), None);
}
