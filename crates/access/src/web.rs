//! The playback page (`crates/access/web`), compiled into the binary: no files to deploy, no CDN.
//! hls.js is vendored from npm into `crates/access/web/vendor` by `crates/access/web/build.sh`.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const HLS_JS: &str = include_str!("../web/vendor/hls.min.js");

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

pub async fn hls_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        HLS_JS,
    )
}

const LIVE_HTML: &str = include_str!("../web/live.html");
const LIVE_JS: &str = include_str!("../web/live.js");

pub async fn live_html() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        LIVE_HTML,
    )
}

pub async fn live_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_JS,
    )
}
