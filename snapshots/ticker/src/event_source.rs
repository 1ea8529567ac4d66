// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The Ticker event source: connect, receive, hand each event to the sink.
//!
//! The runtime calls [`consume`] once per (trigger, function) pair and cancels
//! `shutdown` when the trigger changes or goes away, when the function stops
//! matching, or when the controller shuts down. Everything else (watching,
//! finalizers, status, HTTP delivery with the Kubeless headers) is done for you.
//!
//! To implement it:
//! 1. connect to Ticker using the trigger's settings in `ctx.spec`;
//! 2. subscribe using `ctx.group` as the consumer/queue group name, so several
//!    controller replicas share the events instead of each delivering them;
//! 3. for every message call `sink.send(Event::new(body).with_topic(..).with_ack(..))`;
//!    `send` waits while too many deliveries are in flight (back-pressure), and
//!    the runtime calls the acknowledgement after delivery (`at-least-once`)
//!    or on receipt (`at-most-once`, see `ctx.delivery`): commit the offset or
//!    ack the message on `Delivered` or `Received`, and on `Failed` do not (nak
//!    it, or leave the offset uncommitted) so the broker redelivers it;
//!    then make [`acknowledges`] return `true`: until then the runtime
//!    delivers at-most-once and says so in the trigger's status;
//!    a source that commits offsets (a Kafka partition, a Kinesis shard)
//!    records each event with `crate::offsets::Offsets` and commits only the
//!    position it hands out, so an event that failed holds the commit back;
//! 4. return when `shutdown` is cancelled; deliveries in flight are drained for you.
//!
//! Until then this skeleton connects to nothing, delivers nothing, and waits
//! quietly for cancellation, so the controller runs safely without it.

use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::apis::TriggerSpec;
use crate::consumers::ConsumerContext;
use crate::delivery::Sink;
use crate::source::EventSource;

/// Errors a consumer may end with; they are logged by the runtime.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What the runtime runs: [`consume`], once per (trigger, function).
pub fn source() -> EventSource {
    EventSource::stream(consume, acknowledges)
}

/// Whether `consume` acknowledges the events of triggers with `spec` through
/// `Event::with_ack`: return `true` once it does, for at-least-once delivery.
pub fn acknowledges(_spec: &TriggerSpec) -> bool {
    false
}

/// Consume Ticker events for one (trigger, function) pair until `shutdown`.
pub async fn consume(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    info!(
        source = crate::SOURCE,
        group = %ctx.group,
        function = %sink.url(),
        "event source is a skeleton: no events are delivered until src/event_source.rs is implemented"
    );
    debug!(spec = ?ctx.spec, "trigger settings");
    shutdown.cancelled().await;
    Ok(())
}
