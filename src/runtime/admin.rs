//! The admin API (HTTP on loopback by default) for the operator CLI and monitoring: live
//! registrations and calls, relay usage, stream connection counters (`/api/connections`),
//! the monthly budgets per OPD (`/api/budgets`),
//! dialplan reload, a health check and Prometheus `/metrics`. Queries go to the driver as inputs and come back on a oneshot channel, so the
//! switch state has one owner.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::proxy::rooms::RoomView;
use crate::switch::RegistrationView;
use crate::types::OpdCode;

#[derive(serde::Deserialize)]
struct RegsQuery {
    opd: Option<String>,
}

#[derive(Clone)]
pub(crate) struct AdminState {
    pub driver: mpsc::Sender<Input>,
    pub relay: Option<std::sync::Arc<super::relay::RelayGlue>>,
    /// When the switch started (Unix seconds), for `process_start_time_seconds`.
    pub started_unix: f64,
    pub conns: std::sync::Arc<super::conns::ConnGate>,
}

pub(crate) async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/api/registrations", get(registrations))
        .route("/api/calls", get(calls))
        .route("/api/trunks", get(trunks))
        .route("/api/budgets", get(budgets))
        .route("/api/conf", get(conf))
        .route("/api/conf/{room}", axum::routing::post(conf_action))
        .route("/api/dialplan/reload", axum::routing::post(reload))
        .route("/api/relay", get(relay_usage))
        .route("/metrics", get(metrics))
        .route("/api/connections", get(connections))
        .with_state(state);
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn registrations(
    State(AdminState { driver, .. }): State<AdminState>,
    Query(q): Query<RegsQuery>,
) -> Result<Json<Vec<RegistrationView>>, (StatusCode, String)> {
    let opd = match q.opd {
        None => None,
        Some(s) => Some(
            s.parse::<OpdCode>()
                .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
    };
    let (reply, rx) = oneshot::channel();
    driver
        .send(Input::Registrations { opd, reply })
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "switch stopping".into()))?;
    rx.await
        .map(Json)
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "switch stopping".into()))
}

async fn calls(
    State(AdminState { driver, relay, .. }): State<AdminState>,
) -> Result<Json<Vec<crate::proxy::records::LiveCall>>, (StatusCode, String)> {
    let (reply, rx) = oneshot::channel();
    driver
        .send(Input::Calls { reply })
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "switch stopping".into()))?;
    let mut calls = rx
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "switch stopping".into()))?;
    if let Some(relay) = relay {
        for c in &mut calls {
            if let Some(s) = c.media_session {
                c.media = relay.stats_json(s).await;
                c.webrtc = relay.browsers_json(s).await;
            }
        }
    }
    Ok(Json(calls))
}

/// Every OPD with a monthly budget: opd, unit (minutes|rupiah), limit, used, ratio, state
/// (ok|warning|exhausted), month (`YYYY-MM`, WIB), refused, and the extensions with a budget of
/// their own that used some of it.
async fn budgets(
    State(AdminState { driver, .. }): State<AdminState>,
) -> Result<Json<Vec<crate::proxy::budget::BudgetView>>, (StatusCode, String)> {
    let stopping = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "switch stopping".to_owned(),
        )
    };
    let (reply, rx) = oneshot::channel();
    driver
        .send(Input::Budgets { reply })
        .await
        .map_err(|_| stopping())?;
    rx.await.map(Json).map_err(|_| stopping())
}

#[derive(serde::Deserialize)]
struct ConfQuery {
    room: Option<String>,
}

/// The conference rooms with participants, each participant with its media state from the
/// room's forwarding thread (talking, muted, level, packets). `?room=N`: that room only
/// (404 when nobody is in it).
async fn conf(
    State(AdminState { driver, relay, .. }): State<AdminState>,
    Query(q): Query<ConfQuery>,
) -> Result<Json<Vec<serde_json::Value>>, (StatusCode, String)> {
    let rooms = rooms_with_media(&driver, relay.as_deref(), q.room.as_deref())
        .await
        .map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "switch stopping".to_owned(),
            )
        })?;
    let mut out = Vec::new();
    for (r, state) in rooms {
        let mut talkers = Vec::new();
        let who: std::collections::HashMap<u64, String> = r
            .participants
            .iter()
            .map(|p| (p.session, p.extension.clone()))
            .collect();
        let participants: Vec<serde_json::Value> = r
            .participants
            .iter()
            .map(|p| {
                let media = state
                    .as_ref()
                    .and_then(|s| s.participants.iter().find(|m| m.session.0 == p.session));
                if media.is_some_and(|m| m.stats.talking) {
                    talkers.push(p.extension.clone());
                }
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let (Some(m), Some(obj)) = (media, v.as_object_mut()) {
                    let s = &m.stats;
                    obj.insert("codec".into(), s.codec.into());
                    obj.insert("talking".into(), s.talking.into());
                    obj.insert("muted".into(), s.muted.into());
                    obj.insert("self_muted".into(), s.self_muted.into());
                    obj.insert("waiting_for_pin".into(), s.waiting_for_pin.into());
                    // Whom each of its video lines shows (the SFU's last-N), by line.
                    let showing: Vec<Option<String>> = m
                        .showing
                        .iter()
                        .map(|s| s.and_then(|s| who.get(&s.0).cloned()))
                        .collect();
                    obj.insert("showing".into(), showing.into());
                    obj.insert("level".into(), s.level.into());
                    obj.insert("packets_in".into(), s.packets_in.into());
                    obj.insert("packets_out".into(), s.packets_out.into());
                    obj.insert("late".into(), s.late.into());
                    obj.insert("refused".into(), s.refused.into());
                    obj.insert("digits".into(), s.digits.into());
                    obj.insert("digits_dropped".into(), s.digits_dropped.into());
                    obj.insert("dropped_foreign".into(), m.dropped_foreign.into());
                    obj.insert("source".into(), m.source.map(|a| a.to_string()).into());
                }
                v
            })
            .collect();
        out.push(serde_json::json!({
            "room": r.room,
            "locked": r.locked,
            "all_muted": r.all_muted,
            "participants": participants,
            "talkers": talkers,
            "mixed": state.as_ref().map(|s| s.mixed),
            "video": state.as_ref().map(|s| serde_json::json!({
                "publishers": s.video.publishers,
                "subscriptions": s.video.subscriptions,
                "last_n": s.video.last_n,
                "forwarded": s.video.forwarded,
                "keyframe_requests": s.video.keyframe_requests,
                "dropped": s.video.dropped,
            })),
        }));
    }
    if let Some(room) = q.room.filter(|_| out.is_empty()) {
        return Err((StatusCode::NOT_FOUND, format!("nobody is in room {room}")));
    }
    Ok(Json(out))
}

/// The carriers of the central trunk: registration, pings, health, calls.
async fn trunks(
    State(AdminState { driver, .. }): State<AdminState>,
) -> Result<Json<Vec<crate::trunk::TrunkView>>, (StatusCode, String)> {
    let stopping = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the switch is stopping".to_string(),
        )
    };
    let (reply, rx) = oneshot::channel();
    driver
        .send(Input::Trunks { reply })
        .await
        .map_err(|_| stopping())?;
    Ok(Json(rx.await.map_err(|_| stopping())?))
}

/// The rooms with participants (only `only`, when given) from the core, each with its media
/// state from its forwarding thread (`None` without a relay, or when the thread did not
/// answer in time). `Err` when the switch is stopping.
async fn rooms_with_media(
    driver: &mpsc::Sender<Input>,
    relay: Option<&super::relay::RelayGlue>,
    only: Option<&str>,
) -> Result<Vec<(RoomView, Option<crate::media::RoomState>)>, ()> {
    let (reply, rx) = oneshot::channel();
    driver.send(Input::Rooms { reply }).await.map_err(|_| ())?;
    let mut out = Vec::new();
    for r in rx.await.map_err(|_| ())? {
        if only.is_some_and(|want| want != r.room) {
            continue;
        }
        let state = match relay {
            Some(relay) => relay.room_state(r.room_id).await,
            None => None,
        };
        out.push((r, state));
    }
    Ok(out)
}

/// The operator's action on a room: a JSON [`RoomAction`] (`{"action": "mute",
/// "extension": "1400", "muted": true}`, `{"action": "kick", "extension": "1400"}`,
/// `{"action": "lock", "locked": true}`). 404 when nobody (or not that extension) is in the
/// room, 400 for a body that is not an action.
async fn conf_action(
    State(AdminState { driver, .. }): State<AdminState>,
    axum::extract::Path(room): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<crate::proxy::rooms::RoomActionDone>, (StatusCode, String)> {
    let action: crate::proxy::rooms::RoomAction = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("not a room action: {e}")))?;
    let stopping = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "switch stopping".to_owned(),
        )
    };
    let (reply, rx) = oneshot::channel();
    driver
        .send(Input::RoomAction {
            room,
            action,
            reply,
        })
        .await
        .map_err(|_| stopping())?;
    rx.await
        .map_err(|_| stopping())?
        .map(Json)
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))
}

/// Prometheus text format 0.0.4.
async fn metrics(
    State(state): State<AdminState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), (StatusCode, String)> {
    let (reply, rx) = oneshot::channel();
    let stopping = |_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "switch stopping".to_owned(),
        )
    };
    state
        .driver
        .send(Input::Metrics { reply })
        .await
        .map_err(|_| stopping(()))?;
    let switch = rx.await.map_err(|_| stopping(()))?;
    let mut rooms = Vec::new();
    for (r, media) in rooms_with_media(&state.driver, state.relay.as_deref(), None)
        .await
        .map_err(stopping)?
    {
        let count = |f: fn(&crate::media::mixer::ParticipantStats) -> bool| {
            media.as_ref().map_or(0, |m| {
                m.participants.iter().filter(|p| f(&p.stats)).count() as u64
            })
        };
        rooms.push(crate::metrics::RoomMetrics {
            room: r.room.clone(),
            participants: r.participants.len() as u64,
            talkers: count(|s| s.talking),
            mixed: media.as_ref().map_or(0, |m| m.mixed as u64),
            muted: count(|s| s.muted || s.self_muted),
            locked: r.locked,
            video_publishers: media.as_ref().map_or(0, |m| m.video.publishers as u64),
            video_subscriptions: media.as_ref().map_or(0, |m| m.video.subscriptions as u64),
            video_forwarded: media.as_ref().map_or(0, |m| m.video.forwarded),
        });
    }
    let media = switch.media;
    let snapshot = crate::metrics::Snapshot {
        switch,
        connections: state.conns.stats.metrics(),
        relay: state.relay.as_ref().map(|r| r.metrics(media)),
        started_unix: state.started_unix,
        rooms,
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&snapshot),
    ))
}

async fn relay_usage(
    State(AdminState { driver, relay, .. }): State<AdminState>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    if relay.is_none() {
        return Ok(Json(serde_json::json!({ "enabled": false })));
    }
    let (reply, rx) = oneshot::channel();
    let stopping = |_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "switch stopping".to_owned(),
        )
    };
    driver
        .send(Input::Metrics { reply })
        .await
        .map_err(|_| stopping(()))?;
    let (sessions, ports_in_use) = rx.await.map_err(|_| stopping(()))?.media;
    Ok(Json(serde_json::json!({
        "ports_in_use": ports_in_use,
        "sessions": sessions,
    })))
}

async fn connections(
    State(AdminState { conns, .. }): State<AdminState>,
) -> Json<serde_json::Value> {
    Json(conns.stats.json())
}

async fn reload(
    State(AdminState { driver, .. }): State<AdminState>,
) -> (StatusCode, Json<serde_json::Value>) {
    let (reply, rx) = oneshot::channel();
    if driver
        .send(Input::ReloadDialplan { reply: Some(reply) })
        .await
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"errors": ["switch stopping"]})),
        );
    }
    match rx.await {
        Ok(Ok(n)) => (StatusCode::OK, Json(serde_json::json!({ "opds": n }))),
        Ok(Err(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "errors": errors })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"errors": ["switch stopping"]})),
        ),
    }
}
