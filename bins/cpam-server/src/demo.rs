//! `demo`: placeholder replaced below.
pub async fn demo(_listen: &str) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("demo is not available in this build")
}
