//! The admin HTTP server, compatible with Alloy's: `/-/ready`, `/-/healthy`, `/-/reload`,
//! `/metrics`; the UI and JSON API (`crate::api`, docs/api.md) are merged in.

use crate::app::App;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/-/ready", get(ready))
        .route("/-/healthy", get(healthy))
        .route("/-/reload", get(reload).post(reload))
        .route("/metrics", get(metrics))
        .fallback(component_routes)
        .with_state(app.clone())
        .merge(crate::api::router(app))
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
