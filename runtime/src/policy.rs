//! The delivery policy of a trigger: `spec.delivery`, in the spirit of
//! Knative Eventing's DeliverySpec. Every trigger kind carries it; each
//! setting left out falls back to the controller's environment
//! (`MAX_RETRIES`, `RETRY_BACKOFF_MILLISECONDS`).
//!
//! Without a dead letter, an event whose last attempt failed is left
//! unacknowledged in at-least-once mode, so the broker redelivers it. With
//! one, the event is sent there with headers saying why, and acknowledged
//! once the dead letter took it.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::delivery::RetryPolicy;

/// How events of this trigger are retried, and where they go when delivery finally fails.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Attempts after the first one (default: the controller's `MAX_RETRIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub retry: Option<u32>,
    /// How the pause grows between attempts: `exponential` (doubled each time, the default) or `linear` (the delay times the attempt number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    /// The first pause, an ISO 8601 duration such as `PT0.5S` (default: the controller's `RETRY_BACKOFF_MILLISECONDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    /// Where an event goes once every attempt failed; without one, at-least-once delivery leaves it unacknowledged for the broker to redeliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
}

/// How pauses between delivery attempts grow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// Doubled after each attempt.
    #[default]
    Exponential,
    /// The delay times the attempt number.
    Linear,
}

/// A dead letter: a Kubeless function in the trigger's namespace, or a URL.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Name of a Kubeless function in the trigger's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// An `http://` or `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// Where dead letters go, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// A function in the trigger's namespace, to be resolved to its Service.
    Function(String),
    /// A URL, used as it is.
    Uri(String),
}

/// The retry policy of a trigger: its `spec.delivery` over the controller's `defaults`.
pub fn retry_policy(spec: Option<&DeliverySpec>, defaults: RetryPolicy) -> Result<RetryPolicy, String> {
    let Some(spec) = spec else { return Ok(defaults) };
    let base = match spec.backoff_delay.as_deref() {
        None => defaults.base,
        Some(text) => parse_delay(text)?,
    };
    Ok(RetryPolicy {
        max_retries: spec.retry.unwrap_or(defaults.max_retries),
        base,
        policy: spec.backoff_policy.unwrap_or(defaults.policy),
        max: defaults.max.max(base),
    })
}

/// The dead letter of a trigger, checked: exactly one of `function` and `uri`.
pub fn dead_letter(spec: Option<&DeliverySpec>) -> Result<Option<DeadLetterTarget>, String> {
    let Some(dead_letter) = spec.and_then(|s| s.dead_letter.as_ref()) else { return Ok(None) };
    match (dead_letter.function.as_deref(), dead_letter.uri.as_deref()) {
        (Some(function), None) if !function.trim().is_empty() => {
            Ok(Some(DeadLetterTarget::Function(function.trim().to_owned())))
        }
        (None, Some(uri)) => match uri.parse::<http::Uri>() {
            Ok(parsed)
                if matches!(parsed.scheme_str(), Some("http" | "https")) && parsed.host().is_some() =>
            {
                Ok(Some(DeadLetterTarget::Uri(uri.to_owned())))
            }
            _ => Err(format!("spec.delivery.deadLetter.uri {uri:?}: expected an http:// or https:// URL")),
        },
        _ => Err("spec.delivery.deadLetter: set exactly one of `function` and `uri`".to_owned()),
    }
}

/// `PT0.5S`, `PT2S`, `PT1M`: a positive ISO 8601 duration of at most an hour.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("spec.delivery.backoffDelay {text:?}: expected an ISO 8601 duration such as PT0.5S");
    let duration = SignedDuration::from_str(text.trim()).map_err(|_| invalid())?;
    let duration = Duration::try_from(duration).map_err(|_| invalid())?;
    if duration.is_zero() || duration > Duration::from_secs(3600) {
        return Err(format!("spec.delivery.backoffDelay {text:?}: expected more than zero and at most PT1H"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> DeliverySpec {
        serde_json::from_value(json).expect("a delivery spec")
    }

    #[test]
    fn a_trigger_overrides_the_controller_defaults_setting_by_setting() {
        let defaults = RetryPolicy::default();
        assert_eq!(retry_policy(None, defaults), Ok(defaults));
        let policy = retry_policy(Some(&spec(serde_json::json!({"retry": 7}))), defaults).unwrap();
        assert_eq!(policy, RetryPolicy { max_retries: 7, ..defaults });
        let policy = retry_policy(
            Some(&spec(serde_json::json!({"backoffPolicy": "linear", "backoffDelay": "PT0.5S"}))),
            defaults,
        )
        .unwrap();
        assert_eq!(policy.policy, BackoffPolicy::Linear);
        assert_eq!(policy.base, Duration::from_millis(500));
        assert_eq!(policy.max_retries, defaults.max_retries);
    }

    #[test]
    fn backoff_delays_are_iso_8601_and_bounded() {
        for (text, ms) in [("PT0.2S", 200), ("PT2S", 2000), ("PT1M", 60_000), ("pt1s", 1000)] {
            assert_eq!(parse_delay(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "PT0S", "-PT1S", "PT2H", "soon"] {
            let err = parse_delay(bad).unwrap_err();
            assert!(err.contains("spec.delivery.backoffDelay"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_dead_letter_is_one_function_or_one_url() {
        let of = |json| dead_letter(Some(&spec(serde_json::json!({ "deadLetter": json }))));
        assert_eq!(
            of(serde_json::json!({"function": "dlq"})),
            Ok(Some(DeadLetterTarget::Function("dlq".into())))
        );
        assert_eq!(
            of(serde_json::json!({"uri": "http://sink.default:8080/x"})),
            Ok(Some(DeadLetterTarget::Uri("http://sink.default:8080/x".into())))
        );
        assert!(
            of(serde_json::json!({"function": "dlq", "uri": "http://x"}))
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(of(serde_json::json!({})).unwrap_err().contains("exactly one"));
        assert!(of(serde_json::json!({"uri": "ftp://x"})).unwrap_err().contains("http://"));
        assert_eq!(dead_letter(None), Ok(None));
    }
}
