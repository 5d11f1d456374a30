//! The console: a vanilla-JS single-page app embedded in the binary.
//!
//! `GET /` and `GET /ui/{*path}` serve the HTML shell (it calls
//! `api/v1/auth/me` and shows the sign-in form on 401); `GET /assets/{*path}`
//! serves the scripts and the stylesheet with their content types. All of
//! it is relative to the mount's base path: the shell carries it as
//! `<base href>` and every URL in the scripts is built from it, so the
//! console runs at `/` or below any prefix. Every console action is a REST
//! call under `api/v1`. The pages carry no inline
//! scripts, handlers or styles, so the CSP `default-src 'self'` holds.
//! Responses are revalidated (`no-cache` + a content-hash `ETag`), so a new
//! server version never runs with stale scripts.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::{ApiRoutes, AppState};

/// One embedded file: name under `/assets/`, content type, body.
type Asset = (&'static str, &'static str, &'static str);

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

const INDEX: &str = include_str!("assets/index.html");
/// The `<base>` element of `index.html`, replaced by the mount's base path.
const BASE_ELEMENT: &str = "<base href=\"/\">";

/// Every console asset.
pub const ASSETS: &[Asset] = &[
    ("app.css", CSS, include_str!("assets/app.css")),
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("ui.js", JS, include_str!("assets/ui.js")),
    ("customers.js", JS, include_str!("assets/customers.js")),
    ("sessions.js", JS, include_str!("assets/sessions.js")),
    ("desktop.js", JS, include_str!("assets/desktop.js")),
    ("scancodes.js", JS, include_str!("assets/scancodes.js")),
    ("users.js", JS, include_str!("assets/users.js")),
    ("audit.js", JS, include_str!("assets/audit.js")),
    ("admin.js", JS, include_str!("assets/admin.js")),
    ("credentials.js", JS, include_str!("assets/credentials.js")),
    ("terminal.js", JS, include_str!("assets/terminal.js")),
    ("favicon.svg", SVG, include_str!("assets/favicon.svg")),
];

/// Third-party assets, verbatim from their npm packages (see
/// `assets/vendor/VENDOR.md`): xterm.js for the live view and the browser
/// terminal, asciinema-player for replays. Served under `/assets/vendor/`;
/// not held to the console's own style rules (they set inline styles, which
/// the CSP allows for them).
pub const VENDOR: &[Asset] = &[
    (
        "vendor/xterm.js",
        JS,
        include_str!("assets/vendor/xterm.js"),
    ),
    (
        "vendor/xterm.css",
        CSS,
        include_str!("assets/vendor/xterm.css"),
    ),
    (
        "vendor/asciinema-player.min.js",
        JS,
        include_str!("assets/vendor/asciinema-player.min.js"),
    ),
    (
        "vendor/asciinema-player.css",
        CSS,
        include_str!("assets/vendor/asciinema-player.css"),
    ),
];

fn etag(body: &str) -> String {
    let d = Sha256::digest(body.as_bytes());
    format!("\"{}\"", hex::encode(&d[..12]))
}

static ASSET_ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .chain(VENDOR)
        .map(|(_, _, body)| etag(body))
        .collect()
});

fn respond(
    headers: &HeaderMap,
    content_type: &'static str,
    tag: &str,
    body: impl IntoResponse,
) -> Response {
    let tag_value = HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let common = [
        (header::ETAG, tag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// `index.html` for a console whose base path ends in `/` (`/`, `/pam/`).
pub fn shell_html(base_href: &str) -> String {
    INDEX.replacen(BASE_ELEMENT, &format!("<base href=\"{base_href}\">"), 1)
}

async fn shell(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let html = shell_html(&state.mount().base_href());
    let tag = etag(&html);
    respond(&headers, HTML, &tag, html)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let all = || ASSETS.iter().chain(VENDOR);
    match all().position(|(name, _, _)| *name == path) {
        Some(i) => {
            let (_, content_type, body) = all().nth(i).copied().unwrap_or(ASSETS[0]);
            respond(&headers, content_type, &ASSET_ETAGS[i], body)
        }
        None => ApiError::not_found(format!("no console asset `{path}`")).into_response(),
    }
}

/// The console routes: the shell at `/` and `/ui/{*path}`, and `/assets/{*path}`.
pub fn routes() -> ApiRoutes {
    ApiRoutes::default()
        .add("GET", "/", shell)
        .add("GET", "/ui/{*path}", shell)
        .add("GET", "/assets/{*path}", asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_files() -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("index.html", INDEX)];
        v.extend(ASSETS.iter().map(|(n, _, b)| (*n, *b)));
        v
    }

    #[test]
    fn every_referenced_asset_is_embedded() {
        let known: Vec<&str> = ASSETS.iter().chain(VENDOR).map(|(n, _, _)| *n).collect();
        for (file, body) in all_files() {
            for piece in body.split(['\'', '"']) {
                let name = piece
                    .strip_prefix("assets/")
                    .or_else(|| piece.strip_prefix("./"));
                if let Some(name) =
                    name.filter(|n| [".js", ".css", ".svg"].iter().any(|e| n.ends_with(e)))
                {
                    assert!(
                        known.contains(&name),
                        "{file} refers to {piece}, which is not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn assets_obey_the_content_security_policy() {
        // CSP `default-src 'self'`: no inline scripts, inline handlers or inline styles.
        let html = INDEX.to_ascii_lowercase();
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(
                open.contains("src="),
                "index.html has an inline script: <script{open}>"
            );
        }
        for (file, body) in all_files() {
            let lower = body.to_ascii_lowercase();
            for bad in [
                " onclick=",
                " onload=",
                " onsubmit=",
                " style=",
                "innerhtml",
                "eval(",
                "new function(",
            ] {
                assert!(
                    !lower.contains(bad),
                    "{file} contains `{bad}`, which the CSP forbids or the console avoids"
                );
            }
            assert!(
                !lower.contains(".style."),
                "{file} sets inline styles; use a class"
            );
        }
    }

    #[test]
    fn the_console_names_every_service_kind() {
        let customers = include_str!("assets/customers.js");
        let kinds = &customers[customers.find("export const KINDS").unwrap_or(0)..];
        let kinds = &kinds[..kinds.find("};").unwrap_or(kinds.len())];
        for kind in crate::model::ServiceKind::ALL {
            let name = kind.as_str();
            assert!(
                kinds.contains(&format!("'{name}':")) || kinds.contains(&format!("  {name}:")),
                "customers.js KINDS lacks `{name}`"
            );
        }
    }

    #[test]
    fn vendored_files_match_their_recorded_checksums() {
        let manifest = include_str!("assets/vendor/VENDOR.md");
        let licenses: &[(&str, &str)] = &[
            ("xterm.LICENSE", include_str!("assets/vendor/xterm.LICENSE")),
            (
                "asciinema-player.LICENSE",
                include_str!("assets/vendor/asciinema-player.LICENSE"),
            ),
        ];
        let files = VENDOR
            .iter()
            .map(|(n, _, b)| (n.trim_start_matches("vendor/"), *b))
            .chain(licenses.iter().copied());
        let mut checked = 0;
        for (name, body) in files {
            let sum = hex::encode(Sha256::digest(body.as_bytes()));
            let line = manifest
                .lines()
                .find(|l| l.contains(&format!("`{name}`")))
                .unwrap_or_else(|| panic!("VENDOR.md does not list {name}"));
            assert!(
                line.contains(&sum),
                "{name} changed: its SHA-256 is {sum}, VENDOR.md says: {line}"
            );
            checked += 1;
        }
        assert_eq!(checked, VENDOR.len() + licenses.len());
    }

    #[test]
    fn content_types_match_file_names() {
        for (name, content_type, _) in ASSETS.iter().chain(VENDOR) {
            let want = match name.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => SVG,
                other => panic!("{name}: no content type for {other:?}"),
            };
            assert_eq!(*content_type, want, "{name}");
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_revalidated() {
        let r = asset(Path("app.js".into()), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        let tag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        let again = asset(Path("app.js".into()), h).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let missing = asset(Path("nope.js".into()), HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_shell_carries_the_base_path_and_only_relative_urls() {
        assert!(INDEX.contains(BASE_ELEMENT), "index.html lost its <base>");
        let html = shell_html("/pam/");
        assert!(html.contains("<base href=\"/pam/\">"), "{html}");
        for (file, body) in all_files() {
            for piece in body.split(['\'', '"', '`']) {
                assert!(
                    !piece.starts_with("/api/") && !piece.starts_with("/assets/"),
                    "{file} has the absolute URL `{piece}`: build it from the base path"
                );
            }
        }
    }
}
