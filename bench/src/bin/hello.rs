//! A hello-world `lambda_http` function: part 3's reference for cold start. What any function on
//! this runtime pays before its own code runs (the process, the tokio runtime, the runtime API
//! client, the first invocation fetched and answered), built with the same release profile as
//! the service's functions.

use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async { Ok::<_, Error>("hello") })).await
}
