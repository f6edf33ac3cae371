//! The job message: one (study, model, shard) unit of work, its versioned
//! JSON wire form, and the checks a worker runs before it trusts one.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The wire version this build writes and the only one it reads.
///
/// Bump it for any change an older worker would misread. Adding a field that
/// older workers may ignore does not need a bump, because decoding ignores
/// unknown fields.
pub const JOB_VERSION: u32 = 1;

/// The study a queue handle serves: its name and the fingerprint of its
/// config. Workers only run jobs whose study and fingerprint match theirs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StudyId {
    pub name: String,
    pub fingerprint: String,
}

impl StudyId {
    pub fn new(name: impl Into<String>, fingerprint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fingerprint: fingerprint.into(),
        }
    }
}

/// One unit of work: run `model` on the samples of one shard of a study.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    /// Study name, as in the study config.
    pub study: String,
    /// Fingerprint of the study config the shard was planned from.
    pub fingerprint: String,
    /// Model id, as in the study config.
    pub model: String,
    /// Index of the shard in the study's sample plan.
    pub shard_id: u32,
    /// Number of samples in the shard.
    pub samples: u32,
}

/// The JSON object on the wire. `version` comes first so a reader can tell
/// an unknown version from a malformed message.
#[derive(Serialize, Deserialize)]
struct WireJob {
    version: u32,
    study: String,
    fingerprint: String,
    model: String,
    shard_id: u32,
    samples: u32,
}

/// Reads only the version, so that a message of a newer version with other
/// fields is reported as that version and not as malformed.
#[derive(Deserialize)]
struct WireVersion {
    version: u32,
}

/// Why a job message was rejected. The queue moves such messages to the
/// dead-letter stream with this error's message as the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobError {
    #[error("malformed job message ({detail}): only a gaze coordinator should write to the queue")]
    Malformed { detail: String },

    #[error(
        "job message has version {found}, but this worker reads version {JOB_VERSION}: \
         run workers and coordinator from the same gaze release"
    )]
    UnknownVersion { found: u32 },

    #[error(
        "job belongs to study {found:?}, but this worker serves study {expected:?}: \
         the queue holds a message from another study"
    )]
    UnknownStudy { expected: String, found: String },

    #[error(
        "job for study {study:?} has config fingerprint {found}, but this worker loaded {expected}: \
         the study config changed since the job was submitted; submit again with the current config"
    )]
    WrongFingerprint {
        study: String,
        expected: String,
        found: String,
    },

    #[error(
        "job is for model {found:?} but was queued for model {expected:?}: \
         the message was written to another model's queue"
    )]
    WrongModel { expected: String, found: String },
}

impl Job {
    /// Encodes the job as its version [`JOB_VERSION`] JSON message.
    pub fn encode(&self) -> String {
        let wire = WireJob {
            version: JOB_VERSION,
            study: self.study.clone(),
            fingerprint: self.fingerprint.clone(),
            model: self.model.clone(),
            shard_id: self.shard_id,
            samples: self.samples,
        };
        serde_json::to_string(&wire).expect("a job of strings and integers always serializes")
    }

    /// Decodes a JSON job message. Any input, including bytes that are not
    /// UTF-8 or JSON, returns an error rather than panicking.
    pub fn decode(message: &[u8]) -> Result<Job, JobError> {
        let malformed = |err: serde_json::Error| JobError::Malformed {
            detail: err.to_string(),
        };

        let WireVersion { version } = serde_json::from_slice(message).map_err(malformed)?;
        if version != JOB_VERSION {
            return Err(JobError::UnknownVersion { found: version });
        }

        let wire: WireJob = serde_json::from_slice(message).map_err(malformed)?;
        Ok(Job {
            study: wire.study,
            fingerprint: wire.fingerprint,
            model: wire.model,
            shard_id: wire.shard_id,
            samples: wire.samples,
        })
    }

    /// Checks that the job belongs to `study` (name and config fingerprint)
    /// and to `model`, the model the worker has loaded.
    pub fn check_belongs(&self, study: &StudyId, model: &str) -> Result<(), JobError> {
        if self.study != study.name {
            return Err(JobError::UnknownStudy {
                expected: study.name.clone(),
                found: self.study.clone(),
            });
        }
        if self.fingerprint != study.fingerprint {
            return Err(JobError::WrongFingerprint {
                study: self.study.clone(),
                expected: study.fingerprint.clone(),
                found: self.fingerprint.clone(),
            });
        }
        if self.model != model {
            return Err(JobError::WrongModel {
                expected: model.to_owned(),
                found: self.model.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            study: "uk-immigration".into(),
            fingerprint: "9f2c".into(),
            model: "llama-3-8b".into(),
            shard_id: 17,
            samples: 250,
        }
    }

    #[test]
    fn encode_writes_version_one_object() {
        let expected = r#"{"version":1,"study":"uk-immigration","fingerprint":"9f2c","model":"llama-3-8b","shard_id":17,"samples":250}"#;
        assert_eq!(job().encode(), expected);
    }

    #[test]
    fn decode_reads_encoded_job() {
        assert_eq!(Job::decode(job().encode().as_bytes()), Ok(job()));
    }

    #[test]
    fn decode_ignores_unknown_fields() {
        let message = r#"{"version":1,"study":"uk-immigration","fingerprint":"9f2c","model":"llama-3-8b","shard_id":17,"samples":250,"attempt":3}"#;
        assert_eq!(Job::decode(message.as_bytes()), Ok(job()));
    }

    #[test]
    fn decode_reports_unknown_version() {
        let message = r#"{"version":2,"shards":[1,2]}"#;
        assert_eq!(
            Job::decode(message.as_bytes()),
            Err(JobError::UnknownVersion { found: 2 })
        );
    }

    #[test]
    fn decode_rejects_bad_input_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"\xff\xfe\x00",
            b"[]",
            b"null",
            br#"{"study":"s"}"#,
            br#"{"version":"1"}"#,
            br#"{"version":-1}"#,
            br#"{"version":1}"#,
            br#"{"version":1,"study":"s","fingerprint":"f","model":"m","shard_id":-4,"samples":1}"#,
            br#"{"version":1,"study":"s","fingerprint":"f","model":"m","shard_id":4294967296,"samples":1}"#,
        ];
        for case in cases {
            let result = Job::decode(case);
            assert!(
                matches!(result, Err(JobError::Malformed { .. })),
                "{:?} decoded as {result:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn check_belongs_accepts_own_job() {
        let study = StudyId::new("uk-immigration", "9f2c");
        assert_eq!(job().check_belongs(&study, "llama-3-8b"), Ok(()));
    }

    #[test]
    fn check_belongs_rejects_other_study() {
        let study = StudyId::new("us-asylum", "9f2c");
        assert!(matches!(
            job().check_belongs(&study, "llama-3-8b"),
            Err(JobError::UnknownStudy { .. })
        ));
    }

    #[test]
    fn check_belongs_rejects_other_fingerprint() {
        let study = StudyId::new("uk-immigration", "0000");
        assert!(matches!(
            job().check_belongs(&study, "llama-3-8b"),
            Err(JobError::WrongFingerprint { .. })
        ));
    }

    #[test]
    fn check_belongs_rejects_other_model() {
        let study = StudyId::new("uk-immigration", "9f2c");
        assert!(matches!(
            job().check_belongs(&study, "mistral-7b"),
            Err(JobError::WrongModel { .. })
        ));
    }
}
