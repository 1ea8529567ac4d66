//! Test helpers for the runtime's tests and for event sources' fault suites
//! (`make test-faults`): a loopback function whose behaviour can be switched
//! while events flow, a table of what became of the events, and a Kubernetes
//! client that reaches no API server. Compiled for tests only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A Kubernetes client for tests that need one but talk to no API server:
/// every request it makes fails at once.
pub fn offline_client() -> kube::Client {
    let (service, _handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    kube::Client::new(service, "default")
}

/// What the loopback function does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer 200.
    Answer,
    /// Answer 500.
    Fail,
    /// Read the request and never answer.
    Hang,
    /// Close the connection without answering.
    Drop,
    /// Answer 500 to the next `n` requests, then 200.
    FailTimes(u32),
}

/// A function on 127.0.0.1 that records the bodies it answered 2xx.
#[derive(Clone)]
pub struct LoopbackFunction {
    pub url: String,
    state: Arc<State>,
}

struct State {
    behaviour: Mutex<Behaviour>,
    delivered: Mutex<HashMap<Bytes, u32>>,
    /// Headers of the requests answered 2xx, in order.
    headers: Mutex<Vec<http::HeaderMap>>,
    requests: AtomicU64,
}

impl LoopbackFunction {
    pub async fn start() -> LoopbackFunction {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(State {
            behaviour: Mutex::new(Behaviour::Answer),
            delivered: Mutex::new(HashMap::new()),
            headers: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
        });
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        // An error makes hyper close the connection unanswered.
                        async move { state.answer(req).await.ok_or("dropping the connection") }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        LoopbackFunction { url, state }
    }

    /// Change what the function does from the next request on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    /// Bodies answered 2xx, with how often.
    pub fn delivered(&self) -> HashMap<Bytes, u32> {
        self.state.delivered.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Headers of the requests answered 2xx, in order.
    pub fn headers(&self) -> Vec<http::HeaderMap> {
        self.state.headers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests received, whatever the answer.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl State {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Option<Response<Full<Bytes>>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let behaviour = {
            let mut current = self.behaviour.lock().unwrap_or_else(|p| p.into_inner());
            let now = *current;
            match now {
                Behaviour::FailTimes(0) => *current = Behaviour::Answer,
                Behaviour::FailTimes(n) => *current = Behaviour::FailTimes(n - 1),
                _ => {}
            }
            now
        };
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let status = match behaviour {
            Behaviour::Answer | Behaviour::FailTimes(0) => {
                *self.delivered.lock().unwrap_or_else(|p| p.into_inner()).entry(body).or_default() += 1;
                self.headers.lock().unwrap_or_else(|p| p.into_inner()).push(headers);
                StatusCode::OK
            }
            Behaviour::Fail | Behaviour::FailTimes(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Drop => return None,
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        Some(response)
    }
}

/// What became of the events of one scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub scenario: String,
    pub mode: String,
    /// Events the broker accepted.
    pub published: u64,
    /// Distinct published events the function answered 2xx.
    pub delivered: u64,
    /// Extra 2xx deliveries of events already delivered.
    pub duplicates: u64,
    /// Events the dead letter took (`events_dead_lettered_total`).
    pub dead_lettered: u64,
    /// Final failures (`events_failed_total`).
    pub failed: u64,
    /// Losses the runtime counted (`events_lost_total`).
    pub lost: u64,
    /// Published, and neither delivered nor dead-lettered.
    pub missing: u64,
}

impl Tally {
    /// The tally of `published` bodies against what `function` answered 2xx.
    pub fn of(scenario: &str, mode: &str, published: &[Bytes], function: &LoopbackFunction) -> Tally {
        let delivered = function.delivered();
        let reached = published.iter().filter(|b| delivered.contains_key(*b)).count() as u64;
        let duplicates = published.iter().filter_map(|b| delivered.get(b)).map(|n| u64::from(n - 1)).sum();
        Tally {
            scenario: scenario.to_owned(),
            mode: mode.to_owned(),
            published: published.len() as u64,
            delivered: reached,
            duplicates,
            missing: published.len() as u64 - reached,
            ..Tally::default()
        }
    }
}

/// The tallies as a table.
pub fn table(rows: &[Tally]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<14} {:>9} {:>9} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "scenario", "mode", "published", "delivered", "dup", "dlq", "failed", "lost", "missing"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:<14} {:>9} {:>9} {:>6} {:>6} {:>6} {:>6} {:>7}",
            r.scenario,
            r.mode,
            r.published,
            r.delivered,
            r.duplicates,
            r.dead_lettered,
            r.failed,
            r.lost,
            r.missing
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::invoker::Invoker;

    #[tokio::test]
    async fn the_loopback_function_switches_behaviour_and_tallies() {
        let f = LoopbackFunction::start().await;
        let invoker = Invoker::new(Duration::from_millis(200));
        let uri = f.url.parse().expect("uri");
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        invoker.deliver(&uri, &a, None).await.expect("answered");
        invoker.deliver(&uri, &a, None).await.expect("answered again");
        f.set(Behaviour::Fail);
        assert!(invoker.deliver(&uri, &b, None).await.is_err());
        f.set(Behaviour::Hang);
        let hung = invoker.deliver(&uri, &b, None).await.unwrap_err();
        assert!(matches!(hung, crate::Error::Timeout { .. }), "{hung}");
        f.set(Behaviour::Drop);
        let dropped = invoker.deliver(&uri, &b, None).await.unwrap_err();
        assert!(matches!(dropped, crate::Error::Transport { .. }), "{dropped}");
        assert_eq!(f.requests(), 5);
        let tally = Tally::of("s", "m", &[a, b], &f);
        assert_eq!((tally.published, tally.delivered, tally.duplicates, tally.missing), (2, 1, 1, 1));
        assert!(table(&[tally]).contains("missing"));
    }
}
