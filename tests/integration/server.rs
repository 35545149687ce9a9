//! The server under slow and idle connections: a deadline for each request head and a
//! cap on open connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backends, TestApp, http, wait_until};
use crate::on_sqlite;

on_sqlite!(slow_and_idle_connections_are_closed_and_past_the_cap_new_ones_are_refused_fast);

/// Whether the server closes `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A response (408 or the like) before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

async fn health(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: chatsender\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// 20 connections at most, 2 s for a request head; the test client's own pooled
/// connections count too, so it opens well past the cap.
async fn slow_and_idle_connections_are_closed_and_past_the_cap_new_ones_are_refused_fast(
    backends: Backends,
) {
    let s = TestApp::spawn_with(backends, |settings| {
        settings.server.max_connections = 20;
        settings.server.request_header_timeout_secs = 2;
    })
    .await;
    let address = s.daemon().base_url.trim_start_matches("http://").to_owned();
    let mut in_use = TcpStream::connect(&address).await.expect("connect");
    assert!(health(&mut in_use).await.starts_with("HTTP/1.1 200"));

    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        // Half a request head, and then nothing.
        let _ = stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: chat")
            .await;
        slow.push(stream);
    }
    let quick = slow
        .iter_mut()
        .map(|stream| closed_within(stream, Duration::from_millis(800)));
    let quick: Vec<bool> = futures_util::future::join_all(quick).await;
    let refused = quick.iter().filter(|closed| **closed).count();
    // 19 places at most are left besides `in_use` (fewer while the test client
    // still holds an idle connection).
    assert!(
        (11..=20).contains(&refused),
        "past the cap of 20, new connections are closed at once: {refused} of 30"
    );
    assert!(
        health(&mut in_use).await.starts_with("HTTP/1.1 200"),
        "a connection in use keeps working at the cap"
    );

    // Half-sent heads get 2 s, then they are closed, and new connections are served.
    let open = slow
        .iter_mut()
        .zip(&quick)
        .filter(|(_, closed)| !**closed)
        .map(|(stream, _)| closed_within(stream, Duration::from_secs(10)));
    let closed = futures_util::future::join_all(open).await;
    assert!(
        closed.iter().all(|c| *c),
        "every half-sent head is closed after the deadline"
    );
    assert!(
        closed_within(&mut in_use, Duration::from_secs(10)).await,
        "an idle keep-alive connection is closed after the deadline too"
    );
    let url = format!("{}/health", s.daemon().base_url);
    wait_until(
        "a new connection is served",
        Duration::from_secs(10),
        || async {
            let response = http().get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}
