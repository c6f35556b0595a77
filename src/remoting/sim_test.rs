//! One request/response between two simulated nodes over madsim's network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::server::BoxFuture;
use super::*;

struct Echo;

impl RequestProcessor for Echo {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move { Some(request.response(0, None).with_body(request.body.clone())) })
    }
}

#[madsim::test]
async fn request_response_between_simulated_nodes() {
    let handle = madsim::runtime::Handle::current();
    let server_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let server_node = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    server_node.spawn(async move {
        let server = RemotingServer::bind(server_addr, Arc::new(Echo))
            .await
            .unwrap();
        // Keep the server (and its node) alive for the test.
        std::future::pending::<()>().await;
        drop(server);
    });
    let result = client_node
        .spawn(async move {
            // Give the server node time to bind.
            crate::rt::sleep(Duration::from_millis(100)).await;
            let client = RemotingClient::new();
            let request = RemotingCommand::request(10)
                .with_ext("topic", "T")
                .with_body(Bytes::from_static(b"ping"));
            let first = client
                .invoke("10.0.0.1:9876", request.clone(), 3000)
                .await?;
            // A second request reuses the cached connection.
            let second = client.invoke("10.0.0.1:9876", request, 3000).await?;
            Ok::<_, RemotingError>((first, second))
        })
        .await
        .unwrap();
    let (first, second) = result.unwrap();
    assert_eq!(first.code, 0);
    assert!(first.is_response());
    assert_eq!(&first.body[..], b"ping");
    assert_ne!(first.opaque, second.opaque);
}

/// Kill and restart of the server node: the client's cached connection fails fast (EOF, not a
/// hang until the timeout) and is re-established after the restart.
#[madsim::test]
async fn client_survives_server_restart() {
    let handle = madsim::runtime::Handle::current();
    let server_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let server_node = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .init(move || async move {
            let _server = RemotingServer::bind(server_addr, Arc::new(Echo))
                .await
                .unwrap();
            std::future::pending::<()>().await;
        })
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    let client = RemotingClient::new();
    let request = RemotingCommand::request(10);

    crate::rt::sleep(Duration::from_millis(100)).await;
    let c = client.clone();
    let r = request.clone();
    let first = client_node
        .spawn(async move { c.invoke("10.0.0.1:9876", r, 3000).await })
        .await
        .unwrap();
    assert_eq!(first.unwrap().code, 0);

    handle.kill(server_node.id());
    let c = client.clone();
    let r = request.clone();
    let started = crate::rt::now();
    let during = client_node
        .spawn(async move { c.invoke("10.0.0.1:9876", r, 3000).await })
        .await
        .unwrap();
    assert!(during.is_err(), "{during:?}");
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "failed fast"
    );

    handle.restart(server_node.id());
    crate::rt::sleep(Duration::from_millis(100)).await;
    let c = client.clone();
    let after = client_node
        .spawn(async move { c.invoke("10.0.0.1:9876", request, 3000).await })
        .await
        .unwrap();
    assert_eq!(after.unwrap().code, 0);
}

/// A clogged server times requests out (the stream stalls, it does not fail); after the heal
/// the late responses are dropped (their pending entries are gone) and new requests succeed.
#[madsim::test]
async fn clogged_server_times_out_then_recovers() {
    let handle = madsim::runtime::Handle::current();
    let server_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let server_node = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    server_node.spawn(async move {
        let _server = RemotingServer::bind(server_addr, Arc::new(Echo))
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
    crate::rt::sleep(Duration::from_millis(100)).await;
    let client = RemotingClient::new();
    let c = client.clone();
    let warm = client_node
        .spawn(async move {
            c.invoke("10.0.0.1:9876", RemotingCommand::request(10), 1000)
                .await
        })
        .await
        .unwrap();
    assert_eq!(warm.unwrap().code, 0);

    let net = madsim::net::NetSim::current();
    net.clog_node(server_node.id());
    let c = client.clone();
    let clogged = client_node
        .spawn(async move {
            let started = crate::rt::now();
            let result = c
                .invoke("10.0.0.1:9876", RemotingCommand::request(10), 500)
                .await;
            (result, started.elapsed())
        })
        .await
        .unwrap();
    assert!(
        matches!(
            clogged.0,
            Err(RemotingError::Timeout {
                timeout_ms: 500,
                ..
            })
        ),
        "{:?}",
        clogged.0
    );
    assert!(clogged.1 >= Duration::from_millis(500));
    assert!(clogged.1 < Duration::from_millis(1000));

    net.unclog_node(server_node.id());
    let c = client.clone();
    let healed = client_node
        .spawn(async move {
            // The stalled frame is delivered after the heal (madsim retries with backoff).
            let response = c
                .invoke("10.0.0.1:9876", RemotingCommand::request(10), 30_000)
                .await?;
            let conn = c.connection("10.0.0.1:9876", 1000).await?;
            Ok::<_, RemotingError>((response, conn.pending_count()))
        })
        .await
        .unwrap();
    let (response, pending) = healed.unwrap();
    assert_eq!(response.code, 0);
    assert_eq!(pending, 0);
}

/// A client shared across nodes: when the node whose tasks ran a cached connection is killed,
/// the connection reads as closed and the next request from another node reconnects.
#[madsim::test]
async fn connection_of_a_killed_node_reads_as_closed() {
    let handle = madsim::runtime::Handle::current();
    let server_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let server_node = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .build();
    let first_node = handle
        .create_node()
        .name("first")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    let second_node = handle
        .create_node()
        .name("second")
        .ip("10.0.0.3".parse().unwrap())
        .build();
    server_node.spawn(async move {
        let _server = RemotingServer::bind(server_addr, Arc::new(Echo))
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
    crate::rt::sleep(Duration::from_millis(100)).await;
    let client = RemotingClient::new();
    let c = client.clone();
    let first = first_node
        .spawn(async move {
            let response = c
                .invoke("10.0.0.1:9876", RemotingCommand::request(10), 1000)
                .await?;
            let conn = c.connection("10.0.0.1:9876", 1000).await?;
            Ok::<_, RemotingError>((response, conn))
        })
        .await
        .unwrap();
    let (response, conn) = first.unwrap();
    assert_eq!(response.code, 0);
    assert!(!conn.is_closed());

    handle.kill(first_node.id());
    // madsim drops a killed node's tasks the next time the scheduler runs.
    crate::rt::sleep(Duration::from_millis(10)).await;
    assert!(conn.is_closed());
    let c = client.clone();
    let second = second_node
        .spawn(async move {
            let response = c
                .invoke("10.0.0.1:9876", RemotingCommand::request(10), 1000)
                .await?;
            let conn = c.connection("10.0.0.1:9876", 1000).await?;
            Ok::<_, RemotingError>((response, conn.local_addr()))
        })
        .await
        .unwrap();
    let (response, local_addr) = second.unwrap();
    assert_eq!(response.code, 0);
    assert_eq!(local_addr.ip().to_string(), "10.0.0.3");
}

/// Graceful stop inside a node: shutdown closes the client's connection (it fails over to a
/// reconnect) and the address can be bound again by a new server on the same node.
#[madsim::test]
async fn graceful_shutdown_then_rebind() {
    let handle = madsim::runtime::Handle::current();
    let server_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let server_node = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    server_node.spawn(async move {
        let server = RemotingServer::bind(server_addr, Arc::new(Echo))
            .await
            .unwrap();
        let _ = go_rx.await;
        server.shutdown();
        server.wait_stopped().await;
        let again = RemotingServer::bind(server_addr, Arc::new(Echo))
            .await
            .unwrap();
        let _ = stopped_tx.send(());
        std::future::pending::<()>().await;
        drop(again);
    });
    crate::rt::sleep(Duration::from_millis(100)).await;
    let client = RemotingClient::new();
    let c = client.clone();
    let before = client_node
        .spawn(async move {
            let response = c
                .invoke("10.0.0.1:9876", RemotingCommand::request(10), 1000)
                .await?;
            Ok::<_, RemotingError>((response, c.connection("10.0.0.1:9876", 1000).await?))
        })
        .await
        .unwrap();
    let (response, first_conn) = before.unwrap();
    assert_eq!(response.code, 0);
    go_tx.send(()).unwrap();
    stopped_rx.await.unwrap();
    crate::rt::sleep(Duration::from_millis(50)).await;
    assert!(first_conn.is_closed());
    let c = client.clone();
    let after = client_node
        .spawn(async move {
            c.invoke("10.0.0.1:9876", RemotingCommand::request(10), 1000)
                .await
        })
        .await
        .unwrap();
    assert_eq!(after.unwrap().code, 0);
}
