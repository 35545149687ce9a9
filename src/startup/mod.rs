//! Building the daemon from its settings and running it until told to stop.

mod backends;
mod serve;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use backends::Backends;
pub use tasks::shutdown_signal;

use crate::api::v1::ApiState;
use crate::api::{self, OpsState};
use crate::appservice::{self, AppserviceState};
use crate::auth::{Auth, KeyAdmin};
use crate::chat::{Chat, ChatParts, Ingest};
use crate::config::Settings;
use crate::error::{InternalCause, MatrixError};
use crate::identity::{Namespace, Puppets};
use crate::live::{Live, RETAINED_MS, Slots};
use crate::matrix::{Homeserver, HomeserverClient};
use crate::store::Stores;
use crate::telemetry;
use serve::ConnectionLimits;

/// How long shutdown waits for requests still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A daemon with its listener bound and its state connected, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    /// How long stored events, transactions and sent messages are kept.
    retention: Duration,
    backends: Backends,
    homeserver: Arc<dyn Homeserver>,
    puppets: Puppets,
    pinged: Arc<AtomicBool>,
    ingest: Arc<Ingest>,
    /// Checks the sessions behind open event streams.
    auth: Auth,
    streams: Arc<Slots>,
    /// Cancelled when the daemon stops (ends event streams and background tasks).
    stop: CancellationToken,
}

/// Key administration over what `settings` names (`chatsender keygen`).
pub async fn key_admin(settings: &Settings) -> anyhow::Result<KeyAdmin> {
    let backends = Backends::connect(settings).await?;
    Ok(KeyAdmin::new(
        backends.stores.keys,
        backends.stores.audit,
        backends.sessions,
        Namespace::of(settings)?,
        Duration::from_secs(settings.auth.session_idle_secs),
    ))
}

impl Application {
    /// Connects the database (running migrations) and the cache, and binds `listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.require_tokens()?;
        let backends = Backends::connect(&settings).await?;
        let stores = &backends.stores;
        let homeserver: Arc<dyn Homeserver> = Arc::new(HomeserverClient::new(
            &settings.homeserver.url,
            &settings.appservice.id,
            settings.appservice.as_token.clone(),
        )?);
        let namespace = Namespace::of(&settings)?;
        let puppets = Puppets::new(namespace.clone(), homeserver.clone(), stores.users.clone());
        let pinged = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        backends
            .live
            .relay(stop.clone())
            .await
            .context("redis.url: cannot subscribe to the live channel")?;
        let ingest = Arc::new(Ingest::new(
            stores.events.clone(),
            stores.rooms.clone(),
            stores.receipts.clone(),
            backends.cache.clone(),
            backends.live.clone(),
            namespace,
            // As long as streams keep events for replay: delivering later is moot.
            Duration::from_millis(RETAINED_MS.unsigned_abs()),
        ));
        let auth = Auth::new(
            stores.keys.clone(),
            stores.audit.clone(),
            backends.cache.clone(),
            backends.sessions.clone(),
            puppets.clone(),
            settings.auth.clone(),
        );
        let streams = Slots::new(
            settings.server.max_streams_per_session,
            settings.server.max_streams_per_user,
            stop.clone(),
        );
        let api = ApiState {
            auth: auth.clone(),
            chat: Chat::new(ChatParts {
                rooms: stores.rooms.clone(),
                receipts: stores.receipts.clone(),
                events: stores.events.clone(),
                users: stores.users.clone(),
                puppets: puppets.clone(),
                homeserver: homeserver.clone(),
                live: backends.live.clone(),
            }),
            live: backends.live.clone(),
            streams: streams.clone(),
            trust_forwarded_for: settings.auth.trust_forwarded_for,
        };
        let appservice = AppserviceState {
            hs_token: settings.appservice.hs_token.clone(),
            ingest: ingest.clone(),
            puppets: puppets.clone(),
        };
        let ops = OpsState {
            store: stores.health.clone(),
            cache: backends.cache.clone(),
            homeserver: homeserver.clone(),
            pinged: pinged.clone(),
            check_timeout: Duration::from_millis(
                settings.database.timeout_ms.max(settings.redis.timeout_ms),
            ),
            metrics: telemetry::metrics_handle(),
        };
        let router = Router::new()
            .merge(appservice::router(appservice))
            .merge(api::v1::router(api))
            .merge(api::ops_router(ops));
        let router = match &settings.web.static_dir {
            // Paths of neither the daemon nor its API are the web client's.
            Some(dir) => {
                let web = api::web::router(dir);
                router.fallback(move |request: axum::extract::Request| async move {
                    if api::web::is_daemon_path(request.uri().path()) {
                        unrecognized(request.method().clone(), request.uri().clone())
                            .await
                            .into_response()
                    } else {
                        web.oneshot(request).await.into_response()
                    }
                })
            }
            None => router.fallback(unrecognized),
        }
        .method_not_allowed_fallback(unrecognized)
        .layer(axum::middleware::map_response(log_internal_error))
        // Spans name the path only: a legacy homeserver sends its token in the query.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // 5xx causes are logged once by `log_internal_error`; a 503 from
                // /ready while starting is no error.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
        tracing::info!(
            address = %listener.local_addr()?,
            database = stores.health.backend(),
            cache = backends.cache.backend(),
            web = ?settings.web.static_dir,
            "listening"
        );
        Ok(Self {
            listener,
            router,
            limits: ConnectionLimits {
                max_connections: settings.server.max_connections,
                header_timeout: Duration::from_secs(settings.server.request_header_timeout_secs),
            },
            retention: Duration::from_secs(u64::from(settings.database.retention_days) * 86_400),
            backends,
            homeserver,
            puppets,
            pinged,
            ingest,
            auth,
            streams,
            stop,
        })
    }

    /// The address actually bound (for `listen: …:0`).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The stores this daemon writes to.
    pub fn stores(&self) -> Stores {
        self.backends.stores.clone()
    }

    /// The homeserver this daemon acts on.
    pub fn homeserver(&self) -> Arc<dyn Homeserver> {
        self.homeserver.clone()
    }

    /// The puppets this daemon acts as.
    pub fn puppets(&self) -> Puppets {
        self.puppets.clone()
    }

    /// This daemon's live streams.
    pub fn live(&self) -> Live {
        self.backends.live.clone()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight (an
    /// appservice transaction being recorded is completed and answered).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        // Events recorded before a crash but not yet fed on are fed first.
        match self.ingest.run_pending().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "fed events left over from the last run"),
            Err(error) => tracing::error!(%error, "could not feed pending events"),
        }
        let ingest = self.ingest.clone();
        let tasks = [
            tokio::spawn(tasks::ping_until_answered(
                self.homeserver.clone(),
                self.pinged.clone(),
                stop.clone(),
            )),
            tokio::spawn(tasks::end_sessions(
                self.auth.clone(),
                self.streams.clone(),
                stop.clone(),
            )),
            tokio::spawn(tasks::prune_streams(
                self.backends.live.clone(),
                stop.clone(),
            )),
            tokio::spawn(tasks::prune_store(
                self.backends.stores.retention.clone(),
                self.retention,
                stop.clone(),
            )),
            tokio::spawn({
                let stop = stop.clone();
                async move { ingest.run(stop).await }
            }),
        ];
        let stopping = stop.clone();
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let served = serve::serve(self.listener, self.router, self.limits, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            // Event streams never finish by themselves: end them.
            stopping.cancel();
            let _ = signalled.send(());
        });
        // A client that stops reading keeps its request open: wait for it only so long.
        let grace = async {
            if on_signal.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = served => {}
            () = grace => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; stopping anyway");
            }
        }
        stop.cancel();
        for task in tasks {
            let _ = task.await;
        }
        // Transactions answered while the server drained are fed before it exits.
        if let Err(error) = self.ingest.run_pending().await {
            tracing::warn!(%error, "could not feed the last events; the next start will");
        }
        Ok(())
    }
}

/// A request's span names its path only: a legacy homeserver sends its token in the
/// query string.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// Any route the daemon does not serve: Matrix's `M_UNRECOGNIZED`.
async fn unrecognized(method: Method, uri: Uri) -> MatrixError {
    MatrixError::unrecognized(format!("unrecognized request: {method} {}", uri.path()))
}

/// Logs the cause of a 500 once, here, rather than where the error is made.
async fn log_internal_error(response: Response) -> Response {
    if let Some(cause) = response.extensions().get::<InternalCause>() {
        tracing::error!(error = %cause, "request failed");
    }
    response
}
