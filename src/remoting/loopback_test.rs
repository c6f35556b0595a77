//! Loopback tests of server + client over real tokio sockets on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use super::server::BoxFuture;
use super::*;
use super::{codec, response_code};

/// Echoes code+1000, the `k` ext field and the body; code 99 parks forever (long poll);
/// code 7 is counted (oneway target). Records closes.
#[derive(Default)]
struct Echo {
    oneway_seen: AtomicUsize,
    closed: Mutex<Vec<u64>>,
    connections: Mutex<Vec<Connection>>,
}

impl RequestProcessor for Echo {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            self.connections.lock().unwrap().push(conn.clone());
            match request.code {
                7 => {
                    self.oneway_seen.fetch_add(1, Ordering::SeqCst);
                    // Even a Some must not be written for a oneway request.
                    Some(request.response(0, None))
                }
                99 => {
                    futures::future::pending::<()>().await;
                    None
                }
                50 => {
                    // Delay inversely to the `delay` field so responses come back out of order.
                    let delay: u64 = request.required("delay").unwrap();
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Some(
                        request
                            .response(0, None)
                            .with_ext("k", request.ext("k").unwrap()),
                    )
                }
                _ => {
                    let mut resp = request.response(request.code + 1000, Some("echo".to_string()));
                    if let Some(k) = request.ext("k") {
                        resp.set_ext("k", k);
                    }
                    Some(resp.with_body(request.body.clone()))
                }
            }
        })
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.closed.lock().unwrap().push(conn.id());
    }
}

async fn start() -> (RemotingServer, Arc<Echo>, String) {
    let echo = Arc::new(Echo::default());
    let server = RemotingServer::bind("127.0.0.1:0".parse().unwrap(), echo.clone())
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    (server, echo, addr)
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 2 s");
}

#[tokio::test]
async fn request_response_round_trip() {
    let (_server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let request = RemotingCommand::request(10)
        .with_ext("k", "v1")
        .with_body(Bytes::from_static(b"hello"));
    let response = client.invoke(&addr, request, 3000).await.unwrap();
    assert_eq!(response.code, 1010);
    assert!(response.is_response());
    assert_eq!(response.remark.as_deref(), Some("echo"));
    assert_eq!(response.ext("k"), Some("v1"));
    assert_eq!(&response.body[..], b"hello");
}

/// Reads one frame from a raw socket (test side of the protocol).
async fn read_frame(stream: &mut tokio::net::TcpStream) -> RemotingCommand {
    let length = stream.read_i32().await.unwrap();
    let mut frame = vec![0u8; length as usize];
    stream.read_exact(&mut frame).await.unwrap();
    codec::decode(Bytes::from(frame)).unwrap()
}

/// True if the peer closed the raw socket (EOF or reset) within 2 s.
async fn closed_by_peer(stream: &mut tokio::net::TcpStream) -> bool {
    let mut scratch = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut scratch)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test]
async fn request_response_in_rocketmq_encoding() {
    let (_server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let mut request = RemotingCommand::request(11).with_ext("k", "\u{4e2d}");
    request.serialize_type = SerializeType::RocketMq;
    let response = client.invoke(&addr, request, 3000).await.unwrap();
    assert_eq!(response.code, 1011);
    // The response mirrors the request's encoding.
    assert_eq!(response.serialize_type, SerializeType::RocketMq);
    assert_eq!(response.ext("k"), Some("\u{4e2d}"));
}

#[tokio::test]
async fn oneway_request_gets_no_response() {
    let (_server, echo, addr) = start().await;
    let client = RemotingClient::new();
    client
        .invoke_oneway(&addr, RemotingCommand::request(7))
        .await
        .unwrap();
    wait_until(|| echo.oneway_seen.load(Ordering::SeqCst) == 1).await;

    // On a raw socket: a oneway request then a normal one; the first frame back must be the
    // normal request's response, so nothing was written for the oneway one.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut oneway = RemotingCommand::request(7);
    oneway.opaque = 1;
    oneway.flag = FLAG_ONEWAY;
    let mut normal = RemotingCommand::request(10);
    normal.opaque = 2;
    raw.write_all(&codec::encode(&oneway).unwrap())
        .await
        .unwrap();
    wait_until(|| echo.oneway_seen.load(Ordering::SeqCst) == 2).await;
    raw.write_all(&codec::encode(&normal).unwrap())
        .await
        .unwrap();
    let response = read_frame(&mut raw).await;
    assert_eq!(response.opaque, 2);
    assert_eq!(response.code, 1010);
    assert_eq!(response.flag & FLAG_RESPONSE, FLAG_RESPONSE);
}

#[tokio::test]
async fn concurrent_requests_are_matched_by_opaque() {
    let (server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let client = client.clone();
        let addr = addr.clone();
        tasks.push(crate::rt::spawn(async move {
            // Earlier requests sleep longer: responses arrive in reverse order.
            let request = RemotingCommand::request(50)
                .with_ext("k", i)
                .with_ext("delay", (32 - i) * 5);
            let response = client.invoke(&addr, request, 5000).await.unwrap();
            assert_eq!(response.ext("k"), Some(i.to_string().as_str()));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // All went over one cached connection, with nothing left pending.
    let conn = client.connection(&addr, 1000).await.unwrap();
    assert_eq!(conn.pending_count(), 0);
    assert_eq!(server.connections().len(), 1);
}

#[tokio::test]
async fn timeout_removes_the_pending_entry_and_keeps_the_connection() {
    let (_server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let started = crate::rt::now();
    let err = client
        .invoke(&addr, RemotingCommand::request(99), 100)
        .await
        .unwrap_err();
    match &err {
        RemotingError::Timeout {
            addr: reported,
            timeout_ms,
        } => {
            assert_eq!(reported, &addr);
            assert_eq!(*timeout_ms, 100);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let conn = client.connection(&addr, 1000).await.unwrap();
    assert_eq!(conn.pending_count(), 0);
    let response = client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    assert_eq!(response.code, 1010);
    assert_eq!(conn.pending_count(), 0);
}

/// A client-side handler for server-initiated requests.
struct ClientHandler;

impl RequestProcessor for ClientHandler {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(
            async move { Some(request.response(0, Some(format!("client saw {}", request.code)))) },
        )
    }
}

#[tokio::test]
async fn server_initiated_invoke_is_answered_by_the_client_handler() {
    let (_server, echo, addr) = start().await;
    let client = RemotingClient::with_handler(Arc::new(ClientHandler));
    client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    let server_side = echo.connections.lock().unwrap()[0].clone();
    let response = server_side
        .invoke(RemotingCommand::request(40), 3000)
        .await
        .unwrap();
    assert_eq!(response.code, 0);
    assert_eq!(response.remark.as_deref(), Some("client saw 40"));
    assert_eq!(server_side.pending_count(), 0);

    // A client without a handler answers REQUEST_CODE_NOT_SUPPORTED.
    let plain = RemotingClient::new();
    plain
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    let server_side = echo.connections.lock().unwrap().last().unwrap().clone();
    let response = server_side
        .invoke(RemotingCommand::request(39), 3000)
        .await
        .unwrap();
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        response.remark.as_deref(),
        Some(" request type 39 not supported")
    );
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let (server, echo, addr) = start().await;
    let client = RemotingClient::new();
    client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();

    // Valid length, unknown serialize type.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 6, 9, 0, 0, 2, b'{', b'}'])
        .await
        .unwrap();
    assert!(closed_by_peer(&mut raw).await);

    // Valid framing, invalid JSON header.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 7, 0, 0, 0, 3, b'{', b'x', b'}'])
        .await
        .unwrap();
    assert!(closed_by_peer(&mut raw).await);

    // Negative length.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0xFF; 12]).await.unwrap();
    assert!(closed_by_peer(&mut raw).await);

    wait_until(|| echo.closed.lock().unwrap().len() == 3).await;
    // The well-behaved client's connection is unaffected.
    let response = client
        .invoke(&addr, RemotingCommand::request(12), 3000)
        .await
        .unwrap();
    assert_eq!(response.code, 1012);
    assert_eq!(server.connections().len(), 1);
}

#[tokio::test]
async fn oversized_frame_closes_the_connection() {
    let (server, echo, addr) = start().await;
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let oversized = (FRAME_MAX_LENGTH_BYTES as i32 - 4) + 1;
    raw.write_all(&oversized.to_be_bytes()).await.unwrap();
    assert!(closed_by_peer(&mut raw).await);
    wait_until(|| echo.closed.lock().unwrap().len() == 1).await;
    wait_until(|| server.connections().is_empty()).await;

    // Sending an oversized frame is refused locally, without closing the connection.
    let client = RemotingClient::new();
    let too_big = RemotingCommand::request(10).with_body(vec![0u8; FRAME_MAX_LENGTH_BYTES]);
    let err = client.invoke(&addr, too_big, 3000).await.unwrap_err();
    assert!(
        matches!(err, RemotingError::FrameTooLarge { .. }),
        "{err:?}"
    );
    let conn = client.connection(&addr, 1000).await.unwrap();
    assert_eq!(conn.pending_count(), 0);
    assert!(client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .is_ok());
}

#[tokio::test]
async fn large_bodies_cross_intact() {
    let (_server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let body = Bytes::from(body);
    // Several at once so large and small frames interleave in the writer.
    let mut tasks = Vec::new();
    for i in 0..4usize {
        let client = client.clone();
        let addr = addr.clone();
        let body = if i % 2 == 0 {
            body.clone()
        } else {
            Bytes::from_static(b"small")
        };
        tasks.push(crate::rt::spawn(async move {
            let response = client
                .invoke(
                    &addr,
                    RemotingCommand::request(10).with_body(body.clone()),
                    10_000,
                )
                .await
                .unwrap();
            assert_eq!(response.body, body);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn close_fires_on_connection_closed_and_client_reconnects() {
    let (server, echo, addr) = start().await;
    let client = RemotingClient::new();
    client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    let first = client.connection(&addr, 1000).await.unwrap();
    client.close(&addr);
    assert!(first.is_closed());
    wait_until(|| echo.closed.lock().unwrap().len() == 1).await;
    wait_until(|| server.connections().is_empty()).await;

    // Re-established on demand.
    client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    let second = client.connection(&addr, 1000).await.unwrap();
    assert_ne!(first.id(), second.id());

    // Server-side close: the client notices and reconnects on the next request.
    for conn in server.connections() {
        conn.close();
    }
    wait_until(|| second.is_closed()).await;
    client
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    // Exactly one close callback per closed connection.
    wait_until(|| echo.closed.lock().unwrap().len() == 2).await;
    let closed = echo.closed.lock().unwrap().clone();
    assert_ne!(closed[0], closed[1]);
}

#[tokio::test]
async fn shutdown_fails_pending_invokes_and_stops_accepting() {
    let (server, echo, addr) = start().await;
    let client = RemotingClient::new();
    let parked = {
        let client = client.clone();
        let addr = addr.clone();
        crate::rt::spawn(async move {
            client
                .invoke(&addr, RemotingCommand::request(99), 30_000)
                .await
        })
    };
    wait_until(|| !echo.connections.lock().unwrap().is_empty()).await;
    server.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("parked invoke must fail when the connection closes")
        .unwrap();
    assert!(
        matches!(result, Err(RemotingError::ConnectionClosed { .. })),
        "{result:?}"
    );
    wait_until(|| echo.closed.lock().unwrap().len() == 1).await;
    // Listener released: new connections are refused (or closed at once).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result = client
        .invoke(&addr, RemotingCommand::request(10), 500)
        .await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn connect_failure_is_reported() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = RemotingClient::new();
    let err = client
        .invoke(
            &format!("127.0.0.1:{port}"),
            RemotingCommand::request(10),
            1000,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Connect { .. }), "{err:?}");
}

struct Panicky;

impl RequestProcessor for Panicky {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        _request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move { panic!("processor bug") })
    }
}

#[tokio::test]
async fn processor_panic_answers_system_error() {
    let server = RemotingServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Panicky))
        .await
        .unwrap();
    let client = RemotingClient::new();
    let response = client
        .invoke(
            &server.local_addr().to_string(),
            RemotingCommand::request(10),
            3000,
        )
        .await
        .unwrap();
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
}

/// Rough throughput check (not a benchmark): `cargo test --lib throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_smoke() {
    let (_server, _echo, addr) = start().await;
    let client = RemotingClient::new();
    let total = 50_000usize;
    let in_flight = 64usize;
    let body = Bytes::from(vec![7u8; 1024]);
    let started = crate::rt::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let client = client.clone();
        let addr = addr.clone();
        let body = body.clone();
        tasks.push(crate::rt::spawn(async move {
            for _ in 0..total / in_flight {
                let request = RemotingCommand::request(10)
                    .with_ext("topic", "TopicTest")
                    .with_ext("queueId", 3)
                    .with_body(body.clone());
                let response = client.invoke(&addr, request, 10_000).await.unwrap();
                assert_eq!(response.body.len(), 1024);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{} round trips in {:?}: {:.0}/s",
        total,
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn shutdown_releases_the_address_and_bind_reports_conflicts() {
    let (server, _echo, addr) = start().await;
    let bound: std::net::SocketAddr = addr.parse().unwrap();
    // The address is taken while the server runs.
    let conflict = RemotingServer::bind(bound, Arc::new(Echo::default())).await;
    match conflict {
        Err(RemotingError::Io(e)) => assert!(e.to_string().contains(&addr), "{e}"),
        Err(other) => panic!("expected an i/o error naming the address, got {other:?}"),
        Ok(_) => panic!("second bind of {addr} succeeded"),
    }
    server.shutdown();
    assert!(server.is_shutdown());
    tokio::time::timeout(Duration::from_secs(2), server.wait_stopped())
        .await
        .expect("listener released");
    let again = RemotingServer::bind(bound, Arc::new(Echo::default()))
        .await
        .unwrap();
    let response = RemotingClient::new()
        .invoke(&addr, RemotingCommand::request(10), 3000)
        .await
        .unwrap();
    assert_eq!(response.code, 1010);
    again.shutdown();
}
