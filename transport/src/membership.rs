//! Graph membership by shared secret, proved on each link without the secret crossing
//! the wire.
//!
//! Each side of a link sends `HMAC-SHA256(secret, exporter)` where `exporter` is 32 bytes
//! of TLS keying material exported from this very link's TLS 1.3 session (RFC 8446, 7.5,
//! with the hash of the negotiated cipher suite) with the label
//! `EXPORTER-peergraph-membership` and a context of the role byte (1 for the CONNECT side,
//! 2 for the WELCOME side) followed by the connection id (u64, big-endian). The HMAC key is
//! the secret's bytes as they are. The exporter differs for every TLS session, so a proof
//! seen on one link is worthless on any other; the roles differ, so a proof cannot be
//! reflected back.
//!
//! `docs/PROTOCOL.md` §3.6 states the same construction for other implementations, with
//! test vectors; the tests below compute those vectors and check the RFC 8446 derivation
//! they start from against rustls' own exporter on a live link.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use peergraph_engine::ConnectionId;

/// The TLS exporter label of membership proofs.
pub const MEMBERSHIP_EXPORTER_LABEL: &[u8] = b"EXPORTER-peergraph-membership";
/// The shortest secret accepted: 16 bytes (128 bits), so a secret cannot be guessed
/// from proofs by brute force.
pub const MIN_SECRET_LEN: usize = 16;

/// A graph's shared secret (the Windows model's graph password). Its bytes never leave
/// the process; `Debug` does not print them.
#[derive(Clone)]
pub struct GraphSecret(Arc<[u8]>);

impl GraphSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] bytes; `None` if shorter.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (bytes.len() >= MIN_SECRET_LEN).then(|| GraphSecret(bytes.into()))
    }
}

impl fmt::Debug for GraphSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GraphSecret(..)")
    }
}

/// Which side of the handshake a proof speaks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum ProofRole {
    /// The connecting node (sent in CONNECT).
    Connect = 1,
    /// The accepting node (sent in WELCOME).
    Welcome = 2,
}

/// The bytes of TLS keying material a proof is computed over.
pub(crate) const EXPORTED_LEN: usize = 32;

/// The TLS exporter context of a proof: the role byte, then the connection id (u64,
/// big-endian), 9 bytes in all.
pub(crate) fn exporter_context(role: ProofRole, connection_id: ConnectionId) -> [u8; 9] {
    let mut context = [0u8; 9];
    context[0] = role as u8;
    context[1..].copy_from_slice(&connection_id.get().to_be_bytes());
    context
}

/// The keying material `connection`'s TLS session exports for a proof in `role`: RFC 8446
/// §7.5 `TLS-Exporter(MEMBERSHIP_EXPORTER_LABEL, exporter_context(role, connection_id), 32)`.
fn exporter(
    connection: &quinn::Connection,
    role: ProofRole,
    connection_id: ConnectionId,
) -> Option<[u8; EXPORTED_LEN]> {
    let mut output = [0u8; EXPORTED_LEN];
    connection
        .export_keying_material(
            &mut output,
            MEMBERSHIP_EXPORTER_LABEL,
            &exporter_context(role, connection_id),
        )
        .ok()?;
    Some(output)
}

/// The HMAC-SHA256 key of a secret: its bytes as they are, with no hashing or encoding.
fn hmac_key(secret: &GraphSecret) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.0)
}

/// The proof over exported keying material: `HMAC-SHA256(key = secret, message =
/// material)`, 32 bytes. Everything that ties the proof to a link, a role and a connection
/// id is already in `material` (see [`exporter_context`]); this is the pure half of a
/// proof, the one `docs/PROTOCOL.md` §3.6 gives test vectors for.
pub(crate) fn proof_from_keying_material(
    material: &[u8; EXPORTED_LEN],
    secret: &GraphSecret,
) -> Bytes {
    Bytes::copy_from_slice(ring::hmac::sign(&hmac_key(secret), material).as_ref())
}

/// True when `proof` is [`proof_from_keying_material`] of `material` and `secret`,
/// compared in constant time. A proof of any length other than 32 is false.
pub(crate) fn proof_matches(
    material: &[u8; EXPORTED_LEN],
    secret: &GraphSecret,
    proof: &[u8],
) -> bool {
    ring::hmac::verify(&hmac_key(secret), material, proof).is_ok()
}

/// The proof this node sends in `role` on `connection`; `None` if the TLS session cannot
/// export keying material (it always can once the handshake completed).
pub fn membership_proof(
    connection: &quinn::Connection,
    secret: &GraphSecret,
    role: ProofRole,
    connection_id: ConnectionId,
) -> Option<Bytes> {
    let material = exporter(connection, role, connection_id)?;
    Some(proof_from_keying_material(&material, secret))
}

/// True when `proof` is the peer's valid proof in `role` on `connection` (compared in
/// constant time).
pub fn verify_membership_proof(
    connection: &quinn::Connection,
    secret: &GraphSecret,
    role: ProofRole,
    connection_id: ConnectionId,
    proof: &[u8],
) -> bool {
    let Some(material) = exporter(connection, role, connection_id) else {
        return false;
    };
    proof_matches(&material, secret, proof)
}

#[cfg(test)]
mod tests {
    //! The test vectors of `docs/PROTOCOL.md` §3.6, and the RFC 8446 §7.5 exporter they
    //! start from, checked against rustls' exporter on live links.

    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use quinn::crypto::rustls::QuicClientConfig;
    use ring::hkdf;
    use rustls::crypto::ring::cipher_suite;

    use super::*;
    use crate::{
        bind_endpoint, client_tls_config, crypto_provider, transport_config, LinkOptions,
        NodeIdentity, PeerCertVerifier, SERVER_NAME,
    };

    /// The document the vectors must appear in.
    const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

    /// The secret of the vectors: the 28 ASCII bytes `correct horse battery staple`.
    const SECRET: &[u8] = b"correct horse battery staple";

    /// The connection id of the vectors (and of the example exchange, §6).
    const CONNECTION_ID: u64 = 0x0102_0304_0506_0708;

    /// One test vector, every value in lowercase hex as the document shows it.
    struct Vector {
        /// `sha384` or `sha256`: the hash of the negotiated cipher suite.
        hash: &'static str,
        role: ProofRole,
        /// The 9-byte exporter context.
        context: &'static str,
        /// Derive-Secret(exporter_master_secret, label, ""), written on one line by a
        /// string continuation.
        derived: &'static str,
        /// The 32 exported bytes.
        exported: &'static str,
        /// HMAC-SHA256(secret, exported).
        proof: &'static str,
    }

    /// exporter_master_secret of the vectors: the bytes 0, 1, 2, ... up to the hash's
    /// length (48 for SHA-384, 32 for SHA-256).
    fn exporter_master_secret(hash: &str) -> Vec<u8> {
        let len = if hash == "sha384" { 48 } else { 32 };
        (0..len).collect()
    }

    const VECTORS: [Vector; 3] = [
        Vector {
            hash: "sha384",
            role: ProofRole::Connect,
            context: "010102030405060708",
            derived: "c121c5279d36a70937a5bcbdef7ca46eeb1e26c7974e26083b8ccbc8e0061678\
                      b3f364963d9fe67c5db4924dab603d84",
            exported: "07d5a66b13859006d4e2ae66fcf3de0998b67105f7d9151ee13efe66f336e689",
            proof: "516181c2859680277b3a94f0082b4c4c3454489a260494b0abf90569feb8d834",
        },
        Vector {
            hash: "sha384",
            role: ProofRole::Welcome,
            context: "020102030405060708",
            derived: "c121c5279d36a70937a5bcbdef7ca46eeb1e26c7974e26083b8ccbc8e0061678\
                      b3f364963d9fe67c5db4924dab603d84",
            exported: "6002ee788a5c1e21d86b29e715d5a1c528d60a489cb2d851c7824ca3ef9fed43",
            proof: "1c9760a866c8549f509b697d3e205137ed4f24c7359c9e6b585fda98fe88d3ed",
        },
        Vector {
            hash: "sha256",
            role: ProofRole::Connect,
            context: "010102030405060708",
            derived: "bbf394bcbacbacd9b6dfdcd137b609dbcae649560415f2d134bd340262931281",
            exported: "5dd8e206c20664b41cdac12acec841c523cf6f67405d8385d3a80e4fe26baac3",
            proof: "532c7a4bd20ac05d7e704cba7ffec5329a40abf30a7d5adc3a39b7e90784b68a",
        },
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// An HKDF output length, as ring asks for it.
    struct Len(usize);

    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    /// RFC 8446 §7.1 HKDF-Expand-Label(secret, label, context, length).
    fn expand_label(
        algorithm: hkdf::Algorithm,
        secret: &[u8],
        label: &[u8],
        context: &[u8],
        length: usize,
    ) -> Vec<u8> {
        let length_bytes = u16::try_from(length).expect("short").to_be_bytes();
        let label_len = [u8::try_from(b"tls13 ".len() + label.len()).expect("short")];
        let context_len = [u8::try_from(context.len()).expect("short")];
        let info: [&[u8]; 6] = [
            &length_bytes,
            &label_len,
            b"tls13 ",
            label,
            &context_len,
            context,
        ];
        let mut output = vec![0u8; length];
        hkdf::Prk::new_less_safe(algorithm, secret)
            .expand(&info, Len(length))
            .expect("length within 255 hashes")
            .fill(&mut output)
            .expect("filled");
        output
    }

    /// RFC 8446 §7.5 TLS-Exporter(label, context, length) from the session's
    /// exporter_master_secret: `HKDF-Expand-Label(Derive-Secret(exporter_master_secret,
    /// label, ""), "exporter", Hash(context), length)`, where `Derive-Secret(s, l, "")` is
    /// `HKDF-Expand-Label(s, l, Hash(""), Hash.length)`. Returns the derived secret and the
    /// output.
    fn tls13_exporter(
        hash: &str,
        exporter_master_secret: &[u8],
        label: &[u8],
        context: &[u8],
        length: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let (algorithm, digest) = match hash {
            "sha384" => (hkdf::HKDF_SHA384, &ring::digest::SHA384),
            _ => (hkdf::HKDF_SHA256, &ring::digest::SHA256),
        };
        let empty_hash = ring::digest::digest(digest, b"");
        let derived = expand_label(
            algorithm,
            exporter_master_secret,
            label,
            empty_hash.as_ref(),
            digest.output_len(),
        );
        let context_hash = ring::digest::digest(digest, context);
        let output = expand_label(
            algorithm,
            &derived,
            b"exporter",
            context_hash.as_ref(),
            length,
        );
        (derived, output)
    }

    fn secret() -> GraphSecret {
        GraphSecret::new(SECRET).expect("long enough")
    }

    fn connection_id() -> ConnectionId {
        ConnectionId::new(CONNECTION_ID).expect("nonzero")
    }

    #[test]
    fn the_documented_vectors_hold() {
        for vector in &VECTORS {
            let what = format!("{} role {:?}", vector.hash, vector.role);
            let context = exporter_context(vector.role, connection_id());
            assert_eq!(hex(&context), vector.context, "{what}: context");
            let (derived, exported) = tls13_exporter(
                vector.hash,
                &exporter_master_secret(vector.hash),
                MEMBERSHIP_EXPORTER_LABEL,
                &context,
                EXPORTED_LEN,
            );
            assert_eq!(hex(&derived), vector.derived, "{what}: Derive-Secret");
            assert_eq!(hex(&exported), vector.exported, "{what}: exporter");
            let material: [u8; EXPORTED_LEN] = exported.try_into().expect("32 bytes");
            let proof = proof_from_keying_material(&material, &secret());
            assert_eq!(hex(&proof), vector.proof, "{what}: proof");
            assert!(proof_matches(&material, &secret(), &proof), "{what}");
            for value in [
                vector.context,
                vector.derived,
                vector.exported,
                vector.proof,
            ] {
                assert!(
                    PROTOCOL_MD.contains(&format!("`{value}`")),
                    "{what}: docs/PROTOCOL.md does not show {value}"
                );
            }
        }
        assert!(PROTOCOL_MD.contains(&hex(SECRET)));
    }

    #[test]
    fn a_proof_of_another_role_secret_or_length_does_not_match() {
        let material = [7u8; EXPORTED_LEN];
        let proof = proof_from_keying_material(&material, &secret());
        let other = GraphSecret::new(*b"correct horse battery stapler").expect("long enough");
        assert!(!proof_matches(&material, &other, &proof));
        assert!(!proof_matches(&[8u8; EXPORTED_LEN], &secret(), &proof));
        assert!(!proof_matches(&material, &secret(), &proof[..31]));
        assert!(!proof_matches(&material, &secret(), &[]));
    }

    /// Keeps the exporter_master_secret rustls derives (the `EXPORTER_SECRET` line of an
    /// SSLKEYLOGFILE).
    #[derive(Debug, Default)]
    struct ExporterSecret(Mutex<Option<Vec<u8>>>);

    impl rustls::KeyLog for ExporterSecret {
        fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
            if label == "EXPORTER_SECRET" {
                if let Ok(mut slot) = self.0.lock() {
                    *slot = Some(secret.to_vec());
                }
            }
        }
    }

    /// A node's client TLS configuration offering `suite` first (all of the provider's in
    /// its order if `None`), logging its exporter secret to `log`. TLS_AES_128_GCM_SHA256
    /// stays on the list: quinn will not build a QUIC configuration without it.
    fn client_offering(
        identity: &NodeIdentity,
        suite: Option<rustls::SupportedCipherSuite>,
        log: &Arc<ExporterSecret>,
    ) -> rustls::ClientConfig {
        let mut tls = match suite {
            None => client_tls_config(identity, None).expect("client TLS"),
            Some(suite) => {
                let provider = Arc::new(rustls::crypto::CryptoProvider {
                    cipher_suites: vec![suite, cipher_suite::TLS13_AES_128_GCM_SHA256],
                    ..(*crypto_provider()).clone()
                });
                let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .expect("TLS 1.3")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)))
                    .with_client_auth_cert(vec![identity.certificate()], identity.private_key())
                    .expect("client certificate");
                tls.alpn_protocols = vec![peergraph_engine::wire::ALPN.to_vec()];
                tls
            }
        };
        tls.key_log = log.clone();
        tls
    }

    /// Links a client offering `suite` to a node, and checks that both sides' exporters
    /// equal [`tls13_exporter`] computed from the logged exporter_master_secret with
    /// `hash`, and that their proofs agree.
    async fn exporter_matches_rfc_8446(suite: Option<rustls::SupportedCipherSuite>, hash: &str) {
        const BOUND: Duration = Duration::from_secs(10);
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let options = LinkOptions::default();
        let server = bind_endpoint(any, &NodeIdentity::generate().expect("id"), &options, true)
            .expect("server");
        let client_identity = NodeIdentity::generate().expect("id");
        let client = bind_endpoint(any, &client_identity, &options, false).expect("client");
        let log = Arc::new(ExporterSecret::default());
        let tls = client_offering(&client_identity, suite, &log);
        let mut config =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).expect("QUIC")));
        config.transport_config(Arc::new(
            transport_config(&options, false).expect("transport"),
        ));
        let address = server.local_addr().expect("address");
        let connecting = client
            .connect_with(config, address, SERVER_NAME)
            .expect("connect");
        let (client_side, server_side) = tokio::time::timeout(BOUND, async {
            tokio::join!(connecting, async {
                server.accept().await.expect("incoming").await
            })
        })
        .await
        .expect("handshake in time");
        let (client_side, server_side) =
            (client_side.expect("client"), server_side.expect("server"));
        let master = log
            .0
            .lock()
            .expect("log")
            .clone()
            .expect("exporter secret logged");
        assert_eq!(
            master.len(),
            if hash == "sha384" { 48 } else { 32 },
            "the negotiated suite's hash"
        );
        for role in [ProofRole::Connect, ProofRole::Welcome] {
            let context = exporter_context(role, connection_id());
            let (_, expected) = tls13_exporter(
                hash,
                &master,
                MEMBERSHIP_EXPORTER_LABEL,
                &context,
                EXPORTED_LEN,
            );
            let from_client = exporter(&client_side, role, connection_id()).expect("export");
            let from_server = exporter(&server_side, role, connection_id()).expect("export");
            assert_eq!(from_client.to_vec(), expected, "{hash} {role:?}: client");
            assert_eq!(from_server.to_vec(), expected, "{hash} {role:?}: server");
            let proof =
                membership_proof(&client_side, &secret(), role, connection_id()).expect("proof");
            assert!(verify_membership_proof(
                &server_side,
                &secret(),
                role,
                connection_id(),
                &proof
            ));
        }
        client_side.close(0u32.into(), b"done");
        server.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(BOUND, client.wait_idle()).await;
    }

    /// Two nodes negotiate TLS_AES_256_GCM_SHA384 (the client's first choice, which a
    /// rustls server follows), so their exporter hashes with SHA-384.
    #[tokio::test]
    async fn the_exporter_between_two_nodes_is_rfc_8446_with_sha384() {
        exporter_matches_rfc_8446(None, "sha384").await;
    }

    #[tokio::test]
    async fn the_exporter_follows_the_negotiated_suite() {
        exporter_matches_rfc_8446(Some(cipher_suite::TLS13_AES_256_GCM_SHA384), "sha384").await;
        exporter_matches_rfc_8446(Some(cipher_suite::TLS13_AES_128_GCM_SHA256), "sha256").await;
        exporter_matches_rfc_8446(Some(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256), "sha256")
            .await;
    }
}
