//! A Redis lock with a lease and a fencing token, the way a service without a database lock
//! would serialize work on one row across many application servers.
//!
//! - **Acquire**: one Lua script does `SET lock token NX PX ttl` and, only if that set the
//!   key, `INCR` of the row's fence counter, returning the new counter: the fencing token,
//!   strictly increasing per row across every holder ever. A failed attempt is retried after
//!   an exponential backoff with full jitter (`poll_base` doubling up to `poll_cap`) until
//!   `wait_max` has passed.
//! - **Release**: a Lua compare-and-delete: the key is deleted only if it still holds this
//!   holder's token. A holder whose lease expired (and whose key another holder now owns)
//!   deletes nothing; a plain `DEL` would delete the new holder's lock and let a third client
//!   in beside it.
//!
//! **Invariants**: a token is unique per acquisition (a per-process nonce and a counter);
//! the fence counter never decreases; the lock key expires by itself after `ttl`.
//!
//! **Performance**: two scripts, loaded once (EVALSHA); a few multiplexed connections shared
//! by all clients; a waiter polls, so a released lock stays free until the next poll.
//!
//! **Known limitations**: one Redis server (no Redlock quorum): if it restarts without
//! persistence, a lock is lost and the fence counter restarts, so the database would accept
//! an old token again (the database column keeps the highest token seen, which bounds the
//! damage to writes with tokens above it). Waiters poll; they are not queued, so the lock
//! is not fair and an unlucky waiter can time out while others get in.

use super::workload::{Rng, backoff};
use anyhow::Context;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Acquires the lock and issues the fencing token, atomically.
const ACQUIRE_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
";

/// Deletes the lock only if it is still ours.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long a Redis reply may take before the client gives up (the crate's default, 500 ms,
/// is too short for a shared two-core machine under load).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Lease and polling settings.
#[derive(Clone, Copy, Debug)]
pub struct LockSettings {
    /// The lease: the key expires this long after it was set.
    pub ttl: Duration,
    /// Give up waiting for the lock after this long (counted as a lock timeout).
    pub wait_max: Duration,
    pub poll_base: Duration,
    pub poll_cap: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            ttl: Duration::from_secs(2),
            wait_max: Duration::from_secs(50),
            poll_base: Duration::from_micros(200),
            poll_cap: Duration::from_millis(8),
        }
    }
}

/// A held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub key: String,
    pub token: String,
    /// The fencing token issued with this acquisition.
    pub fence: i64,
}

/// Redis connections and the scripts.
pub struct RedisLock {
    connections: Vec<MultiplexedConnection>,
    acquire: redis::Script,
    release: redis::Script,
    prefix: String,
    nonce: u64,
    counter: AtomicU64,
    pub settings: LockSettings,
}

impl RedisLock {
    /// Connects `connections` multiplexed connections to `url`; every key starts with `prefix`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        connections: usize,
        settings: LockSettings,
    ) -> anyhow::Result<RedisLock> {
        let client = redis::Client::open(url).with_context(|| format!("redis url {url}"))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut list = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let c = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .with_context(|| {
                    format!("cannot connect to Redis at {url} (start redis-server, or set KUKU_REDIS_URL)")
                })?;
            list.push(c);
        }
        Ok(RedisLock {
            connections: list,
            acquire: redis::Script::new(ACQUIRE_LUA),
            release: redis::Script::new(RELEASE_LUA),
            prefix: prefix.to_owned(),
            nonce: super::unique_nonce(),
            counter: AtomicU64::new(0),
            settings,
        })
    }

    fn connection(&self, lane: u32) -> MultiplexedConnection {
        self.connections[lane as usize % self.connections.len()].clone()
    }

    /// The lock key and the fence-counter key of a row.
    pub fn keys(&self, row: &str) -> (String, String) {
        (
            format!("{}:lock:{row}", self.prefix),
            format!("{}:fence:{row}", self.prefix),
        )
    }

    /// One attempt: the held lock, or `None` if someone else holds it.
    pub async fn try_acquire(&self, row: &str, lane: u32) -> anyhow::Result<Option<Held>> {
        let (key, fence_key) = self.keys(row);
        let token = format!(
            "{:x}-{}",
            self.nonce,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = self.connection(lane);
        let fence: i64 = self
            .acquire
            .key(&key)
            .key(&fence_key)
            .arg(&token)
            .arg(self.settings.ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .context("redis lock acquire")?;
        Ok((fence > 0).then_some(Held { key, token, fence }))
    }

    /// Waits for the lock (bounded by `wait_max`); `polls` counts failed attempts. `None`:
    /// the wait bound passed.
    pub async fn acquire(
        &self,
        row: &str,
        lane: u32,
        rng: &mut Rng,
        polls: &mut u64,
    ) -> anyhow::Result<Option<Held>> {
        let deadline = Instant::now() + self.settings.wait_max;
        let mut attempt = 0u32;
        loop {
            if let Some(held) = self.try_acquire(row, lane).await? {
                return Ok(Some(held));
            }
            *polls += 1;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let wait = backoff(
                attempt,
                self.settings.poll_base,
                self.settings.poll_cap,
                rng,
            );
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(wait).await;
        }
    }

    /// Compare-and-delete. `false`: the lock was no longer ours (the lease had expired).
    pub async fn release(&self, held: &Held, lane: u32) -> anyhow::Result<bool> {
        let mut c = self.connection(lane);
        let deleted: i64 = self
            .release
            .key(&held.key)
            .arg(&held.token)
            .invoke_async(&mut c)
            .await
            .context("redis lock release")?;
        Ok(deleted == 1)
    }

    /// Deletes every key under the prefix (lock keys and fence counters).
    pub async fn clear(&self) -> anyhow::Result<()> {
        let mut c = self.connection(0);
        let mut cursor: u64 = 0;
        // SCAN visits every key present for the whole scan; bounded by the key count.
        for _ in 0..1_000_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut c)
                .await
                .context("redis SCAN")?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .context("redis DEL")?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(());
            }
        }
        anyhow::bail!("SCAN of {}:* did not finish", self.prefix)
    }

    /// The Redis server's version (for the report).
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let mut c = self.connection(0);
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut c)
            .await
            .context("redis INFO")?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned())
    }
}
