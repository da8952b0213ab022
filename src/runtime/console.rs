//! The operator web console at `/console` on the web listener (HTTPS only): the page (built
//! from `web/` with the softphone page and kept in the binary) and its JSON API under
//! `/console/api/`. Login (PBKDF2 check on a blocking thread, at most [`HASHING`] at once;
//! lock-out per `console::lockout`), sessions in a cookie (`HttpOnly; Secure;
//! SameSite=Strict; Path=/console`) with a CSRF token that every POST must carry in
//! `X-CSRF-Token` (and, when the browser sends one, a same-host `Origin`), the operator's scope
//! applied to every query and change here, server-side.
//!
//! Reads and writes go to the database on a blocking thread through one connection, like the
//! CLI: the switch sees extension and ban changes through `PRAGMA data_version`, within its
//! poll interval. Live state (registrations, calls in progress) comes from the driver, the
//! admin API's way (`Input::Registrations`, `Input::Calls`, `Input::Trunks`). Protocol decisions stay in the
//! core; the rules of accounts and sessions are `crate::console`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Input;
use crate::console::lockout::Attempts;
use crate::console::session::{fingerprint, Session, Sessions};
use crate::console::{password, Forbidden, OperatorName, Scope};
use crate::dialplan::{time, Dialplan};
use crate::guard::Ban;
use crate::store::{CdrFilter, CdrRow, Disposition, NewExtension, Store, StoreError};
use crate::types::{Extension, OpdCode};

/// The session cookie's name.
const COOKIE: &str = "tambun_console";
/// Password checks running at once (each costs a PBKDF2 with 600 000 rounds).
const HASHING: usize = 2;
/// Call records shown by a search (the export has them all).
const SHOWN_CDRS: usize = 500;
const WIB_MS: i64 = time::WIB_OFFSET_SECS * 1000;
const DAY_MS: i64 = 86_400_000;

/// The console's shared state.
pub(crate) struct Console {
    db: PathBuf,
    dialplan_dir: PathBuf,
    driver: mpsc::Sender<Input>,
    store: Arc<Mutex<Option<Store>>>,
    sessions: Mutex<Sessions>,
    hashing: Semaphore,
    decoy: Arc<OnceLock<String>>,
}

impl Console {
    pub(crate) fn new(db: PathBuf, dialplan_dir: PathBuf, driver: mpsc::Sender<Input>) -> Console {
        Console {
            db,
            dialplan_dir,
            driver,
            store: Arc::new(Mutex::new(None)),
            sessions: Mutex::new(Sessions::new()),
            hashing: Semaphore::new(HASHING),
            decoy: Arc::new(OnceLock::new()),
        }
    }

    /// Runs `f` on the database, on a blocking thread.
    async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(Store::open(&db).map_err(ApiError::store)?);
            }
            // Holds: set just above when it was empty.
            f(guard.as_mut().expect("the store was just opened"))
        })
        .await
        .map_err(|_| ApiError::Internal("console: a database task failed".into()))?
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session of this request; for a change (`mutating`), with its CSRF token and a
    /// same-host `Origin`. The operator must still exist with the password it logged in with.
    async fn auth(&self, headers: &HeaderMap, mutating: bool) -> Result<Session, ApiError> {
        let id = session_cookie(headers).ok_or(ApiError::Unauthorized)?;
        let session = self
            .sessions()
            .touch(&id, Instant::now())
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        if mutating {
            check_origin(headers)?;
            let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if !session.csrf_ok(given) {
                return Err(ApiError::Csrf);
            }
        }
        let (name, tag) = (session.operator.clone(), session.hash_tag.clone());
        let current = self
            .with_store(move |s| {
                Ok(s.operator(&name)
                    .map_err(ApiError::store)?
                    .is_some_and(|o| fingerprint(&o.password_hash) == tag))
            })
            .await?;
        if !current {
            self.sessions().remove(&id);
            return Err(ApiError::Unauthorized);
        }
        Ok(session)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(make(tx))
            .await
            .map_err(|_| ApiError::Stopping)?;
        rx.await.map_err(|_| ApiError::Stopping)
    }

    fn dialplan(&self) -> Result<Dialplan, ApiError> {
        Dialplan::load_dir(&self.dialplan_dir).map_err(|e| {
            ApiError::Internal(format!(
                "console: the dialplan does not load (`tambun dialplan check`): {e}"
            ))
        })
    }
}

/// An answer other than success: a status and a JSON `{"error": key, "message": sentence}`.
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    Csrf,
    Forbidden,
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Stopping,
    Internal(String),
}

impl ApiError {
    fn store(e: StoreError) -> ApiError {
        match e {
            StoreError::DuplicateExtension(n) => {
                ApiError::Conflict(format!("extension {n} already exists"))
            }
            StoreError::UnknownExtension(n) => {
                ApiError::NotFound(format!("extension {n} does not exist"))
            }
            StoreError::UnknownOpd(c) => ApiError::BadRequest(format!("unknown OPD '{c}'")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(_: Forbidden) -> ApiError {
        ApiError::Forbidden
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, key, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "log in first".to_owned(),
            ),
            ApiError::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "the request lacks this session's CSRF token".to_owned(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this operator may not see or change that".to_owned(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad-request", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not-found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Stopping => (
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the switch is stopping".to_owned(),
            ),
            ApiError::Internal(m) => {
                tracing::warn!("{m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the console could not do that; see the switch's log".to_owned(),
                )
            }
        };
        (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({ "error": key, "message": message })),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok_json<T: Serialize>(value: T) -> ApiResult {
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The routes of the console, for the web listener's router.
pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { page(assets::HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route(
            "/console/console.js",
            get(|| async { page(assets::JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { page(assets::CSS, "text/css; charset=utf-8") }),
        )
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/me", get(me))
        .route("/console/api/dashboard", get(dashboard))
        .route("/console/api/opds", get(opds))
        .route(
            "/console/api/extensions",
            get(extensions).post(add_extension),
        )
        .route("/console/api/extensions/import", post(import))
        .route("/console/api/extensions/{number}", post(edit_extension))
        .route(
            "/console/api/extensions/{number}/password",
            post(reset_password),
        )
        .route("/console/api/cdr", get(cdr_search))
        .route("/console/api/cdr.csv", get(cdr_export))
        .route("/console/api/usage", get(usage))
        .route("/console/api/bans", get(bans).post(add_ban))
        .route("/console/api/bans/remove", post(remove_ban))
        .with_state(console)
}

/// The console's files, built from `web/` by `build.rs`.
mod assets {
    pub const HTML: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/console.html"));
    pub const JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/console.js"));
    pub const CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/console.css"));
}

fn page(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The session id from the `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A POST whose `Origin` names another site is refused (with `SameSite=Strict` and the CSRF
/// token, a third guard against another site's page).
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) if super::web::same_host(origin, headers.get(header::HOST)) => Ok(()),
        Some(_) => Err(ApiError::Csrf),
    }
}

fn set_cookie(value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    let v = format!("{COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/console{age}");
    // Holds: hex digits and fixed ASCII.
    HeaderValue::from_str(&v).expect("a cookie of ASCII")
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("not a valid request: {e}")))
}

// ---- login ----

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

enum LoginOutcome {
    Ok(OperatorName, Scope, String),
    Wrong,
    /// The operator, until when, and whether this attempt locked it.
    Locked(OperatorName, i64, bool),
}

#[derive(Serialize)]
struct Me {
    operator: String,
    role: &'static str,
    opd: Option<String>,
    csrf: String,
}

fn me_of(s: &Session) -> Me {
    Me {
        operator: s.operator.to_string(),
        role: s.scope.role(),
        opd: s.scope.opd().map(|o| o.to_string()),
        csrf: s.csrf.clone(),
    }
}

async fn login(
    State(c): State<Arc<Console>>,
    axum::extract::Extension(info): axum::extract::Extension<super::web::ConnInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_origin(&headers)?;
    let form: LoginForm = json_body(&body)?;
    let _permit = c.hashing.acquire().await.map_err(|_| ApiError::Stopping)?;
    let name = form.user.trim().parse::<OperatorName>().ok();
    let secret = form.password;
    let decoy = c.decoy.clone();
    let outcome = c
        .with_store(move |s| {
            let now = unix_now();
            let op = match &name {
                Some(n) => s.operator(n).map_err(ApiError::store)?,
                None => None,
            };
            let Some(op) = op else {
                let decoy = decoy.get_or_init(password::decoy);
                let _ = password::verify(&secret, decoy);
                return Ok(LoginOutcome::Wrong);
            };
            if op.attempts.is_locked(now) {
                return Ok(LoginOutcome::Locked(
                    op.name,
                    op.attempts.locked_until.unwrap_or(now),
                    false,
                ));
            }
            if password::verify(&secret, &op.password_hash).unwrap_or(false) {
                if op.attempts != Attempts::default() {
                    s.set_operator_attempts(&op.name, &Attempts::after_success())
                        .map_err(ApiError::store)?;
                }
                let tag = fingerprint(&op.password_hash);
                return Ok(LoginOutcome::Ok(op.name, op.scope, tag));
            }
            let after = op.attempts.after_failure(now);
            s.set_operator_attempts(&op.name, &after)
                .map_err(ApiError::store)?;
            Ok(match after.locked_until.filter(|_| after.is_locked(now)) {
                Some(until) => LoginOutcome::Locked(op.name, until, true),
                None => LoginOutcome::Wrong,
            })
        })
        .await?;
    match outcome {
        LoginOutcome::Wrong => {
            tracing::info!(src = %info.src, "console: login refused (wrong operator or password)");
            Ok(bad_credentials())
        }
        LoginOutcome::Locked(name, until, now_locked) => {
            if now_locked {
                tracing::warn!(src = %info.src, operator = %name,
                    "console: operator locked out after repeated wrong passwords");
            } else {
                tracing::info!(src = %info.src, operator = %name,
                    "console: login refused, the operator is locked out");
            }
            Ok((
                StatusCode::LOCKED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({"error": "locked",
                    "message": "this operator is locked after too many wrong passwords; try again later",
                    "locked_until": until})),
            )
                .into_response())
        }
        LoginOutcome::Ok(name, scope, tag) => {
            let id = random_hex();
            let csrf = random_hex();
            tracing::info!(src = %info.src, operator = %name, role = scope.role(), "console: login");
            c.sessions().create(
                &id,
                csrf.clone(),
                name.clone(),
                scope.clone(),
                tag,
                Instant::now(),
            );
            let me = Me {
                operator: name.to_string(),
                role: scope.role(),
                opd: scope.opd().map(|o| o.to_string()),
                csrf,
            };
            Ok((
                [
                    (header::SET_COOKIE, set_cookie(&id, None)),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                Json(me),
            )
                .into_response())
        }
    }
}

/// The one answer for a wrong name and a wrong password.
fn bad_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": "bad-credentials",
            "message": "the operator name or the password is wrong"})),
    )
        .into_response()
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    if let Some(id) = session_cookie(&headers) {
        c.sessions().remove(&id);
    }
    tracing::info!(operator = %s.operator, "console: logout");
    Ok((
        [(header::SET_COOKIE, set_cookie("", Some(0)))],
        Json(json!({"ok": true})),
    )
        .into_response())
}

async fn me(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    ok_json(me_of(&s))
}

// ---- dashboard ----

/// One entry of the dashboard's warnings panel.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Warning {
    /// Stable key (`trunk-down`, `budget-80`, …) for the page's dictionary.
    pub key: String,
    pub opd: Option<String>,
    /// The sentence in English (the page translates known keys).
    pub message: String,
}

/// Everything the warnings panel shows, for this operator's scope: a carrier of the central
/// trunk that is not healthy or whose registration failed (admins only: the trunk is the
/// province's). Budget warnings (issue 13, part 3) add their entries here.
fn console_warnings(
    scope: &Scope,
    trunks: &[crate::trunk::TrunkView],
    budgets: &[crate::proxy::budget::BudgetView],
) -> Vec<Warning> {
    use crate::proxy::budget::BudgetState;
    let mut out = Vec::new();
    // Monthly budgets at 80 % or more, of the OPDs this operator sees.
    for b in budgets.iter().filter(|b| scope.allows(Some(&b.opd))) {
        let (key, what) = match b.state {
            BudgetState::Ok => continue,
            BudgetState::Warning => ("budget-warning", "is at"),
            BudgetState::Exhausted => ("budget-exhausted", "is used up at"),
        };
        let unit = match b.unit {
            crate::dialplan::budget::BudgetUnit::Minutes => "minutes",
            crate::dialplan::budget::BudgetUnit::Rupiah => "rupiah",
        };
        out.push(Warning {
            key: key.into(),
            opd: Some(b.opd.to_string()),
            message: format!(
                "the {} budget of {} {what} {:.0} % ({} of {} {unit})",
                b.month,
                b.opd,
                b.ratio * 100.0,
                b.used,
                b.limit
            ),
        });
    }
    if scope.is_admin() {
        for t in trunks {
            let failed = t.registration == crate::trunk::RegState::Failed;
            if t.healthy && !failed {
                continue;
            }
            out.push(Warning {
                key: "trunk-down".into(),
                opd: None,
                message: format!(
                    "carrier {} ({}) is {}{}",
                    t.name,
                    t.target,
                    if failed {
                        "not registered"
                    } else {
                        "not answering"
                    },
                    t.last_error
                        .as_deref()
                        .map_or(String::new(), |e| format!(": {e}"))
                ),
            });
        }
    }
    out
}

async fn dashboard(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let scope = s.scope.clone();
    let opd = scope.opd().cloned();
    let regs = c.ask(|reply| Input::Registrations { opd, reply }).await?;
    let calls = c.ask(|reply| Input::Calls { reply }).await?;
    let trunks = c.ask(|reply| Input::Trunks { reply }).await?;
    let budgets = c.ask(|reply| Input::Budgets { reply }).await?;
    let calls: Vec<_> = calls
        .into_iter()
        .filter(|k| scope.allows_call(k.caller_opd.as_ref(), k.callee_opd.as_ref()))
        .collect();
    let sc = scope.clone();
    let (opds, counts) = c
        .with_store(move |st| {
            let opds = st.opds().map_err(ApiError::store)?;
            let counts = st.extension_counts().map_err(ApiError::store)?;
            Ok((
                opds.into_iter()
                    .filter(|o| sc.allows(Some(&o.code)))
                    .collect::<Vec<_>>(),
                counts,
            ))
        })
        .await?;
    let mut registered: BTreeMap<&OpdCode, BTreeSet<&Extension>> = BTreeMap::new();
    for r in regs.iter().filter(|r| scope.allows(r.opd.as_ref())) {
        if let Some(o) = &r.opd {
            registered.entry(o).or_default().insert(&r.extension);
        }
    }
    let per_opd: Vec<_> = opds
        .iter()
        .map(|o| {
            json!({
                "opd": o.code.as_str(),
                "name": o.name,
                "extensions": counts.get(&o.code).copied().unwrap_or(0),
                "registered": registered.get(&o.code).map_or(0, |s| s.len()),
            })
        })
        .collect();
    let calls: Vec<_> = calls
        .iter()
        .map(|k| {
            json!({
                "caller": k.caller, "callee": k.callee, "dialled": k.dialled,
                "caller_opd": k.caller_opd, "callee_opd": k.callee_opd,
                "state": k.state, "duration_secs": k.duration_secs,
            })
        })
        .collect();
    ok_json(json!({
        "registrations": per_opd,
        "calls": calls,
        "warnings": console_warnings(&scope, &trunks, &budgets),
        "budgets": budgets.iter().filter(|b| scope.allows(Some(&b.opd))).collect::<Vec<_>>(),
        "trunks": if scope.is_admin() { serde_json::to_value(&trunks).unwrap_or_default() } else { json!([]) },
    }))
}

async fn opds(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let list = c
        .with_store(move |st| {
            Ok(st
                .opds()
                .map_err(ApiError::store)?
                .into_iter()
                .filter(|o| s.scope.allows(Some(&o.code)))
                .map(|o| json!({"code": o.code.as_str(), "name": o.name}))
                .collect::<Vec<_>>())
        })
        .await?;
    ok_json(list)
}

// ---- extensions ----

async fn extensions(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let opd = s.scope.opd().cloned();
    let regs = c
        .ask(|reply| Input::Registrations {
            opd: opd.clone(),
            reply,
        })
        .await?;
    let online: BTreeSet<Extension> = regs.into_iter().map(|r| r.extension).collect();
    let scope = s.scope.clone();
    let list = c
        .with_store(move |st| {
            Ok(st
                .extensions(opd.as_ref())
                .map_err(ApiError::store)?
                .into_iter()
                .filter(|e| scope.allows(Some(&e.opd)))
                .map(|e| {
                    json!({
                        "number": e.number.as_str(), "opd": e.opd.as_str(), "name": e.name,
                        "enabled": e.enabled, "registered": online.contains(&e.number),
                    })
                })
                .collect::<Vec<_>>())
        })
        .await?;
    ok_json(list)
}

#[derive(Deserialize)]
struct NewExtensionForm {
    number: String,
    opd: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Option<String>,
}

async fn add_extension(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    let form: NewExtensionForm = json_body(&body)?;
    let number: Extension = form
        .number
        .trim()
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let opd: OpdCode = form
        .opd
        .trim()
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    s.scope.limit(Some(opd.clone()))?;
    let dialplan = c.dialplan()?;
    let office = crate::cli::find_opd(&dialplan, &opd).map_err(ApiError::BadRequest)?;
    crate::cli::check_in_blocks(office, &number).map_err(ApiError::BadRequest)?;
    crate::cli::check_name(&form.name).map_err(ApiError::BadRequest)?;
    let (secret, generated) = match form.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            crate::cli::check_password(&p).map_err(ApiError::BadRequest)?;
            (p, false)
        }
        None => (crate::cli::generate_password(), true),
    };
    let rows = crate::store::OpdRow::all_of(&dialplan);
    let (n, pw) = (number.clone(), secret.clone());
    c.with_store(move |st| {
        st.sync_opds(&rows).map_err(ApiError::store)?;
        st.add_extension(&n, &opd, &form.name, &pw)
            .map_err(ApiError::store)
    })
    .await?;
    tracing::info!(operator = %s.operator, extension = %number, "console: extension added");
    ok_json(json!({
        "number": number.as_str(),
        "password": generated.then_some(secret),
    }))
}

#[derive(Deserialize)]
struct EditForm {
    name: Option<String>,
    enabled: Option<bool>,
}

/// The extension `number`, if this operator's scope covers it (`NotFound` otherwise, so an
/// OPD operator learns nothing of another OPD's numbers).
async fn scoped_extension(c: &Console, s: &Session, number: &str) -> Result<Extension, ApiError> {
    let number: Extension = number
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let n = number.clone();
    let rec = c
        .with_store(move |st| st.extension(&n).map_err(ApiError::store))
        .await?;
    match rec {
        Some(r) if s.scope.allows(Some(&r.opd)) => Ok(number),
        _ => Err(ApiError::NotFound(format!(
            "extension {number} does not exist"
        ))),
    }
}

async fn edit_extension(
    State(c): State<Arc<Console>>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    let form: EditForm = json_body(&body)?;
    let number = scoped_extension(&c, &s, &number).await?;
    if let Some(name) = &form.name {
        crate::cli::check_name(name).map_err(ApiError::BadRequest)?;
    }
    let n = number.clone();
    c.with_store(move |st| {
        if let Some(name) = &form.name {
            st.set_extension_name(&n, name).map_err(ApiError::store)?;
        }
        if let Some(enabled) = form.enabled {
            st.set_enabled(&n, enabled).map_err(ApiError::store)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(operator = %s.operator, extension = %number, "console: extension changed");
    ok_json(json!({"ok": true}))
}

async fn reset_password(
    State(c): State<Arc<Console>>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    let number = scoped_extension(&c, &s, &number).await?;
    let secret = crate::cli::generate_password();
    let (n, pw) = (number.clone(), secret.clone());
    c.with_store(move |st| st.set_password(&n, &pw).map_err(ApiError::store))
        .await?;
    tracing::info!(operator = %s.operator, extension = %number, "console: extension password reset");
    ok_json(json!({"number": number.as_str(), "password": secret}))
}

/// CSV import: every line checked as `tambun ext import` does; the good lines are imported
/// (in one transaction), the bad ones reported with their line numbers (the CLI's
/// `--skip-bad`). Lines of another OPD are bad lines for an `opd` operator. Generated
/// passwords are in the report, once.
///
/// The answer is NDJSON, one object a line, as the work goes: `{"checked": LINES, "total":
/// ROWS}` after the check, `{"progress": N, "total": ROWS}` while rows are written (every
/// [`IMPORT_STEP`] rows and at the end), then `{"report": {"imported", "bad": [{"line",
/// "reason"}], "passwords": [{"number", "password"}]}}` or `{"error": sentence}`.
async fn import(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    let dialplan = c.dialplan()?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let line = |v: serde_json::Value| Bytes::from(format!("{v}\n"));
    let task = c.clone();
    tokio::spawn(async move {
        let progress = tx.clone();
        let scope = s.scope.clone();
        let result = task
            .with_store(move |st| import_rows(st, &dialplan, &scope, &body, &progress))
            .await;
        let last = match result {
            Ok(report) => {
                tracing::info!(operator = %s.operator, imported = %report["imported"], "console: CSV import");
                json!({ "report": report })
            }
            Err(ApiError::Conflict(m) | ApiError::BadRequest(m) | ApiError::NotFound(m)) => {
                json!({ "error": format!("nothing imported: {m}") })
            }
            Err(e) => {
                tracing::warn!(operator = %s.operator, error = ?e, "console: CSV import failed");
                json!({ "error": "nothing imported: the console could not write; see the switch's log" })
            }
        };
        let _ = tx.send(line(last)).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Rows written between two progress lines of an import.
const IMPORT_STEP: usize = 50;

/// The import itself, on the database thread; progress lines go to `progress`.
fn import_rows(
    st: &mut Store,
    dialplan: &Dialplan,
    scope: &Scope,
    body: &[u8],
    progress: &mpsc::Sender<Bytes>,
) -> Result<serde_json::Value, ApiError> {
    let say = |v: serde_json::Value| {
        let _ = progress.blocking_send(Bytes::from(format!("{v}\n")));
    };
    st.sync_opds(&crate::store::OpdRow::all_of(dialplan))
        .map_err(ApiError::store)?;
    let existing: BTreeSet<Extension> = st
        .extensions(None)
        .map_err(ApiError::store)?
        .into_iter()
        .map(|r| r.number)
        .collect();
    let checked = crate::cli::import::check_lines(body, dialplan, &existing);
    let mut bad = checked.bad;
    let mut rows = Vec::new();
    let mut generated = Vec::new();
    for (i, r) in checked.good.into_iter().enumerate() {
        if !scope.allows(Some(&r.opd)) {
            // The line number is not kept for good rows; find it again by number.
            bad.push((
                line_of(body, r.number.as_str()).unwrap_or(i as u64 + 1),
                format!(
                    "extension {} belongs to OPD {}; this operator looks after {}",
                    r.number,
                    r.opd,
                    scope.opd().map_or("", |o| o.as_str())
                ),
            ));
            continue;
        }
        let password = r.password.unwrap_or_else(|| {
            let pw = crate::cli::generate_password();
            generated.push(json!({"number": r.number.as_str(), "password": pw}));
            pw
        });
        rows.push(NewExtension {
            number: r.number,
            opd: r.opd,
            name: r.name,
            password,
        });
    }
    bad.sort();
    say(json!({"checked": rows.len() + bad.len(), "total": rows.len()}));
    if !rows.is_empty() {
        let total = rows.len();
        st.import(&rows, |n| {
            if n % IMPORT_STEP == 0 || n == total {
                say(json!({"progress": n, "total": total}));
            }
        })
        .map_err(ApiError::store)?;
    }
    Ok(json!({
        "imported": rows.len(),
        "bad": bad.iter().map(|(l, r)| json!({"line": l, "reason": r})).collect::<Vec<_>>(),
        "passwords": generated,
    }))
}

/// The 1-based line of `body` whose first field is `number`.
fn line_of(body: &[u8], number: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .position(|l| {
            l.split(',')
                .next()
                .is_some_and(|f| f.trim().trim_matches('"') == number)
        })
        .map(|i| i as u64 + 1)
}

// ---- call records ----

#[derive(Deserialize, Default)]
struct CdrQuery {
    ext: Option<String>,
    opd: Option<String>,
    /// `YYYY-MM-DD` (WIB), from the start of that day.
    since: Option<String>,
    /// `YYYY-MM-DD` (WIB), to the end of that day.
    until: Option<String>,
    disposition: Option<String>,
}

/// A `YYYY-MM-DD` date as the Unix ms of its WIB midnight.
fn wib_day_ms(s: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("'{s}' is not a date (YYYY-MM-DD)"));
    let mut p = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || d < 1
        || d > time::days_in_month(y, m)
    {
        return Err(bad());
    }
    Ok(time::days_from_civil(y, m, d) * DAY_MS - WIB_MS)
}

/// Unix ms as `2026-03-02 08:15:03` (WIB).
fn wib(ms: i64) -> String {
    let local = ms.div_euclid(1000) + time::WIB_OFFSET_SECS;
    let (y, mo, d) = time::civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

async fn search(c: &Console, s: &Session, q: CdrQuery) -> Result<Vec<CdrRow>, ApiError> {
    let asked = match q.opd.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => Some(
            o.parse::<OpdCode>()
                .map_err(|e| ApiError::BadRequest(format!("{e}")))?,
        ),
        None => None,
    };
    let opd = s.scope.limit(asked)?;
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let since_ms = nonempty(&q.since).map(|d| wib_day_ms(&d)).transpose()?;
    let until_ms = nonempty(&q.until)
        .map(|d| wib_day_ms(&d).map(|ms| ms + DAY_MS))
        .transpose()?;
    let disposition = match nonempty(&q.disposition) {
        Some(d) => Some(
            d.parse::<Disposition>()
                .map_err(|e| ApiError::BadRequest(format!("{e}")))?,
        ),
        None => None,
    };
    let ext = nonempty(&q.ext);
    let scope = s.scope.clone();
    c.with_store(move |st| {
        let rows = st
            .cdrs(&CdrFilter {
                opd,
                since_ms,
                until_ms,
                limit: None,
            })
            .map_err(ApiError::store)?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                let k = &r.record;
                scope.allows_call(k.caller_opd.as_ref(), k.callee_opd.as_ref())
                    && disposition.is_none_or(|d| k.disposition == d)
                    && ext.as_deref().is_none_or(|e| {
                        k.caller == e || k.callee.as_deref() == Some(e) || k.dialled == e
                    })
            })
            .collect())
    })
    .await
}

fn cdr_json(r: &CdrRow) -> serde_json::Value {
    let k = &r.record;
    json!({
        "id": r.id,
        "start": wib(k.start_ms),
        "caller": k.caller,
        "caller_opd": k.caller_opd,
        "dialled": k.dialled,
        "callee": k.callee,
        "callee_opd": k.callee_opd,
        "disposition": k.disposition.as_str(),
        "duration_secs": k.answer_ms.map_or(0, |a| (k.end_ms - a).max(0) / 1000),
        "trunk": k.trunk,
        "route": k.route,
    })
}

async fn cdr_search(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<CdrQuery>,
) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let rows = search(&c, &s, q).await?;
    let shown: Vec<_> = rows.iter().rev().take(SHOWN_CDRS).map(cdr_json).collect();
    ok_json(json!({"total": rows.len(), "rows": shown}))
}

/// A CSV cell that a spreadsheet would run as a formula gets a leading `'` (a phone number
/// like `+6281…` stays as it is).
fn csv_cell(v: &str) -> String {
    let risky = match v.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !v[1..].bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    if risky {
        format!("'{v}")
    } else {
        v.to_owned()
    }
}

async fn cdr_export(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<CdrQuery>,
) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let rows = search(&c, &s, q).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "start_wib",
        "caller",
        "caller_opd",
        "dialled",
        "callee",
        "callee_opd",
        "disposition",
        "duration_secs",
        "trunk",
        "route",
    ];
    let to_err = |e: csv::Error| ApiError::Internal(format!("console: csv: {e}"));
    w.write_record(header).map_err(to_err)?;
    for r in &rows {
        let k = &r.record;
        let opd = |o: &Option<OpdCode>| o.as_ref().map_or(String::new(), |o| o.to_string());
        w.write_record([
            r.id.to_string(),
            wib(k.start_ms),
            csv_cell(&k.caller),
            opd(&k.caller_opd),
            csv_cell(&k.dialled),
            csv_cell(k.callee.as_deref().unwrap_or("")),
            opd(&k.callee_opd),
            k.disposition.as_str().to_owned(),
            k.answer_ms
                .map_or(0, |a| (k.end_ms - a).max(0) / 1000)
                .to_string(),
            k.trunk.to_string(),
            csv_cell(&k.route),
        ])
        .map_err(to_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("console: csv: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tambun-cdr.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}

// ---- usage ----

#[derive(Deserialize)]
struct UsageQuery {
    opd: Option<String>,
    /// `YYYY-MM` (WIB); the current month by default.
    month: Option<String>,
}

/// The number class of a recorded call, for the usage chart: the dialplan's class of an
/// outside number, `internal` inside the province, `conference` for a room.
fn class_of(dialplan: Option<&Dialplan>, r: &crate::cdr::CdrRecord) -> &'static str {
    if r.route.starts_with("room ") {
        return "conference";
    }
    if r.route.starts_with(crate::proxy::EMERGENCY_ROUTE) {
        return "emergency";
    }
    if !r.trunk {
        return "internal";
    }
    dialplan
        .and_then(|d| d.classify_outside(&r.dialled))
        .map_or("outside", |c| c.as_str())
}

async fn usage(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    let (year, month) = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => {
            let bad = || ApiError::BadRequest(format!("'{m}' is not a month (YYYY-MM)"));
            let (y, mo) = m.split_once('-').ok_or_else(bad)?;
            let y: i64 = y.parse().map_err(|_| bad())?;
            let mo: u8 = mo.parse().map_err(|_| bad())?;
            if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) {
                return Err(bad());
            }
            (y, mo)
        }
        None => {
            let local = unix_now() + time::WIB_OFFSET_SECS;
            let (y, m, _) = time::civil_from_days(local.div_euclid(86_400));
            (y, m)
        }
    };
    let days = time::days_in_month(year, month);
    let since = format!("{year:04}-{month:02}-01");
    let until = format!("{year:04}-{month:02}-{days:02}");
    let rows = search(
        &c,
        &s,
        CdrQuery {
            opd: q.opd.clone(),
            since: Some(since),
            until: Some(until),
            ..CdrQuery::default()
        },
    )
    .await?;
    let dialplan = c.dialplan().ok();
    let start = wib_day_ms(&format!("{year:04}-{month:02}-01"))?;
    let mut per_day = vec![0i64; days as usize];
    let mut per_class: BTreeMap<&'static str, (u64, i64)> = BTreeMap::new();
    let mut callers: BTreeMap<String, (u64, i64, Option<OpdCode>)> = BTreeMap::new();
    let mut per_opd: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let (mut calls, mut answered, mut talk_ms) = (0u64, 0u64, 0i64);
    for r in &rows {
        let k = &r.record;
        let ms = k.answer_ms.map_or(0, |a| (k.end_ms - a).max(0));
        calls += 1;
        if k.answer_ms.is_some() {
            answered += 1;
        }
        talk_ms += ms;
        let day = ((k.start_ms - start) / DAY_MS).clamp(0, days as i64 - 1) as usize;
        per_day[day] += ms;
        let e = per_class.entry(class_of(dialplan.as_ref(), k)).or_default();
        e.0 += 1;
        e.1 += ms;
        let e = callers
            .entry(k.caller.clone())
            .or_insert((0, 0, k.caller_opd.clone()));
        e.0 += 1;
        e.1 += ms;
        let mut opds: Vec<&OpdCode> = [k.caller_opd.as_ref(), k.callee_opd.as_ref()]
            .into_iter()
            .flatten()
            .filter(|o| s.scope.allows(Some(o)))
            .collect();
        opds.dedup();
        for o in opds {
            let e = per_opd.entry(o.to_string()).or_default();
            e.0 += 1;
            e.1 += ms;
        }
    }
    let minutes = |ms: i64| (ms as f64 / 60_000.0 * 10.0).round() / 10.0;
    // The month's budgets (the switch keeps the current month's only), of the OPDs shown.
    let shown = s.scope.limit(
        q.opd
            .clone()
            .filter(|o| !o.is_empty())
            .and_then(|o| o.parse().ok()),
    )?;
    let this_month = format!("{year:04}-{month:02}");
    let budgets: Vec<_> = c
        .ask(|reply| Input::Budgets { reply })
        .await?
        .into_iter()
        .filter(|b| s.scope.allows(Some(&b.opd)) && shown.as_ref().is_none_or(|o| *o == b.opd))
        .filter(|b| b.month == this_month)
        .collect();
    let mut top: Vec<_> = callers.into_iter().collect();
    top.sort_by(|a, b| (b.1 .1, b.1 .0, &a.0).cmp(&(a.1 .1, a.1 .0, &b.0)));
    top.truncate(10);
    ok_json(json!({
        "month": format!("{year:04}-{month:02}"),
        "opd": s.scope.limit(q.opd.filter(|o| !o.is_empty()).and_then(|o| o.parse().ok()))?.map(|o| o.to_string()),
        "totals": {"calls": calls, "answered": answered, "minutes": minutes(talk_ms)},
        "per_day": per_day.iter().enumerate().map(|(i, ms)| json!({
            "day": format!("{year:04}-{month:02}-{:02}", i + 1), "minutes": minutes(*ms)})).collect::<Vec<_>>(),
        "per_class": per_class.iter().map(|(c, (n, ms))| json!({
            "class": c, "calls": n, "minutes": minutes(*ms)})).collect::<Vec<_>>(),
        "top_callers": top.iter().map(|(who, (n, ms, opd))| json!({
            "caller": who, "opd": opd, "calls": n, "minutes": minutes(*ms)})).collect::<Vec<_>>(),
        "per_opd": per_opd.iter().map(|(o, (n, ms))| json!({
            "opd": o, "calls": n, "minutes": minutes(*ms)})).collect::<Vec<_>>(),
        "budgets": budgets,
    }))
}

// ---- bans (admin only) ----

async fn bans(State(c): State<Arc<Console>>, headers: HeaderMap) -> ApiResult {
    let s = c.auth(&headers, false).await?;
    if !s.scope.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let list = c
        .with_store(|st| st.bans(unix_now()).map_err(ApiError::store))
        .await?;
    ok_json(
        list.iter()
            .map(|b| {
                json!({
                    "address": crate::guard::SourceKey::of(b.address).to_string(),
                    "reason": b.reason,
                    "since": wib(b.created_at * 1000),
                    "until": b.expires_at.map(|t| wib(t * 1000)),
                })
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Deserialize)]
struct BanForm {
    address: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
}

async fn add_ban(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    if !s.scope.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let form: BanForm = json_body(&body)?;
    let key = crate::cli::ban::parse_address(&form.address).map_err(ApiError::BadRequest)?;
    let duration = match form.duration.trim() {
        "" => None,
        d => Some(crate::cli::ban::parse_duration(d).map_err(ApiError::BadRequest)?),
    };
    let reason = if form.reason.trim().is_empty() {
        format!("console: {}", s.operator)
    } else {
        form.reason.trim().to_owned()
    };
    if reason.chars().any(char::is_control) || reason.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "the reason must be one line of at most 200 characters".into(),
        ));
    }
    let now = unix_now();
    let ban = Ban {
        address: key.ip(),
        reason,
        created_at: now,
        expires_at: duration.map(|d| now.saturating_add(d as i64)),
    };
    c.with_store(move |st| st.add_ban(&ban).map_err(ApiError::store))
        .await?;
    tracing::info!(operator = %s.operator, address = %key, "console: ban added");
    ok_json(json!({"address": key.to_string()}))
}

#[derive(Deserialize)]
struct UnbanForm {
    address: String,
}

async fn remove_ban(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let s = c.auth(&headers, true).await?;
    if !s.scope.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let form: UnbanForm = json_body(&body)?;
    let key = crate::cli::ban::parse_address(&form.address).map_err(ApiError::BadRequest)?;
    let removed = c
        .with_store(move |st| st.remove_ban(key.ip()).map_err(ApiError::store))
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!("{key} is not banned")));
    }
    tracing::info!(operator = %s.operator, address = %key, "console: ban lifted");
    ok_json(json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_read_only_when_well_formed() {
        let mut h = HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={id}; y=2")).unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(id));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("tambun_console=zz"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn cookie_attributes() {
        let v = set_cookie(&"b".repeat(64), None);
        let v = v.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
            assert!(v.contains(attr), "{v}");
        }
    }

    #[test]
    fn other_sites_may_not_post() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        assert!(check_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8443"),
        );
        assert!(check_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_origin(&h).is_err());
    }

    #[test]
    fn csv_cells_that_look_like_formulas() {
        assert_eq!(csv_cell("+6281234"), "+6281234");
        assert_eq!(csv_cell("1001"), "1001");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("+1+2"), "'+1+2");
        assert_eq!(csv_cell("@x"), "'@x");
    }

    #[test]
    fn wib_dates() {
        // 2026-03-02 00:00 WIB is 2026-03-01 17:00 UTC.
        let ms = wib_day_ms("2026-03-02").unwrap();
        assert_eq!(wib(ms), "2026-03-02 00:00:00");
        assert!(wib_day_ms("2026-02-30").is_err());
        assert!(wib_day_ms("2026-3-2x").is_err());
    }

    #[test]
    fn failing_carriers_are_warnings_for_admins_only() {
        let carrier =
            |name: &str, healthy: bool, reg: crate::trunk::RegState| crate::trunk::TrunkView {
                name: name.into(),
                target: "127.0.0.1:5090".into(),
                transport: crate::types::Transport::Udp,
                priority: 1,
                registration: reg,
                registered_since_ms: None,
                expires_in: None,
                last_error: Some("408 Request Timeout".into()),
                last_error_at_ms: None,
                ping_rtt_ms: None,
                healthy,
                calls_in_progress: 0,
            };
        use crate::trunk::RegState::*;
        let trunks = [
            carrier("telkom", true, Registered),
            carrier("indosat", false, NotRequired),
            carrier("xl", true, Failed),
        ];
        let w = console_warnings(&Scope::All, &trunks, &[]);
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|w| w.key == "trunk-down"));
        assert!(w[0].message.contains("indosat") && w[0].message.contains("not answering"));
        assert!(w[1].message.contains("xl") && w[1].message.contains("not registered: 408"));
        assert!(console_warnings(&Scope::Opd("dinkes".parse().unwrap()), &trunks, &[]).is_empty());
    }

    #[test]
    fn import_line_numbers() {
        let csv = b"number,opd,name\n1000,setda,A\n\"1001\",setda,B\n";
        assert_eq!(line_of(csv, "1001"), Some(3));
        assert_eq!(line_of(csv, "1002"), None);
    }
}
