//! A throwaway PostgreSQL server for tests.
//!
//! [`PgFixture::start`] uses `CPAM_TEST_POSTGRES_URL` when it is set, and
//! otherwise runs `initdb` and `postgres` from the PostgreSQL 15 install in a
//! temporary directory, on a free loopback port, as the `postgres` system
//! user when the tests run as root (initdb refuses root). The server is
//! stopped, by its PID, when the fixture is dropped. Tests call
//! [`PgFixture::fresh_database`] so that they can share one server and run
//! in parallel.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use sqlx::Connection as _;

/// Where the PostgreSQL binaries are looked for (`CPAM_TEST_POSTGRES_BIN` overrides).
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server for one test (or one test binary).
#[derive(Debug)]
pub struct PgFixture {
    admin_url: String,
    /// The Unix socket directory and port: processes inside another network
    /// namespace reach the server through the socket, not 127.0.0.1.
    socket: Option<(PathBuf, u16)>,
    server: Option<Server>,
}

#[derive(Debug)]
struct Server {
    child: Child,
    /// How to start it again on the same data and port ([`PgFixture::restart`]).
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    // Dropped after the server has stopped (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl PgFixture {
    /// The server at `CPAM_TEST_POSTGRES_URL`, or a new one started here.
    pub fn start() -> Result<PgFixture> {
        if let Ok(url) = std::env::var("CPAM_TEST_POSTGRES_URL") {
            return Ok(PgFixture {
                admin_url: url,
                socket: None,
                server: None,
            });
        }
        let bin = PathBuf::from(
            std::env::var("CPAM_TEST_POSTGRES_BIN").unwrap_or_else(|_| DEFAULT_BIN_DIR.to_string()),
        );
        for tool in ["initdb", "postgres", "pg_isready"] {
            if !bin.join(tool).exists() {
                bail!(
                    "PostgreSQL is needed for this test but `{}` is missing: run the README test command \
                     (`bash tests/run.sh`) or `apt-get install postgresql`, or set CPAM_TEST_POSTGRES_URL",
                    bin.join(tool).display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("cpam-pg-")
            .tempdir()
            .context("creating a temp dir for postgres")?;
        let as_postgres = running_as_root(dir.path())?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!(
                    "cannot chown {} to the postgres user (does the `postgres` system user exist?)",
                    dir.path().display()
                );
            }
        }
        let data = dir.path().join("data");
        let log = dir.path().join("initdb.log");
        let status = command(&bin, "initdb", as_postgres)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(File::create(&log)?)
            .stderr(File::create(dir.path().join("initdb.err"))?)
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed: {}", tail(&dir.path().join("initdb.err")));
        }
        let port = free_port()?;
        let child = spawn_postgres(&bin, as_postgres, dir.path(), port)?;
        let mut fixture = PgFixture {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            socket: Some((dir.path().to_path_buf(), port)),
            server: Some(Server {
                child,
                bin: bin.clone(),
                as_postgres,
                port,
                dir,
            }),
        };
        fixture.wait_ready(&bin, port)?;
        Ok(fixture)
    }

    fn wait_ready(&mut self, bin: &Path, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(server) = &mut self.server
                && let Some(status) = server.child.try_wait()?
            {
                bail!(
                    "postgres exited with {status}: {}",
                    tail(&server.dir.path().join("postgres.err"))
                );
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown, by its PID) and waits until it has
    /// exited; [`PgFixture::restart`] starts it again on the same data.
    pub fn stop(&mut self) -> Result<()> {
        let server = self
            .server
            .as_mut()
            .context("this PostgreSQL server was not started by the fixture")?;
        stop_child(&mut server.child);
        Ok(())
    }

    /// Starts the stopped server again on the same data dir and port.
    pub fn restart(&mut self) -> Result<()> {
        let server = self
            .server
            .as_mut()
            .context("this PostgreSQL server was not started by the fixture")?;
        server.child = spawn_postgres(
            &server.bin,
            server.as_postgres,
            server.dir.path(),
            server.port,
        )?;
        let (bin, port) = (server.bin.clone(), server.port);
        self.wait_ready(&bin, port)
    }

    /// The URL of the server's administrative database.
    pub fn url(&self) -> &str {
        &self.admin_url
    }

    /// A URL of the database `url` names that reaches the server through
    /// its Unix socket (from inside a network namespace too).
    pub fn socket_url(&self, url: &str) -> Result<String> {
        let (dir, port) = self
            .socket
            .as_ref()
            .context("this PostgreSQL server has no Unix socket of the fixture's")?;
        let name = url
            .split('?')
            .next()
            .and_then(|u| u.rsplit('/').next())
            .context("the URL names no database")?;
        Ok(format!(
            "postgres://postgres@localhost/{name}?host={}&port={port}",
            dir.display()
        ))
    }

    /// Creates a new, empty database and returns its URL.
    pub async fn fresh_database(&self) -> Result<String> {
        let name = format!("cpam_test_{}", cpam_core::model::random_token(8));
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .with_context(|| {
                format!(
                    "connecting to {}",
                    cpam_core::store::redact_url(&self.admin_url)
                )
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await.ok();
        Ok(with_database(&self.admin_url, &name))
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            stop_child(&mut server.child);
        }
    }
}

/// Stops a postgres child by its PID and reaps it.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id().to_string();
    // SIGINT is PostgreSQL's "fast shutdown": it ends backends and exits cleanly.
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `postgres` on the data under `dir` on 127.0.0.1:`port`, its
/// Unix socket in `dir`.
fn spawn_postgres(bin: &Path, as_postgres: bool, dir: &Path, port: u16) -> Result<Child> {
    command(bin, "postgres", as_postgres)
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ])
        .args(["-c", "max_connections=200", "-k"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("postgres.log"))?)
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("postgres.err"))?,
        )
        .spawn()
        .context("starting postgres")
}

/// `url` pointing at database `name` instead (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Whether this process runs as root, judged by the owner of a directory it just created.
fn running_as_root(fresh: &Path) -> Result<bool> {
    Ok(std::fs::metadata(fresh)?.uid() == 0)
}

/// `tool` from `bin`, run as the `postgres` user when `as_postgres`.
fn command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
