//! Client-side commands: talk to a running server over gRPC, reading and printing messages
//! in the protobuf JSON mapping (the same JSON `grpcurl` uses).

pub mod audit;
pub mod backup;
pub mod bench;
pub mod eligibility;
pub mod import;
pub mod rights;

use anyhow::{bail, Context};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use std::path::PathBuf;
use std::sync::OnceLock;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::audit_service_client::AuditServiceClient;
use crate::proto::v1::eligibility_service_client::EligibilityServiceClient;
use crate::proto::v1::ledger_service_client::LedgerServiceClient;
use crate::proto::v1::rights_service_client::RightsServiceClient;
use crate::proto::FILE_DESCRIPTOR_SET;

/// A ledger client that sends the caller's bearer token with every request.
pub type Client = LedgerServiceClient<InterceptedService<Channel, BearerToken>>;
/// An admin client that sends the caller's bearer token with every request.
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, BearerToken>>;
/// An audit client that sends the caller's bearer token with every request.
pub type AuditClient = AuditServiceClient<InterceptedService<Channel, BearerToken>>;
/// An eligibility client that sends the caller's bearer token with every request.
pub type EligibilityClient = EligibilityServiceClient<InterceptedService<Channel, BearerToken>>;
/// A rights client that sends the caller's bearer token with every request.
pub type RightsClient = RightsServiceClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every request, when a token is given.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// A token to send; `None` sends no credentials.
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .context("the token must be printable ASCII")
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where a client connects and how it proves who it is.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub url: String,
    /// Bearer token.
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub key: Option<PathBuf>,
}

impl Connection {
    /// A plaintext connection without credentials.
    pub fn plain(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    /// Opens one HTTP/2 connection.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let url = &self.url;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("{url} is not a valid server URL"))?;
        if url.starts_with("https://") || self.ca.is_some() || self.cert.is_some() {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                (None, None) => {}
                _ => anyhow::bail!("--cert and --key go together"),
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))
    }

    /// A ledger client over a new connection.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(LedgerServiceClient::with_interceptor(
            self.channel().await?,
            BearerToken::new(self.token.as_deref())?,
        ))
    }

    /// An admin client over a new connection.
    pub async fn admin_client(&self) -> anyhow::Result<AdminClient> {
        Ok(AdminServiceClient::with_interceptor(
            self.channel().await?,
            BearerToken::new(self.token.as_deref())?,
        ))
    }

    /// An audit client over a new connection.
    pub async fn audit_client(&self) -> anyhow::Result<AuditClient> {
        Ok(AuditServiceClient::with_interceptor(
            self.channel().await?,
            BearerToken::new(self.token.as_deref())?,
        ))
    }

    /// An eligibility client over a new connection.
    pub async fn eligibility_client(&self) -> anyhow::Result<EligibilityClient> {
        Ok(EligibilityServiceClient::with_interceptor(
            self.channel().await?,
            BearerToken::new(self.token.as_deref())?,
        ))
    }

    /// A rights client over a new connection. Exports can be large: no decoding limit
    /// beyond one part.
    pub async fn rights_client(&self) -> anyhow::Result<RightsClient> {
        Ok(RightsServiceClient::with_interceptor(
            self.channel().await?,
            BearerToken::new(self.token.as_deref())?,
        )
        .max_decoding_message_size(64 << 20))
    }
}

fn descriptor(name: &str) -> anyhow::Result<MessageDescriptor> {
    // Decoded once: a bulk import or a fuzz run converts millions of messages.
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("bad embedded descriptor set: {e}"))?;
    pool.get_message_by_name(name)
        .with_context(|| format!("no message {name} in the descriptor set"))
}

/// Parses a message of type `T` (named `name` in the proto package) from its JSON form.
pub fn from_json<T: Message + Default>(name: &str, json: &str) -> anyhow::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor(name)?, &mut deserializer)
        .with_context(|| format!("not a valid {name} in JSON"))?;
    deserializer
        .end()
        .with_context(|| format!("trailing characters after the {name}"))?;
    Ok(T::decode(dynamic.encode_to_vec().as_slice())?)
}

/// Renders a message of type `T` (named `name`) as pretty JSON.
pub fn to_json<T: Message>(name: &str, message: &T) -> anyhow::Result<String> {
    let dynamic = DynamicMessage::decode(descriptor(name)?, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

/// Writes a message as JSON with every field, defaults included, so that an answer such
/// as `"allowed": false` is printed rather than left out as the protobuf mapping does.
pub fn write_json_with_defaults<T: Message>(
    out: &mut impl std::io::Write,
    name: &str,
    message: &T,
    pretty: bool,
) -> anyhow::Result<()> {
    let dynamic = DynamicMessage::decode(descriptor(name)?, message.encode_to_vec().as_slice())?;
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
    if pretty {
        let mut serializer = serde_json::Serializer::pretty(out);
        dynamic.serialize_with_options(&mut serializer, &options)?;
    } else {
        let mut serializer = serde_json::Serializer::new(out);
        dynamic.serialize_with_options(&mut serializer, &options)?;
    }
    Ok(())
}

/// Reads events for `append`: one JSON object per line, or a single JSON object.
pub fn parse_events(text: &str) -> anyhow::Result<Vec<pb::Event>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("no event given");
    }
    // One object, possibly spread over several lines; otherwise one object per line.
    let whole = from_json("consentledger.v1.Event", trimmed);
    if whole.is_ok() || !trimmed.contains('\n') {
        return Ok(vec![whole?]);
    }
    trimmed
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            from_json("consentledger.v1.Event", line).with_context(|| format!("line {}", n + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mapping_round_trips() {
        let event: pb::Event = from_json(
            "consentledger.v1.Event",
            r#"{"contactId":"crm-1","occurredAt":"2026-01-02T03:04:05Z","consentGranted":{"purpose":"email_marketing","channel":"email","method":"CONSENT_METHOD_CHECKBOX","notice":{"id":"n","version":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(event.contact_id, "crm-1");
        assert!(matches!(
            event.kind,
            Some(pb::event::Kind::ConsentGranted(_))
        ));
        let json = to_json("consentledger.v1.Event", &event).unwrap();
        assert!(json.contains("CONSENT_METHOD_CHECKBOX"), "{json}");
        assert!(
            parse_events("{\"contactId\": \"a\"}\n{\"contactId\": \"b\"}\n")
                .unwrap()
                .len()
                == 2
        );
        assert!(from_json::<pb::Event>("consentledger.v1.Event", r#"{"nope":1}"#).is_err());
        // One object written over several lines, as a shell quote allows.
        let spread = parse_events("{\"contactId\": \"a\",\n  \"contactRegistered\": {}}").unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].contact_id, "a");
    }
}
