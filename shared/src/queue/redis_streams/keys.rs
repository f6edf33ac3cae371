//! Redis key names of one (study, model) queue.

/// The consumer group all workers of a (study, model) queue join.
pub(super) const GROUP: &str = "workers";

/// The keys of one (study, model) queue. Study and model are escaped so that
/// no two pairs share a key, and the study is a hash tag (`{...}`) so that
/// all keys of a study map to one Redis Cluster slot, as scripts need.
#[derive(Debug, Clone)]
pub(super) struct ModelKeys {
    /// Stream of queued and in-flight jobs; finished entries are deleted.
    pub jobs: String,
    /// Stream of dead-lettered jobs with their reasons.
    pub dead: String,
    /// Hash from shard id to the id of its live entry in `jobs`, for
    /// idempotent submits.
    pub shards: String,
    /// Hash from shard id to its last attempt number (the fencing token).
    pub attempts: String,
    /// Hash from shard id to the last error of a failed delivery.
    pub errors: String,
    /// Hash from consumer name to when it last claimed or sent a heartbeat,
    /// in milliseconds of the Redis clock.
    pub workers: String,
}

impl ModelKeys {
    pub fn new(study: &str, model: &str) -> Self {
        let prefix = format!("gaze:{{{}}}:{}", escape(study), escape(model));
        Self {
            jobs: format!("{prefix}:jobs"),
            dead: format!("{prefix}:dead"),
            shards: format!("{prefix}:shards"),
            attempts: format!("{prefix}:attempts"),
            errors: format!("{prefix}:errors"),
            workers: format!("{prefix}:workers"),
        }
    }

    /// The keys in the order every queue script expects them.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.jobs,
            &self.dead,
            &self.shards,
            &self.attempts,
            &self.errors,
            &self.workers,
        ]
    }
}

/// Percent-encodes the characters that separate or tag key segments.
fn escape(segment: &str) -> String {
    let mut escaped = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_study_and_model() {
        let keys = ModelKeys::new("uk-immigration", "meta-llama/Llama-3-8B");
        assert_eq!(
            keys.jobs,
            "gaze:{uk-immigration}:meta-llama/Llama-3-8B:jobs"
        );
        assert_eq!(
            keys.dead,
            "gaze:{uk-immigration}:meta-llama/Llama-3-8B:dead"
        );
    }

    #[test]
    fn keys_escape_separators() {
        let keys = ModelKeys::new("a:b}", "c%");
        assert_eq!(keys.jobs, "gaze:{a%3Ab%7D}:c%25:jobs");
    }

    #[test]
    fn keys_differ_when_colon_moves() {
        let left = ModelKeys::new("a:b", "c");
        let right = ModelKeys::new("a", "b:c");
        assert_ne!(left.jobs, right.jobs);
    }
}
