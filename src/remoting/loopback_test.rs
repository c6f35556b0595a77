//! Loopback tests of server + client over real tokio sockets on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use super::server::BoxFuture;
use super::*;

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
