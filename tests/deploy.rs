//! The deployment files agree with each other: the example configuration
//! (`deploy/consent-ledger.toml`), the Kubernetes manifests (`deploy/kubernetes/`), the
//! container image (`deploy/Dockerfile`) and the systemd unit (`deploy/systemd/`) name the
//! same ports, data directory, configuration path and secret files, and keep their
//! hardening. Each failure names the file and field that disagree.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

const CONFIG: &str = "deploy/consent-ledger.toml";
const MANIFESTS: &str = "deploy/kubernetes/consent-ledger.yaml";
const SECRET: &str = "deploy/kubernetes/secret.example.yaml";
const DOCKERFILE: &str = "deploy/Dockerfile";
const UNIT: &str = "deploy/systemd/consent-ledger.service";

const CONFIG_MAP: &str = "consent-ledger-config";
const CONFIG_MAP_KEY: &str = "consent-ledger.toml";
const POLICY_CONFIG_MAP: &str = "consent-ledger-policy";
const STATEFUL_SET: &str = "consent-ledger";
const SERVICE: &str = "consent-ledger";
const CONTAINER: &str = "consent-ledger";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---- the configuration --------------------------------------------------------------

/// A parsed configuration file, with the name used in failure messages.
struct Config {
    origin: String,
    table: toml::Table,
}

impl Config {
    fn parse(origin: &str, text: &str) -> Self {
        let table = text
            .parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{origin} is not valid TOML: {e}"));
        Self {
            origin: origin.to_owned(),
            table,
        }
    }

    fn example() -> Self {
        Self::parse(CONFIG, &read(CONFIG))
    }

    fn string(&self, key: &str) -> &str {
        self.table
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{}: `{key}` is missing or not a string", self.origin))
    }

    fn integer(&self, table: &str, key: &str) -> i64 {
        self.table
            .get(table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_integer)
            .unwrap_or_else(|| {
                panic!(
                    "{}: `{table}.{key}` is missing or not an integer",
                    self.origin
                )
            })
    }

    fn port(&self, key: &str) -> i64 {
        let addr: SocketAddr = self.string(key).parse().unwrap_or_else(|e| {
            panic!(
                "{}: `{key}` = {:?} is not host:port: {e}",
                self.origin,
                self.string(key)
            )
        });
        i64::from(addr.port())
    }

    /// Every configured file the server reads, by key.
    fn read_paths(&self) -> Vec<(String, String)> {
        let mut paths: Vec<(String, String)> =
            ["callers", "policy", "master_key_file", "checkpoint_key"]
                .iter()
                .map(|key| ((*key).to_owned(), self.string(key).to_owned()))
                .collect();
        if let Some(tls) = self.table.get("tls").and_then(toml::Value::as_table) {
            for (key, value) in tls {
                let path = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: `tls.{key}` is not a string", self.origin));
                paths.push((format!("tls.{key}"), path.to_owned()));
            }
        }
        paths
    }
}

// ---- Kubernetes ---------------------------------------------------------------------

fn load_yaml(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Yaml], origin: &str, kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|doc| {
            doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
        })
        .unwrap_or_else(|| panic!("{origin}: no {kind} named {name}"))
}

/// The node at a dotted path (`spec.template.spec`); `BadValue` when absent.
fn at<'a>(node: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(node, |node, key| &node[key])
}

fn str_at<'a>(node: &'a Yaml, path: &str, origin: &str) -> &'a str {
    at(node, path)
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: `{path}` is missing or not a string"))
}

fn int_at(node: &Yaml, path: &str, origin: &str) -> i64 {
    at(node, path)
        .as_i64()
        .unwrap_or_else(|| panic!("{origin}: `{path}` is missing or not an integer"))
}

fn list_at<'a>(node: &'a Yaml, path: &str, origin: &str) -> &'a [Yaml] {
    at(node, path)
        .as_vec()
        .unwrap_or_else(|| panic!("{origin}: `{path}` is missing or not a list"))
}

fn string_map(node: &Yaml, path: &str, origin: &str) -> BTreeMap<String, String> {
    let hash = at(node, path)
        .as_hash()
        .unwrap_or_else(|| panic!("{origin}: `{path}` is missing or not a mapping"));
    hash.iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{origin}: `{path}` holds a non-scalar value {other:?}"),
            };
            (k.as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

fn assert_selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    what: &str,
) {
    assert!(
        !selector.is_empty(),
        "{what} is empty and would select every pod"
    );
    for (key, value) in selector {
        assert_eq!(
            labels.get(key),
            Some(value),
            "{what} requires {key}={value}, but the StatefulSet's pod template (spec.template.metadata.labels) has {labels:?}"
        );
    }
}

/// The parsed manifests with the objects the checks look at.
struct Manifests {
    docs: Vec<Yaml>,
}

impl Manifests {
    fn load() -> Self {
        Self {
            docs: load_yaml(MANIFESTS),
        }
    }

    fn get(&self, kind: &str, name: &str) -> &Yaml {
        find(&self.docs, MANIFESTS, kind, name)
    }

    fn stateful_set(&self) -> &Yaml {
        self.get("StatefulSet", STATEFUL_SET)
    }

    fn pod(&self) -> &Yaml {
        at(self.stateful_set(), "spec.template.spec")
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(
            self.stateful_set(),
            "spec.template.metadata.labels",
            &format!("{MANIFESTS} StatefulSet {STATEFUL_SET}"),
        )
    }

    fn container(&self) -> &Yaml {
        list_at(self.pod(), "containers", &self.origin("spec.template.spec"))
            .iter()
            .find(|c| c["name"].as_str() == Some(CONTAINER))
            .unwrap_or_else(|| {
                panic!("{MANIFESTS}: StatefulSet {STATEFUL_SET} has no container named {CONTAINER}")
            })
    }

    fn origin(&self, path: &str) -> String {
        format!("{MANIFESTS} StatefulSet {STATEFUL_SET} {path}")
    }

    /// Container port number by name.
    fn container_port(&self, name: &str) -> i64 {
        let origin = self.origin("containers[].ports");
        list_at(self.container(), "ports", &origin)
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| int_at(p, "containerPort", &origin))
            .unwrap_or_else(|| panic!("{origin}: no port named {name}"))
    }

    fn container_ports(&self) -> Vec<i64> {
        let origin = self.origin("containers[].ports");
        let mut ports: Vec<i64> = list_at(self.container(), "ports", &origin)
            .iter()
            .map(|p| int_at(p, "containerPort", &origin))
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The pod volume named `name` (claim templates are not among them).
    fn find_volume(&self, name: &str) -> Option<&Yaml> {
        list_at(
            self.pod(),
            "volumes",
            &self.origin("spec.template.spec.volumes"),
        )
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
    }

    fn volume(&self, name: &str) -> &Yaml {
        self.find_volume(name).unwrap_or_else(|| {
            panic!(
                "{}: no volume named {name}",
                self.origin("spec.template.spec.volumes")
            )
        })
    }

    fn mounts(&self) -> &[Yaml] {
        list_at(
            self.container(),
            "volumeMounts",
            &self.origin("containers[].volumeMounts"),
        )
    }

    /// The mount of the volume built from the ConfigMap or Secret `source_name`.
    fn mount_of(&self, source_kind: &str, source_name: &str) -> &Yaml {
        let (field, name_field) = match source_kind {
            "ConfigMap" => ("configMap", "name"),
            "Secret" => ("secret", "secretName"),
            other => panic!("unexpected volume source {other}"),
        };
        self.mounts()
            .iter()
            .find(|m| {
                self.find_volume(str_at(m, "name", MANIFESTS))
                    .is_some_and(|v| v[field][name_field].as_str() == Some(source_name))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: no volumeMount of a volume from {source_kind} {source_name}",
                    self.origin("containers[].volumeMounts")
                )
            })
    }

    /// The configuration path given by `serve --config` in the container's args.
    fn config_arg(&self) -> String {
        let origin = self.origin("containers[].args");
        let args: Vec<String> = list_at(self.container(), "args", &origin)
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap_or_else(|| panic!("{origin}: {a:?} is not a string"))
                    .to_owned()
            })
            .collect();
        config_path(&args)
            .unwrap_or_else(|| panic!("{origin} = {args:?} does not run `serve --config FILE`"))
    }

    /// The configuration embedded in the ConfigMap.
    fn embedded_config(&self) -> Config {
        let origin = format!("{MANIFESTS} ConfigMap {CONFIG_MAP} data.{CONFIG_MAP_KEY}");
        let text = self.get("ConfigMap", CONFIG_MAP)["data"][CONFIG_MAP_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("{origin} is missing"));
        Config::parse(&origin, text)
    }
}

/// `FILE` in `serve --config FILE` (or `--config=FILE`).
fn config_path(args: &[String]) -> Option<String> {
    let serve = args.iter().position(|a| a == "serve")?;
    let rest = &args[serve + 1..];
    rest.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            rest.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_owned)
        }
    })
}

fn parent(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or_else(|| panic!("{path} has no parent directory"))
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("{path} has no file name"))
}

// ---- the Dockerfile ------------------------------------------------------------------

/// One instruction of the final stage: keyword (upper-case) and its arguments.
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of the Dockerfile's last stage, continuation lines joined.
fn final_stage() -> Vec<Instruction> {
    let text = read(DOCKERFILE);
    let mut instructions: Vec<Instruction> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            instructions.clear();
        }
        instructions.push(Instruction {
            keyword,
            args: args.trim().to_owned(),
        });
    }
    instructions
}

fn instruction<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    stage
        .iter()
        .rev()
        .find(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .unwrap_or_else(|| panic!("{DOCKERFILE}: the runtime stage has no {keyword}"))
}

fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| {
        panic!("{DOCKERFILE}: {what} {args} is not in exec form (a JSON array): {e}")
    })
}

// ---- the systemd unit ----------------------------------------------------------------

/// The unit's settings, every value of a key in order.
fn unit() -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(UNIT).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}: {line:?} is not Key=value"));
        settings
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    settings
}

fn unit_value<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    settings
        .get(key)
        .and_then(|values| values.last())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{UNIT}: {key}= is not set"))
}

fn seconds(value: &str, what: &str) -> i64 {
    value
        .strip_suffix('s')
        .unwrap_or(value)
        .parse()
        .unwrap_or_else(|e| panic!("{what} = {value:?} is not a number of seconds: {e}"))
}

// ---- the checks ----------------------------------------------------------------------

#[test]
fn configmap_embeds_the_example_configuration() {
    let example = Config::example();
    let embedded = Manifests::load().embedded_config();
    let keys: std::collections::BTreeSet<&String> =
        example.table.keys().chain(embedded.table.keys()).collect();
    for key in keys {
        assert_eq!(
            embedded.table.get(key),
            example.table.get(key),
            "{} and {CONFIG} disagree on `{key}`",
            embedded.origin
        );
    }
    assert_eq!(
        embedded.string("log_format"),
        "json",
        "{}: log_format",
        embedded.origin
    );
}

#[test]
fn statefulset_matches_the_configuration() {
    let manifests = Manifests::load();
    let embedded = manifests.embedded_config();
    let example = Config::example();
    let set = manifests.stateful_set();
    let pod = manifests.pod();
    let container = manifests.container();

    assert_eq!(
        int_at(set, "spec.replicas", MANIFESTS),
        1,
        "{}: the ledger has a single writer",
        manifests.origin("spec.replicas")
    );

    // Ports: the container's named ports are the ports of `listen` and `metrics_listen`.
    for config in [&embedded, &example] {
        assert_eq!(
            manifests.container_port("grpc"),
            config.port("listen"),
            "{} port `grpc` and {} `listen` disagree",
            manifests.origin("containers[].ports"),
            config.origin
        );
        assert_eq!(
            manifests.container_port("metrics"),
            config.port("metrics_listen"),
            "{} port `metrics` and {} `metrics_listen` disagree",
            manifests.origin("containers[].ports"),
            config.origin
        );
    }
    let mut expected = vec![embedded.port("listen"), embedded.port("metrics_listen")];
    expected.sort_unstable();
    assert_eq!(
        manifests.container_ports(),
        expected,
        "{} are not exactly the ports of `listen` and `metrics_listen` in {}",
        manifests.origin("containers[].ports"),
        embedded.origin
    );

    // Probes: native gRPC health on the gRPC port.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let path = format!("containers[].{probe}.grpc.port");
        assert_eq!(
            at(container, probe)["grpc"]["port"].as_i64(),
            Some(embedded.port("listen")),
            "{} is not the port of `listen` in {}",
            manifests.origin(&path),
            embedded.origin
        );
        for other in ["httpGet", "tcpSocket", "exec"] {
            assert!(
                at(container, probe)[other].is_badvalue(),
                "{} must be a gRPC probe, not {other}",
                manifests.origin(&format!("containers[].{probe}"))
            );
        }
    }

    // The server runs as `serve --config` with the path the ConfigMap is mounted at.
    let config_mount = manifests.mount_of("ConfigMap", CONFIG_MAP);
    let config_mount_path = str_at(config_mount, "mountPath", MANIFESTS);
    assert_eq!(
        manifests.config_arg(),
        config_mount_path,
        "{} names another file than the mountPath of ConfigMap {CONFIG_MAP}",
        manifests.origin("containers[].args")
    );
    assert_eq!(
        str_at(config_mount, "subPath", MANIFESTS),
        CONFIG_MAP_KEY,
        "{}: the ConfigMap {CONFIG_MAP} mount must take subPath {CONFIG_MAP_KEY}",
        manifests.origin("containers[].volumeMounts")
    );

    // The data volume is the claim template, mounted at exactly `data_dir`, writable.
    let claims = list_at(
        set,
        "spec.volumeClaimTemplates",
        &manifests.origin("spec.volumeClaimTemplates"),
    );
    assert_eq!(
        claims.len(),
        1,
        "{}: one data volume",
        manifests.origin("spec.volumeClaimTemplates")
    );
    let claim = &claims[0];
    let claim_name = str_at(claim, "metadata.name", MANIFESTS);
    assert!(
        list_at(claim, "spec.accessModes", MANIFESTS)
            .iter()
            .any(|m| m.as_str() == Some("ReadWriteOnce")),
        "{}: the data volume must be ReadWriteOnce",
        manifests.origin("spec.volumeClaimTemplates[].spec.accessModes")
    );
    let data_mount = manifests
        .mounts()
        .iter()
        .find(|m| m["name"].as_str() == Some(claim_name))
        .unwrap_or_else(|| {
            panic!(
                "{}: the claim {claim_name} is not mounted",
                manifests.origin("containers[].volumeMounts")
            )
        });
    for config in [&embedded, &example] {
        assert_eq!(
            str_at(data_mount, "mountPath", MANIFESTS),
            config.string("data_dir"),
            "{} of {claim_name} and {} `data_dir` disagree",
            manifests.origin("containers[].volumeMounts[].mountPath"),
            config.origin
        );
    }
    assert_ne!(
        data_mount["readOnly"].as_bool(),
        Some(true),
        "{}: the data volume must be writable",
        manifests.origin("containers[].volumeMounts")
    );

    // The policy pack is the policy ConfigMap, mounted at `policy`.
    let policy_mount = manifests.mount_of("ConfigMap", POLICY_CONFIG_MAP);
    assert_eq!(
        str_at(policy_mount, "mountPath", MANIFESTS),
        embedded.string("policy"),
        "{} of ConfigMap {POLICY_CONFIG_MAP} and {} `policy` disagree",
        manifests.origin("containers[].volumeMounts[].mountPath"),
        embedded.origin
    );

    // Secrets: `callers`, `master_key_file` and `checkpoint_key` are files of the
    // mounted Secret, which is read-only and not group- or world-writable.
    let secret_docs = load_yaml(SECRET);
    let secret = secret_docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Secret"))
        .unwrap_or_else(|| panic!("{SECRET}: no Secret"));
    let secret_name = str_at(secret, "metadata.name", SECRET);
    let secret_mount = manifests.mount_of("Secret", secret_name);
    let secret_dir = str_at(secret_mount, "mountPath", MANIFESTS);
    assert_eq!(
        secret_mount["readOnly"].as_bool(),
        Some(true),
        "{}: the mount of Secret {secret_name} must be readOnly",
        manifests.origin("containers[].volumeMounts")
    );
    let secret_files = string_map(secret, "stringData", SECRET);
    for key in ["callers", "master_key_file", "checkpoint_key"] {
        let path = embedded.string(key);
        assert_eq!(
            parent(path),
            secret_dir,
            "{} `{key}` = {path} is not in the mountPath of Secret {secret_name} in {MANIFESTS}",
            embedded.origin
        );
        assert!(
            secret_files.contains_key(file_name(path)),
            "{} `{key}` = {path}, but {SECRET} stringData has no key {}",
            embedded.origin,
            file_name(path)
        );
    }
    let secret_volume = manifests.volume(str_at(secret_mount, "name", MANIFESTS));
    let mode = int_at(
        secret_volume,
        "secret.defaultMode",
        &manifests.origin("volumes[].secret"),
    );
    assert_eq!(
        mode & 0o037,
        0,
        "{}: defaultMode {mode:o} exposes the secrets",
        manifests.origin("volumes[].secret")
    );

    // Every file the configuration names is inside some mount.
    let mounts: Vec<&str> = manifests
        .mounts()
        .iter()
        .map(|m| str_at(m, "mountPath", MANIFESTS))
        .collect();
    for (key, path) in embedded.read_paths() {
        assert!(
            mounts
                .iter()
                .any(|m| path == *m || path.starts_with(&format!("{m}/"))),
            "{} `{key}` = {path} is under none of the mountPaths {mounts:?} in {MANIFESTS}",
            embedded.origin
        );
    }

    // Hardening.
    let pod_context = at(pod, "securityContext");
    let container_context = at(container, "securityContext");
    assert!(
        pod_context["runAsNonRoot"].as_bool() == Some(true)
            || container_context["runAsNonRoot"].as_bool() == Some(true),
        "{}: runAsNonRoot must be true",
        manifests.origin("spec.template.spec.securityContext")
    );
    let uid = int_at(
        pod,
        "securityContext.runAsUser",
        &manifests.origin("spec.template.spec"),
    );
    assert_ne!(
        uid,
        0,
        "{}: runAsUser is root",
        manifests.origin("spec.template.spec.securityContext")
    );
    assert_eq!(
        container_context["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{}: readOnlyRootFilesystem must be true",
        manifests.origin("containers[].securityContext")
    );
    assert_eq!(
        container_context["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{}: allowPrivilegeEscalation must be false",
        manifests.origin("containers[].securityContext")
    );

    // Shutdown: requests may run until the request timeout before the drain ends.
    let grace = int_at(
        pod,
        "terminationGracePeriodSeconds",
        &manifests.origin("spec.template.spec"),
    );
    assert!(
        grace >= embedded.integer("limits", "request_timeout_secs"),
        "{} ({grace}) is shorter than {} `limits.request_timeout_secs`",
        manifests.origin("spec.template.spec.terminationGracePeriodSeconds"),
        embedded.origin
    );
}

#[test]
fn services_and_disruption_budget_select_the_pod() {
    let manifests = Manifests::load();
    let embedded = manifests.embedded_config();
    let labels = manifests.pod_labels();

    let set_selector = string_map(
        manifests.stateful_set(),
        "spec.selector.matchLabels",
        MANIFESTS,
    );
    assert_selects(
        &set_selector,
        &labels,
        &format!("{MANIFESTS} StatefulSet {STATEFUL_SET} spec.selector.matchLabels"),
    );

    let governing = str_at(manifests.stateful_set(), "spec.serviceName", MANIFESTS);
    let headless = manifests.get("Service", governing);
    assert_eq!(
        at(headless, "spec.clusterIP").as_str(),
        Some("None"),
        "{MANIFESTS}: Service {governing} (the StatefulSet's serviceName) must be headless"
    );

    for name in [SERVICE, governing] {
        let service = manifests.get("Service", name);
        let origin = format!("{MANIFESTS} Service {name}");
        assert_selects(
            &string_map(service, "spec.selector", &origin),
            &labels,
            &format!("{origin} spec.selector"),
        );
        let ports = list_at(service, "spec.ports", &origin);
        for port in ports {
            let number = int_at(port, "port", &origin);
            let target = match &port["targetPort"] {
                Yaml::String(name) => manifests.container_port(name),
                Yaml::Integer(n) => *n,
                Yaml::BadValue => number,
                other => panic!("{origin}: targetPort {other:?}"),
            };
            assert!(
                manifests.container_ports().contains(&target),
                "{origin} spec.ports[].targetPort of port {number} is not a container port of StatefulSet {STATEFUL_SET}"
            );
            assert_eq!(
                number, target,
                "{origin} spec.ports[].port {number} differs from its targetPort {target}"
            );
        }
        let grpc = ports
            .iter()
            .find(|p| p["name"].as_str() == Some("grpc"))
            .unwrap_or_else(|| panic!("{origin}: no port named grpc"));
        assert_eq!(
            grpc["port"].as_i64(),
            Some(embedded.port("listen")),
            "{origin} port grpc and {} `listen` disagree",
            embedded.origin
        );
        assert_eq!(
            grpc["appProtocol"].as_str(),
            Some("grpc"),
            "{origin} port grpc: appProtocol"
        );
    }

    let service = manifests.get("Service", SERVICE);
    let origin = format!("{MANIFESTS} Service {SERVICE}");
    let metrics = list_at(service, "spec.ports", &origin)
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .unwrap_or_else(|| panic!("{origin}: no port named metrics"));
    assert_eq!(
        metrics["port"].as_i64(),
        Some(embedded.port("metrics_listen")),
        "{origin} port metrics and {} `metrics_listen` disagree",
        embedded.origin
    );
    let annotations = string_map(service, "metadata.annotations", &origin);
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&embedded.port("metrics_listen").to_string()),
        "{origin} annotation prometheus.io/port and {} `metrics_listen` disagree",
        embedded.origin
    );

    let budget = manifests.get("PodDisruptionBudget", STATEFUL_SET);
    let origin = format!("{MANIFESTS} PodDisruptionBudget {STATEFUL_SET}");
    assert_selects(
        &string_map(budget, "spec.selector.matchLabels", &origin),
        &labels,
        &format!("{origin} spec.selector.matchLabels"),
    );
}

#[test]
fn dockerfile_matches_the_configuration_and_the_manifests() {
    let example = Config::example();
    let manifests = Manifests::load();
    let stage = final_stage();

    let exposed: Vec<i64> = instruction(&stage, "EXPOSE")
        .split_whitespace()
        .map(|p| {
            p.trim_end_matches("/tcp")
                .parse()
                .unwrap_or_else(|e| panic!("{DOCKERFILE}: EXPOSE {p}: {e}"))
        })
        .collect();
    for key in ["listen", "metrics_listen"] {
        assert!(
            exposed.contains(&example.port(key)),
            "{DOCKERFILE}: EXPOSE {exposed:?} lacks port {} of {CONFIG} `{key}`",
            example.port(key)
        );
    }

    let health = instruction(&stage, "HEALTHCHECK");
    let command = health
        .split_once("CMD")
        .map(|(_, command)| command.trim())
        .unwrap_or_else(|| panic!("{DOCKERFILE}: HEALTHCHECK {health} has no CMD"));
    let command = exec_form(command, "HEALTHCHECK CMD");
    assert_eq!(
        command.get(..2),
        Some(&["consent-ledger".to_owned(), "health".to_owned()][..]),
        "{DOCKERFILE}: HEALTHCHECK CMD {command:?} must run `consent-ledger health`"
    );
    let server = command
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| command.get(i + 1))
        .unwrap_or_else(|| panic!("{DOCKERFILE}: HEALTHCHECK CMD {command:?} has no --server"));
    let port: i64 = server
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{DOCKERFILE}: HEALTHCHECK --server {server} has no port"));
    assert_eq!(
        port,
        example.port("listen"),
        "{DOCKERFILE}: HEALTHCHECK --server {server} and {CONFIG} `listen` disagree"
    );

    let user = instruction(&stage, "USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "{DOCKERFILE}: USER {user} must not be root"
    );
    if let Ok(uid) = uid.parse::<i64>() {
        assert_eq!(
            Some(uid),
            at(manifests.pod(), "securityContext.runAsUser").as_i64(),
            "{DOCKERFILE} USER and {} disagree",
            manifests.origin("spec.template.spec.securityContext.runAsUser")
        );
    }

    assert_eq!(
        exec_form(instruction(&stage, "ENTRYPOINT"), "ENTRYPOINT"),
        ["consent-ledger"],
        "{DOCKERFILE}: ENTRYPOINT"
    );
    let cmd = exec_form(instruction(&stage, "CMD"), "CMD");
    let config = config_path(&cmd)
        .unwrap_or_else(|| panic!("{DOCKERFILE}: CMD {cmd:?} does not run `serve --config FILE`"));
    let config_mount = manifests.mount_of("ConfigMap", CONFIG_MAP);
    assert_eq!(
        config,
        str_at(config_mount, "mountPath", MANIFESTS),
        "{DOCKERFILE} CMD --config and {} mountPath of ConfigMap {CONFIG_MAP} disagree",
        manifests.origin("containers[].volumeMounts")
    );

    // The image installs the example configuration where CMD reads it, the shipped
    // policy pack where the configuration names it, and declares the data volume.
    let copies: Vec<Vec<&str>> = stage
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| {
            i.args
                .split_whitespace()
                .filter(|a| !a.starts_with("--"))
                .collect()
        })
        .collect();
    for (source, destination, what) in [
        (CONFIG, config.as_str(), "CMD --config"),
        (
            "deploy/policy/per-country.toml",
            example.string("policy"),
            "`policy` in deploy/consent-ledger.toml",
        ),
    ] {
        assert!(
            copies.iter().any(|c| c.as_slice() == [source, destination]),
            "{DOCKERFILE}: no `COPY {source} {destination}` ({what})"
        );
    }
    let volume = instruction(&stage, "VOLUME");
    let volumes: Vec<String> = if volume.starts_with('[') {
        exec_form(volume, "VOLUME")
    } else {
        volume.split_whitespace().map(str::to_owned).collect()
    };
    assert!(
        volumes.iter().any(|v| v == example.string("data_dir")),
        "{DOCKERFILE}: VOLUME {volumes:?} does not declare {CONFIG} `data_dir`"
    );
}

#[test]
fn systemd_unit_matches_the_configuration() {
    let example = Config::example();
    let settings = unit();

    let exec: Vec<String> = unit_value(&settings, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let config = config_path(&exec)
        .unwrap_or_else(|| panic!("{UNIT}: ExecStart does not run `serve --config FILE`"));
    let stage = final_stage();
    let docker_config =
        config_path(&exec_form(instruction(&stage, "CMD"), "CMD")).unwrap_or_default();
    assert_eq!(
        config, docker_config,
        "{UNIT} ExecStart --config and {DOCKERFILE} CMD --config disagree"
    );

    let data_dir = example.string("data_dir");
    let state = unit_value(&settings, "StateDirectory");
    assert_eq!(
        format!("/var/lib/{state}"),
        data_dir,
        "{UNIT}: StateDirectory={state} is not {CONFIG} `data_dir`"
    );
    let writable: Vec<&str> = settings
        .get("ReadWritePaths")
        .into_iter()
        .flatten()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert!(
        writable.contains(&data_dir),
        "{UNIT}: ReadWritePaths {writable:?} lacks {CONFIG} `data_dir` {data_dir}"
    );

    let user = unit_value(&settings, "User");
    assert!(
        user != "root" && user != "0",
        "{UNIT}: User={user} must not be root"
    );
    let no_new = unit_value(&settings, "NoNewPrivileges");
    assert!(
        ["yes", "true", "1", "on"].contains(&no_new),
        "{UNIT}: NoNewPrivileges={no_new} must be yes"
    );
    assert_eq!(
        unit_value(&settings, "ProtectSystem"),
        "strict",
        "{UNIT}: ProtectSystem"
    );
    let stop = seconds(
        unit_value(&settings, "TimeoutStopSec"),
        &format!("{UNIT} TimeoutStopSec"),
    );
    assert!(
        stop >= example.integer("limits", "request_timeout_secs"),
        "{UNIT}: TimeoutStopSec={stop} is shorter than {CONFIG} `limits.request_timeout_secs`"
    );
}
