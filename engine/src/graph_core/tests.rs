//! Every rule of the graph core, without QUIC: admission (each REFUSE reason and the code
//! each gives the connecting node), the limits, the table's invariants, incoming
//! handshakes, links welcomed on a CONNECT sent as 0-RTT data, and the receive budget. The
//! close of a link is in `link_tests`.

use std::net::SocketAddr;

use super::*;
use crate::event::EventType;

fn peer(name: &str) -> PeerId {
    PeerId::new(name).expect("peer id")
}

fn key(byte: u8) -> PeerKey {
    PeerKey([byte; 32])
}

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn limits() -> Limits {
    Limits {
        max_connections: 16,
        max_connections_per_node: 16,
        max_pending_handshakes: 4,
        max_pending_handshakes_per_source: 4,
        retry_threshold: 4,
    }
}

fn ip(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, last])
}

fn core_with(admission: Admission, limits: Limits) -> GraphCore {
    GraphCore::new(CoreConfig {
        graph_id: GraphId::new("chat").expect("graph id"),
        peer_id: peer("bob"),
        node_id: key(0xb0).node_id(),
        admission,
        limits,
        synchronized: true,
    })
}

fn core() -> GraphCore {
    core_with(Admission::default(), limits())
}

/// A CONNECT from alice to bob in graph `chat`, as a conforming node sends it.
fn connect(id: u64) -> Connect {
    Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: ConnectionId::new(id).expect("id"),
        graph_id: GraphId::new("chat").expect("graph id"),
        source_peer_id: peer("alice"),
        target_peer_id: peer("bob"),
        proof: bytes::Bytes::new(),
    }
}

/// Offers `connect` from the node with `peer_key`, tagged `id`, with a proof that checks
/// as `proof_ok`; returns the decision.
fn offer(
    core: &mut GraphCore,
    connect: &Connect,
    peer_key: PeerKey,
    proof_ok: bool,
) -> IncomingDecision {
    let incoming = IncomingConnect {
        connect,
        peer_key,
        accepts_direct: true,
    };
    core.on_connect(incoming, connect.connection_id.get(), address(4000), |_| {
        proof_ok
    })
}

fn refused(decision: IncomingDecision) -> RefuseReason {
    match decision {
        IncomingDecision::Refuse(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn events(core: &mut GraphCore) -> Vec<GraphEvent> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn statuses(events: &[GraphEvent]) -> Vec<ConnectionStatus> {
    events
        .iter()
        .filter_map(|event| match event {
            GraphEvent::DirectConnection(change) => Some(change.status),
            _ => None,
        })
        .collect()
}

#[test]
fn a_conforming_connect_is_welcomed_and_raises_connected_then_the_status() {
    let mut core = core();
    let request = connect(7);
    let decision = offer(&mut core, &request, key(1), true);
    let IncomingDecision::Welcome { info, welcome } = decision else {
        panic!("refused: {decision:?}");
    };
    assert_eq!(info.connection_id, request.connection_id);
    assert_eq!(info.node_id, key(1).node_id());
    assert_eq!(info.peer_id, peer("alice"));
    assert_eq!(welcome.connection_id, request.connection_id);
    assert_eq!(welcome.peer_id, peer("bob"));
    assert_eq!(welcome.graph_id, request.graph_id);
    let raised = events(&mut core);
    assert_eq!(statuses(&raised), [ConnectionStatus::Connected]);
    assert!(matches!(
        raised.last(),
        Some(GraphEvent::StatusChanged { status }) if status.contains(GraphStatus::HAS_CONNECTIONS)
    ));
    assert_eq!(core.connection_count(), 1);
}

#[test]
fn each_identity_check_refuses_with_its_reason_before_anything_else() {
    let mut core = core();
    let mut wrong_version = connect(1);
    wrong_version.version = PROTOCOL_VERSION + 1;
    assert_eq!(
        refused(offer(&mut core, &wrong_version, key(1), true)),
        RefuseReason::UnsupportedVersion
    );
    let mut wrong_graph = connect(1);
    wrong_graph.graph_id = GraphId::new("other").expect("graph id");
    assert_eq!(
        refused(offer(&mut core, &wrong_graph, key(1), true)),
        RefuseReason::WrongGraph
    );
    let mut wrong_peer = connect(1);
    wrong_peer.target_peer_id = peer("carol");
    assert_eq!(
        refused(offer(&mut core, &wrong_peer, key(1), true)),
        RefuseReason::WrongPeer
    );
    let mut neighbor = connect(1);
    neighbor.direct = false;
    assert_eq!(
        refused(offer(&mut core, &neighbor, key(1), true)),
        RefuseReason::Busy
    );
    // A version mismatch is reported even when the graph is also wrong: the order holds.
    wrong_version.graph_id = GraphId::new("other").expect("graph id");
    assert_eq!(
        refused(offer(&mut core, &wrong_version, key(1), true)),
        RefuseReason::UnsupportedVersion
    );
    assert!(events(&mut core).is_empty(), "a refusal raises nothing");
    assert_eq!(core.connection_count(), 0);
}

#[test]
fn a_node_that_takes_no_direct_connections_refuses_them() {
    let mut core = core();
    let request = connect(1);
    let incoming = IncomingConnect {
        connect: &request,
        peer_key: key(1),
        accepts_direct: false,
    };
    let decision = core.on_connect(incoming, 1, address(1), |_| true);
    assert_eq!(refused(decision), RefuseReason::DirectConnectionDisallowed);
}

#[test]
fn the_allow_list_refuses_unlisted_keys_and_listed_keys_under_another_peer_id() {
    let list = AllowList::default().with(key(1), peer("alice"));
    let admission = Admission {
        proof_required: false,
        allowed: Some(list),
    };
    let mut core = core_with(admission, limits());
    assert_eq!(
        refused(offer(&mut core, &connect(1), key(2), true)),
        RefuseReason::NotAuthorized
    );
    let mut as_carol = connect(1);
    as_carol.source_peer_id = peer("carol");
    assert_eq!(
        refused(offer(&mut core, &as_carol, key(1), true)),
        RefuseReason::KeyMismatch
    );
    assert!(matches!(
        offer(&mut core, &connect(1), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
}

#[test]
fn a_reached_node_must_show_the_pinned_key_then_be_on_the_allow_list() {
    let open = Admission::default();
    assert_eq!(open.check_reached(&key(1), &peer("bob"), None), Ok(()));
    assert_eq!(
        open.check_reached(&key(1), &peer("bob"), Some(&key(1))),
        Ok(())
    );
    let mismatch = open
        .check_reached(&key(2), &peer("bob"), Some(&key(1)))
        .expect_err("another key");
    assert_eq!(
        mismatch.code(),
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
    );
    let cause = mismatch.to_string();
    assert!(
        cause.contains(&format!("node key mismatch: expected {}", key(1))),
        "{cause}"
    );
    assert!(cause.contains(&format!("presented {}", key(2))), "{cause}");
    assert!(cause.contains(&key(2).node_id().to_string()), "{cause}");

    let listed = Admission {
        proof_required: false,
        allowed: Some(AllowList::default().with(key(1), peer("bob"))),
    };
    assert_eq!(listed.check_reached(&key(1), &peer("bob"), None), Ok(()));
    let unlisted = listed
        .check_reached(&key(2), &peer("bob"), None)
        .expect_err("unlisted");
    assert_eq!(unlisted.code(), ResultCode::PEER_E_NOT_AUTHORIZED);
    assert!(
        unlisted.to_string().contains("node key not allowed"),
        "{unlisted}"
    );
    let other_peer = listed
        .check_reached(&key(1), &peer("carol"), None)
        .expect_err("listed for bob");
    assert_eq!(
        other_peer.code(),
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
    );
    // The pin is judged first: a listed key that is not the pinned one is a mismatch.
    let pinned_elsewhere = listed
        .check_reached(&key(1), &peer("bob"), Some(&key(3)))
        .expect_err("not the pinned key");
    assert!(pinned_elsewhere.to_string().contains("node key mismatch"));
}

#[test]
fn a_required_proof_is_checked_after_identity_and_refuses_when_wrong() {
    let admission = Admission {
        proof_required: true,
        allowed: None,
    };
    let mut core = core_with(admission, limits());
    assert_eq!(
        refused(offer(&mut core, &connect(1), key(1), false)),
        RefuseReason::NotAuthorized
    );
    // The proof is not even asked for when an identity check fails first.
    let mut wrong_graph = connect(1);
    wrong_graph.graph_id = GraphId::new("other").expect("graph id");
    let incoming = IncomingConnect {
        connect: &wrong_graph,
        peer_key: key(1),
        accepts_direct: true,
    };
    let decision = core.on_connect(incoming, 1, address(1), |_| panic!("proof asked"));
    assert_eq!(refused(decision), RefuseReason::WrongGraph);
    assert!(matches!(
        offer(&mut core, &connect(1), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
    // Without a secret the proof is never asked for.
    let mut open = core_with(Admission::default(), limits());
    let request = connect(2);
    let incoming = IncomingConnect {
        connect: &request,
        peer_key: key(1),
        accepts_direct: true,
    };
    let decision = open.on_connect(incoming, 2, address(1), |_| panic!("proof asked"));
    assert!(matches!(decision, IncomingDecision::Welcome { .. }));
}

#[test]
fn a_connection_id_in_use_is_refused_as_a_duplicate() {
    let mut core = core();
    assert!(matches!(
        offer(&mut core, &connect(5), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
    assert_eq!(
        refused(offer(&mut core, &connect(5), key(2), true)),
        RefuseReason::DuplicateConnection
    );
    // An id taken by an outgoing attempt counts too.
    let request = core.start_outgoing(peer("carol"), address(9), || 6);
    assert_eq!(request.connection_id.get(), 6);
    assert_eq!(
        refused(offer(&mut core, &connect(6), key(2), true)),
        RefuseReason::DuplicateConnection
    );
}

#[test]
fn the_graph_limit_counts_connections_and_outgoing_attempts() {
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_connections: 2,
            ..limits()
        },
    );
    assert!(matches!(
        offer(&mut core, &connect(1), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
    core.start_outgoing(peer("carol"), address(9), || 100);
    assert_eq!(
        refused(offer(&mut core, &connect(2), key(2), true)),
        RefuseReason::LimitReached
    );
    // The attempt fails: there is room again.
    assert_eq!(
        core.outgoing_ended(
            ConnectionId::new(100).expect("id"),
            Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))
        ),
        OutgoingDecision::Failed
    );
    assert!(matches!(
        offer(&mut core, &connect(2), key(2), true),
        IncomingDecision::Welcome { .. }
    ));
}

#[test]
fn the_node_limit_counts_links_until_they_end_even_while_closing() {
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_connections_per_node: 1,
            ..limits()
        },
    );
    let IncomingDecision::Welcome { info, .. } = offer(&mut core, &connect(1), key(1), true) else {
        panic!("refused");
    };
    assert_eq!(
        refused(offer(&mut core, &connect(2), key(1), true)),
        RefuseReason::LimitReached
    );
    // Another node is not limited by it.
    assert!(matches!(
        offer(&mut core, &connect(3), key(2), true),
        IncomingDecision::Welcome { .. }
    ));
    // A close has started: the link has left the table but still counts for its node.
    core.start_close(info.connection_id).expect("in the table");
    assert_eq!(
        refused(offer(&mut core, &connect(4), key(1), true)),
        RefuseReason::LimitReached
    );
    core.link_ended(&info, 1);
    assert!(matches!(
        offer(&mut core, &connect(4), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
}

#[test]
fn pending_handshakes_are_bounded_and_none_start_on_a_closed_graph() {
    use HandshakeAdmission::{Accept, Refuse};
    let mut core = core();
    for last in 0..limits().max_pending_handshakes {
        assert_eq!(core.incoming_started(ip(last as u8), true), Accept);
    }
    assert_eq!(
        core.incoming_started(ip(99), true),
        Refuse,
        "one past the bound"
    );
    core.incoming_ended(ip(0));
    assert_eq!(core.incoming_started(ip(99), true), Accept);
    core.release();
    core.incoming_ended(ip(99));
    assert_eq!(
        core.incoming_started(ip(100), true),
        Refuse,
        "the graph is closed"
    );
    assert_eq!(
        core.incoming_started(ip(101), false),
        Refuse,
        "a closed graph does not even ask for a Retry"
    );
}

#[test]
fn under_load_an_unvalidated_address_gets_a_retry_and_no_slot() {
    use HandshakeAdmission::{Accept, Retry};
    let mut core = core_with(
        Admission::default(),
        Limits {
            retry_threshold: 2,
            ..limits()
        },
    );
    // Below the threshold nothing is asked of an address.
    assert_eq!(core.incoming_started(ip(1), false), Accept);
    assert_eq!(core.incoming_started(ip(2), false), Accept);
    // From the threshold on, an address must prove itself first; a Retry takes no slot.
    for last in 3..50 {
        assert_eq!(core.incoming_started(ip(last), false), Retry);
    }
    assert_eq!(core.incoming_count(), 2);
    // A validated one (it came back with the token) still gets a slot.
    assert_eq!(core.incoming_started(ip(3), true), Accept);
    assert_eq!(core.incoming_count(), 3);
    // Once below the threshold again, none is asked.
    core.incoming_ended(ip(1));
    core.incoming_ended(ip(2));
    assert_eq!(core.incoming_started(ip(4), false), Accept);
}

#[test]
fn a_threshold_of_zero_validates_every_address() {
    let mut core = core_with(
        Admission::default(),
        Limits {
            retry_threshold: 0,
            ..limits()
        },
    );
    assert_eq!(
        core.incoming_started(ip(1), false),
        HandshakeAdmission::Retry
    );
    assert_eq!(
        core.incoming_started(ip(1), true),
        HandshakeAdmission::Accept
    );
}

#[test]
fn one_source_cannot_take_every_slot() {
    use HandshakeAdmission::{Accept, Refuse};
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes: 8,
            max_pending_handshakes_per_source: 2,
            retry_threshold: 8,
            ..limits()
        },
    );
    assert_eq!(core.incoming_started(ip(1), true), Accept);
    assert_eq!(core.incoming_started(ip(1), true), Accept);
    assert_eq!(
        core.incoming_started(ip(1), true),
        Refuse,
        "a third from one source"
    );
    assert_eq!(
        core.incoming_started(ip(1), false),
        Refuse,
        "below the threshold an unvalidated one is counted the same"
    );
    // Other sources are not held back by it.
    assert_eq!(core.incoming_started(ip(2), true), Accept);
    assert_eq!(core.incoming_count(), 3);
    // One ends: that source has room again.
    core.incoming_ended(ip(1));
    assert_eq!(core.incoming_started(ip(1), true), Accept);
}

#[test]
fn an_ipv6_source_is_its_64_prefix_and_a_mapped_ipv4_is_the_ipv4() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use HandshakeAdmission::{Accept, Refuse};
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes_per_source: 1,
            ..limits()
        },
    );
    let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
    assert_eq!(core.incoming_started(host(1), true), Accept);
    assert_eq!(
        core.incoming_started(host(2), true),
        Refuse,
        "another address of the same /64"
    );
    let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
    assert_eq!(core.incoming_started(other, true), Accept);
    let v4 = Ipv4Addr::new(192, 0, 2, 7);
    assert_eq!(core.incoming_started(IpAddr::V4(v4), true), Accept);
    assert_eq!(
        core.incoming_started(IpAddr::V6(v4.to_ipv6_mapped()), true),
        Refuse,
        "the same IPv4 host, mapped"
    );
    core.incoming_ended(host(2));
    assert_eq!(core.incoming_started(host(3), true), Accept);
}

#[test]
fn the_total_bound_holds_across_sources() {
    use HandshakeAdmission::{Accept, Refuse};
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes: 3,
            max_pending_handshakes_per_source: 3,
            retry_threshold: 3,
            ..limits()
        },
    );
    assert_eq!(core.incoming_started(ip(1), true), Accept);
    assert_eq!(core.incoming_started(ip(2), true), Accept);
    assert_eq!(core.incoming_started(ip(2), false), Accept);
    assert_eq!(
        core.incoming_started(ip(3), true),
        Refuse,
        "all slots taken"
    );
    assert_eq!(
        core.incoming_started(ip(4), true),
        Refuse,
        "all slots taken"
    );
}

#[test]
fn per_source_counts_are_released_and_the_map_gives_its_room_back() {
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes: 4096,
            retry_threshold: 4096,
            ..limits()
        },
    );
    let sources: Vec<std::net::IpAddr> = (0..4096u32)
        .map(|n| std::net::IpAddr::from((0x0a00_0000 + n).to_be_bytes()))
        .collect();
    for source in &sources {
        assert_eq!(
            core.incoming_started(*source, true),
            HandshakeAdmission::Accept
        );
    }
    assert_eq!(core.incoming_sources(), 4096);
    let grown = core.links.incoming_per_source.capacity();
    for source in &sources {
        core.incoming_ended(*source);
    }
    assert_eq!(core.incoming_count(), 0);
    assert_eq!(core.incoming_sources(), 0, "every entry goes at zero");
    assert!(core.is_idle());
    assert!(
        core.links.incoming_per_source.capacity() <= ROOM_KEPT * 2
            && core.links.incoming_per_source.capacity() < grown,
        "the per-source map keeps {} of {grown} entries' room",
        core.links.incoming_per_source.capacity()
    );
    // An end the table never counted (a driver bug) changes nothing below zero.
    core.incoming_ended(sources[0]);
    assert_eq!(core.incoming_count(), 0);
}

#[test]
fn each_refusal_gives_the_connecting_node_its_documented_code() {
    use ResultCode as C;
    let cases = [
        (RefuseReason::Busy, C::PEER_E_CONNECTION_REFUSED),
        (RefuseReason::AlreadyConnected, C::PEER_E_CONNECTION_REFUSED),
        (
            RefuseReason::DuplicateConnection,
            C::PEER_E_CONNECTION_REFUSED,
        ),
        (
            RefuseReason::DirectConnectionDisallowed,
            C::PEER_E_CONNECTION_REFUSED,
        ),
        (RefuseReason::LimitReached, C::PEER_E_CONNECTION_REFUSED),
        (
            RefuseReason::WrongGraph,
            C::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        ),
        (
            RefuseReason::WrongPeer,
            C::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        ),
        (
            RefuseReason::UnsupportedVersion,
            C::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        ),
        (
            RefuseReason::KeyMismatch,
            C::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        ),
        (RefuseReason::NotAuthorized, C::PEER_E_NOT_AUTHORIZED),
    ];
    let request = connect(1);
    for (reason, code) in cases {
        assert_eq!(refusal_code(reason), code, "{reason:?}");
        let refused = judge_answer(&request, Answer::Refuse(reason), false, |_| true)
            .expect_err("a refusal fails");
        assert_eq!(refused.code(), code);
        assert!(refused.cause().is_some(), "{reason:?} says why");
    }
}

#[test]
fn the_connecting_side_checks_the_welcome_it_gets() {
    let request = connect(1);
    let welcome = Welcome {
        connection_id: request.connection_id,
        graph_id: request.graph_id.clone(),
        peer_id: request.target_peer_id.clone(),
        proof: bytes::Bytes::new(),
    };
    assert_eq!(
        judge_answer(&request, Answer::Welcome(&welcome), false, |_| false),
        Ok(())
    );
    let unproved =
        judge_answer(&request, Answer::Welcome(&welcome), true, |_| false).expect_err("no proof");
    assert_eq!(unproved.code(), ResultCode::PEER_E_NOT_AUTHORIZED);
    assert!(
        unproved.to_string().contains("secrets differ"),
        "{unproved}"
    );
    for (wrong, says) in [
        (
            Welcome {
                connection_id: ConnectionId::new(2).expect("id"),
                ..welcome.clone()
            },
            "names connection",
        ),
        (
            Welcome {
                graph_id: GraphId::new("other").expect("graph id"),
                ..welcome.clone()
            },
            "graph id differs: asked for chat, the node is in other",
        ),
        (
            Welcome {
                peer_id: peer("carol"),
                ..welcome.clone()
            },
            "peer id mismatch: asked for",
        ),
    ] {
        let error = judge_answer(&request, Answer::Welcome(&wrong), false, |_| true)
            .expect_err("a wrong WELCOME");
        assert_eq!(
            error.code(),
            ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
        );
        assert!(error.to_string().contains(says), "{error}");
    }
    assert_eq!(
        judge_answer(&request, Answer::Other, false, |_| true).map_err(|error| error.code()),
        Err(ResultCode::PEER_E_CONNECTION_FAILED)
    );
    assert_eq!(
        HandshakeFailure::Crypto.code(),
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
    );
    assert_eq!(
        HandshakeFailure::Refused.code(),
        ResultCode::PEER_E_CONNECTION_REFUSED
    );
    for failure in [HandshakeFailure::TimedOut, HandshakeFailure::WentIdle] {
        assert_eq!(failure.code(), ResultCode::PEER_E_CONNECTION_FAILED);
    }
    let idle = HandshakeFailure::WentIdle.error(std::time::Duration::from_secs(60), "timed out");
    assert!(idle.to_string().contains("went idle"), "{idle}");
    assert!(!idle.to_string().contains("60s"), "{idle}");
}

#[test]
fn the_reached_node_must_be_listed_as_the_peer_asked_for() {
    let admission = Admission {
        proof_required: false,
        allowed: Some(AllowList::default().with(key(1), peer("bob"))),
    };
    assert_eq!(admission.check_key(&key(1), &peer("bob")), Ok(()));
    assert_eq!(
        admission.check_key(&key(2), &peer("bob")),
        Err(RefuseReason::NotAuthorized)
    );
    assert_eq!(
        admission.check_key(&key(1), &peer("carol")),
        Err(RefuseReason::KeyMismatch)
    );
    assert_eq!(Admission::default().check_key(&key(9), &peer("x")), Ok(()));
}

#[test]
fn opening_checks_self_and_address() {
    let core = core();
    let listening = [SocketAddr::from(([0, 0, 0, 0], 4000))];
    let code = |result: Result<(), PeerError>| result.map_err(|error| error.code());
    assert_eq!(
        code(core.check_open(&peer("bob"), &address(5000), &listening)),
        Err(ResultCode::PEER_E_CONNECT_SELF)
    );
    assert_eq!(
        code(core.check_open(&peer("alice"), &address(4000), &listening)),
        Err(ResultCode::PEER_E_CONNECT_SELF),
        "a loopback address of a wildcard listener is this node"
    );
    for bad in [
        address(0),
        SocketAddr::from(([0, 0, 0, 0], 5000)),
        SocketAddr::from(([224, 0, 0, 1], 5000)),
    ] {
        assert_eq!(
            code(core.check_open(&peer("alice"), &bad, &listening)),
            Err(ResultCode::PEER_E_INVALID_ADDRESS),
            "{bad}"
        );
    }
    assert_eq!(
        code(core.check_open(&peer("alice"), &address(5000), &listening)),
        Ok(())
    );
}

#[test]
fn an_outgoing_attempt_is_adopted_or_raises_connection_failed_with_no_node_id() {
    let mut core = core();
    let mut ids = [0, 3, 9].into_iter();
    let request = core.start_outgoing(peer("carol"), address(9), || ids.next().unwrap_or(1));
    assert_eq!(
        request.connection_id.get(),
        3,
        "0 is not an id: drawn again"
    );
    assert_eq!(request.source_peer_id, peer("bob"));
    assert_eq!(request.target_peer_id, peer("carol"));
    assert_eq!(core.outgoing_count(), 1);
    let failed = core.outgoing_ended(
        request.connection_id,
        Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)),
    );
    assert_eq!(failed, OutgoingDecision::Failed);
    let raised = events(&mut core);
    assert!(matches!(
        raised.as_slice(),
        [GraphEvent::DirectConnection(change)]
            if change.status == ConnectionStatus::ConnectionFailed
                && change.node_id.is_none()
                && change.failure_reason == Some(PeerError::new(ResultCode::PEER_E_TIMEOUT))
    ));
    let request = core.start_outgoing(peer("carol"), address(9), || 11);
    let adopted = core.outgoing_ended(request.connection_id, Ok((key(3), 77)));
    let OutgoingDecision::Adopt(info) = adopted else {
        panic!("not adopted: {adopted:?}");
    };
    assert_eq!(info.node_id, key(3).node_id());
    assert_eq!(
        core.connection(&info.connection_id).map(|e| e.tag),
        Some(77)
    );
    assert_eq!(statuses(&events(&mut core)), [ConnectionStatus::Connected]);
}

#[test]
fn nothing_is_adopted_on_a_closed_graph() {
    let mut core = core();
    let request = core.start_outgoing(peer("carol"), address(9), || 5);
    assert_eq!(core.release().outgoing, vec![request.connection_id]);
    assert_eq!(
        core.outgoing_ended(request.connection_id, Ok((key(3), 1))),
        OutgoingDecision::Leave
    );
    assert_eq!(
        offer(&mut core, &connect(8), key(1), true),
        IncomingDecision::Leave
    );
    assert!(events(&mut core).is_empty());
    assert_eq!(core.connection_count(), 0);
}

#[test]
fn a_close_takes_the_entry_out_once_and_the_end_raises_disconnected() {
    let mut core = core();
    let IncomingDecision::Welcome { info, .. } = offer(&mut core, &connect(1), key(1), true) else {
        panic!("refused");
    };
    events(&mut core);
    let closing = core.start_close(info.connection_id).expect("open");
    assert_eq!(closing.entry.info, info);
    assert_eq!(
        core.start_close(info.connection_id)
            .map_err(|error| error.code()),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND),
        "a second close finds nothing"
    );
    // HAS_CONNECTIONS is cleared only when the link has ended, after DISCONNECTED.
    assert!(core.status().contains(GraphStatus::HAS_CONNECTIONS));
    core.link_ended(&info, 1);
    let raised = events(&mut core);
    assert_eq!(statuses(&raised), [ConnectionStatus::Disconnected]);
    assert!(matches!(
        raised.last(),
        Some(GraphEvent::StatusChanged { status }) if !status.contains(GraphStatus::HAS_CONNECTIONS)
    ));
}

#[test]
fn an_end_removes_only_its_own_link_under_a_reused_id() {
    let mut core = core();
    let IncomingDecision::Welcome { info, .. } = offer(&mut core, &connect(1), key(1), true) else {
        panic!("refused");
    };
    core.start_close(info.connection_id).expect("open");
    // The peer reuses the id for a new link (tag 2) while the first still closes.
    let incoming = IncomingConnect {
        connect: &connect(1),
        peer_key: key(1),
        accepts_direct: true,
    };
    assert!(matches!(
        core.on_connect(incoming, 2, address(1), |_| true),
        IncomingDecision::Welcome { .. }
    ));
    assert_eq!(
        core.link_ended(&info, 1),
        LinkEnded::default(),
        "not its entry"
    );
    assert_eq!(core.connection(&info.connection_id).map(|e| e.tag), Some(2));
    let ended = core.link_ended(&info, 2);
    assert!(
        ended.removed,
        "an end without a close takes its own entry out"
    );
    assert_eq!(core.connection_count(), 0);
}

#[test]
fn release_hands_back_every_link_and_later_calls_answer_invalid_graph() {
    let mut core = core();
    core.listening_started();
    for id in [3, 1, 2] {
        offer(&mut core, &connect(id), key(id as u8), true);
    }
    let released = core.release();
    let ids: Vec<u64> = released
        .connections
        .iter()
        .map(|entry| entry.info.connection_id.get())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(core.release(), Released::default(), "idempotent");
    assert_eq!(core.check_ready(true), Err(PeerError::INVALID_GRAPH));
    assert_eq!(core.check_ready(false), Err(PeerError::NOT_INITIALIZED));
    // Links that end after the close raise nothing.
    let info = released.connections[0].info.clone();
    core.link_ended(&info, 1);
    assert!(events(&mut core).is_empty());
}

#[test]
fn listening_needs_synchronized_data_and_happens_once() {
    let mut core = core();
    assert_eq!(core.check_listen(), Ok(()));
    core.listening_started();
    assert_eq!(
        core.check_listen().map_err(|error| error.code()),
        Err(ResultCode::PEER_E_ALREADY_LISTENING)
    );
    assert!(matches!(
        events(&mut core).as_slice(),
        [GraphEvent::StatusChanged { status }] if status.contains(GraphStatus::LISTENING)
    ));
    let fresh = GraphCore::new(CoreConfig {
        graph_id: GraphId::new("g").expect("graph id"),
        peer_id: peer("p"),
        node_id: key(1).node_id(),
        admission: Admission::default(),
        limits: limits(),
        synchronized: false,
    });
    assert_eq!(
        fresh.check_listen().map_err(|error| error.code()),
        Err(ResultCode::PEER_E_GRAPH_NOT_READY)
    );
}

#[test]
fn enum_and_node_info_read_the_table() {
    let mut core = core();
    offer(&mut core, &connect(2), key(2), true);
    offer(&mut core, &connect(1), key(1), true);
    let all = core
        .enum_connections(ConnectionFlags::DIRECT)
        .expect("valid");
    let ids: Vec<u64> = all.iter().map(|info| info.connection_id.get()).collect();
    assert_eq!(ids, [1, 2]);
    assert!(core
        .enum_connections(ConnectionFlags::NEIGHBOR)
        .expect("valid")
        .is_empty());
    let own = core.node_info(None, vec![address(4000)]).expect("own");
    assert_eq!(own.peer_id, peer("bob"));
    assert_eq!(own.addresses, [address(4000)]);
    let remote = core
        .node_info(Some(key(2).node_id()), Vec::new())
        .expect("connected node");
    assert_eq!(remote.peer_id, peer("alice"));
    assert_eq!(
        core.node_info(Some(key(9).node_id()), Vec::new())
            .map_err(|error| error.code()),
        Err(ResultCode::PEER_E_NODE_NOT_FOUND)
    );
}

#[test]
fn the_table_gives_its_room_back_at_a_quarter_of_its_peak() {
    let mut peak = Peak::default();
    peak.grew(ROOM_KEPT);
    assert!(!peak.shrunk(0), "a peak of ROOM_KEPT is kept");
    peak.grew(400);
    assert!(!peak.shrunk(101));
    assert!(peak.shrunk(100));
    assert!(
        !peak.shrunk(90),
        "the peak is now 100, at or below ROOM_KEPT * 4 / 4"
    );
}

#[test]
fn a_connection_event_carries_the_link() {
    let info = ConnectionInfo {
        flags: ConnectionFlags::DIRECT,
        connection_id: ConnectionId::new(4).expect("id"),
        node_id: key(4).node_id(),
        peer_key: key(4),
        peer_id: peer("dave"),
        address: address(1),
    };
    let event = connection_event(ConnectionStatus::Disconnected, &info, None);
    assert_eq!(event.event_type(), Some(EventType::DirectConnection));
    assert!(matches!(
        event,
        GraphEvent::DirectConnection(change)
            if change.node_id == Some(info.node_id) && change.peer_id == info.peer_id
    ));
}

// ---- one receive budget for all links ----

#[test]
fn the_receive_budget_is_shared_in_powers_of_two_within_bounds() {
    const BUDGET: u64 = 256 * 1024 * 1024;
    assert_eq!(WindowShare::share(BUDGET, 1), MAX_LINK_WINDOW);
    assert_eq!(
        WindowShare::share(BUDGET, 214),
        MAX_LINK_WINDOW,
        "1.25 MB each fits"
    );
    assert_eq!(WindowShare::share(BUDGET, 256), 1 << 20);
    assert_eq!(WindowShare::share(BUDGET, 300), 512 * 1024);
    assert_eq!(WindowShare::share(BUDGET, 16_384), MIN_LINK_WINDOW);
    assert_eq!(
        WindowShare::share(BUDGET, 1_000_000),
        MIN_LINK_WINDOW,
        "never below"
    );
    for links in 1..20_000usize {
        let window = WindowShare::share(BUDGET, links);
        assert!(
            window == MIN_LINK_WINDOW || window * links as u64 <= BUDGET,
            "{links} links of {window} pass the budget"
        );
    }
}

#[test]
fn windows_are_set_again_only_when_the_share_changes() {
    let mut share = WindowShare::new(256 * 1024 * 1024);
    let mut sets = 0;
    for links in 1..=16_384 {
        if share.links_changed(links).is_some() {
            sets += 1;
        }
    }
    assert_eq!(share.window(), MIN_LINK_WINDOW);
    assert!(sets <= 8, "{sets} resets for 16,384 links");
    assert_eq!(
        share.links_changed(300),
        Some(512 * 1024),
        "links left: room again"
    );
    assert_eq!(share.links_changed(301), None);
}

/// Offers `connect` from the node with `peer_key` as 0-RTT data (the handshake not yet
/// complete), tagged with its id.
fn offer_early(core: &mut GraphCore, connect: &Connect, peer_key: PeerKey) -> IncomingDecision {
    let incoming = IncomingConnect {
        connect,
        peer_key,
        accepts_direct: true,
    };
    let at = address(4000);
    core.on_early_connect(incoming, connect.connection_id.get(), at, at.ip())
}

#[test]
fn an_early_connect_is_welcomed_but_enters_the_table_only_once_confirmed() {
    let mut core = core();
    let request = connect(7);
    let IncomingDecision::Welcome { info, welcome } = offer_early(&mut core, &request, key(1))
    else {
        panic!("refused");
    };
    assert_eq!(welcome.connection_id, request.connection_id);
    // Welcomed, not admitted: no event, not listed, but the id and the slot are held.
    assert!(events(&mut core).is_empty());
    assert!(core
        .enum_connections(ConnectionFlags::DIRECT)
        .expect("enum")
        .is_empty());
    assert_eq!(core.early_links(), 1);
    assert_eq!(
        refused(offer(&mut core, &request, key(2), true)),
        RefuseReason::DuplicateConnection
    );
    // A confirmation for another link (another tag) changes nothing.
    assert_eq!(core.early_confirmed(request.connection_id, 99), None);
    assert_eq!(core.early_links(), 1);

    let confirmed = core.early_confirmed(request.connection_id, request.connection_id.get());
    assert_eq!(confirmed.as_ref(), Some(&info));
    assert_eq!(
        statuses(&events(&mut core)),
        vec![ConnectionStatus::Connected]
    );
    assert_eq!(core.early_links(), 0);
    assert_eq!(
        core.enum_connections(ConnectionFlags::DIRECT)
            .expect("enum"),
        vec![info.clone()]
    );
    // Counted once with its node: when it ends, the node has no link left.
    core.link_ended(&info, request.connection_id.get());
    assert_eq!(core.links.with_node(&info.node_id), 0);
}

/// The answers to `n` handshakes from `source` started one after another.
fn start_from(core: &mut GraphCore, source: std::net::IpAddr, n: usize) -> Vec<HandshakeAdmission> {
    (0..n)
        .map(|_| core.incoming_started(source, true))
        .collect()
}

/// A welcomed early link stops counting against its source's bound at once (its node
/// reports CONNECTED and may open the next link before its Finished comes), keeps counting
/// in the graph's total, and counts against its source again until its handshake ends.
#[test]
fn a_welcomed_early_link_frees_its_sources_slot_but_not_the_graphs() {
    use HandshakeAdmission::{Accept, Refuse};
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes: 6,
            max_pending_handshakes_per_source: 2,
            ..limits()
        },
    );
    let source = address(4000).ip();
    assert_eq!(
        start_from(&mut core, source, 3),
        [Accept, Accept, Refuse],
        "two from one source at most"
    );
    let (first, second) = (connect(7), connect(8));
    assert!(matches!(
        offer_early(&mut core, &first, key(1)),
        IncomingDecision::Welcome { .. }
    ));
    assert!(matches!(
        offer_early(&mut core, &second, key(1)),
        IncomingDecision::Welcome { .. }
    ));
    // Both welcomed: the source may start two more, and the graph's total still counts
    // the two waiting for their Finished.
    assert_eq!(start_from(&mut core, source, 3), [Accept, Accept, Refuse]);
    assert_eq!(core.incoming_count(), 4);
    let other = std::net::IpAddr::from([10, 0, 0, 9]);
    assert_eq!(
        start_from(&mut core, other, 3),
        [Accept, Accept, Refuse],
        "the graph's six are taken, two of them by links waiting for their Finished"
    );
    // One confirmed, one failed, each then counted out as the driver does: every count
    // comes back to what the other handshakes hold.
    assert!(core
        .early_confirmed(first.connection_id, first.connection_id.get())
        .is_some());
    core.incoming_ended(source);
    core.early_failed(second.connection_id, second.connection_id.get());
    core.incoming_ended(source);
    assert_eq!(core.incoming_count(), 4);
    for _ in 0..2 {
        core.incoming_ended(source);
        core.incoming_ended(other);
    }
    assert_eq!(core.incoming_count(), 0);
    assert_eq!(core.incoming_sources(), 0);
    assert!(core.links.released.is_empty());
    assert!(core.links.released_from.is_empty());
}

/// A core with room for many handshakes in all and two per source.
fn two_per_source() -> GraphCore {
    core_with(
        Admission::default(),
        Limits {
            max_pending_handshakes: 100,
            max_pending_handshakes_per_source: 2,
            ..limits()
        },
    )
}

/// However many tickets one source holds, its welcomed links leave its count only up to
/// the per-source bound: the source holds at most twice the bound of the graph's slots.
#[test]
fn one_source_holds_at_most_twice_its_bound_with_early_links() {
    let mut core = two_per_source();
    let source = address(4000).ip();
    let mut welcomed = 0;
    for id in 7..40 {
        if core.incoming_started(source, true) != HandshakeAdmission::Accept {
            break;
        }
        assert!(matches!(
            offer_early(&mut core, &connect(id), key(1)),
            IncomingDecision::Welcome { .. }
        ));
        welcomed += 1;
    }
    assert_eq!(welcomed, 4, "two out of the count, two in it");
    assert_eq!(core.incoming_count(), 4);
    // A link that was out of the count, confirmed and counted out: the two welcomed past
    // the cap still count against the source, which may start none.
    let first = connect(7);
    assert!(core
        .early_confirmed(first.connection_id, first.connection_id.get())
        .is_some());
    core.incoming_ended(source);
    assert_eq!(
        core.incoming_started(source, true),
        HandshakeAdmission::Refuse
    );
    // One of those confirmed and counted out: room for one.
    let third = connect(9);
    assert!(core
        .early_confirmed(third.connection_id, third.connection_id.get())
        .is_some());
    core.incoming_ended(source);
    assert_eq!(
        core.incoming_started(source, true),
        HandshakeAdmission::Accept
    );
    assert_eq!(
        core.incoming_started(source, true),
        HandshakeAdmission::Refuse
    );
}

/// Once a source has the bound of welcomed links out of its count, its next early CONNECT
/// is not welcomed at once: the driver holds it until its handshake completes and judges
/// it then, as one sent after the handshake. Its node hears CONNECTED only then, so a node
/// pacing its opens by CONNECTED keeps no more handshakes counted than it has links
/// waiting, however slowly this node confirms them.
#[test]
fn past_the_cap_an_early_connect_waits_for_its_handshake() {
    let mut core = two_per_source();
    let source = address(4000).ip();
    for id in [7, 8] {
        assert!(core.can_welcome_early(source));
        assert_eq!(
            core.incoming_started(source, true),
            HandshakeAdmission::Accept
        );
        assert!(matches!(
            offer_early(&mut core, &connect(id), key(1)),
            IncomingDecision::Welcome { .. }
        ));
    }
    assert!(
        !core.can_welcome_early(source),
        "two welcomed links are out"
    );
    // Two more, held: their node has not heard CONNECTED for them and waits, and they
    // count against the source as any handshake under way.
    for _ in 0..2 {
        assert_eq!(
            core.incoming_started(source, true),
            HandshakeAdmission::Accept
        );
    }
    assert_eq!(
        core.incoming_started(source, true),
        HandshakeAdmission::Refuse
    );
    // A held link's handshake completes: its CONNECT is judged as a confirmed one.
    assert!(matches!(
        offer(&mut core, &connect(9), key(1), true),
        IncomingDecision::Welcome { .. }
    ));
    core.incoming_ended(source);
    assert!(
        !core.can_welcome_early(source),
        "the welcomed two are still out"
    );
    // A welcomed link confirmed: the next early CONNECT may be answered at once again.
    let first = connect(7);
    assert!(core
        .early_confirmed(first.connection_id, first.connection_id.get())
        .is_some());
    core.incoming_ended(source);
    assert!(core.can_welcome_early(source));
}

#[test]
fn an_early_connect_whose_handshake_fails_leaves_nothing() {
    let mut core = core_with(
        Admission::default(),
        Limits {
            max_connections_per_node: 1,
            ..limits()
        },
    );
    let request = connect(7);
    assert!(matches!(
        offer_early(&mut core, &request, key(1)),
        IncomingDecision::Welcome { .. }
    ));
    // It holds its node's only slot while it waits.
    assert_eq!(
        refused(offer(&mut core, &connect(8), key(1), true)),
        RefuseReason::LimitReached
    );
    core.early_failed(request.connection_id, request.connection_id.get());
    assert!(events(&mut core).is_empty(), "nothing was raised");
    assert_eq!(core.early_links(), 0);
    assert_eq!(core.links.with_node(&key(1).node_id()), 0);
    assert!(core.links.is_idle());
    // The id and the slot are free again.
    assert!(matches!(
        offer(&mut core, &request, key(1), true),
        IncomingDecision::Welcome { .. }
    ));
}

#[test]
fn an_early_connect_is_judged_like_any_other_and_never_without_the_handshake_in_a_secret_graph() {
    let allowed = AllowList::new([(key(1), peer("alice"))].into_iter().collect());
    let mut core = core_with(
        Admission {
            allowed: Some(allowed),
            proof_required: false,
        },
        limits(),
    );
    // A key no longer (or never) on the allow-list is refused on the early path too.
    assert_eq!(
        refused(offer_early(&mut core, &connect(7), key(2))),
        RefuseReason::NotAuthorized
    );
    let mut wrong_graph = connect(8);
    wrong_graph.graph_id = GraphId::new("other").expect("graph id");
    assert_eq!(
        refused(offer_early(&mut core, &wrong_graph, key(1))),
        RefuseReason::WrongGraph
    );
    // A graph that requires a proof takes no CONNECT before the handshake completes.
    let mut secret = core_with(
        Admission {
            allowed: None,
            proof_required: true,
        },
        limits(),
    );
    assert_eq!(
        refused(offer_early(&mut secret, &connect(7), key(1))),
        RefuseReason::NotAuthorized
    );
    assert_eq!(secret.early_links(), 0);
}

#[test]
fn an_early_link_confirmed_after_the_graph_closed_is_left() {
    let mut core = core();
    let request = connect(7);
    assert!(matches!(
        offer_early(&mut core, &request, key(1)),
        IncomingDecision::Welcome { .. }
    ));
    core.release();
    assert_eq!(
        core.early_confirmed(request.connection_id, request.connection_id.get()),
        None
    );
    assert!(events(&mut core).is_empty());
    assert_eq!(core.links.with_node(&key(1).node_id()), 0);
}

#[test]
fn a_connect_on_a_completed_handshake_displaces_an_unconfirmed_one_of_the_same_key() {
    let mut core = core();
    let request = connect(7);
    // A replayed first flight got here first: welcomed under the id, never to complete.
    let replay_tag = 1_000;
    let incoming = IncomingConnect {
        connect: &request,
        peer_key: key(1),
        accepts_direct: true,
    };
    assert!(matches!(
        core.on_early_connect(incoming, replay_tag, address(4000), address(4000).ip()),
        IncomingDecision::Welcome { .. }
    ));
    // Another key cannot take the id.
    assert_eq!(
        refused(offer(&mut core, &request, key(2), true)),
        RefuseReason::DuplicateConnection
    );
    // The original, on its completed handshake, takes it.
    let IncomingDecision::Welcome { info, .. } = offer(&mut core, &request, key(1), true) else {
        panic!("the original was refused");
    };
    assert_eq!(core.early_links(), 0);
    assert_eq!(core.links.with_node(&info.node_id), 1);
    // The replay's handshake ending changes nothing.
    assert_eq!(
        core.early_confirmed(request.connection_id, replay_tag),
        None
    );
    core.early_failed(request.connection_id, replay_tag);
    assert_eq!(
        core.enum_connections(ConnectionFlags::DIRECT)
            .expect("enum"),
        vec![info]
    );
}
