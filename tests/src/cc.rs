//! C programs against the built `libcpam.so` and `include/cpam.h`:
//! compiled with `-Wall -Wextra -Werror` under AddressSanitizer (with
//! LeakSanitizer) and UndefinedBehaviorSanitizer, run with every sanitizer
//! report fatal (`tests/c_abi.rs`, `tests/rdp_sdk_e2e.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::bins::bin_path;

/// Compiles `examples/c/NAME.c` into `out_dir`.
pub fn compile(name: &str, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    compile_file(&root.join(format!("examples/c/{name}.c")), out_dir)
}

/// Compiles one C file against the library, sanitizers on.
pub fn compile_file(source: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let name = source
        .file_stem()
        .context("source name")?
        .to_string_lossy()
        .to_string();
    let lib =
        bin_path("libcpam.so").context("the C library is built by `cargo build --workspace`")?;
    let lib_dir = lib.parent().context("library dir")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = out_dir.join(&name);
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
        ])
        .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(source)
        .arg("-L")
        .arg(lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-lcpam", "-o"])
        .arg(&exe)
        .output()
        .context("running cc (install build-essential)")?;
    if !out.status.success() {
        bail!(
            "compiling {name}.c failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let image = std::fs::read(&exe)?;
    if !image.windows(11).any(|w| w == b"__asan_init") {
        bail!("{name} is not instrumented by AddressSanitizer");
    }
    Ok(exe)
}

/// A command running `exe` with every sanitizer report fatal.
pub fn sanitized(exe: &Path) -> Command {
    let mut c = Command::new(exe);
    sanitize(&mut c);
    c
}

/// Makes every sanitizer report of `c` fatal.
pub fn sanitize(c: &mut Command) {
    c.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86",
    )
    .env(
        "UBSAN_OPTIONS",
        "halt_on_error=1:print_stacktrace=1:exitcode=87",
    )
    .env("LSAN_OPTIONS", "exitcode=88");
}

pub fn no_sanitizer_reports(what: &str, stderr: &str) -> anyhow::Result<()> {
    for marker in [
        "AddressSanitizer",
        "LeakSanitizer",
        "runtime error:",
        "UndefinedBehaviorSanitizer",
    ] {
        if stderr.contains(marker) {
            bail!("{what}: sanitizer report:\n{stderr}");
        }
    }
    Ok(())
}
