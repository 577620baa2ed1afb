//! The admin HTTP server, compatible with Alloy's: `/-/ready`, `/-/healthy`, `/-/reload`,
//! `/metrics`; the UI and JSON API (`crate::api`, docs/api.md) are merged in. The running
//! components' routes (the watcher's webhooks and approvals) are served here too, or on a
//! listener of their own ([`webhooks_router`]) so the admin port need not be exposed.
//! With an admin token, `/-/reload` and the API's writes need `Authorization: Bearer`.

use crate::app::App;
use crate::dead_letter::DeadLetterStore;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// The admin router serving the components' routes too (no separate webhook listener).
pub fn router(app: Arc<App>) -> Router {
    admin_router(app, true)
}

/// The admin router; `with_components` also serves the components' routes (webhooks,
/// approvals) as its fallback.
pub fn admin_router(app: Arc<App>, with_components: bool) -> Router {
    let fallback = if with_components {
        axum::routing::any(component_routes)
    } else {
        axum::routing::any(not_found)
    };
    Router::new()
        .route("/-/ready", get(ready))
        .route("/-/healthy", get(healthy))
        .route("/-/reload", get(reload).post(reload))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/dead-letter",
            get(dead_letter_list).delete(dead_letter_purge),
        )
        .route(
            "/api/v1/dead-letter/{id}",
            get(dead_letter_show).delete(dead_letter_remove),
        )
        .route(
            "/api/v1/dead-letter/{id}/replay",
            axum::routing::post(dead_letter_replay),
        )
        .fallback(fallback)
        .with_state(app.clone())
        .merge(crate::api::router(app.clone()))
        .layer(axum::middleware::from_fn_with_state(
            app,
            require_admin_token,
        ))
}

/// The webhook listener's router: only the components' routes, which authenticate their
/// callers themselves (webhook credentials, approver tokens).
pub fn webhooks_router(app: Arc<App>) -> Router {
    Router::new().fallback(component_routes).with_state(app)
}

async fn not_found() -> axum::response::Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `/-/reload` (any method: Alloy's accepts GET) and the API's writes change what runs or
/// what is stored. Approvals are exempt: they carry an approver's token instead.
fn needs_admin_token(method: &axum::http::Method, path: &str) -> bool {
    let writes = !(method == axum::http::Method::GET || method == axum::http::Method::HEAD);
    path == "/-/reload"
        || (writes && path.starts_with("/api/") && !path.starts_with("/api/v1/approvals/"))
}

async fn require_admin_token(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if needs_admin_token(request.method(), request.uri().path())
        && let Err(reason) = app.check_admin_token(request.headers())
    {
        metrics::counter!("sluice_admin_unauthorized_requests_total", "reason" => reason)
            .increment(1);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"sluice-admin\"",
            )],
            "this action needs the admin token: Authorization: Bearer <token>\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Everything else goes to the running components' routes (the watcher's webhooks and
/// approvals), which change with reloads.
async fn component_routes(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use tower::ServiceExt;
    match app.component_routes() {
        Some(routes) => match routes.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn ready(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.is_ready() {
        (StatusCode::OK, "Sluice is ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Sluice is not ready.\n")
    }
}

async fn healthy(State(app): State<Arc<App>>) -> impl IntoResponse {
    let unhealthy = app.unhealthy().await;
    if unhealthy.is_empty() {
        (
            StatusCode::OK,
            "All Sluice components are healthy.\n".to_string(),
        )
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unhealthy components: {}\n", unhealthy.join(", ")),
        )
    }
}

async fn reload(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n".to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.render_metrics(),
    )
}

/// Runs `f` on the dead-letter store under the storage path; I/O errors answer 500.
fn with_store(
    app: &App,
    f: impl FnOnce(&DeadLetterStore) -> std::io::Result<axum::response::Response>,
) -> axum::response::Response {
    let dir = app.storage().join(crate::dead_letter::DIR);
    match DeadLetterStore::open(&dir, u64::MAX).and_then(|store| f(&store)) {
        Ok(response) => response,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn no_such_entry() -> axum::response::Response {
    (StatusCode::NOT_FOUND, "no such dead-letter entry\n").into_response()
}

/// `GET /api/v1/dead-letter`: every entry's metadata, oldest first.
async fn dead_letter_list(State(app): State<Arc<App>>) -> axum::response::Response {
    with_store(&app, |store| Ok(Json(store.list()?).into_response()))
}

/// `GET /api/v1/dead-letter/{id}`: metadata and the payload as OTLP/JSON.
async fn dead_letter_show(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    with_store(&app, |store| {
        let Some((meta, payload)) = store.get(&id)? else {
            return Ok(no_such_entry());
        };
        let otlp = sluice_otlp::protobuf_to_json(meta.signal, &payload)
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok());
        Ok(Json(serde_json::json!({ "meta": meta, "payload": otlp })).into_response())
    })
}

/// `DELETE /api/v1/dead-letter/{id}`.
async fn dead_letter_remove(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    with_store(&app, |store| {
        Ok(match store.remove(&id)? {
            true => StatusCode::NO_CONTENT.into_response(),
            false => no_such_entry(),
        })
    })
}

/// `DELETE /api/v1/dead-letter`: purges the store.
async fn dead_letter_purge(State(app): State<Arc<App>>) -> axum::response::Response {
    with_store(&app, |store| {
        Ok(Json(serde_json::json!({ "purged": store.purge()? })).into_response())
    })
}

/// `POST /api/v1/dead-letter/{id}/replay`: hands the entry back to the pipeline it came from
/// (every exporter of that pipeline sends it again) and removes it once spooled.
async fn dead_letter_replay(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    let dir = app.storage().join(crate::dead_letter::DIR);
    let found = DeadLetterStore::open(&dir, u64::MAX).and_then(|store| {
        let entry = store.get(&id)?;
        Ok((store, entry))
    });
    let (store, (meta, payload)) = match found {
        Ok((store, Some(entry))) => (store, entry),
        Ok((_, None)) => return no_such_entry(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let items = u32::try_from(meta.items).unwrap_or(u32::MAX);
    let item = sluice_core::Item::new(meta.signal, payload, items)
        .with_tenant(meta.tenant.as_deref().map(Arc::from));
    if let Err(why) = app.replay(&meta.pipeline, item).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    if let Err(e) = store.remove(&id) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    Json(serde_json::json!({ "replayed": meta.items, "pipeline": meta.pipeline })).into_response()
}
