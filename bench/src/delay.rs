//! A loopback TCP proxy that delays what the server sends back, as a network would.
//!
//! Each chunk read from the server at time t is written to the client at t + delay: a delay line,
//! not stop-and-wait, so pipelined replies stay pipelined and a later chunk waits behind an
//! earlier one only for ordering. What the client sends goes through at once: for a request and
//! its answer the whole round trip's delay sits on the way back. The kernel here has no netem
//! qdisc, so the delay lives in the bench.
//!
//! Per connection, three OS threads: client → server (a plain copy), server → queue (stamps each
//! chunk with its due instant) and queue → client, which sleeps until the due instant with an
//! absolute `clock_nanosleep(CLOCK_MONOTONIC)` and a timer slack of 1 ns (the default slack of
//! 50 µs would be added to every sleep). No tokio timer (millisecond granularity), no spinning:
//! the 2 cores are shared. The three threads ask for SCHED_FIFO (they only wait and copy, so
//! they take the cores from nobody for long): a network's delay does not grow when the machine
//! is busy, and a thread of normal priority waits for a core behind the builds sharing it. Where
//! that is not permitted they run at normal priority, and [`realtime`] says so. How late each
//! chunk left after its due instant is recorded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How many lateness samples are kept (the first ones; enough for percentiles).
const KEEP: usize = 1_000_000;

/// 0: no proxy thread has started yet; 1: every one got SCHED_FIFO; 2: some did not.
static SCHEDULING: AtomicU8 = AtomicU8::new(0);

/// Whether the proxy threads so far all run with SCHED_FIFO (`None`: none has started).
pub fn realtime() -> Option<bool> {
    match SCHEDULING.load(Ordering::SeqCst) {
        0 => None,
        1 => Some(true),
        _ => Some(false),
    }
}

/// SCHED_FIFO at the lowest real-time priority for the calling thread, if permitted.
fn ask_realtime() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: changes the calling thread's own scheduling policy.
    let ok =
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) } == 0;
    if ok {
        let _ = SCHEDULING.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    } else {
        SCHEDULING.store(2, Ordering::SeqCst);
    }
}

pub struct DelayProxy {
    pub port: u16,
    /// Nanoseconds between each chunk's due instant and its write to the client.
    lateness: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`, delaying
    /// the server's replies by `delay`.
    pub fn start(upstream: u16, delay: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let lateness = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (late, stopped) = (lateness.clone(), stop.clone());
        thread::Builder::new()
            .name(format!("delay-accept-{port}"))
            .spawn(move || {
                for client in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let late = late.clone();
                    let _ = thread::Builder::new()
                        .name("delay-conn".into())
                        .spawn(move || {
                            if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) {
                                let _ = serve(client, server, delay, late);
                            }
                        });
                }
            })?;
        Ok(DelayProxy {
            port,
            lateness,
            stop,
        })
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// How late (µs) each chunk so far left after its due instant.
    pub fn lateness_us(&self) -> Vec<f64> {
        self.lateness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|&ns| f64::from(ns) / 1e3)
            .collect()
    }
}

impl Drop for DelayProxy {
    /// Stops accepting; connections already made go on until their client closes them.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    lateness: Arc<Mutex<Vec<u32>>>,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_in, mut server_out) = (client.try_clone()?, server.try_clone()?);
    thread::Builder::new()
        .name("delay-up".into())
        .spawn(move || {
            ask_realtime();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match client_in.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if server_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = server_out.shutdown(Shutdown::Write);
        })?;
    let (queue, chunks) = mpsc::channel::<(Vec<u8>, libc::timespec)>();
    let mut client_out = client;
    thread::Builder::new()
        .name("delay-down".into())
        .spawn(move || {
            ask_realtime();
            precise_timer_slack();
            for (chunk, due) in chunks {
                sleep_until(&due);
                let late = since(&due);
                {
                    let mut lateness = lateness.lock().unwrap_or_else(PoisonError::into_inner);
                    if lateness.len() < KEEP {
                        lateness.push(late.as_nanos().min(u128::from(u32::MAX)) as u32);
                    }
                }
                if client_out.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = client_out.shutdown(Shutdown::Write);
        })?;
    // This thread reads the server and stamps each chunk.
    ask_realtime();
    let mut server_in = server;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if queue
            .send((buf[..n].to_vec(), after(&now(), delay)))
            .is_err()
        {
            // The client is gone.
            let _ = server_in.shutdown(Shutdown::Both);
            break;
        }
    }
    Ok(())
}

/// Sleeps of this thread end within a nanosecond of their due instant, as far as the kernel's
/// timers go (the default slack is 50 µs).
fn precise_timer_slack() {
    // SAFETY: prctl on the calling thread's own timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// Nanoseconds since the clock's origin.
fn nanos(ts: &libc::timespec) -> i128 {
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn after(ts: &libc::timespec, delay: Duration) -> libc::timespec {
    let due = nanos(ts) + delay.as_nanos() as i128;
    libc::timespec {
        tv_sec: (due / 1_000_000_000) as libc::time_t,
        tv_nsec: (due % 1_000_000_000) as _,
    }
}

/// Time since `ts` (zero if it is still ahead).
fn since(ts: &libc::timespec) -> Duration {
    Duration::from_nanos((nanos(&now()) - nanos(ts)).max(0) as u64)
}

/// Sleeps until `due` on CLOCK_MONOTONIC (absolute, so an interrupted sleep resumes exactly).
fn sleep_until(due: &libc::timespec) {
    loop {
        // SAFETY: an absolute sleep on a valid timespec; no remainder is asked for.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                due,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            break;
        }
    }
}

/// Round trips (µs) of `n` sequential `PING`s to a Redis server at `port` (a proxy's or the
/// server's own), on one plain blocking connection, after `n / 10` unmeasured ones.
pub fn ping_rtts(port: u16, n: usize) -> io::Result<Vec<f64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 64];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let started = Instant::now();
        stream.write_all(b"PING\r\n")?;
        let mut got = 0;
        while !buf[..got].ends_with(b"\r\n") {
            let read = stream.read(&mut buf[got..])?;
            if read == 0 {
                return Err(io::Error::other("the connection closed during PING"));
            }
            got += read;
        }
        if &buf[..got] != b"+PONG\r\n" {
            return Err(io::Error::other(format!(
                "PING answered {:?}",
                String::from_utf8_lossy(&buf[..got])
            )));
        }
        if i >= n / 10 {
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_delay_to_the_nanosecond() {
        let ts = libc::timespec {
            tv_sec: 7,
            tv_nsec: 999_900_000,
        };
        let due = after(&ts, Duration::from_micros(250));
        assert_eq!((due.tv_sec, due.tv_nsec), (8, 150_000));
    }

    #[test]
    fn keeps_order_and_content_of_pipelined_replies() {
        // An echo server upstream; many writes before any read, as a pipelining client does.
        let echo = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let upstream = echo.local_addr().unwrap().port();
        thread::spawn(move || {
            for conn in echo.incoming().flatten() {
                let mut out = conn.try_clone().unwrap();
                let mut conn = conn;
                let _ = io::copy(&mut conn, &mut out);
            }
        });
        let proxy = DelayProxy::start(upstream, Duration::from_micros(250)).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        let sent: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
        for chunk in sent.chunks(40) {
            stream.write_all(chunk).unwrap();
        }
        let mut got = vec![0u8; sent.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, sent);
        assert!(!proxy.lateness_us().is_empty());
    }
}
