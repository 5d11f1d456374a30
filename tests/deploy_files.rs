//! The deployment files in `docs/` (systemd units, the container file) name
//! only commands and options the built binaries have: each `ExecStart`,
//! `ENTRYPOINT` and `CMD` is checked against the binary's own `--help`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use cpam_tests::bins::bin_path;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The words of a command line: the program's file name, then its arguments.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect()
}

/// Fails unless `program` (a cpam binary) knows `args`' subcommand and
/// every `--option` in them.
fn check(file: &str, program: &str, args: &[String]) -> anyhow::Result<()> {
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .context("a program without a name")?;
    if !name.starts_with("cpam-") {
        bail!("{file}: `{program}` is not a cpam binary");
    }
    let exe = bin_path(name)?;
    let sub: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let out = Command::new(&exe)
        .args(&sub)
        .arg("--help")
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{file}: `{name} {}` is not a command: {}",
            sub.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for option in args.iter().filter(|a| a.starts_with("--")) {
        let option = option.split('=').next().unwrap_or(option);
        if !help.contains(&format!("{option} ")) && !help.contains(&format!("{option}\n")) {
            bail!(
                "{file}: `{name} {}` has no option `{option}`:\n{help}",
                sub.join(" ")
            );
        }
    }
    Ok(())
}

#[test]
fn systemd_units_name_commands_and_options_the_binaries_have() -> anyhow::Result<()> {
    let mut units = vec![docs().join("cpam-ipconnect.service")];
    for entry in std::fs::read_dir(docs().join("deploy"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "service") {
            units.push(path);
        }
    }
    assert!(units.len() >= 3, "units: {units:?}");
    for unit in &units {
        let text = std::fs::read_to_string(unit)?;
        let file = unit.display().to_string();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .with_context(|| format!("{file} has no ExecStart"))?;
        let mut w = words(exec);
        // `/bin/sh -c 'exec PROGRAM ...'` (a glob of profiles) is checked as PROGRAM.
        if w.first().is_some_and(|p| p == "/bin/sh") {
            let at = w
                .iter()
                .position(|x| x == "exec")
                .with_context(|| format!("{file}: a shell line without exec"))?;
            w.drain(..=at);
        }
        let (program, args) = w.split_first().context("an empty ExecStart")?;
        check(&file, program, args)?;
    }
    Ok(())
}

#[test]
fn the_container_file_runs_a_command_the_server_has() -> anyhow::Result<()> {
    let path = docs().join("deploy/Containerfile");
    let text = std::fs::read_to_string(&path)?;
    let json = |key: &str| -> anyhow::Result<Vec<String>> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .with_context(|| format!("no {key}in {}", path.display()))?;
        Ok(serde_json::from_str(line.trim())?)
    };
    let entry = json("ENTRYPOINT ")?;
    let cmd = json("CMD ")?;
    let (program, first) = entry.split_first().context("an empty ENTRYPOINT")?;
    let args: Vec<String> = first.iter().chain(&cmd).cloned().collect();
    check(&path.display().to_string(), program, &args)?;
    assert!(
        text.contains("/readyz"),
        "the container's health check asks /readyz"
    );
    Ok(())
}
