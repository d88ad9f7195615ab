//! `POST /api/session/revoke` as its own Lambda function; the handler lives in `shared`.

use shared::{Endpoint, State, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::init_logging();
    let state = State::from_env().await?;
    lambda::run(state, Endpoint::SessionRevoke).await
}
