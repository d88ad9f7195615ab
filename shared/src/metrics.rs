//! One CloudWatch Embedded Metric Format line per invocation: plain JSON on stdout, which
//! CloudWatch turns into metrics without an SDK call. Also times the store calls of a request.

use serde_json::json;
use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "SessionService";

tokio::task_local! {
    /// What the store did for the request this task serves.
    static REQUEST: StoreUse;
}

#[derive(Default)]
struct StoreUse {
    time: Cell<Duration>,
    fell_back: Cell<bool>,
}

/// The store's share of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreReport {
    pub latency: Duration,
    /// Served by DynamoDB because Redis failed or was being skipped.
    pub fell_back: bool,
}

/// Runs one store call, adding its time to the request's total when one is being kept.
pub async fn time_store<F: Future>(call: F) -> F::Output {
    let started = Instant::now();
    let out = call.await;
    let _ = REQUEST.try_with(|r| r.time.set(r.time.get() + started.elapsed()));
    out
}

/// Marks the request being served as a fallback to the second store.
pub fn note_fallback() {
    let _ = REQUEST.try_with(|r| r.fell_back.set(true));
}

/// Runs a request, returning what it answered and what its store calls did.
pub async fn with_store_timer<F: Future>(request: F) -> (F::Output, StoreReport) {
    REQUEST
        .scope(StoreUse::default(), async {
            let out = request.await;
            let report = REQUEST.with(|r| StoreReport {
                latency: r.time.get(),
                fell_back: r.fell_back.get(),
            });
            (out, report)
        })
        .await
}

/// What one invocation did, as CloudWatch should count it.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub operation: &'a str,
    /// `ok`, or the error code answered.
    pub outcome: &'a str,
    pub status: u16,
    pub store: &'a str,
    pub store_latency: Duration,
    pub latency: Duration,
    /// Served by the second store because the first failed.
    pub fallback: bool,
}

impl Invocation<'_> {
    /// The EMF document: metrics per operation and across all operations.
    pub fn emf(&self, timestamp_ms: i64) -> String {
        json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Operation"], []],
                    "Metrics": [
                        { "Name": "Latency", "Unit": "Milliseconds" },
                        { "Name": "StoreLatency", "Unit": "Milliseconds" },
                        { "Name": "Fallback", "Unit": "Count" },
                        { "Name": "ServerError", "Unit": "Count" },
                    ],
                }],
            },
            "Operation": self.operation,
            "Outcome": self.outcome,
            "Status": self.status,
            "Store": self.store,
            "Latency": millis(self.latency),
            "StoreLatency": millis(self.store_latency),
            "Fallback": u8::from(self.fallback),
            "ServerError": u8::from(self.status >= 500),
        })
        .to_string()
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_time_adds_up_inside_a_request_only() {
        let ((), report) = with_store_timer(async {
            time_store(tokio::time::sleep(Duration::from_millis(5))).await;
            time_store(tokio::time::sleep(Duration::from_millis(5))).await;
        })
        .await;
        assert!(report.latency >= Duration::from_millis(10), "{report:?}");
        assert!(!report.fell_back);
        let ((), report) = with_store_timer(async { note_fallback() }).await;
        assert!(report.fell_back);
        // Outside a request nothing is kept, and nothing fails.
        time_store(async {}).await;
        note_fallback();
    }

    #[test]
    fn emf_names_every_metric_it_carries() {
        let line = Invocation {
            operation: "session-validate",
            outcome: "store_unavailable",
            status: 503,
            store: "redis",
            store_latency: Duration::from_micros(1500),
            latency: Duration::from_millis(3),
            fallback: false,
        }
        .emf(1_700_000_000_000);
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(!line.contains('\n'));
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has a value");
        }
        assert_eq!(doc["Operation"], "session-validate");
        assert_eq!(doc["StoreLatency"], 1.5);
        assert_eq!(doc["ServerError"], 1);
        assert_eq!(doc["Fallback"], 0);
    }
}
