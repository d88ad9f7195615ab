//! What every Lambda binary runs: logging set up, then the endpoint's handler over one state.

use crate::handlers::{Endpoint, handle};
use crate::state::State;
use lambda_http::{Error, Request, service_fn};

/// Structured logs: JSON when the function's log format is JSON (as `template.yaml` sets it),
/// text locally; the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
pub fn init_logging() {
    lambda_http::tracing::init_default_subscriber();
}

/// Serves `endpoint` until the runtime stops. `state` is built once per cold start.
pub async fn run(state: State, endpoint: Endpoint) -> Result<(), Error> {
    // One state for the life of the process; every invocation borrows it.
    let state: &'static State = Box::leak(Box::new(state));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(handle(state, endpoint, req).await)
    }))
    .await
}
