//! The limits every listener gets, over raw TCP: slow heads and slow bodies are cut off, an
//! oversized body is 413, and the server keeps answering others meanwhile.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use crmflow_httpd::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/echo",
        post(|b: Bytes| async move { format!("{}", b.len()) }),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crmflow_httpd::serve(listener, app, limits, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn quick() -> Limits {
    Limits::default()
        .with_header_read_timeout(Duration::from_millis(400))
        .with_request_timeout(Duration::from_millis(600))
}

/// Reads until the peer closes (or 5 s pass); returns what came and whether it closed.
async fn read_to_close(s: &mut TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

async fn get_ok(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (resp, _) = read_to_close(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let (addr, _stop) = start(quick()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    let mut closed = false;
    // One byte every 100 ms: never a whole head within 400 ms.
    for b in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        get_ok(addr).await; // others are served meanwhile
        if t0.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let (resp, c) = read_to_close(&mut slow).await;
        closed = c;
        assert!(!resp.contains("200 OK"), "{resp}");
    }
    assert!(closed, "a connection trickling its head stayed open");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn silent_connection_is_closed() {
    let (addr, _stop) = start(quick()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    let (_, closed) = read_to_close(&mut idle).await;
    assert!(closed, "an idle connection stayed open");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn slow_body_gets_408() {
    let (addr, _stop) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let t0 = Instant::now();
    let (resp, closed) = read_to_close(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(closed);
    assert!(t0.elapsed() < Duration::from_secs(3));
    get_ok(addr).await;
}

#[tokio::test]
async fn oversized_body_is_413_without_reading_it() {
    let (addr, _stop) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // axum's default limit is 2 MiB; claim 1 GiB.
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1073741824\r\n\r\n")
        .await
        .unwrap();
    let (resp, _) = read_to_close(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    get_ok(addr).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_their_turn() {
    let limits = Limits {
        max_connections: 2,
        ..quick()
    };
    let (addr, _stop) = start(limits).await;
    // Two silent connections hold both slots until the head timeout frees them.
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    get_ok(addr).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "the third connection was served before a slot freed: {:?}",
        t0.elapsed()
    );
}
