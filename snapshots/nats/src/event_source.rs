// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The NATS event source: a queue subscription on the trigger's `topic`.
//!
//! The runtime calls [`consume`] once per (trigger, function) pair and cancels
//! `shutdown` when the trigger changes or goes away, when the function stops
//! matching, or when the controller shuts down. Everything else (watching,
//! finalizers, status, HTTP delivery with the Kubeless headers) is done for you.
//!
//! Every consumer subscribes with its group name as the NATS queue group, so
//! controller replicas share the messages instead of each delivering them.
//! Core NATS has no acknowledgements: delivery is at-most-once whatever the
//! mode (a JetStream consumer would ack in `Event::with_ack`).

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::consumers::ConsumerContext;
use crate::delivery::{Event, Sink};

/// Errors a consumer may end with; they are logged by the runtime.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Core NATS has no acknowledgements, so the runtime delivers at-most-once:
/// a message is gone once received, whatever happens to its delivery.
pub const ACKNOWLEDGES: bool = false;

/// Where the Kubeless NATS trigger looked for NATS; override with `NATS_URL`.
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats-io.svc.cluster.local:4222";

/// The NATS server to connect to: `NATS_URL`, else [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// Deliver every message on the trigger's topic until `shutdown`.
pub async fn consume(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let url = nats_url();
    // No retry on the first connection: a failure ends this call, and the
    // runtime restarts it with backoff and reports it in the trigger's status.
    // The subscription buffer follows MAX_IN_FLIGHT; what overflows it is
    // dropped by the client and counted (`kubeless_trigger_events_lost_total`).
    let lost = sink.clone();
    let connecting = async_nats::ConnectOptions::new()
        .name(ctx.group.as_str())
        .subscription_capacity(ctx.max_in_flight.saturating_mul(SUBSCRIPTION_BUFFER_PER_SLOT).max(1))
        .event_callback(move |event| {
            let lost = lost.clone();
            async move {
                if let async_nats::Event::SlowConsumer(_) = event {
                    lost.lost(1, "the NATS client dropped a message: the subscription buffer is full");
                }
            }
        })
        .connect(url.as_str());
    let client = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        client = connecting => client?,
    };
    let mut messages = client.queue_subscribe(ctx.spec.topic.clone(), ctx.group.clone()).await?;
    info!(group = %ctx.group, topic = %ctx.spec.topic, %url, "subscribed");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = messages.next() => match message {
                Some(message) => {
                    let subject = message.subject.to_string();
                    sink.send(Event::new(message.payload).with_topic(subject)).await;
                }
                None => return Err("the NATS subscription ended".into()),
            },
        }
    }
    // Drain: stop new messages, then hand over what the client already buffered.
    if let Err(e) = messages.drain().await {
        warn!(error = %e, "draining the subscription failed");
        return Ok(());
    }
    while let Some(message) = messages.next().await {
        let subject = message.subject.to_string();
        sink.send(Event::new(message.payload).with_topic(subject)).await;
    }
    Ok(())
}

/// Subscription buffer per delivery slot (`MAX_IN_FLIGHT`): room for bursts
/// while every slot is busy.
const SUBSCRIPTION_BUFFER_PER_SLOT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use crate::apis::{TEST_SPEC_JSON, TriggerSpec};
    use crate::consumers::ConsumerKey;
    use crate::delivery::{DeliveryMode, SinkOptions};
    use crate::invoker::{Invoker, event_id};
    use crate::metrics::Metrics;

    /// A loopback function that reports each request's `event-topic` and body.
    async fn function() -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let topic = req.headers().get("event-topic").and_then(|v| v.to_str().ok());
                            let topic = topic.unwrap_or_default().to_owned();
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let _ = tx.send((topic, body));
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (url, rx)
    }

    #[tokio::test]
    #[ignore = "needs a NATS server: NATS_URL=nats://127.0.0.1:4222 cargo test -- --ignored"]
    async fn messages_on_the_topic_reach_the_function() {
        let (url, mut received) = function().await;
        let subject = format!("kubeless-test-{}", event_id());
        let mut spec: TriggerSpec = serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec");
        spec.topic = subject.clone();
        let key =
            ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() };
        let ctx = ConsumerContext {
            group: key.group(),
            key,
            spec,
            delivery: DeliveryMode::AtLeastOnce,
            max_in_flight: 4,
        };
        let options = SinkOptions { max_in_flight: 4, ..SinkOptions::default() };
        let sink = Sink::new(url, Invoker::new(Duration::from_secs(5)), options, Metrics::new(), None);
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn(consume(ctx, sink, shutdown.clone()));

        let publisher = async_nats::connect(nats_url()).await.expect("a NATS server at NATS_URL");
        let body = Bytes::from_static(br#"{"payload":"hello"}"#);
        // The subscription starts asynchronously: publish until the function sees the event.
        let mut got = None;
        for _ in 0..50 {
            publisher.publish(subject.clone(), body.clone()).await.expect("publish");
            publisher.flush().await.expect("flush");
            if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), received.recv()).await {
                got = Some(event);
                break;
            }
        }
        assert_eq!(got, Some((subject, body)), "the function received the message with its topic");
        shutdown.cancel();
        consumer.await.expect("join").expect("the consumer stops cleanly");
    }
}
