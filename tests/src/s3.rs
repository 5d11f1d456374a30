//! An S3-compatible object store for the tests: `moto_server` from the
//! virtual environment tests/run.sh makes (`target/moto-venv`), on a free
//! loopback port (it picks one and prints it), in the root namespace or a
//! test's own, with one bucket; stopped (SIGSTOP) and resumed by PID to
//! play a store that is down, killed by PID when dropped. Objects are
//! listed with boto3 from the same venv, in the same namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::netns::Netns;
use crate::process::{Child, run};

/// The bucket every test store has.
pub const BUCKET: &str = "cpam-recordings";

/// A running `moto_server`.
#[derive(Debug)]
pub struct S3 {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    ns: Option<String>,
    dir: PathBuf,
}

/// The venv's directory (`target/moto-venv`, next to the test binaries).
fn venv() -> anyhow::Result<PathBuf> {
    let bins = crate::bins::bin_path("cpam-server")?;
    let target = bins
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .context("the binaries are under a `target` directory")?;
    let venv = target.join("moto-venv");
    anyhow::ensure!(
        venv.join("bin/moto_server").exists(),
        "{} has no moto_server: run tests/run.sh, which installs `moto[server]` there",
        venv.display()
    );
    Ok(venv)
}

impl S3 {
    /// Starts moto (in `ns` when given) and makes the bucket.
    pub fn start(ns: Option<&Netns>, dir: &Path) -> anyhow::Result<S3> {
        let moto = venv()?.join("bin/moto_server");
        let mut c = match ns {
            Some(ns) => ns.command(&moto),
            None => Command::new(&moto),
        };
        c.args(["-H", "127.0.0.1", "-p", "0"]);
        let mut child = Child::spawn("moto", c, dir)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = loop {
            let err = child.stderr();
            if let Some(url) = err
                .lines()
                .find_map(|l| l.split("Running on ").nth(1))
                .map(|u| u.trim().to_string())
            {
                break url;
            }
            anyhow::ensure!(
                Instant::now() < deadline && child.is_running(),
                "moto_server did not start\n{}",
                child.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let s3 = S3 {
            child,
            endpoint,
            ns: ns.map(|n| n.name().to_string()),
            dir: dir.to_path_buf(),
        };
        s3.boto(&format!("s3.create_bucket(Bucket='{BUCKET}')"))?;
        Ok(s3)
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The variables a `cpam-server` needs to record to `prefix` (the
    /// standard AWS ones, and `CPAM_RECORDINGS`).
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("CPAM_RECORDINGS", self.url(prefix).as_str()),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The objects under `prefix`, with their sizes, sorted.
    pub fn objects(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let out = self.boto(&format!(
            "p = s3.get_paginator('list_objects_v2')\n\
             for page in p.paginate(Bucket='{BUCKET}', Prefix='{prefix}'):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       print(o['Key'], o['Size'])"
        ))?;
        let mut objects = Vec::new();
        for line in out.lines() {
            let (key, size) = line.rsplit_once(' ').context("KEY SIZE")?;
            objects.push((key.to_string(), size.parse()?));
        }
        objects.sort();
        Ok(objects)
    }

    /// Stops answering (SIGSTOP): requests hang until [`S3::resume`].
    pub fn pause(&self) -> anyhow::Result<()> {
        self.child.signal(19)
    }

    /// Answers again (SIGCONT), with everything it held.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.child.signal(18)
    }

    /// Runs `code` with `s3`, a boto3 client of this store; its stdout.
    fn boto(&self, code: &str) -> anyhow::Result<String> {
        let python = venv()?.join("bin/python");
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&python);
                c
            }
            None => Command::new(&python),
        };
        let script = format!(
            "import boto3\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing-secret')\n{code}\n",
            self.endpoint
        );
        c.args(["-c", &script]);
        Ok(run("boto3", c, &self.dir, Duration::from_secs(60))?
            .ok("boto3")?
            .stdout)
    }

    /// The server's output, for failure messages.
    pub fn logs(&self) -> String {
        self.child.logs()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // A stopped process cannot act on SIGKILL's reaping until resumed.
        let _ = self.resume();
        let _ = self.child.kill();
    }
}
