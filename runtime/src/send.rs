//! `send-event`: deliver one event and exit, with the runtime's timeouts,
//! retries and dead letter. Object sources run it in their pods (the cronjob
//! source's CronJob runs the controller's own image with it), so an event
//! sent from a pod is delivered like every other one. [`SendArgs::to_args`]
//! and [`SendArgs::parse`] are the one definition of its flags.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use tracing::{error, info};

use crate::delivery::{BackoffPolicy, DeliveryMode, Event, Outcome, RetryPolicy, Sink, SinkOptions};
use crate::invoker::Invoker;
use crate::metrics::Metrics;

/// The subcommand's name: the first argument of the controller binary.
pub const SUBCOMMAND: &str = "send-event";

/// One event to send, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct SendArgs {
    /// The function's URL.
    pub url: String,
    /// `event-id`; random when absent.
    pub id: Option<String>,
    /// The request body.
    pub body: String,
    /// Time limit of one attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Where the event goes when every attempt failed.
    pub dead_letter: Option<String>,
    /// `event-namespace`, when not the trigger kind's.
    pub event_namespace: Option<String>,
}

impl SendArgs {
    /// The arguments that make `send-event` send this event, subcommand first.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![SUBCOMMAND.to_owned(), "--url".to_owned(), self.url.clone()];
        let mut flag = |name: &str, value: String| args.extend([format!("--{name}"), value]);
        if let Some(id) = &self.id {
            flag("id", id.clone());
        }
        flag("timeout-ms", self.timeout.as_millis().to_string());
        flag("retries", self.retry.max_retries.to_string());
        flag("backoff-ms", self.retry.base.as_millis().to_string());
        flag("backoff-max-ms", self.retry.max.as_millis().to_string());
        let policy = match self.retry.policy {
            BackoffPolicy::Exponential => "exponential",
            BackoffPolicy::Linear => "linear",
        };
        flag("backoff-policy", policy.to_owned());
        if let Some(dead_letter) = &self.dead_letter {
            flag("dead-letter", dead_letter.clone());
        }
        if let Some(namespace) = &self.event_namespace {
            flag("event-namespace", namespace.clone());
        }
        flag("body", self.body.clone());
        args
    }

    /// Parse the arguments after the subcommand.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<SendArgs, String> {
        let mut parsed = SendArgs {
            url: String::new(),
            id: None,
            body: String::new(),
            timeout: Duration::from_secs(185),
            retry: RetryPolicy::default(),
            dead_letter: None,
            event_namespace: None,
        };
        let millis = |flag: &str, v: &str| -> Result<Duration, String> {
            v.parse().map(Duration::from_millis).map_err(|_| format!("--{flag}: {v:?} is not a whole number"))
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}; flags are --name value"));
            };
            let value = args.next().ok_or_else(|| format!("--{flag} needs a value"))?;
            match flag {
                "url" => parsed.url = value,
                "id" => parsed.id = Some(value),
                "body" => parsed.body = value,
                "timeout-ms" => parsed.timeout = millis(flag, &value)?,
                "retries" => {
                    parsed.retry.max_retries =
                        value.parse().map_err(|_| format!("--retries: {value:?} is not a whole number"))?
                }
                "backoff-ms" => parsed.retry.base = millis(flag, &value)?,
                "backoff-max-ms" => parsed.retry.max = millis(flag, &value)?,
                "backoff-policy" => {
                    parsed.retry.policy = match value.as_str() {
                        "exponential" => BackoffPolicy::Exponential,
                        "linear" => BackoffPolicy::Linear,
                        _ => return Err(format!("--backoff-policy: {value:?} is not exponential or linear")),
                    }
                }
                "dead-letter" => parsed.dead_letter = Some(value),
                "event-namespace" => parsed.event_namespace = Some(value),
                _ => return Err(format!("unknown flag --{flag}")),
            }
        }
        if parsed.url.is_empty() {
            return Err("--url is required".to_owned());
        }
        Ok(parsed)
    }

    /// The longest a send can take: every attempt timing out, every pause at
    /// its longest, the same again for the dead letter.
    pub fn deadline(&self) -> Duration {
        let attempts = self.retry.max_retries.saturating_add(1);
        let pauses = (0..self.retry.max_retries).map(|r| self.retry.backoff_ceiling(r)).sum::<Duration>();
        let one_target = self.timeout.saturating_mul(attempts).saturating_add(pauses);
        if self.dead_letter.is_some() { one_target.saturating_mul(2) } else { one_target }
    }
}

/// Send one event; the outcome is the exit status: 0 when the function (or
/// the dead letter) took it, 1 when it did not, 2 for invalid arguments.
pub async fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let send = match SendArgs::parse(args) {
        Ok(send) => send,
        Err(why) => {
            error!("{SUBCOMMAND}: {why}");
            return ExitCode::from(2);
        }
    };
    match deliver(&send).await {
        Outcome::Delivered | Outcome::DeadLettered | Outcome::Received => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
    }
}

/// Deliver `send`'s event once, retries included.
pub async fn deliver(send: &SendArgs) -> Outcome {
    let mut invoker = Invoker::new(send.timeout);
    if let Some(namespace) = &send.event_namespace {
        invoker = invoker.with_event_namespace(namespace);
    }
    let options = SinkOptions {
        retry: send.retry,
        mode: DeliveryMode::AtLeastOnce,
        max_in_flight: 1,
        dead_letter: send.dead_letter.clone(),
    };
    let sink = Sink::new(send.url.clone(), invoker, options, Metrics::new(), None);
    let mut event = Event::new(Bytes::from(send.body.clone()));
    if let Some(id) = &send.id {
        event = event.with_id(id.clone());
    }
    let outcome = sink.deliver(event).await;
    info!(url = %send.url, ?outcome, "{SUBCOMMAND}");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Behaviour, LoopbackFunction};

    fn example() -> SendArgs {
        SendArgs {
            url: "http://hello.default.svc.cluster.local:8080".into(),
            id: Some("$(POD_UID)".into()),
            body: r#"{"payload":"x"}"#.into(),
            timeout: Duration::from_millis(1500),
            retry: RetryPolicy {
                max_retries: 2,
                base: Duration::from_millis(10),
                policy: BackoffPolicy::Linear,
                max: Duration::from_millis(40),
            },
            dead_letter: Some("http://dlq.default.svc.cluster.local:8080".into()),
            event_namespace: Some("cronjobtrigger.kubeless.io".into()),
        }
    }

    #[test]
    fn arguments_round_trip() {
        let send = example();
        let args = send.to_args();
        assert_eq!(args[0], SUBCOMMAND);
        assert_eq!(SendArgs::parse(args.into_iter().skip(1)), Ok(send));
        let bare = SendArgs { id: None, dead_letter: None, event_namespace: None, ..example() };
        assert_eq!(SendArgs::parse(bare.to_args().into_iter().skip(1)), Ok(bare));
    }

    #[test]
    fn invalid_arguments_are_named() {
        let parse = |args: &[&str]| SendArgs::parse(args.iter().map(|a| (*a).to_owned()));
        assert_eq!(parse(&[]), Err("--url is required".into()));
        assert_eq!(parse(&["--url"]), Err("--url needs a value".into()));
        assert_eq!(
            parse(&["--url", "u", "--retries", "x"]),
            Err("--retries: \"x\" is not a whole number".into())
        );
        assert_eq!(parse(&["--url", "u", "--colour", "red"]), Err("unknown flag --colour".into()));
        assert_eq!(parse(&["u"]), Err("unexpected argument \"u\"; flags are --name value".into()));
    }

    #[test]
    fn the_deadline_covers_every_attempt_and_the_dead_letter() {
        let send = example();
        // 3 attempts of 1.5 s, pauses of at most 10 and 20 ms, twice (dead letter).
        assert_eq!(send.deadline(), Duration::from_millis(2 * (4500 + 30)));
    }

    #[tokio::test]
    async fn one_event_reaches_the_function_with_its_id_after_a_retry() {
        let function = LoopbackFunction::start().await;
        function.set(Behaviour::FailTimes(1));
        let send = SendArgs {
            url: function.url.clone(),
            id: Some("4f9c-pod-uid".into()),
            dead_letter: None,
            ..example()
        };
        assert_eq!(run(send.to_args().into_iter().skip(1)).await, ExitCode::SUCCESS);
        assert_eq!(function.requests(), 2, "one failure, one retry");
        let delivered = function.delivered();
        assert_eq!(delivered.get(&Bytes::from_static(br#"{"payload":"x"}"#)), Some(&1));
        let headers = function.headers();
        assert_eq!(headers[0]["event-id"], "4f9c-pod-uid");
        assert_eq!(headers[0]["event-namespace"], "cronjobtrigger.kubeless.io");
        assert_eq!(headers[0]["content-type"], "application/json");
    }

    #[tokio::test]
    async fn a_function_that_keeps_failing_fails_the_command() {
        let function = LoopbackFunction::start().await;
        function.set(Behaviour::Fail);
        let send = SendArgs { url: function.url.clone(), dead_letter: None, ..example() };
        assert_eq!(run(send.to_args().into_iter().skip(1)).await, ExitCode::FAILURE);
        assert_eq!(function.requests(), 3, "the first attempt and two retries");
        assert_eq!(run(["--bogus".to_owned()]).await, ExitCode::from(2));
    }
}
