use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::*;

/// A wrapped server side of a loopback connection, and its client side.
async fn pair(timeout: Duration) -> (HeaderDeadline, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
    (HeaderDeadline::new(stream, timeout), client)
}

#[tokio::test]
async fn phases_follow_the_exchange() {
    let (mut s, _c) = pair(Duration::from_secs(10)).await;
    assert_eq!(s.phase, Phase::Idle);
    s.saw(b"GET / HTTP/1.1\r\nHost: a\r\n");
    assert!(matches!(s.phase, Phase::Headers { matched: 1, .. }));
    s.saw(b"\r");
    assert!(matches!(s.phase, Phase::Headers { matched: 1, .. }));
    s.saw(b"\nbody");
    assert_eq!(s.phase, Phase::Body);
    s.writing(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        s.phase,
        Phase::Body,
        "an interim response keeps the body phase"
    );
    s.writing(b"HTTP/1.1 200 OK\r\n");
    assert_eq!(s.phase, Phase::Idle);
    s.saw(b"GET / HTTP/1.1\n\n");
    assert_eq!(
        s.phase,
        Phase::Body,
        "LF-only line endings end the header too"
    );
    s.writing(b"HTTP/1.1 101 Switching Protocols\r\n");
    assert_eq!(s.phase, Phase::Off);
    s.saw(b"any frames");
    assert_eq!(s.phase, Phase::Off);
}

#[tokio::test]
async fn h2c_preface_turns_the_deadline_off() {
    let (mut s, _c) = pair(Duration::from_secs(10)).await;
    s.saw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(s.phase, Phase::Off);
}

#[tokio::test]
async fn a_slow_header_fails_the_read_at_the_deadline() {
    let (mut s, mut c) = pair(Duration::from_millis(300)).await;
    let writer = tokio::spawn(async move {
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if c.write_all(b"X: 1\r\n").await.is_err() {
                break;
            }
        }
        c
    });
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let err = loop {
        match s.read(&mut buf).await {
            Ok(0) => panic!("unexpected EOF"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(900),
        "{took:?}"
    );
    writer.abort();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_cut() {
    let (mut s, mut c) = pair(Duration::from_millis(100)).await;
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        (n, s.phase)
    });
    // Idle for three deadlines, then a whole request at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (n, phase) = reader.await.unwrap();
    assert!(n > 0);
    assert_eq!(phase, Phase::Body);
}

#[tokio::test]
async fn a_new_connection_that_stays_silent_fails_at_the_deadline() {
    let (s, _c) = pair(Duration::from_millis(300)).await;
    let HeaderDeadline { inner, .. } = s;
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut s = HeaderDeadline::first_request(inner, Duration::from_millis(300), deadline);
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}
