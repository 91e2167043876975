//! The proxy's Redis: one multiplexed connection, opened on first use and re-opened after a
//! failure (at most every `RETRY` while Redis is down, so requests fail fast instead of
//! each waiting for a connect); every command within the configured timeout. Holds the shared
//! rate-limit buckets (GCRA in one server-side script on Redis's `TIME`, so proxies on
//! several hosts agree without synchronised clocks) and the servers' admin states.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::proxy::base::clock::now_ms;
use crate::proxy::base::config_middleware::RedisConfig;

/// Time between connection attempts while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// GCRA: `KEYS[1]` holds the theoretical arrival time in microseconds on Redis's clock;
/// `ARGV[1]` the emission interval and `ARGV[2]` the burst, both in microseconds and cells.
/// Returns 0 when the request conforms (and records it), else the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - burst * interval
if over > 0 then return over end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisError {
    #[error("redis unreachable (next attempt pending)")]
    Backoff,
    #[error("redis timed out")]
    Timeout,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

pub(crate) struct Redis {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// No connection attempt before this time (proxy clock, ms).
    retry_at: AtomicU64,
    prefix: String,
    timeout: Duration,
    gcra: redis::Script,
    /// Commands that failed (unreachable, timeout, error).
    pub(crate) errors: AtomicU64,
}

impl Redis {
    /// `None` when the URL does not parse (the config check refuses such URLs already).
    pub(crate) fn new(c: &RedisConfig) -> Option<Self> {
        let client = redis::Client::open(c.url.as_str()).ok()?;
        Some(Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            retry_at: AtomicU64::new(0),
            prefix: c.key_prefix.clone(),
            timeout: Duration::from_millis(c.timeout_ms),
            gcra: redis::Script::new(GCRA),
            errors: AtomicU64::new(0),
        })
    }

    /// The connection, opened when there is none and the back-off allows.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        if now_ms() < self.retry_at.load(Ordering::Relaxed) {
            return Err(RedisError::Backoff);
        }
        let opened =
            tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
                .await;
        match opened {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            failed => {
                self.retry_at
                    .store(now_ms() + RETRY.as_millis() as u64, Ordering::Relaxed);
                match failed {
                    Ok(Err(e)) => Err(e.into()),
                    _ => Err(RedisError::Timeout),
                }
            }
        }
    }

    /// Runs one command future with the timeout; a failure drops the connection.
    async fn run<T, F>(&self, f: impl FnOnce(MultiplexedConnection) -> F) -> Result<T, RedisError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let result = match self.connection().await {
            Ok(conn) => match tokio::time::timeout(self.timeout, f(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => Err(RedisError::from(e)),
                Err(_) => Err(RedisError::Timeout),
            },
            Err(e) => Err(e),
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !matches!(result, Err(RedisError::Backoff)) {
            *self.conn.lock().await = None;
            self.retry_at
                .store(now_ms() + RETRY.as_millis() as u64, Ordering::Relaxed);
        }
        result
    }

    /// One GCRA decision for `key` of middleware `name`: `Ok(None)` conforms, `Ok(Some(wait))`
    /// is over the limit.
    pub(crate) async fn rate(
        &self,
        name: &str,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, RedisError> {
        let full = format!("{}rl:{name}:{key}", self.prefix);
        let interval_us = interval.as_micros().max(1) as u64;
        let wait_us: u64 = self
            .run(|mut c| {
                let gcra = &self.gcra;
                async move {
                    gcra.key(full)
                        .arg(interval_us)
                        .arg(burst)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }

    fn states_key(&self) -> String {
        format!("{}servers", self.prefix)
    }

    /// Records a server's admin state (`ready` removes the record).
    pub(crate) async fn set_state(
        &self,
        cluster: &str,
        address: &str,
        state: &str,
    ) -> Result<(), RedisError> {
        let key = self.states_key();
        let field = format!("{cluster}/{address}");
        let ready = state == "ready";
        let state = state.to_string();
        self.run(|mut c| async move {
            if ready {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&field)
                    .query_async::<()>(&mut c)
                    .await
            } else {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg(&field)
                    .arg(&state)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Every recorded admin state, by `cluster/address`.
    pub(crate) async fn states(&self) -> Result<HashMap<String, String>, RedisError> {
        let key = self.states_key();
        self.run(|mut c| async move {
            redis::cmd("HGETALL")
                .arg(&key)
                .query_async::<HashMap<String, String>>(&mut c)
                .await
        })
        .await
    }
}
