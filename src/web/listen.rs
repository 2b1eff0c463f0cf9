//! Accepting the dashboard's connections, so that a LAN guest cannot tie the daemon up: at most
//! [`MAX_CONNECTIONS`] at once and [`MAX_PER_CLIENT`] from one LAN address (one more is closed
//! at once; loopback, where a TLS reverse proxy or an SSH tunnel brings everyone, counts only
//! towards the total), and a request's headers must arrive within [`HEADER_READ_TIMEOUT`] (half-open and
//! trickling connections are dropped). Running out of file descriptors while accepting waits a
//! moment instead of spinning.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Connections served at once; live pages hold one or two each.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once to one client address.
pub const MAX_PER_CLIENT: usize = 32;
/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `cancel`, then lets open requests finish.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_client = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    let mut full_warned = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = cancel.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (or another passing error): wait instead of spinning.
                warn!(error = %e, "dashboard: cannot accept a connection; waiting a moment");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let client_slot = if peer.ip().is_loopback() {
            None
        } else {
            let Some(slot) = ClientSlot::take(&per_client, peer.ip()) else {
                debug!(client = %peer, max = MAX_PER_CLIENT, "dashboard: too many connections from one client");
                drop(stream);
                continue;
            };
            Some(slot)
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full_warned {
                warn!(client = %peer, max = MAX_CONNECTIONS, "dashboard: too many connections; closing new ones");
                full_warned = true;
            }
            drop(stream);
            continue;
        };
        full_warned = false;
        let (router, builder, cancel) = (router.clone(), builder.clone(), cancel.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                tower::Service::call(&mut router.clone(), request)
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => if let Err(e) = served { debug!(client = %peer, error = %e, "dashboard connection ended") },
                () = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
            drop((slot, client_slot));
        });
    }
}

/// One of a client address's connections; counted down when dropped.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<ClientSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= MAX_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(ClientSlot { counts: counts.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lan_address_gets_at_most_its_share_of_connections_and_gets_them_back() {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let guest: IpAddr = "192.168.1.66".parse().unwrap();
        let held: Vec<ClientSlot> = (0..MAX_PER_CLIENT).map(|_| ClientSlot::take(&counts, guest).unwrap()).collect();
        assert!(ClientSlot::take(&counts, guest).is_none(), "one more is refused");
        assert!(ClientSlot::take(&counts, "192.168.1.7".parse().unwrap()).is_some(), "others still get in");
        drop(held);
        assert!(ClientSlot::take(&counts, guest).is_some(), "closed connections count no more");
        assert!(counts.lock().unwrap().get(&guest).is_none_or(|n| *n <= 1));
    }
}
