//! Opening a Redis connection for the queue: URL checks, TLS, reconnect
//! backoff, and the eviction-policy check.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, TlsCertificates};
use tracing::warn;

use crate::queue::QueueError;

/// Connection settings that the Redis URL does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// PEM file of the certificate authority that signed the server's
    /// certificate, for `rediss://` servers without a public certificate.
    /// `None` trusts the public web roots.
    pub ca_certificate: Option<PathBuf>,
    /// Skip the `maxmemory-policy` check when CONFIG GET is unavailable
    /// (managed services often disable it). Set this only after checking the
    /// policy is `noeviction` in the service's settings: another policy can
    /// evict queue keys under memory pressure. The check still runs, and
    /// still fails on a readable policy other than `noeviction`.
    pub assume_noeviction: bool,
    /// Time limit for one command, which bounds how long a call hangs on a
    /// stalled server.
    pub response_timeout: Duration,
    /// Time limit for opening a connection.
    pub connection_timeout: Duration,
    /// Retries of a failed connection attempt, on first connect and after a
    /// connection drops, with exponential backoff from 100 ms up to
    /// `max_backoff`, before a call fails.
    pub reconnect_attempts: usize,
    /// Maximum wait between connection attempts.
    pub max_backoff: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            ca_certificate: None,
            assume_noeviction: false,
            response_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(5),
            reconnect_attempts: 6,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Returns `url` with its password replaced by `***`, for logs and errors.
/// A URL that does not parse is replaced whole, since its password cannot
/// be located.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Setting a password fails only on URLs that cannot have one.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// Builds a client for `url` (`redis://` or `rediss://`, with optional
/// `user:password@`).
pub(super) fn open_client(url: &str, options: &RedisOptions) -> Result<Client, QueueError> {
    let redacted = redact_url(url);
    let invalid = |reason: String| QueueError::InvalidUrl {
        url: redacted.clone(),
        reason,
    };

    let parsed = url::Url::parse(url).map_err(|err| invalid(err.to_string()))?;
    match parsed.scheme() {
        "redis" | "rediss" => {}
        other => {
            return Err(invalid(format!(
                "scheme {other:?} is not supported: use redis:// or rediss:// (TLS)"
            )));
        }
    }

    let client = match &options.ca_certificate {
        None => Client::open(url),
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|err| {
                invalid(format!(
                    "cannot read CA certificate {}: {err}",
                    path.display()
                ))
            })?;
            let certificates = TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            Client::build_with_tls(url, certificates)
        }
    };
    client.map_err(|err| invalid(err.to_string()))
}

/// Connects with reconnect backoff. Later calls reconnect on their own
/// after a dropped connection.
pub(super) async fn connect(
    url: &str,
    options: &RedisOptions,
) -> Result<ConnectionManager, QueueError> {
    let client = open_client(url, options)?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(options.reconnect_attempts)
        .set_factor(100)
        .set_exponent_base(2)
        .set_max_delay(options.max_backoff.as_millis() as u64)
        .set_response_timeout(options.response_timeout)
        .set_connection_timeout(options.connection_timeout);
    let connect_error = |source| QueueError::Connect {
        url: redact_url(url),
        source,
    };
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(connect_error)?;

    // Opening a connection does not authenticate when the URL has no
    // password, so a server that requires one fails only here.
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(connect_error)?;
    Ok(conn)
}

/// Fails unless the server's `maxmemory-policy` is `noeviction`: any other
/// policy may evict queue keys when memory runs short, and a queue that
/// silently loses its dedupe hash or consumer group misbehaves.
pub(super) async fn check_eviction_policy(
    conn: &mut ConnectionManager,
    url: &str,
    options: &RedisOptions,
) -> Result<(), QueueError> {
    let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;

    match reply {
        Ok(pair) => match pair.get(1).map(String::as_str) {
            Some("noeviction") => Ok(()),
            Some(policy) => Err(QueueError::EvictionPolicy {
                url: redact_url(url),
                policy: policy.to_owned(),
            }),
            None => Err(QueueError::UnexpectedReply {
                operation: "CONFIG GET maxmemory-policy",
                detail: format!("{pair:?}"),
            }),
        },
        Err(source) if options.assume_noeviction && !source.is_io_error() => {
            warn!(
                url = %redact_url(url),
                cause = %source,
                "cannot read maxmemory-policy; assuming noeviction as configured"
            );
            Ok(())
        }
        Err(source) if source.is_io_error() || source.is_timeout() => Err(QueueError::Connect {
            url: redact_url(url),
            source,
        }),
        Err(source) => Err(QueueError::EvictionPolicyUnreadable {
            url: redact_url(url),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_password() {
        assert_eq!(
            redact_url("rediss://gaze:s3cret@redis.example:6380/2"),
            "rediss://gaze:***@redis.example:6380/2"
        );
    }

    #[test]
    fn redact_keeps_url_without_password() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn redact_hides_unparsable_url() {
        assert_eq!(redact_url("redis://:pw@[::1"), "<unparsable URL>");
    }

    #[test]
    fn open_client_rejects_other_scheme() {
        let err = open_client("http://:pw@127.0.0.1:6379", &RedisOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("redis:// or rediss://"), "{message}");
        assert!(!message.contains("pw"), "{message}");
    }
}
