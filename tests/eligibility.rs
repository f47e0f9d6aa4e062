//! Eligibility through the real server: scenarios taken from the domain, each built through
//! the public API and checked for its decision, rule and evidence; decisions for past
//! times; policy activation; and screening of a campaign list.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use chrono::{DateTime, Duration, Months, Utc};
use common::*;
use consent_ledger::config::ServeConfig;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
use consent_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::event::Kind;
use tonic::transport::Channel;
use tonic::Code;

type Eligibility = EligibilityServiceClient<Channel>;

fn pack_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/policy")
        .join(name)
}

fn pack_text(name: &str) -> String {
    std::fs::read_to_string(pack_path(name)).unwrap()
}

async fn eligibility(server: &TestServer) -> Eligibility {
    EligibilityServiceClient::new(server.channel().await)
}

fn ts(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

fn months_ago(months: u32) -> DateTime<Utc> {
    Utc::now().checked_sub_months(Months::new(months)).unwrap()
}

// ---- event builders: each takes the contact id -------------------------------------------

type Step = Box<dyn Fn(&str) -> pb::Event>;

fn contact(country: &'static str, audience: pb::Audience, lifecycle: pb::Lifecycle) -> Step {
    Box::new(move |c| {
        let mut e = registered(c, country);
        if let Some(Kind::ContactRegistered(r)) = &mut e.kind {
            r.relationship = Some(pb::Relationship {
                audience: audience as i32,
                lifecycle: lifecycle as i32,
            });
        }
        e
    })
}

fn b2c(country: &'static str) -> Step {
    contact(country, pb::Audience::B2c, pb::Lifecycle::Prospect)
}

fn b2b(country: &'static str) -> Step {
    contact(country, pb::Audience::B2b, pb::Lifecycle::Prospect)
}

fn with_basis(purpose: &'static str, basis: pb::LegalBasis) -> Step {
    Box::new(move |c| {
        event(
            c,
            Kind::LegalBasisRecorded(pb::LegalBasisRecorded {
                purpose: purpose.into(),
                basis: basis as i32,
                justification: "documented in the record of processing".into(),
            }),
        )
    })
}

fn storage_basis() -> Step {
    with_basis("storage", pb::LegalBasis::LegitimateInterests)
}

fn grant(purpose: &'static str, channel: &'static str, method: pb::ConsentMethod) -> Step {
    Box::new(move |c| {
        let mut e = consent_granted(c, purpose);
        if let Some(Kind::ConsentGranted(g)) = &mut e.kind {
            g.channel = channel.into();
            g.method = method as i32;
        }
        e
    })
}

fn checkbox(purpose: &'static str) -> Step {
    grant(purpose, "email", pb::ConsentMethod::Checkbox)
}

fn withdraw(purpose: &'static str) -> Step {
    Box::new(move |c| consent_withdrawn(c, purpose))
}

fn doi(confirm: bool, token: impl Into<String>) -> Step {
    let token = token.into();
    Box::new(move |c| {
        let (purpose, channel, token_sha256) = (
            "email_marketing".to_owned(),
            "email".to_owned(),
            format!("{token:0>64}"),
        );
        event(
            c,
            if confirm {
                Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
                    purpose,
                    channel,
                    token_sha256,
                    evidence: None,
                })
            } else {
                Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
                    purpose,
                    channel,
                    token_sha256,
                    evidence: None,
                })
            },
        )
    })
}

fn objection(scope: pb::ObjectionScope, purpose: &'static str) -> Step {
    Box::new(move |c| {
        event(
            c,
            Kind::ObjectionRecorded(pb::ObjectionRecorded {
                scope: scope as i32,
                purpose: purpose.into(),
            }),
        )
    })
}

fn restrict() -> Step {
    Box::new(|c| {
        event(
            c,
            Kind::RestrictionApplied(pb::RestrictionApplied {
                ground: pb::RestrictionGround::AccuracyContested as i32,
                reference: "DSR-2026-118".into(),
            }),
        )
    })
}

fn lift(restriction_contact_seq: u64) -> Step {
    Box::new(move |c| {
        event(
            c,
            Kind::RestrictionLifted(pb::RestrictionLifted {
                restriction_contact_seq,
                reason: "accuracy verified, subject informed".into(),
            }),
        )
    })
}

fn profile(country: &'static str, relationship: Option<(pb::Audience, pb::Lifecycle)>) -> Step {
    Box::new(move |c| {
        event(
            c,
            Kind::ProfileUpdated(pb::ProfileUpdated {
                country: country.into(),
                region: String::new(),
                relationship: relationship.map(|(a, l)| pb::Relationship {
                    audience: a as i32,
                    lifecycle: l as i32,
                }),
                personal: None,
                suppression_override: None,
            }),
        )
    })
}

fn moved_to(country: &'static str) -> Step {
    profile(country, None)
}

fn became_customer(audience: pb::Audience) -> Step {
    profile("", Some((audience, pb::Lifecycle::Customer)))
}

/// The step, happening at `at` rather than when it is recorded.
fn at(time: DateTime<Utc>, step: Step) -> Step {
    Box::new(move |c| {
        let mut e = step(c);
        e.occurred_at = Some(ts(time));
        e
    })
}

fn expiring(step: Step, expires_at: DateTime<Utc>) -> Step {
    Box::new(move |c| {
        let mut e = step(c);
        if let Some(Kind::ConsentGranted(g)) = &mut e.kind {
            g.expires_at = Some(ts(expires_at));
        }
        e
    })
}

// ---- scenarios -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profile {
    PerCountry,
    Conservative,
}

struct Scenario {
    name: &'static str,
    profile: Profile,
    history: Vec<Step>,
    purpose: &'static str,
    channel: &'static str,
    allowed: bool,
    rule: &'static str,
    regime: pb::Regime,
    /// (role, contact seq) of entries the decision must cite.
    evidence: Vec<(&'static str, u64)>,
    /// Text one of the warnings must contain.
    warning: Option<&'static str>,
}

fn s(
    name: &'static str,
    history: Vec<Step>,
    purpose: &'static str,
    expect: (bool, &'static str, pb::Regime),
    evidence: Vec<(&'static str, u64)>,
) -> Scenario {
    Scenario {
        name,
        profile: Profile::PerCountry,
        history,
        purpose,
        channel: "email",
        allowed: expect.0,
        rule: expect.1,
        regime: expect.2,
        evidence,
        warning: None,
    }
}

impl Scenario {
    fn conservative(mut self) -> Self {
        self.profile = Profile::Conservative;
        self
    }

    fn on(mut self, channel: &'static str) -> Self {
        self.channel = channel;
        self
    }

    fn warns(mut self, text: &'static str) -> Self {
        self.warning = Some(text);
        self
    }
}

const ALLOWED: bool = true;
const DENIED: bool = false;

fn scenarios() -> Vec<Scenario> {
    use pb::Audience::B2c;
    use pb::ConsentMethod as M;
    use pb::ObjectionScope as O;
    use pb::Regime::{DoubleOptIn, Excluded, OptIn, OptOut, Unspecified as NoRegime};
    vec![
        s("US B2C prospect held on legitimate interests, never opted out, per-country profile → allowed: opt-out country",
          vec![b2c("US"), storage_basis()], "email_marketing",
          (ALLOWED, "opt_out.allowed", OptOut), vec![("country", 1), ("legal_basis", 2)]),
        s("US B2C prospect with no lawful basis recorded → denied: a basis for holding the contact comes first",
          vec![b2c("US")], "email_marketing",
          (DENIED, "opt_out.no_basis", OptOut), vec![("country", 1)])
            .warns("no lawful basis"),
        s("US contact who signed up to the newsletter, no storage basis recorded → allowed: the consent is the basis",
          vec![b2c("US"), checkbox("email_marketing")], "email_marketing",
          (ALLOWED, "consent.granted", OptOut), vec![("consent", 2)])
            .warns("no lawful basis"),
        s("US contact who clicked unsubscribe (no grant ever) → denied: opted out",
          vec![b2c("US"), storage_basis(), withdraw("email_marketing")], "email_marketing",
          (DENIED, "opt_out.opted_out", OptOut), vec![("withdrawal", 3)]),
        s("US contact with no consent, conservative profile → denied: opt-in everywhere, default do not email",
          vec![b2c("US"), storage_basis()], "email_marketing",
          (DENIED, "consent.missing", OptIn), vec![("country", 1)]).conservative(),
        s("US contact with checkbox consent, conservative profile → allowed",
          vec![b2c("US"), storage_basis(), checkbox("email_marketing")], "email_marketing",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 3)]).conservative(),
        s("German B2C contact, single opt-in only, per-country profile → denied: double opt-in required",
          vec![b2c("DE"), storage_basis(), checkbox("email_marketing")], "email_marketing",
          (DENIED, "double_opt_in.unconfirmed", DoubleOptIn), vec![("consent", 3), ("country", 1)]),
        s("German B2C contact, consent confirmed by double opt-in → allowed",
          vec![b2c("DE"), checkbox("email_marketing"), doi(false, "a1"), doi(true, "a1")], "email_marketing",
          (ALLOWED, "double_opt_in.confirmed", DoubleOptIn), vec![("consent", 2), ("double_opt_in_confirmation", 4)]),
        s("German B2C contact who confirmed and later unsubscribed → denied: withdrawn",
          vec![b2c("DE"), checkbox("email_marketing"), doi(false, "a2"), doi(true, "a2"), withdraw("email_marketing")], "email_marketing",
          (DENIED, "consent.withdrawn", DoubleOptIn), vec![("consent", 2), ("withdrawal", 5)]),
        s("German contact re-subscribed after unsubscribing, old confirmation only → denied: the new consent is unconfirmed",
          vec![b2c("DE"), checkbox("email_marketing"), doi(false, "a3"), doi(true, "a3"), withdraw("email_marketing"), checkbox("email_marketing")], "email_marketing",
          (DENIED, "double_opt_in.unconfirmed", DoubleOptIn), vec![("consent", 6)]),
        s("German contact with confirmed double opt-in, conservative profile → denied: double-opt-in countries excluded",
          vec![b2c("DE"), checkbox("email_marketing"), doi(false, "a4"), doi(true, "a4")], "email_marketing",
          (DENIED, "regime.excluded", Excluded), vec![("country", 1)]).conservative(),
        s("German existing customer without marketing consent → allowed: existing-customer exception (UWG §7(3))",
          vec![b2c("DE"), became_customer(B2c)], "email_marketing",
          (ALLOWED, "existing_customer", DoubleOptIn), vec![("relationship", 2)])
            .warns("similar products"),
        s("German existing customer who unsubscribed → denied: the exception ends with the opt-out",
          vec![b2c("DE"), became_customer(B2c), withdraw("email_marketing")], "email_marketing",
          (DENIED, "consent.withdrawn", DoubleOptIn), vec![("withdrawal", 3)]),
        s("Canadian inquiry 7 months ago (CASL implied consent lasts 6 months) → denied: expired",
          vec![b2c("CA"), at(months_ago(7), grant("email_marketing", "email", M::ImpliedByInquiry))], "email_marketing",
          (DENIED, "consent.expired", OptIn), vec![("consent", 2)]),
        s("Canadian inquiry 2 months ago → allowed: implied consent still valid",
          vec![b2c("CA"), at(months_ago(2), grant("email_marketing", "email", M::ImpliedByInquiry))], "email_marketing",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 2)]),
        s("Canadian purchase 25 months ago (implied consent lasts 2 years) → denied: expired",
          vec![b2c("CA"), at(months_ago(25), grant("email_marketing", "email", M::ImpliedByRelationship))], "email_marketing",
          (DENIED, "consent.expired", OptIn), vec![("consent", 2)]),
        s("German contact whose only consent is implied by an inquiry → denied: implied consent not accepted there",
          vec![b2c("DE"), grant("email_marketing", "email", M::ImpliedByInquiry)], "email_marketing",
          (DENIED, "consent.implied_not_accepted", DoubleOptIn), vec![("consent", 2)]),
        s("Consent given with a fixed end date that has passed → denied: expired",
          vec![b2c("US"), storage_basis(), at(days_ago(30), expiring(checkbox("email_tracking"), days_ago(1)))], "email_tracking",
          (DENIED, "consent.expired", NoRegime), vec![("consent", 3)]),
        s("French B2B prospect held on legitimate interests, no consent → allowed: B2B opt-out, with the job-relevance condition",
          vec![b2b("FR"), storage_basis()], "email_marketing",
          (ALLOWED, "opt_out.allowed", OptOut), vec![("legal_basis", 2)])
            .warns("B2B condition in FR"),
        s("French B2C prospect, no consent → denied: consumers need opt-in",
          vec![b2c("FR"), storage_basis()], "email_marketing",
          (DENIED, "consent.missing", OptIn), vec![("country", 1)]),
        s("UK corporate subscriber (B2B) → allowed: corporate subscribers exempt, sole traders are not",
          vec![b2b("GB"), storage_basis()], "email_marketing",
          (ALLOWED, "opt_out.allowed", OptOut), vec![]).warns("B2B condition in GB"),
        s("Objection to direct marketing after a consent → denied, absolutely",
          vec![b2c("US"), storage_basis(), checkbox("email_marketing"), objection(O::DirectMarketing, "")], "email_marketing",
          (DENIED, "objection", NoRegime), vec![("objection", 4)]),
        s("Objection to direct marketing also stops lead scoring on legitimate interests → denied",
          vec![b2c("US"), with_basis("profiling", pb::LegalBasis::LegitimateInterests), objection(O::DirectMarketing, "")], "profiling",
          (DENIED, "objection", NoRegime), vec![("objection", 3)]),
        s("Objection to profiling does not stop a consented newsletter → allowed",
          vec![b2c("IE"), checkbox("email_marketing"), objection(O::Profiling, "")], "email_marketing",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 2)]),
        s("Objection to direct marketing, then a new explicit opt-in → allowed: re-permissioned",
          vec![b2c("NL"), objection(O::DirectMarketing, ""), checkbox("email_marketing")], "email_marketing",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 3)]),
        s("Objection to one purpose (sales outreach) → denied for that purpose",
          vec![b2c("US"), storage_basis(), objection(O::Purpose, "sales_outreach")], "sales_outreach",
          (DENIED, "objection", NoRegime), vec![("objection", 3)]),
        s("Processing restricted while accuracy is contested → denied: only storage allowed",
          vec![b2c("US"), storage_basis(), checkbox("email_marketing"), restrict()], "email_marketing",
          (DENIED, "restriction", NoRegime), vec![("restriction", 4)]),
        s("Restriction lifted → allowed again",
          vec![b2c("IT"), checkbox("email_marketing"), restrict(), lift(3)], "email_marketing",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 2)]),
        s("Restricted contact may still be stored → allowed: storage on a recorded basis",
          vec![b2c("ES"), storage_basis(), restrict()], "storage",
          (ALLOWED, "legal_basis.recorded", NoRegime), vec![("legal_basis", 2)]),
        s("Contact with no lawful basis recorded, storage → denied",
          vec![b2c("ES")], "storage",
          (DENIED, "legal_basis.missing", NoRegime), vec![]),
        s("Storage rests on consent and the consent was withdrawn → denied",
          vec![b2c("SE"), with_basis("storage", pb::LegalBasis::Consent), checkbox("storage"), withdraw("storage")], "storage",
          (DENIED, "consent.withdrawn", NoRegime), vec![("legal_basis", 2), ("withdrawal", 4)]),
        s("Marketing consent does not cover email tracking → denied: tracking needs its own opt-in",
          vec![b2c("IE"), checkbox("email_marketing")], "email_tracking",
          (DENIED, "consent.missing", NoRegime), vec![]),
        s("Explicit opt-in to email tracking → allowed",
          vec![b2c("AT"), checkbox("email_tracking")], "email_tracking",
          (ALLOWED, "consent.granted", NoRegime), vec![("consent", 2)]),
        s("US (opt-out country) contact, email tracking without consent → denied: explicit consent everywhere",
          vec![b2c("US"), storage_basis()], "email_tracking",
          (DENIED, "consent.missing", NoRegime), vec![]),
        s("Tracking consent implied by a purchase → denied: not explicit",
          vec![b2c("CA"), grant("email_tracking", "email", M::ImpliedByRelationship)], "email_tracking",
          (DENIED, "consent.not_explicit", NoRegime), vec![("consent", 2)]),
        s("Lead scoring on a recorded legitimate-interests basis, no objection → allowed",
          vec![b2b("DE"), with_basis("profiling", pb::LegalBasis::LegitimateInterests)], "profiling",
          (ALLOWED, "legitimate_interests", NoRegime), vec![("legal_basis", 2)]),
        s("Lead scoring with only a marketing consent → denied: marketing consent never covers profiling",
          vec![b2c("PL"), checkbox("email_marketing")], "profiling",
          (DENIED, "consent.missing", NoRegime), vec![]),
        s("Contact moved from Michigan to Munich, single opt-in → denied from the move on: double opt-in required",
          vec![b2c("US"), storage_basis(), checkbox("email_marketing"), moved_to("DE")], "email_marketing",
          (DENIED, "double_opt_in.unconfirmed", DoubleOptIn), vec![("country", 4), ("consent", 3)]),
        s("Contact in a country the policy does not list (New Zealand) → denied: unknown country",
          vec![b2c("NZ"), storage_basis(), checkbox("email_marketing")], "email_marketing",
          (DENIED, "country.unknown", NoRegime), vec![("country", 1)]),
        s("Email consent does not cover SMS → denied",
          vec![b2c("US"), storage_basis(), checkbox("sms_marketing")], "sms_marketing",
          (DENIED, "consent.missing", NoRegime), vec![]).on("sms"),
        s("Consent collected last week on paper, recorded after yesterday's unsubscribe → denied: the withdrawal happened later",
          vec![b2c("DK"), at(days_ago(1), withdraw("email_marketing")), at(days_ago(7), checkbox("email_marketing"))], "email_marketing",
          (DENIED, "consent.withdrawn", OptIn), vec![("consent", 3), ("withdrawal", 2)]),
        s("Withdrawn from the newsletter, still consents to sales outreach → sales outreach allowed: consent is per purpose",
          vec![b2c("BE"), checkbox("email_marketing"), checkbox("sales_outreach"), withdraw("email_marketing")], "sales_outreach",
          (ALLOWED, "consent.granted", OptIn), vec![("consent", 3)]),
        s("B2B contact in Greece with confirmed double opt-in → allowed (B2B is double opt-in there too)",
          vec![b2b("GR"), checkbox("email_marketing"), doi(false, "b1"), doi(true, "b1")], "email_marketing",
          (ALLOWED, "double_opt_in.confirmed", DoubleOptIn), vec![("double_opt_in_confirmation", 4)]),
    ]
}

async fn run_scenario(
    ledger: &mut LedgerServiceClient<Channel>,
    eligibility: &mut Eligibility,
    scenario: &Scenario,
    index: usize,
) {
    let id = format!("scenario-{index}");
    let mut receipts = Vec::new();
    for step in &scenario.history {
        let result = ledger
            .append(pb::AppendRequest {
                event: Some(step(&id)),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: append: {e}", scenario.name));
        receipts.push(result.into_inner().receipt.unwrap());
    }
    let decision = eligibility
        .check(pb::CheckRequest {
            contact_id: id.clone(),
            purpose: scenario.purpose.into(),
            channel: scenario.channel.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}: check: {e}", scenario.name))
        .into_inner();
    let context = format!("{}\n{decision:#?}", scenario.name);
    assert_eq!(decision.allowed, scenario.allowed, "{context}");
    assert_eq!(decision.rule_id, scenario.rule, "{context}");
    assert_eq!(decision.regime, scenario.regime as i32, "{context}");
    assert!(!decision.reasons.is_empty(), "{context}");
    for (role, contact_seq) in &scenario.evidence {
        let receipt = &receipts[*contact_seq as usize - 1];
        assert!(
            decision.evidence.iter().any(|e| e.role == *role
                && e.contact_seq == *contact_seq
                && e.seq == receipt.seq
                && e.entry_hash == receipt.entry_hash),
            "{context}\nmissing evidence {role} at contact seq {contact_seq}"
        );
    }
    if let Some(text) = scenario.warning {
        assert!(
            decision.warnings.iter().any(|w| w.contains(text)),
            "{context}\nno warning mentions {text:?}"
        );
    }
    let head = tree_head(ledger).await.0;
    assert!(decision.tree_size >= receipts.last().unwrap().seq && decision.tree_size <= head);
}

#[tokio::test]
async fn scenarios_from_the_domain_decide_with_the_right_rule_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let per_country = TestServer::start(&dir.path().join("per-country")).await;
    let conservative = TestServer::start_config(ServeConfig {
        data_dir: dir.path().join("conservative"),
        policy_file: Some(pack_path("conservative.toml")),
        ..ServeConfig::default()
    })
    .await;
    let all = scenarios();
    assert!(all.len() >= 30);
    for (index, scenario) in all.iter().enumerate() {
        let server = match scenario.profile {
            Profile::PerCountry => &per_country,
            Profile::Conservative => &conservative,
        };
        let (mut ledger, mut check) = (server.client().await, eligibility(server).await);
        run_scenario(&mut ledger, &mut check, scenario, index).await;
    }
    per_country.stop().await;
    conservative.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    append(&mut ledger, registered("crm-1", "US")).await;
    let mut check = eligibility(&server).await;
    let ask = |contact: &str, purpose: &str, channel: &str| pb::CheckRequest {
        contact_id: contact.into(),
        purpose: purpose.into(),
        channel: channel.into(),
        ..Default::default()
    };
    let cases = [
        (
            ask("crm-1", "spam", "email"),
            Code::InvalidArgument,
            "purpose",
        ),
        (
            ask("crm-1", "email_marketing", "pigeon"),
            Code::InvalidArgument,
            "channel",
        ),
        (
            ask("crm-1", "email_marketing", "phone"),
            Code::InvalidArgument,
            "channel",
        ),
        (
            ask("crm-404", "email_marketing", "email"),
            Code::NotFound,
            "contact_id",
        ),
        (
            ask("~policy", "email_marketing", "email"),
            Code::InvalidArgument,
            "contact_id",
        ),
        (
            ask("jane@example.com", "email_marketing", "email"),
            Code::InvalidArgument,
            "contact_id",
        ),
    ];
    for (request, code, field) in cases {
        let status = check.check(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{request:?}: {}",
            status.message()
        );
    }
    let mut request = ask("crm-1", "email_marketing", "email");
    request.time_basis = 7;
    let status = check.check(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("time_basis"),
        "{}",
        status.message()
    );
    // A basis without a time is a mistake, not something to ignore.
    request.time_basis = pb::TimeBasis::Recorded as i32;
    let status = check.check(request).await.unwrap_err();
    assert!(
        status.message().starts_with("time_basis"),
        "{}",
        status.message()
    );
    // A contact that never existed is NOT_FOUND for a past time too.
    let mut request = ask("crm-404", "email_marketing", "email");
    request.at = Some(ts(days_ago(1)));
    let status = check.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // No policy was in force before the ledger's first activation.
    let status = check
        .get_policy(pb::GetPolicyRequest {
            version: String::new(),
            at: Some(ts(days_ago(1))),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().starts_with("at:"), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn decisions_for_a_past_time_use_what_had_happened_or_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    let check = eligibility(&server).await;
    let c = "past-1";
    // Registered and held since 20 days ago; consent collected 10 days ago on paper, but
    // recorded only now; withdrawn 2 days ago, recorded after that.
    for step in [
        at(days_ago(20), b2c("IE")),
        at(days_ago(10), checkbox("email_marketing")),
    ] {
        append(&mut ledger, step(c)).await;
    }
    let granted = tree_head(&mut ledger).await;
    let recorded_grant = history(&mut ledger, c).await[1].recorded_at.unwrap();
    let withdrawn = append(&mut ledger, at(days_ago(2), withdraw("email_marketing"))(c)).await;

    let ask = |time: Option<DateTime<Utc>>, basis: pb::TimeBasis| pb::CheckRequest {
        contact_id: c.into(),
        purpose: "email_marketing".into(),
        channel: "email".into(),
        at: time.map(ts),
        time_basis: basis as i32,
    };
    let decide = |request| {
        let mut check = check.clone();
        async move { check.check(request).await.unwrap().into_inner() }
    };

    // Now: withdrawn.
    let now = decide(ask(None, pb::TimeBasis::Unspecified)).await;
    assert_eq!(
        (now.allowed, now.rule_id.as_str()),
        (false, "consent.withdrawn")
    );
    // Was it lawful 5 days ago? Yes: the consent had been given, the withdrawal not yet.
    let five = decide(ask(Some(days_ago(5)), pb::TimeBasis::Effective)).await;
    assert_eq!(
        (five.allowed, five.rule_id.as_str()),
        (true, "consent.granted"),
        "{five:?}"
    );
    assert_eq!(five.time_basis, pb::TimeBasis::Effective as i32);
    // 15 days ago: registered, no consent yet.
    let fifteen = decide(ask(Some(days_ago(15)), pb::TimeBasis::Effective)).await;
    assert_eq!(fifteen.rule_id, "consent.missing");
    // 25 days ago: not yet a contact. A decision, not an error.
    let before = decide(ask(Some(days_ago(25)), pb::TimeBasis::Effective)).await;
    assert_eq!(
        (before.allowed, before.rule_id.as_str()),
        (false, "contact.unknown")
    );

    // What would we have answered 5 days ago? Nothing of this was recorded then.
    let then = decide(ask(Some(days_ago(5)), pb::TimeBasis::Recorded)).await;
    assert_eq!(then.rule_id, "contact.unknown");
    // ...and just after the grant was recorded, before the withdrawal was: allowed.
    let recorded_at =
        DateTime::from_timestamp(recorded_grant.seconds, recorded_grant.nanos as u32).unwrap();
    let just_after = decide(ask(Some(recorded_at), pb::TimeBasis::Recorded)).await;
    assert_eq!(just_after.rule_id, "consent.granted", "{just_after:?}");
    assert!(just_after.evidence.iter().all(|e| e.seq <= granted.0));
    assert!(withdrawn.seq > granted.0);
    server.stop().await;
}

#[tokio::test]
async fn policy_changes_are_recorded_and_past_decisions_keep_their_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        data_dir: dir.path().to_path_buf(),
        ..ServeConfig::default()
    };
    let server = TestServer::start_config(config.clone()).await;
    let mut ledger = server.client().await;
    let mut check = eligibility(&server).await;
    let default = check
        .get_policy(pb::GetPolicyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.version, "per-country-2026.11");
    assert_eq!(default.text, pack_text("per-country.toml"));
    assert_eq!(default.activated_seq, 1);
    assert!(default.active);

    let us = "policy-us";
    append(&mut ledger, b2c("US")(us)).await;
    append(&mut ledger, storage_basis()(us)).await;
    let ask = |time: Option<DateTime<Utc>>| pb::CheckRequest {
        contact_id: us.into(),
        purpose: "email_marketing".into(),
        channel: "email".into(),
        at: time.map(ts),
        time_basis: time.map_or(0, |_| pb::TimeBasis::Recorded as i32),
    };
    let before = check.check(ask(None)).await.unwrap().into_inner();
    assert_eq!(
        (before.allowed, before.policy_version.as_str()),
        (true, "per-country-2026.11")
    );
    let before_time = Utc::now();

    // A malformed pack is refused with its line; the running policy stays.
    let broken = pack_text("conservative.toml").replacen("b2c = \"opt_in\"", "b2c = \"opt-in\"", 1);
    let status = check
        .activate_policy(pb::ActivatePolicyRequest {
            text: broken.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let line = broken[..broken.find("\"opt-in\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert!(
        status.message().contains(&format!("line {line}:")),
        "{}",
        status.message()
    );
    let still = check
        .get_policy(pb::GetPolicyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.version, "per-country-2026.11");

    // The conservative pack takes over, recorded on the ~policy chain.
    let conservative = check
        .activate_policy(pb::ActivatePolicyRequest {
            text: pack_text("conservative.toml"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(conservative.version, "conservative-2026.11");
    let chain = history(&mut ledger, "~policy").await;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].seq, conservative.activated_seq);
    match chain[1].event.as_ref().unwrap().kind.as_ref().unwrap() {
        Kind::PolicyActivated(p) => {
            assert_eq!(p.version, "conservative-2026.11");
            assert_eq!(p.text_sha256, hex::encode(&conservative.sha256));
        }
        other => panic!("{other:?}"),
    }
    let after = check.check(ask(None)).await.unwrap().into_inner();
    assert_eq!(
        (after.allowed, after.rule_id.as_str()),
        (false, "consent.missing")
    );
    assert_eq!(after.policy_version, "conservative-2026.11");
    // The same question about the time before the change is answered under the old pack.
    let replay = check
        .check(ask(Some(before_time)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (replay.allowed, replay.policy_version.as_str()),
        (true, "per-country-2026.11")
    );
    assert_eq!(replay.policy_sha256, default.sha256);
    // Activating the active pack again records nothing.
    check
        .activate_policy(pb::ActivatePolicyRequest {
            text: pack_text("conservative.toml"),
        })
        .await
        .unwrap();
    assert_eq!(history(&mut ledger, "~policy").await.len(), 2);
    // Clients cannot write to the ledger's own chain.
    let mut forged = storage_basis()("~policy");
    forged.contact_id = "~policy".into();
    let status = ledger
        .append(pb::AppendRequest {
            event: Some(forged),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;

    // A restart without --policy keeps the active pack; with one, activates it.
    let server = TestServer::start_config(config.clone()).await;
    let mut check = eligibility(&server).await;
    let listed = check
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(listed.len(), 2);
    assert!(listed[1].active && !listed[0].active);
    assert!(listed.iter().all(|p| p.text.is_empty()));
    let by_version = check
        .get_policy(pb::GetPolicyRequest {
            version: "per-country-2026.11".into(),
            at: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_version.text, pack_text("per-country.toml"));
    assert!(!by_version.active);
    server.stop().await;
    let server = TestServer::start_config(ServeConfig {
        policy_file: Some(pack_path("per-country.toml")),
        ..config
    })
    .await;
    let mut check = eligibility(&server).await;
    let listed = check
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].version, "per-country-2026.11");
    // Every activation is part of the verified ledger.
    let result = common::verify_ledger(server.channel().await, "").await;
    assert!(result.ok, "{result:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_policy_file_stops_the_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = pack_text("per-country.toml").replacen("code = \"US\"", "code = \"USA\"", 1);
    let line = broken[..broken.find("code = \"USA\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, &broken).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServeConfig {
        data_dir: dir.path().join("data"),
        policy_file: Some(path.clone()),
        ..ServeConfig::default()
    };
    let err = consent_ledger::server::run(listener, config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(&format!("line {line}:")), "{err}");
    assert!(err.contains("USA"), "{err}");
}

#[tokio::test]
async fn a_campaign_list_is_screened_in_order_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    for (c, steps) in [
        ("list-us", vec![b2c("US"), storage_basis()]),
        ("list-de", vec![b2c("DE"), checkbox("email_marketing")]),
        ("list-ie", vec![b2c("IE"), checkbox("email_marketing")]),
    ] {
        for step in steps {
            append(&mut ledger, step(c)).await;
        }
    }
    let mut ids: Vec<String> = Vec::new();
    for n in 0..20_000 {
        ids.push(match n % 5 {
            0 => "list-us".into(),
            1 => "list-de".into(),
            2 => "list-ie".into(),
            3 => format!("nobody-{n}"),
            _ => "has space".into(),
        });
    }
    let mut messages = vec![pb::ScreenRequest {
        target: Some(pb::ScreenTarget {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            ..Default::default()
        }),
        contact_ids: Vec::new(),
    }];
    for chunk in ids.chunks(777) {
        messages.push(pb::ScreenRequest {
            target: None,
            contact_ids: chunk.to_vec(),
        });
    }
    let mut stream = eligibility(&server)
        .await
        .screen(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut decisions = Vec::new();
    let mut summary = None;
    while let Some(response) = stream.message().await.unwrap() {
        match response.kind.unwrap() {
            pb::screen_response::Kind::Decisions(d) => {
                // What a batch's decisions share is sent once, in its frame.
                let frame = d.frame.expect("a batch carries its frame");
                assert_eq!(
                    (frame.purpose.as_str(), frame.channel.as_str()),
                    ("email_marketing", "email")
                );
                assert_eq!(frame.policy_version, "per-country-2026.11");
                assert_eq!(frame.policy_sha256.len(), 32);
                assert!(frame.tree_size > 0 && frame.decided_for.is_some());
                for mut decision in d.decisions {
                    assert!(decision.purpose.is_empty() && decision.policy_sha256.is_empty());
                    frame.fill(&mut decision);
                    decisions.push(decision);
                }
            }
            pb::screen_response::Kind::Summary(s) => summary = Some(s),
        }
    }
    assert_eq!(decisions.len(), ids.len());
    // Filled from its frame, a screened decision is the one `Check` gives, but for the
    // moment it was made at.
    for screened in &decisions[..3] {
        let checked = eligibility(&server)
            .await
            .check(pb::CheckRequest {
                contact_id: screened.contact_id.clone(),
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            pb::Decision {
                decided_for: checked.decided_for,
                ..screened.clone()
            },
            checked
        );
    }
    // `consent-ledger screen` writes each decision filled in from its batch's frame.
    let mut client = consent_ledger::cli::Connection::plain(&server.url())
        .eligibility_client()
        .await
        .unwrap();
    let target = consent_ledger::cli::eligibility::Target {
        purpose: "email_marketing".into(),
        channel: "email".into(),
        at: None,
        recorded: false,
        brief: false,
    };
    let mut lines = Vec::new();
    consent_ledger::cli::eligibility::screen(
        &mut client,
        &target,
        Box::new(std::io::Cursor::new("list-ie\nnobody\n")),
        &mut lines,
    )
    .await
    .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, (contact, rule)) in lines.iter().zip([
        ("list-ie", "consent.granted"),
        ("nobody", "contact.unknown"),
    ]) {
        assert_eq!(line["contactId"], contact);
        assert_eq!(line["ruleId"], rule);
        assert_eq!(line["purpose"], "email_marketing");
        assert_eq!(line["channel"], "email");
        assert_eq!(line["policyVersion"], "per-country-2026.11");
        assert!(line["policySha256"].is_string() && line["decidedFor"].is_string());
    }
    for (id, decision) in ids.iter().zip(&decisions) {
        assert_eq!(&decision.contact_id, id);
        let expected = match id.as_str() {
            "list-us" => "opt_out.allowed",
            "list-de" => "double_opt_in.unconfirmed",
            "list-ie" => "consent.granted",
            "has space" => "contact.invalid_id",
            _ => "contact.unknown",
        };
        assert_eq!(decision.rule_id, expected, "{decision:?}");
    }
    let summary = summary.unwrap();
    assert_eq!(summary.contacts, 20_000);
    assert_eq!(summary.allowed, 8_000);
    assert_eq!(summary.denied, 12_000);
    assert_eq!(summary.by_rule["contact.unknown"], 4_000);
    assert_eq!(summary.policy_version, "per-country-2026.11");

    // Brief decisions: outcome and rule only.
    let mut stream = eligibility(&server)
        .await
        .screen(tokio_stream::iter(vec![pb::ScreenRequest {
            target: Some(pb::ScreenTarget {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                brief: true,
                ..Default::default()
            }),
            contact_ids: vec!["list-us".into(), "nobody".into()],
        }]))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::screen_response::Kind::Decisions(brief)) =
        stream.message().await.unwrap().unwrap().kind
    else {
        panic!("decisions come first");
    };
    let brief: Vec<_> = brief
        .decisions
        .iter()
        .map(|d| {
            (
                d.contact_id.as_str(),
                d.allowed,
                d.rule_id.as_str(),
                d.regime,
                d.reasons.len(),
                d.evidence.len(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            (
                "list-us",
                true,
                "opt_out.allowed",
                pb::Regime::OptOut as i32,
                0,
                0
            ),
            ("nobody", false, "contact.unknown", 0, 0, 0),
        ]
    );

    // A target the policy does not decide ends the call at once, naming the field.
    let status = eligibility(&server)
        .await
        .screen(tokio_stream::iter(vec![pb::ScreenRequest {
            target: Some(pb::ScreenTarget {
                purpose: "email_marketing".into(),
                channel: "fax".into(),
                ..Default::default()
            }),
            contact_ids: vec!["list-us".into()],
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("target.channel"),
        "{}",
        status.message()
    );
    server.stop().await;
}

// ---- property: a decision for time T equals today's decision on a ledger holding only
// ---- what had happened by T ---------------------------------------------------------------

mod past_equals_fresh {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "CA", "IE", "GR", "NZ"];
    const PURPOSES: [(&str, &str); 6] = [
        ("email_marketing", "email"),
        ("sales_outreach", "email"),
        ("email_tracking", "email"),
        ("profiling", "email"),
        ("storage", "email"),
        ("sms_marketing", "sms"),
    ];

    /// One random event: what, a parameter, and when it happened (hours after the
    /// registration).
    #[derive(Debug, Clone)]
    struct Op {
        kind: u8,
        param: u8,
        hours: i64,
        confirm_hours: i64,
    }

    #[derive(Debug, Clone)]
    struct Case {
        country: usize,
        b2b: bool,
        customer: bool,
        ops: Vec<Op>,
        t_hours: i64,
    }

    fn case() -> impl Strategy<Value = Case> {
        let op = (0u8..9, any::<u8>(), 0i64..240, 0i64..240).prop_map(
            |(kind, param, hours, confirm_hours)| Op {
                kind,
                param,
                hours,
                confirm_hours,
            },
        );
        (
            0..COUNTRIES.len(),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(op, 0..14),
            -2i64..250,
        )
            .prop_map(|(country, b2b, customer, ops, t_hours)| Case {
                country,
                b2b,
                customer,
                ops,
                t_hours,
            })
    }

    /// The events of a case for contact `c`, in recording order, each with the contact seq
    /// it names in a `restriction_lifted` (0 if none).
    fn events(case: &Case, c: &str, base: DateTime<Utc>) -> Vec<pb::Event> {
        let when = |hours: i64| Some(ts(base + Duration::hours(hours)));
        let mut out = Vec::new();
        let mut first = contact(
            COUNTRIES[case.country],
            if case.b2b {
                pb::Audience::B2b
            } else {
                pb::Audience::B2c
            },
            if case.customer {
                pb::Lifecycle::Customer
            } else {
                pb::Lifecycle::Prospect
            },
        )(c);
        first.occurred_at = when(0);
        out.push(first);
        for (n, op) in case.ops.iter().enumerate() {
            let (purpose, channel) = PURPOSES[op.param as usize % PURPOSES.len()];
            let mut batch = match op.kind {
                0 => {
                    let method = [
                        pb::ConsentMethod::Checkbox,
                        pb::ConsentMethod::ImpliedByInquiry,
                        pb::ConsentMethod::DoubleOptIn,
                    ][op.param as usize / 8 % 3];
                    vec![grant(purpose, channel, method)(c)]
                }
                1 => {
                    let mut e = withdraw(purpose)(c);
                    if let Some(Kind::ConsentWithdrawn(w)) = &mut e.kind {
                        w.channel = channel.into();
                    }
                    vec![e]
                }
                2 => vec![with_basis(
                    purpose,
                    [
                        pb::LegalBasis::LegitimateInterests,
                        pb::LegalBasis::Consent,
                        pb::LegalBasis::Contract,
                    ][op.param as usize / 8 % 3],
                )(c)],
                3 => {
                    let token = format!("{n:x}");
                    let mut confirm = doi(true, token.clone())(c);
                    confirm.occurred_at = when(op.confirm_hours);
                    vec![doi(false, token)(c), confirm]
                }
                4 => vec![match op.param % 3 {
                    0 => objection(pb::ObjectionScope::DirectMarketing, "")(c),
                    1 => objection(pb::ObjectionScope::Profiling, "")(c),
                    _ => objection(pb::ObjectionScope::Purpose, purpose)(c),
                }],
                5 => vec![restrict()(c)],
                6 => vec![lift(u64::from(op.param % 12) + 1)(c)],
                7 => vec![moved_to(COUNTRIES[op.param as usize % COUNTRIES.len()])(c)],
                _ => vec![profile(
                    "",
                    Some((
                        if op.param % 2 == 0 {
                            pb::Audience::B2b
                        } else {
                            pb::Audience::B2c
                        },
                        if op.param % 4 < 2 {
                            pb::Lifecycle::Customer
                        } else {
                            pb::Lifecycle::Prospect
                        },
                    )),
                )(c)],
            };
            if batch[0].occurred_at.is_none() {
                batch[0].occurred_at = when(op.hours);
            }
            out.extend(batch);
        }
        out
    }

    /// What must agree between the two answers: contact seqs and global seqs differ
    /// between the ledgers, so evidence is compared by role and time.
    fn essence(d: &pb::Decision) -> impl PartialEq + std::fmt::Debug {
        let mut evidence: Vec<(String, i64, i32)> = d
            .evidence
            .iter()
            .map(|e| {
                let t = e.occurred_at.unwrap();
                (e.role.clone(), t.seconds, t.nanos)
            })
            .collect();
        evidence.sort();
        let warnings: Vec<String> = d
            .warnings
            .iter()
            .filter(|w| !w.starts_with("no policy was active yet"))
            .cloned()
            .collect();
        (
            d.allowed,
            d.rule_id.clone(),
            d.regime,
            d.country.clone(),
            d.audience.clone(),
            evidence,
            warnings,
        )
    }

    /// The brief decision `Screen` gives for one contact.
    async fn screen_brief(
        server: &TestServer,
        contact: &str,
        purpose: &str,
        channel: &str,
    ) -> pb::Decision {
        let request = pb::ScreenRequest {
            target: Some(pb::ScreenTarget {
                purpose: purpose.into(),
                channel: channel.into(),
                brief: true,
                ..Default::default()
            }),
            contact_ids: vec![contact.into()],
        };
        let mut stream = eligibility(server)
            .await
            .screen(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().and_then(|r| r.kind) {
            Some(pb::screen_response::Kind::Decisions(mut d)) if d.decisions.len() == 1 => {
                d.decisions.remove(0)
            }
            other => panic!("one decision comes first, not {other:?}"),
        }
    }

    async fn check_case(full: &TestServer, fresh: &TestServer, case: &Case, n: usize) {
        let c = format!("prop-{n}");
        let base = Utc::now() - Duration::days(30);
        let t = base + Duration::hours(case.t_hours);
        let (mut a, mut b) = (full.client().await, fresh.client().await);
        // The full history; what the ledger refuses is not part of it.
        let mut accepted = Vec::new();
        for event in events(case, &c, base) {
            if let Ok(receipt) = a
                .append(pb::AppendRequest {
                    event: Some(event.clone()),
                })
                .await
            {
                accepted.push((event, receipt.into_inner().receipt.unwrap().contact_seq));
            }
        }
        // The fresh ledger: only what had happened by T, in the same order. A lift names
        // the restriction by its contact seq in this ledger.
        let mut seq_in_fresh = std::collections::HashMap::new();
        for (mut event, full_seq) in accepted {
            let happened = event.occurred_at.unwrap();
            if (happened.seconds, happened.nanos) > (ts(t).seconds, ts(t).nanos) {
                continue;
            }
            if let Some(Kind::RestrictionLifted(l)) = &mut event.kind {
                l.restriction_contact_seq = seq_in_fresh
                    .get(&l.restriction_contact_seq)
                    .copied()
                    .unwrap_or(u64::MAX);
            }
            if let Ok(receipt) = b.append(pb::AppendRequest { event: Some(event) }).await {
                seq_in_fresh.insert(full_seq, receipt.into_inner().receipt.unwrap().contact_seq);
            }
        }
        let (mut past, mut now) = (eligibility(full).await, eligibility(fresh).await);
        for (purpose, channel) in PURPOSES {
            let ask = |at: Option<DateTime<Utc>>| pb::CheckRequest {
                contact_id: c.clone(),
                purpose: purpose.into(),
                channel: channel.into(),
                at: at.map(ts),
                time_basis: at.map_or(0, |_| pb::TimeBasis::Effective as i32),
            };
            let then = past.check(ask(Some(t))).await.unwrap().into_inner();
            match now.check(ask(None)).await {
                Ok(today) => {
                    let today = today.into_inner();
                    assert_eq!(
                        essence(&then),
                        essence(&today),
                        "{purpose} at T={t} for {case:#?}\nat T: {then:#?}\nfresh: {today:#?}"
                    );
                    // A brief decision is the same decision, unexplained.
                    let brief = screen_brief(fresh, &c, purpose, channel).await;
                    assert_eq!(
                        (brief.allowed, brief.rule_id.as_str(), brief.regime),
                        (today.allowed, today.rule_id.as_str(), today.regime),
                        "brief {purpose} for {case:#?}\nfull: {today:#?}"
                    );
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::NotFound, "{status:?}");
                    assert_eq!(then.rule_id, "contact.unknown", "{then:?}");
                }
            }
        }
    }

    #[test]
    fn a_decision_at_t_equals_a_fresh_ledger_holding_only_what_happened_by_t() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (full, fresh) = runtime.block_on(async {
            (
                TestServer::start(&dir.path().join("full")).await,
                TestServer::start(&dir.path().join("fresh")).await,
            )
        });
        let mut runner = TestRunner::new(Config {
            cases: 48,
            ..Config::default()
        });
        let n = std::cell::Cell::new(0);
        runner
            .run(&case(), |case| {
                n.set(n.get() + 1);
                runtime.block_on(check_case(&full, &fresh, &case, n.get()));
                Ok(())
            })
            .unwrap();
        runtime.block_on(async {
            full.stop().await;
            fresh.stop().await;
        });
    }
}
