#!/usr/bin/env python3
"""A second peergraph implementation of a node, written from
docs/PROTOCOL.md alone, on aioquic (a Python QUIC stack), run against a peer_host.

It checks that the document is enough to interoperate, in both roles (this script as the
connecting node, QUIC client, and as the accepting node, QUIC server): mutual TLS with a
self-signed certificate (section 1.1), the node id (1.2), CONNECT / WELCOME (2, 3.1),
DATA (2.6), the close of section 3.4 started by either side, membership proofs from the
TLS exporter (3.6), a refusal (3.3), a handshake through a QUIC Retry (3.1), and a
resumed handshake with CONNECT as 0-RTT data (3.1.1).

How to run, from the repository root:

    pip install aioquic            # tested with aioquic 1.7.2
    cargo build -p peergraph-examples --bin peer_host
    python3 docs/interop/aioquic_peer.py --peer-host "$CARGO_TARGET_DIR/debug/peer_host"

(without CARGO_TARGET_DIR, the binary is target/debug/peer_host). The script starts the
peer_host processes itself on 127.0.0.1 (graph `chat`, peer `bob`, `--json
--accept-direct`, one of them with `--secret-file`, one with `--retry-threshold 0`), prints one line per check, and exits
with status 0 when every check passed. `-v` prints aioquic's log as well.

aioquic 1.7 has no TLS exporter API (RFC 8446 section 7.5), so the script computes the
exporter itself from the exporter_master_secret, which it takes from aioquic's key
schedule at the moment the client derives its application traffic secrets
(`exporter_master_secret = Derive-Secret(master_secret, "exp master", ClientHello ..
server Finished)`). With a stack that has the API, use the API. aioquic's server asks for
a client certificate only behind a switch it keeps for its tests, which the script turns
on. The script also reads four things aioquic keeps private: the peer's certificate, the
negotiated hash, the Retry it took, and the peer's CONNECTION_CLOSE as soon as it is processed (aioquic's own event for it comes only
after the draining period).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import hmac
import json
import logging
import os
import secrets
import ssl
import struct
import subprocess
import sys
import tempfile
import uuid

from aioquic import tls
from aioquic.asyncio import connect, serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# --- Numbers from docs/PROTOCOL.md ------------------------------------------------------

ALPN = "peergraph/1"  # section 1
SERVER_NAME = "peergraph"  # section 1
CONNECT, WELCOME, REFUSE, DISCONNECT, DATA = 1, 2, 3, 4, 5  # section 2
APP_DISCONNECT_REASON = 3  # section 2.5
APP_DISCONNECT, REFUSED = 0x01, 0x11  # section 4
NOT_AUTHORIZED = 0x84  # section 2.4
EXPORTER_LABEL = b"EXPORTER-peergraph-membership"  # section 3.6
CLOSE_TIMEOUT = 5.0  # section 5
WAIT = 10.0  # how long this script waits for anything


# --- Certificates and node ids (sections 1.1, 1.2) --------------------------------------


def self_signed(directory: str) -> tuple[str, str, int]:
    """Writes a fresh ECDSA P-256 key and a self-signed X.509 v3 certificate for it;
    returns their paths and the node id."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aioquic peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("peergraph")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path, node_id(certificate)


def node_id(certificate: x509.Certificate) -> int:
    """Section 1.2: the first 8 bytes of SHA-256 of the SubjectPublicKeyInfo DER."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return int.from_bytes(hashlib.sha256(spki).digest()[:8], "big")


# --- Frames (section 2) -----------------------------------------------------------------


def frame(frame_type: int, body: bytes) -> bytes:
    return struct.pack(">BI", frame_type, len(body)) + body


def string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def proof_field(proof: bytes) -> bytes:
    return bytes([len(proof)]) + proof


def connect_frame(connection_id: int, graph: str, source: str, target: str, proof: bytes) -> bytes:
    body = bytes([1, 0x01]) + struct.pack(">Q", connection_id)
    body += string(graph) + string(source) + string(target) + proof_field(proof)
    return frame(CONNECT, body)


def welcome_frame(connection_id: int, graph: str, peer: str, proof: bytes) -> bytes:
    body = struct.pack(">Q", connection_id) + string(graph) + string(peer) + proof_field(proof)
    return frame(WELCOME, body)


def data_frame(data_type: uuid.UUID, payload: bytes) -> bytes:
    return frame(DATA, data_type.bytes + payload)


def disconnect_frame() -> bytes:
    return frame(DISCONNECT, bytes([APP_DISCONNECT_REASON]))


class Body:
    """Reads the fields of one frame body."""

    def __init__(self, raw: bytes):
        self.raw, self.at = raw, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.raw):
            raise ValueError("truncated")
        out = self.raw[self.at : self.at + n]
        self.at += n
        return out

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def string(self) -> str:
        (n,) = struct.unpack(">H", self.take(2))
        return self.take(n).decode("utf-8")

    def proof(self) -> bytes:
        (n,) = self.take(1)
        if n not in (0, 32):
            raise ValueError(f"proof of {n} bytes")
        return self.take(n)

    def end(self) -> None:
        if self.at != len(self.raw):
            raise ValueError("trailing bytes")


# --- Membership proof (section 3.6) -----------------------------------------------------


def hkdf_expand_label(name: str, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), name).digest()
        out += block
        counter += 1
    return out[:length]


def tls_exporter(name: str, exporter_master_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """RFC 8446 section 7.5, with the hash `name` of the negotiated cipher suite."""
    size = hashlib.new(name).digest_size
    derived = hkdf_expand_label(name, exporter_master_secret, label, hashlib.new(name, b"").digest(), size)
    return hkdf_expand_label(name, derived, b"exporter", hashlib.new(name, context).digest(), length)


def proof(link: "Link", secret: bytes, role: int, connection_id: int) -> bytes:
    context = bytes([role]) + struct.pack(">Q", connection_id)
    exported = tls_exporter(link.hash_name(), link.exporter_master_secret(), EXPORTER_LABEL, context, 32)
    return hmac.new(secret, exported, "sha256").digest()


# aioquic keeps no exporter_master_secret: derive it where the client derives its
# application traffic secrets, from the same transcript (ClientHello .. server Finished).
_setup_traffic_protection = tls.Context._setup_traffic_protection


def _keep_exporter_master_secret(self, direction, epoch, label):
    if label == b"s ap traffic":
        self.exporter_master_secret = self.key_schedule.derive_secret(b"exp master")
    return _setup_traffic_protection(self, direction, epoch, label)


tls.Context._setup_traffic_protection = _keep_exporter_master_secret

# Section 1: client certificates are mandatory. aioquic's server asks for one only with a
# switch it keeps for its own tests; turn it on for every server-side TLS context.
_context_init = tls.Context.__init__


def _request_client_certificate(self, *args, **kwargs):
    _context_init(self, *args, **kwargs)
    if not self._is_client:
        self._request_client_certificate = True


tls.Context.__init__ = _request_client_certificate


# --- The link ---------------------------------------------------------------------------


class Link(QuicConnectionProtocol):
    """One QUIC connection: reassembles stream 0 into frames and notes the peer's close."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = b""
        self.fin = False
        self.changed = asyncio.Event()
        self.we_closed = False
        self.peer_close = None  # (error code, reason) of the peer's CONNECTION_CLOSE

    def quic_event_received(self, event) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id == 0:
            self.buffer += event.data
            self.fin = self.fin or event.end_stream
        self.changed.set()

    def datagram_received(self, data, addr) -> None:
        super().datagram_received(data, addr)
        close = self._quic._close_event
        if close is not None and not self.we_closed and self.peer_close is None:
            self.peer_close = (close.error_code, close.frame_type, close.reason_phrase)
        self.changed.set()

    async def wait(self, what: str, condition, timeout: float = WAIT) -> None:
        async def loop():
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def next_frame(self):
        """The next frame on stream 0, or None at its FIN."""
        def ready():
            if len(self.buffer) >= 5:
                (n,) = struct.unpack(">I", self.buffer[1:5])
                return len(self.buffer) >= 5 + n
            return self.fin or self.peer_close is not None

        await self.wait("a frame", ready)
        if len(self.buffer) < 5:
            if self.buffer and self.fin:
                raise AssertionError("stream ended inside a frame")
            if self.fin:
                return None
            if self.peer_close is not None:
                raise AssertionError(f"the peer closed the connection: {self.peer_close}")
            raise AssertionError("stream ended inside a frame")
        frame_type = self.buffer[0]
        (n,) = struct.unpack(">I", self.buffer[1:5])
        body, self.buffer = self.buffer[5 : 5 + n], self.buffer[5 + n :]
        return frame_type, Body(body)

    def send(self, data: bytes, fin: bool = False) -> None:
        self._quic.send_stream_data(0, data, end_stream=fin)
        self.transmit()

    def close_quic(self, code: int, reason: str) -> None:
        self.we_closed = True
        self.close(error_code=code, reason_phrase=reason)

    def peer_certificate(self) -> x509.Certificate:
        return self._quic.tls._peer_certificate

    def hash_name(self) -> str:
        return self._quic.tls.key_schedule.algorithm.name

    def exporter_master_secret(self) -> bytes:
        return self._quic.tls.exporter_master_secret


# --- peer_host --------------------------------------------------------------------------


class Host:
    """A peer_host process with --json: its events, and commands on its standard input."""

    def __init__(self, path: str, extra: list[str]):
        self.process = subprocess.Popen(
            [path, "--graph", "chat", "--peer", "bob", "--listen", "127.0.0.1:0",
             "--accept-direct", "--json", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._read)

    def _read(self) -> None:
        loop = self.loop
        for line in self.process.stdout:
            loop.call_soon_threadsafe(self.lines.put_nowait, json.loads(line))

    async def expect(self, what: str, predicate) -> dict:
        try:
            while True:
                line = await asyncio.wait_for(self.lines.get(), WAIT)
                if predicate(line):
                    return line
        except asyncio.TimeoutError:
            raise AssertionError(f"peer_host: timed out waiting for {what}") from None

    def command(self, text: str) -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        try:
            self.command("quit")
            self.process.wait(WAIT)
        except Exception:
            self.process.kill()


async def start_host(path: str, extra: list[str]) -> tuple[Host, str, int, int]:
    Host.loop = asyncio.get_running_loop()
    host = Host(path, extra)
    listening = await host.expect("listening", lambda l: l.get("event") == "listening")
    host_, port = listening["addr"].rsplit(":", 1)
    return host, host_, int(port), int(listening["node_id"], 16)


# --- The checks -------------------------------------------------------------------------


def event_id(event: dict) -> int:
    """The connection id of a peer_host event: a string in the library's text form
    (`0x` and 16 hex digits), since JSON numbers lose precision past 2**53."""
    return int(event["connection_id"], 16)


def check(what: str, ok: bool, detail: str = "") -> None:
    print(("ok      " if ok else "FAILED  ") + what + (f"  ({detail})" if detail else ""))
    if not ok:
        raise AssertionError(what)


def configuration(cert: str, key: str, is_client: bool = True) -> QuicConfiguration:
    config = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], server_name=SERVER_NAME)
    # Identity is the key (section 1.1): no chain or name is checked. aioquic still checks
    # the CertificateVerify signature against the certificate's key.
    config.verify_mode = ssl.CERT_NONE
    config.load_cert_chain(cert, key)
    return config


async def open_link(addr, port, config, secret: bytes | None, target: str = "bob"):
    """Section 3.1 from the connecting side; returns the link, its connection id and the
    first reply frame."""
    cm = connect(addr, port, configuration=config, create_protocol=Link, wait_connected=True)
    link: Link = await cm.__aenter__()
    link._cm = cm
    connection_id = secrets.randbits(64) or 1
    own_proof = proof(link, secret, 1, connection_id) if secret else b""
    link.send(connect_frame(connection_id, "chat", "alice", target, own_proof))
    reply = await link.next_frame()
    return link, connection_id, reply


async def close_link(link: Link) -> None:
    await link._cm.__aexit__(None, None, None)


async def answer_and_finish(link: Link, closing: bool) -> str:
    """Section 3.4 from steps 1 to 5 for a stack that cannot report acknowledgements: after
    step 4, wait for the peer's CONNECTION_CLOSE (bounded), then close with 0x01."""
    if closing:
        link.send(disconnect_frame())
    reply = await link.next_frame()
    check("DISCONNECT(APP_DISCONNECT) from the peer",
          reply is not None and reply[0] == DISCONNECT and reply[1].raw == bytes([APP_DISCONNECT_REASON]))
    if not closing:
        link.send(disconnect_frame())
    link.send(b"", fin=True)  # step 3: our DISCONNECT is written and the peer's read
    end = await link.next_frame()
    check("the peer's FIN follows its DISCONNECT (step 4)", end is None)
    try:
        await link.wait("the peer's CONNECTION_CLOSE", lambda: link.peer_close is not None, CLOSE_TIMEOUT)
        outcome = f"the peer closed first with {link.peer_close}"
    except AssertionError:
        outcome = "no close from the peer within the close timeout"
    link.close_quic(APP_DISCONNECT, "disconnect")
    return outcome


async def accepting_role(peer_host: str, cert: str, key: str, own_node_id: int, secret: bytes | None) -> None:
    """This script as the accepting node (section 3.1, QUIC server); peer_host connects to
    it, sends DATA and closes."""
    extra = []
    if secret:
        path = os.path.join(os.path.dirname(cert), "secret")
        with open(path, "wb") as f:
            f.write(secret)
        extra = ["--secret-file", path]
    host, _, _, host_node_id = await start_host(peer_host, extra)
    links: asyncio.Queue = asyncio.Queue()

    def new_link(*args, **kwargs):
        link = Link(*args, **kwargs)
        links.put_nowait(link)
        return link

    server = await serve("127.0.0.1", 0, configuration=configuration(cert, key, is_client=False),
                         create_protocol=new_link)
    port = server._transport.get_extra_info("sockname")[1]
    mode = "with a secret" if secret else "no secret"
    try:
        host.command(f"open carol 127.0.0.1:{port}")
        link: Link = await asyncio.wait_for(links.get(), WAIT)
        reply = await link.next_frame()
        check(f"accepting ({mode}): the first frame is CONNECT", reply is not None and reply[0] == CONNECT)
        body = reply[1]
        version, flags = body.take(1)[0], body.take(1)[0]
        connection_id, graph, source, target = body.u64(), body.string(), body.string(), body.string()
        their_proof = body.proof()
        body.end()
        check(f"accepting ({mode}): CONNECT is version 1, direct, graph chat, bob to carol",
              (version, flags, graph, source, target) == (1, 1, "chat", "bob", "carol"))
        certificate = link.peer_certificate()
        check(f"accepting ({mode}): peer_host presented a certificate, with its node id",
              certificate is not None and node_id(certificate) == host_node_id)
        if secret:
            check(f"accepting ({mode}): CONNECT's proof verifies as role 1",
                  hmac.compare_digest(their_proof, proof(link, secret, 1, connection_id)),
                  f"suite hash {link.hash_name()}")
        own_proof = proof(link, secret, 2, connection_id) if secret else b""
        link.send(welcome_frame(connection_id, "chat", "carol", own_proof))
        event = await host.expect("connected", lambda l: l.get("event") == "direct_connection")
        check(f"accepting ({mode}): peer_host reports connected",
              event["status"] == "connected" and event_id(event) == connection_id
              and int(event["node_id"], 16) == own_node_id, str(event))
        host.command(f"send {connection_id} hello")
        reply = await link.next_frame()
        check(f"accepting ({mode}): DATA hello arrives",
              reply is not None and reply[0] == DATA and reply[1].raw[16:] == b"hello")
        host.command(f"close {connection_id}")
        outcome = await answer_and_finish(link, closing=False)
        event = await host.expect("close reply", lambda l: l.get("reply") == "close")
        check(f"accepting ({mode}): peer_host's CloseDirectConnection returns S_OK",
              event["name"] == "S_OK", outcome)
    finally:
        server.close()
        host.stop()


async def run(peer_host: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        cert, key, own_node_id = self_signed(directory)
        config = configuration(cert, key)

        # 1. alice (this script) connects, sends DATA and closes (section 6).
        host, addr, port, bob_node_id = await start_host(peer_host, [])
        try:
            link, connection_id, reply = await open_link(addr, port, config, None)
            check("TLS: ALPN peergraph/1 negotiated", link._quic.tls.alpn_negotiated == ALPN)
            check("TLS: the node id from bob's certificate is the one peer_host prints",
                  node_id(link.peer_certificate()) == bob_node_id, f"{bob_node_id:016x}")
            check("the reply is WELCOME", reply is not None and reply[0] == WELCOME, str(reply and reply[0]))
            body = reply[1]
            fields = (body.u64(), body.string(), body.string(), body.proof())
            body.end()
            check("WELCOME carries our connection id, graph chat, peer bob, no proof",
                  fields == (connection_id, "chat", "bob", b""), str(fields))
            event = await host.expect("connected", lambda l: l.get("status") == "connected")
            check("peer_host: connected, with our connection id and node id",
                  event_id(event) == connection_id and int(event["node_id"], 16) == own_node_id)
            link.send(data_frame(uuid.UUID(int=0xC0FFEE), b"hello"))
            event = await host.expect("incoming_data", lambda l: l.get("event") == "incoming_data")
            check("peer_host: INCOMING_DATA of 5 bytes", event["bytes"] == 5 and event_id(event) == connection_id)
            outcome = await answer_and_finish(link, closing=True)
            check("close completed", True, outcome)
            event = await host.expect("disconnected", lambda l: l.get("status") == "disconnected")
            check("peer_host: disconnected", event_id(event) == connection_id)
            await close_link(link)

            # 2. bob (peer_host) closes; this script answers (section 3.4, the peer's side).
            link, connection_id, reply = await open_link(addr, port, config, None)
            check("second link: WELCOME", reply is not None and reply[0] == WELCOME)
            await host.expect("connected", lambda l: l.get("status") == "connected")
            host.command(f"close {connection_id}")
            outcome = await answer_and_finish(link, closing=False)
            event = await host.expect("close reply", lambda l: l.get("reply") == "close")
            check("peer_host: CloseDirectConnection returns S_OK", event["name"] == "S_OK", outcome)
            await close_link(link)
        finally:
            host.stop()

        # 3. A graph with a secret: proofs both ways (section 3.6), then a wrong proof.
        secret = secrets.token_bytes(24)
        secret_path = os.path.join(directory, "secret")
        with open(secret_path, "wb") as f:
            f.write(secret)
        host, addr, port, _ = await start_host(peer_host, ["--secret-file", secret_path])
        try:
            link, connection_id, reply = await open_link(addr, port, config, secret)
            check("with a secret: the reply is WELCOME (bob verified our proof)",
                  reply is not None and reply[0] == WELCOME, f"suite hash {link.hash_name()}")
            body = reply[1]
            body.u64(), body.string(), body.string()
            their_proof = body.proof()
            body.end()
            expected = proof(link, secret, 2, connection_id)
            check("with a secret: WELCOME's proof verifies as role 2",
                  hmac.compare_digest(their_proof, expected))
            await host.expect("connected", lambda l: l.get("status") == "connected")
            await answer_and_finish(link, closing=True)
            await close_link(link)

            link, connection_id, reply = await open_link(addr, port, config, b"wrong secret, 16+ bytes")
            check("a wrong proof: REFUSE NOT_AUTHORIZED (0x84)",
                  reply is not None and reply[0] == REFUSE and reply[1].raw == bytes([NOT_AUTHORIZED]))
            end = await link.next_frame()
            check("REFUSE is followed by FIN", end is None)
            link.close_quic(REFUSED, "handshake failed")
            await close_link(link)
        finally:
            host.stop()

        # 4. A node that asks a QUIC Retry of every address (section 3.1 step 1, 2): the
        #    handshake goes through the Retry, and the link works as any other.
        host, addr, port, _ = await start_host(peer_host, ["--retry-threshold", "0"])
        try:
            link, connection_id, reply = await open_link(addr, port, config, None)
            check("through a Retry: the handshake took one, with the id the Retry gave",
                  link._quic._retry_count == 1 and link._quic._retry_source_connection_id is not None,
                  f"retries {link._quic._retry_count}")
            check("through a Retry: WELCOME", reply is not None and reply[0] == WELCOME)
            await host.expect("connected", lambda l: l.get("status") == "connected")
            link.send(data_frame(uuid.UUID(int=0xC0FFEE), b"retried"))
            event = await host.expect("incoming_data", lambda l: l.get("event") == "incoming_data")
            check("through a Retry: peer_host gets the DATA",
                  event["bytes"] == 7 and event_id(event) == connection_id)
            await answer_and_finish(link, closing=True)
            await close_link(link)
        finally:
            host.stop()

        # 5. Resumption with CONNECT as 0-RTT data (section 3.1.1): a ticket from a first
        #    link, then a second link that resumes with it and sends CONNECT in its first
        #    flight; WELCOME comes back with the handshake.
        host, addr, port, _ = await start_host(peer_host, [])
        try:
            tickets: list = []
            cm = connect(addr, port, configuration=config, create_protocol=Link,
                         wait_connected=True, session_ticket_handler=tickets.append)
            link: Link = await cm.__aenter__()
            link._cm = cm
            connection_id = secrets.randbits(64) or 1
            link.send(connect_frame(connection_id, "chat", "alice", "bob", b""))
            reply = await link.next_frame()
            check("0-RTT, first link: WELCOME", reply is not None and reply[0] == WELCOME)
            await host.expect("connected", lambda l: l.get("status") == "connected")
            await answer_and_finish(link, closing=True)
            await close_link(link)
            check("0-RTT: peer_host sent a ticket that allows 0-RTT data",
                  bool(tickets) and tickets[-1].max_early_data_size == 0xFFFFFFFF,
                  f"{len(tickets)} tickets")

            resuming = configuration(cert, key)
            resuming.session_ticket = tickets[-1]
            cm = connect(addr, port, configuration=resuming, create_protocol=Link, wait_connected=False)
            link = await cm.__aenter__()
            link._cm = cm
            connection_id = secrets.randbits(64) or 1
            link.send(connect_frame(connection_id, "chat", "alice", "bob", b""))
            check("0-RTT: CONNECT left before the handshake completed",
                  not link._quic._handshake_complete)
            reply = await link.next_frame()
            check("0-RTT: the reply is WELCOME", reply is not None and reply[0] == WELCOME)
            check("0-RTT: the session resumed and the 0-RTT data was accepted",
                  link._quic.tls.session_resumed and link._quic.tls.early_data_accepted)
            event = await host.expect("connected", lambda l: l.get("status") == "connected")
            check("0-RTT: peer_host reports connected, with our connection id and node id",
                  event_id(event) == connection_id and int(event["node_id"], 16) == own_node_id)
            link.send(data_frame(uuid.UUID(int=0xC0FFEE), b"resumed"))
            event = await host.expect("incoming_data", lambda l: l.get("event") == "incoming_data")
            check("0-RTT: peer_host gets the DATA", event["bytes"] == 7 and event_id(event) == connection_id)
            await answer_and_finish(link, closing=True)
            await close_link(link)
        finally:
            host.stop()

        # 6. The accepting role: peer_host connects to this script.
        await accepting_role(peer_host, cert, key, own_node_id, None)
        await accepting_role(peer_host, cert, key, own_node_id, secrets.token_bytes(24))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-host", required=True, help="path of the peer_host binary")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        asyncio.run(run(args.peer_host))
    except AssertionError as error:
        print(f"interop check failed: {error}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
