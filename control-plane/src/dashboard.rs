//! The web dashboard at `/`: static HTML, CSS and JavaScript compiled into the binary.
//! The page reads the REST API and redraws itself every few seconds.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// An embedded file with its content type.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/` and the dashboard's scripts and styles.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(HTML, include_str!("../dashboard/index.html")) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset(JAVASCRIPT, include_str!("../dashboard/app.js")) }),
        )
        .route(
            "/dashboard/charts.js",
            get(|| async { asset(JAVASCRIPT, include_str!("../dashboard/charts.js")) }),
        )
        .route(
            "/dashboard/training.js",
            get(|| async { asset(JAVASCRIPT, include_str!("../dashboard/training.js")) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset(CSS, include_str!("../dashboard/style.css")) }),
        )
}
