//! Path MTU discovery on a link: the search probes the upper bound first
//! (`MTU_SEARCH_STEP`), so on loopback each side sends one probe and reaches 1452 bytes,
//! where quinn's default step of 20 bytes takes four probes to get there.

mod common;

use anyhow::{anyhow, ensure};
use common::{loopback, within};
use peergraph_transport::quinn;
use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, MTU_SEARCH_STEP, SERVER_NAME};

/// quinn's default upper bound of the search: what a 1500-byte Ethernet path carries over
/// IPv6.
const UPPER_BOUND: u16 = 1452;

/// Round trips on the link while waiting for both searches to end; each lets both sides'
/// drivers run, and on loopback a probe is answered within one.
const MAX_ROUND_TRIPS: usize = 200;

#[tokio::test]
async fn each_side_reaches_the_upper_bound_with_one_probe() -> anyhow::Result<()> {
    assert_eq!(MTU_SEARCH_STEP, 127);
    let server_identity = NodeIdentity::generate()?;
    let client_identity = NodeIdentity::generate()?;
    let server = bind_endpoint(loopback(), &server_identity, &LinkOptions::default(), true)?;
    let address = server.local_addr()?;
    let client = bind_endpoint(loopback(), &client_identity, &LinkOptions::default(), false)?;

    let connecting = client.connect(address, SERVER_NAME)?;
    let accepting = async {
        let incoming = server
            .accept()
            .await
            .ok_or_else(|| anyhow!("server closed"))?;
        anyhow::Ok(incoming.await?)
    };
    let (client_link, server_link) =
        within("handshake", async { tokio::join!(connecting, accepting) }).await?;
    let (client_link, server_link) = (client_link?, server_link?);

    // Echo one byte at a time until both searches are over.
    let (mut client_send, mut client_recv) = within("open stream", client_link.open_bi()).await??;
    client_send.write_all(&[0]).await?;
    let (mut server_send, mut server_recv) = within("accept", server_link.accept_bi()).await??;
    let mut byte = [0u8; 1];
    let mut reached = false;
    for _ in 0..MAX_ROUND_TRIPS {
        within("server read", server_recv.read_exact(&mut byte)).await??;
        within("server write", server_send.write_all(&byte)).await??;
        within("client read", client_recv.read_exact(&mut byte)).await??;
        let (client_stats, server_stats) = (client_link.stats(), server_link.stats());
        if client_stats.path.current_mtu == UPPER_BOUND
            && server_stats.path.current_mtu == UPPER_BOUND
        {
            reached = true;
            break;
        }
        within("client write", client_send.write_all(&byte)).await??;
    }
    ensure!(
        reached,
        "the path MTU did not reach {UPPER_BOUND} on loopback"
    );
    for (side, link) in [("client", &client_link), ("server", &server_link)] {
        let path = link.stats().path;
        ensure!(
            path.sent_plpmtud_probes == 1 && path.lost_plpmtud_probes == 0,
            "{side}: {} probes sent, {} lost",
            path.sent_plpmtud_probes,
            path.lost_plpmtud_probes
        );
    }

    client_link.close(quinn::VarInt::from_u32(0), b"done");
    client.close(quinn::VarInt::from_u32(0), b"done");
    server.close(quinn::VarInt::from_u32(0), b"done");
    within("client idle", client.wait_idle()).await?;
    within("server idle", server.wait_idle()).await
}
