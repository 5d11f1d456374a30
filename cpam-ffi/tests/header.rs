//! `include/cpam.h` is what cbindgen generates from this crate today.

use std::path::Path;

#[test]
fn header_is_fresh() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed_path = crate_dir.join("../include/cpam.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))?;
    let dir = tempfile::tempdir()?;
    let fresh_path = dir.path().join("cpam.h");
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()?
        .write_to_file(&fresh_path);
    let fresh = std::fs::read_to_string(&fresh_path)?;
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if fresh != committed {
        if std::env::var_os("CPAM_UPDATE_HEADER").is_some() {
            std::fs::write(&committed_path, &fresh)?;
            return Ok(());
        }
        let first = fresh
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(fresh.lines().count().min(committed.lines().count()));
        let line = |text: &str| {
            text.lines()
                .nth(first)
                .unwrap_or("<end of file>")
                .to_string()
        };
        // Keep the fresh header so the hint's `diff` works after the test.
        let kept = dir.keep();
        panic!(
            "include/cpam.h is stale (first difference at line {}):\n  committed: {}\n  generated: {}\n\
             regenerate it with `CPAM_UPDATE_HEADER=1 cargo test -p cpam-ffi --test header` and \
             commit it; see `diff include/cpam.h {}`",
            first + 1,
            line(&committed),
            line(&fresh),
            kept.join("cpam.h").display()
        );
    }
    Ok(())
}
