//! `/healthz`, `/readyz` and `/metrics` over plain HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Liveness and readiness of the controller.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Ready: the trigger CRD answers and the controller is watching.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Answer one request.
pub fn respond(method: &Method, path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(http::header::CONTENT_TYPE, value);
        }
        response
    };
    let text = "text/plain; charset=utf-8";
    match (method, path) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, text, "ok\n".into()),
        (&Method::GET, "/readyz") if health.is_ready() => reply(StatusCode::OK, text, "ready\n".into()),
        (&Method::GET, "/readyz") => reply(StatusCode::SERVICE_UNAVAILABLE, text, "not ready\n".into()),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    }
}

/// Serve until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "serving /healthz, /readyz and /metrics");
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, say: pause instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (health, metrics) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = respond(req.method(), req.uri().path(), &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                warn!(error = %e, "health connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_readiness_and_metrics() {
        let (health, metrics) = (Health::default(), Metrics::new());
        assert_eq!(respond(&Method::GET, "/healthz", &health, &metrics).status(), StatusCode::OK);
        assert_eq!(
            respond(&Method::GET, "/readyz", &health, &metrics).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready(true);
        assert_eq!(respond(&Method::GET, "/readyz", &health, &metrics).status(), StatusCode::OK);
        let m = respond(&Method::GET, "/metrics", &health, &metrics);
        assert!(
            m.headers()[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap_or_default()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(respond(&Method::GET, "/other", &health, &metrics).status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_server_answers_over_http_and_stops_on_shutdown() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(addr, Arc::new(Health::default()), Metrics::new(), shutdown.clone()));
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let mut answer = None;
        for _ in 0..50 {
            if let Ok(r) = client.get(format!("http://{addr}/healthz").parse().expect("uri")).await {
                answer = Some(r.status());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(answer, Some(StatusCode::OK));
        shutdown.cancel();
        server.await.expect("join").expect("served");
    }
}
