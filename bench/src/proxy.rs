//! A loopback TCP proxy in front of redis-server that counts, on the wire, what a client sends:
//! each command by name, and each *flight* (the client speaking again after the server answered),
//! which for one sequential client is one round trip. Pipelined commands share a flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Wire {
    flights: u64,
    client_speaking: bool,
    commands: BTreeMap<String, u64>,
}

/// What went through the proxy since the last `take`.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub flights: u64,
    pub commands: BTreeMap<String, u64>,
}

#[derive(Clone, Default)]
pub struct Proxy {
    wire: Arc<Mutex<Wire>>,
    pub port: u16,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let proxy = Proxy {
            wire: Arc::default(),
            port: listener.local_addr()?.port(),
        };
        let wire = proxy.wire.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let wire = wire.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        forward(client, server, wire).await;
                    }
                });
            }
        });
        Ok(proxy)
    }

    pub fn take(&self) -> Seen {
        let mut wire = self.wire.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = Seen {
            flights: wire.flights,
            commands: std::mem::take(&mut wire.commands),
        };
        wire.flights = 0;
        seen
    }
}

async fn forward(client: TcpStream, server: TcpStream, wire: Arc<Mutex<Wire>>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_wire = wire.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            let names = parse_commands(&mut pending);
            {
                let mut wire = up_wire.lock().unwrap_or_else(PoisonError::into_inner);
                if !wire.client_speaking {
                    wire.client_speaking = true;
                    wire.flights += 1;
                }
                for name in names {
                    *wire.commands.entry(name).or_default() += 1;
                }
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            wire.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .client_speaking = false;
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Takes every complete RESP command (an array of bulk strings) off the front of `buf`, returning
/// their names (`EVALSHA`, `SCRIPT LOAD`, …); an incomplete one stays for the next read.
fn parse_commands(buf: &mut Vec<u8>) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some((name, used)) = parse_one(&buf[at..]) {
        names.push(name);
        at += used;
    }
    buf.drain(..at);
    names
}

fn parse_one(buf: &[u8]) -> Option<(String, usize)> {
    let line = |from: usize| -> Option<(&[u8], usize)> {
        let end = buf[from..].windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[from..from + end], from + end + 2))
    };
    if buf.first()? != &b'*' {
        // An inline command: one line.
        let (text, next) = line(0)?;
        let name = String::from_utf8_lossy(text)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        return Some((name, next));
    }
    let (count, mut at) = line(0)?;
    let count: usize = std::str::from_utf8(&count[1..]).ok()?.parse().ok()?;
    let mut parts = Vec::new();
    for _ in 0..count {
        let (len, start) = line(at)?;
        let len: usize = std::str::from_utf8(len.get(1..)?).ok()?.parse().ok()?;
        let end = start + len;
        if buf.len() < end + 2 {
            return None;
        }
        if parts.len() < 2 {
            parts.push(String::from_utf8_lossy(&buf[start..end]).to_ascii_uppercase());
        }
        at = end + 2;
    }
    let name = match parts.as_slice() {
        [first, second, ..] if matches!(first.as_str(), "SCRIPT" | "CLIENT" | "CONFIG") => {
            format!("{first} {second}")
        }
        [first, ..] => first.clone(),
        [] => String::new(),
    };
    Some((name, at))
}

#[cfg(test)]
mod tests {
    use super::parse_commands;

    #[test]
    fn splits_pipelined_and_partial_commands() {
        let mut buf =
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n*1\r\n$4\r\nPI"
                .to_vec();
        assert_eq!(parse_commands(&mut buf), ["GET", "SCRIPT LOAD"]);
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(parse_commands(&mut buf), ["PING"]);
        assert!(buf.is_empty());
    }
}
