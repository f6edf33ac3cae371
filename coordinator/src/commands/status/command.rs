//! The `gaze status` command line: finds the study's manifest in the store,
//! rebuilds the plan from it, and reads the queue when a Redis URL is given.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use gaze_shared::queue::{LeaseSettings, RedisOptions, RedisQueue};
use gaze_shared::store::{Store, StoreOptions, StudyId};
use gaze_shared::study::StoredStudy;

use super::{StatusInput, build_report, read_status, render_json, render_table};
use crate::args::{OverrideArgs, load_config};
use crate::commands::study::{planned_models, read_committed};
use crate::commands::submit::redis_url;

/// Arguments of `gaze status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The study: its name, with --store, or its config file, which gives
    /// the name, the store and the queue.
    pub study: String,

    #[command(flatten)]
    pub overrides: OverrideArgs,

    /// The lease timeout the workers use, in seconds: leases older than
    /// this are shown as expired.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub lease_timeout: f64,

    /// Print the report as JSON (a stable format, see the README).
    #[arg(long)]
    pub json: bool,
}

/// Runs `gaze status`. Without a Redis URL the report comes from the commit
/// markers alone, and the queue columns read 0.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (name, store_url, redis) = locate(&args)?;
    let options = StoreOptions {
        create: false,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&store_url, &options)?;
    let study_id = StudyId::new(&name)?;
    let study = StoredStudy::read(&store, &study_id).await?;

    let plan = planned_models(&study.config, &study.plan);
    let committed = read_committed(&store, &study_id, true).await?;
    let queue_id = gaze_shared::queue::StudyId::new(&name, &study.manifest.fingerprint);
    let lease_timeout = Duration::try_from_secs_f64(args.lease_timeout)
        .context("--lease-timeout must be a positive number of seconds")?;
    let now = SystemTime::now();

    let report = match redis {
        Some(url) => {
            let settings = LeaseSettings {
                lease_timeout,
                heartbeat_interval: lease_timeout / 6,
                ..LeaseSettings::default()
            };
            let queue = RedisQueue::connect(&url, queue_id, settings, &RedisOptions::default())
                .await
                .context("opening the shard queue")?;
            read_status(&queue, &plan, &committed, now).await?
        }
        None => build_report(&StatusInput {
            study: &queue_id,
            plan: &plan,
            committed: &committed,
            queues: &BTreeMap::new(),
            lease_timeout,
            now,
        }),
    };

    if args.json {
        print!("{}", render_json(&report));
    } else {
        print!("{}", render_table(&report));
    }
    Ok(())
}

/// Returns the study name, the store URL and the Redis URL, if any, from a
/// config file or from a name and the flags.
fn locate(args: &StatusArgs) -> anyhow::Result<(String, String, Option<String>)> {
    let overrides = args.overrides.overrides();
    let path = Path::new(&args.study);
    if path.is_file() {
        let config = load_config(path, &overrides)?;
        let redis = redis_url(&config).ok();
        return Ok((config.study.name.clone(), config.store_url(), redis));
    }

    let store = overrides.store.clone().with_context(|| {
        format!(
            "no store given for study {:?}: pass --store URL (or GAZE_STORE), or the study's \
             config file in place of its name",
            args.study
        )
    })?;
    Ok((args.study.clone(), store, overrides.redis.clone()))
}
