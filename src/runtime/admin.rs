//! The admin API (HTTP on loopback by default) for the operator CLI: live registrations, a
//! health check. Queries go to the driver as inputs and come back on a oneshot channel, so the
//! switch state has one owner.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::switch::RegistrationView;
use crate::types::OpdCode;

#[derive(serde::Deserialize)]
struct RegsQuery {
    opd: Option<String>,
}

pub(crate) async fn serve(
    listener: TcpListener,
    driver: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/api/registrations", get(registrations))
        .with_state(driver);
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn registrations(
    State(driver): State<mpsc::Sender<Input>>,
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
