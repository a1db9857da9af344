//! Renewing a listening endpoint on its own socket: the address stays, the new endpoint
//! takes every later connection, the old one reads nothing more, and a connection attempt
//! racing the renewal still connects.

mod common;

use std::net::SocketAddr;

use anyhow::{anyhow, ensure};
use common::{loopback, within};
use peergraph_transport::quinn;
use peergraph_transport::{
    bind_endpoint, LinkOptions, NodeIdentity, RenewableEndpoint, SERVER_NAME,
};

/// Connects `client` to `address` while `server` accepts, and returns both sides.
async fn handshake(
    client: &quinn::Endpoint,
    server: &quinn::Endpoint,
    address: SocketAddr,
) -> anyhow::Result<(quinn::Connection, quinn::Connection)> {
    let connecting = client.connect(address, SERVER_NAME)?;
    let accepting = async {
        let incoming = server
            .accept()
            .await
            .ok_or_else(|| anyhow!("server endpoint closed"))?;
        anyhow::Ok(incoming.await?)
    };
    let (client_side, server_side) =
        within("handshake", async { tokio::join!(connecting, accepting) }).await?;
    Ok((client_side?, server_side?))
}

/// Links `client` to `server` at `address`, checks that a message goes through, and
/// closes the link.
async fn link(
    client: &quinn::Endpoint,
    server: &quinn::Endpoint,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let (client_side, server_side) = handshake(client, server, address).await?;
    let (mut send, _recv) = client_side.open_bi().await?;
    send.write_all(b"hello").await?;
    send.finish()?;
    let (_send, mut recv) = within("stream", server_side.accept_bi()).await??;
    let got = within("message", recv.read_to_end(64)).await??;
    ensure!(got == b"hello", "the message arrived as {got:?}");
    client_side.close(0u32.into(), b"done");
    within("server side closed", server_side.closed()).await?;
    Ok(())
}

/// A renewable listening endpoint on loopback, its address, and a client endpoint.
fn server_and_client() -> anyhow::Result<(RenewableEndpoint, SocketAddr, quinn::Endpoint)> {
    let options = LinkOptions::default();
    let server = RenewableEndpoint::bind(loopback(), &NodeIdentity::generate()?, &options, true)?;
    let address = server.local_addr()?;
    let client = bind_endpoint(loopback(), &NodeIdentity::generate()?, &options, false)?;
    Ok((server, address, client))
}

#[tokio::test]
async fn a_renewed_endpoint_keeps_its_address_and_takes_new_links() -> anyhow::Result<()> {
    let (mut server, address, client) = server_and_client()?;

    link(&client, server.endpoint(), address).await?;
    within("server idle", server.endpoint().wait_idle()).await?;

    let old = server.renew()?;
    assert_eq!(server.renewals(), 1);
    assert_eq!(server.local_addr()?, address, "the address changed");
    // Both the new endpoint and the old handle see the same socket.
    assert_eq!(old.local_addr()?, address);
    link(&client, server.endpoint(), address).await?;
    ensure!(
        old.open_connections() == 0,
        "the old endpoint took a connection after its turn ended"
    );
    drop(old);

    // Renewed twice, still the same port and still serving.
    let _ = server.renew()?;
    assert_eq!(server.local_addr()?, address);
    link(&client, server.endpoint(), address).await?;
    Ok(())
}

#[tokio::test]
async fn a_connection_attempt_racing_a_renewal_still_connects() -> anyhow::Result<()> {
    let (mut server, address, client) = server_and_client()?;

    // The renewal lands at a different point of the handshake each round: before the
    // Initial is sent, while it is in the socket, or after the old endpoint has read it.
    for yields in 0..8 {
        let connecting = client.connect(address, SERVER_NAME)?;
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        drop(server.renew()?);
        let incoming = within("attempt at the new endpoint", server.endpoint().accept())
            .await?
            .ok_or_else(|| anyhow!("server endpoint closed"))?;
        let (client_side, server_side) =
            within(&format!("handshake after {yields} yields"), async {
                tokio::join!(connecting, incoming)
            })
            .await?;
        let (client_side, server_side) = (client_side?, server_side?);
        client_side.close(0u32.into(), b"done");
        within("server side closed", server_side.closed()).await?;
        within("server idle", server.endpoint().wait_idle()).await?;
    }
    Ok(())
}
