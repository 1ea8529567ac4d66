// Scaffolded by kubeless-trigger, then yours: edit freely, `kubeless-trigger` never rewrites this file.
//! The Kinesis event source: polls the shards of the trigger's stream and
//! hands every record to the sink, at least once, across controller restarts.
//!
//! - **Shards.** With `spec.shard` set, that shard only; otherwise every shard
//!   of the stream: they are listed at start and every `SHARD_DISCOVERY_SECONDS`,
//!   so the shards a resharding creates are picked up. A child shard is read
//!   only once its parents were read to their end (closed shards end), so the
//!   records of one partition key stay in order.
//! - **Polling.** One reader per shard calls `GetRecords` every 250 ms (the
//!   polling period of the Kubeless original and of AWS Lambda), doubling the
//!   pause while the shard is empty up to 1 s; `ProvisionedThroughputExceeded`
//!   and other throttling answers back off from 1 s to 30 s, with jitter. An
//!   `ExpiredIteratorException` (a delivery stall held the iterator more than
//!   five minutes) gets a new iterator after the last record read.
//! - **Checkpoints.** Per shard, the sequence number of the last record of the
//!   contiguous run of settled records ([`crate::offsets::Offsets`] over a local
//!   counter, mapped back to sequence numbers): a record whose delivery failed
//!   holds it back. They are kept in a ConfigMap per (trigger, function) in the
//!   trigger's namespace, `kinesis-checkpoint.<trigger>.<function>`, owned by
//!   the trigger (deleted with it), written every `CHECKPOINT_INTERVAL_MILLISECONDS`
//!   when they moved and when the consumer stops. A ConfigMap rather than the
//!   trigger's status (which the controller rewrites, and whose every change
//!   wakes the controller up) or a Lease (made for leader election, with no
//!   room for data); server-side apply creates or updates it in one request.
//! - **Start position.** A shard with a checkpoint resumes
//!   `AFTER_SEQUENCE_NUMBER`. A trigger reading its stream for the first time
//!   starts at `LATEST`, as the original did (a new trigger does not replay the
//!   stream's retention), after writing down when it started: after a restart,
//!   a shard without a checkpoint yet starts `AT_TIMESTAMP` of that moment
//!   (less a minute for clock skew), so records put while the controller was
//!   down are not skipped; shards appearing while it runs start at
//!   `TRIM_HORIZON`. A checkpoint written for another stream (name, region,
//!   endpoint, or a stream deleted and created again) is ignored.
//! - **Failures.** A record whose delivery finally failed (no dead letter)
//!   makes its shard's reader wait for the deliveries in flight, pause
//!   `REDELIVERY_DELAY_SECONDS`, and read again from the checkpoint:
//!   the failed record and the ones after it are delivered again.
//!
//! Credentials come from the Secret named by `spec.secret` in the trigger's
//! namespace (keys `aws_access_key_id`, `aws_secret_access_key`, and
//! optionally `aws_session_token`); the region from `spec.region`; the
//! endpoint from `spec.endpoint` (an `http` or `https` URL) when set.
//!
//! The consumer needs, besides the controller's own rights: `get` on
//! `secrets`; `get`, `create` and `patch` on `configmaps` (the checkpoints).
//! Kinesis has no consumer groups in this API: run one controller replica, or
//! replicas would each deliver every record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The AWS SDK without its default features: its default HTTPS client is
// rustls over aws-lc-rs, a C and assembly build (cmake, a C compiler). The
// smithy HTTP client with `rustls-ring` is the same hyper 1 and rustls over
// ring that kube already builds, so the SDK adds no C build and no second TLS
// stack; `rt-tokio` gives the SDK tokio's sleep for its retries and timeouts.
use aws_sdk_kinesis::Client as KinesisClient;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use aws_smithy_http_client::tls;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::apis::{Trigger, TriggerSpec};
use crate::consumers::{ConsumerContext, ConsumerKey};
use crate::delivery::{Event, Outcome, RetryPolicy, Sink};
use crate::offsets::Offsets;
use crate::source::EventSource;

/// Errors a consumer may end with; the runtime restarts the consumer.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Kinesis records are acknowledged through the checkpoint: at-least-once.
pub fn acknowledges(_spec: &TriggerSpec) -> bool {
    true
}

/// What the runtime runs: [`consume`], once per (trigger, function).
pub fn source() -> EventSource {
    EventSource::stream(consume, acknowledges)
}

/// Pause between two `GetRecords` calls on a shard (`POLL_INTERVAL_MILLISECONDS`):
/// 250 ms, as the Kubeless original and AWS Lambda; Kinesis allows 5 reads a
/// second per shard, shared by every reader of the stream.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest pause on an empty shard (`MAX_POLL_INTERVAL_MILLISECONDS`): the
/// pause doubles from the poll interval while the shard has nothing new.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Records asked for by one `GetRecords` (`GET_RECORDS_LIMIT`, 1 to 10000).
const DEFAULT_GET_RECORDS_LIMIT: i32 = 1000;
/// How often moved checkpoints are written (`CHECKPOINT_INTERVAL_MILLISECONDS`):
/// a crash redelivers at most this much; a clean stop writes them at once.
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the stream's shards are listed again (`SHARD_DISCOVERY_SECONDS`),
/// when the trigger reads every shard.
const DEFAULT_SHARD_DISCOVERY: Duration = Duration::from_secs(60);
/// Pause before a shard is read again after a delivery finally failed
/// (`REDELIVERY_DELAY_SECONDS`).
const DEFAULT_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// Backoff after a throttling answer: from 1 s to 30 s, with jitter.
const THROTTLE_BACKOFF: RetryPolicy = RetryPolicy {
    max_retries: u32::MAX,
    base: Duration::from_secs(1),
    policy: crate::delivery::BackoffPolicy::Exponential,
    max: Duration::from_secs(30),
};
/// How long a stream may stay `CREATING` before the consumer fails (and is
/// restarted by the runtime).
const STREAM_ACTIVE_WAIT: Duration = Duration::from_secs(60);
/// How far before its first start a consumer's start time is written down:
/// room for a clock difference between this host and Kinesis.
const START_MARGIN: Duration = Duration::from_secs(60);
/// How long a stopping consumer waits for its deliveries in flight before it
/// writes its last checkpoint; less than the runtime's 10 s wait for a source.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Time limit of one Kinesis request attempt (the SDK retries it).
const KINESIS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Time limit of one Kubernetes API request.
const KUBE_TIMEOUT: Duration = Duration::from_secs(30);
/// The ConfigMap key holding the checkpoint document.
const CHECKPOINT_KEY: &str = "checkpoint.json";
/// Error codes Kinesis answers when a request was throttled.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "ThrottlingException",
];

/// The polling and checkpointing settings, from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
    pub get_records_limit: i32,
    pub checkpoint_interval: Duration,
    pub shard_discovery: Duration,
    pub redelivery_delay: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_poll_interval: DEFAULT_MAX_POLL_INTERVAL,
            get_records_limit: DEFAULT_GET_RECORDS_LIMIT,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            shard_discovery: DEFAULT_SHARD_DISCOVERY,
            redelivery_delay: DEFAULT_REDELIVERY_DELAY,
        }
    }
}

impl Tuning {
    /// Read the process environment.
    pub fn from_env() -> Result<Tuning, SourceError> {
        Tuning::from_lookup(|key| std::env::var(key).ok())
    }

    /// Read settings through `lookup`; unset or empty variables keep their default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Tuning, SourceError> {
        let d = Tuning::default();
        let number = |key: &str, default: u64, min: u64, max: u64| -> Result<u64, SourceError> {
            match lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(format!("{key}={v:?}: expected a whole number from {min} to {max}").into()),
                },
            }
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let poll_interval =
            Duration::from_millis(number("POLL_INTERVAL_MILLISECONDS", millis(d.poll_interval), 1, DAY_MS)?);
        let max_poll_interval = Duration::from_millis(number(
            "MAX_POLL_INTERVAL_MILLISECONDS",
            millis(d.max_poll_interval),
            1,
            DAY_MS,
        )?);
        let limit = number("GET_RECORDS_LIMIT", 1000, 1, 10_000)?;
        Ok(Tuning {
            poll_interval,
            max_poll_interval: max_poll_interval.max(poll_interval),
            get_records_limit: i32::try_from(limit).unwrap_or(DEFAULT_GET_RECORDS_LIMIT),
            checkpoint_interval: Duration::from_millis(number(
                "CHECKPOINT_INTERVAL_MILLISECONDS",
                millis(d.checkpoint_interval),
                1,
                DAY_MS,
            )?),
            shard_discovery: Duration::from_secs(number(
                "SHARD_DISCOVERY_SECONDS",
                d.shard_discovery.as_secs(),
                1,
                DAY_MS / 1000,
            )?),
            redelivery_delay: Duration::from_secs(number(
                "REDELIVERY_DELAY_SECONDS",
                d.redelivery_delay.as_secs(),
                0,
                DAY_MS / 1000,
            )?),
        })
    }
}

/// The trigger's Kinesis settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    pub region: String,
    pub secret: String,
    pub stream: String,
    pub shard: Option<String>,
    pub endpoint: Option<String>,
}

impl StreamSettings {
    /// The settings of `spec`, or why they cannot be used.
    pub fn from_spec(spec: &TriggerSpec) -> Result<StreamSettings, SourceError> {
        let region = spec.region.trim();
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("region {region:?}: expected an AWS region such as `us-east-1`").into());
        }
        let secret = spec.secret.trim();
        if secret.is_empty() {
            return Err("secret: the name of the Secret with the AWS credentials is empty".into());
        }
        let stream = check_name("stream", &spec.stream)?;
        let shard = spec.shard.as_deref().map(|s| check_name("shard", s)).transpose()?;
        let endpoint = spec.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let endpoint = endpoint.map(check_endpoint).transpose()?;
        Ok(StreamSettings { region: region.to_owned(), secret: secret.to_owned(), stream, shard, endpoint })
    }
}

/// A Kinesis stream name or shard id: 1 to 128 of `a-z A-Z 0-9 _ . -`.
fn check_name(what: &str, name: &str) -> Result<String, SourceError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!("{what} {name:?}: expected 1 to 128 letters, digits, `_`, `.` or `-`").into())
    }
}

/// An endpoint URL: `http` or `https`, with a host.
fn check_endpoint(endpoint: &str) -> Result<String, SourceError> {
    let bad = |why: &str| -> SourceError {
        format!(
            "endpoint {endpoint:?}: {why}; expected a URL such as `https://kinesis.us-east-1.amazonaws.com`"
        )
        .into()
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(endpoint.to_owned())
}

/// The AWS credentials in `secret` (`namespace/name`, for messages).
fn credentials_from(secret: &Secret, name: &str) -> Result<Credentials, SourceError> {
    let data = secret.data.as_ref();
    let value = |key: &str| -> Result<Option<String>, SourceError> {
        let Some(bytes) = data.and_then(|d| d.get(key)) else { return Ok(None) };
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| format!("Secret {name}: `{key}` is not UTF-8 text"))?
            .trim()
            .to_owned();
        Ok(Some(text).filter(|t| !t.is_empty()))
    };
    let required = |key: &str| -> Result<String, SourceError> {
        value(key)?.ok_or_else(|| format!("Secret {name} has no `{key}` (or it is empty)").into())
    };
    let access_key = required("aws_access_key_id")?;
    let secret_key = required("aws_secret_access_key")?;
    let session_token = value("aws_session_token")?;
    Ok(Credentials::new(access_key, secret_key, session_token, None, "kubernetes-secret"))
}

/// Read the credentials from the Secret `name` in `namespace`.
async fn read_credentials(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, SourceError> {
    let what = format!("{namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = tokio::time::timeout(KUBE_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| format!("reading Secret {what}: no answer within {KUBE_TIMEOUT:?}"))?
        .map_err(|e| format!("reading Secret {what}: {e}"))?
        .ok_or_else(|| {
            format!("Secret {what} not found: create it with `aws_access_key_id` and `aws_secret_access_key`")
        })?;
    credentials_from(&secret, &what)
}

/// A Kinesis client for `settings`.
pub fn kinesis_client(settings: &StreamSettings, credentials: Credentials) -> KinesisClient {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut config = aws_sdk_kinesis::Config::builder()
        .behavior_version_latest()
        .region(Region::new(settings.region.clone()))
        .credentials_provider(credentials)
        .http_client(http)
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(KINESIS_ATTEMPT_TIMEOUT).build());
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    KinesisClient::from_conf(config.build())
}

/// The name of the ConfigMap holding the checkpoints of consumer `key`.
pub fn checkpoint_name(key: &ConsumerKey) -> String {
    let name = format!("kinesis-checkpoint.{}.{}", key.trigger, key.function);
    if name.len() <= 253 {
        return name;
    }
    // Too long for an object name: a stable hash of the pair (FNV-1a, 64 bits).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.trigger.bytes().chain([b'/']).chain(key.function.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("kinesis-checkpoint.{hash:016x}")
}

/// What a consumer writes down: where it is in each shard of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub stream: String,
    /// When the stream was created (epoch milliseconds): a stream deleted
    /// and created again under the same name starts over.
    pub stream_created_millis: i64,
    /// When this consumer first read the stream, less a margin (epoch milliseconds).
    pub started_at_millis: i64,
    /// The sequence number of the last settled record, by shard id.
    #[serde(default)]
    pub shards: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Whether this checkpoint is about the same stream as `other`.
    fn same_stream(&self, other: &Checkpoint) -> bool {
        self.region == other.region
            && self.endpoint == other.endpoint
            && self.stream == other.stream
            && self.stream_created_millis == other.stream_created_millis
    }
}

/// The checkpoints of one consumer, in a ConfigMap of the trigger's namespace.
pub struct CheckpointStore {
    api: Api<ConfigMap>,
    name: String,
    key: ConsumerKey,
    owner: Option<OwnerReference>,
    /// The document last written or read, to skip writes that change nothing.
    saved: Option<String>,
}

impl CheckpointStore {
    /// The store of consumer `key`; `owner`, the trigger, deletes it with itself.
    pub fn new(client: kube::Client, key: &ConsumerKey, owner: Option<OwnerReference>) -> CheckpointStore {
        CheckpointStore {
            api: Api::namespaced(client, &key.namespace),
            name: checkpoint_name(key),
            key: key.clone(),
            owner,
            saved: None,
        }
    }

    /// The store of consumer `key`, owned by its trigger (read here for its uid).
    pub async fn open(client: kube::Client, key: &ConsumerKey) -> Result<CheckpointStore, SourceError> {
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &key.namespace);
        let what = format!("trigger {}/{}", key.namespace, key.trigger);
        let trigger = tokio::time::timeout(KUBE_TIMEOUT, triggers.get(&key.trigger))
            .await
            .map_err(|_| format!("reading {what}: no answer within {KUBE_TIMEOUT:?}"))?
            .map_err(|e| format!("reading {what}: {e}"))?;
        Ok(CheckpointStore::new(client, key, trigger.owner_ref(&())))
    }

    /// The ConfigMap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checkpoint written last, if any.
    pub async fn load(&mut self) -> Result<Option<Checkpoint>, SourceError> {
        let what = format!("ConfigMap {}/{}", self.key.namespace, self.name);
        let map = tokio::time::timeout(KUBE_TIMEOUT, self.api.get_opt(&self.name))
            .await
            .map_err(|_| format!("reading {what}: no answer within {KUBE_TIMEOUT:?}"))?
            .map_err(|e| format!("reading {what}: {e}"))?;
        let Some(text) = map.and_then(|m| m.data).and_then(|mut d| d.remove(CHECKPOINT_KEY)) else {
            return Ok(None);
        };
        let checkpoint = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{what}: `{CHECKPOINT_KEY}` is not a checkpoint ({e}); delete the ConfigMap to start over"
            )
        })?;
        self.saved = Some(text);
        Ok(Some(checkpoint))
    }

    /// Write `checkpoint` (server-side apply: created on first use), unless
    /// it is what was written last.
    pub async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), SourceError> {
        let text = serde_json::to_string(checkpoint)?;
        if self.saved.as_ref() == Some(&text) {
            return Ok(());
        }
        let annotations = BTreeMap::from([
            ("kubeless.io/trigger".to_owned(), self.key.trigger.clone()),
            ("kubeless.io/function".to_owned(), self.key.function.clone()),
        ]);
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.key.namespace.clone()),
                annotations: Some(annotations),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(CHECKPOINT_KEY.to_owned(), text.clone())])),
            ..ConfigMap::default()
        };
        let params = PatchParams::apply(crate::MANAGER).force();
        let what = format!("ConfigMap {}/{}", self.key.namespace, self.name);
        tokio::time::timeout(KUBE_TIMEOUT, self.api.patch(&self.name, &params, &Patch::Apply(&map)))
            .await
            .map_err(|_| format!("writing {what}: no answer within {KUBE_TIMEOUT:?}"))?
            .map_err(|e| format!("writing {what}: {e}"))?;
        self.saved = Some(text);
        Ok(())
    }
}

/// Where a shard's reader starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// After this sequence number (a checkpoint, or the last record read).
    After(String),
    /// At this sequence number (the first record read, when nothing was settled since).
    At(String),
    /// The records that arrived from this time on (epoch milliseconds).
    Since(i64),
    /// The records that arrive from now on.
    Latest,
    /// The oldest record the stream keeps.
    TrimHorizon,
}

/// What became of the records of one shard handed to the sink.
#[derive(Debug, Default)]
struct ShardLedger {
    /// Bumped when the shard is read again after a failure; older tickets no longer count.
    epoch: u64,
    /// Local number of the next record received.
    next: u64,
    offsets: Offsets,
    /// Sequence numbers of received, not yet committed records, by local number.
    sequences: BTreeMap<u64, String>,
    /// The first record received in this epoch.
    first: Option<String>,
    in_flight: usize,
    /// A delivery of this epoch finally failed: the shard must be read again.
    failed: bool,
    /// The last record of the contiguous settled run: the checkpoint.
    committed: Option<String>,
}

impl ShardLedger {
    fn new(committed: Option<String>) -> ShardLedger {
        ShardLedger { committed, ..ShardLedger::default() }
    }

    /// A record was handed over: its (epoch, local number).
    fn receive(&mut self, sequence: String) -> (u64, u64) {
        let n = self.next;
        self.next += 1;
        self.offsets.received(n);
        if self.first.is_none() {
            self.first = Some(sequence.clone());
        }
        self.sequences.insert(n, sequence);
        self.in_flight += 1;
        (self.epoch, n)
    }

    /// Record `n` of `epoch` was settled (`delivered`) or not; returns
    /// whether the checkpoint moved.
    fn settle(&mut self, epoch: u64, n: u64, delivered: bool) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        if epoch != self.epoch {
            return false;
        }
        if !delivered {
            self.failed = true;
            return false;
        }
        let Some(next) = self.offsets.settled(n) else { return false };
        let rest = self.sequences.split_off(&next);
        let done = std::mem::replace(&mut self.sequences, rest);
        match done.into_values().next_back() {
            Some(last) => {
                self.committed = Some(last);
                true
            }
            None => false,
        }
    }

    /// Where to read again after a failure: after the checkpoint, else at
    /// the first record read.
    fn resume(&self) -> Option<Position> {
        self.committed.clone().map(Position::After).or_else(|| self.first.clone().map(Position::At))
    }

    /// Forget what is not committed: the shard is read again from [`Self::resume`].
    fn rewind(&mut self) {
        self.epoch += 1;
        self.offsets = Offsets::new();
        self.sequences.clear();
        self.first = None;
        self.failed = false;
    }
}

/// The ledgers of every shard a consumer reads.
#[derive(Debug, Default)]
struct Progress {
    shards: BTreeMap<Arc<str>, ShardLedger>,
    /// A checkpoint moved since the last write.
    moved: bool,
}

type SharedProgress = Arc<Mutex<Progress>>;

/// A poisoned lock still holds a consistent value here: use it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One record handed to the sink; settled by its acknowledgement, or, if it
/// is dropped without one (the consumer stopped first), counted as not delivered.
struct Ticket {
    progress: SharedProgress,
    shard: Arc<str>,
    epoch: u64,
    n: u64,
    done: bool,
}

impl Ticket {
    fn new(progress: &SharedProgress, shard: &Arc<str>, sequence: String) -> Ticket {
        let (epoch, n) = lock(progress)
            .shards
            .entry(shard.clone())
            .or_insert_with(|| ShardLedger::new(None))
            .receive(sequence);
        Ticket { progress: progress.clone(), shard: shard.clone(), epoch, n, done: false }
    }

    fn settle(mut self, outcome: Outcome) {
        let delivered = matches!(outcome, Outcome::Delivered | Outcome::DeadLettered | Outcome::Received);
        self.finish(delivered);
    }

    fn finish(&mut self, delivered: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut progress = lock(&self.progress);
        let moved =
            progress.shards.get_mut(&self.shard).is_some_and(|l| l.settle(self.epoch, self.n, delivered));
        progress.moved |= moved;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// One shard of the stream, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
}

impl From<aws_sdk_kinesis::types::Shard> for ShardInfo {
    fn from(shard: aws_sdk_kinesis::types::Shard) -> ShardInfo {
        let parents = shard.parent_shard_id.into_iter().chain(shard.adjacent_parent_shard_id).collect();
        ShardInfo { id: shard.shard_id, parents }
    }
}

/// Whether `error` is Kinesis throttling the request.
fn throttled<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code().is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// `future`, unless `stop` is cancelled first (then `None`).
async fn until<T>(stop: &CancellationToken, future: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        () = stop.cancelled() => None,
        value = future => Some(value),
    }
}

/// Deliver the records of the trigger's stream until `shutdown`.
pub async fn consume(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let tuning = Tuning::from_env()?;
    consume_with(ctx, sink, shutdown, tuning).await
}

/// [`consume`] with explicit settings (tests shorten the pauses).
pub async fn consume_with(
    ctx: ConsumerContext,
    sink: Sink,
    shutdown: CancellationToken,
    tuning: Tuning,
) -> Result<(), SourceError> {
    let settings = StreamSettings::from_spec(&ctx.spec)?;
    let setup = async {
        let credentials = read_credentials(&ctx.client, &ctx.key.namespace, &settings.secret).await?;
        let kinesis = kinesis_client(&settings, credentials);
        let store = CheckpointStore::open(ctx.client.clone(), &ctx.key).await?;
        let created = wait_until_active(&kinesis, &settings.stream).await?;
        Ok::<_, SourceError>((kinesis, store, created))
    };
    let Some(setup) = until(&shutdown, setup).await else { return Ok(()) };
    let (kinesis, mut store, stream_created_millis) = setup?;

    let fresh = Checkpoint {
        region: settings.region.clone(),
        endpoint: settings.endpoint.clone(),
        stream: settings.stream.clone(),
        stream_created_millis,
        started_at_millis: now_millis().saturating_sub(START_MARGIN.as_millis() as i64),
        shards: BTreeMap::new(),
    };
    let Some(loaded) = until(&shutdown, store.load()).await else { return Ok(()) };
    let (checkpoint, first_run) = match loaded? {
        Some(c) if c.same_stream(&fresh) => (c, false),
        Some(c) => {
            warn!(group = %ctx.group, configmap = store.name(), old_stream = %c.stream, old_region = %c.region,
                "the checkpoint is for another stream (or one deleted and created again); starting over");
            (fresh, true)
        }
        None => (fresh, true),
    };
    if first_run {
        // Written before any iterator is asked for: a restart then reads from here on.
        match until(&shutdown, store.save(&checkpoint)).await {
            None => return Ok(()),
            Some(result) => result?,
        }
    }
    info!(
        group = %ctx.group, stream = %settings.stream, shard = settings.shard.as_deref().unwrap_or("every shard"),
        configmap = store.name(), first_run, "consuming (Kinesis, at-least-once)"
    );
    let progress: SharedProgress = Arc::new(Mutex::new(Progress {
        shards: checkpoint
            .shards
            .iter()
            .map(|(shard, sequence)| (Arc::from(shard.as_str()), ShardLedger::new(Some(sequence.clone()))))
            .collect(),
        moved: false,
    }));
    let shared = Arc::new(Shared {
        kinesis,
        stream: settings.stream.clone(),
        sink,
        stop: shutdown.child_token(),
        tuning,
        progress,
    });
    let mut consumer = Consumer {
        shared: shared.clone(),
        settings,
        checkpoint,
        first_run,
        store,
        readers: JoinSet::new(),
        reading: BTreeSet::new(),
        finished: BTreeSet::new(),
        waiting: BTreeMap::new(),
    };
    let result = consumer.run(&shutdown).await;
    consumer.stop().await;
    result
}

/// Milliseconds since the epoch, now.
fn now_millis() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

/// Wait while the stream is being created; its creation time (epoch milliseconds).
async fn wait_until_active(kinesis: &KinesisClient, stream: &str) -> Result<i64, SourceError> {
    let deadline = tokio::time::Instant::now() + STREAM_ACTIVE_WAIT;
    let mut attempt = 0;
    loop {
        let summary = match kinesis.describe_stream_summary().stream_name(stream).send().await {
            Ok(out) => out.stream_description_summary,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                return Err(format!("stream {stream} not found").into());
            }
            Err(e) if throttled(&e) => None,
            Err(e) => return Err(format!("describing stream {stream}: {}", DisplayErrorContext(&e)).into()),
        };
        match summary.as_ref().map(|s| &s.stream_status) {
            Some(StreamStatus::Active | StreamStatus::Updating) => {
                let created = summary.map(|s| s.stream_creation_timestamp.to_millis().unwrap_or_default());
                return Ok(created.unwrap_or_default());
            }
            Some(StreamStatus::Deleting) => return Err(format!("stream {stream} is being deleted").into()),
            status => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("stream {stream} is not active after {STREAM_ACTIVE_WAIT:?}").into());
                }
                debug!(%stream, ?status, "waiting for the stream to be active");
                tokio::time::sleep(THROTTLE_BACKOFF.backoff(attempt).min(Duration::from_secs(5))).await;
                attempt += 1;
            }
        }
    }
}

/// What the shard readers of one consumer share.
struct Shared {
    kinesis: KinesisClient,
    stream: String,
    sink: Sink,
    /// Cancelled when the consumer stops or a reader failed.
    stop: CancellationToken,
    tuning: Tuning,
    progress: SharedProgress,
}

/// One consumer: its shard readers and its checkpoints.
struct Consumer {
    shared: Arc<Shared>,
    settings: StreamSettings,
    checkpoint: Checkpoint,
    first_run: bool,
    store: CheckpointStore,
    readers: JoinSet<(String, Result<(), SourceError>)>,
    reading: BTreeSet<String>,
    /// Shards read to their end (closed).
    finished: BTreeSet<String>,
    /// Shards waiting for their parents to be read to their end.
    waiting: BTreeMap<String, (ShardInfo, Position)>,
}

impl Consumer {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), SourceError> {
        let Some(initial) = until(shutdown, self.initial_shards()).await else { return Ok(()) };
        for shard in initial? {
            let position = match self.checkpoint.shards.get(&shard.id) {
                Some(sequence) => Position::After(sequence.clone()),
                None if self.first_run => Position::Latest,
                None => Position::Since(self.checkpoint.started_at_millis),
            };
            self.waiting.insert(shard.id.clone(), (shard, position));
        }
        self.start_ready();
        let tuning = self.shared.tuning;
        let mut checkpoints = tokio::time::interval(tuning.checkpoint_interval);
        let mut discovery = tokio::time::interval(tuning.shard_discovery);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        discovery.reset();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some(joined) = self.readers.join_next() => match joined {
                    Ok((shard, Ok(()))) => {
                        info!(stream = %self.settings.stream, %shard, "shard closed and read to its end");
                        self.reading.remove(&shard);
                        self.finished.insert(shard);
                        self.start_ready();
                    }
                    Ok((shard, Err(e))) => return Err(format!("reading shard {shard}: {e}").into()),
                    Err(e) => return Err(format!("a shard reader stopped: {e}").into()),
                },
                _ = checkpoints.tick() => self.save().await,
                _ = discovery.tick(), if self.settings.shard.is_none() => self.discover().await,
            }
        }
    }

    /// The shards to read at start: the named one, or every shard of the stream.
    async fn initial_shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        if let Some(shard) = &self.settings.shard {
            return Ok(vec![ShardInfo { id: shard.clone(), parents: Vec::new() }]);
        }
        let mut attempt = 0;
        loop {
            match list_shards(&self.shared.kinesis, &self.settings.stream).await {
                Ok(shards) => return Ok(shards),
                Err(e) if throttled(&e) => {
                    tokio::time::sleep(THROTTLE_BACKOFF.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let stream = &self.settings.stream;
                    return Err(format!("listing the shards of {stream}: {}", DisplayErrorContext(&e)).into());
                }
            }
        }
    }

    /// List the shards again and read the new ones (from their oldest record:
    /// they were created after this consumer started).
    async fn discover(&mut self) {
        let shards = match list_shards(&self.shared.kinesis, &self.settings.stream).await {
            Ok(shards) => shards,
            Err(e) => {
                warn!(stream = %self.settings.stream, error = %DisplayErrorContext(&e), "listing shards failed; trying again later");
                return;
            }
        };
        for shard in shards {
            let known = self.reading.contains(&shard.id)
                || self.finished.contains(&shard.id)
                || self.waiting.contains_key(&shard.id);
            if !known {
                let position = match self.checkpoint.shards.get(&shard.id) {
                    Some(sequence) => Position::After(sequence.clone()),
                    None => Position::TrimHorizon,
                };
                info!(stream = %self.settings.stream, shard = %shard.id, "new shard");
                self.waiting.insert(shard.id.clone(), (shard, position));
            }
        }
        self.start_ready();
    }

    /// Start a reader for every waiting shard whose parents are not being read.
    fn start_ready(&mut self) {
        let blocked = |parents: &[String], reading: &BTreeSet<String>, waiting: &BTreeMap<_, _>| {
            parents.iter().any(|p| reading.contains(p) || waiting.contains_key(p))
        };
        let ready: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, (shard, _))| !blocked(&shard.parents, &self.reading, &self.waiting))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let Some((shard, position)) = self.waiting.remove(&id) else { continue };
            debug!(stream = %self.settings.stream, shard = %shard.id, ?position, "reading shard");
            let shared = self.shared.clone();
            let name = shard.id.clone();
            self.reading.insert(name.clone());
            self.readers.spawn(async move {
                let result = read_shard(&shared, Arc::from(name.as_str()), position).await;
                (name, result)
            });
        }
    }

    /// Write the checkpoints if they moved; a failure is logged and tried again later.
    async fn save(&mut self) {
        {
            let mut progress = lock(&self.shared.progress);
            if !progress.moved {
                return;
            }
            progress.moved = false;
            for (shard, ledger) in &progress.shards {
                if let Some(sequence) = &ledger.committed {
                    self.checkpoint.shards.insert(shard.to_string(), sequence.clone());
                }
            }
        }
        if let Err(e) = self.store.save(&self.checkpoint).await {
            lock(&self.shared.progress).moved = true;
            warn!(configmap = self.store.name(), error = %e, "writing the checkpoints failed; trying again later");
        }
    }

    /// Stop the readers, wait a little for the deliveries in flight, write the checkpoints.
    async fn stop(&mut self) {
        self.shared.stop.cancel();
        while self.readers.join_next().await.is_some() {}
        let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            let in_flight: usize = lock(&self.shared.progress).shards.values().map(|l| l.in_flight).sum();
            if in_flight == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.save().await;
    }
}

/// Every shard of `stream`, open or closed.
async fn list_shards(
    kinesis: &KinesisClient,
    stream: &str,
) -> Result<
    Vec<ShardInfo>,
    aws_sdk_kinesis::error::SdkError<aws_sdk_kinesis::operation::list_shards::ListShardsError>,
> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match token.take() {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let out = request.send().await?;
        shards.extend(out.shards.unwrap_or_default().into_iter().map(ShardInfo::from));
        match out.next_token {
            Some(next) => token = Some(next),
            None => return Ok(shards),
        }
    }
}

/// A shard iterator at `position`; `None` once the consumer stops.
async fn iterator(shared: &Shared, shard: &str, position: &Position) -> Result<Option<String>, SourceError> {
    let mut position = position.clone();
    let mut attempt = 0;
    loop {
        let request = shared.kinesis.get_shard_iterator().stream_name(&shared.stream).shard_id(shard);
        let request = match &position {
            Position::After(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            Position::At(sequence) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence),
            Position::Since(millis) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*millis)),
            Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let Some(result) = until(&shared.stop, request.send()).await else { return Ok(None) };
        let error = match result {
            Ok(out) => {
                return out
                    .shard_iterator
                    .map(Some)
                    .ok_or_else(|| "Kinesis returned no shard iterator".into());
            }
            Err(e) => e,
        };
        let invalid = error.as_service_error().is_some_and(|e| e.is_invalid_argument_exception());
        position = match position {
            _ if throttled(&error) => {
                let pause = THROTTLE_BACKOFF.backoff(attempt);
                attempt += 1;
                debug!(%shard, ?pause, "GetShardIterator throttled");
                if until(&shared.stop, tokio::time::sleep(pause)).await.is_none() {
                    return Ok(None);
                }
                position
            }
            // A start time Kinesis sees in the future (clock skew): from now on.
            Position::Since(_) if invalid => {
                warn!(%shard, error = %DisplayErrorContext(&error), "no iterator at the start time; reading from the latest record");
                Position::Latest
            }
            // A sequence number the shard does not know: everything it keeps.
            Position::After(_) | Position::At(_) if invalid => {
                warn!(%shard, error = %DisplayErrorContext(&error), "no iterator at the checkpoint; reading from the oldest record");
                Position::TrimHorizon
            }
            _ => {
                return Err(format!(
                    "GetShardIterator on {shard} at {position:?}: {}",
                    DisplayErrorContext(&error)
                )
                .into());
            }
        };
    }
}

/// Read one shard until it is closed and read to its end (then `Ok`), the
/// consumer stops (`Ok`), or Kinesis fails (`Err`).
async fn read_shard(shared: &Shared, shard: Arc<str>, start: Position) -> Result<(), SourceError> {
    let stop = &shared.stop;
    let tuning = shared.tuning;
    let mut position = start;
    let Some(first) = iterator(shared, &shard, &position).await? else { return Ok(()) };
    let mut current = Some(first);
    let mut last_read: Option<String> = None;
    let (mut idle, mut throttles) = (0u32, 0u32);
    let in_flight = |shared: &Shared| lock(&shared.progress).shards.get(&shard).map_or(0, |l| l.in_flight);
    let failed = |shared: &Shared| lock(&shared.progress).shards.get(&shard).is_some_and(|l| l.failed);
    // Wait for every delivery of the shard to settle; false once the consumer stops.
    let settled = async |shared: &Shared| {
        while in_flight(shared) > 0 {
            if until(stop, tokio::time::sleep(Duration::from_millis(20))).await.is_none() {
                return false;
            }
        }
        true
    };
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if failed(shared) {
            if !settled(shared).await {
                return Ok(());
            }
            let delay = tuning.redelivery_delay;
            warn!(stream = %shared.stream, %shard, ?delay, "a delivery failed; reading the shard again from its checkpoint");
            if until(stop, tokio::time::sleep(delay)).await.is_none() {
                return Ok(());
            }
            position = {
                let mut progress = lock(&shared.progress);
                let ledger = progress.shards.entry(shard.clone()).or_default();
                let resume = ledger.resume().unwrap_or(position);
                ledger.rewind();
                resume
            };
            last_read = None;
            let Some(fresh) = iterator(shared, &shard, &position).await? else { return Ok(()) };
            current = Some(fresh);
            continue;
        }
        let Some(it) = current.take() else {
            // Closed and read to its end: done once its deliveries settled.
            if !settled(shared).await {
                return Ok(());
            }
            if failed(shared) {
                continue;
            }
            return Ok(());
        };
        let request = shared.kinesis.get_records().shard_iterator(&it).limit(tuning.get_records_limit);
        let Some(result) = until(stop, request.send()).await else { return Ok(()) };
        let pause = match result {
            Ok(out) => {
                throttles = 0;
                let empty = out.records.is_empty();
                let caught_up = out.millis_behind_latest.unwrap_or(0) == 0;
                current = out.next_shard_iterator;
                for record in out.records {
                    let ticket = Ticket::new(&shared.progress, &shard, record.sequence_number.clone());
                    // The record's coordinates: the same `event-id` every time it is read.
                    let id = format!("{}/{shard}/{}", shared.stream, record.sequence_number);
                    last_read = Some(record.sequence_number);
                    let event = Event::new(record.data.into_inner())
                        .with_id(id)
                        .with_topic(shared.stream.clone())
                        .with_ack(move |outcome| ticket.settle(outcome));
                    if until(stop, shared.sink.send(event)).await.is_none() {
                        return Ok(());
                    }
                    if failed(shared) {
                        break;
                    }
                }
                if empty && caught_up {
                    let pause = tuning.poll_interval.saturating_mul(1 << idle.min(16));
                    idle = idle.saturating_add(1);
                    pause.min(tuning.max_poll_interval)
                } else {
                    idle = 0;
                    tuning.poll_interval
                }
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_expired_iterator_exception()) => {
                debug!(%shard, "shard iterator expired; asking for a new one");
                if let Some(sequence) = &last_read {
                    position = Position::After(sequence.clone());
                }
                let Some(fresh) = iterator(shared, &shard, &position).await? else { return Ok(()) };
                current = Some(fresh);
                continue;
            }
            Err(e) if throttled(&e) => {
                current = Some(it);
                let pause = THROTTLE_BACKOFF.backoff(throttles);
                if throttles == 0 {
                    warn!(stream = %shared.stream, %shard, ?pause, "GetRecords throttled; backing off");
                }
                throttles = throttles.saturating_add(1);
                pause
            }
            Err(e) => return Err(format!("GetRecords: {}", DisplayErrorContext(&e)).into()),
        };
        if until(stop, tokio::time::sleep(pause)).await.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use k8s_openapi::ByteString;
    use kube::client::Body;

    use crate::apis::TEST_SPEC_JSON;

    fn spec() -> TriggerSpec {
        serde_json::from_str(TEST_SPEC_JSON).expect("a valid test spec")
    }

    fn key() -> ConsumerKey {
        ConsumerKey { namespace: "default".into(), trigger: "orders".into(), function: "hello".into() }
    }

    #[test]
    fn settings_are_read_and_checked() {
        let mut spec = spec();
        spec.region = " us-east-1 ".into();
        spec.shard = None;
        spec.endpoint = Some("http://127.0.0.1:4567".into());
        let settings = StreamSettings::from_spec(&spec).expect("valid");
        assert_eq!(settings.region, "us-east-1");
        assert_eq!(settings.shard, None);
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
        spec.shard = Some("shardId-000000000001".into());
        spec.endpoint = Some("  ".into());
        let settings = StreamSettings::from_spec(&spec).expect("valid");
        assert_eq!((settings.shard.as_deref(), settings.endpoint), (Some("shardId-000000000001"), None));

        let error = |change: &dyn Fn(&mut TriggerSpec)| {
            let mut spec = spec.clone();
            change(&mut spec);
            StreamSettings::from_spec(&spec).expect_err("invalid").to_string()
        };
        for endpoint in ["kinesalite:4567", "ftp://host", "not a url", "http://"] {
            let message = error(&|s| s.endpoint = Some(endpoint.into()));
            assert!(message.starts_with("endpoint"), "{endpoint}: {message}");
        }
        assert!(error(&|s| s.region = "".into()).starts_with("region"));
        assert!(error(&|s| s.region = "us east".into()).starts_with("region"));
        assert!(error(&|s| s.stream = "a/b".into()).starts_with("stream"));
        assert!(error(&|s| s.stream = "x".repeat(129)).starts_with("stream"));
        assert!(error(&|s| s.shard = Some("".into())).starts_with("shard"));
        assert!(error(&|s| s.secret = " ".into()).starts_with("secret"));
    }

    #[test]
    fn tuning_defaults_and_overrides() {
        assert_eq!(Tuning::from_lookup(|_| None).expect("defaults"), Tuning::default());
        let tuning = Tuning::from_lookup(|k| match k {
            "POLL_INTERVAL_MILLISECONDS" => Some("100".into()),
            "MAX_POLL_INTERVAL_MILLISECONDS" => Some("50".into()),
            "GET_RECORDS_LIMIT" => Some("10".into()),
            "REDELIVERY_DELAY_SECONDS" => Some("0".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(tuning.poll_interval, Duration::from_millis(100));
        assert_eq!(tuning.max_poll_interval, Duration::from_millis(100), "never below the poll interval");
        assert_eq!((tuning.get_records_limit, tuning.redelivery_delay), (10, Duration::ZERO));
        for (key, bad) in [("GET_RECORDS_LIMIT", "10001"), ("POLL_INTERVAL_MILLISECONDS", "0")] {
            let e = Tuning::from_lookup(|k| (k == key).then(|| bad.to_owned())).expect_err("invalid");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec()))).collect()),
            ..Secret::default()
        }
    }

    #[test]
    fn credentials_come_from_the_secret_keys_of_the_original() {
        let s = secret(&[("aws_access_key_id", b"AKID\n"), ("aws_secret_access_key", b" hush ")]);
        let credentials = credentials_from(&s, "default/aws").expect("valid");
        assert_eq!((credentials.access_key_id(), credentials.secret_access_key()), ("AKID", "hush"));
        assert_eq!(credentials.session_token(), None);
        let s = secret(&[
            ("aws_access_key_id", b"AKID"),
            ("aws_secret_access_key", b"hush"),
            ("aws_session_token", b"token"),
        ]);
        assert_eq!(credentials_from(&s, "default/aws").expect("valid").session_token(), Some("token"));

        let missing = credentials_from(&secret(&[("aws_access_key_id", b"AKID")]), "default/aws");
        let message = missing.expect_err("no secret key").to_string();
        assert!(message.contains("default/aws") && message.contains("aws_secret_access_key"), "{message}");
        let empty = secret(&[("aws_access_key_id", b" "), ("aws_secret_access_key", b"x")]);
        assert!(
            credentials_from(&empty, "n/s").expect_err("empty").to_string().contains("aws_access_key_id")
        );
        let binary = secret(&[("aws_access_key_id", &[0xff, 0xfe]), ("aws_secret_access_key", b"x")]);
        assert!(credentials_from(&binary, "n/s").expect_err("binary").to_string().contains("UTF-8"));
        assert!(credentials_from(&Secret::default(), "n/s").is_err());
    }

    #[test]
    fn checkpoint_names_are_valid_object_names() {
        assert_eq!(checkpoint_name(&key()), "kinesis-checkpoint.orders.hello");
        let long = ConsumerKey { trigger: "t".repeat(250), ..key() };
        let name = checkpoint_name(&long);
        assert!(name.len() <= 253 && name.starts_with("kinesis-checkpoint."), "{name}");
        assert_eq!(name, checkpoint_name(&long), "stable");
        let other = ConsumerKey { function: "other".into(), ..long };
        assert_ne!(name, checkpoint_name(&other));
    }

    fn receive(ledger: &mut ShardLedger, sequences: &[&str]) -> Vec<(u64, u64)> {
        sequences.iter().map(|s| ledger.receive((*s).to_owned())).collect()
    }

    #[test]
    fn the_checkpoint_is_the_last_record_of_the_contiguous_settled_run() {
        let mut ledger = ShardLedger::new(Some("100".into()));
        let t = receive(&mut ledger, &["495", "9000000000000000000000001", "9000000000000000000000002"]);
        assert!(!ledger.settle(t[1].0, t[1].1, true), "the first record is still in flight");
        assert_eq!(ledger.committed.as_deref(), Some("100"));
        assert!(ledger.settle(t[0].0, t[0].1, true));
        assert_eq!(ledger.committed.as_deref(), Some("9000000000000000000000001"), "big sequence numbers");
        assert!(ledger.settle(t[2].0, t[2].1, true));
        assert_eq!(ledger.committed.as_deref(), Some("9000000000000000000000002"));
        assert_eq!((ledger.in_flight, ledger.sequences.len()), (0, 0));
    }

    #[test]
    fn a_failed_record_holds_the_checkpoint_back_and_the_shard_is_read_again_from_it() {
        let mut ledger = ShardLedger::new(None);
        let t = receive(&mut ledger, &["1", "2", "3"]);
        assert!(ledger.settle(t[0].0, t[0].1, true));
        assert!(!ledger.settle(t[1].0, t[1].1, false), "failed");
        assert!(!ledger.settle(t[2].0, t[2].1, true), "held back by the failure");
        assert!(ledger.failed);
        assert_eq!(ledger.committed.as_deref(), Some("1"));
        assert_eq!(ledger.resume(), Some(Position::After("1".into())));
        ledger.rewind();
        assert!(!ledger.failed);
        let again = receive(&mut ledger, &["2", "3"]);
        assert!(!ledger.settle(t[2].0, t[2].1, true), "a ticket of an earlier epoch counts for nothing");
        assert!(ledger.settle(again[0].0, again[0].1, true));
        assert!(ledger.settle(again[1].0, again[1].1, true));
        assert_eq!(ledger.committed.as_deref(), Some("3"));

        // Nothing settled yet: read again at the first record read.
        let mut fresh = ShardLedger::new(None);
        let t = receive(&mut fresh, &["7", "8"]);
        fresh.settle(t[0].0, t[0].1, false);
        assert_eq!(fresh.resume(), Some(Position::At("7".into())));
    }

    #[test]
    fn a_ticket_dropped_without_an_outcome_counts_as_not_delivered() {
        let progress: SharedProgress = Arc::default();
        let shard: Arc<str> = Arc::from("shardId-000000000000");
        let delivered = Ticket::new(&progress, &shard, "1".into());
        let dropped = Ticket::new(&progress, &shard, "2".into());
        delivered.settle(Outcome::Delivered);
        assert!(lock(&progress).moved);
        drop(dropped);
        let progress = lock(&progress);
        let ledger = &progress.shards[&shard];
        assert!(ledger.failed);
        assert_eq!((ledger.in_flight, ledger.committed.as_deref()), (0, Some("1")));
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            region: "us-east-1".into(),
            endpoint: None,
            stream: "orders".into(),
            stream_created_millis: 1_700_000_000_000,
            started_at_millis: 1_700_000_100_000,
            shards: BTreeMap::from([("shardId-000000000000".into(), "4959".into())]),
        }
    }

    #[test]
    fn a_checkpoint_of_another_stream_is_told_apart() {
        let c = checkpoint();
        assert!(c.same_stream(&Checkpoint { shards: BTreeMap::new(), started_at_millis: 0, ..c.clone() }));
        assert!(!c.same_stream(&Checkpoint { stream: "other".into(), ..c.clone() }));
        assert!(!c.same_stream(&Checkpoint { region: "eu-west-1".into(), ..c.clone() }));
        assert!(!c.same_stream(&Checkpoint { endpoint: Some("http://x".into()), ..c.clone() }));
        assert!(!c.same_stream(&Checkpoint { stream_created_millis: 1, ..c.clone() }), "created again");
    }

    fn not_found() -> http::Response<Body> {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404
        });
        http::Response::builder()
            .status(404)
            .body(Body::from(serde_json::to_vec(&status).expect("json")))
            .expect("response")
    }

    fn ok(value: &serde_json::Value) -> http::Response<Body> {
        http::Response::new(Body::from(serde_json::to_vec(value).expect("json")))
    }

    #[tokio::test]
    async fn checkpoints_are_applied_to_a_config_map_owned_by_the_trigger() {
        let (service, mut api) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let owner = OwnerReference {
            api_version: "kubeless.io/v1beta1".into(),
            kind: "KinesisTrigger".into(),
            name: "orders".into(),
            uid: "0b1c".into(),
            ..OwnerReference::default()
        };
        let mut store = CheckpointStore::new(kube::Client::new(service, "default"), &key(), Some(owner));
        let path = "/api/v1/namespaces/default/configmaps/kinesis-checkpoint.orders.hello";
        let server = tokio::spawn(async move {
            let (request, send) = api.next_request().await.expect("a GET");
            assert_eq!((request.method(), request.uri().path()), (&http::Method::GET, path));
            send.send_response(not_found());

            let (request, send) = api.next_request().await.expect("a PATCH");
            assert_eq!((request.method(), request.uri().path()), (&http::Method::PATCH, path));
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert!(query.contains("fieldManager=") && query.contains("force=true"), "{query}");
            assert_eq!(request.headers()["content-type"], "application/apply-patch+yaml");
            let body = request.into_body().collect_bytes().await.expect("body");
            let map: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(map["kind"], "ConfigMap");
            assert_eq!(map["metadata"]["ownerReferences"][0]["uid"], "0b1c");
            assert_eq!(map["metadata"]["annotations"]["kubeless.io/function"], "hello");
            let text = map["data"][CHECKPOINT_KEY].as_str().expect("a checkpoint").to_owned();
            assert_eq!(serde_json::from_str::<Checkpoint>(&text).expect("a checkpoint"), checkpoint());
            send.send_response(ok(&map));

            let (_, send) = api.next_request().await.expect("a GET");
            send.send_response(ok(&map));
            api
        });
        assert_eq!(store.load().await.expect("loaded"), None, "no ConfigMap yet");
        store.save(&checkpoint()).await.expect("saved");
        store.save(&checkpoint()).await.expect("unchanged: nothing sent");
        assert_eq!(store.load().await.expect("loaded"), Some(checkpoint()));
        let mut api = server.await.expect("the API server's asserts");
        let more = tokio::time::timeout(Duration::from_millis(50), api.next_request()).await;
        assert!(more.is_err(), "an unchanged checkpoint is not written again");
    }

    #[tokio::test]
    async fn a_config_map_that_is_not_a_checkpoint_is_an_error_that_says_what_to_do() {
        let (service, mut api) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let mut store = CheckpointStore::new(kube::Client::new(service, "default"), &key(), None);
        tokio::spawn(async move {
            let (_, send) = api.next_request().await.expect("a GET");
            let map = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kinesis-checkpoint.orders.hello", "namespace": "default"},
                "data": {CHECKPOINT_KEY: "{"}
            });
            send.send_response(ok(&map));
        });
        let e = store.load().await.expect_err("corrupt").to_string();
        assert!(e.contains("kinesis-checkpoint.orders.hello") && e.contains("delete the ConfigMap"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_secret_is_an_error_that_names_it() {
        let (service, mut api) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        tokio::spawn(async move {
            let (request, send) = api.next_request().await.expect("a GET");
            assert_eq!(request.uri().path(), "/api/v1/namespaces/team/secrets/aws");
            send.send_response(not_found());
        });
        let client = kube::Client::new(service, "default");
        let e = read_credentials(&client, "team", "aws").await.expect_err("missing").to_string();
        assert!(e.contains("team/aws") && e.contains("not found"), "{e}");
    }

    // Integration tests against a Kinesis server (kinesalite):
    //   KINESIS_ENDPOINT=http://127.0.0.1:4567 cargo test -- --ignored --test-threads=1
    // The Kubernetes API they need (the Secret, the trigger, the checkpoint
    // ConfigMap) is the in-memory `FakeApi` below.

    fn endpoint() -> String {
        std::env::var("KINESIS_ENDPOINT").expect("KINESIS_ENDPOINT: the URL of a kinesalite server")
    }

    fn test_settings(stream: &str) -> StreamSettings {
        StreamSettings {
            region: "us-east-1".into(),
            secret: "aws".into(),
            stream: stream.into(),
            shard: None,
            endpoint: Some(endpoint()),
        }
    }

    fn test_kinesis() -> KinesisClient {
        let credentials = Credentials::new("test", "test", None, None, "test");
        kinesis_client(&test_settings("unused"), credentials)
    }

    /// A new stream with `shards` shards; its shards' starting hash keys.
    async fn create_stream(kinesis: &KinesisClient, shards: i32) -> (String, Vec<(String, String)>) {
        let stream = format!("kubeless-test-{}", crate::invoker::event_id());
        kinesis.create_stream().stream_name(&stream).shard_count(shards).send().await.expect("create");
        wait_until_active(kinesis, &stream).await.expect("active");
        let listed = kinesis.list_shards().stream_name(&stream).send().await.expect("list");
        let keys = listed
            .shards
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.shard_id, s.hash_key_range.map(|r| r.starting_hash_key).unwrap_or_default()))
            .collect();
        (stream, keys)
    }

    async fn put(kinesis: &KinesisClient, stream: &str, body: &str, hash_key: Option<&str>) {
        let mut request = kinesis
            .put_record()
            .stream_name(stream)
            .data(aws_sdk_kinesis::primitives::Blob::new(body.as_bytes()))
            .partition_key(body);
        if let Some(hash_key) = hash_key {
            request = request.explicit_hash_key(hash_key);
        }
        request.send().await.expect("put");
    }

    /// An in-memory Kubernetes API: the Secret `aws`, the trigger `orders`,
    /// and ConfigMaps (kept across consumers, as the cluster would).
    #[derive(Clone, Default)]
    struct FakeApi {
        config_maps: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    }

    impl FakeApi {
        fn client(&self) -> kube::Client {
            let (service, mut handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
            let state = self.clone();
            tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    send.send_response(state.answer(request).await);
                }
            });
            kube::Client::new(service, "default")
        }

        async fn answer(&self, request: http::Request<Body>) -> http::Response<Body> {
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let trigger = Trigger::url_path(&(), Some("default"));
            if method == http::Method::GET && path == "/api/v1/namespaces/default/secrets/aws" {
                let data =
                    serde_json::json!({"aws_access_key_id": "dGVzdA==", "aws_secret_access_key": "dGVzdA=="});
                return ok(&serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"}, "data": data
                }));
            }
            if method == http::Method::GET && path == format!("{trigger}/orders") {
                return ok(&serde_json::json!({
                    "apiVersion": Trigger::api_version(&()), "kind": Trigger::kind(&()),
                    "metadata": {"name": "orders", "namespace": "default", "uid": "0b1c"},
                    "spec": serde_json::from_str::<serde_json::Value>(TEST_SPEC_JSON).expect("json"),
                }));
            }
            let Some(name) = path.strip_prefix("/api/v1/namespaces/default/configmaps/") else {
                return not_found();
            };
            if method == http::Method::PATCH {
                let body = request.into_body().collect_bytes().await.expect("body");
                let map: serde_json::Value = serde_json::from_slice(&body).expect("json");
                lock(&self.config_maps).insert(name.to_owned(), map.clone());
                return ok(&map);
            }
            lock(&self.config_maps).get(name).map_or_else(not_found, ok)
        }

        /// The checkpoint written for consumer `key()`.
        fn checkpoint(&self) -> Option<Checkpoint> {
            let maps = lock(&self.config_maps);
            let text = maps.get(&checkpoint_name(&key()))?["data"][CHECKPOINT_KEY].as_str()?.to_owned();
            serde_json::from_str(&text).ok()
        }
    }

    /// A loopback function that records each request's body and Kubeless
    /// headers, and answers 500 to the first `failures` requests.
    #[derive(Clone, Default)]
    struct TestFunction {
        received: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>,
        failures: Arc<AtomicUsize>,
    }

    impl TestFunction {
        async fn start(failures: usize) -> (TestFunction, String) {
            use http_body_util::{BodyExt, Full};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let function = TestFunction::default();
            function.failures.store(failures, Ordering::SeqCst);
            let serving = function.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let function = serving.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let function = function.clone();
                                async move {
                                    let headers = req.headers().clone();
                                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                    let failing = function
                                        .failures
                                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                            n.checked_sub(1)
                                        })
                                        .is_ok();
                                    let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                    if failing {
                                        *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                    } else {
                                        lock(&function.received).push((headers, body.unwrap_or_default()));
                                    }
                                    Ok::<_, std::convert::Infallible>(response)
                                }
                            });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ =
                            hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
            (function, url)
        }

        /// How often the function answered 2xx to `body`.
        fn count(&self, body: &str) -> usize {
            lock(&self.received).iter().filter(|(_, b)| b == body.as_bytes()).count()
        }

        /// Wait until every one of `bodies` was delivered.
        async fn wait_for(&self, bodies: &[String], within: Duration) {
            let deadline = tokio::time::Instant::now() + within;
            while bodies.iter().any(|b| self.count(b) == 0) {
                let missing: Vec<_> = bodies.iter().filter(|b| self.count(b) == 0).collect();
                assert!(tokio::time::Instant::now() < deadline, "not delivered: {missing:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn fast() -> Tuning {
        Tuning {
            poll_interval: Duration::from_millis(50),
            max_poll_interval: Duration::from_millis(200),
            checkpoint_interval: Duration::from_millis(200),
            shard_discovery: Duration::from_millis(300),
            redelivery_delay: Duration::from_millis(200),
            ..Tuning::default()
        }
    }

    /// A consumer of `stream` (optionally one shard) delivering to `url` without retries.
    fn start(
        api: &FakeApi,
        stream: &str,
        shard: Option<&str>,
        url: &str,
    ) -> (CancellationToken, tokio::task::JoinHandle<Result<(), SourceError>>) {
        use crate::delivery::{DeliveryMode, SinkOptions};
        let mut spec = spec();
        spec.stream = stream.to_owned();
        spec.shard = shard.map(str::to_owned);
        spec.endpoint = Some(endpoint());
        spec.region = "us-east-1".into();
        spec.secret = "aws".into();
        let key = key();
        let ctx = ConsumerContext {
            group: key.group(),
            key,
            spec,
            delivery: DeliveryMode::AtLeastOnce,
            max_in_flight: 4,
            client: api.client(),
        };
        let retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        let options = SinkOptions { max_in_flight: 4, retry, ..SinkOptions::default() };
        let invoker = crate::invoker::Invoker::new(Duration::from_secs(5));
        let sink = Sink::new(url.to_owned(), invoker, options, crate::metrics::Metrics::new(), None);
        let shutdown = CancellationToken::new();
        (shutdown.clone(), tokio::spawn(consume_with(ctx, sink, shutdown, fast())))
    }

    /// Put probes on each shard until one reached the function: the consumer reads every shard.
    async fn probe(kinesis: &KinesisClient, stream: &str, shards: &[(String, String)], f: &TestFunction) {
        for (shard, hash_key) in shards {
            let mut reached = false;
            for i in 0..100 {
                let body = format!("probe-{shard}-{i}");
                put(kinesis, stream, &body, Some(hash_key)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if (0..=i).any(|j| f.count(&format!("probe-{shard}-{j}")) > 0) {
                    reached = true;
                    break;
                }
            }
            assert!(reached, "the consumer reads {shard}");
        }
    }

    async fn stop(shutdown: CancellationToken, consumer: tokio::task::JoinHandle<Result<(), SourceError>>) {
        shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), consumer).await.expect("stops in time");
        result.expect("join").expect("the consumer stops cleanly");
    }

    #[tokio::test]
    #[ignore = "needs kinesalite: KINESIS_ENDPOINT=http://127.0.0.1:4567 cargo test -- --ignored --test-threads=1"]
    async fn records_of_every_shard_reach_the_function_once_with_the_kubeless_headers() {
        let kinesis = test_kinesis();
        let (stream, shards) = create_stream(&kinesis, 2).await;
        assert_eq!(shards.len(), 2);
        let (f, url) = TestFunction::start(0).await;
        let api = FakeApi::default();
        let (shutdown, consumer) = start(&api, &stream, None, &url);
        probe(&kinesis, &stream, &shards, &f).await;

        let bodies: Vec<String> = (0..20).map(|i| format!("{{\"payload\":\"record-{i}\"}}")).collect();
        for (i, body) in bodies.iter().enumerate() {
            put(&kinesis, &stream, body, Some(&shards[i % 2].1)).await;
        }
        f.wait_for(&bodies, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for body in &bodies {
            assert_eq!(f.count(body), 1, "{body} delivered once");
        }
        let received = lock(&f.received).clone();
        let (headers, _) = received.iter().find(|(_, b)| b == bodies[0].as_bytes()).expect("delivered");
        assert_eq!(headers["event-namespace"], "kinesistriggers.kubeless.io");
        assert_eq!(headers["event-topic"], stream.as_str());
        assert_eq!(headers["event-type"], "application/json");
        assert!(!headers["event-id"].is_empty() && headers.contains_key("event-time"));
        stop(shutdown, consumer).await;
        let checkpoint = api.checkpoint().expect("checkpoints written");
        assert_eq!(checkpoint.shards.len(), 2, "one per shard: {checkpoint:?}");
    }

    #[tokio::test]
    #[ignore = "needs kinesalite: KINESIS_ENDPOINT=http://127.0.0.1:4567 cargo test -- --ignored --test-threads=1"]
    async fn records_put_while_the_consumer_was_stopped_are_delivered_when_it_starts_again() {
        let kinesis = test_kinesis();
        let (stream, shards) = create_stream(&kinesis, 2).await;
        let (f, url) = TestFunction::start(0).await;
        let api = FakeApi::default();
        let (shutdown, consumer) = start(&api, &stream, None, &url);
        probe(&kinesis, &stream, &shards, &f).await;
        let before: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
        for body in &before {
            put(&kinesis, &stream, body, None).await;
        }
        f.wait_for(&before, Duration::from_secs(20)).await;
        stop(shutdown, consumer).await;

        let during: Vec<String> = (0..10).map(|i| format!("during-{i}")).collect();
        for (i, body) in during.iter().enumerate() {
            put(&kinesis, &stream, body, Some(&shards[i % 2].1)).await;
        }
        let (shutdown, consumer) = start(&api, &stream, None, &url);
        f.wait_for(&during, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop(shutdown, consumer).await;
        for body in before.iter().chain(&during) {
            assert_eq!(f.count(body), 1, "{body}: delivered once (a clean stop writes its checkpoints)");
        }

        // A shard that had no record before the restart starts at the consumer's start time.
        let (stream, shards) = create_stream(&kinesis, 2).await;
        let (shutdown, consumer) = start(&api, &stream, Some(&shards[1].0), &url);
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop(shutdown, consumer).await;
        let checkpoint = api.checkpoint().expect("the start time is written");
        assert!(checkpoint.shards.is_empty() && checkpoint.stream == stream, "{checkpoint:?}");
        put(&kinesis, &stream, "while-stopped", Some(&shards[1].1)).await;
        put(&kinesis, &stream, "other-shard", Some(&shards[0].1)).await;
        let (shutdown, consumer) = start(&api, &stream, Some(&shards[1].0), &url);
        f.wait_for(&["while-stopped".to_owned()], Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop(shutdown, consumer).await;
        assert_eq!(f.count("other-shard"), 0, "only the named shard is read");
    }

    #[tokio::test]
    #[ignore = "needs kinesalite: KINESIS_ENDPOINT=http://127.0.0.1:4567 cargo test -- --ignored --test-threads=1"]
    async fn a_function_that_fails_then_recovers_loses_nothing() {
        let kinesis = test_kinesis();
        let (stream, shards) = create_stream(&kinesis, 2).await;
        let (f, url) = TestFunction::start(0).await;
        let api = FakeApi::default();
        let (shutdown, consumer) = start(&api, &stream, None, &url);
        probe(&kinesis, &stream, &shards, &f).await;
        f.failures.store(8, Ordering::SeqCst);
        let bodies: Vec<String> = (0..20).map(|i| format!("flaky-{i}")).collect();
        for body in &bodies {
            put(&kinesis, &stream, body, None).await;
        }
        f.wait_for(&bodies, Duration::from_secs(30)).await;
        assert_eq!(f.failures.load(Ordering::SeqCst), 0, "the function failed 8 times");
        stop(shutdown, consumer).await;
        let checkpoint = api.checkpoint().expect("checkpoints");
        assert_eq!(checkpoint.shards.len(), 2, "both shards moved past their failures: {checkpoint:?}");
    }

    #[tokio::test]
    #[ignore = "needs kinesalite: KINESIS_ENDPOINT=http://127.0.0.1:4567 cargo test -- --ignored --test-threads=1"]
    async fn shards_created_by_a_resharding_are_read_after_their_parent() {
        let kinesis = test_kinesis();
        let (stream, shards) = create_stream(&kinesis, 1).await;
        let (f, url) = TestFunction::start(0).await;
        let api = FakeApi::default();
        let (shutdown, consumer) = start(&api, &stream, None, &url);
        probe(&kinesis, &stream, &shards, &f).await;
        put(&kinesis, &stream, "before-split", None).await;
        f.wait_for(&["before-split".to_owned()], Duration::from_secs(20)).await;
        let parent = &shards[0].0;
        // The middle of the hash key range: 2^127.
        kinesis
            .split_shard()
            .stream_name(&stream)
            .shard_to_split(parent)
            .new_starting_hash_key("170141183460469231731687303715884105728")
            .send()
            .await
            .expect("split");
        wait_until_active(&kinesis, &stream).await.expect("active again");
        let after: Vec<String> = (0..10).map(|i| format!("after-split-{i}")).collect();
        for body in &after {
            put(&kinesis, &stream, body, None).await;
        }
        f.wait_for(&after, Duration::from_secs(20)).await;
        assert!(!consumer.is_finished(), "a closed shard does not end the consumer");
        stop(shutdown, consumer).await;
        let checkpoint = api.checkpoint().expect("checkpoints");
        assert!(checkpoint.shards.len() >= 2, "the children are checkpointed: {checkpoint:?}");
    }
}
