//! The web client (`web.static_dir`), when the daemon serves it itself: files with
//! their content types, hashed assets cached for good and pages never, client-side
//! routes answered with the app, and a strict Content-Security-Policy on everything.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// No inline script or style, nothing from elsewhere, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where Astro puts assets whose names carry a hash of their content.
const HASHED_ASSETS: &str = "/_astro/";

/// The web client in `dir`: its files, and `index.html` for any other path without a
/// file extension (the app's own routes).
pub fn router(dir: &Path) -> Router {
    let index = ServeFile::new(dir.join("index.html"));
    let files = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(tower::service_fn(move |request: Request| {
            let index = index.clone();
            async move {
                let last = request.uri().path().rsplit('/').next().unwrap_or_default();
                if last.contains('.') {
                    // A missing file, not a route of the app.
                    return Ok((StatusCode::NOT_FOUND, "not found\n").into_response());
                }
                index
                    .oneshot(request)
                    .await
                    .map(IntoResponse::into_response)
            }
        }));
    Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(headers))
}

/// The security and caching headers of every answer.
async fn headers(request: Request, next: Next) -> Response {
    let immutable = request.uri().path().starts_with(HASHED_ASSETS);
    let mut response = next.run(request).await;
    let cache = if immutable && response.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, cache),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a path belongs to the daemon's own surfaces rather than the web client:
/// an unknown one there is an error, not a route of the app.
pub fn is_daemon_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/_matrix/")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, Vec<(String, String)>, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn files_routes_and_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("_astro")).expect("mkdir");
        std::fs::write(dir.path().join("index.html"), "<!doctype html>app").expect("write");
        std::fs::write(dir.path().join("_astro/app.Ab12.js"), "export {}").expect("write");
        std::fs::write(dir.path().join("favicon.svg"), "<svg/>").expect("write");
        let router = router(dir.path());

        let (status, headers, body) = get(&router, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "<!doctype html>app")
        );
        assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")));
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        let csp = header(&headers, "content-security-policy").expect("a CSP");
        for part in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));

        let (status, headers, _) = get(&router, "/_astro/app.Ab12.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(header(&headers, "content-type").is_some_and(|t| t.contains("javascript")));
        assert_eq!(
            header(&headers, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        let (_, headers, _) = get(&router, "/favicon.svg").await;
        assert_eq!(header(&headers, "content-type"), Some("image/svg+xml"));
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));

        let (status, _, body) = get(&router, "/chat/some-room").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "<!doctype html>app")
        );
        let (status, headers, _) = get(&router, "/_astro/gone.Zz99.js").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a missing file is not the app"
        );
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        assert!(header(&headers, "content-security-policy").is_some());
    }

    #[test]
    fn the_api_is_never_the_app() {
        assert!(is_daemon_path("/api/v1/nope"));
        assert!(is_daemon_path("/_matrix/app/v1/nope"));
        assert!(!is_daemon_path("/chat"));
    }
}
