//! One CloudWatch Embedded Metric Format line per invocation: plain JSON on stdout, which
//! CloudWatch turns into metrics without an SDK call. Also times the store calls of a request.

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

/// The EMF directive: the same for every line, so written once. It goes between the timestamp
/// and the values.
const DIRECTIVE: &str = concat!(
    r#","CloudWatchMetrics":[{"Namespace":"SessionService","Dimensions":[["Operation"],[]],"#,
    r#""Metrics":[{"Name":"Latency","Unit":"Milliseconds"},"#,
    r#"{"Name":"StoreLatency","Unit":"Milliseconds"},"#,
    r#"{"Name":"Fallback","Unit":"Count"},{"Name":"ServerError","Unit":"Count"}]}]}"#,
);

impl Invocation<'_> {
    /// The EMF document: metrics per operation and across all operations. Written straight into
    /// one string, without building a JSON tree: this runs on every request.
    pub fn emf(&self, timestamp_ms: i64) -> String {
        use std::fmt::Write;
        let mut line = String::with_capacity(DIRECTIVE.len() + 256);
        let _ = write!(line, r#"{{"_aws":{{"Timestamp":{timestamp_ms}"#);
        line.push_str(DIRECTIVE);
        line.push_str(r#","Operation":"#);
        json_str(&mut line, self.operation);
        line.push_str(r#","Outcome":"#);
        json_str(&mut line, self.outcome);
        let _ = write!(line, r#","Status":{},"Store":"#, self.status);
        json_str(&mut line, self.store);
        line.push_str(r#","Latency":"#);
        millis(&mut line, self.latency);
        line.push_str(r#","StoreLatency":"#);
        millis(&mut line, self.store_latency);
        let _ = write!(
            line,
            r#","Fallback":{},"ServerError":{}}}"#,
            u8::from(self.fallback),
            u8::from(self.status >= 500)
        );
        line
    }
}

/// `text` as a JSON string. The names written here are the code's own identifiers, which need
/// no escaping; anything else goes through serde_json.
fn json_str(line: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
    {
        line.push('"');
        line.push_str(text);
        line.push('"');
    } else {
        line.push_str(&serde_json::Value::from(text).to_string());
    }
}

/// Milliseconds with three decimals (microsecond precision), as a JSON number.
fn millis(line: &mut String, d: Duration) {
    use std::fmt::Write;
    // Past u64 microseconds (half a million years) is no latency.
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let _ = write!(line, "{}.{:03}", micros / 1000, micros % 1000);
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

    /// The line written by hand is the document serde_json would build, value for value.
    #[test]
    fn emf_is_the_document_it_stands_for() {
        for (outcome, latency_us, fallback, status) in [
            ("ok", 0, false, 200),
            ("store_unavailable", 1_234_567, true, 503),
            ("a \"quoted\" \\ outcome\n", 999, false, 400),
        ] {
            let invocation = Invocation {
                operation: "cache-put",
                outcome,
                status,
                store: "redis+dynamodb",
                store_latency: Duration::from_micros(latency_us / 2),
                latency: Duration::from_micros(latency_us),
                fallback,
            };
            let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
            let expected = serde_json::json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123_i64,
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
                "Operation": "cache-put",
                "Outcome": outcome,
                "Status": status,
                "Store": "redis+dynamodb",
                "Latency": ms(latency_us),
                "StoreLatency": ms(latency_us / 2),
                "Fallback": u8::from(fallback),
                "ServerError": u8::from(status >= 500),
            });
            let line = invocation.emf(1_700_000_000_123);
            let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(doc, expected, "{line}");
        }
    }
}
