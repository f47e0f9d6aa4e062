//! Who may call what. One table maps every RPC to the roles allowed to call it (an RPC
//! missing from the table is denied); callers are authenticated by bearer token (the
//! configuration holds only SHA-256 digests, compared in constant time) before any handler
//! runs, by a tower layer in front of every service.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::metrics::{AuthLabels, Metrics};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Appends events.
    Writer,
    /// Eligibility checks and screening.
    Reader,
    /// Rights requests, export, erasure, suppression override.
    Dpo,
    /// Read-only: history, proofs, checkpoints, verification, bundles.
    Auditor,
    /// Policy activation, backup, key rotation.
    Admin,
}

impl Role {
    /// Every role, in table order.
    pub const ALL: [Role; 5] = [
        Role::Writer,
        Role::Reader,
        Role::Dpo,
        Role::Auditor,
        Role::Admin,
    ];

    /// The role's name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health checks for load balancers and probes).
    Public,
    /// Any authenticated caller, whatever its roles (reflection).
    Authenticated,
    /// Authenticated callers holding one of these roles.
    Roles(&'static [Role]),
}

use Role::{Admin, Auditor, Dpo, Reader, Writer};

/// Every RPC the server offers and who may call it. An RPC not listed here is denied.
pub const RPC_ACCESS: &[(&str, Access)] = &[
    (
        "/consentledger.v1.LedgerService/Append",
        Access::Roles(&[Writer, Dpo]),
    ),
    (
        "/consentledger.v1.LedgerService/AppendBatch",
        Access::Roles(&[Writer, Dpo]),
    ),
    (
        "/consentledger.v1.LedgerService/GetHistory",
        Access::Roles(&[Auditor, Dpo]),
    ),
    (
        "/consentledger.v1.LedgerService/GetEntry",
        Access::Roles(&[Auditor, Dpo]),
    ),
    (
        "/consentledger.v1.LedgerService/VerifyContact",
        Access::Roles(&[Auditor, Dpo]),
    ),
    (
        "/consentledger.v1.LedgerService/GetTreeHead",
        Access::Roles(&[Writer, Reader, Dpo, Auditor, Admin]),
    ),
    (
        "/consentledger.v1.AuditService/GetInclusionProof",
        Access::Roles(&[Auditor, Writer]),
    ),
    (
        "/consentledger.v1.AuditService/GetConsistencyProof",
        Access::Roles(&[Auditor]),
    ),
    (
        "/consentledger.v1.AuditService/GetCheckpoint",
        Access::Roles(&[Auditor, Writer, Reader, Dpo, Admin]),
    ),
    (
        "/consentledger.v1.AuditService/ListCheckpoints",
        Access::Roles(&[Auditor]),
    ),
    (
        "/consentledger.v1.AuditService/GetReceiptProof",
        Access::Roles(&[Auditor, Writer]),
    ),
    (
        "/consentledger.v1.AuditService/VerifyLedger",
        Access::Roles(&[Auditor, Admin]),
    ),
    (
        "/consentledger.v1.AuditService/ExportBundle",
        Access::Roles(&[Auditor, Dpo]),
    ),
    (
        "/consentledger.v1.AuditService/GetVerifierKey",
        Access::Roles(&[Auditor, Writer, Reader, Dpo, Admin]),
    ),
    (
        "/consentledger.v1.EligibilityService/Check",
        Access::Roles(&[Reader, Dpo, Auditor, Admin]),
    ),
    (
        "/consentledger.v1.EligibilityService/Screen",
        Access::Roles(&[Reader, Dpo, Auditor, Admin]),
    ),
    (
        "/consentledger.v1.EligibilityService/GetPolicy",
        Access::Roles(&[Auditor, Writer, Reader, Dpo, Admin]),
    ),
    (
        "/consentledger.v1.EligibilityService/ListPolicies",
        Access::Roles(&[Auditor, Writer, Reader, Dpo, Admin]),
    ),
    (
        "/consentledger.v1.EligibilityService/ActivatePolicy",
        Access::Roles(&[Admin]),
    ),
    (
        "/consentledger.v1.RightsService/OpenRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/VerifyRequestIdentity",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/AcknowledgeRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/ExtendRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/RejectRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/CompleteRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/GetRequest",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/ListRequests",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/EraseContact",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.RightsService/ExportContact",
        Access::Roles(&[Dpo]),
    ),
    (
        "/consentledger.v1.AdminService/Backup",
        Access::Roles(&[Admin]),
    ),
    (
        "/consentledger.v1.AdminService/Compact",
        Access::Roles(&[Admin]),
    ),
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Access::Authenticated,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Access::Authenticated,
    ),
];

/// Who may call the RPC at `path` (`/package.Service/Method`); `None` if it is unknown.
pub fn access_for(path: &str) -> Option<Access> {
    RPC_ACCESS
        .iter()
        .find(|(rpc, _)| *rpc == path)
        .map(|(_, access)| *access)
}

/// The authenticated caller of a request, placed in the request's extensions before any
/// handler runs. The actor recorded in an entry comes only from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name, recorded as the actor of the entries it appends.
    pub name: String,
    /// What it may do.
    pub roles: BTreeSet<Role>,
}

impl Caller {
    /// The caller of the embedded default, which serves loopback without authentication.
    pub fn unauthenticated_local() -> Self {
        Self {
            name: "local-unauthenticated".into(),
            roles: Role::ALL.into_iter().collect(),
        }
    }
}

/// A malformed callers file. Names the line where the TOML parser can.
#[derive(Debug, thiserror::Error)]
pub enum CallersError {
    /// The file cannot be read.
    #[error("cannot read callers file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the expected shape.
    #[error("callers file: {0}")]
    Syntax(String),
    /// A caller entry breaks a rule.
    #[error("callers file: caller {name:?}: {rule}")]
    Invalid {
        /// The caller's name.
        name: String,
        /// The rule.
        rule: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    #[serde(default)]
    caller: Vec<CallerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: String,
    roles: Vec<Role>,
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    certificate_name: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// The callers allowed in, by token digest.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    entries: Vec<KnownCaller>,
}

#[derive(Debug, Clone)]
struct KnownCaller {
    caller: Caller,
    token_sha256: Option<[u8; 32]>,
    certificate_name: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl Callers {
    /// Parses a callers file:
    ///
    /// ```toml
    /// [[caller]]
    /// name = "crm-sync"
    /// roles = ["writer"]
    /// token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    /// certificate_name = "crm-sync.internal"  # CN or DNS SAN of its client certificate
    /// expires_at = "2027-06-30T00:00:00Z"     # optional
    /// ```
    ///
    /// Each caller needs a `token_sha256`, a `certificate_name`, or both.
    pub fn parse(text: &str) -> Result<Self, CallersError> {
        let file: CallersFile =
            toml::from_str(text).map_err(|e| CallersError::Syntax(e.to_string()))?;
        let mut names = BTreeSet::new();
        let mut entries = Vec::with_capacity(file.caller.len());
        for entry in file.caller {
            let invalid = |rule: &str| CallersError::Invalid {
                name: entry.name.clone(),
                rule: rule.to_owned(),
            };
            if entry.name.is_empty()
                || entry.name.len() > 128
                || !entry.name.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid("name must be 1-128 visible ASCII characters"));
            }
            if !names.insert(entry.name.clone()) {
                return Err(invalid("name is used by another caller"));
            }
            if entry.roles.is_empty() {
                return Err(invalid("roles must name at least one role"));
            }
            let token_sha256 = entry
                .token_sha256
                .as_deref()
                .map(|text| {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(text, &mut digest)
                        .map(|()| digest)
                        .map_err(|_| invalid("token_sha256 must be 64 hex characters"))
                })
                .transpose()?;
            if token_sha256.is_none() && entry.certificate_name.is_none() {
                return Err(invalid("needs a token_sha256, a certificate_name, or both"));
            }
            entries.push(KnownCaller {
                caller: Caller {
                    name: entry.name,
                    roles: entry.roles.into_iter().collect(),
                },
                token_sha256,
                certificate_name: entry.certificate_name,
                expires_at: entry.expires_at,
            });
        }
        let tokens: Vec<_> = entries.iter().filter_map(|e| e.token_sha256).collect();
        let distinct: BTreeSet<_> = tokens.iter().collect();
        if distinct.len() != tokens.len() {
            return Err(CallersError::Syntax(
                "two callers share the same token_sha256".into(),
            ));
        }
        Ok(Self { entries })
    }

    /// Reads and parses a callers file.
    pub fn load(path: &Path) -> Result<Self, CallersError> {
        let text = std::fs::read_to_string(path).map_err(|source| CallersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Number of callers configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no caller is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller whose token this is, if it is known and not expired. Compares against
    /// every digest in constant time, so timing does not reveal how much matched.
    fn by_token(&self, token: &str, now: DateTime<Utc>) -> Result<&Caller, &'static str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if let Some(known) = &entry.token_sha256 {
                if bool::from(known.ct_eq(&digest)) {
                    found = Some(entry);
                }
            }
        }
        let entry = found.ok_or("unknown bearer token")?;
        entry.unexpired(now, "the bearer token has expired")
    }

    /// The caller whose client certificate carries one of `names` (CN or DNS SANs).
    fn by_certificate(
        &self,
        names: &[String],
        now: DateTime<Utc>,
    ) -> Result<&Caller, &'static str> {
        let entry = self
            .entries
            .iter()
            .find(|e| {
                e.certificate_name
                    .as_ref()
                    .is_some_and(|name| names.contains(name))
            })
            .ok_or("the client certificate names no known caller")?;
        entry.unexpired(now, "the caller's access has expired")
    }
}

impl KnownCaller {
    fn unexpired(
        &self,
        now: DateTime<Utc>,
        expired: &'static str,
    ) -> Result<&Caller, &'static str> {
        match self.expires_at {
            Some(expires) if expires <= now => Err(expired),
            _ => Ok(&self.caller),
        }
    }
}

/// A new random bearer token and the SHA-256 digest to put in the callers file.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let token = format!("clt_{}", hex::encode(secret));
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    Ok((token, digest))
}

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// No credentials are checked: every caller is the local one with every role. Only
    /// for the embedded default on loopback.
    Disabled,
    /// Callers from a callers file (bearer tokens and client-certificate names), which
    /// can be swapped while serving.
    Callers(Arc<RwLock<Arc<Callers>>>),
}

impl Authenticator {
    /// Authentication of `callers`.
    pub fn callers(callers: Callers) -> Self {
        Self::Callers(Arc::new(RwLock::new(Arc::new(callers))))
    }

    /// Replaces the callers (after a reload of the callers file).
    pub fn replace(&self, callers: Callers) {
        if let Self::Callers(current) = self {
            if let Ok(mut current) = current.write() {
                *current = Arc::new(callers);
            }
        }
    }

    /// Decides whether a request for `path` may proceed, and as whom: by its bearer token
    /// if it sends one, otherwise by the names in its verified client certificate
    /// (`peer_names`, empty without mutual TLS).
    pub fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer_names: &[String],
    ) -> Result<Caller, Status> {
        let Some(access) = access_for(path) else {
            tracing::warn!(rpc = path, "denied: RPC missing from the role table");
            return Err(Status::permission_denied(format!(
                "{path} is not an allowed RPC"
            )));
        };
        let caller = match self {
            Self::Disabled => Caller::unauthenticated_local(),
            Self::Callers(_) if access == Access::Public => return Ok(anonymous()),
            Self::Callers(callers) => {
                let callers = callers
                    .read()
                    .map(|c| Arc::clone(&c))
                    .map_err(|_| Status::internal("caller table unavailable"))?;
                let now = Utc::now();
                let found = match bearer_token(headers) {
                    Ok(Some(token)) => callers.by_token(token, now),
                    Ok(None) if !peer_names.is_empty() => callers.by_certificate(peer_names, now),
                    Ok(None) => Err("no credentials: send an authorization: Bearer <token> header or a client certificate"),
                    Err(reason) => Err(reason),
                };
                found.cloned().map_err(|reason| {
                    tracing::warn!(rpc = path, reason, "unauthenticated request");
                    Status::unauthenticated(reason)
                })?
            }
        };
        match access {
            Access::Public | Access::Authenticated => Ok(caller),
            Access::Roles(allowed) if allowed.iter().any(|r| caller.roles.contains(r)) => {
                Ok(caller)
            }
            Access::Roles(allowed) => {
                tracing::warn!(rpc = path, caller = %caller.name, "permission denied");
                let names: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
                Err(Status::permission_denied(format!(
                    "caller {} lacks a role allowed to call {path} (needs one of: {})",
                    caller.name,
                    names.join(", ")
                )))
            }
        }
    }
}

fn anonymous() -> Caller {
    Caller {
        name: "anonymous".into(),
        roles: BTreeSet::new(),
    }
}

fn bearer_token(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or("malformed authorization header: expected Bearer <token>")
}

/// The names a verified client certificate carries: its subject CN and DNS SANs.
fn peer_names<B>(request: &http::Request<B>) -> Vec<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let Some(certs) = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
    else {
        return Vec::new();
    };
    let Some(Ok((_, cert))) = certs
        .first()
        .map(|der| x509_parser::parse_x509_certificate(der.as_ref()))
    else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}

/// Watches a callers file and swaps the callers when its content changes. A file that
/// fails to parse is reported and the running callers stay.
pub async fn reload_callers(path: PathBuf, auth: Authenticator, every: std::time::Duration) {
    let mut last = std::fs::read(&path).ok().map(|b| Sha256::digest(&b));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let digest = Some(Sha256::digest(&bytes));
        if digest == last {
            continue;
        }
        last = digest;
        match std::str::from_utf8(&bytes)
            .map_err(|_| CallersError::Syntax("not UTF-8".into()))
            .and_then(Callers::parse)
        {
            Ok(callers) => {
                tracing::info!(callers = callers.len(), "callers file reloaded");
                auth.replace(callers);
            }
            Err(err) => {
                tracing::error!(cause = %err, "callers file rejected; the previous callers stay")
            }
        }
    }
}

/// The tower layer that authenticates and authorizes every request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Authenticator,
    metrics: Arc<Metrics>,
}

impl AuthLayer {
    /// A layer enforcing `auth`, counting refusals in `metrics`.
    pub fn new(auth: Authenticator, metrics: Arc<Metrics>) -> Self {
        Self { auth, metrics }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peers = peer_names(&request);
        match self
            .auth
            .authorize(request.uri().path(), request.headers(), &peers)
        {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                let code = match status.code() {
                    tonic::Code::Unauthenticated => "unauthenticated",
                    _ => "permission_denied",
                };
                self.metrics
                    .auth_failures
                    .get_or_create(&AuthLabels {
                        // Only served RPCs become labels, so callers cannot grow the set.
                        rpc: match access_for(request.uri().path()) {
                            Some(_) => request.uri().path().to_owned(),
                            None => "(not an RPC)".to_owned(),
                        },
                        code,
                    })
                    .inc();
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_file_is_checked() {
        let (token, digest) = new_token().unwrap();
        let text = format!(
            "[[caller]]\nname = \"crm-sync\"\nroles = [\"writer\"]\ntoken_sha256 = \"{digest}\"\n"
        );
        let callers = Callers::parse(&text).unwrap();
        assert_eq!(
            callers.by_token(&token, Utc::now()).unwrap().name,
            "crm-sync"
        );
        assert!(callers.by_token("clt_wrong", Utc::now()).is_err());

        let expired = format!("{text}expires_at = \"2020-01-01T00:00:00Z\"\n");
        let callers = Callers::parse(&expired).unwrap();
        assert_eq!(
            callers.by_token(&token, Utc::now()).unwrap_err(),
            "the bearer token has expired"
        );

        for (bad, needle) in [
            (
                "[[caller]]\nname = \"a\"\nroles = [\"root\"]\ntoken_sha256 = \"00\"\n",
                "unknown variant",
            ),
            (
                "[[caller]]\nname = \"a\"\nroles = []\ntoken_sha256 = \"00\"\n",
                "at least one role",
            ),
            (
                "[[caller]]\nname = \"a\"\nroles = [\"dpo\"]\ntoken_sha256 = \"00\"\n",
                "64 hex",
            ),
            (
                "[[caller]]\nname = \"a\"\nroles = [\"dpo\"]\ntoken = \"plain\"\n",
                "unknown field",
            ),
            (
                "[[caller]]\nname = \"a\"\nroles = [\"dpo\"]\n",
                "token_sha256, a certificate_name",
            ),
            ("[[caller]\n", "line 1"),
        ] {
            let err = Callers::parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn unknown_rpcs_are_denied_even_without_auth() {
        let err = Authenticator::Disabled
            .authorize(
                "/consentledger.v1.LedgerService/DropEverything",
                &http::HeaderMap::new(),
                &[],
            )
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
}
