//! What every Lambda binary runs: logging set up, then the endpoint's handler over one state.
//!
//! The runtime hands each invocation over as the raw API Gateway event. `lambda_http` turns it
//! into an HTTP request, and panics on a few events it cannot turn into one: an
//! `X-Forwarded-Proto`, `Host` or path that make no URL, a query that makes no URI, a body marked
//! base64 that is not. Release builds abort on a panic (`panic = "abort"`), so such an event
//! would kill the container rather than get an answer. [`serve`] checks the event first
//! ([`refusal`]) and answers those with 400 `invalid_request`, in the error shape of every other
//! answer. API Gateway sets `X-Forwarded-Proto`, `Host` and the base64 flag itself, so only a
//! direct invoke of the function (or a local emulator) can send such an event.

use crate::error::ApiError;
use crate::handlers::{self, Operation, handle};
use crate::state::State;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use lambda_http::http::header::HOST;
use lambda_http::http::{HeaderMap, Method, Uri};
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::request::LambdaRequest;
use lambda_http::tracing::subscriber::filter::LevelFilter;
use lambda_http::{Adapter, Body, Error, Request, Service, service_fn};
use std::convert::Infallible;

/// Structured logs: JSON when the function's log format is JSON (as `template.yaml` sets it),
/// text locally; one level for all (`error` … `trace`) from `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else `info`. As `lambda_http`'s default subscriber, without its per-module
/// filter (`RUST_LOG=shared=debug`), whose regular expressions every binary would carry.
pub fn init_logging() {
    use lambda_http::tracing::subscriber;
    let level = log_level(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// The level of [`init_logging`]: Lambda's own setting wins over `RUST_LOG`; `info` when the
/// winner is not a level (Lambda's `FATAL` included).
fn log_level(lambda: Option<&str>, rust_log: Option<&str>) -> LevelFilter {
    lambda
        .or(rust_log)
        .and_then(|level| level.trim().parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Serves `operation` until the runtime stops. `state` is built once per cold start. A binary
/// passes its endpoint's type from [`handlers::only`], so that fat LTO leaves the other
/// endpoints' handlers (the JWT verifier, the device-label parser, the cache) out of it.
pub async fn run(state: State, operation: impl Operation) -> Result<(), Error> {
    // One state for the life of the process; every invocation borrows it (the runtime serves
    // until this function returns).
    let state = &state;
    lambda_http::lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaRequest>| async move { serve(state, operation, event).await },
    ))
    .await
}

/// One invocation, from the event the runtime received to the answer it sends back (API
/// Gateway's response JSON): the event checked ([`refusal`]), turned into a request by
/// `lambda_http`, handled by [`handle`]. Never panics on any event that deserializes.
pub async fn serve<O: Operation>(
    state: &State,
    operation: O,
    event: LambdaEvent<LambdaRequest>,
) -> Result<impl serde::Serialize + use<O>, Infallible> {
    let LambdaEvent { payload, context } = event;
    let Some(error) = refusal(&payload) else {
        let mut adapter = Adapter::from(service_fn(move |req: Request| async move {
            Ok::<_, Infallible>(handle(state, operation, req).await)
        }));
        return adapter.call(LambdaEvent::new(payload, context)).await;
    };
    // Answered without converting the event: a blank event of the same kind stands in for it,
    // so that the answer still has the shape its API Gateway expects.
    let (method, headers, blank) = match payload {
        LambdaRequest::ApiGatewayV1(event) => {
            let mut headers = event.multi_value_headers;
            headers.extend(event.headers);
            let blank = LambdaRequest::ApiGatewayV1(ApiGatewayProxyRequest::default());
            (event.http_method, headers, blank)
        }
        LambdaRequest::ApiGatewayV2(event) => {
            let blank = LambdaRequest::ApiGatewayV2(ApiGatewayV2httpRequest::default());
            (event.request_context.http.method, event.headers, blank)
        }
        // `refusal` only refuses the two kinds above.
        other => (Method::GET, HeaderMap::new(), other),
    };
    let mut adapter = Adapter::from(service_fn(move |_: Request| {
        let mut stand_in = Request::new(Body::Empty);
        *stand_in.method_mut() = method.clone();
        *stand_in.headers_mut() = headers.clone();
        let error = error.clone();
        async move {
            Ok::<_, Infallible>(handlers::refuse(
                state,
                operation.endpoint(),
                &stand_in,
                error,
            ))
        }
    }));
    adapter.call(LambdaEvent::new(blank, context)).await
}

/// Why `lambda_http` could not turn this event into a request (it would panic), if so. Follows
/// its conversion step by step: the URL it builds from `X-Forwarded-Proto`, the host and the
/// path (with the stage), the URI it builds from that URL and the query, the body it decodes.
pub fn refusal(event: &LambdaRequest) -> Option<ApiError> {
    check(event).err()
}

fn check(event: &LambdaRequest) -> Result<(), ApiError> {
    let (uri, base64_body) = match event {
        LambdaRequest::ApiGatewayV1(event) => {
            let host = host(&event.headers, event.request_context.domain_name.as_deref());
            let path = path_with_stage(
                event.request_context.stage.as_deref(),
                event.path.as_deref().unwrap_or_default(),
            );
            let mut uri = request_url(&path, &event.headers, host)?;
            // Multi-value parameters are a superset of the single ones, preferred when present.
            let query = if event.multi_value_query_string_parameters.is_empty() {
                &event.query_string_parameters
            } else {
                &event.multi_value_query_string_parameters
            };
            if !query.is_empty() {
                uri.push('?');
                uri.push_str(&query.to_query_string());
            }
            (uri, event.is_base64_encoded.then_some(&event.body))
        }
        LambdaRequest::ApiGatewayV2(event) => {
            let host = host(&event.headers, event.request_context.domain_name.as_deref());
            let path = path_with_stage(
                event.request_context.stage.as_deref(),
                event.raw_path.as_deref().unwrap_or_default(),
            );
            let mut uri = request_url(&path, &event.headers, host)?;
            if let Some(query) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
                uri.push('?');
                uri.push_str(query);
            }
            (uri, event.is_base64_encoded.then_some(&event.body))
        }
        _ => return Ok(()),
    };
    if Uri::try_from(uri.as_str()).is_err() {
        return Err(unreadable("its path or query do not make a URI"));
    }
    if let Some(Some(body)) = base64_body {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD
            .decode(body)
            .is_err()
        {
            return Err(unreadable("its body is marked base64 but is not base64"));
        }
    }
    Ok(())
}

fn unreadable(why: &str) -> ApiError {
    ApiError::invalid_request(format!("the request cannot be read: {why}"))
}

/// The `Host` header when it is text, else the domain name of the request context.
fn host<'a>(headers: &'a HeaderMap, domain_name: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or(domain_name)
}

/// The path with the stage in front, unless the stage is `$default`, is already there, or
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set: as `lambda_http` builds it.
fn path_with_stage(stage: Option<&str>, path: &str) -> String {
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        return path.to_owned();
    }
    match stage {
        None | Some("$default") => path.to_owned(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.to_owned(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

/// The URL `lambda_http` makes of the request, without its query, or the refusal when it can
/// make none: `X-Forwarded-Proto` (default `https`) `://` host and path, or the bare path when
/// there is no host.
fn request_url(path: &str, headers: &HeaderMap, host: Option<&str>) -> Result<String, ApiError> {
    match host {
        None => url::Url::parse(&format!("http://localhost{path}"))
            .map(|url| url.path().to_owned())
            .map_err(|_| unreadable("its path does not make a URL")),
        Some(host) => {
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("https");
            url::Url::parse(&format!("{scheme}://{host}{path}"))
                .map(|url| url.to_string())
                .map_err(|_| {
                    unreadable("its X-Forwarded-Proto, Host header or path do not make a URL")
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_log_level_lambdas_setting_first() {
        let cases = [
            (None, None, LevelFilter::INFO),
            (Some("DEBUG"), Some("error"), LevelFilter::DEBUG),
            (None, Some("trace"), LevelFilter::TRACE),
            (Some(" warn "), None, LevelFilter::WARN),
            // Lambda's levels include FATAL, which tracing has not; a module filter is not read.
            (Some("FATAL"), Some("debug"), LevelFilter::INFO),
            (None, Some("shared=debug"), LevelFilter::INFO),
            (None, Some("off"), LevelFilter::OFF),
        ];
        for (lambda, rust_log, want) in cases {
            assert_eq!(log_level(lambda, rust_log), want, "{lambda:?} {rust_log:?}");
        }
    }
}
