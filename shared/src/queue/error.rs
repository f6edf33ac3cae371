//! Errors of the job queue.

use std::time::Duration;

use thiserror::Error;

/// A failed queue operation. Redis URLs in messages never show a password.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "could not connect to Redis at {url}: {source}; check that the server runs and the URL is right"
    )]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    #[error(
        "Redis at {url} has maxmemory-policy {policy:?}, which may evict queue keys under memory \
         pressure: set it to noeviction (CONFIG SET maxmemory-policy noeviction, or \
         `maxmemory-policy noeviction` in redis.conf)"
    )]
    EvictionPolicy { url: String, policy: String },

    #[error(
        "could not read maxmemory-policy of Redis at {url} ({source}); managed services often \
         disable CONFIG: make sure the policy is noeviction, then set assume_noeviction in the \
         Redis options to skip this check"
    )]
    EvictionPolicyUnreadable {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("Redis command {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: redis::RedisError,
    },

    #[error("unexpected reply from Redis to {operation}: {detail}")]
    UnexpectedReply {
        operation: &'static str,
        detail: String,
    },

    #[error(
        "lease on shard {shard_id} (attempt {attempt}) is lost: its lease expired and the job \
         was given to another worker, or Redis lost its data; stop work on this shard"
    )]
    LeaseLost { shard_id: u32, attempt: u64 },

    #[error(
        "cannot submit a job of study {found_study:?} (fingerprint {found_fingerprint}) to the \
         queue of study {study:?} (fingerprint {fingerprint}): open the queue for the job's study"
    )]
    ForeignJob {
        study: String,
        fingerprint: String,
        found_study: String,
        found_fingerprint: String,
    },

    #[error(
        "lease_timeout {lease_timeout:?} must be at least 3 times heartbeat_interval \
         {heartbeat_interval:?}, so that one late heartbeat does not lose the lease"
    )]
    LeaseTooShort {
        heartbeat_interval: Duration,
        lease_timeout: Duration,
    },

    #[error("max_deliveries must be at least 1")]
    NoDeliveries,

    #[error("{what} must not be empty")]
    EmptyName { what: &'static str },
}

impl QueueError {
    /// Returns whether a retry may succeed, because the connection failed or
    /// timed out.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Redis { source, .. } | QueueError::Connect { source, .. } => {
                source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
            }
            _ => false,
        }
    }
}
