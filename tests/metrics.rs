//! The Prometheus endpoint over a real socket: what the writer, the services and the auth
//! layer count, and the gauges read from the ledger at each scrape.

#![allow(clippy::unwrap_used)]

mod common;

use common::{append, consent_granted, free_port, http_get, registered, TestServer};
use consent_ledger::config::ServeConfig;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;

#[tokio::test]
async fn metrics_count_appends_decisions_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = TestServer::start_config(ServeConfig {
        data_dir: dir.path().to_path_buf(),
        metrics_listen: Some(([127, 0, 0, 1], port).into()),
        ..ServeConfig::default()
    })
    .await;
    let channel = server.channel().await;
    let mut ledger = server.client().await;
    append(&mut ledger, registered("crm-m1", "FR")).await;
    append(&mut ledger, consent_granted("crm-m1", "email_marketing")).await;
    ledger
        .append_batch(pb::AppendBatchRequest {
            events: vec![registered("crm-m2", "US"), registered("crm-m3", "US")],
        })
        .await
        .unwrap();
    let mut eligibility = EligibilityServiceClient::new(channel.clone());
    for contact in ["crm-m1", "crm-m2"] {
        eligibility
            .check(pb::CheckRequest {
                contact_id: contact.into(),
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut rights = RightsServiceClient::new(channel);
    rights
        .open_request(pb::OpenRequestRequest {
            contact_id: "crm-m1".into(),
            kind: pb::RequestKind::Access as i32,
            regime: pb::RequestRegime::Gdpr as i32,
            received_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600, // 2026-01-01: long overdue
                nanos: 0,
            }),
            channel: "email".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let response = http_get(port, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("application/openmetrics-text"));
    for expected in [
        "consent_ledger_appends_total{kind=\"contact_registered\"} 3",
        "consent_ledger_appends_total{kind=\"consent_granted\"} 1",
        "consent_ledger_appends_total{kind=\"request_opened\"} 1",
        "consent_ledger_append_batch_events_count 1",
        "consent_ledger_append_batch_events_sum 2.0",
        "consent_ledger_decisions_total{outcome=\"allowed\",rule=\"consent.granted\"} 1",
        "consent_ledger_decisions_total{outcome=\"denied\",rule=\"opt_out.no_basis\"} 1",
        // Policy activation, two unary appends, one batch and the request.
        "consent_ledger_tree_size 6",
        "consent_ledger_open_requests{kind=\"access\",regime=\"gdpr\"} 1",
        "consent_ledger_overdue_requests{kind=\"access\",regime=\"gdpr\"} 1",
    ] {
        assert!(
            response.contains(expected),
            "missing {expected:?} in\n{response}"
        );
    }
    assert!(response.contains("consent_ledger_commit_seconds_bucket"));
    assert!(response.contains("consent_ledger_checkpoint_age_seconds"));
    // Nothing personal: no email address, no contact id.
    assert!(!response.contains("example.test") && !response.contains("crm-m1"));
    assert!(http_get(port, "/other").await.starts_with("HTTP/1.1 404"));
    drop((ledger, eligibility, rights));
    server.stop().await;
}
