//! `demo`: a server, a gatekeeper, a Connection Manager and a small SSH
//! target in one process, on loopback, with SQLite in a temporary directory.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cpam_core::admin::Admin;
use cpam_core::audit::StoreAuditSink;
use cpam_core::model::{ServiceKind, Timestamp};
use cpam_core::server::DataDir;
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::gatekeeper::{self, Agent};
use cpam_core::tunnel::{self, keys};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};
use tokio_util::sync::CancellationToken;

const PROMPT: &str = "demo@customer-host:~$ ";

pub async fn demo(listen: &str, web_listen: &str) -> anyhow::Result<ExitCode> {
    let tmp = std::env::temp_dir().join(format!("cpam-demo-{}", std::process::id()));
    let data_dir = tmp.join("server");
    let data = DataDir::init(&data_dir, "127.0.0.1:0", None).await?;
    let target = start_target().await?;
    let running =
        crate::run::start(&data_dir, Default::default(), None, Default::default()).await?;
    let server = running
        .local_addr()
        .ok_or_else(|| anyhow::anyhow!("the demo server stopped at once"))?
        .to_string();
    cpam_core::web::tls::generate(&data.web_cert_path(), &data.web_key_path(), &[])?;

    let store = data.store().await?;
    let admin = Admin::new(store.clone(), Arc::new(StoreAuditSink::new(store)), "demo");
    admin.add_customer("demo-customer").await?;
    let code = admin
        .add_gatekeeper("demo-customer", "demo-gatekeeper", Duration::from_secs(600))
        .await?;
    let gk_dir = tmp.join("gatekeeper");
    gatekeeper::register(&server, &code.code, &gk_dir, None).await?;
    let allow = AllowList::parse(&[format!("127.0.0.1:{}", target.port())])?;
    let stop = CancellationToken::new();
    tokio::spawn(Agent::open(&gk_dir, allow)?.run(stop.clone()));

    let vendor = admin
        .add_user("vendor", None, &[], &["Vendor".to_string()])
        .await?;
    let c = admin.customer("demo-customer").await?;
    admin
        .store()
        .set_user_customers(&vendor.id, &[c.id])
        .await?;
    let console_password = cpam_core::model::random_token(10);
    admin
        .add_user(
            "admin",
            Some(cpam_core::Secret::new(console_password.clone())),
            &[],
            &["System Administrator".to_string()],
        )
        .await?;
    let web_args = |listen: &str| cpam_core::server::ConsoleOptions {
        listen: Some(listen.to_string()),
        ..Default::default()
    };
    let console = match running.start_console(&web_args(web_listen)).await {
        Ok(url) => url,
        Err(_) => {
            let any =
                std::net::SocketAddr::new(web_listen.parse::<std::net::SocketAddr>()?.ip(), 0);
            running.start_console(&web_args(&any.to_string())).await?
        }
    };
    admin
        .add_service(
            "demo-customer",
            "demo-ssh",
            &target.to_string(),
            ServiceKind::Custom,
        )
        .await?;
    let now = Timestamp::now();
    admin
        .add_grant(
            "vendor",
            "demo-customer",
            "demo-ssh",
            now,
            Some(now.add(Duration::from_secs(8 * 3600))),
            None,
        )
        .await?;
    let server_key = keys::public_openssh(data.host_key()?.public_key());
    let profile = admin
        .export_profile("vendor", "demo-gatekeeper", &server, &server_key)
        .await?;
    let profile_path = tmp.join("vendor.profile");
    profile.save(&profile_path)?;

    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen `{listen}` must be ADDR:PORT"))?;
    let listener = match tunnel::bind_listener(addr) {
        Ok(l) => l,
        Err(_) => tunnel::bind_listener(std::net::SocketAddr::new(addr.ip(), 0))?,
    };
    let local = listener.local_addr()?;
    let client = ConnectClient::new(profile)?;
    client.connect_with_retry(&stop).await?;
    tokio::spawn(client.forward("demo-ssh".into(), listener, stop.clone()));

    let dd = data_dir.display();
    cpam_core::outln!(
        "cpam demo is running: server {server}, gatekeeper online, SSH target {target} behind it.\n\n\
         Try it with stock ssh (password: demo):\n\
         \x20 ssh -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null demo@{ip}\n\n\
         Every connection is a recorded, audited session. In another terminal:\n\
         \x20 cargo run --release --bin cpam-server -- sessions list --data-dir {dd}\n\
         \x20 cargo run --release --bin cpam-server -- sessions terminate SESSION_ID --data-dir {dd}\n\
         \x20 cargo run --release --bin cpam-server -- audit list --data-dir {dd}\n\
         \x20 cargo run --release --bin cpam-server -- audit verify --data-dir {dd}\n\
         Run your own Connection Manager with the exported profile:\n\
         \x20 cargo run --release --bin cpam-connect -- --profile {profile} services\n\n\
         The web console (self-signed certificate: accept it in the browser):\n\
         \x20 {console}  user: admin  password: {console_password}\n\n\
         Ctrl-C stops the demo and removes {tmp}.",
        port = local.port(),
        ip = local.ip(),
        profile = profile_path.display(),
        tmp = tmp.display(),
    );
    cpam_core::signal::shutdown().await;
    stop.cancel();
    running.stop(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(ExitCode::SUCCESS)
}

/// Starts the demo SSH target (user `demo`, password `demo`).
async fn start_target() -> anyhow::Result<std::net::SocketAddr> {
    let config = Arc::new(russh::server::Config {
        keys: vec![keys::generate()?],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    });
    let listener = tunnel::bind_listener("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) =
                    russh::server::run_stream(config, stream, Target::default()).await
                {
                    let _ = running.await;
                }
            });
        }
    });
    Ok(addr)
}

#[derive(Default)]
struct Target {
    lines: HashMap<ChannelId, String>,
}

fn run_command(line: &str) -> Option<String> {
    let line = line.trim();
    Some(match line.split_whitespace().next().unwrap_or("") {
        "" => String::new(),
        "exit" | "logout" => return None,
        "whoami" => "demo\r\n".into(),
        "hostname" => "customer-host\r\n".into(),
        "date" => format!("{}\r\n", Timestamp::now()),
        "echo" => format!("{}\r\n", line.strip_prefix("echo").unwrap_or("").trim()),
        "help" => "commands: whoami, hostname, date, echo TEXT, exit\r\n".into(),
        other => format!("{other}: command not found (try help)\r\n"),
    })
}

impl russh::server::Handler for Target {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if user == "demo" && password == "demo" {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        mut channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        self.lines.insert(channel.id(), String::new());
        reply.accept().await;
        tokio::spawn(async move { while channel.wait().await.is_some() {} });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _: &str,
        _: u32,
        _: u32,
        _: u32,
        _: u32,
        _: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let banner = "Welcome to the cpam demo target, inside the customer's network.\r\n\
                      Your keystrokes travel: ssh -> cpam-connect -> cpam-server -> gatekeeper -> here.\r\n";
        session.data(channel, format!("{banner}{PROMPT}"))
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let out = run_command(&String::from_utf8_lossy(data)).unwrap_or_default();
        session.data(channel, out.replace("\r\n", "\n"))?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(line) = self.lines.get_mut(&channel) else {
            return Ok(());
        };
        for &b in data {
            match b {
                b'\r' | b'\n' => {
                    let cmd = std::mem::take(line);
                    match run_command(&cmd) {
                        Some(out) => session.data(channel, format!("\r\n{out}{PROMPT}"))?,
                        None => {
                            session.data(channel, "\r\nlogout\r\n")?;
                            session.exit_status_request(channel, 0)?;
                            session.eof(channel)?;
                            return session.close(channel);
                        }
                    }
                }
                0x04 => {
                    session.exit_status_request(channel, 0)?;
                    session.eof(channel)?;
                    return session.close(channel);
                }
                0x7f | 0x08 if line.pop().is_some() => {
                    session.data(channel, "\x08 \x08")?;
                }
                b if b >= 0x20 && line.len() < 1024 => {
                    line.push(char::from(b));
                    session.data(channel, vec![b])?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
