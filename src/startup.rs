//! Building the daemon from its settings and running it until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{Method, Uri};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::api::v1::ApiState;
use crate::api::{self, OpsState};
use crate::appservice::{self, AppserviceError, AppserviceState};
use crate::auth::Auth;
use crate::cache;
use crate::chat::index::{Ingest, Namespace};
use crate::chat::{Chat, Puppets};
use crate::config::Settings;
use crate::live::{LiveBus, RedisBus, StoreBus};
use crate::matrix::{Homeserver, HomeserverClient};
use crate::store::{self, Store};
use crate::telemetry;

/// How long shutdown waits for requests still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest wait between two start-up pings of the homeserver.
const PING_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A daemon with its listener bound and its state connected, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    homeserver: Arc<dyn Homeserver>,
    store: Arc<dyn Store>,
    pinged: Arc<AtomicBool>,
    bus: Arc<dyn LiveBus>,
    ingest: Arc<Ingest>,
    /// Cancelled when the daemon stops (ends event streams and background tasks).
    stop: CancellationToken,
}

impl Application {
    /// Connects the database (running migrations) and the cache, and binds `listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.require_tokens()?;
        let store = store::connect(&settings.database).await?;
        let cache = cache::connect(&settings.redis).await?;
        let homeserver: Arc<dyn Homeserver> = Arc::new(HomeserverClient::new(
            &settings.homeserver.url,
            &settings.appservice.id,
            settings.appservice.as_token.clone(),
        )?);
        let pinged = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let bus: Arc<dyn LiveBus> = match &settings.redis.url {
            Some(url) => Arc::new(
                RedisBus::connect(url, &settings.redis.key_prefix, stop.clone())
                    .await
                    .context("redis.url: cannot subscribe to the live channel")?,
            ),
            None => Arc::new(StoreBus::new(store.clone())),
        };
        let namespace = Namespace {
            user_prefix: settings.appservice.user_prefix.clone(),
            server_name: settings.homeserver.server_name.to_string(),
        };
        let ingest = Arc::new(Ingest::new(
            store.clone(),
            cache.clone(),
            bus.clone(),
            namespace,
        ));
        let puppets = Puppets::new(
            homeserver.clone(),
            store.clone(),
            settings.homeserver.server_name.clone(),
            settings.appservice.user_prefix.clone(),
        );
        let api = ApiState {
            auth: Auth::new(store.clone(), cache.clone(), puppets, settings.auth.clone()),
            chat: Chat::new(store.clone(), homeserver.clone()),
            store: store.clone(),
            bus: bus.clone(),
            trust_forwarded_for: settings.auth.trust_forwarded_for,
            shutdown: stop.clone(),
        };
        let appservice = AppserviceState {
            hs_token: settings.appservice.hs_token.clone(),
            bot_user_id: settings
                .appservice
                .bot_user_id(&settings.homeserver.server_name)?,
            store: store.clone(),
            ingest: ingest.clone(),
        };
        let ops = OpsState {
            store: store.clone(),
            cache: cache.clone(),
            homeserver: homeserver.clone(),
            pinged: pinged.clone(),
            metrics: telemetry::metrics_handle(),
        };
        let router = Router::new()
            .merge(appservice::router(appservice))
            .merge(api::v1::router(api))
            .merge(api::ops_router(ops))
            .fallback(unrecognized)
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
            database = store.backend(),
            cache = cache.backend(),
            "listening"
        );
        Ok(Self {
            listener,
            router,
            homeserver,
            store,
            pinged,
            bus,
            ingest,
            stop,
        })
    }

    /// The address actually bound (for `listen: …:0`).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The store this daemon writes to.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The puppet layer this daemon acts through.
    pub fn homeserver(&self) -> Arc<dyn Homeserver> {
        self.homeserver.clone()
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
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "could not feed pending events"
            ),
        }
        let pinger = tokio::spawn(ping_until_answered(
            self.homeserver.clone(),
            self.pinged.clone(),
            stop.clone(),
        ));
        let housekeeping = tokio::spawn(housekeeping(
            self.ingest.clone(),
            self.bus.clone(),
            stop.clone(),
        ));
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let stopping = stop.clone();
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing requests in flight");
                // Event streams never finish by themselves: end them.
                stopping.cancel();
                let _ = signalled.send(());
            })
            .into_future();
        // A client that stops reading keeps its request open: wait for it only so long.
        let grace = async {
            if on_signal.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = served => served,
            () = grace => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; stopping anyway");
                Ok(())
            }
        };
        stop.cancel();
        let _ = pinger.await;
        let _ = housekeeping.await;
        served.context("server error")
    }
}

/// Every few seconds feeds recorded events a failed feed left behind; every minute
/// drops live-stream entries past their retention.
async fn housekeeping(ingest: Arc<Ingest>, bus: Arc<dyn LiveBus>, stop: CancellationToken) {
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if let Err(error) = ingest.run_pending().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not feed pending events"
            );
        }
        rounds += 1;
        if rounds.is_multiple_of(12)
            && let Err(error) = bus.prune().await
        {
            tracing::warn!(error = format!("{error:#}"), "could not prune live streams");
        }
    }
}

/// Pings the homeserver with backoff until it answers: that proves both directions
/// work and makes Synapse redeliver any transactions it holds back.
async fn ping_until_answered(
    homeserver: Arc<dyn Homeserver>,
    pinged: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match homeserver.ping().await {
            Ok(()) => {
                pinged.store(true, Ordering::Release);
                tracing::info!("homeserver answered the appservice ping");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "appservice ping failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(PING_MAX_BACKOFF);
    }
}

/// A request's span names its path only: a legacy homeserver sends its token in the
/// query string.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// Any route the daemon does not serve: Matrix's `M_UNRECOGNIZED`.
async fn unrecognized(method: Method, uri: Uri) -> AppserviceError {
    AppserviceError::Unrecognized {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Logs the cause of a 500 once, here, rather than where the error is made.
async fn log_internal_error(response: Response) -> Response {
    if let Some(cause) = response.extensions().get::<Arc<anyhow::Error>>() {
        tracing::error!(error = format!("{cause:#}"), "request failed");
    }
    response
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
