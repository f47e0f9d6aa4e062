//! Assembles and runs the gRPC server: TLS, the authentication layer, the ledger service,
//! gRPC health and server reflection, request limits, and graceful shutdown driven by the
//! caller's future.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::{
    ConfigError, LimitSettings, MasterKeySource, ServeConfig, Settings, TlsFiles, TlsSettings,
};
use crate::crypto::{Keyring, MasterKey};
use crate::keyfile::{
    load_or_create_master_key, load_or_create_signing_key, KeyFileError, CHECKPOINT_KEY_FILE,
    MASTER_KEY_FILE,
};
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::eligibility_service_server::EligibilityServiceServer;
use crate::proto::v1::ledger_service_server::LedgerServiceServer;
use crate::proto::v1::rights_service_server::RightsServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::service::auth::{reload_callers, AuthLayer, Authenticator, Callers, CallersError};
use crate::service::eligibility::{ActivateError, Policies};
use crate::service::{AdminApi, AuditApi, EligibilityApi, LedgerApi, RightsApi};
use crate::store::{CacheSizes, Checkpointer, Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The ledger could not be opened or its writer started.
    #[error("cannot open the ledger in {path}: {source}")]
    Store {
        /// The data directory.
        path: String,
        /// The cause.
        source: StoreError,
    },
    /// The ledger's files are damaged; nothing was opened or changed.
    #[error("the ledger in {path} is damaged and was not opened: {detail}. Nothing was written, moved or removed. Keep the directory as evidence (copy it aside), restore the latest backup into a new directory with `consent-ledger restore`, and compare the two with `consent-ledger audit verify-ledger`; see the README, \"Damaged data at start\"")]
    Damaged {
        /// The data directory.
        path: String,
        /// What the storage engine found, naming the file.
        detail: String,
    },
    /// The callers file is unreadable or malformed.
    #[error(transparent)]
    Callers(#[from] CallersError),
    /// A TLS file cannot be read.
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Mutual TLS maps certificate names to roles through the callers file.
    #[error("mutual TLS (a client CA) needs a callers file that maps certificate names to roles")]
    MutualTlsWithoutCallers,
    /// The checkpoint signing key cannot be read or created.
    #[error(transparent)]
    SigningKey(#[from] KeyFileError),
    /// The policy file cannot be read.
    #[error("cannot read policy file {path}: {source}")]
    PolicyFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The policy pack could not be activated.
    #[error("policy file {path}: {source}")]
    Policy {
        /// The file, or "(default pack)".
        path: String,
        /// The cause.
        source: ActivateError,
    },
    /// Reflection could not be built from the descriptor set.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A thread serving gRPC could not be started.
    #[error("cannot start a gRPC thread: {0}")]
    Threads(std::io::Error),
    /// A thread serving gRPC ended without reporting why.
    #[error("gRPC thread {0} stopped unexpectedly")]
    ThreadStopped(usize),
    /// The metrics address cannot be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Serves the ledger on `listener` until `shutdown` completes. On shutdown, health turns
/// NOT_SERVING first, in-flight requests finish, every acknowledged append is already
/// durable, and the writer is joined before this returns.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    if config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()) && config.callers_file.is_none() {
        return Err(ServerError::MutualTlsWithoutCallers);
    }
    let tls = config.tls.as_ref().map(server_tls).transpose()?;
    let auth = match &config.callers_file {
        None => Authenticator::Disabled,
        Some(path) => {
            let callers = Callers::load(path)?;
            tracing::info!(callers = callers.len(), "bearer-token authentication on");
            Authenticator::callers(callers)
        }
    };
    let store_error = |source| ServerError::Store {
        path: config.data_dir.display().to_string(),
        source,
    };
    let data_dir = config.data_dir.clone();
    let caches = CacheSizes {
        block_bytes: config.block_cache_bytes,
        state_bytes: config.state_cache_bytes,
    };
    let store = tokio::task::spawn_blocking(move || Store::open_with_caches(&data_dir, caches))
        .await
        .map_err(|_| store_error(StoreError::WriterStopped))?
        .map_err(|err| match err {
            StoreError::Corrupt(detail) => ServerError::Damaged {
                path: config.data_dir.display().to_string(),
                detail,
            },
            other => store_error(other),
        })?;
    let head = store.tree_head().map_err(store_error)?;
    tracing::info!(
        tree_size = head.size,
        root = %hex::encode(head.root),
        block_cache_mib = caches.block_bytes >> 20,
        state_cache_mib = caches.state_bytes >> 20,
        "ledger opened"
    );
    let (key_path, create_key) = match &config.checkpoint_key {
        Some(path) => (path.clone(), false),
        None => (config.data_dir.join(CHECKPOINT_KEY_FILE), true),
    };
    let (signing_key, _) =
        load_or_create_signing_key(&key_path, create_key, config.log_origin.as_deref())?;
    tracing::info!(verifier_key = %signing_key.verifier(), "checkpoints are signed");
    let checkpointer = Checkpointer::new(store.clone(), signing_key);
    let policy_text = config
        .policy_file
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path).map_err(|source| ServerError::PolicyFile {
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()?;
    let master_key = match &config.master_key {
        MasterKeySource::DataDir => {
            load_or_create_master_key(&config.data_dir.join(MASTER_KEY_FILE), true)?
        }
        MasterKeySource::File(path) => load_or_create_master_key(path, false)?,
        MasterKeySource::Environment(hex) => {
            MasterKey::from_hex(hex).map_err(|source| KeyFileError::MalformedMasterKey {
                source_name: "CONSENT_LEDGER_MASTER_KEY".into(),
                source,
            })?
        }
    };
    let keyring = Arc::new(Keyring::new(&master_key));
    drop(master_key);
    store
        .disk_space()
        .keep_free(config.limits.min_free_disk_bytes);
    let (writer, writer_thread) = store.start_writer(keyring.clone()).map_err(store_error)?;
    let purged = store.purge_erased().map_err(store_error)?;
    if purged.contacts > 0 {
        tracing::info!(
            contacts = purged.contacts,
            records = purged.records,
            "finished purging erasures a restart interrupted"
        );
    }
    let policies = match Policies::load(&store, &writer, "server", policy_text.as_deref()).await {
        Ok(policies) => policies,
        Err(source) => {
            drop(writer);
            writer_thread.join();
            return Err(ServerError::Policy {
                path: config
                    .policy_file
                    .as_ref()
                    .map_or_else(|| "(default pack)".into(), |p| p.display().to_string()),
                source,
            });
        }
    };
    if let Some(active) = policies.book().current() {
        tracing::info!(version = %active.pack.version, seq = active.seq, "policy pack in force");
    }
    let cadence = tokio::spawn(sign_checkpoints(
        checkpointer.clone(),
        config.checkpoint_interval,
    ));
    let metrics_endpoint = match config.metrics_listen {
        Some(addr) => {
            let listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::MetricsListen {
                        addr: addr.to_string(),
                        source,
                    })?;
            tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics on /metrics");
            Some(tokio::spawn(serve_metrics(listener, store.clone())))
        }
        None => None,
    };

    // Started only once the ledger is open, so a failed start leaves no task behind.
    let reloader = config.callers_file.clone().map(|path| {
        tokio::spawn(reload_callers(
            path,
            auth.clone(),
            config.callers_reload_interval,
        ))
    });

    let limits = config.limits;
    let eligibility = EligibilityServiceServer::new(EligibilityApi::new(
        store.clone(),
        writer.clone(),
        policies.clone(),
        limits.request_timeout,
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    let rights = RightsServiceServer::new(RightsApi::new(
        store.clone(),
        writer.clone(),
        keyring,
        checkpointer.clone(),
        policies.clone(),
        limits.request_timeout,
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    let admin = AdminServiceServer::new(AdminApi::new(store.clone(), checkpointer.clone()))
        .max_decoding_message_size(limits.max_message_bytes);
    let ledger = LedgerApi::new(store.clone(), writer, policies, limits);
    let ledger =
        LedgerServiceServer::new(ledger).max_decoding_message_size(limits.max_message_bytes);
    let audit = AuditServiceServer::new(AuditApi::new(
        store.clone(),
        checkpointer.clone(),
        limits.request_timeout,
    ))
    .max_decoding_message_size(limits.max_message_bytes);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LedgerServiceServer<LedgerApi>>()
        .await;
    health_reporter
        .set_serving::<AuditServiceServer<AuditApi>>()
        .await;
    health_reporter
        .set_serving::<EligibilityServiceServer<EligibilityApi>>()
        .await;
    health_reporter
        .set_serving::<RightsServiceServer<RightsApi>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let disk_watch = tokio::spawn(watch_disk_space(store.clone(), health_reporter.clone()));
    let reporter = health_reporter.clone();
    let stop_disk_watch = disk_watch.abort_handle();
    let on_shutdown = async move {
        shutdown.await;
        stop_disk_watch.abort();
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight requests");
        reporter
            .set_not_serving::<LedgerServiceServer<LedgerApi>>()
            .await;
        reporter
            .set_not_serving::<AuditServiceServer<AuditApi>>()
            .await;
        reporter
            .set_not_serving::<EligibilityServiceServer<EligibilityApi>>()
            .await;
        reporter
            .set_not_serving::<RightsServiceServer<RightsApi>>()
            .await;
        reporter
            .set_not_serving::<AdminServiceServer<AdminApi>>()
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };

    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        grpc_threads = config.grpc_threads,
        "serving"
    );
    let mut builder = Server::builder();
    // A peer that stopped reading its socket (or vanished) never answers a ping: its
    // connection and the calls on it are closed instead of held.
    let keepalive = (!limits.keepalive.is_zero()).then_some(limits.keepalive);
    let tls = match tls {
        Some(tls) => {
            builder = builder.tls_config(tls)?;
            true
        }
        None => false,
    };
    let router = builder
        .layer(AuthLayer::new(auth, store.metrics().clone()))
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(keepalive)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ledger)
        .add_service(audit)
        .add_service(eligibility)
        .add_service(rights)
        .add_service(admin);
    let served = serve_on_threads(listener, router, tls, config.grpc_threads, on_shutdown).await;

    if let Some(reloader) = reloader {
        reloader.abort();
    }
    cadence.abort();
    disk_watch.abort();
    if let Some(endpoint) = metrics_endpoint {
        endpoint.abort();
    }
    // The services (and their writer handles) are dropped with the server: the writer
    // finishes what it took and stops.
    let flushed = tokio::task::spawn_blocking(move || {
        writer_thread.join();
        // A last checkpoint covers everything acknowledged.
        if let Err(err) = checkpointer.checkpoint_now() {
            tracing::warn!(cause = %err, "could not sign the final checkpoint");
        }
        store.flush()
    })
    .await;
    match flushed {
        Ok(Ok(())) => tracing::info!("ledger closed cleanly"),
        Ok(Err(err)) => {
            tracing::warn!(cause = %err, "final flush failed; the WAL still holds every acknowledged entry")
        }
        Err(_) => tracing::warn!("final flush task failed"),
    }
    served?;
    Ok(())
}

/// The services behind the authentication layer, ready to serve connections.
type Router = tonic::transport::server::Router<
    tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>,
>;

/// Serves `router` on `threads` threads, each running a single-threaded runtime, until
/// `shutdown` completes; then each thread finishes its in-flight calls.
///
/// An accepted connection goes to the thread with the fewest open connections and stays
/// there, so its HTTP/2 framing and its calls run on one thread: a call's response is
/// written by the task that reads the connection, together with every other response
/// ready by then, with no hand-off between threads per call. (On one multi-threaded
/// runtime each response woke the connection on another thread and left in a write of
/// its own, its trailers often in a second one.) Blocking storage work still goes to
/// each runtime's blocking pool, and appends to the writer thread.
async fn serve_on_threads(
    listener: TcpListener,
    router: Router,
    tls: bool,
    threads: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut lanes = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let (sender, accepted) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let open = Arc::new(AtomicUsize::new(0));
        let (router, mut stopped, counter) = (router.clone(), stopped.clone(), open.clone());
        let finish =
            crate::threads::spawn_single_threaded(format!("grpc-{index}"), move || async move {
                use tokio_stream::StreamExt as _;
                // Registered with this thread's runtime as it is taken.
                let incoming = UnboundedReceiverStream::new(accepted).map(move |stream| {
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => Ok(Counted {
                            stream,
                            open: counter.clone(),
                            vectored: tls,
                        }),
                        Err(err) => {
                            counter.fetch_sub(1, Ordering::Relaxed);
                            Err(err)
                        }
                    }
                });
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                router.serve_with_incoming_shutdown(incoming, stop).await
            })
            .map_err(ServerError::Threads)?;
        lanes.push((sender, open));
        finished.push(finish);
    }

    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted.and_then(|(stream, _)| {
            // Nagle's algorithm off: a response written as headers then body must not
            // wait for the client's delayed ACK (40 ms per small unary call).
            stream.set_nodelay(true)?;
            stream.into_std()
        }) {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors, or a connection reset before it was taken:
                // not the listener's end. A short pause keeps the first from spinning.
                tracing::debug!(cause = %err, "could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // The least busy thread; ties go round, so threads fill evenly from the start.
        let lane = (0..lanes.len())
            .map(|offset| (next + offset) % lanes.len())
            .min_by_key(|&lane| lanes[lane].1.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (lane + 1) % lanes.len();
        lanes[lane].1.fetch_add(1, Ordering::Relaxed);
        if lanes[lane].0.send(stream).is_err() {
            // That thread ended early; its outcome is reported below.
            break;
        }
    }
    let _ = stop.send(true);
    drop(lanes);
    let mut outcome = Ok(());
    for (index, finish) in finished.into_iter().enumerate() {
        let served = match finish.await {
            Ok(Ok(served)) => served.map_err(ServerError::from),
            Ok(Err(err)) => Err(ServerError::Threads(err)),
            Err(_) => Err(ServerError::ThreadStopped(index)),
        };
        if outcome.is_ok() {
            outcome = served;
        }
    }
    outcome
}

/// An accepted connection, counted among its thread's open connections until it closes.
///
/// Over plaintext it does not offer vectored writes. HTTP/2 then copies a response body of
/// up to 1 KiB into its write buffer rather than queueing it as a separate slice, which it
/// must write out before buffering any further frame; so the responses ready at once (a
/// `Check` answer is 400–800 bytes), with their headers and trailers, leave in one
/// `write` instead of one or two `writev`s each. Under TLS the record layer batches its
/// own writes and is given vectored writes.
struct Counted {
    stream: tokio::net::TcpStream,
    open: Arc<AtomicUsize>,
    vectored: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Signs a checkpoint every `interval` when the tree has grown since the last one.
async fn sign_checkpoints(checkpointer: Checkpointer, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let signer = checkpointer.clone();
        match tokio::task::spawn_blocking(move || signer.checkpoint_now()).await {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!("signing checkpoints again");
                }
                failing = false;
            }
            // Once per run of failures (a full disk fails every tick until space is freed).
            Ok(Err(err)) if !failing => {
                failing = true;
                tracing::error!(cause = %err, "could not sign a checkpoint; retrying every tick");
            }
            Ok(Err(_)) => {}
            Err(_) => tracing::error!("the checkpoint task failed"),
        }
    }
}

/// Keeps the ledger service's health in step with the disk: NOT_SERVING while appends are
/// refused for want of space, SERVING again once a probe shows they can resume (without
/// any append having to try). The overall status stays SERVING: reads, eligibility and
/// exports go on.
async fn watch_disk_space(store: Store, health: tonic_health::server::HealthReporter) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        ticks.tick().await;
        let probe = store.clone();
        let Ok(can_append) = tokio::task::spawn_blocking(move || probe.probe_disk_space()).await
        else {
            continue;
        };
        if can_append != serving {
            serving = can_append;
            if serving {
                health.set_serving::<LedgerServiceServer<LedgerApi>>().await;
            } else {
                health
                    .set_not_serving::<LedgerServiceServer<LedgerApi>>()
                    .await;
            }
        }
    }
}

fn server_tls(files: &TlsFiles) -> Result<ServerTlsConfig, ServerError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            path: path.display().to_string(),
            source,
        })
    };
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?));
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// Checks settings as `serve` would use them, without starting: the rules across keys, and
/// every file they name (callers, policy pack, keys, TLS) read and parsed. Returns the
/// effective configuration as TOML, defaults filled in, secrets masked, followed by what
/// was checked; or the first problem, naming the key.
pub fn check_settings(
    settings: &Settings,
    master_key_env: Option<String>,
) -> Result<String, ConfigError> {
    let from_env = master_key_env.is_some();
    let resolved = settings.resolve(master_key_env)?;
    let serve = &resolved.serve;
    let problem = |key: &'static str, rule: String| ConfigError::Rule { key, rule };
    let mut checked = Vec::new();
    if let Some(path) = &serve.callers_file {
        let callers = Callers::load(path).map_err(|e| problem("callers", e.to_string()))?;
        checked.push(format!("callers: {} caller(s)", callers.len()));
    }
    if let Some(path) = &serve.policy_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem("policy", format!("{}: {e}", path.display())))?;
        let pack = crate::policy::PolicyPack::parse(&text)
            .map_err(|e| problem("policy", format!("{}: {e}", path.display())))?;
        checked.push(format!("policy: pack version {}", pack.version));
    }
    match &serve.master_key {
        MasterKeySource::File(path) => {
            load_or_create_master_key(path, false)
                .map_err(|e| problem("master_key_file", e.to_string()))?;
            checked.push("master_key_file: a 32-byte key".into());
        }
        MasterKeySource::Environment(hex) => {
            MasterKey::from_hex(hex).map_err(|e| problem("master_key_file", format!("CONSENT_LEDGER_MASTER_KEY: {e}")))?;
            checked.push("CONSENT_LEDGER_MASTER_KEY: a 32-byte key".into());
        }
        MasterKeySource::DataDir => checked.push(format!(
            "master key: {} (generated on first start if missing; keep it out of the data directory in production)",
            serve.data_dir.join(MASTER_KEY_FILE).display()
        )),
    }
    if let Some(path) = &serve.checkpoint_key {
        let (key, _) = load_or_create_signing_key(path, false, None)
            .map_err(|e| problem("checkpoint_key", e.to_string()))?;
        checked.push(format!("checkpoint_key: verifier key {}", key.verifier()));
    }
    if let Some(tls) = &serve.tls {
        server_tls(tls).map_err(|e| problem("tls", e.to_string()))?;
        checked.push("tls: certificate and key read".into());
    }
    let effective = Settings {
        listen: Some(serve.listen),
        metrics_listen: serve.metrics_listen,
        data_dir: Some(serve.data_dir.clone()),
        log_format: Some(resolved.log_format),
        callers: serve.callers_file.clone(),
        policy: serve.policy_file.clone(),
        master_key_file: match &serve.master_key {
            MasterKeySource::File(path) => Some(path.clone()),
            _ => None,
        },
        checkpoint_key: serve.checkpoint_key.clone(),
        log_origin: serve.log_origin.clone(),
        checkpoint_interval_ms: Some(serve.checkpoint_interval.as_millis() as u64),
        block_cache_mib: Some((serve.block_cache_bytes >> 20) as u64),
        state_cache_mib: Some((serve.state_cache_bytes >> 20) as u64),
        grpc_threads: Some(serve.grpc_threads as u64),
        insecure: Some(resolved.insecure),
        tls: serve.tls.as_ref().map(|t| TlsSettings {
            cert: Some(t.cert.clone()),
            key: Some(t.key.clone()),
            client_ca: t.client_ca.clone(),
        }),
        limits: LimitSettings {
            max_message_bytes: Some(serve.limits.max_message_bytes),
            max_batch_events: Some(serve.limits.max_batch_events),
            max_concurrent_streams: Some(serve.limits.max_concurrent_streams),
            request_timeout_secs: Some(serve.limits.request_timeout.as_secs()),
            keepalive_secs: Some(serve.limits.keepalive.as_secs()),
            min_free_disk_mib: Some(serve.limits.min_free_disk_bytes / (1024 * 1024)),
        },
    };
    let mut report = toml::to_string(&effective)
        .map_err(|e| problem("config", format!("cannot render: {e}")))?;
    if from_env {
        report.push_str("# master key: from CONSENT_LEDGER_MASTER_KEY (masked)\n");
    }
    report.push_str("\n# checked:\n");
    for line in checked {
        report.push_str(&format!("#   {line}\n"));
    }
    Ok(report)
}

/// Serves `GET /metrics` (OpenMetrics text) on `listener` until aborted. Gauges that
/// describe the ledger (tree size, checkpoint age, open and overdue requests) are read from
/// the store at each scrape.
async fn serve_metrics(listener: TcpListener, store: Store) {
    use hyper::service::service_fn;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let store = store.clone();
            async move {
                let response = if request.uri().path() != "/metrics" {
                    metrics_response(
                        hyper::StatusCode::NOT_FOUND,
                        "text/plain",
                        "only /metrics is served\n".into(),
                    )
                } else {
                    match tokio::task::spawn_blocking(move || scrape(&store)).await {
                        Ok(Ok(text)) => metrics_response(
                            hyper::StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            text,
                        ),
                        _ => metrics_response(
                            hyper::StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "the ledger could not be read\n".into(),
                        ),
                    }
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn metrics_response(
    status: hyper::StatusCode,
    content_type: &'static str,
    body: String,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let mut response = hyper::Response::new(http_body_util::Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// Sets the gauges read from the ledger and renders every metric.
fn scrape(store: &Store) -> Result<String, StoreError> {
    use crate::metrics::RequestLabels;
    use crate::store::RequestScan;
    let metrics = store.metrics();
    let head = store.tree_head()?;
    metrics.tree_size.set(head.size as i64);
    let space = store.disk_space();
    if let Ok(free) = space.free_bytes() {
        metrics
            .disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
    }
    metrics
        .appends_refused_for_space
        .set(i64::from(space.is_refusing()));
    let latest = store.latest_checkpoint()?;
    let now = chrono::Utc::now();
    metrics
        .checkpoint_age_seconds
        .set(latest.as_ref().map_or(-1.0, |c| {
            (now - c.issued_at).num_milliseconds() as f64 / 1000.0
        }));
    metrics
        .entries_after_checkpoint
        .set(head.size.saturating_sub(latest.map_or(0, |c| c.size)) as i64);
    let engine = store.engine_stats()?;
    let state_cache = store.state_cache_usage();
    let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for (gauge, value) in [
        (
            &metrics.storage_pending_compaction_bytes,
            engine.pending_compaction_bytes,
        ),
        (
            &metrics.storage_running_compactions,
            engine.running_compactions,
        ),
        (&metrics.storage_running_flushes, engine.running_flushes),
        (&metrics.storage_memtable_bytes, engine.memtable_bytes),
        (&metrics.storage_table_file_bytes, engine.table_file_bytes),
        (&metrics.storage_block_cache_bytes, engine.block_cache_bytes),
        (
            &metrics.storage_block_cache_capacity_bytes,
            engine.block_cache_capacity_bytes,
        ),
        (
            &metrics.storage_writes_stopped,
            u64::from(engine.writes_stopped),
        ),
        (&metrics.state_cache_bytes, state_cache.0 as u64),
        (&metrics.state_cache_capacity_bytes, state_cache.1 as u64),
    ] {
        gauge.set(bytes(value));
    }
    let today = now.date_naive();
    let mut open: std::collections::HashMap<RequestLabels, (i64, i64)> = Default::default();
    let scan = RequestScan::OpenByDue {
        until: None,
        after: Vec::new(),
    };
    let (requests, _) = store.scan_requests(&scan, usize::MAX, |_| true)?;
    for found in &requests {
        let state = &found.request.state;
        let counts = open
            .entry(RequestLabels {
                kind: state.kind.name(),
                regime: state.regime.name(),
            })
            .or_default();
        counts.0 += 1;
        if state.is_overdue(today) {
            counts.1 += 1;
        }
    }
    metrics.open_requests.clear();
    metrics.overdue_requests.clear();
    for (labels, (open_count, overdue_count)) in open {
        metrics
            .overdue_requests
            .get_or_create(&labels)
            .set(overdue_count);
        metrics.open_requests.get_or_create(&labels).set(open_count);
    }
    Ok(metrics.encode())
}
