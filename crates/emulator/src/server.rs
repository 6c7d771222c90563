//! Layer 4 of the emulator (`docs/architecture.md`): the running [`Emulator`]. It builds the
//! shared state, starts the listener and assembles the router from the HTTP routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use appmedia_audio_io::clip::AudioClip;
use appmedia_emulator_media::realtime::ConferenceScheduler;
use appmedia_media::scheduler::SchedulerConfig;
use appmedia_signalling::auth::{PublishedKeys, TokenIssuer};
use axum::Router;
use tokio::sync::oneshot;

use crate::calls::Shared;
use crate::conference::service_media::{CallMedia, PartyMedia};
use crate::config::EmulatorConfig;
use crate::directory::Directory;
use crate::error::ApiError;
use crate::notify::{DeliveryStats, Notifier};
use crate::shapes;
use crate::tokens::GraphTokens;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A signing key could not be made.
    #[error("signing key: {0}")]
    Key(#[from] appmedia_signalling::auth::IssuerError),
    /// A file a party speaks could not be read.
    #[error("media sample {path}: {reason}")]
    MediaSample {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The conference media scheduler could not start.
    #[error("conference scheduler: {0}")]
    Scheduler(appmedia_media::scheduler::SchedulerError),
    /// The HTTP client for notifications could not be built.
    #[error(transparent)]
    Http(#[from] appmedia_signalling::HttpClientError),
    /// The ACS listener's certificates could not be made or written.
    #[error("ACS listener: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The per-run directory of the CA certificate could not be made.
    #[error("ACS listener: cannot create {path}: {source}")]
    CaDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How to reach the emulator's ACS Call Automation resource (the ready line's `"acs"`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AcsInfo {
    /// `https://127.0.0.1:{port}/`.
    pub endpoint: String,
    /// `endpoint=…;accesskey=…`, with this run's key.
    pub connection_string: String,
    /// The PEM of the CA to trust for the endpoint.
    pub ca_cert: PathBuf,
    /// The resource's own phone number.
    pub phone_number: String,
    /// The OpenID configuration naming the keys of the event tokens.
    pub events_openid_url: String,
    /// `iss` of the event tokens.
    pub events_issuer: String,
    /// `aud` of the event tokens: the resource's id.
    pub events_audience: String,
}

/// A running emulator. Dropping it stops the listener.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    acs: AcsInfo,
    acs_shutdown: Option<oneshot::Sender<()>>,
    acs_server: tokio::task::JoinHandle<()>,
    /// The per-run directory made for the CA certificate, removed with the emulator.
    temp_dir: Option<PathBuf>,
}

impl Emulator {
    /// Binds, generates the signing keys and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        // A missing or unreadable sample is a setup error, reported before anything listens.
        let mut clips = HashMap::new();
        for file in config.directory.spoken_files() {
            let path = config.media_samples_dir.join(file);
            let clip = AudioClip::open(&path).map_err(|e| EmulatorError::MediaSample {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            clips.insert(file.to_owned(), clip);
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        // RSA key generation is CPU work; keep it off the async workers.
        let (graph_issuer, notification_issuer, acs_issuer, certificates) =
            tokio::task::spawn_blocking(|| {
                Ok::<_, EmulatorError>((
                    TokenIssuer::generate(format!("emulator-graph-{}", uuid::Uuid::new_v4()))?,
                    TokenIssuer::generate(format!("emulator-notify-{}", uuid::Uuid::new_v4()))?,
                    TokenIssuer::generate(format!("emulator-acs-{}", uuid::Uuid::new_v4()))?,
                    crate::tls::RunCertificates::generate()?,
                ))
            })
            .await
            .map_err(|e| {
                EmulatorError::Key(appmedia_signalling::auth::IssuerError::Generate(
                    e.to_string(),
                ))
            })??;
        // The ACS listener: same address, its own port, HTTPS with this run's certificate.
        let acs_listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind.ip(), 0))
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let acs_addr = acs_listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let acs_host = if acs_addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), acs_addr.port())
        } else {
            acs_addr
        };
        let acs_endpoint = format!("https://{acs_host}/");
        let (ca_dir, temp_dir) = match config.acs_ca_dir.clone().or(config.recordings_dir.clone()) {
            Some(dir) => (dir, None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "appmedia-emulator-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::create_dir_all(&dir).map_err(|source| EmulatorError::CaDir {
                    path: dir.clone(),
                    source,
                })?;
                (dir.clone(), Some(dir))
            }
        };
        let ca_cert = certificates.write_ca(&ca_dir)?;
        let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        let resource = crate::acs::AcsResource {
            access_key: appmedia_acs::hmac::AccessKey::from_bytes(key),
            phone_number: config.acs_phone_number.clone(),
            resource_id: uuid::Uuid::new_v4().to_string(),
        };
        let acs_keys = PublishedKeys::new();
        acs_keys.publish(&acs_issuer);
        let acs = AcsInfo {
            connection_string: format!(
                "endpoint={acs_endpoint};accesskey={}",
                resource.access_key.to_base64()
            ),
            endpoint: acs_endpoint.clone(),
            ca_cert,
            phone_number: resource.phone_number.clone(),
            events_openid_url: format!(
                "{}{}",
                acs_endpoint.trim_end_matches('/'),
                appmedia_signalling::auth::OPENID_CONFIGURATION_PATH
            ),
            events_issuer: crate::acs::EVENTS_ISSUER.to_owned(),
            events_audience: resource.resource_id.clone(),
        };
        let acs_events = Arc::new(crate::calls::acs::events::AcsEvents::new(
            acs_issuer,
            resource.resource_id.clone(),
        )?);
        let gateways = crate::conference::acs_media::GatewayScheduler::start(SchedulerConfig {
            workers: 1,
            ..SchedulerConfig::default()
        })
        .map_err(EmulatorError::Scheduler)?;
        let acs_state =
            crate::calls::acs::AcsState::new(resource, acs_endpoint, acs_events, gateways);
        let notification_keys = PublishedKeys::new();
        notification_keys.publish(&notification_issuer);
        let notifier = Arc::new(Notifier::new(
            notification_issuer,
            config.notification_issuer.clone(),
            config.retry,
        )?);
        // One worker: a conference tick is well under a millisecond, and the machine is shared.
        let conferences = ConferenceScheduler::start(SchedulerConfig {
            workers: 1,
            ..SchedulerConfig::default()
        })
        .map_err(EmulatorError::Scheduler)?;
        let shared = Arc::new(Shared {
            tokens: GraphTokens::new(graph_issuer, base_url.clone(), config.token_lifetime),
            notifier,
            base_url,
            calls: Mutex::new(HashMap::new()),
            clips,
            conferences,
            responses: Arc::new(crate::conference::service_actions::ResponseStore::new(
                config.recordings_dir.clone(),
            )),
            transferred: Default::default(),
            prompt_library: Default::default(),
            softphones: Default::default(),
            softphone_key: uuid::Uuid::new_v4().simple().to_string(),
            incoming: crate::calls::incoming::IncomingState::new(&config.directory),
            book: Default::default(),
            acs: acs_state,
            config,
        });
        crate::calls::incoming::schedule_scripted(&shared);
        let app = router(shared.clone(), &notification_keys);
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator listener failed");
            }
        });
        let acs_app = crate::http::acs::router(shared.clone())
            .merge(acs_keys.router(crate::acs::EVENTS_ISSUER))
            .fallback(|| async {
                crate::acs::AcsApiError::not_found("no such resource in the emulated ACS API")
            });
        let (acs_tx, acs_rx) = oneshot::channel::<()>();
        let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config.clone());
        let acs_server = tokio::spawn(serve_tls(acs_listener, acceptor, acs_app, acs_rx));
        tracing::info!(%addr, acs = %acs.endpoint, "Graph calling emulator listening");
        Ok(Emulator {
            addr,
            shared,
            shutdown: Some(tx),
            server,
            acs,
            acs_shutdown: Some(acs_tx),
            acs_server,
            temp_dir,
        })
    }

    /// The ACS Call Automation resource: endpoint, connection string, CA, phone number.
    pub fn acs(&self) -> &AcsInfo {
        &self.acs
    }

    /// The live ACS call connections' ids.
    pub fn acs_calls(&self) -> Vec<String> {
        self.shared.acs.call_ids()
    }

    /// The audio-stream counters of live ACS call `call_connection_id`.
    pub fn acs_stream_stats(
        &self,
        call_connection_id: &str,
    ) -> Option<crate::conference::acs_media::StreamStats> {
        self.shared.acs.stream_stats(call_connection_id)
    }

    /// The media timeline of live ACS call connection `call_connection_id`, as
    /// [`Emulator::call_media`] gives a Graph call's: per party (its raw id as
    /// `participant_id`), when its first audible sample entered the call.
    pub fn acs_call_media(&self, call_connection_id: &str) -> Option<CallMedia> {
        let parties = self.shared.acs.timeline(call_connection_id)?;
        Some(CallMedia {
            parties: parties
                .into_iter()
                .map(|(participant_id, source_id, first_audio_at)| PartyMedia {
                    participant_id,
                    source_id,
                    first_audio_at,
                })
                .collect(),
        })
    }

    /// ACS event delivery counters.
    pub fn acs_delivery_stats(&self) -> Arc<crate::calls::acs::events::AcsDeliveryStats> {
        self.shared.acs.events.stats().clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service root, e.g. `http://127.0.0.1:8642`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The web softphone page, with this run's key: `{base}/softphone?key=…` (the page's
    /// WebSocket is refused without it).
    pub fn softphone_url(&self) -> String {
        format!(
            "{}/softphone?key={}",
            self.shared.base_url, self.shared.softphone_key
        )
    }

    /// This run's softphone key (see [`softphone_url`](Self::softphone_url)).
    pub fn softphone_key(&self) -> &str {
        &self.shared.softphone_key
    }

    /// The Graph root: `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.shared.base_url)
    }

    /// The control API's root, `{base}/control` (`crate::http::control`): calling webhooks,
    /// incoming calls, the emulator's view of every call.
    pub fn control_url(&self) -> String {
        format!("{}/control", self.shared.base_url)
    }

    /// Where the OAuth2 host is (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn authority_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The token endpoint of `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base_url)
    }

    /// The OpenID configuration document naming the keys of notification tokens.
    pub fn notification_openid_configuration_url(&self) -> String {
        format!(
            "{}{}",
            self.shared.base_url,
            appmedia_signalling::auth::OPENID_CONFIGURATION_PATH
        )
    }

    /// The issuer written into notification tokens.
    pub fn notification_issuer(&self) -> &str {
        self.shared.notifier.issuer_name()
    }

    /// The directory in use.
    pub fn directory(&self) -> &Directory {
        self.shared.directory()
    }

    /// Notification delivery counters.
    pub fn delivery_stats(&self) -> Arc<DeliveryStats> {
        self.shared.notifier.stats().clone()
    }

    /// The media timeline of live call `call_id` (app- or service-hosted media; `None` for
    /// an unknown call or one without media): per party in the roster, the [`std::time::Instant`]
    /// its first audible sample entered the conference ("mouth"), on the process clock, for
    /// mouth-to-ear latency. Ask before hanging up: a terminated call is forgotten.
    pub fn call_media(&self, call_id: &str) -> Option<CallMedia> {
        let calls = self.shared.calls();
        let record = calls.get(call_id)?;
        let timeline = record.timeline()?;
        let parties = record
            .participants
            .iter()
            .filter_map(|p| {
                let source_id = shapes::source_id_of(p)
                    .filter(|&s| s != crate::conference::media::BOT_SOURCE_ID)?;
                Some(PartyMedia {
                    participant_id: p.id.value().cloned().unwrap_or_default(),
                    source_id,
                    first_audio_at: timeline.first_audio(source_id),
                })
            })
            .collect();
        Some(CallMedia { parties })
    }

    /// Sets application `app_id`'s calling webhook, as `PUT {control_url}/applications/{appId}/
    /// calling-webhook` does: incoming calls to the application are offered there.
    pub fn set_calling_webhook(&self, app_id: &str, url: &str) -> Result<(), ApiError> {
        let app = self
            .directory()
            .application(app_id)
            .map(|a| a.id.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("application {app_id} is not in the directory"))
            })?;
        crate::directory::check_webhook(url)
            .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
        self.shared
            .incoming()
            .set_webhook(&app, Some(url.to_owned()));
        Ok(())
    }

    /// The counters of the scheduler that ticks every call's media on the service's side
    /// (conferences of app- and service-hosted calls): ticks, late ticks, tick times.
    pub fn media_stats(&self) -> appmedia_media::scheduler::SchedulerStats {
        self.shared.conferences.stats()
    }

    /// How many calls are live.
    pub fn live_calls(&self) -> usize {
        self.shared.calls().len()
    }

    /// How many conversations the bot transferred away still run ([`crate::conference::transferred`]).
    pub fn transferred_calls(&self) -> usize {
        self.shared.transferred.live()
    }

    /// The open softphone pages (`GET /softphone`): who they are, the call they are in, the
    /// browser's latest audio report.
    pub fn softphones(&self) -> Vec<crate::calls::softphones::SoftphoneStatus> {
        self.shared.softphones.status()
    }

    /// Stops accepting requests and waits for the listener to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.acs_shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        let _ = (&mut self.acs_server).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.acs_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown`: each connection's handshake (bounded
/// in time) and HTTP/1 exchanges run on their own task.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "ACS listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "ACS listener: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "ACS listener: connection ended with an error");
            }
        });
    }
}

fn router(shared: Arc<Shared>, notification_keys: &PublishedKeys) -> Router {
    let graph = crate::http::calls::routes()
        .merge(crate::http::actions::routes())
        .merge(crate::http::prompts::routes())
        .merge(crate::http::incoming::routes())
        .merge(crate::http::online_meetings::routes())
        .fallback(crate::http::not_found)
        .with_state(shared.clone());
    // The notification issuer's OpenID document and JWKS live at the root, where
    // `PublishedKeys` serves them.
    graph
        .merge(notification_keys.router(&shared.config.notification_issuer))
        .merge(crate::http::softphone::router(shared.clone()))
        .merge(crate::http::control::router(shared.clone()))
}
