//! TLS and mutual TLS with certificates from a CA generated for the test: a TLS client
//! that trusts the CA gets in; with mutual TLS, a client without a certificate or with one
//! from another CA is refused, and a client certificate's name identifies the caller.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use consent_ledger::cli::Connection;
use consent_ledger::config::{ServeConfig, TlsFiles};
use consent_ledger::proto::v1 as pb;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes a certificate for `names` (first one as CN) signed by `ca`; returns (cert, key).
fn issue(
    dir: &Path,
    file: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, ca).unwrap();
    let cert_path = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let ca = new_ca("consent-ledger test CA");
    let other = new_ca("some other CA");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca: ca_path,
        server: issue(dir, "server", &ca, &["localhost"]),
        client: issue(dir, "client", &ca, &["crm-sync.internal"]),
        stranger: issue(dir, "stranger", &other, &["crm-sync.internal"]),
    }
}

async fn start(dir: &Path, pki: &Pki, mutual: bool) -> TestServer {
    let callers = dir.join("callers.toml");
    std::fs::write(
        &callers,
        "[[caller]]\nname = \"crm-sync\"\nroles = [\"writer\", \"auditor\"]\ncertificate_name = \"crm-sync.internal\"\n",
    )
    .unwrap();
    TestServer::start_config(ServeConfig {
        data_dir: dir.join("data"),
        callers_file: Some(callers),
        callers_reload_interval: Duration::from_secs(60),
        tls: Some(TlsFiles {
            cert: pki.server.0.clone(),
            key: pki.server.1.clone(),
            client_ca: mutual.then(|| pki.ca.clone()),
        }),
        ..ServeConfig::default()
    })
    .await
}

/// Whether the server turns this client away (at the handshake or at the first call).
async fn is_refused(connection: &Connection) -> bool {
    match connection.client().await {
        Ok(mut client) => client
            .get_tree_head(pb::GetTreeHeadRequest {})
            .await
            .is_err(),
        Err(_) => true,
    }
}

fn https(server: &TestServer) -> String {
    format!("https://localhost:{}", server.addr.port())
}

#[tokio::test]
async fn tls_clients_must_trust_the_server_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = start(dir.path(), &pki, false).await;

    // Trusting the CA: the handshake succeeds; with no credentials the call is refused.
    let trusted = Connection {
        ca: Some(pki.ca.clone()),
        ..Connection::plain(&https(&server))
    };
    let mut client = trusted.client().await.unwrap();
    let err = client
        .get_tree_head(pb::GetTreeHeadRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // Plaintext to a TLS port does not get an answer.
    let plain = Connection::plain(&format!("http://127.0.0.1:{}", server.addr.port()));
    assert!(is_refused(&plain).await);
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_identifies_the_caller_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = start(dir.path(), &pki, true).await;
    let base = Connection {
        ca: Some(pki.ca.clone()),
        ..Connection::plain(&https(&server))
    };

    let with_cert = Connection {
        cert: Some(pki.client.0.clone()),
        key: Some(pki.client.1.clone()),
        ..base.clone()
    };
    let mut client = with_cert.client().await.unwrap();
    client
        .append(pb::AppendRequest {
            event: Some(registered("crm-tls-1", "AT")),
        })
        .await
        .unwrap();
    let history = client
        .get_history(pb::GetHistoryRequest {
            contact_id: "crm-tls-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        history.entries[0].actor, "crm-sync",
        "the certificate names the actor"
    );

    // No client certificate: the handshake is refused.
    assert!(
        is_refused(&base).await,
        "a client without a certificate got in"
    );

    // A certificate from another CA with the right name: refused too.
    let stranger = Connection {
        cert: Some(pki.stranger.0.clone()),
        key: Some(pki.stranger.1.clone()),
        ..base.clone()
    };
    assert!(
        is_refused(&stranger).await,
        "a certificate from another CA got in"
    );
    server.stop().await;
}
