//! Authentication and roles over a real socket: every RPC in the role table against every
//! role, missing, wrong, expired and revoked tokens, and the recorded actor.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use consent_ledger::config::ServeConfig;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use consent_ledger::service::auth::{new_token, Access, Role, RPC_ACCESS};
use prost_reflect::DescriptorPool;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;

/// Every method of every service the server registers.
fn served_methods() -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for set in [
        consent_ledger::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let pool = DescriptorPool::decode(set).unwrap();
        for service in pool.services() {
            for method in service.methods() {
                methods.insert(format!("/{}/{}", service.full_name(), method.name()));
            }
        }
    }
    methods
}

#[test]
fn the_role_table_lists_every_served_rpc_and_nothing_else() {
    let table: BTreeSet<String> = RPC_ACCESS
        .iter()
        .map(|(rpc, _)| (*rpc).to_owned())
        .collect();
    assert_eq!(table, served_methods());
}

struct Tokens {
    by_role: Vec<(Role, String)>,
    expired: String,
    revocable: String,
}

/// Writes a callers file with one caller per role (named after it), an expired caller
/// and a revocable one; `include_revocable` false leaves the latter out.
fn write_callers(path: &Path, tokens: Option<&Tokens>, include_revocable: bool) -> Tokens {
    let fresh = || new_token().unwrap();
    let mut text = String::new();
    let mut by_role = Vec::new();
    let mut entry = |name: &str, roles: &str, token: Option<&str>, extra: &str| {
        let (token, digest) = match token {
            Some(token) => {
                use sha2::Digest;
                (
                    token.to_owned(),
                    hex::encode(sha2::Sha256::digest(token.as_bytes())),
                )
            }
            None => fresh(),
        };
        text.push_str(&format!(
            "[[caller]]\nname = \"{name}\"\nroles = [{roles}]\ntoken_sha256 = \"{digest}\"\n{extra}\n"
        ));
        token
    };
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let known = tokens.map(|t| t.by_role[i].1.as_str());
        let token = entry(&format!("svc-{role}"), &format!("\"{role}\""), known, "");
        by_role.push((role, token));
    }
    let expired = entry(
        "svc-expired",
        "\"writer\"",
        tokens.map(|t| t.expired.as_str()),
        "expires_at = \"2020-01-01T00:00:00Z\"",
    );
    let revocable = match (include_revocable, tokens) {
        (true, known) => entry(
            "svc-revocable",
            "\"auditor\"",
            known.map(|t| t.revocable.as_str()),
            "",
        ),
        (false, Some(t)) => t.revocable.clone(),
        (false, None) => fresh().0,
    };
    std::fs::write(path, text).unwrap();
    Tokens {
        by_role,
        expired,
        revocable,
    }
}

async fn start(dir: &Path) -> (TestServer, Tokens) {
    let callers = dir.join("callers.toml");
    let tokens = write_callers(&callers, None, true);
    let server = TestServer::start_config(ServeConfig {
        data_dir: dir.join("data"),
        callers_file: Some(callers),
        callers_reload_interval: Duration::from_millis(50),
        ..ServeConfig::default()
    })
    .await;
    (server, tokens)
}

/// Calls `path` with an empty message (as a stream, which fits every method type) and
/// returns the status code auth produced, or `Ok` if the call got past auth.
async fn call_raw(channel: &Channel, path: &'static str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter([()]));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = consent_ledger::proto::codec::Codec::<(), ()>::default();
    let response = grpc
        .streaming(request, PathAndQuery::from_static(path), codec)
        .await;
    match response {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
    }
}

#[tokio::test]
async fn every_rpc_allows_exactly_the_roles_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tokens) = start(dir.path()).await;
    let channel = server.channel().await;
    for (path, access) in RPC_ACCESS {
        for (role, token) in &tokens.by_role {
            let allowed = match access {
                Access::Public | Access::Authenticated => true,
                Access::Roles(roles) => roles.contains(role),
            };
            let code = call_raw(&channel, path, Some(token)).await;
            if allowed {
                assert!(
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    "{path} as {role}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} as {role}");
            }
        }
        let anonymous = call_raw(&channel, path, None).await;
        let wrong = call_raw(&channel, path, Some("clt_not-a-real-token")).await;
        let expired = call_raw(&channel, path, Some(&tokens.expired)).await;
        if *access == Access::Public {
            assert!(
                !matches!(anonymous, Code::Unauthenticated | Code::PermissionDenied),
                "{path}"
            );
        } else {
            assert_eq!(anonymous, Code::Unauthenticated, "{path} without a token");
            assert_eq!(wrong, Code::Unauthenticated, "{path} with a wrong token");
            assert_eq!(
                expired,
                Code::Unauthenticated,
                "{path} with an expired token"
            );
        }
    }
    // An RPC that is not in the table is denied even to an admin.
    let admin = &tokens.by_role[4].1;
    assert_eq!(
        call_raw(
            &channel,
            "/consentledger.v1.LedgerService/Erase",
            Some(admin)
        )
        .await,
        Code::PermissionDenied
    );
    server.stop().await;
}

async fn connect_as(server: &TestServer, token: &str) -> consent_ledger::cli::Client {
    consent_ledger::cli::Connection {
        token: Some(token.to_owned()),
        ..consent_ledger::cli::Connection::plain(&server.url())
    }
    .client()
    .await
    .unwrap()
}

#[tokio::test]
async fn the_actor_is_the_authenticated_caller_and_revoked_tokens_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tokens) = start(dir.path()).await;
    let writer_token = tokens.by_role[0].1.clone();
    let mut writer = connect_as(&server, &writer_token).await;
    // The request carries a different name in every place a client could put one.
    let mut event = registered("crm-auth-1", "SE");
    event.idempotency_key = "svc-admin".into();
    let mut request = tonic::Request::new(pb::AppendRequest { event: Some(event) });
    request
        .metadata_mut()
        .insert("x-actor", "svc-admin".parse().unwrap());
    writer.append(request).await.unwrap();

    let mut auditor = connect_as(&server, &tokens.revocable).await;
    let history = auditor
        .get_history(pb::GetHistoryRequest {
            contact_id: "crm-auth-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries[0].actor, "svc-writer");

    // Revoke: remove the caller from the file; the server reloads it.
    write_callers(&dir.path().join("callers.toml"), Some(&tokens), false);
    let mut revoked = false;
    for _ in 0..200 {
        let result = auditor.get_tree_head(pb::GetTreeHeadRequest {}).await;
        if let Err(status) = result {
            assert_eq!(status.code(), Code::Unauthenticated);
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(revoked, "the revoked token still works");
    // The others still do.
    writer
        .get_tree_head(pb::GetTreeHeadRequest {})
        .await
        .unwrap();

    // A malformed callers file is rejected and the running callers stay.
    std::fs::write(dir.path().join("callers.toml"), "[[caller]\nname=").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer
        .get_tree_head(pb::GetTreeHeadRequest {})
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn without_a_callers_file_the_local_caller_has_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client: LedgerServiceClient<Channel> = server.client().await;
    append(&mut client, registered("crm-local", "US")).await;
    assert_eq!(
        history(&mut client, "crm-local").await[0].actor,
        "local-unauthenticated"
    );
    server.stop().await;
}

#[tokio::test]
async fn only_a_dpo_may_override_a_suppression() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tokens) = start(dir.path()).await;
    let token = |role: Role| {
        tokens
            .by_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let mut writer = connect_as(&server, &token(Role::Writer)).await;
    let mut dpo = connect_as(&server, &token(Role::Dpo)).await;
    let mut event = registered("crm-override", "SE");
    if let Some(pb::event::Kind::ContactRegistered(m)) = &mut event.kind {
        m.suppression_override = Some(pb::SuppressionOverride {
            reason: "subscribed again in writing".into(),
        });
    }
    let refused = writer
        .append(pb::AppendRequest {
            event: Some(event.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().starts_with("suppression_override:"));
    let batch = writer
        .append_batch(pb::AppendBatchRequest {
            events: vec![event.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        &batch.results[0].outcome,
        Some(pb::append_result::Outcome::Error(e)) if e.code == Code::PermissionDenied as i32
    ));
    dpo.append(pb::AppendRequest { event: Some(event) })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn refused_calls_are_counted_by_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let callers = dir.path().join("callers.toml");
    write_callers(&callers, None, true);
    let (server, port) = TestServer::start_with_metrics(ServeConfig {
        data_dir: dir.path().join("data"),
        callers_file: Some(callers),
        ..ServeConfig::default()
    })
    .await;
    let channel = server.channel().await;
    let path = "/consentledger.v1.LedgerService/GetTreeHead";
    assert_eq!(call_raw(&channel, path, None).await, Code::Unauthenticated);
    assert_eq!(call_raw(&channel, path, None).await, Code::Unauthenticated);
    let metrics = http_get(port, "/metrics").await;
    let expected =
        format!("consent_ledger_auth_failures_total{{rpc=\"{path}\",code=\"unauthenticated\"}} 2");
    assert!(
        metrics.contains(&expected),
        "missing {expected} in\n{metrics}"
    );
    server.stop().await;
}
