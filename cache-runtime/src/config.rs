//! Process-wide set-up: where L2 lives and how keys are prefixed.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::store::redis::{RedisStore, TlsFiles};

/// Settings for the shared layer. Build one, then [`install`](Config::install) it.
///
/// ```no_run
/// cache_runtime::Config::new()
///     .redis("redis://127.0.0.1:6379/")
///     .prefix("myapp")
///     .install()?;
/// # Ok::<(), cache_runtime::Error>(())
/// ```
///
/// Without an installed config (or without [`redis`](Config::redis)), every `#[cached]`
/// function uses its in-process layer only.
#[derive(Clone)]
pub struct Config {
    redis_url: Option<String>,
    prefix: String,
    timeout: Duration,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    tls: TlsFiles,
}

/// Shows the Redis URL with its password masked (`redis://user:***@host/`).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &self.redis_url.as_deref().map(redacted))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("tls_ca_file", &self.tls.ca)
            .field("tls_client_cert", &self.tls.client)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// Defaults: no Redis, no prefix, 200 ms timeout per Redis operation, and a circuit breaker
    /// that opens after 3 consecutive failures for 1 s.
    pub fn new() -> Self {
        Config {
            redis_url: None,
            prefix: String::new(),
            timeout: Duration::from_millis(200),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            tls: TlsFiles::default(),
        }
    }

    /// Use the Redis server at `url` (`redis://host:port/db`) as the shared layer.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Begin every remote key with `prefix` and a `:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any single Redis operation may take (connecting, the TLS handshake,
    /// `AUTH` / `SELECT`, sending the request and reading the whole reply, together) before
    /// the call gives up on Redis and computes instead. One call spends at most twice this
    /// on Redis over all its requests.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For `rediss://` URLs: trust the certificates of this PEM file (a private CA) instead
    /// of the system's roots. Read by [`install`](Config::install).
    #[cfg(feature = "tls")]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// For `rediss://` URLs: present this client certificate (PEM, chain first) with its
    /// private key (PEM) to servers that ask for one (`tls-auth-clients`). Read by
    /// [`install`](Config::install).
    #[cfg(feature = "tls")]
    pub fn tls_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// After `failures` consecutive Redis failures, skip Redis for `cooldown`, then try again.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cooldown = cooldown;
        self
    }

    /// Makes this the process-wide configuration, replacing any earlier one.
    ///
    /// One connection is tried (with a `PING`), within the [`timeout`](Config::timeout): an
    /// unreachable server is not an error here (it is logged once at `warn`, and calls fall
    /// back to computing until it answers), but a server that answers and refuses the
    /// credentials is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRedisUrl`] when the URL cannot be parsed (a `rediss://` URL needs the
    /// `tls` feature); `Error::InvalidTls` (feature `tls`) when the TLS files cannot be used;
    /// [`Error::RedisRefused`] when the server rejects the user name, the password or the db
    /// index of the URL.
    pub fn install(self) -> Result<(), Error> {
        let remote = match &self.redis_url {
            None => None,
            Some(url) => Some(RedisStore::open(
                url,
                &self.tls,
                self.timeout,
                self.breaker_failures,
                self.breaker_cooldown,
            )?),
        };
        let installed = Arc::new(Installed {
            prefix: self.prefix,
            remote,
        });
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(installed);
        Ok(())
    }

    /// Removes the installed configuration: every function goes back to L1 only.
    pub fn uninstall() {
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What can go wrong when installing a [`Config`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL could not be parsed.
    InvalidRedisUrl {
        /// The URL as given, its password masked (`redis://user:***@host/`).
        url: String,
        /// What the Redis client said about it.
        reason: String,
    },
    /// The TLS settings could not be used: a PEM file that cannot be read or parsed, a
    /// key that does not match its certificate, TLS files for a `redis://` URL.
    #[cfg(feature = "tls")]
    InvalidTls {
        /// The URL as given, its password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The Redis server answered and refused the connection: a wrong user name or password
    /// (`WRONGPASS`, `NOAUTH`), or a db index it does not have.
    RedisRefused {
        /// The URL as given, its password masked (`redis://user:***@host/`).
        url: String,
        /// What the server answered.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRedisUrl { url, reason } => {
                write!(f, "invalid Redis URL `{url}`: {reason}")
            }
            #[cfg(feature = "tls")]
            Error::InvalidTls { url, reason } => {
                write!(f, "TLS settings for `{url}` cannot be used: {reason}")
            }
            Error::RedisRefused { url, reason } => {
                write!(f, "Redis at `{url}` refused the connection: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// `url` with the password masked, fit for messages and logs: the part after `user:` in
/// `scheme://user:password@host/...` and the value of a `pass` / `password` query parameter
/// become `***`.
pub(crate) fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    // The last `@` before any `/`: a password written without escaping may hold `@`, `?`
    // or `#`, and is masked whole all the same.
    let userinfo_end = rest.rfind('@').filter(|&at| !rest[..at].contains('/'));
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    let tail = match userinfo_end {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            tail
        }
        None => rest,
    };
    let Some((path, query)) = tail.split_once('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(path);
    out.push('?');
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if matches!(name, "pass" | "password") => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The configuration in force.
pub(crate) struct Installed {
    pub(crate) prefix: String,
    pub(crate) remote: Option<RedisStore>,
}

static INSTALLED: RwLock<Option<Arc<Installed>>> = RwLock::new(None);

/// The configuration in force, if one is installed.
pub(crate) fn current() -> Option<Arc<Installed>> {
    INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The current key prefix ("" when none).
pub(crate) fn current_prefix() -> String {
    current().map(|c| c.prefix.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_masked() {
        for (url, shown) in [
            (
                "redis://user:secret@host:6379/2",
                "redis://user:***@host:6379/2",
            ),
            ("redis://:secret@host/", "redis://:***@host/"),
            ("rediss://user:p%40ss@w:rd@host", "rediss://user:***@host"),
            ("redis://host:6379/", "redis://host:6379/"),
            ("redis://user@host/", "redis://user@host/"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=secret&user=u",
                "redis+unix:///tmp/r.sock?db=1&pass=***&user=u",
            ),
            ("redis://u:se#cr?et@host/", "redis://u:***@host/"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
