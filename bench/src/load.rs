//! Closed-loop load: `concurrency` tasks take operation numbers from one counter until `total`
//! have run; the wall time and the CPU used (this process, redis-server) are measured around it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct Run {
    pub ops: usize,
    pub seconds: f64,
    pub failures: usize,
    /// What the first failed call said.
    pub first_failure: Option<String>,
    /// CPU seconds of the client (this process, or redis-benchmark).
    pub client_cpu: f64,
    /// CPU seconds of redis-server.
    pub server_cpu: f64,
}

impl Run {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// How one closed loop went: wall seconds, failed calls, the first failure's message.
pub type Outcome = (f64, usize, Option<String>);

/// Runs `op(i)` for i in 0..total with `concurrency` in flight; `op` says why a call failed.
pub async fn closed_loop<F, Fut>(concurrency: usize, total: usize, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, next, failures, first) =
            (op.clone(), next.clone(), failures.clone(), first.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Err(why) = op(i).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(why);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("load task panicked");
    }
    let first = first.lock().unwrap_or_else(PoisonError::into_inner).take();
    (
        started.elapsed().as_secs_f64(),
        failures.load(Ordering::Relaxed),
        first,
    )
}

/// The median of some numbers (the lower middle one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// The `p`-th percentile by nearest rank.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
