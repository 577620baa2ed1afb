//! Listeners and connections: one accept loop per transport, all stopped at once.

use super::grpc::handle_grpc;
use super::http::handle_http;
use super::{Shared, Transport};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Lets restart() take the port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    // Lets the listener and the placeholder of `hold` share the port while one hands over.
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A socket bound to `addr` that does not listen: while the server is stopped it keeps the
/// port, so connections are refused (no listener) but no other socket (another test's server,
/// a client's ephemeral port) can take it before `restart`. Without SO_REUSEADDR it conflicts
/// with every other bind except a listener of `bind` (SO_REUSEPORT on both, same user).
pub(super) fn hold(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs hyper's per-stream tasks so that they end when the server stops.
#[derive(Clone)]
struct StoppableExecutor(watch::Receiver<bool>);

impl<F> hyper::rt::Executor<F> for StoppableExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let stop = self.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stopped(stop) => {}
            }
        });
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(stop.clone()) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        stream,
                        transport,
                        shared.clone(),
                        stop.clone(),
                    ));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping a connection's task closes its socket: clients see the outage at once.
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    transport: Transport,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(stream);
    let exec = StoppableExecutor(stop);
    match transport {
        Transport::Grpc => {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_grpc(shared, req).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(exec)
                .serve_connection(io, service)
                .await;
        }
        Transport::Http => {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_http(shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(exec)
                .serve_connection(io, service)
                .await;
        }
    }
}
