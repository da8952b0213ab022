//! The runtime: the only async code in Tambun. It owns the sockets, the clock and the threads,
//! and drives the sans-IO [`Switch`] with them.
//!
//! - `udp`/`tcp`/`tls`: one reader task per UDP socket and per TCP or TLS connection turns
//!   bytes into [`Input`]s on one bounded channel; stream framing (Content-Length, CRLF
//!   keep-alives) happens in the reader, the same for TCP and TLS. `tls` also owns the server
//!   certificate (configured, or self-signed and kept next to the database).
//! - `conns`: per-source and total limits on stream connections, and their counters.
//! - the driver (this file): the single owner of the [`Switch`]; it takes inputs, sends what
//!   the switch returns, and sleeps until the switch's next deadline.
//! - `store_thread`: a blocking thread owning the SQLite connection: writes binding changes,
//!   call records and feature changes in batches, and polls `PRAGMA data_version` so CLI
//!   edits reach the switch within a second.
//! - durable before acknowledged (group commit): what the switch sends after an input that
//!   changed durable state (a binding, a call record, a feature) is held until the store
//!   thread reports that batch committed; transmits produced meanwhile queue behind it, so
//!   order is kept. The sans-IO switch knows nothing of this.
//! - `admin`: the loopback HTTP API (`/api/registrations`, `/health`).
//!
//! Shutdown: SIGTERM or Ctrl-C cancels one token; the driver flushes pending writes to the
//! store thread and every task ends.

mod admin;
mod conns;
mod console;
mod relay;
mod store_thread;
mod tcp;
mod tls;
mod udp;
mod web;

pub(crate) use tls::file_fingerprint;
pub use tls::{fingerprint, self_signed_paths, TlsError};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dialplan::Dialplan;
use crate::proxy::records::LiveCall;
use crate::registrar::{Accounts, Authenticator, Registrar, Settings};
use crate::sip::auth::{Algorithm, NonceKey};
use crate::sip::message::Limits;
use crate::sip::transaction::{Peer, Transmit};
use crate::store::{OpdRow, Store};
use crate::switch::{Durable, Output, RegistrationView, Switch};
use crate::types::{Now, OpdCode, Transport};

/// Connection ids for stream transports; for UDP, `Peer::conn` holds the index of the local
/// socket the datagram came in on, so answers leave from the same address.
pub(crate) type ConnId = u64;

/// Everything the driver reacts to.
pub(crate) enum Input {
    Datagram {
        socket: usize,
        src: SocketAddr,
        data: Bytes,
    },
    Stream {
        conn: ConnId,
        transport: Transport,
        src: SocketAddr,
        data: Bytes,
    },
    ConnOpened {
        conn: ConnId,
        local: SocketAddr,
        remote: SocketAddr,
        transport: Transport,
        writer: mpsc::Sender<Bytes>,
        /// Cancelled by the driver to close the connection (its source got banned).
        close: CancellationToken,
    },
    ConnClosed {
        conn: ConnId,
    },
    /// A connection the switch asked for (to a carrier) could not be opened.
    ConnectFailed {
        addr: SocketAddr,
        transport: Transport,
        why: String,
    },
    Accounts(Accounts),
    Registrations {
        opd: Option<OpdCode>,
        reply: oneshot::Sender<Vec<RegistrationView>>,
    },
    Calls {
        reply: oneshot::Sender<Vec<LiveCall>>,
    },
    /// The carriers of the central trunk (`tambun trunk status`).
    Trunks {
        reply: oneshot::Sender<Vec<crate::trunk::TrunkView>>,
    },
    /// The carriers' secrets, reloaded after another connection committed.
    TrunkSecrets(Vec<crate::trunk::TrunkSecret>),
    /// Every OPD with a monthly budget and its use (`GET /api/budgets`).
    Budgets {
        reply: oneshot::Sender<Vec<crate::proxy::budget::BudgetView>>,
    },
    /// The conference rooms with participants.
    Rooms {
        reply: oneshot::Sender<Vec<crate::proxy::rooms::RoomView>>,
    },
    /// The operator's action on a room (`tambun conf mute|kick|lock`).
    RoomAction {
        room: String,
        action: crate::proxy::rooms::RoomAction,
        reply: oneshot::Sender<
            Result<crate::proxy::rooms::RoomActionDone, crate::proxy::rooms::RoomActionError>,
        >,
    },
    /// The softphone page's directory, for an extension that gave its password.
    Directory {
        user: String,
        password: String,
        source: std::net::IpAddr,
        reply: oneshot::Sender<Option<crate::directory::Directory>>,
    },
    /// The softphone page's conference rooms, for an extension that gave its password.
    PhoneRooms {
        user: String,
        password: String,
        source: std::net::IpAddr,
        reply: oneshot::Sender<Option<crate::directory::PhoneRooms>>,
    },
    /// A moderator's action on a room from the softphone page.
    PhoneRoomAction {
        user: String,
        password: String,
        source: std::net::IpAddr,
        room: String,
        action: crate::proxy::rooms::RoomAction,
        reply: oneshot::Sender<
            Result<crate::proxy::rooms::RoomActionDone, crate::switch::PageRoomError>,
        >,
    },
    /// A `/metrics` scrape: the switch's counters and gauges.
    Metrics {
        reply: oneshot::Sender<crate::switch::SwitchMetrics>,
    },
    /// Reload the dialplan from its directory (SIGHUP or the admin API); the reply carries the
    /// number of OPDs, or the errors that made the switch keep the previous plan.
    ReloadDialplan {
        reply: Option<oneshot::Sender<Result<usize, Vec<String>>>>,
    },
    /// A report of the media engine (a session opened, failed, closed, went silent).
    Media(crate::media::MediaEvent),
    /// The ban list changed in the store (`tambun ban add|rm`).
    Bans(Vec<crate::guard::Ban>),
}

/// Depth of the input queue; readers wait when it is full (back-pressure, no unbounded memory).
const INPUT_QUEUE: usize = 16_384;

pub(crate) fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Now {
        instant: Instant::now(),
        unix: wall.as_secs(),
        unix_ms: wall.as_millis() as u64,
    }
}

/// Runs the switch until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    ignore_sigpipe();
    let dialplan = Dialplan::load_dir(&config.dialplan).map_err(|e| {
        anyhow::anyhow!(
            "the dialplan in {} has errors:\n{e}",
            config.dialplan.display()
        )
    })?;
    let mut store = Store::open(&config.db)
        .with_context(|| format!("cannot open the database {}", config.db.display()))?;
    store.sync_opds(&OpdRow::all_of(&dialplan))?;
    let realm = store.realm()?;
    let accounts = store.accounts()?;
    let saved = store.bindings(now())?;
    let bans = store.bans(now().unix as i64)?;
    tracing::info!(
        opds = dialplan.opds().len(),
        extensions = accounts.len(),
        realm = %realm,
        "loaded dialplan {} and database {}",
        config.dialplan.display(),
        config.db.display()
    );

    let settings = Settings {
        min_expires: config.registrar.min_expires,
        max_expires: config.registrar.max_expires,
        default_expires: config.registrar.default_expires,
        ..Settings::default()
    };
    let algorithms = config
        .registrar
        .digest_algorithms
        .iter()
        .map(|a| {
            if a.eq_ignore_ascii_case("SHA-256") {
                Algorithm::Sha256
            } else {
                Algorithm::Md5
            }
        })
        .collect();
    let authn = Authenticator::new(
        realm,
        NonceKey::random(),
        config.registrar.nonce_lifetime_secs as u64,
    )
    .with_algorithms(algorithms, config.registrar.md5_only_user_agents.clone());
    let mut registrar = Registrar::new(authn, settings);
    registrar.handle_accounts(accounts);
    let limits = Limits {
        max_message: config.max_message_bytes,
        max_headers: config.max_headers,
    };
    let dialplan_dir = config.dialplan.clone();
    let max_call = Duration::from_secs(config.calls.max_duration_secs.max(1));
    let mut switch = Switch::new(limits, registrar, Arc::new(dialplan), max_call);
    switch.set_domain(config.domain.clone());
    switch.set_instance(format!("{:08x}", rand::random::<u32>()), now());
    switch.handle_trunk_secrets(store.trunk_secrets().context("the trunk secrets")?);
    switch.set_dialog_key(crate::proxy::token::DialogKey::new(
        store.dialog_secret().context("the dialog secret")?,
    ));
    let guard = crate::guard::Guard::new(&config.guard).context("guard.allow")?;
    let allow = guard.allow_list().to_vec();
    switch.set_guard(guard);
    let t = now();
    tracing::info!(bans = bans.len(), "loaded the ban list");
    switch.handle_bans(bans, t);
    switch.restore_bindings(saved, t);
    // Answered calls the last run never saw end (a crash): recorded as interrupted, before the
    // toll limits count the trunk calls of the last hour.
    let interrupted = store.recover_interrupted_calls(t.unix_ms as i64)?;
    for r in &interrupted {
        tracing::warn!(
            call_id = %r.call_id,
            caller = %r.caller,
            dialled = %r.dialled,
            trunk = r.trunk,
            talk_secs = r.duration_ms() / 1000,
            "a call was in progress when the switch last stopped; recorded as interrupted"
        );
    }
    // Toll limits; the trunk calls of the last hour count again (docs/decisions.md).
    switch.set_toll_limits(config.toll.limits()?);
    let hour_ago = (t.unix_ms as i64).saturating_sub(3_600_000);
    let recent_trunk_calls = store.trunk_calls_since(hour_ago)?;
    tracing::info!(
        trunk_calls = recent_trunk_calls.len(),
        "trunk calls of the last hour count for the hourly toll limits"
    );
    switch.restore_trunk_history(recent_trunk_calls, t);
    // Monthly budgets: the answered trunk calls of this month (WIB) count again.
    let month = crate::proxy::budget::Month::of_unix_ms(t.unix_ms as i64);
    let month_calls = store.answered_trunk_calls_since(month.start_unix_ms())?;
    tracing::info!(
        trunk_calls = month_calls.len(),
        month = %month,
        "answered trunk calls of this month count for the monthly budgets"
    );
    switch.restore_budget_usage(month_calls, t);
    tracing::info!(
        registrations = switch.registration_count(),
        "restored registrations"
    );

    let shutdown = CancellationToken::new();
    let (tx, rx) = mpsc::channel::<Input>(INPUT_QUEUE);

    let gate = conns::ConnGate::new(
        config.connections.max_per_source,
        config.connections.max_total,
        allow,
    );
    let stream_ctx = tcp::StreamCtx {
        tx: tx.clone(),
        shutdown: shutdown.clone(),
        limits,
        gate: gate.clone(),
        first_message: Duration::from_secs(config.connections.first_message_secs),
        idle: Duration::from_secs(config.conn_idle_secs()),
    };

    // Sockets: UDP and TCP on each listen address.
    let mut udp_sockets = Vec::new();
    let mut switch_udp_advertised = Vec::new();
    let mut relay_handle: Option<Arc<crate::media::Relay>> = None;
    let mut relay_glue: Option<Arc<relay::RelayGlue>> = None;
    // The page's room view asks the relay who talks; the relay starts after the web listener.
    let web_relay: Arc<std::sync::OnceLock<Arc<relay::RelayGlue>>> = Arc::default();
    for (i, addr) in config.listen.iter().enumerate() {
        let sock = Arc::new(udp::bind(*addr).with_context(|| format!("cannot bind UDP {addr}"))?);
        let advertised = udp::advertised(sock.local_addr()?);
        switch.add_udp_socket(advertised);
        switch_udp_advertised.push(advertised);
        tracing::info!(
            "listening on udp {} (advertised as {advertised})",
            sock.local_addr()?
        );
        tokio::spawn(udp::read_loop(
            sock.clone(),
            i,
            tx.clone(),
            shutdown.clone(),
            limits,
        ));
        udp_sockets.push(sock);
        let listener = tcp::bind(*addr).with_context(|| format!("cannot bind TCP {addr}"))?;
        tracing::info!("listening on tcp {}", listener.local_addr()?);
        switch.add_stream_listener(listener.local_addr()?);
        tokio::spawn(tcp::accept_loop(listener, stream_ctx.clone()));
    }

    let tls_addrs = config.tls.listen_addrs(&config.listen);
    let web_addr = config.web.listen_addr(&config.listen);
    let mut web_acceptor = None;
    if !tls_addrs.is_empty() || web_addr.is_some() {
        let mut cert_addrs = tls_addrs.clone();
        cert_addrs.extend(web_addr);
        let names = tls::certificate_names(config.domain.as_deref(), &cert_addrs);
        let server = tls::server(&config.tls, &config.db, &names)?;
        tracing::info!(
            "TLS certificate {} ({}), SHA-256 fingerprint {}",
            server.cert_path.display(),
            if server.generated {
                "self-signed, generated now"
            } else if config.tls.cert.is_some() {
                "configured"
            } else {
                "self-signed, kept from an earlier start"
            },
            server.fingerprint
        );
        let handshake = Duration::from_secs(config.tls.handshake_timeout_secs);
        for addr in tls_addrs {
            let listener = tcp::bind(addr).with_context(|| {
                format!(
                    "cannot bind TLS {addr} (set [tls] listen or port, --tls-listen, or --no-tls)"
                )
            })?;
            tracing::info!("listening on tls {}", listener.local_addr()?);
            switch.add_stream_listener(listener.local_addr()?);
            tokio::spawn(tls::accept_loop(
                listener,
                server.acceptor.clone(),
                handshake,
                stream_ctx.clone(),
            ));
        }
        web_acceptor = Some(server.web_acceptor);
    }
    let handshake = Duration::from_secs(config.tls.handshake_timeout_secs);
    let web_listeners = [
        (web_addr, Transport::Wss, "--web-listen or --no-web"),
        (config.websocket.listen, Transport::Ws, "--ws-listen"),
    ];
    for (addr, transport, flags) in web_listeners {
        let Some(addr) = addr else { continue };
        let listener = tcp::bind(addr).with_context(|| {
            format!("cannot bind the {transport} listener {addr} (see {flags})")
        })?;
        let bound = listener.local_addr()?;
        match transport {
            Transport::Wss => {
                tracing::info!("softphone page on https://{bound}/phone, SIP over wss://{bound}/ws")
            }
            _ => tracing::info!("SIP over ws://{bound}/ws"),
        }
        switch.add_stream_listener(bound);
        let ctx = web::WebCtx {
            relay: web_relay.clone(),
            stream: stream_ctx.clone(),
            transport,
            tls: if transport == Transport::Wss {
                web_acceptor.clone()
            } else {
                None
            },
            handshake,
            domain: config.domain.clone(),
            console: (transport == Transport::Wss).then(|| {
                Arc::new(console::Console::new(
                    config.db.clone(),
                    config.dialplan.clone(),
                    stream_ctx.tx.clone(),
                ))
            }),
        };
        tokio::spawn(web::accept_loop(listener, Arc::new(ctx)));
    }
    // Connections the switch opens to carriers (TCP trunks) live like accepted ones.
    let outbound = stream_ctx.clone();
    drop(stream_ctx);

    if config.media.enabled {
        let advertise = config
            .media
            .advertise
            .or(switch_udp_advertised.first().map(|a| a.ip()))
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let bind = config.media.bind.unwrap_or_else(|| {
            config
                .listen
                .first()
                .map(|a| a.ip())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        });
        let relay_cfg_range = config.media.port_range()?;
        let relay_cfg = crate::media::RelayConfig {
            port_range: relay_cfg_range,
            bind,
            advertise,
            threads: config.media.threads,
            inactivity: Duration::from_secs(config.media.inactivity_secs),
            ..crate::media::RelayConfig::default()
        };
        let relay =
            Arc::new(crate::media::Relay::start(relay_cfg).context("cannot start the RTP relay")?);
        tracing::info!(
            "RTP relay on {bind} ports {} advertised as {advertise}",
            config.media.rtp_ports
        );
        let glue = Arc::new(relay::RelayGlue::new(relay.clone()));
        let _ = web_relay.set(glue.clone());
        let mut control = crate::media::MediaControl::new(relay_cfg_range, advertise);
        if let Some(fingerprint) = relay.fingerprint() {
            tracing::info!("WebRTC gateway: DTLS certificate {fingerprint}");
            control.set_fingerprint(fingerprint.to_string());
        }
        // The first reserve is bound before the first call can come (the driver is not
        // running yet: waiting here blocks nothing).
        while let Some(cmd) = control.poll_command() {
            relay.submit(cmd);
        }
        // (pairs another process holds are skipped: the control reserves further along until
        // enough are ready, or it gives up for now)
        let bind_by = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = bind_by.saturating_duration_since(std::time::Instant::now());
            match relay.wait_event(left) {
                Some(e) => {
                    control.handle_event(&e);
                }
                None => anyhow::bail!("the RTP relay did not bind its first ports"),
            }
            if !control.is_reserving() {
                break;
            }
            while let Some(cmd) = control.poll_command() {
                relay.submit(cmd);
            }
        }
        tracing::info!(ready = control.ready(), "relay ports bound ahead");
        switch.set_media(control);
        relay::watch_events(glue.clone(), tx.clone(), shutdown.clone());
        relay_glue = Some(glue);
        relay_handle = Some(relay);
    } else {
        tracing::info!("media relay disabled: phones send RTP to each other");
    }

    let admin_listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot bind the admin API on {}", config.admin))?;
    tracing::info!("admin API on http://{}", admin_listener.local_addr()?);
    let admin_state = admin::AdminState {
        driver: tx.clone(),
        relay: relay_glue,
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        conns: gate,
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));

    let store_handle = store_thread::spawn(store, tx.clone());

    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let tx = tx.clone();
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the dialplan");
                if tx
                    .send(Input::ReloadDialplan { reply: None })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut driver = Driver {
        switch,
        udp: udp_sockets,
        conns: HashMap::new(),
        store: store_handle.sender(),
        relay: relay_handle.clone(),
        held: VecDeque::new(),
        next_commit: 0,
        store_gone: false,
        dialplan_dir,
        next_trim: Instant::now() + TRIM_EVERY,
        outbound,
    };
    driver
        .run(rx, store_handle.committed(), shutdown.clone())
        .await;
    store_handle.finish().await;
    // The relay's threads stop when its last handle goes.
    drop(driver);
    drop(relay_handle);
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The CLI restores SIGPIPE's default action (so `tambun ext list | head` ends quietly), but
/// for the switch that action is death: writing to a TCP or TLS peer that has just hung up
/// (a TLS 1.3 session ticket after a client's close, a response after a reset) would kill the
/// process. The switch ignores SIGPIPE and gets EPIPE on that one connection instead.
fn ignore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: SIG_IGN is a valid disposition; setting it races with nothing we rely on.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The single owner of the switch.
struct Driver {
    switch: Switch,
    udp: Vec<Arc<UdpSocket>>,
    conns: HashMap<ConnId, (mpsc::Sender<Bytes>, CancellationToken)>,
    store: std::sync::mpsc::Sender<store_thread::Command>,
    /// The media engine the switch's media commands go to.
    relay: Option<Arc<crate::media::Relay>>,
    /// Transmits waiting for the commit of their batch (`Commit` marker), oldest first.
    held: VecDeque<(u64, Vec<Transmit>)>,
    /// The last `Commit` marker sent to the store thread.
    next_commit: u64,
    /// The store thread ended early: transmits are no longer held.
    store_gone: bool,
    dialplan_dir: std::path::PathBuf,
    next_trim: Instant,
    /// For connections the switch opens (to carriers).
    outbound: tcp::StreamCtx,
}

/// How often free heap pages are returned to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(30);

impl Driver {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Input>,
        mut committed: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        loop {
            let deadline = self
                .switch
                .poll_timeout()
                .map_or_else(far, tokio::time::Instant::from_std);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Before the inputs: under load they are always ready, and a commit must
                // not wait for a quiet moment.
                changed = committed.changed(), if !self.held.is_empty() => {
                    if changed.is_err() {
                        // Nothing will commit any more: answer without waiting.
                        tracing::error!("the store thread stopped; answering without persisting");
                        self.store_gone = true;
                        self.release(u64::MAX);
                    }
                }
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let t = now();
                    // The overload rule sees how far the driver is behind.
                    self.switch.handle_queue_depth(rx.len());
                    self.handle(input, t);
                    // Drain what else is queued before flushing: one clock read per batch.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(input) => self.handle(input, t),
                            Err(_) => break,
                        }
                    }
                }
                _ = &mut sleep => {
                    let t = now();
                    self.switch.handle_timeout(t);
                    self.release_memory(t.instant);
                }
            }
            let seq = *committed.borrow_and_update();
            self.release(seq);
            self.flush();
        }
        self.flush();
        // What was answered before the shutdown goes out once it is on disk (bounded wait).
        if let Some(&(last, _)) = self.held.back() {
            let done = committed.wait_for(|&seq| seq >= last);
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            let seq = *committed.borrow();
            self.release(seq);
        }
    }

    /// Sends the held transmits whose batch is committed (marker `seq` or earlier).
    fn release(&mut self, seq: u64) {
        while self.held.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, transmits) = self.held.pop_front().expect("front checked above");
            for t in transmits {
                self.send(t);
            }
        }
    }

    /// Expired transactions and bindings free their memory to the allocator, but glibc keeps
    /// it mapped; after a burst (10,000 phones re-registering after a power cut) that would pin
    /// the peak for the life of the process. Hand free pages back now and then.
    fn release_memory(&mut self, now: Instant) {
        if now < self.next_trim {
            return;
        }
        self.next_trim = now + TRIM_EVERY;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn handle(&mut self, input: Input, t: Now) {
        match input {
            Input::Datagram { socket, src, data } => {
                let peer = Peer {
                    addr: src,
                    transport: Transport::Udp,
                    conn: Some(socket as u64),
                };
                self.switch.handle_datagram(data, peer, t);
            }
            Input::Stream {
                conn,
                transport,
                src,
                data,
            } => {
                let peer = Peer {
                    addr: src,
                    transport,
                    conn: Some(conn),
                };
                self.switch.handle_stream_message(data, peer, t);
            }
            Input::ConnOpened {
                conn,
                local,
                remote,
                transport,
                writer,
                close,
            } => {
                self.conns.insert(conn, (writer, close));
                self.switch
                    .handle_conn_opened(conn, local, remote, transport);
            }
            Input::ConnClosed { conn } => {
                self.conns.remove(&conn);
                self.switch.handle_conn_closed(conn);
            }
            Input::ConnectFailed {
                addr,
                transport,
                why,
            } => self.switch.handle_connect_failed(addr, transport, &why, t),
            Input::Calls { reply } => {
                let _ = reply.send(self.switch.live_calls(t.instant));
            }
            Input::Rooms { reply } => {
                let _ = reply.send(self.switch.rooms());
            }
            Input::Trunks { reply } => {
                let _ = reply.send(self.switch.trunk_views(t.instant));
            }
            Input::TrunkSecrets(secrets) => self.switch.handle_trunk_secrets(secrets),
            Input::Budgets { reply } => {
                let _ = reply.send(self.switch.budgets(t));
            }
            Input::RoomAction {
                room,
                action,
                reply,
            } => {
                let _ = reply.send(self.switch.room_action(&room, action, t));
            }
            Input::Directory {
                user,
                password,
                source,
                reply,
            } => {
                let _ = reply.send(self.switch.directory(&user, &password, source, t));
            }
            Input::PhoneRooms {
                user,
                password,
                source,
                reply,
            } => {
                let _ = reply.send(self.switch.phone_rooms(&user, &password, source, t));
            }
            Input::PhoneRoomAction {
                user,
                password,
                source,
                room,
                action,
                reply,
            } => {
                let _ = reply.send(
                    self.switch
                        .phone_room_action(&user, &password, source, &room, action, t),
                );
            }
            Input::Metrics { reply } => {
                let _ = reply.send(self.switch.metrics(t));
            }
            Input::Media(event) => self.switch.handle_media(event, t),
            Input::ReloadDialplan { reply } => {
                let result = self.reload_dialplan();
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Input::Accounts(accounts) => {
                tracing::info!(extensions = accounts.len(), "extension directory reloaded");
                self.switch.handle_accounts(accounts);
            }
            Input::Bans(bans) => {
                tracing::info!(bans = bans.len(), "ban list reloaded");
                self.switch.handle_bans(bans, t);
            }
            Input::Registrations { opd, reply } => {
                let _ = reply.send(self.switch.registrations(opd.as_ref(), t.instant));
            }
        }
    }

    /// Loads the dialplan directory again; a plan with errors is refused and the running one
    /// stays. (Reading a few dozen small files on the driver is a millisecond; reloads are
    /// rare and operator-driven.)
    fn reload_dialplan(&mut self) -> Result<usize, Vec<String>> {
        match Dialplan::load_dir(&self.dialplan_dir) {
            Ok(plan) => {
                let n = plan.opds().len();
                let rows = OpdRow::all_of(&plan);
                self.switch.handle_dialplan(Arc::new(plan));
                let _ = self.store.send(store_thread::Command::SyncOpds(rows));
                tracing::info!(opds = n, "dialplan reloaded");
                Ok(n)
            }
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                tracing::error!(
                    "dialplan refused, the previous plan keeps serving:\n{}",
                    lines.join("\n")
                );
                Err(lines)
            }
        }
    }

    /// Hands what the switch changed durably to the store thread and sends what it produced:
    /// at once when nothing durable changed and nothing is held, else after the commit.
    fn flush(&mut self) {
        // One loop over the switch's outputs, in its order. Writes go to the store thread
        // grouped by kind (one SQLite transaction per group); the transmits of this batch
        // wait for the commit when anything they may acknowledge was written.
        let mut out = Vec::new();
        let mut changes = Vec::new();
        let mut records = Vec::new();
        let mut open = Vec::new();
        let mut effects = Vec::new();
        let mut bans = Vec::new();
        let mut waits = false;
        while let Some(output) = self.switch.poll_output() {
            match output {
                Output::Media(cmd) => match &self.relay {
                    Some(relay) => relay.submit(cmd),
                    None => tracing::error!(?cmd, "a media command without a relay"),
                },
                Output::Transmit(t) => out.push(t),
                Output::CloseConn(conn) => {
                    if let Some((_, close)) = self.conns.get(&conn) {
                        close.cancel();
                    }
                }
                Output::Connect(c) => {
                    tokio::spawn(tcp::connect(c, self.outbound.clone()));
                }
                Output::Store(d) => {
                    waits |= d.is_acknowledged();
                    match d {
                        Durable::Binding(c) => changes.push(c),
                        Durable::CallRecord(r) => records.push(r),
                        Durable::OpenCall(op) => open.push(op),
                        Durable::Effect(e) => effects.push(e),
                        Durable::Ban(b) => bans.push(b),
                    }
                }
            }
        }
        // (a send fails only when the store thread is gone: then nothing can be waited for)
        let mut sent = true;
        if !changes.is_empty() {
            sent &= self
                .store
                .send(store_thread::Command::Changes(changes))
                .is_ok();
        }
        if !records.is_empty() || !open.is_empty() {
            sent &= self
                .store
                .send(store_thread::Command::Calls { records, open })
                .is_ok();
        }
        for effect in effects {
            sent &= self
                .store
                .send(store_thread::Command::Effect(effect))
                .is_ok();
        }
        if !bans.is_empty() {
            sent &= self.store.send(store_thread::Command::Bans(bans)).is_ok();
        }
        if waits && sent && !self.store_gone {
            self.next_commit += 1;
            let _ = self
                .store
                .send(store_thread::Command::Commit(self.next_commit));
            self.held.push_back((self.next_commit, out));
        } else if let Some((_, last)) = self.held.back_mut() {
            last.extend(out); // after a held answer, never before it
        } else {
            for t in out {
                self.send(t);
            }
        }
    }

    /// Sends one transmit from the socket or connection it belongs to.
    fn send(&self, Transmit { peer, bytes }: Transmit) {
        match peer.transport {
            Transport::Udp => {
                let idx = peer.conn.unwrap_or(0) as usize;
                let Some(sock) = self
                    .udp
                    .get(idx)
                    .or_else(|| self.udp.iter().find(|s| same_family(s, peer.addr)))
                else {
                    return;
                };
                match sock.try_send_to(&bytes, peer.addr) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let sock = sock.clone();
                        tokio::spawn(async move {
                            let _ = sock.send_to(&bytes, peer.addr).await;
                        });
                    }
                    Err(e) => tracing::debug!(%peer.addr, error = %e, "udp send failed"),
                }
            }
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                let Some((w, _)) = peer.conn.and_then(|c| self.conns.get(&c)) else {
                    tracing::debug!(%peer.addr, "connection gone; response dropped");
                    return;
                };
                if w.try_send(bytes).is_err() {
                    tracing::debug!(%peer.addr, "connection writer full or closed");
                }
            }
        }
    }
}

fn same_family(sock: &UdpSocket, addr: SocketAddr) -> bool {
    sock.local_addr()
        .is_ok_and(|l| l.is_ipv4() == addr.is_ipv4())
}
