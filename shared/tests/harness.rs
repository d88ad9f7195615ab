//! Smoke tests for the server harnesses in `support::servers`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::servers::*;

const QUICK: Duration = Duration::from_secs(2);

fn ping(port: u16, timeout: Duration) -> std::io::Result<String> {
    redis_command(port, &["PING"], timeout)
}

#[test]
fn standalone_answers_ping() {
    let redis = RedisServer::start();
    assert_eq!(ping(redis.port(), QUICK).unwrap(), "PONG");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_ne!(redis.port(), 6379);
}

#[test]
fn restart_after_kill_answers_on_the_same_port_with_no_data() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(
        redis_command(port, &["SET", "k", "v"], QUICK).unwrap(),
        "OK"
    );

    redis.kill();
    assert!(ping(port, QUICK).is_err(), "a killed server still answers");

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(ping(port, QUICK).unwrap(), "PONG");
    assert!(
        redis_command(port, &["GET", "k"], QUICK).is_err(),
        "data survived a restart (nil expected)"
    );
}

#[test]
fn pause_blocks_until_resume() {
    let redis = RedisServer::start();
    redis.pause();
    let err = ping(redis.port(), Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "expected a read timeout from a paused server, got {err:?}"
    );
    redis.resume();
    assert_eq!(ping(redis.port(), QUICK).unwrap(), "PONG");
}

#[test]
fn start_with_requirepass_is_ready_and_demands_auth() {
    let redis = RedisServer::start_with(&["--requirepass", "pw"]);
    let err = ping(redis.port(), QUICK).unwrap_err();
    assert!(err.to_string().starts_with("NOAUTH"), "{err}");
}

#[test]
fn drop_kills_the_server() {
    let port = RedisServer::start().port();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening after drop"
    );
}

// Parent-death signals fire when the forking *thread* exits; servers must outlive test threads.
#[test]
fn servers_outlive_the_thread_that_started_them() {
    let redis = thread::spawn(RedisServer::start).join().unwrap();
    let urls = thread::spawn(|| RedisCluster::shared().urls())
        .join()
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(ping(redis.port(), QUICK).unwrap(), "PONG");
    for url in urls {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(ping(port, QUICK).unwrap(), "PONG", "{url}");
    }
}

#[test]
fn cluster_is_ok_on_all_three_nodes() {
    let started = Instant::now();
    let urls = RedisCluster::shared().urls();
    eprintln!(
        "RedisCluster::shared() returned after {:?}",
        started.elapsed()
    );
    assert_eq!(urls.len(), 3);
    for url in urls {
        let port: u16 = url
            .strip_prefix("redis://127.0.0.1:")
            .unwrap()
            .parse()
            .unwrap();
        let info = redis_command(port, &["CLUSTER", "INFO"], QUICK).unwrap();
        assert!(info.contains("cluster_state:ok"), "{url}: {info}");
        assert!(info.contains("cluster_size:3"), "{url}: {info}");
    }
}

#[test]
fn moto_answers_http() {
    let started = Instant::now();
    let endpoint = Moto::shared().endpoint();
    eprintln!("Moto::shared() returned after {:?}", started.elapsed());
    let address = endpoint.strip_prefix("http://").expect("http endpoint");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET / HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1."), "{response}");
}
