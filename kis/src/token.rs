//! The access-token lifecycle: cached on disk (mode 0600) so that a restart does not issue a
//! new one (KIS allows about one issue a minute and notifies the account holder on each),
//! refreshed `token_refresh_margin` before it expires, and re-issued when KIS says it expired,
//! but never more often than `token_issue_interval_min`.
//!
//! **Invariants**: the cache file is written to a temporary file created with mode 0600 and
//! renamed over the old one (never world-readable, never half-written); two issues are at
//! least `token_issue_interval_min` apart, across restarts too (the issue time is cached).
//!
//! **Known limitations**: one node per cache file (no file lock between processes).

use crate::error::KisError;
use crate::rest::RestClient;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A token with its lifetime, in Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub value: Secret,
    pub issued_at_unix_s: u64,
    pub expires_at_unix_s: u64,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    access_token: String,
    issued_at_unix_s: u64,
    expires_at_unix_s: u64,
}

/// What the last `token` call did (for metrics and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Memory,
    DiskCache,
    Issued,
}

pub struct TokenManager {
    cache_path: PathBuf,
    refresh_margin: Duration,
    issue_interval_min: Duration,
    current: Option<AccessToken>,
    last_issue_unix_s: Option<u64>,
    issued_total: u64,
}

impl TokenManager {
    pub fn new(
        cache_path: PathBuf,
        refresh_margin: Duration,
        issue_interval_min: Duration,
    ) -> TokenManager {
        TokenManager {
            cache_path,
            refresh_margin,
            issue_interval_min,
            current: None,
            last_issue_unix_s: None,
            issued_total: 0,
        }
    }

    /// Tokens issued by this manager.
    pub fn issued_total(&self) -> u64 {
        self.issued_total
    }

    fn usable(&self, token: &AccessToken, now_unix_s: u64) -> bool {
        now_unix_s.saturating_add(self.refresh_margin.as_secs()) < token.expires_at_unix_s
    }

    /// A token valid for at least the refresh margin: from memory, else the cache file, else
    /// a new issue (rate-limited).
    pub async fn token(
        &mut self,
        rest: &RestClient,
        now_unix_s: u64,
    ) -> Result<(Secret, TokenSource), KisError> {
        if let Some(t) = &self.current
            && self.usable(t, now_unix_s)
        {
            return Ok((t.value.clone(), TokenSource::Memory));
        }
        if let Some(cached) = read_cache(&self.cache_path)? {
            self.last_issue_unix_s = Some(cached.issued_at_unix_s);
            if self.usable(&cached, now_unix_s) {
                let value = cached.value.clone();
                self.current = Some(cached);
                return Ok((value, TokenSource::DiskCache));
            }
        }
        if let Some(last) = self.last_issue_unix_s {
            let since_s = now_unix_s.saturating_sub(last);
            if since_s < self.issue_interval_min.as_secs() {
                return Err(KisError::TokenIssueTooSoon {
                    since_ms: since_s.saturating_mul(1000),
                    min_ms: u64::try_from(self.issue_interval_min.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        let issued = rest.issue_token().await?;
        let token = AccessToken {
            value: issued.value,
            issued_at_unix_s: now_unix_s,
            expires_at_unix_s: now_unix_s.saturating_add(issued.expires_in_s),
        };
        write_cache(&self.cache_path, &token)?;
        self.last_issue_unix_s = Some(now_unix_s);
        self.issued_total += 1;
        let value = token.value.clone();
        self.current = Some(token);
        Ok((value, TokenSource::Issued))
    }

    /// KIS said the token is no longer valid: forget it (memory and cache file).
    pub fn invalidate(&mut self) -> Result<(), KisError> {
        self.current = None;
        match std::fs::remove_file(&self.cache_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(cache_error(&self.cache_path, source)),
        }
    }
}

fn cache_error(path: &Path, source: std::io::Error) -> KisError {
    KisError::TokenCache {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the cache; a missing or unreadable-as-JSON file is no token (it is replaced on the
/// next issue), an I/O error is an error.
pub fn read_cache(path: &Path) -> Result<Option<AccessToken>, KisError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(cache_error(path, source)),
    };
    let Ok(file) = serde_json::from_slice::<CacheFile>(&bytes) else {
        return Ok(None);
    };
    Ok(Some(AccessToken {
        value: Secret::new(file.access_token),
        issued_at_unix_s: file.issued_at_unix_s,
        expires_at_unix_s: file.expires_at_unix_s,
    }))
}

/// Writes the cache with mode 0600 through a temporary file and a rename.
pub fn write_cache(path: &Path, token: &AccessToken) -> Result<(), KisError> {
    let file = CacheFile {
        access_token: token.value.expose().to_string(),
        issued_at_unix_s: token.issued_at_unix_s,
        expires_at_unix_s: token.expires_at_unix_s,
    };
    let bytes = serde_json::to_vec(&file).expect("a struct of strings and integers serializes");
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| cache_error(&tmp, e))?;
    out.write_all(&bytes).map_err(|e| cache_error(&tmp, e))?;
    out.sync_all().map_err(|e| cache_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| cache_error(path, e))
}
