//! The web pages (`crates/access/web`), compiled into the binary: no files to deploy, no CDN.
//! `/` the recordings (timelines, playback, export), `/live.html` the live grid,
//! `/camera.html?camera=<id>` a camera's page (live beside its timeline); `common.js` is what
//! the recordings page and a camera's page share, `live.js` what the grid and a camera's page
//! share.
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

const COMMON_JS: &str = include_str!("../web/common.js");
const CAMERA_HTML: &str = include_str!("../web/camera.html");
const CAMERA_JS: &str = include_str!("../web/camera.js");

pub async fn common_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        COMMON_JS,
    )
}

pub async fn camera_html() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        CAMERA_HTML,
    )
}

pub async fn camera_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CAMERA_JS,
    )
}
