//! `gaze run` against an S3-compatible server (s3s-fs), started by
//! `scripts/services.sh`: a run into a bucket, and the clear errors of a
//! missing bucket and of wrong credentials. Without GAZE_TEST_S3_ENDPOINT
//! these tests skip, or fail when GAZE_REQUIRE_SERVICES=1.

mod run_support;

use std::process::Output;

use gaze_shared::store::{Store, StoreOptions, StudyId, committed_shard_keys};
use gaze_shared::tables::{Table, read_table};
use run_support::{Settings, StudyDir, sample_ids, service_env, text};

const HOW: &str = "run the tests through scripts/services.sh";

/// The server's endpoint, bucket and keys from the environment.
struct S3 {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
}

fn s3() -> Option<S3> {
    let endpoint = service_env("GAZE_TEST_S3_ENDPOINT", HOW)?;
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Some(S3 {
        endpoint,
        bucket: var("GAZE_TEST_S3_BUCKET", "gaze-test"),
        access_key: var("AWS_ACCESS_KEY_ID", ""),
        secret_key: var("AWS_SECRET_ACCESS_KEY", ""),
    })
}

/// Runs `gaze run --limit 8` into `url` with the server's settings and
/// `secret_key`.
fn run_into(study: &StudyDir, s3: &S3, url: &str, secret_key: &str) -> Output {
    study
        .command(&["--limit", "8", "--store", url])
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .output()
        .unwrap()
}

fn prefix() -> String {
    format!("run-cli-{}", std::process::id())
}

#[test]
fn run_into_a_bucket_commits_every_sample() {
    let Some(s3) = s3() else {
        return;
    };
    let study = StudyDir::new(&Settings::default());
    let url = format!("s3://{}/{}-ok", s3.bucket, prefix());

    let output = run_into(&study, &s3, &url, &s3.secret_key);

    assert!(output.status.success(), "{}", text(&output.stderr));
    let options = StoreOptions {
        s3_endpoint: Some(s3.endpoint.clone()),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&url, &options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let samples = runtime
        .block_on(read_table(
            &store,
            &StudyId::new("uk-demo").unwrap(),
            Table::Samples,
        ))
        .unwrap();
    let mut ids = sample_ids(&samples);
    ids.sort_unstable();
    assert_eq!(ids, (0..8).collect::<Vec<i64>>());
}

#[test]
fn missing_bucket_fails_with_a_clear_error() {
    let Some(s3) = s3() else {
        return;
    };
    let study = StudyDir::new(&Settings::default());
    let url = format!("s3://no-such-bucket-{}/studies", std::process::id());

    let output = run_into(&study, &s3, &url, &s3.secret_key);

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("check that the bucket exists"), "{stderr}");
}

#[test]
fn wrong_credentials_fail_and_commit_nothing() {
    let Some(s3) = s3() else {
        return;
    };
    let study = StudyDir::new(&Settings::default());
    let url = format!("s3://{}/{}-denied", s3.bucket, prefix());

    let output = run_into(&study, &s3, &url, "not-the-secret");

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("check the credentials"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");

    let options = StoreOptions {
        s3_endpoint: Some(s3.endpoint.clone()),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&url, &options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let committed = runtime
        .block_on(committed_shard_keys(
            &store,
            &StudyId::new("uk-demo").unwrap(),
        ))
        .unwrap();
    assert!(committed.is_empty());
}
