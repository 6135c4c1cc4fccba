//! Writes the seed corpus of every fuzz target, built from `tests/vectors/*.json`, to
//! `fuzz/corpus/<target>/` (or to `<dir>/<target>/` given a directory argument).
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --bin make_corpus [-- DIR]
//! ```

use std::path::PathBuf;

fn main() -> Result<(), grapevine_fuzz::seeds::LoadError> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    for target in grapevine_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = grapevine_fuzz::seeds::corpus(target)?;
        for seed in &seeds {
            std::fs::write(dir.join(format!("seed-{}", seed.name)), &seed.data)?;
        }
        println!("{}: {} seeds in {}", target, seeds.len(), dir.display());
    }
    Ok(())
}
