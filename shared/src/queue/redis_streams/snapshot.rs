//! Reading the state of one model's queue for `gaze status`, without
//! changing it. The reads are separate commands, so counts taken while
//! workers run may disagree by a job or two.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamPendingCountReply, StreamRangeReply};

use super::is_nogroup;
use super::keys::{GROUP, ModelKeys};
use crate::queue::{
    DeadLetter, InFlightJob, QueueError, QueueSnapshot, SNAPSHOT_DEAD_LETTERS, WorkerSeen,
};

/// The most in-flight jobs listed; more than one per worker never happens.
const MAX_IN_FLIGHT_LISTED: usize = 100_000;

pub(super) async fn read(
    mut conn: ConnectionManager,
    keys: ModelKeys,
) -> Result<QueueSnapshot, QueueError> {
    let entries: usize = query(&mut conn, "XLEN", redis::cmd("XLEN").arg(&keys.jobs)).await?;

    let pending: StreamPendingCountReply = match redis::cmd("XPENDING")
        .arg(&keys.jobs)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(MAX_IN_FLIGHT_LISTED)
        .query_async(&mut conn)
        .await
    {
        Ok(reply) => reply,
        Err(err) if is_nogroup(&err) => StreamPendingCountReply::default(),
        Err(source) => {
            return Err(QueueError::Redis {
                operation: "XPENDING",
                source,
            });
        }
    };

    let mut in_flight = Vec::with_capacity(pending.ids.len());
    for entry in &pending.ids {
        let range: StreamRangeReply = query(
            &mut conn,
            "XRANGE",
            redis::cmd("XRANGE")
                .arg(&keys.jobs)
                .arg(&entry.id)
                .arg(&entry.id),
        )
        .await?;
        let fields = range.ids.first();
        let earlier: u32 = fields.and_then(|f| f.get("deliveries")).unwrap_or(0);
        in_flight.push(InFlightJob {
            shard_id: fields
                .and_then(|f| f.get::<String>("shard"))
                .and_then(|s| s.parse().ok()),
            consumer: entry.consumer.clone(),
            idle: Duration::from_millis(entry.last_delivered_ms as u64),
            delivery: earlier + 1,
        });
    }

    let dead_lettered: usize = query(&mut conn, "XLEN", redis::cmd("XLEN").arg(&keys.dead)).await?;
    let dead: StreamRangeReply = query(
        &mut conn,
        "XRANGE",
        redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(SNAPSHOT_DEAD_LETTERS),
    )
    .await?;
    let dead_letters = dead
        .ids
        .iter()
        .map(|entry| DeadLetter {
            shard_id: entry.get::<String>("shard").and_then(|s| s.parse().ok()),
            reason: entry.get("reason").unwrap_or_default(),
            consumer: entry.get("consumer").unwrap_or_default(),
            deliveries: entry.get("deliveries").unwrap_or(0),
            message: entry
                .get::<Vec<u8>>("job")
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default(),
        })
        .collect();

    let last_seen: HashMap<String, u64> = query(
        &mut conn,
        "HGETALL",
        redis::cmd("HGETALL").arg(&keys.workers),
    )
    .await?;
    let (seconds, micros): (u64, u64) = query(&mut conn, "TIME", &redis::cmd("TIME")).await?;
    let now_ms = seconds * 1000 + micros / 1000;
    let workers = workers_seen(&last_seen, now_ms, &pending);

    Ok(QueueSnapshot {
        queued: entries.saturating_sub(pending.ids.len()),
        in_flight,
        dead_letters,
        dead_lettered,
        workers,
    })
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut ConnectionManager,
    operation: &'static str,
    cmd: &redis::Cmd,
) -> Result<T, QueueError> {
    cmd.query_async(conn)
        .await
        .map_err(|source| QueueError::Redis { operation, source })
}

/// Lists the workers of the workers hash, and any worker that holds a job
/// without an entry there, by name.
fn workers_seen(
    last_seen: &HashMap<String, u64>,
    now_ms: u64,
    pending: &StreamPendingCountReply,
) -> Vec<WorkerSeen> {
    let mut workers: BTreeMap<&str, WorkerSeen> = BTreeMap::new();
    for (consumer, &seen_ms) in last_seen {
        workers.insert(
            consumer,
            WorkerSeen {
                consumer: consumer.clone(),
                in_flight: 0,
                idle: Duration::from_millis(now_ms.saturating_sub(seen_ms)),
            },
        );
    }
    for entry in &pending.ids {
        let idle = Duration::from_millis(entry.last_delivered_ms as u64);
        let worker = workers
            .entry(&entry.consumer)
            .or_insert_with(|| WorkerSeen {
                consumer: entry.consumer.clone(),
                in_flight: 0,
                idle,
            });
        worker.in_flight += 1;
        worker.idle = worker.idle.min(idle);
    }
    workers.into_values().collect()
}
