//! Invoking a Kubeless function: an HTTP POST to its Service with the event
//! headers the Kubeless runtimes turn into the function's `event` argument.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{Error, Result};

pub use crate::EVENT_NAMESPACE;

/// `http://<function>.<namespace>.svc.cluster.local:<port>`, as Kubeless triggers call functions.
pub fn function_url(function: &str, namespace: &str, port: u16) -> String {
    format!("http://{function}.{namespace}.svc.cluster.local:{port}")
}

/// Kubeless' default function timeout, when a Function does not set one.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(180);

/// The longest function timeout honoured (a day): a larger `spec.timeout` is capped.
const MAX_FUNCTION_TIMEOUT: u64 = 24 * 3600;

/// Time for the function's runtime to answer after its own timeout fired.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// How long one delivery attempt to `function` may take: its `spec.timeout`
/// (whole seconds, as Kubeless spells it; 180 when unset or unreadable) plus
/// a margin, so the function's runtime times out first and answers.
pub fn function_timeout(function: &crate::apis::Function) -> Duration {
    let seconds = function.spec.timeout.as_deref().and_then(|t| t.trim().parse::<u64>().ok());
    let seconds = seconds
        .filter(|s| *s > 0)
        .map_or(DEFAULT_FUNCTION_TIMEOUT.as_secs(), |s| s.min(MAX_FUNCTION_TIMEOUT));
    Duration::from_secs(seconds).saturating_add(TIMEOUT_MARGIN)
}

/// `User-Agent` of every request: `kubeless-<source>-trigger-controller/<version>`.
pub fn user_agent() -> String {
    format!("kubeless-{}-trigger-controller/{}", crate::SOURCE, crate::VERSION)
}

/// `application/json` when the body is a JSON object, else form-urlencoded (the Kubeless rule).
pub fn content_type(body: &[u8]) -> &'static str {
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if object { "application/json" } else { "application/x-www-form-urlencoded" }
}

/// A random, unique event id: 128 random bits in hex.
pub fn event_id() -> String {
    let bytes = random_128().to_le_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// 128 random bits from a per-thread splitmix64 stream seeded by the OS once,
/// so an event id costs no system call.
fn random_128() -> u128 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut seed = [0u8; 8];
            match getrandom::fill(&mut seed) {
                Ok(()) => u64::from_le_bytes(seed),
                // No OS randomness: the clock still differs per thread and start.
                Err(_) => k8s_openapi::jiff::Timestamp::now().as_nanosecond() as u64,
            }
        });
    }
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    (u128::from(next()) << 64) | u128::from(next())
}

/// The current time in UTC, formatted as the Go originals did
/// (`2021-01-29 11:18:03.123456789 +0000 UTC`).
pub fn event_time() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S%.f +0000 UTC").to_string()
}

/// `event-id`: the event's id, or a random one when the source set an id
/// that cannot be a header value.
fn id_header(id: &str) -> HeaderValue {
    HeaderValue::from_str(id).unwrap_or_else(|_| {
        tracing::warn!(id = %id.escape_debug(), "event id is not a valid header value; sending a random one");
        HeaderValue::from_str(&event_id()).unwrap_or(HeaderValue::from_static("0"))
    })
}

/// The `event-topic` value: the topic's UTF-8 bytes, which HTTP carries as
/// they are. A topic with control characters cannot be a header value: the
/// event is still delivered, without the header.
fn topic_header(topic: &str) -> Option<HeaderValue> {
    let value = HeaderValue::from_bytes(topic.as_bytes()).ok();
    if value.is_none() {
        tracing::warn!(topic = %topic.escape_debug(), "topic is not a valid header value; sent without `event-topic`");
    }
    value
}

/// Posts events to functions over one pooled HTTP client.
#[derive(Clone, Debug)]
pub struct Invoker {
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    user_agent: HeaderValue,
    event_namespace: HeaderValue,
}

impl Invoker {
    pub fn new(timeout: Duration) -> Invoker {
        let user_agent = HeaderValue::from_str(&user_agent())
            .unwrap_or_else(|_| HeaderValue::from_static("kubeless-trigger-controller"));
        Invoker {
            http: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
            user_agent,
            event_namespace: HeaderValue::from_static(EVENT_NAMESPACE),
        }
    }

    /// The same client sending `event-namespace: namespace` instead of
    /// [`EVENT_NAMESPACE`] (an original trigger's spelling); an invalid
    /// header value keeps the default.
    pub fn with_event_namespace(&self, namespace: &str) -> Invoker {
        let mut invoker = self.clone();
        if let Ok(value) = HeaderValue::from_str(namespace) {
            invoker.event_namespace = value;
        }
        invoker
    }

    /// The same client with another time limit per attempt.
    pub fn with_timeout(&self, timeout: Duration) -> Invoker {
        Invoker { timeout, ..self.clone() }
    }

    /// The time limit of one attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The request for one delivery attempt, with every Kubeless header and `extra` ones.
    pub fn request(
        &self,
        url: &Uri,
        id: &str,
        body: &Bytes,
        topic: Option<&str>,
        extra: &[(&'static str, HeaderValue)],
    ) -> Result<http::Request<Full<Bytes>>> {
        let content_type = HeaderValue::from_static(content_type(body));
        let mut builder = http::Request::post(url.clone())
            .header("event-id", id_header(id))
            .header("event-time", event_time())
            .header("event-namespace", self.event_namespace.clone())
            .header("event-type", content_type.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::USER_AGENT, self.user_agent.clone());
        if let Some(topic) = topic.and_then(topic_header) {
            builder = builder.header("event-topic", topic);
        }
        for (name, value) in extra {
            builder = builder.header(*name, value.clone());
        }
        builder
            .body(Full::new(body.clone()))
            .map_err(|source| Error::Request { url: url.to_string(), source })
    }

    /// One delivery attempt; any 2xx answer is success. Retries are the
    /// caller's ([`crate::delivery::Sink`]).
    pub async fn deliver(&self, url: &Uri, body: &Bytes, topic: Option<&str>) -> Result<()> {
        self.deliver_with(url, &event_id(), body, topic, &[]).await
    }

    /// [`Invoker::deliver`] with `extra` headers.
    pub async fn deliver_with(
        &self,
        url: &Uri,
        id: &str,
        body: &Bytes,
        topic: Option<&str>,
        extra: &[(&'static str, HeaderValue)],
    ) -> Result<()> {
        let request = self.request(url, id, body, topic, extra)?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| Error::Timeout { url: url.to_string(), timeout: self.timeout })?
            .map_err(|source| Error::Transport { url: url.to_string(), source })?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(Error::Status { url: url.to_string(), status }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use std::collections::BTreeMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A request as a loopback "function" received it.
    struct Received {
        request_line: String,
        headers: BTreeMap<String, String>,
        /// The `event-topic` value as bytes.
        raw_topic: Option<Vec<u8>>,
        body: Vec<u8>,
    }

    /// Serve one request on 127.0.0.1, answer `status`, and hand back what arrived.
    async fn one_shot_function(status: &'static str) -> (String, tokio::task::JoinHandle<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "connection closed before the headers ended");
                raw.extend_from_slice(&buf[..n]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
            };
            let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
            let raw_topic = raw[..head_end]
                .split(|&b| b == b'\n')
                .find_map(|line| line.strip_prefix(b"event-topic: "))
                .map(|v| v.strip_suffix(b"\r").unwrap_or(v).to_vec());
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_owned();
            let headers: BTreeMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = raw[head_end + 4..].to_vec();
            while body.len() < length {
                let n = socket.read(&mut buf).await.expect("read body");
                assert!(n > 0, "connection closed before the body ended");
                body.extend_from_slice(&buf[..n]);
            }
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(answer.as_bytes()).await.expect("write");
            Received { request_line, headers, raw_topic, body }
        });
        (url, task)
    }

    #[tokio::test]
    async fn json_event_carries_every_kubeless_header() {
        let (url, function) = one_shot_function("200 OK").await;
        let invoker = Invoker::new(Duration::from_secs(5));
        let body = Bytes::from_static(br#"{"payload":"hello"}"#);
        invoker.deliver(&url.parse().expect("uri"), &body, Some("orders")).await.expect("delivered");
        let got = function.await.expect("function task");

        assert_eq!(got.request_line, "POST / HTTP/1.1");
        assert_eq!(got.body, br#"{"payload":"hello"}"#);
        let h = &got.headers;
        assert_eq!(h["event-namespace"], crate::apis::Trigger::crd_name(), "<plural>.<group>");
        assert_eq!(h["event-type"], "application/json");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["event-topic"], "orders");
        let agent = format!("kubeless-{}-trigger-controller/{}", crate::SOURCE, crate::VERSION);
        assert_eq!(h["user-agent"], agent);
        assert_eq!(h["event-id"].len(), 32, "event-id: {}", h["event-id"]);
        assert!(h["event-id"].bytes().all(|b| b.is_ascii_hexdigit()), "event-id: {}", h["event-id"]);
        assert!(h["event-time"].ends_with(" +0000 UTC"), "event-time: {}", h["event-time"]);
    }

    #[tokio::test]
    async fn plain_body_is_form_encoded_and_has_no_topic() {
        let (url, function) = one_shot_function("204 No Content").await;
        Invoker::new(Duration::from_secs(5))
            .deliver(&url.parse().expect("uri"), &Bytes::from_static(b"hello"), None)
            .await
            .expect("204 is success");
        let got = function.await.expect("function task");
        assert_eq!(got.headers["event-type"], "application/x-www-form-urlencoded");
        assert_eq!(got.headers["content-type"], "application/x-www-form-urlencoded");
        assert!(!got.headers.contains_key("event-topic"));
    }

    #[tokio::test]
    async fn a_non_ascii_topic_is_delivered_in_utf8_and_a_control_character_drops_only_the_header() {
        let (url, function) = one_shot_function("200 OK").await;
        let invoker = Invoker::new(Duration::from_secs(5));
        let uri = url.parse().expect("uri");
        invoker.deliver(&uri, &Bytes::from_static(b"x"), Some("commandes.été")).await.expect("delivered");
        let got = function.await.expect("function task");
        assert_eq!(got.raw_topic.as_deref(), Some("commandes.été".as_bytes()));

        let (url, function) = one_shot_function("200 OK").await;
        let uri = url.parse().expect("uri");
        invoker.deliver(&uri, &Bytes::from_static(b"x"), Some("a\r\nb")).await.expect("delivered");
        let got = function.await.expect("function task");
        assert_eq!(got.body, b"x", "the event arrived");
        assert!(!got.headers.contains_key("event-topic"));
    }

    #[tokio::test]
    async fn error_status_is_an_error() {
        let (url, function) = one_shot_function("500 Internal Server Error").await;
        let uri = url.parse().expect("uri");
        let err = Invoker::new(Duration::from_secs(5)).deliver(&uri, &Bytes::new(), None).await.unwrap_err();
        assert!(
            matches!(err, Error::Status { status, .. } if status == http::StatusCode::INTERNAL_SERVER_ERROR)
        );
        function.await.expect("function task");
    }

    #[tokio::test]
    async fn a_silent_function_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hold = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let uri = url.parse().expect("uri");
        let err =
            Invoker::new(Duration::from_millis(200)).deliver(&uri, &Bytes::new(), None).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        drop(hold);
    }

    #[test]
    fn the_timeout_follows_the_function() {
        let mut f = crate::apis::Function::new("hello", Default::default());
        assert_eq!(function_timeout(&f), DEFAULT_FUNCTION_TIMEOUT + TIMEOUT_MARGIN);
        f.spec.timeout = Some("20".into());
        assert_eq!(function_timeout(&f), Duration::from_secs(25));
        f.spec.timeout = Some("18446744073709551615".into());
        assert_eq!(function_timeout(&f), Duration::from_secs(24 * 3600 + 5), "capped, never an overflow");
        f.spec.timeout = Some("soon".into());
        assert_eq!(function_timeout(&f), DEFAULT_FUNCTION_TIMEOUT + TIMEOUT_MARGIN);
        let invoker = Invoker::new(Duration::from_secs(1)).with_timeout(Duration::from_secs(9));
        assert_eq!(invoker.timeout(), Duration::from_secs(9));
    }

    #[test]
    fn urls_and_content_types_follow_kubeless() {
        assert_eq!(function_url("hello", "default", 8080), "http://hello.default.svc.cluster.local:8080");
        assert_eq!(content_type(br#"{"a":1}"#), "application/json");
        assert_eq!(content_type(b"[1,2]"), "application/x-www-form-urlencoded");
        assert_eq!(content_type(b"a=b"), "application/x-www-form-urlencoded");
        assert_eq!(content_type(b" {\"a\": [1, {}]} "), "application/json");
        assert_eq!(content_type(b"{not json"), "application/x-www-form-urlencoded");
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| event_id()).collect();
        assert_eq!(ids.len(), 10_000, "event ids are unique");
    }
}
