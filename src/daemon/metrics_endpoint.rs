//! The optional Prometheus endpoint (`[metrics] listen`, off by default, loopback unless told
//! otherwise): the daemon's [`Metrics`] with the journal's counts and the gate's state read at
//! each scrape, in the OpenMetrics text format (the `prometheus-client` crate's).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::context::Ctx;

/// The metrics now: the counters, the journal's counts and the gate's state.
fn render(ctx: &Ctx) -> String {
    ctx.metrics.encode(ctx.journal.counts().ok(), ctx.gate.paused().map(|(r, _)| r))
}

/// Serves `GET /metrics` on `listen` until `stop`.
pub(super) async fn serve(ctx: Arc<Ctx>, listen: SocketAddr, stop: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(%listen, error = %e, "cannot serve metrics; check [metrics] listen");
            return;
        }
    };
    info!(%listen, "serving Prometheus metrics at /metrics");
    let app =
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let ctx = ctx.clone();
                async move {
                    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], render(&ctx))
                }
            }),
        );
    let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
}
