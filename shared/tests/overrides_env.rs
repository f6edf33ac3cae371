//! `Overrides::from_env`. This file contains one test so that no other test
//! of its process reads the environment while it is changed.

use gaze_shared::config::Overrides;

#[test]
fn from_env_reads_gaze_variables() {
    let variables = [
        ("GAZE_STORE", "memory://"),
        ("GAZE_MODEL", "/models/m"),
        ("GAZE_DEVICE", "cuda:0"),
        ("GAZE_BATCH_SIZE", "16"),
        ("GAZE_REDIS", "redis://127.0.0.1:6379"),
    ];
    for (name, value) in variables {
        // SAFETY: this test binary runs this one test, so no thread reads the environment concurrently.
        unsafe { std::env::set_var(name, value) };
    }

    let overrides = Overrides::from_env().unwrap();

    assert_eq!(overrides.store.as_deref(), Some("memory://"));
    assert_eq!(overrides.model.as_deref(), Some("/models/m"));
    assert_eq!(overrides.device.as_deref(), Some("cuda:0"));
    assert_eq!(overrides.batch_size, Some(16));
    assert_eq!(overrides.redis.as_deref(), Some("redis://127.0.0.1:6379"));
    assert_eq!(overrides.limit, None);

    // SAFETY: as above.
    unsafe { std::env::set_var("GAZE_BATCH_SIZE", "sixteen") };
    let message = Overrides::from_env().unwrap_err().to_string();
    assert!(message.contains("GAZE_BATCH_SIZE"), "{message}");
    assert!(message.contains("sixteen"), "{message}");
}
