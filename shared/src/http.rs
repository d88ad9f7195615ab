//! Reading requests and writing responses: headers, bodies, path parameters, JSON, CORS.

use crate::auth::origin_allowed;
use crate::error::ApiError;
use lambda_http::http::header::{AsHeaderName, HeaderName};
use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

pub const SESSION_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-session-token");
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, X-Session-Token";
const PREFLIGHT_MAX_AGE: &str = "600";

/// A header as text; `None` when absent, empty or not visible ASCII.
/// A header name (`HeaderName`, or `&str` at the cost of parsing it).
pub fn header(req: &Request, name: impl AsHeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Whether the request carries a header at all, readable or not.
pub fn has_header(req: &Request, name: impl AsHeaderName) -> bool {
    req.headers().contains_key(name)
}

/// The request body's bytes, refused past `limit`.
pub fn body_bytes(req: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(bytes)
}

/// The body as JSON; `None` for an empty body.
pub fn json_body(req: &Request, limit: usize) -> Result<Option<Value>, ApiError> {
    let bytes = body_bytes(req, limit)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::invalid_json(e.to_string()))
}

/// The path as the client sent it (REST APIs: without the stage; HTTP APIs on a named stage
/// keep it, so callers search for their prefix rather than anchor on it).
pub fn raw_path(req: &Request) -> &str {
    match req.raw_http_path() {
        "" => req.uri().path(),
        path => path,
    }
}

/// A `{name}` path parameter, decoded. API Gateway hands it over decoded; `cargo lambda watch`
/// hands over the segment as sent, so a parameter equal to the raw segment is decoded here.
/// Without an extracted parameter, the path segment after `prefix`.
pub fn path_parameter(req: &Request, name: &str, prefix: &str) -> Option<String> {
    let path = raw_path(req);
    let segment = path.find(prefix).map(|at| {
        let rest = &path[at + prefix.len()..];
        rest.strip_suffix('/').unwrap_or(rest)
    });
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    match req.path_parameters_ref().and_then(|p| p.first(name)) {
        Some(value) if Some(value) == segment && value.contains('%') => decode(value),
        Some(value) => Some(value.to_owned()),
        None => decode(segment?),
    }
}

/// A JSON response with `success` set from the status.
pub fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    json_text_response(status, json_text(status, body))
}

/// `body` as JSON text, with `success` set from the status.
pub fn json_text(status: StatusCode, mut body: Value) -> String {
    if let Value::Object(map) = &mut body {
        map.insert("success".into(), Value::Bool(status.is_success()));
    }
    body.to_string()
}

/// A response with `text`, JSON, as its body.
pub fn json_text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// [`json_response`] with one more member, `key`, whose value is `raw`: valid JSON text, sent
/// as it is rather than parsed and written again.
pub fn json_response_with_raw(
    status: StatusCode,
    body: Value,
    key: &str,
    raw: &str,
) -> Response<Body> {
    json_text_response(status, json_text_with_raw(status, body, key, raw))
}

/// The text of [`json_response_with_raw`].
pub fn json_text_with_raw(status: StatusCode, body: Value, key: &str, raw: &str) -> String {
    let mut members = match body {
        Value::Object(members) => members,
        _ => serde_json::Map::new(),
    };
    members.insert("success".into(), Value::Bool(status.is_success()));
    members.remove(key);
    let mut text = Value::Object(members).to_string();
    // `text` ends with the object's closing brace, and holds at least `success`.
    text.pop();
    text.push(',');
    text.push_str(&Value::String(key.to_owned()).to_string());
    text.push(':');
    text.push_str(raw);
    text.push('}');
    text
}

pub fn error_response(error: &ApiError, extra: Option<(&str, Value)>) -> Response<Body> {
    let mut body = json!({ "error": { "code": error.code, "message": error.message } });
    if let (Some((key, value)), Value::Object(map)) = (extra, &mut body) {
        map.insert(key.to_owned(), value);
    }
    json_response(error.status, body)
}

/// The request's `Origin` when it is one of `allowed`.
pub fn allowed_origin<'a>(req: &'a Request, allowed: &[String]) -> Option<&'a str> {
    header(req, header::ORIGIN).filter(|origin| origin_allowed(allowed, origin))
}

/// Adds the CORS headers for an allowed origin; a refused origin gets none, so the browser
/// keeps the response from the page.
pub fn add_cors(headers: &mut HeaderMap, origin: Option<&str>) {
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

/// The answer to an `OPTIONS` preflight for a route served with `method`.
pub fn preflight(origin: Option<&str>, method: &Method) -> Response<Body> {
    let Some(origin) = origin else {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not call the API",
        );
        let mut response = error_response(&error, None);
        add_cors(response.headers_mut(), None);
        return response;
    };
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    add_cors(headers, Some(origin));
    let methods = format!("{method}, OPTIONS");
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_str(&methods).expect("method names are header-safe"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}
