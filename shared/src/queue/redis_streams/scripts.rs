//! The Lua scripts that make each queue operation atomic in Redis.
//!
//! A stale worker and the reaper can act on the same entry at the same time;
//! running each check-and-change as one script means no interleaving can
//! let both succeed. `redis::Script` sends EVALSHA and falls back to EVAL
//! after a restart emptied the script cache.

use std::sync::LazyLock;

use redis::Script;

macro_rules! queue_script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

queue_script!(SUBMIT, "submit.lua");
queue_script!(CLAIM, "claim.lua");
queue_script!(HEARTBEAT, "heartbeat.lua");
queue_script!(RELEASE, "release.lua");
queue_script!(DEAD_LETTER, "dead_letter.lua");
queue_script!(ACK, "ack.lua");
queue_script!(RECLAIM, "reclaim.lua");
