//! `POST /api/session/create` as its own Lambda function; the handler lives in `shared`.

use shared::handlers::only;
use shared::{State, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::init_logging();
    let state = State::from_env().await?;
    lambda::run(state, only::SessionCreate).await
}
