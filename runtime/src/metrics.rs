//! Prometheus metrics of event delivery, served on `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The delivery counters and latency histogram; clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Events handed over by event sources.
    pub received: Counter,
    /// Events a function answered with 2xx.
    pub delivered: Counter,
    /// Delivery attempts repeated after a retryable failure.
    pub retried: Counter,
    /// Events that finally failed.
    pub failed: Counter,
    /// Events that finally failed and were taken by the trigger's dead letter.
    pub dead_lettered: Counter,
    /// Events a source reported lost before delivery (a lower bound).
    pub lost: Counter,
    /// Event sources restarted after they failed or ended.
    pub consumer_restarts: Counter,
    /// Seconds from the first attempt to a 2xx answer.
    pub latency: Histogram,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubeless_trigger");
        let (received, delivered, retried, failed) =
            (Counter::default(), Counter::default(), Counter::default(), Counter::default());
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("events_received", "Events handed over by event sources", received.clone());
        registry.register("events_delivered", "Events a function answered with 2xx", delivered.clone());
        registry.register(
            "events_retried",
            "Delivery attempts repeated after a retryable failure",
            retried.clone(),
        );
        registry.register("events_failed", "Events that finally failed", failed.clone());
        let dead_lettered = Counter::default();
        registry.register(
            "events_dead_lettered",
            "Events that finally failed and were taken by the dead letter",
            dead_lettered.clone(),
        );
        let lost = Counter::default();
        registry.register("events_lost", "Events a source reported lost before delivery", lost.clone());
        let consumer_restarts = Counter::default();
        registry.register(
            "consumer_restarts",
            "Event sources restarted after they failed or ended",
            consumer_restarts.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "From the first attempt to a 2xx answer",
            latency.clone(),
        );
        Metrics {
            received,
            delivered,
            retried,
            failed,
            dead_lettered,
            lost,
            consumer_restarts,
            latency,
            registry: Arc::new(registry),
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_latency_are_exposed() {
        let m = Metrics::new();
        m.received.inc();
        m.delivered.inc();
        m.latency.observe(0.003);
        let text = m.encode();
        assert!(text.contains("kubeless_trigger_events_received_total 1"), "{text}");
        assert!(text.contains("kubeless_trigger_events_delivered_total 1"), "{text}");
        assert!(text.contains("kubeless_trigger_events_failed_total 0"), "{text}");
        assert!(text.contains("kubeless_trigger_consumer_restarts_total 0"), "{text}");
        assert!(text.contains("kubeless_trigger_delivery_duration_seconds_count 1"), "{text}");
    }
}
