//! Shared test support: a real server on 127.0.0.1:0 over a temporary data directory, and
//! builders for API events.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use consent_ledger::config::{Limits, ServeConfig};
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), consent_ledger::server::ServerError>>>,
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, Limits::default()).await
    }

    pub async fn start_with(data_dir: &Path, limits: Limits) -> Self {
        Self::start_config(ServeConfig {
            data_dir: data_dir.to_path_buf(),
            limits,
            ..ServeConfig::default()
        })
        .await
    }

    /// Starts on 127.0.0.1:0 with `config` (its listen address is ignored).
    pub async fn start_config(mut config: ServeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        config.listen = addr;
        let data_dir = config.data_dir.clone();
        let handle = tokio::spawn(consent_ledger::server::run(listener, config, async move {
            let _ = signal.await;
        }));
        Self {
            addr,
            data_dir,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    /// Starts as [`TestServer::start_config`], with the metrics endpoint on a free
    /// loopback port, which is returned.
    pub async fn start_with_metrics(config: ServeConfig) -> (Self, u16) {
        let port = free_port();
        let server = Self::start_config(ServeConfig {
            metrics_listen: Some(([127, 0, 0, 1], port).into()),
            ..config
        })
        .await;
        (server, port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        // The server binds before `start` returns; retry only while it opens the store.
        let endpoint = tonic::transport::Endpoint::from_shared(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(channel) = endpoint.connect().await {
                return channel;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("server at {} did not accept connections", self.addr);
    }

    pub async fn client(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.channel().await)
    }

    /// Shuts down gracefully and waits until the ledger is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

pub fn event(contact: &str, kind: pb::event::Kind) -> pb::Event {
    pb::Event {
        contact_id: contact.into(),
        kind: Some(kind),
        ..Default::default()
    }
}

pub fn registered(contact: &str, country: &str) -> pb::Event {
    event(
        contact,
        pb::event::Kind::ContactRegistered(pb::ContactRegistered {
            country: country.into(),
            region: String::new(),
            relationship: Some(pb::Relationship {
                audience: pb::Audience::B2c as i32,
                lifecycle: pb::Lifecycle::Prospect as i32,
            }),
            personal: Some(pb::PersonalData {
                email: format!("{contact}@example.test"),
                name: format!("Name of {contact}"),
                phone: String::new(),
                notes: String::new(),
            }),
            suppression_override: None,
        }),
    )
}

pub fn consent_granted(contact: &str, purpose: &str) -> pb::Event {
    event(
        contact,
        pb::event::Kind::ConsentGranted(pb::ConsentGranted {
            purpose: purpose.into(),
            channel: "email".into(),
            method: pb::ConsentMethod::Checkbox as i32,
            notice: Some(pb::Notice {
                id: "newsletter-signup".into(),
                version: "2026-03".into(),
                text_sha256: String::new(),
                language: "en".into(),
            }),
            evidence: Some(pb::CollectionEvidence {
                form_url: "https://example.test/signup".into(),
                ip_address: "192.0.2.7".into(),
                user_agent: "Mozilla/5.0 test".into(),
            }),
            expires_at: None,
        }),
    )
}

pub fn consent_withdrawn(contact: &str, purpose: &str) -> pb::Event {
    event(
        contact,
        pb::event::Kind::ConsentWithdrawn(pb::ConsentWithdrawn {
            purpose: purpose.into(),
            channel: "email".into(),
            method: pb::ConsentMethod::UnsubscribeLink as i32,
            evidence: None,
        }),
    )
}

pub fn basis(contact: &str, purpose: &str) -> pb::Event {
    event(
        contact,
        pb::event::Kind::LegalBasisRecorded(pb::LegalBasisRecorded {
            purpose: purpose.into(),
            basis: pb::LegalBasis::LegitimateInterests as i32,
            justification: "LIA-2026-01".into(),
        }),
    )
}

pub async fn append(client: &mut LedgerServiceClient<Channel>, event: pb::Event) -> pb::Receipt {
    client
        .append(pb::AppendRequest { event: Some(event) })
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap()
}

pub async fn tree_head(client: &mut LedgerServiceClient<Channel>) -> (u64, Vec<u8>) {
    let head = client
        .get_tree_head(pb::GetTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    (head.tree_size, head.root_hash)
}

pub async fn history(client: &mut LedgerServiceClient<Channel>, contact: &str) -> Vec<pb::Entry> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_history(pb::GetHistoryRequest {
                contact_id: contact.into(),
                page_size: 1000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The raw HTTP/1.1 response to `GET path` on 127.0.0.1:`port`.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut last = None;
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(mut stream) => {
                let request =
                    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).await.unwrap();
                return response;
            }
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("metrics endpoint did not answer: {last:?}");
}

/// Runs `VerifyLedger` (against `trusted`, a saved checkpoint, if not empty) to its end and
/// returns the result.
pub async fn verify_ledger(channel: Channel, trusted: &str) -> pb::VerifyResult {
    let mut audit =
        consent_ledger::proto::v1::audit_service_client::AuditServiceClient::new(channel);
    let mut stream = audit
        .verify_ledger(pb::VerifyLedgerRequest {
            trusted_checkpoint: trusted.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut result = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::verify_ledger_response::Update::Result(r)) = message.update {
            result = Some(r);
        }
    }
    result.expect("VerifyLedger ended without a result")
}

/// `Screen` requests for the unknown ids `nobody-0` .. `nobody-(count-1)`, 1,000 per
/// message, the target (email marketing on email) in the first; made only as the transport
/// asks for them, so the client holds no more than a message or two.
pub fn screen_requests(count: usize) -> impl futures::Stream<Item = pb::ScreenRequest> {
    futures::stream::iter((0..count.div_ceil(1000)).map(move |message| {
        pb::ScreenRequest {
            target: (message == 0).then(|| pb::ScreenTarget {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            }),
            contact_ids: (message * 1000..count.min((message + 1) * 1000))
                .map(|i| format!("nobody-{i}"))
                .collect(),
        }
    }))
}
