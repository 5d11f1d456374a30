//! Locating the built cpam binaries.
//!
//! Cargo only exposes `CARGO_BIN_EXE_*` for binaries of the test's own
//! package, so the binaries of the workspace are found next to the test
//! executable: `target/debug/deps/<test>` -> `target/debug/cpam-server`.
//! `CPAM_BIN_DIR` overrides the directory.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The path of the workspace binary `name` (e.g. `cpam-server`).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("CPAM_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().context("locating the test executable")?;
            let mut dir = exe
                .parent()
                .context("test executable has no parent directory")?
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "binary {} not found; run `cargo build --workspace` first (or set CPAM_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}
