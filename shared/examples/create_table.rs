//! Creates the session table on a local DynamoDB-compatible server (moto) if it is missing.
//!
//! `make run STORE=dynamodb` runs it once moto answers; a deployed table comes from
//! `template.yaml` instead. Credentials and region come from the usual AWS variables (the
//! Makefile sets dummy ones for the local server).
//!
//! Usage: `cargo run -q -p shared --example create_table -- <endpoint-url> <table-name>`

use shared::store::DynamoStore;
use std::process::ExitCode;
use std::time::Duration;

/// moto answers in milliseconds once up; a busy machine gets some slack.
const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, table] = args.as_slice() else {
        eprintln!("usage: create_table <endpoint-url> <table-name>");
        return ExitCode::from(2);
    };
    let store = DynamoStore::connect(table, Some(endpoint), TIMEOUT).await;
    match store.ensure_table().await {
        Ok(()) => {
            println!("table {table} ready at {endpoint}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("create_table: cannot create {table} at {endpoint}: {e}");
            ExitCode::FAILURE
        }
    }
}
