//! Faults to inject between a store and its servers: a TCP proxy in front of redis-server that
//! delays replies or drops every connection, and a DynamoDB SDK interceptor that fails a share of
//! calls (all of them, the epoch's, the batch deletes) as throttling or a failing service would.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy in front of one TCP server. Replies can be held back by a delay (order and
/// pipelining kept, as a slow network would), and every connection can be cut at once (as a
/// network partition or a failover would); bytes are never dropped from a live stream.
#[derive(Clone)]
pub struct FaultProxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    delay_micros: AtomicU64,
    /// Sends a new value to cut every open connection.
    cut: tokio::sync::watch::Sender<u64>,
    /// New connections are closed at once while set.
    refusing: AtomicBool,
}

impl FaultProxy {
    pub async fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let proxy = FaultProxy {
            port: listener.local_addr().unwrap().port(),
            state: Arc::new(ProxyState {
                delay_micros: AtomicU64::new(0),
                cut: tokio::sync::watch::channel(0).0,
                refusing: AtomicBool::new(false),
            }),
        };
        let state = proxy.state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if state.refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let state = state.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        pump(client, server, state).await;
                    }
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every reply back this long from now on (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_micros
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Cuts every open connection.
    pub fn cut(&self) {
        self.state.cut.send_modify(|n| *n += 1);
    }

    /// Closes new connections at once (true) or serves them again (false).
    pub fn set_refusing(&self, refusing: bool) {
        self.state.refusing.store(refusing, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.set_delay(Duration::ZERO);
        self.set_refusing(false);
    }
}

async fn pump(client: TcpStream, server: TcpStream, state: Arc<ProxyState>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = {
        let state = state.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                let delay = state.delay_micros.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_micros(delay)).await;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let mut cut = state.cut.subscribe();
    // Either side ending, or a cut, ends both: the halves drop, closing both connections.
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = cut.changed() => {}
    }
}

/// Shares, in thousandths, of DynamoDB calls to fail; changed while a history runs.
#[derive(Default, Debug)]
pub struct DynamoKnobs {
    /// Any call.
    pub any: AtomicU32,
    /// Reads and bumps of the store epoch (throttling of its hot items).
    pub epoch: AtomicU32,
    /// `BatchWriteItem` (a logout-all or an eviction failing part-way).
    pub batch: AtomicU32,
    /// Writes that are applied and whose answer is lost (a timeout after DynamoDB acted).
    pub lost_answers: AtomicU32,
    /// How many calls were failed.
    pub failed: AtomicU64,
}

impl DynamoKnobs {
    pub fn heal(&self) {
        self.any.store(0, Ordering::SeqCst);
        self.epoch.store(0, Ordering::SeqCst);
        self.batch.store(0, Ordering::SeqCst);
        self.lost_answers.store(0, Ordering::SeqCst);
    }
}

/// Fails DynamoDB calls as the knobs say, with a seeded generator.
#[derive(Debug)]
pub struct DynamoFaults {
    knobs: Arc<DynamoKnobs>,
    random: Mutex<u64>,
}

impl DynamoFaults {
    pub fn new(knobs: Arc<DynamoKnobs>, seed: u64) -> Self {
        DynamoFaults {
            knobs,
            random: Mutex::new(seed | 1),
        }
    }

    fn roll(&self, per_mille: u32) -> bool {
        if per_mille == 0 {
            return false;
        }
        let mut x = self.random.lock().unwrap_or_else(PoisonError::into_inner);
        // xorshift64
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % 1000) < u64::from(per_mille)
    }
}

/// Whether a key names one of the store epoch's items.
fn is_epoch_key(key: Option<&HashMap<String, AttributeValue>>) -> bool {
    key.and_then(|k| k.get("pk"))
        .and_then(|pk| pk.as_s().ok())
        .is_some_and(|pk| pk.starts_with("META") || pk.starts_with("EPOCH"))
}

impl Intercept for DynamoFaults {
    fn name(&self) -> &'static str {
        "DynamoFaults"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let input = context.input();
        let epoch = input
            .downcast_ref::<GetItemInput>()
            .is_some_and(|i| is_epoch_key(i.key()))
            || input
                .downcast_ref::<UpdateItemInput>()
                .is_some_and(|i| is_epoch_key(i.key()))
            || input.downcast_ref::<TransactWriteItemsInput>().is_some();
        let batch = input.downcast_ref::<BatchWriteItemInput>().is_some();
        let write = batch
            || input.downcast_ref::<PutItemInput>().is_some()
            || input.downcast_ref::<UpdateItemInput>().is_some()
            || input.downcast_ref::<DeleteItemInput>().is_some()
            || input.downcast_ref::<TransactWriteItemsInput>().is_some();
        // Decided now, while the call's input is known; acted on once it was applied.
        if write && self.roll(self.knobs.lost_answers.load(Ordering::Relaxed)) {
            cfg.interceptor_state().store_put(LoseThisAnswer);
        }
        let knobs = &self.knobs;
        let fail = self.roll(knobs.any.load(Ordering::Relaxed))
            || (epoch && self.roll(knobs.epoch.load(Ordering::Relaxed)))
            || (batch && self.roll(knobs.batch.load(Ordering::Relaxed)));
        if fail {
            knobs.failed.fetch_add(1, Ordering::Relaxed);
            return Err("injected: ProvisionedThroughputExceededException".into());
        }
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let applied = context.response().is_some_and(|r| r.status().is_success());
        if applied && cfg.load::<LoseThisAnswer>().is_some() {
            self.knobs.failed.fetch_add(1, Ordering::Relaxed);
            return Err("injected: the answer of an applied write was lost".into());
        }
        Ok(())
    }
}

/// Marks a call whose answer is to be lost once it was applied.
#[derive(Debug, Clone)]
struct LoseThisAnswer;

impl Storable for LoseThisAnswer {
    type Storer = StoreReplace<Self>;
}

/// A client like `base`, whose calls go through `faults`.
pub fn faulty_client(
    base: &aws_sdk_dynamodb::Client,
    faults: DynamoFaults,
) -> aws_sdk_dynamodb::Client {
    let config = base.config().to_builder().interceptor(faults).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A loopback gate in front of moto that lets one HTTP request through at a time: moto applies
/// concurrent updates of one item without isolation (two may read the same old value), where
/// DynamoDB serializes them. Calls still interleave, so a bump made of a read and a write would
/// still lose updates here.
pub async fn one_at_a_time(upstream: &str) -> String {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (gate, upstream) = (gate.clone(), upstream.clone());
            tokio::spawn(async move {
                // One request per connection: the answer closes it.
                let Some(request) = read_request(&mut client).await else {
                    return;
                };
                let answer = {
                    let _one = gate.lock().await;
                    let mut server = TcpStream::connect(&upstream).await.unwrap();
                    server.write_all(&request).await.unwrap();
                    let mut answer = Vec::new();
                    server.read_to_end(&mut answer).await.unwrap();
                    answer
                };
                let _ = client.write_all(&answer).await;
            });
        }
    });
    format!("http://{address}")
}

/// One HTTP request (its body by `Content-Length`), rewritten to close the connection after it.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = client.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let mut rewritten: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    rewritten.push("Connection: close\r\n\r\n");
    let mut request = rewritten.join("\r\n").into_bytes();
    request.extend_from_slice(&buffer[head_end..head_end + length]);
    Some(request)
}
