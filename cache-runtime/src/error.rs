//! What can go wrong when installing a config, and how URLs are shown in messages.

use std::fmt;
#[cfg(feature = "disk")]
use std::path::PathBuf;

/// What can go wrong when installing a [`Config`](crate::Config).
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
    /// A disk store could not be read ([`disk_usage`](crate::disk_usage)).
    #[cfg(feature = "disk")]
    Disk {
        /// The store's directory.
        dir: PathBuf,
        /// What went wrong.
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
            #[cfg(feature = "disk")]
            Error::Disk { dir, reason } => {
                write!(f, "disk store in {}: {reason}", dir.display())
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
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
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
