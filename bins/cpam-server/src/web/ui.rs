//! The console shell: a placeholder page until the console itself lands.

use axum::response::Html;

use super::ApiRoutes;

const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>cpam console</title></head><body><h1>cpam console</h1>\
<p>The REST API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>\
</body></html>\n";

async fn shell() -> Html<&'static str> {
    Html(PAGE)
}

async fn asset() -> super::error::ApiError {
    super::error::ApiError::not_found("no such asset")
}

/// The shell routes (`/`, `/ui/{*path}`, `/assets/{*path}`); each needs a
/// "console" entry in the policy table.
pub fn routes() -> ApiRoutes {
    ApiRoutes::default()
        .add("GET", "/", shell)
        .add("GET", "/ui/{*path}", shell)
        .add("GET", "/assets/{*path}", asset)
}
