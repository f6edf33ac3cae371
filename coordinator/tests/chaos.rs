//! Distributed mode under faults, on a real Redis and a real S3 server
//! (s3s-fs): workers killed, paused past their lease or stopped, Redis
//! restarted empty, the store down during uploads, a poison shard and bad
//! queue messages. Each test ends with every planned sample exactly once
//! in the committed tables.
//!
//! Every test starts its own redis-server and s3s-fs, and the tests run
//! one at a time. A missing program skips a test, or fails it with
//! GAZE_REQUIRE_SERVICES=1.

mod chaos_support;

use std::collections::BTreeSet;
use std::process::Command;

use chaos_support::{MODEL, SHARDS, Services, Study, serial, wait_until};

fn all_shards() -> BTreeSet<u32> {
    (0..SHARDS).collect()
}

/// Waits until worker `name` has leased a shard that is not committed,
/// and returns it.
fn wait_for_shard_held(study: &Study, services: &Services, name: &str) -> u32 {
    let mut held = None;
    wait_until(&format!("worker {name} holds an uncommitted shard"), || {
        held = study
            .shard_held_by(services, name)
            .filter(|shard| !study.committed(services).contains(shard));
        held.is_some()
    });
    held.unwrap()
}

#[test]
fn killed_worker_shard_is_redone() {
    let _serial = serial();
    let Some(services) = Services::start("killed_worker_shard_is_redone") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-kill");
    study.submit(&services);

    // A kill that lands just after a commit interrupts no shard: try again
    // with a new victim until one dies holding an uncommitted shard.
    let mut victims = Vec::new();
    let mut killed_shard = None;
    for round in 0..5 {
        let victim = study.worker(&services, &format!("victim-{round}"), &[]);
        let shard = wait_for_shard_held(&study, &services, &victim.name);
        victim.signal("KILL");
        victims.push(victim);
        if !study.committed(&services).contains(&shard) {
            killed_shard = Some(shard);
            break;
        }
    }
    let shard = killed_shard.expect("a victim died holding an uncommitted shard");
    for victim in &mut victims {
        assert!(
            !victim.wait_exit().success(),
            "kill -9 ends {}",
            victim.name
        );
    }

    let mut survivor = study.worker(&services, "survivor", &["--exit-when-idle", "2"]);
    study.wait_all_committed(&services);
    assert!(
        survivor.wait_exit().success(),
        "the survivor exits on an idle queue"
    );
    assert!(study.committed(&services).contains(&shard));
    study.assert_each_sample_once(&services, &all_shards());
}

#[test]
fn paused_worker_does_not_overwrite() {
    let _serial = serial();
    let Some(services) = Services::start("paused_worker_does_not_overwrite") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-pause");
    study.submit(&services);

    // A pause that lands after the claim no longer races the other worker:
    // resume and try again until the worker pauses before its claim.
    let mut paused = study.worker(&services, "paused", &["--exit-when-idle", "2"]);
    let mut paused_shard = None;
    for _ in 0..5 {
        let shard = wait_for_shard_held(&study, &services, "paused");
        paused.signal("STOP");
        if !study.claimed(&services, shard) {
            paused_shard = Some(shard);
            break;
        }
        paused.signal("CONT");
    }
    let shard = paused_shard.expect("the worker paused before claiming its shard");

    let mut other = study.worker(&services, "other", &["--exit-when-idle", "2"]);
    wait_until(
        &format!("shard {shard} is committed while its worker is paused"),
        || study.committed(&services).contains(&shard),
    );
    let marker = study.marker(&services, shard);

    paused.signal("CONT");
    study.wait_all_committed(&services);
    assert!(
        paused.wait_exit().success(),
        "the resumed worker exits cleanly"
    );
    assert!(
        other.wait_exit().success(),
        "the other worker exits cleanly"
    );

    assert_eq!(
        study.marker(&services, shard),
        marker,
        "the resumed worker left the commit marker as the winner wrote it"
    );
    assert_eq!(
        marker.0, "other",
        "the worker that ran on committed the shard"
    );
    study.assert_each_sample_once(&services, &all_shards());
}

#[test]
fn redis_restart_then_resubmit() {
    let _serial = serial();
    let Some(mut services) = Services::start("redis_restart_then_resubmit") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-redis");
    study.submit(&services);

    let mut workers = vec![
        study.worker(&services, "one", &["--exit-when-idle", "3"]),
        study.worker(&services, "two", &["--exit-when-idle", "3"]),
    ];
    wait_until("a first shard is committed", || {
        !study.committed(&services).is_empty()
    });
    services.restart_redis_empty();
    assert!(
        study.committed(&services).len() < SHARDS as usize,
        "the restart came before the study finished"
    );
    study.submit(&services);

    study.wait_all_committed(&services);
    for worker in &mut workers {
        assert!(
            worker.wait_exit().success(),
            "worker {} exits cleanly",
            worker.name
        );
    }
    study.assert_each_sample_once(&services, &all_shards());
}

#[test]
fn store_outage_during_uploads() {
    let _serial = serial();
    let Some(mut services) = Services::start("store_outage_during_uploads") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-s3");
    study.submit(&services);

    let args = ["--exit-when-idle", "3", "--max-deliveries", "20"];
    let mut workers = vec![
        study.worker(&services, "one", &args),
        study.worker(&services, "two", &args),
    ];
    wait_until("a first shard is committed", || {
        !study.committed(&services).is_empty()
    });
    services.stop_s3();
    std::thread::sleep(std::time::Duration::from_secs(2));
    services.start_s3();

    study.wait_all_committed(&services);
    for worker in &mut workers {
        assert!(
            worker.wait_exit().success(),
            "worker {} exits cleanly",
            worker.name
        );
    }
    study.assert_each_sample_once(&services, &all_shards());
}

#[test]
fn poison_shard_is_dead_lettered() {
    let _serial = serial();
    let Some(services) = Services::start("poison_shard_is_dead_lettered") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-poison");
    study.submit(&services);

    // Sample 19 is in shard 2 (samples 16..24).
    let args = ["--exit-when-idle", "2", "--fail-sample", "19"];
    let mut workers = vec![
        study.worker(&services, "one", &args),
        study.worker(&services, "two", &args),
    ];
    for worker in &mut workers {
        assert!(
            worker.wait_exit().success(),
            "worker {} exits cleanly",
            worker.name
        );
    }

    let healthy: BTreeSet<u32> = all_shards().into_iter().filter(|&s| s != 2).collect();
    assert_eq!(study.committed(&services), healthy);
    let status = study.status(&services);
    let model = &status["models"][0];
    assert_eq!(model["model"], MODEL);
    assert_eq!(model["shards"]["dead_lettered"], 1);
    let letter = &model["dead_letters"][0];
    assert_eq!(letter["shard_id"], 2);
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("sample 19"), "reason: {reason}");
    study.assert_each_sample_once(&services, &healthy);
}

#[test]
fn sigterm_releases_then_fresh_worker() {
    let _serial = serial();
    let Some(services) = Services::start("sigterm_releases_then_fresh_worker") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-term");
    study.submit(&services);

    let mut first = study.worker(&services, "first", &["--shutdown-grace", "0.05"]);
    wait_for_shard_held(&study, &services, "first");
    first.signal("TERM");
    assert!(
        first.wait_exit().success(),
        "SIGTERM ends the worker cleanly"
    );
    let status = study.status(&services);
    assert_eq!(
        status["total"]["shards"]["in_flight"], 0,
        "the stopped worker released its shard"
    );

    let mut fresh = study.worker(&services, "fresh", &["--exit-when-idle", "2"]);
    study.wait_all_committed(&services);
    assert!(
        fresh.wait_exit().success(),
        "the fresh worker exits cleanly"
    );
    study.assert_each_sample_once(&services, &all_shards());
}

#[test]
fn bad_messages_are_dead_lettered() {
    let _serial = serial();
    let Some(services) = Services::start("bad_messages_are_dead_lettered") else {
        return;
    };
    let mut study = Study::new(&services, "chaos-bad");
    study.submit(&services);

    let status = study.status(&services);
    let fingerprint = status["fingerprint"].as_str().unwrap().to_owned();
    let stream = format!("gaze:{{{}}}:{MODEL}:jobs", study.name);
    let job = |study: &str, fingerprint: &str, shard: u32| {
        format!(
            r#"{{"version":1,"study":"{study}","fingerprint":"{fingerprint}","model":"{MODEL}","shard_id":{shard},"samples":8}}"#
        )
    };
    let messages = [
        ("90", "not json".to_owned()),
        ("91", job("another-study", &fingerprint, 91)),
        ("92", job(&study.name, "0000", 92)),
    ];
    for (shard, message) in &messages {
        let output = Command::new("redis-cli")
            .args(["-p", &services.redis_port.to_string()])
            .args([
                "XADD",
                &stream,
                "*",
                "shard",
                shard,
                "deliveries",
                "0",
                "job",
                message,
            ])
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli XADD failed");
    }

    let mut worker = study.worker(&services, "one", &["--exit-when-idle", "2"]);
    assert!(worker.wait_exit().success(), "the worker exits cleanly");

    assert_eq!(study.committed(&services), all_shards());
    let status = study.status(&services);
    let letters = status["models"][0]["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "dead letters: {letters:?}");
    let reason_of = |shard: u32| {
        letters
            .iter()
            .find(|letter| letter["shard_id"] == shard)
            .and_then(|letter| letter["reason"].as_str())
            .unwrap_or_else(|| panic!("no dead letter for shard {shard}: {letters:?}"))
    };
    assert!(reason_of(90).contains("malformed"), "{}", reason_of(90));
    assert!(reason_of(91).contains("another-study"), "{}", reason_of(91));
    assert!(
        reason_of(92).contains("fingerprint 0000"),
        "{}",
        reason_of(92)
    );
    study.assert_each_sample_once(&services, &all_shards());
}
