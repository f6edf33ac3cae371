//! Behaviour only the Redis backend has: messages written by something other
//! than gaze, Redis losing its data, and connection settings (eviction
//! policy, password, TLS). Tests that change server state run their own
//! redis-server.

mod queue_support;

use std::future::Future;
use std::time::{Duration, Instant};

use gaze_shared::queue::{
    Job, JobQueue, QueueError, RedisOptions, RedisQueue, StudyId, redact_url,
};
use queue_support::{
    MODEL, RedisServer, fast_settings, has_program, jobs, redis_url, unique_study,
    write_tls_certificates,
};

async fn connect(url: &str, study: &StudyId) -> RedisQueue {
    RedisQueue::connect(
        url,
        study.clone(),
        fast_settings(),
        &RedisOptions::default(),
    )
    .await
    .expect("connect to Redis")
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to Redis")
}

/// Repeats `operation` while it fails with a transient error, as while the
/// connection to a restarted server is reopened, for at most 10 s.
async fn retry_transient<T, F, Fut>(mut operation: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let start = Instant::now();
    loop {
        match operation().await {
            Err(err) if err.is_transient() && start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

#[tokio::test]
async fn bad_messages_dead_lettered() {
    let Some(url) = redis_url("bad_messages_dead_lettered") else {
        return;
    };
    let study = unique_study("bad-messages");
    let stream = format!("gaze:{{{}}}:{MODEL}:jobs", study.name);
    let foreign = Job {
        study: "another-study".into(),
        ..jobs(&study, MODEL, [4]).remove(0)
    };
    let no_shard_field = jobs(&study, MODEL, [3]).remove(0).encode();
    let mut raw = raw_connection(&url).await;
    let entries: [&[(&str, &str)]; 4] = [
        &[("shard", "1"), ("deliveries", "0"), ("job", "not json")],
        &[
            ("shard", "2"),
            ("deliveries", "0"),
            ("job", r#"{"version":2,"shards":[2]}"#),
        ],
        &[("deliveries", "0"), ("job", &no_shard_field)],
        &[
            ("shard", "4"),
            ("deliveries", "0"),
            ("job", &foreign.encode()),
        ],
    ];
    for fields in entries {
        let _: String = redis::AsyncCommands::xadd(&mut raw, &stream, "*", fields)
            .await
            .unwrap();
    }
    let queue = connect(&url, &study).await;
    queue.submit(&jobs(&study, MODEL, [5])).await.unwrap();

    let lease = queue
        .claim(MODEL, "worker-a")
        .await
        .unwrap()
        .expect("the good job");

    assert_eq!(lease.job.shard_id, 5);
    let snapshot = queue.snapshot(MODEL).await.unwrap();
    assert_eq!(snapshot.dead_lettered, 4);
    let reasons: Vec<&str> = snapshot
        .dead_letters
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert!(
        reasons[0].starts_with("malformed job message"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("has version 2"), "{}", reasons[1]);
    assert!(reasons[2].contains("stream field shard"), "{}", reasons[2]);
    assert!(reasons[3].contains("\"another-study\""), "{}", reasons[3]);
    assert_eq!(snapshot.dead_letters[0].message, "not json");
    assert_eq!(snapshot.dead_letters[0].shard_id, Some(1));
    assert_eq!(snapshot.dead_letters[0].consumer, "worker-a");
    assert_eq!(snapshot.dead_letters[2].shard_id, None);
    assert_eq!(snapshot.queued, 0);
}

#[tokio::test]
async fn flushall_mid_study_recovers() {
    let Some(server) = RedisServer::start("flushall_mid_study_recovers", &[]) else {
        return;
    };
    let study = unique_study("flushall");
    let batch = jobs(&study, MODEL, 0..4);
    let queue = connect(&server.url(None), &study).await;
    queue.submit(&batch).await.unwrap();
    let lost = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    let mut raw = raw_connection(&server.url(None)).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();

    assert!(matches!(
        queue.heartbeat(&lost).await,
        Err(QueueError::LeaseLost { shard_id: 0, .. })
    ));
    assert!(!queue.still_owner(&lost).await.unwrap());
    assert!(queue.claim(MODEL, "worker-b").await.unwrap().is_none());
    assert_eq!(queue.snapshot(MODEL).await.unwrap().queued, 0);

    let report = queue.submit(&batch).await.unwrap();
    assert_eq!(report.queued, 4);
    let mut shards = Vec::new();
    while let Some(lease) = queue.claim(MODEL, "worker-b").await.unwrap() {
        shards.push(lease.job.shard_id);
        queue.ack(&lease).await.unwrap();
    }
    assert_eq!(shards, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn restart_empty_recovers() {
    let Some(mut server) = RedisServer::start("restart_empty_recovers", &[]) else {
        return;
    };
    let study = unique_study("restart");
    let batch = jobs(&study, MODEL, 0..3);
    let queue = connect(&server.url(None), &study).await;
    queue.submit(&batch).await.unwrap();
    let lost = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();

    server.restart_empty();

    let heartbeat = retry_transient(|| queue.heartbeat(&lost)).await;
    assert!(
        matches!(heartbeat, Err(QueueError::LeaseLost { .. })),
        "{heartbeat:?}"
    );
    let claimed = retry_transient(|| queue.claim(MODEL, "worker-b")).await;
    assert!(claimed.unwrap().is_none());

    assert_eq!(queue.submit(&batch).await.unwrap().queued, 3);
    let lease = queue.claim(MODEL, "worker-b").await.unwrap().unwrap();
    assert_eq!(lease.job.shard_id, 0);
}

#[tokio::test]
async fn eviction_policy_rejected() {
    let args = ["--maxmemory-policy", "allkeys-lru"];
    let Some(server) = RedisServer::start("eviction_policy_rejected", &args) else {
        return;
    };
    let study = unique_study("eviction");

    let result = RedisQueue::connect(
        &server.url(None),
        study,
        fast_settings(),
        &RedisOptions::default(),
    )
    .await;

    match result {
        Err(QueueError::EvictionPolicy { policy, .. }) => assert_eq!(policy, "allkeys-lru"),
        Err(other) => panic!("expected an eviction policy error, got {other}"),
        Ok(_) => panic!("connected to a Redis with allkeys-lru"),
    }
}

#[tokio::test]
async fn disabled_config_needs_assume_noeviction() {
    let args = ["--rename-command", "CONFIG", ""];
    let Some(server) = RedisServer::start("disabled_config_needs_assume_noeviction", &args) else {
        return;
    };
    let study = unique_study("no-config");
    let assume = RedisOptions {
        assume_noeviction: true,
        ..RedisOptions::default()
    };

    let strict = RedisQueue::connect(
        &server.url(None),
        study.clone(),
        fast_settings(),
        &RedisOptions::default(),
    )
    .await;
    let lenient =
        RedisQueue::connect(&server.url(None), study.clone(), fast_settings(), &assume).await;

    match strict {
        Err(err @ QueueError::EvictionPolicyUnreadable { .. }) => {
            assert!(err.to_string().contains("assume_noeviction"), "{err}");
        }
        Err(other) => panic!("expected an unreadable policy error, got {other}"),
        Ok(_) => panic!("connected without checking the eviction policy"),
    }
    let queue = lenient.expect("assume_noeviction skips the unreadable policy");
    queue.submit(&jobs(&study, MODEL, [1])).await.unwrap();
    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_some());
}

#[tokio::test]
async fn password_in_url() {
    let password = "pw-3f9a1c";
    let Some(server) = RedisServer::start("password_in_url", &["--requirepass", password]) else {
        return;
    };
    let study = unique_study("password");

    let queue = connect(&server.url(Some(password)), &study).await;
    queue.submit(&jobs(&study, MODEL, [1])).await.unwrap();
    let lease = queue.claim(MODEL, "worker-a").await.unwrap().unwrap();
    queue.ack(&lease).await.unwrap();

    // One attempt: retrying a rejected password only slows the test.
    let once = RedisOptions {
        reconnect_attempts: 0,
        ..RedisOptions::default()
    };
    for url in [server.url(Some("pw-wrong-77")), server.url(None)] {
        let result = RedisQueue::connect(&url, study.clone(), fast_settings(), &once).await;
        let Err(err) = result else {
            panic!("connected to {} with a wrong password", redact_url(&url));
        };
        assert!(matches!(err, QueueError::Connect { .. }), "{err}");
        assert!(!err.to_string().contains("pw-wrong-77"), "{err}");
    }
}

#[tokio::test]
async fn tls_with_ca_certificate() {
    if !has_program("openssl") {
        queue_support::skip("tls_with_ca_certificate", "openssl is not on PATH");
        return;
    }
    let certificates = tempfile::tempdir().unwrap();
    write_tls_certificates(certificates.path());
    let file = |name: &str| certificates.path().join(name).display().to_string();
    let args = [
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "no",
    ];
    let Some(server) = RedisServer::start("tls_with_ca_certificate", &args) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let study = unique_study("tls");
    let options = RedisOptions {
        ca_certificate: Some(certificates.path().join("ca.crt")),
        ..RedisOptions::default()
    };

    let queue = RedisQueue::connect(&url, study.clone(), fast_settings(), &options)
        .await
        .expect("connect over TLS");
    queue.submit(&jobs(&study, MODEL, [1])).await.unwrap();
    assert!(queue.claim(MODEL, "worker-a").await.unwrap().is_some());

    let without_ca = RedisOptions {
        reconnect_attempts: 0,
        ..RedisOptions::default()
    };
    let untrusted = RedisQueue::connect(&url, study, fast_settings(), &without_ca).await;
    assert!(matches!(untrusted, Err(QueueError::Connect { .. })));
}
