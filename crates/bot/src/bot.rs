//! The [`Bot`]: one calling service client (Graph, or ACS Call Automation), one notification
//! server, one media scheduler, every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use appmedia_media::scheduler::{Scheduler, SchedulerConfig, WorkerPriority};
use appmedia_model::Call as CallResource;
use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenValidator, ClientCredentials, TenantPolicy,
    TokenSource,
};
use appmedia_signalling::callback::{Admission, CallEvent, CallRegistry, CallbackReceiver, FnSink};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_transport::{MediaPort, TransportConfig};
use tokio::sync::mpsc;

use crate::acs::backend::AcsBackend;
use crate::call::{Call, CallControl};
use crate::config::{BotConfig, Service};
use crate::error::BotError;
use crate::exposition::{Exposition, MediaTotals};
use crate::incoming::IncomingCall;
use crate::media::CallMedia;

/// Incoming calls waiting for the bot's code to take them; beyond this a new one is left to
/// Graph's answer deadline (and counted).
const INCOMING_QUEUE: usize = 64;
/// Notifications kept for a call id the bot does not know yet (a create whose 201 has not
/// arrived while its first notifications have), per call and in all.
const PENDING_PER_CALL: usize = 64;
const PENDING_CALLS: usize = 256;
/// How long such notifications wait for their call.
const PENDING_TTL: Duration = Duration::from_secs(30);
/// How long shutdown waits for the notification server's last requests.
const SERVER_STOP: Duration = Duration::from_secs(5);
/// How often missing delta rosters are looked for.
const ROSTER_GAP_POLL: Duration = Duration::from_millis(500);

/// Counters of what the bot did, for logs and health checks.
#[derive(Debug, Default)]
pub struct BotCounters {
    pub calls_created: AtomicU64,
    pub incoming_received: AtomicU64,
    pub incoming_answered: AtomicU64,
    pub incoming_rejected: AtomicU64,
    pub incoming_redirected: AtomicU64,
    /// Incoming calls left unanswered until Graph's deadline ended them.
    pub incoming_expired: AtomicU64,
    /// Incoming calls dropped because the bot's queue was full or it was shutting down.
    pub incoming_dropped: AtomicU64,
    /// Notifications for calls the bot never learnt about (dropped after a while).
    pub orphan_notifications: AtomicU64,
    pub keep_alives_sent: AtomicU64,
    pub keep_alive_failures: AtomicU64,
    /// Rosters the read that goes with each keepAlive found different from the notified one.
    pub roster_corrections: AtomicU64,
    /// Call states read from the service ahead of the notified one.
    pub state_corrections: AtomicU64,
    /// Recording files that stopped on an error (a full disk) while their call went on.
    pub recording_failures: AtomicU64,
    /// The most calls held at once (offers admitted and creates in flight included).
    pub calls_held_peak: AtomicU64,
}

/// A snapshot of the bot's counters plus the notification server's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotStats {
    /// Calls created with `Bot::call` (201 from Graph).
    pub calls_created: u64,
    /// Incoming-call offers received.
    pub incoming_received: u64,
    /// Incoming calls answered.
    pub incoming_answered: u64,
    /// Incoming calls rejected.
    pub incoming_rejected: u64,
    /// Incoming calls redirected.
    pub incoming_redirected: u64,
    /// Incoming calls left unanswered until Graph's deadline ended them.
    pub incoming_expired: u64,
    /// Incoming calls dropped because the bot's queue was full or it was shutting down.
    pub incoming_dropped: u64,
    /// Notifications for calls the bot never learnt about (dropped after a while).
    pub orphan_notifications: u64,
    /// `keepAlive` requests sent for held calls.
    pub keep_alives_sent: u64,
    /// `keepAlive` requests that failed.
    pub keep_alive_failures: u64,
    /// Rosters corrected by the roster read that goes with each `keepAlive`: the service's
    /// roster differed from the one its notifications had built, so notifications were lost
    /// on the way (Graph gives up on one after a few retries).
    pub roster_corrections: u64,
    /// Call states caught up by reading the call from the service while it was not yet
    /// established ([`BotConfig::state_check_interval`](crate::BotConfig::state_check_interval)):
    /// a state notification (`established`, `terminated`) was lost on the way.
    pub state_corrections: u64,
    /// Recording files that stopped on a write error (a full disk) while their call went on
    /// ([`Event::RecordingFailed`](crate::Event::RecordingFailed)).
    pub recording_failures: u64,
    /// Notifications answered 503 because their token's signing keys could not be fetched
    /// (Graph sends them again).
    pub notifications_unchecked: u64,
    /// Notifications refused for a bad or missing token.
    pub notifications_refused: u64,
    /// Notifications answered 404: calls this instance does not hold.
    pub notifications_unknown_call: u64,
    /// New incoming calls answered 503: this instance was draining or full.
    pub notifications_busy: u64,
    /// Calls whose driver is running.
    pub live_calls: usize,
    /// The most calls held at once so far.
    pub calls_held_peak: u64,
}

/// What the service told a call's driver: a Graph notification's event, or an ACS event.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    Graph(CallEvent),
    Acs(appmedia_acs::events::Event),
}

/// Where each notification goes: a known call's driver, the incoming queue, or a short wait
/// for a call whose id the bot learns in a moment.
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) calls: HashMap<String, mpsc::UnboundedSender<Signal>>,
    pending: HashMap<String, (Instant, Vec<Signal>)>,
    /// Incoming offers the admission gate took, until their notification is routed (a slot
    /// of `max_calls` each, so that two offers at once cannot both take the last one).
    offered: HashMap<String, Instant>,
}

/// How long an admitted offer holds its slot if its notification is never routed.
const OFFER_TTL: Duration = Duration::from_secs(5);

impl Routes {
    /// Whether notifications for `call_id` have somewhere to go here.
    pub(crate) fn knows(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
            || self.pending.contains_key(call_id)
            || self.offered.contains_key(call_id)
    }

    /// Calls held: routed ones and admitted offers (expired offers are forgotten).
    pub(crate) fn held(&mut self) -> usize {
        let now = Instant::now();
        self.offered
            .retain(|_, since| now.duration_since(*since) < OFFER_TTL);
        self.calls.len() + self.offered.len()
    }

    /// Holds a slot for an admitted offer.
    pub(crate) fn reserve_offer(&mut self, call_id: String) {
        self.offered.insert(call_id, Instant::now());
    }
}

/// The calling service a bot talks to.
// One per bot: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Graph(GraphClient),
    Acs(AcsBackend),
}

pub(crate) struct BotInner {
    pub(crate) config: BotConfig,
    pub(crate) backend: Backend,
    pub(crate) callback_uri: String,
    /// Where the notification server is bound.
    pub(crate) local_addr: std::net::SocketAddr,
    pub(crate) receiver: CallbackReceiver,
    pub(crate) transport: TransportConfig,
    /// The one UDP port every call's session shares (`media.media_port`).
    pub(crate) media_port: Option<MediaPort>,
    scheduler: Mutex<Option<Scheduler<CallMedia>>>,
    pub(crate) epoch: Instant,
    pub(crate) routes: Mutex<Routes>,
    /// Creates sent whose 201 has not been handled yet (their early notifications wait).
    pub(crate) creates_in_flight: AtomicUsize,
    incoming_tx: mpsc::Sender<IncomingCall>,
    pub(crate) counters: BotCounters,
    pub(crate) shutting_down: AtomicBool,
    /// Live calls' controls, to hang them up on shutdown.
    live: Mutex<HashMap<String, CallControl>>,
    /// The media counters ended calls and finished recordings left (see
    /// [`crate::exposition`]). Lock order: this, then a call's snapshot or recorder slot; a
    /// scrape holds it while it sums the live calls, so a call that ends meanwhile is counted
    /// once, live or ended.
    pub(crate) ended_media: Mutex<MediaTotals>,
    /// The `/metrics` recorder.
    pub(crate) exposition: Exposition,
    /// The roster poller, stopped on shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The notification server and the signal that stops it gracefully.
    server: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

/// A calling bot: places calls, receives them, and runs every call's media on one scheduler.
///
/// Start it with [`Bot::start`]; take incoming calls with [`Bot::next_incoming`]; place calls
/// with [`Bot::call`]; stop it with [`Bot::shutdown`].
pub struct Bot {
    inner: Arc<BotInner>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<IncomingCall>>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("app_id", &self.inner.config.app_id)
            .field("callback_uri", &self.inner.callback_uri)
            .finish()
    }
}

impl Bot {
    /// Validates `config`, binds the notification server, starts the media workers and the
    /// Graph client. Must run inside a tokio runtime.
    pub async fn start(config: BotConfig) -> Result<Bot, BotError> {
        config.validate()?;
        appmedia_signalling::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| BotError::Listen {
                addr: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| BotError::Listen {
            addr: config.listen,
            source,
        })?;
        let callback_uri = config
            .instance_callback_url()
            .unwrap_or_else(|| format!("http://{bound}/callback"));
        // The route is the public URL's path: a proxy in front may change the host, not the path.
        let path = url::Url::parse(&callback_uri)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/callback".into());
        let (backend, auth) = match &config.service {
            Service::Acs(acs) => {
                let identity = (!config.app_id.is_empty()).then(|| {
                    (
                        config.app_id.clone(),
                        config.tenant.clone(),
                        config.credential.clone(),
                    )
                });
                let backend = AcsBackend::new(acs, identity, &callback_uri, bound)?;
                // The Graph notification route is not served on an ACS bot: its receiver only
                // keeps the calls' rosters, and never checks a token.
                let auth = CallbackAuth::disabled_for_loopback(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    0,
                )))
                .map_err(|e| BotError::Protocol(e.to_string()))?;
                (Backend::Acs(backend), auth)
            }
            _ => {
                let (client, validator) = graph_client(&config)?;
                (
                    Backend::Graph(client),
                    CallbackAuth::validate(Arc::new(validator)),
                )
            }
        };
        let scheduler = Scheduler::start(SchedulerConfig {
            workers: config.media.workers,
            realtime: config.media.realtime,
            ..SchedulerConfig::default()
        })?;
        if config.media.realtime.is_some() {
            report_worker_priority(&scheduler).await;
        }
        let epoch = scheduler.epoch();
        let transport = TransportConfig {
            bind_ip: config.media.bind_ip,
            public_ip: config.media.public_ip,
            port_range: config.media.port_range.clone(),
            ice_lite: config.media.ice_lite,
            ..TransportConfig::default()
        };
        let media_port = match config.media.media_port {
            Some(port) => Some(MediaPort::bind(&transport, port)?),
            None => None,
        };
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let inner = Arc::new_cyclic(|weak: &Weak<BotInner>| {
            let routed = weak.clone();
            let sink = FnSink(move |event: CallEvent| {
                if let Some(inner) = routed.upgrade() {
                    inner.route(event);
                }
            });
            let gate = weak.clone();
            let receiver = CallbackReceiver::new(auth, Arc::new(CallRegistry::default()), sink)
                .with_gate(move |batch| match gate.upgrade() {
                    Some(inner) => inner.admit(batch),
                    // Stopping: nothing is held here any more.
                    None => Admission::UnknownCall,
                });
            BotInner {
                config,
                backend,
                callback_uri,
                local_addr: bound,
                receiver,
                transport,
                media_port,
                scheduler: Mutex::new(Some(scheduler)),
                epoch,
                routes: Mutex::new(Routes::default()),
                creates_in_flight: AtomicUsize::new(0),
                incoming_tx,
                counters: BotCounters::default(),
                shutting_down: AtomicBool::new(false),
                live: Mutex::new(HashMap::new()),
                ended_media: Mutex::new(MediaTotals::default()),
                exposition: Exposition::new(),
                tasks: Mutex::new(Vec::new()),
                server: Mutex::new(None),
            }
        });
        let serving = inner.receiver.clone();
        let mut app = match &inner.backend {
            Backend::Graph(_) => serving.router(&path),
            Backend::Acs(_) => AcsBackend::router(&inner, &path),
        }
        .merge(crate::instance::router(&inner));
        // The application's shared calling webhook, balanced over the instances by a proxy.
        if let Some(shared) = inner.config.webhook_path().filter(|shared| *shared != path) {
            app = app.merge(match &inner.backend {
                Backend::Graph(_) => serving.router(&shared),
                Backend::Acs(_) => AcsBackend::router(&inner, &shared),
            });
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = serving.serve_router_until(listener, app, shutdown).await {
                tracing::error!(error = %e, "notification server stopped");
            }
        });
        *lock(&inner.server) = Some((stop, server));
        let poller = inner.receiver.spawn_gap_poller(ROSTER_GAP_POLL);
        lock(&inner.tasks).push(poller);
        tracing::info!(callback = %inner.callback_uri, %bound, "bot started");
        Ok(Bot {
            inner,
            incoming: tokio::sync::Mutex::new(incoming_rx),
        })
    }

    /// The URL Graph posts this bot's notifications to (every call's `callbackUri`).
    pub fn callback_uri(&self) -> &str {
        &self.inner.callback_uri
    }

    /// The address the notification server is bound to (with `listen` port 0, the port the
    /// system chose). A reverse proxy or tunnel in front forwards the public callback URL here.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner.local_addr
    }

    /// The Graph client, for requests the SDK does not wrap (`None` on the ACS backend).
    pub fn client(&self) -> Option<&GraphClient> {
        match &self.inner.backend {
            Backend::Graph(client) => Some(client),
            Backend::Acs(_) => None,
        }
    }

    /// What the ACS backend refused or dropped (`None` on Graph).
    pub fn acs_counters(&self) -> Option<&crate::acs::AcsCounters> {
        self.inner.acs().map(|acs| &acs.counters)
    }

    /// The ACS Call Automation client, for requests the SDK does not wrap (`None` on Graph).
    pub fn acs_client(&self) -> Option<&appmedia_acs::AcsClient> {
        self.inner.acs().map(|acs| &acs.client)
    }

    /// The configuration the bot runs with.
    pub fn config(&self) -> &BotConfig {
        &self.inner.config
    }

    /// The media scheduler's epoch: every call's media time is counted from it. A call's
    /// [`MediaSnapshot::first_tick`](crate::MediaSnapshot::first_tick) after this instant is
    /// when sample 0 of a recording started with the call was heard — what a latency
    /// measurement against another clock (a party's mouth) needs.
    pub fn media_epoch(&self) -> Instant {
        self.inner.epoch
    }

    /// Places a call. `request` is a create-call body from the signalling crate's builders
    /// ([`appmedia_signalling::builders`]); its `callbackUri` is replaced by the bot's. With
    /// app-hosted media (an `appHostedMediaConfig`, whatever blob it holds) the SDK makes the
    /// media session and puts its blob in; `media` says how. Returns once the service answered
    /// 201; state changes follow as events.
    pub async fn call(
        &self,
        request: CallResource,
        media: crate::media::MediaOptions,
    ) -> Result<Call, BotError> {
        crate::outgoing::place(&self.inner, request, media).await
    }

    /// The next incoming call; `None` once the bot shuts down. Answer, reject or redirect it
    /// within Graph's 15 s deadline.
    pub async fn next_incoming(&self) -> Option<IncomingCall> {
        self.incoming.lock().await.recv().await
    }

    /// The media scheduler's counters: calls per worker, ticks and late ticks, tick and send
    /// time distributions (`None` once the bot has shut down).
    pub fn media_stats(&self) -> Option<appmedia_media::scheduler::SchedulerStats> {
        lock(&self.inner.scheduler).as_ref().map(|s| s.stats())
    }

    /// The shared media port's address and counters (`media.media_port`; `None` without one).
    pub fn media_port(&self) -> Option<(std::net::SocketAddr, appmedia_transport::PortStats)> {
        self.inner
            .media_port
            .as_ref()
            .map(|p| (p.local_addr(), p.stats()))
    }

    /// What the bot has done so far.
    pub fn stats(&self) -> BotStats {
        stats_of(&self.inner)
    }

    /// This instance's id (see [`BotConfig::instance_id`]).
    pub fn instance_id(&self) -> &str {
        &self.inner.config.instance_id
    }

    /// Whether this instance takes new calls now (what `/readyz` answers): not shutting down
    /// and below [`BotConfig::max_calls`].
    pub fn is_ready(&self) -> bool {
        self.inner.ready()
    }

    /// Drains the bot: [`shutdown`](Self::shutdown) with [`BotConfig::drain_timeout`] — not
    /// ready at once, no new calls, the calls it holds may end by themselves until the
    /// deadline. What an instance does on SIGTERM (see [`terminated`](crate::terminated)).
    pub async fn drain(self) -> BotStats {
        let deadline = self.inner.config.drain_timeout;
        tracing::info!(instance = %self.instance_id(), ?deadline, "draining");
        self.shutdown(Some(deadline)).await
    }

    /// Stops the bot: takes no new calls (incoming ones are left to expire), then either hangs
    /// every call up at once (`drain = None`) or lets calls end by themselves for up to
    /// `drain` and hangs up the rest. Every recording is finished before this returns; the
    /// media workers and the notification server are stopped last.
    pub async fn shutdown(self, drain: Option<Duration>) -> BotStats {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.incoming.lock().await.close();
        if let Some(drain) = drain {
            let deadline = tokio::time::Instant::now() + drain;
            while !lock(&self.inner.live).is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for call in self.inner.live_controls() {
            if let Err(e) = call.hang_up().await {
                tracing::warn!(call = %call.id(), error = %e, "hang-up on shutdown failed");
            }
        }
        let stats = self.stats();
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let server = lock(&self.inner.server).take();
        if let Some((stop, server)) = server {
            let _ = stop.send(());
            // Requests in flight finish; a stuck one does not hold the shutdown forever.
            if tokio::time::timeout(SERVER_STOP, server).await.is_err() {
                tracing::warn!("the notification server did not stop in time");
            }
        }
        let scheduler = lock(&self.inner.scheduler).take();
        if let Some(scheduler) = scheduler {
            // Joining the workers blocks; keep it off the async threads.
            let _ = tokio::task::spawn_blocking(move || scheduler.shutdown()).await;
        }
        tracing::info!(?stats, "bot stopped");
        stats
    }
}

pub(crate) fn stats_of(inner: &BotInner) -> BotStats {
    let c = &inner.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let receiver = inner.receiver.stats();
    BotStats {
        calls_created: get(&c.calls_created),
        incoming_received: get(&c.incoming_received),
        incoming_answered: get(&c.incoming_answered),
        incoming_rejected: get(&c.incoming_rejected),
        incoming_redirected: get(&c.incoming_redirected),
        incoming_expired: get(&c.incoming_expired),
        incoming_dropped: get(&c.incoming_dropped),
        orphan_notifications: get(&c.orphan_notifications),
        keep_alives_sent: get(&c.keep_alives_sent),
        keep_alive_failures: get(&c.keep_alive_failures),
        roster_corrections: get(&c.roster_corrections),
        state_corrections: get(&c.state_corrections),
        recording_failures: get(&c.recording_failures),
        notifications_unchecked: receiver.keys_unavailable,
        notifications_refused: receiver.unauthorized,
        notifications_unknown_call: receiver.unknown_call,
        notifications_busy: receiver.busy,
        live_calls: lock(&inner.live).len(),
        calls_held_peak: get(&c.calls_held_peak),
    }
}

impl BotInner {
    /// Hands one event to whoever waits for it.
    fn route(self: &Arc<Self>, event: CallEvent) {
        if let CallEvent::Incoming { call_id, call } = event {
            self.counters
                .incoming_received
                .fetch_add(1, Ordering::Relaxed);
            if self.shutting_down.load(Ordering::SeqCst) {
                lock(&self.routes).offered.remove(&call_id);
                self.counters
                    .incoming_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(call = %call_id, "incoming call left to expire: shutting down");
                return;
            }
            let incoming = IncomingCall::new(self.clone(), call_id.clone(), *call);
            if self.incoming_tx.try_send(incoming).is_err() {
                self.counters
                    .incoming_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(call = %call_id, "incoming call dropped: nobody takes incoming calls fast enough");
            }
            return;
        }
        let Some(call_id) = event.call_id().map(str::to_owned) else {
            self.counters
                .orphan_notifications
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.route_signal(call_id, Signal::Graph(event));
    }

    /// Hands an ACS event to its call's driver (or keeps it a moment for a call being set up).
    pub(crate) fn route_acs(&self, event: appmedia_acs::events::Event) {
        self.route_signal(event.call_connection_id.clone(), Signal::Acs(event));
    }

    /// A call offered through Event Grid, to the incoming queue.
    pub(crate) fn offer_acs(self: &Arc<Self>, data: appmedia_acs::events::IncomingCallData) {
        self.counters
            .incoming_received
            .fetch_add(1, Ordering::Relaxed);
        if self.shutting_down.load(Ordering::SeqCst) {
            self.counters
                .incoming_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let incoming = IncomingCall::new_acs(self.clone(), data);
        if self.incoming_tx.try_send(incoming).is_err() {
            self.counters
                .incoming_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("incoming ACS call dropped: nobody takes incoming calls fast enough");
        }
    }

    fn route_signal(&self, call_id: String, event: Signal) {
        let mut routes = lock(&self.routes);
        if let Some(tx) = routes.calls.get(&call_id) {
            // A driver that has just finished dropped its receiver: the event is moot.
            let _ = tx.send(event);
            return;
        }
        let now = Instant::now();
        let before = routes.pending.len();
        routes
            .pending
            .retain(|_, (since, _)| now.duration_since(*since) < PENDING_TTL);
        let expired = before - routes.pending.len();
        if routes.pending.len() >= PENDING_CALLS && !routes.pending.contains_key(&call_id) {
            self.counters
                .orphan_notifications
                .fetch_add(1 + expired as u64, Ordering::Relaxed);
            return;
        }
        self.counters
            .orphan_notifications
            .fetch_add(expired as u64, Ordering::Relaxed);
        let (_, events) = routes.pending.entry(call_id).or_insert((now, Vec::new()));
        if events.len() < PENDING_PER_CALL {
            events.push(event);
        } else {
            self.counters
                .orphan_notifications
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A call's event channel, with whatever arrived for it before.
    pub(crate) fn register(&self, call_id: &str) -> mpsc::UnboundedReceiver<Signal> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = lock(&self.routes);
        if let Some((_, early)) = routes.pending.remove(call_id) {
            for event in early {
                let _ = tx.send(event);
            }
        }
        routes.offered.remove(call_id);
        routes.calls.insert(call_id.to_owned(), tx);
        rx
    }

    /// Forgets a call: its routes, its roster and state in the registry, its control.
    pub(crate) fn unregister(&self, call_id: &str) {
        lock(&self.routes).calls.remove(call_id);
        self.receiver.registry().remove(call_id);
        lock(&self.live).remove(call_id);
    }

    pub(crate) fn add_live(&self, control: &CallControl) {
        lock(&self.live).insert(control.id().to_owned(), control.clone());
    }

    /// The live calls' controls, copied out of the lock.
    pub(crate) fn live_controls(&self) -> Vec<CallControl> {
        lock(&self.live).values().cloned().collect()
    }

    /// Call ticks the media scheduler ran and how many finished late (0, 0 once stopped).
    pub(crate) fn tick_counts(&self) -> (u64, u64) {
        match lock(&self.scheduler).as_ref().map(Scheduler::stats) {
            Some(stats) => (stats.ticks(), stats.late_ticks()),
            None => (0, 0),
        }
    }

    /// Puts a call's media on a worker.
    pub(crate) fn schedule(
        &self,
        media: CallMedia,
    ) -> Result<appmedia_media::scheduler::CallHandle, BotError> {
        match lock(&self.scheduler).as_ref() {
            Some(scheduler) => Ok(scheduler.add(media)?),
            None => Err(BotError::ShuttingDown),
        }
    }

    /// The Graph client, or why this bot has none.
    pub(crate) fn graph(&self, capability: &'static str) -> Result<&GraphClient, BotError> {
        match &self.backend {
            Backend::Graph(client) => Ok(client),
            Backend::Acs(_) => Err(BotError::Unsupported {
                backend: "acs",
                capability,
            }),
        }
    }

    /// The ACS backend, on an ACS bot.
    pub(crate) fn acs(&self) -> Option<&AcsBackend> {
        match &self.backend {
            Backend::Acs(acs) => Some(acs),
            Backend::Graph(_) => None,
        }
    }

    pub(crate) fn check_running(&self) -> Result<(), BotError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Err(BotError::ShuttingDown)
        } else {
            Ok(())
        }
    }
}

/// The Graph client and the notification token validator of a Graph bot.
fn graph_client(config: &BotConfig) -> Result<(GraphClient, CallbackTokenValidator), BotError> {
    let (graph_url, authority, scope, openid, issuers) = match &config.service {
        Service::Graph(cloud) => (
            cloud.graph_base_url(),
            format!("https://{}", cloud.login_host()),
            cloud.graph_scope(),
            None,
            Vec::new(),
        ),
        Service::Custom {
            graph_url,
            authority_url,
            notification_openid_url,
            notification_issuers,
        } => (
            graph_url.clone(),
            authority_url.as_str().trim_end_matches('/').to_owned(),
            "https://graph.microsoft.com/.default".to_owned(),
            Some(notification_openid_url.clone()),
            notification_issuers.clone(),
        ),
        Service::Acs(_) => {
            return Err(BotError::Unsupported {
                backend: "acs",
                capability: "a Graph client",
            });
        }
    };
    let mut auth = CallbackAuthConfig::new(
        &config.app_id,
        TenantPolicy::Only(vec![config.tenant.clone()]),
    );
    if let Some(openid) = openid {
        auth.openid_configuration_url = openid;
    }
    if !issuers.is_empty() {
        auth.issuers = issuers;
    }
    let validator = CallbackTokenValidator::new(auth)
        .map_err(|e| BotError::Protocol(format!("notification token validator: {e}")))?;
    let credentials = ClientCredentials::for_authority(
        &authority,
        &config.tenant,
        &config.app_id,
        config.credential.clone(),
        scope,
    )
    .map_err(|e| {
        BotError::Config(crate::config::ConfigError::Invalid {
            field: "service.authority_url",
            var: crate::config::env::AUTHORITY_URL,
            value: authority.clone(),
            reason: e.to_string(),
        })
    })?;
    let tokens = TokenSource::client_credentials(credentials, Duration::from_secs(10))
        .map_err(|e| BotError::Protocol(format!("token source: {e}")))?;
    let client = GraphClient::new(GraphClientConfig::for_base_url(graph_url), tokens)?;
    Ok((client, validator))
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a single map operation).
/// Logs the priority the media workers got once each has started (within a second): a
/// refused real-time policy is a warning, since the workers then run at normal priority.
async fn report_worker_priority(scheduler: &Scheduler<CallMedia>) {
    let asked = |w: &appmedia_media::scheduler::WorkerStats| w.priority != WorkerPriority::Normal;
    let mut workers = scheduler.stats().workers;
    for _ in 0..50 {
        if workers.iter().all(asked) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        workers = scheduler.stats().workers;
    }
    for w in &workers {
        match w.priority {
            WorkerPriority::Realtime(_) => {
                tracing::info!(worker = w.worker, priority = %w.priority, "media worker priority")
            }
            _ => tracing::warn!(
                worker = w.worker,
                priority = %w.priority,
                "media worker not at the real-time priority asked for (needs root, CAP_SYS_NICE or RLIMIT_RTPRIO); ticks may be late near the codec's limit"
            ),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
