//! Writes the `generate` bench's random ~100M-parameter Llama checkpoint and
//! batch to a folder, for running other implementations on the same weights.
//!
//! Run with `cargo run --release -p gaze-worker --example write_bench_model -- DIR`.

#[path = "../benches/common/bench_model.rs"]
mod bench_model;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).context(
        "missing output folder: run as `write_bench_model DIR` (DIR is created if missing)",
    )?;
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    bench_model::write(&dir)
        .with_context(|| format!("writing the bench model to {}", dir.display()))?;
    println!("wrote the bench model to {}", dir.display());
    Ok(())
}
