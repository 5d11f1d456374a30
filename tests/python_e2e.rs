//! The Python bindings' pytest suite (`cpam-py/tests`) and tutorials
//! (`examples/python`), run against the built `cpam` wheel in the virtual
//! environment `target/py-venv` that `tests/run.sh` makes and installs it
//! into. The tests start the built `cpam-server` and a stock `sshd` on
//! loopback themselves; `CPAM_BIN_DIR` tells them where the binaries are.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use cpam_tests::bins::bin_path;

#[test]
fn pytest_suite_passes_against_the_built_wheel() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests/ has no parent directory")?
        .to_path_buf();
    let python = root.join("target/py-venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: the Python tests need the venv with the cpam wheel; \
             run `bash tests/run.sh`, which makes it",
            python.display()
        );
    }
    let bin_dir = bin_path("cpam-server")?
        .parent()
        .context("cpam-server has no parent directory")?
        .to_path_buf();
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "cpam-py/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&root)
        .env("CPAM_BIN_DIR", &bin_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .with_context(|| format!("running {} -m pytest", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !out.status.success() {
        bail!("pytest failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    Ok(())
}
