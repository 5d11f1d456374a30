//! Admin subcommands: parse, call `cpam_core::admin`, print.

use std::io::BufRead as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use cpam_core::admin::Admin;
use cpam_core::audit::{self, StoreAuditSink};
use cpam_core::events::Revocation;
use cpam_core::model::{Schedule, ServiceKind, SessionId, Timestamp};
use cpam_core::policy;
use cpam_core::server::{ControlRequest, DataDir, control};
use cpam_core::store::{AuditFilter, SessionFilter, Store};
use cpam_core::tunnel::keys;
use serde_json::json;

pub use crate::admin_args::*;

pub(crate) struct Ctx {
    pub(crate) data: DataDir,
    pub(crate) admin: Admin,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) json: bool,
}

pub(crate) async fn ctx(c: &Common) -> anyhow::Result<Ctx> {
    let data = DataDir::open(&c.data_dir)?;
    let store = data.store().await?;
    let admin = Admin::new(
        store.clone(),
        Arc::new(StoreAuditSink::new(store.clone())),
        "admin-cli",
    );
    Ok(Ctx {
        data,
        admin,
        store,
        json: c.json,
    })
}

pub(crate) fn print(
    json: bool,
    value: serde_json::Value,
    human: impl FnOnce() -> String,
) -> ExitCode {
    if json {
        cpam_core::outln!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let text = human();
        if !text.is_empty() {
            cpam_core::outln!("{text}");
        }
    }
    ExitCode::SUCCESS
}

/// Asks the running server, if any, to re-decide live sessions.
pub(crate) async fn recheck(data: &DataDir) {
    if let Err(e) = control(&data.control_socket(), &ControlRequest::Recheck).await {
        tracing::debug!(error = %e, "no running server to notify");
    }
}

/// Asks the running server, if any, to take access away at once (end
/// sessions, close SSH connections).
async fn revoke(data: &DataDir, revocation: Revocation) {
    let request = ControlRequest::Revoke { revocation };
    if let Err(e) = control(&data.control_socket(), &request).await {
        tracing::debug!(error = %e, "no running server to notify");
    }
}

/// One column of a printed table: its heading and how to render a row.
pub(crate) type Column<'a, T> = (&'a str, &'a dyn Fn(&T) -> String);

pub(crate) fn table<T>(rows: &[T], cols: &[Column<'_, T>]) -> String {
    let mut out: Vec<Vec<String>> = vec![cols.iter().map(|c| c.0.to_string()).collect()];
    out.extend(rows.iter().map(|r| cols.iter().map(|c| (c.1)(r)).collect()));
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| out.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    out.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn ts(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
}

pub async fn dispatch(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::Customer(CustomerCmd::Add { name, c }) => {
            let x = ctx(&c).await?;
            let cu = x.admin.add_customer(&name).await?;
            Ok(print(x.json, json!(cu), || {
                format!("customer {} added ({})", cu.name, cu.id)
            }))
        }
        AdminCommand::Customer(CustomerCmd::List { c }) => {
            let x = ctx(&c).await?;
            let list = x.store.list_customers().await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("NAME", &|c| c.name.clone()),
                        ("ID", &|c| c.id.to_string()),
                        ("CREATED", &|c| c.created_at.to_rfc3339()),
                    ],
                )
            }))
        }
        AdminCommand::Gatekeeper(GatekeeperCmd::Add {
            name,
            customer,
            code_ttl,
            c,
        }) => {
            let x = ctx(&c).await?;
            let ttl = policy::parse_duration(&code_ttl)?;
            let code = x.admin.add_gatekeeper(&customer, &name, ttl).await?;
            let fp = keys::fingerprint(x.data.host_key()?.public_key());
            let mut v = json!(code);
            v["server_fingerprint"] = json!(fp);
            Ok(print(x.json, v, || {
                format!(
                    "gatekeeper {} added ({})\none-time registration code: {}\nvalid until {}\nserver key: {fp}\non the customer's machine (the code goes in on standard input, never in the arguments):\n  printf '%s\\n' {} | cpam-gatekeeper register --server {} --code-file - --server-fingerprint {fp} --state-dir /var/lib/cpam-gatekeeper",
                    code.name,
                    code.id,
                    code.code,
                    code.expires_at,
                    code.code,
                    x.data
                        .config
                        .public_address
                        .clone()
                        .unwrap_or(x.data.config.listen.clone()),
                )
            }))
        }
        AdminCommand::Gatekeeper(GatekeeperCmd::Code { name, code_ttl, c }) => {
            let x = ctx(&c).await?;
            let code = x
                .admin
                .issue_code(&name, policy::parse_duration(&code_ttl)?)
                .await?;
            Ok(print(x.json, json!(code), || {
                format!(
                    "one-time registration code for {}: {}\nvalid until {}",
                    code.name, code.code, code.expires_at
                )
            }))
        }
        AdminCommand::Gatekeeper(GatekeeperCmd::Delete { name, c }) => {
            let x = ctx(&c).await?;
            let gk = x.admin.gatekeeper(&name).await?;
            x.admin.delete_gatekeeper(&gk).await?;
            let reason = format!("gatekeeper {name} deleted");
            revoke(&x.data, Revocation::gatekeeper(&gk.id, reason)).await;
            Ok(print(
                x.json,
                json!({ "gatekeeper": name, "id": gk.id }),
                || format!("gatekeeper {name} deleted"),
            ))
        }
        AdminCommand::Gatekeeper(GatekeeperCmd::List { customer, c }) => {
            let x = ctx(&c).await?;
            let cid = match customer {
                Some(n) => Some(x.admin.customer(&n).await?.id),
                None => None,
            };
            let list = x.store.list_gatekeepers(cid.as_ref()).await?;
            let v: Vec<_> = list
                .iter()
                .map(|g| {
                    let mut v = json!(g);
                    v["registered"] = json!(g.is_registered());
                    v
                })
                .collect();
            Ok(print(x.json, json!(v), || {
                table(
                    &list,
                    &[
                        ("NAME", &|g| g.name.clone()),
                        ("STATUS", &|g| {
                            if !g.is_registered() {
                                "unregistered".into()
                            } else if g.online {
                                "online".into()
                            } else {
                                "offline".into()
                            }
                        }),
                        ("CUSTOMER SWITCH", &|g| {
                            if g.customer_disabled {
                                "disabled".into()
                            } else {
                                "enabled".into()
                            }
                        }),
                        ("HOURS (UTC)", &|g| {
                            g.customer_schedule
                                .clone()
                                .unwrap_or_else(|| "always".into())
                        }),
                        ("LAST CONTACT", &|g| ts(g.last_contact)),
                        ("ID", &|g| g.id.to_string()),
                    ],
                )
            }))
        }
        AdminCommand::User(cmd) => user(cmd).await,
        AdminCommand::Role(cmd) => role(cmd).await,
        AdminCommand::Service(cmd) => service(cmd).await,
        AdminCommand::Grant(cmd) => grant(cmd).await,
        AdminCommand::Sessions(cmd) => sessions(cmd).await,
        AdminCommand::Audit(cmd) => audit_cmd(cmd).await,
        AdminCommand::Recordings(cmd) => crate::recordings::recordings(cmd).await,
        AdminCommand::Vault(cmd) => crate::vault::vault(cmd).await,
        AdminCommand::Checkouts(cmd) => crate::vault::checkouts(cmd).await,
        AdminCommand::Nodes { c } => crate::nodes::nodes(&c).await,
        AdminCommand::Profile(ProfileCmd::Export {
            user,
            gatekeeper,
            out,
            server_address,
            c,
        }) => {
            let x = ctx(&c).await?;
            let key = keys::public_openssh(x.data.host_key()?.public_key());
            let server = server_address
                .or(x.data.config.public_address.clone())
                .unwrap_or_else(|| x.data.config.listen.clone());
            if server.starts_with("0.0.0.0:") || server.starts_with("[::]:") {
                bail!(
                    "the server listens on {server}; give the address vendors reach it at with --server-address HOST:PORT"
                );
            }
            let profile = x
                .admin
                .export_profile(&user, &gatekeeper, &server, &key)
                .await?;
            profile.save(&out)?;
            Ok(print(
                x.json,
                json!({ "out": out, "user": user, "gatekeeper": gatekeeper, "server": server }),
                || {
                    format!(
                        "profile for {user} linked to gatekeeper {gatekeeper} written to {}",
                        out.display()
                    )
                },
            ))
        }
    }
}

fn read_key(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))
}

async fn user(cmd: UserCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Add {
            name,
            password_stdin,
            key,
            role,
            c,
        } => {
            let x = ctx(&c).await?;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                Some(cpam_core::Secret::new(
                    line.trim_end_matches(['\n', '\r']).to_string(),
                ))
            } else {
                None
            };
            let keys_text = key
                .iter()
                .map(|p| read_key(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let u = x.admin.add_user(&name, password, &keys_text, &role).await?;
            Ok(print(x.json, json!(u), || {
                format!("user {} added ({})", u.name, u.id)
            }))
        }
        UserCmd::List { c } => {
            let x = ctx(&c).await?;
            let list = x.store.list_users().await?;
            let mut rows = Vec::new();
            for u in &list {
                rows.push((u.clone(), x.store.user_roles(&u.id).await?));
            }
            let v: Vec<_> = rows
                .iter()
                .map(|(u, r)| {
                    let mut v = json!(u);
                    v["roles"] = json!(r);
                    v
                })
                .collect();
            Ok(print(x.json, json!(v), || {
                table(
                    &rows,
                    &[
                        ("NAME", &|(u, _)| u.name.clone()),
                        ("ROLES", &|(_, r)| r.join(", ")),
                        ("STATE", &|(u, _)| {
                            if u.disabled {
                                "disabled".into()
                            } else {
                                "enabled".into()
                            }
                        }),
                        ("ID", &|(u, _)| u.id.to_string()),
                    ],
                )
            }))
        }
        UserCmd::Key(UserKeyCmd::Add { name, file, c }) => {
            let x = ctx(&c).await?;
            let k = x.admin.add_user_key(&name, &read_key(&file)?).await?;
            Ok(print(x.json, json!(k), || {
                format!("key {} added to {name}", k.fingerprint)
            }))
        }
        UserCmd::Key(UserKeyCmd::List { name, c }) => {
            let x = ctx(&c).await?;
            let list = x.admin.user_keys(&name).await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("ID", &|k| k.id.to_string()),
                        ("FINGERPRINT", &|k| k.fingerprint.clone()),
                        ("KIND", &|k| {
                            if k.gatekeeper_id.is_some() {
                                "profile".into()
                            } else {
                                "key".into()
                            }
                        }),
                        ("LABEL", &|k| k.label.clone()),
                        ("CREATED", &|k| k.created_at.to_rfc3339()),
                    ],
                )
            }))
        }
        UserCmd::Key(UserKeyCmd::Delete { name, key, c }) => {
            let x = ctx(&c).await?;
            let k = x.admin.delete_user_key(&name, &key).await?;
            revoke(
                &x.data,
                Revocation::key(&k.fingerprint, format!("key {} of {name} deleted", k.id)),
            )
            .await;
            Ok(print(x.json, json!(k), || {
                format!("key {} ({}) of {name} deleted", k.id, k.fingerprint)
            }))
        }
        UserCmd::Disable { name, c } => {
            let x = ctx(&c).await?;
            x.admin.set_user_disabled(&name, true).await?;
            let user = x.admin.user(&name).await?;
            revoke(
                &x.data,
                Revocation::user(&user.id, format!("user {name} disabled")),
            )
            .await;
            Ok(print(
                x.json,
                json!({ "user": name, "disabled": true }),
                || format!("user {name} disabled"),
            ))
        }
        UserCmd::ResetMasterPassword { name, c } => {
            let x = ctx(&c).await?;
            let u = x.admin.user(&name).await?;
            x.admin.reset_master_password(&u).await?;
            Ok(print(
                x.json,
                json!({ "user": name, "master_password": "cleared" }),
                || format!("master password of {name} cleared"),
            ))
        }
        UserCmd::IpConnectMode { name, mode, c } => {
            let x = ctx(&c).await?;
            x.admin.set_user_ip_connect_mode(&name, &mode).await?;
            Ok(print(
                x.json,
                json!({ "user": name, "ip_connect_mode": mode }),
                || format!("user {name}: IP Connect mode {mode}"),
            ))
        }
        UserCmd::Enable { name, c } => {
            let x = ctx(&c).await?;
            x.admin.set_user_disabled(&name, false).await?;
            Ok(print(
                x.json,
                json!({ "user": name, "disabled": false }),
                || format!("user {name} enabled"),
            ))
        }
    }
}

async fn role(cmd: RoleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RoleCmd::Add {
            name,
            permission,
            c,
        } => {
            let x = ctx(&c).await?;
            let r = x.admin.add_role(&name, &permission).await?;
            Ok(print(x.json, json!(r), || format!("role {} added", r.name)))
        }
        RoleCmd::List { c } => {
            let x = ctx(&c).await?;
            let list = x.store.list_roles().await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("ROLE", &|r| r.name.clone()),
                        ("BUILT-IN", &|r| {
                            if r.builtin { "yes".into() } else { "no".into() }
                        }),
                        ("PERMISSIONS", &|r| {
                            r.permissions
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                    ],
                )
            }))
        }
        RoleCmd::Assign { user, role, c } => {
            let x = ctx(&c).await?;
            x.admin.assign_role(&user, &role).await?;
            Ok(print(x.json, json!({ "user": user, "role": role }), || {
                format!("{user} now has role {role}")
            }))
        }
    }
}

async fn service(cmd: ServiceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCmd::Add {
            name,
            customer,
            gatekeeper,
            target,
            kind,
            c,
        } => {
            let x = ctx(&c).await?;
            let kind: ServiceKind = kind.parse()?;
            let s = x
                .admin
                .add_service_on(&customer, gatekeeper.as_deref(), &name, &target, kind)
                .await?;
            Ok(print(x.json, json!(s), || {
                format!("service {} -> {} added for {customer}", s.name, s.target)
            }))
        }
        ServiceCmd::ForgetHostKey { service, c } => {
            let x = ctx(&c).await?;
            let s = x.admin.service_spec(&service).await?;
            let was = x.admin.forget_host_key(&s).await?;
            let what = if s.kind == ServiceKind::Rdp {
                "certificate key"
            } else {
                "host key"
            };
            Ok(print(
                x.json,
                json!({ "service": s.name, "forgotten": was }),
                || match &was {
                    Some(fp) => format!(
                        "forgot the {what} {fp} of {service}; the next session pins the target's key"
                    ),
                    None => format!("no {what} was pinned for {service}"),
                },
            ))
        }
        ServiceCmd::FilePolicy {
            service,
            set,
            no_upload,
            no_download,
            prefixes,
            max_size,
            blocked_extensions,
            c,
        } => {
            let x = ctx(&c).await?;
            let s = x.admin.service_spec(&service).await?;
            let policy = if set {
                let policy = cpam_core::proxy::sftp::FilePolicy {
                    upload: !no_upload,
                    download: !no_download,
                    prefixes,
                    max_size,
                    blocked_extensions,
                };
                x.admin.set_file_policy(&s, policy).await?
            } else {
                x.admin.file_policy(&s).await?
            };
            Ok(print(x.json, json!(policy), || {
                format!(
                    "file policy of {service}: upload {}, download {}, directories {}, max size {}, blocked extensions {}",
                    if policy.upload { "allowed" } else { "refused" },
                    if policy.download {
                        "allowed"
                    } else {
                        "refused"
                    },
                    if policy.prefixes.is_empty() {
                        "any".to_string()
                    } else {
                        policy.prefixes.join(" ")
                    },
                    policy
                        .max_size
                        .map_or("none".to_string(), |m| format!("{m} bytes")),
                    if policy.blocked_extensions.is_empty() {
                        "none".to_string()
                    } else {
                        policy.blocked_extensions.join(" ")
                    },
                )
            }))
        }
        ServiceCmd::List { customer, c } => {
            let x = ctx(&c).await?;
            let cid = match customer {
                Some(n) => Some(x.admin.customer(&n).await?.id),
                None => None,
            };
            let list = x.store.list_services(cid.as_ref()).await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("NAME", &|s| s.name.clone()),
                        ("KIND", &|s| s.kind.as_str().into()),
                        ("TARGET", &|s| s.target.to_string()),
                        ("ID", &|s| s.id.to_string()),
                    ],
                )
            }))
        }
    }
}

async fn grant(cmd: GrantCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantCmd::Add {
            user,
            customer,
            service,
            from,
            until,
            for_,
            days,
            hours,
            c,
        } => {
            let x = ctx(&c).await?;
            let start = match from {
                Some(f) => Timestamp::parse_rfc3339(&f)?,
                None => Timestamp::now(),
            };
            let end = match (until, for_) {
                (Some(u), _) => Some(Timestamp::parse_rfc3339(&u)?),
                (None, Some(d)) => Some(start.add(policy::parse_duration(&d)?)),
                (None, None) => None,
            };
            let schedule = match (days, hours) {
                (Some(d), Some(h)) => {
                    let (start_minute, end_minute) = policy::parse_hours(&h)?;
                    Some(Schedule {
                        days: policy::parse_days(&d)?,
                        start_minute,
                        end_minute,
                    })
                }
                _ => None,
            };
            let g = x
                .admin
                .add_grant(&user, &customer, &service, start, end, schedule)
                .await?;
            // A longer grant extends the user's live sessions of the service.
            recheck(&x.data).await;
            Ok(print(x.json, json!(g), || format!("{}", g.id)))
        }
        GrantCmd::List { user, c } => {
            let x = ctx(&c).await?;
            let uid = match user {
                Some(n) => Some(x.admin.user(&n).await?.id),
                None => None,
            };
            let list = x.store.list_grants(uid.as_ref()).await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("ID", &|g| g.id.to_string()),
                        ("USER", &|g| g.user_id.to_string()),
                        ("SERVICE", &|g| g.service_id.to_string()),
                        ("FROM", &|g| g.not_before.to_rfc3339()),
                        ("UNTIL", &|g| ts(g.not_after)),
                        ("REVOKED", &|g| ts(g.revoked_at)),
                    ],
                )
            }))
        }
        GrantCmd::Revoke { id, c } => {
            let x = ctx(&c).await?;
            x.admin.revoke_grant(&id).await?;
            recheck(&x.data).await;
            Ok(print(x.json, json!({ "revoked": id }), || {
                format!("grant {id} revoked")
            }))
        }
    }
}

async fn sessions(cmd: SessionsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SessionsCmd::List { live, limit, c } => {
            let x = ctx(&c).await?;
            let list = x
                .store
                .list_sessions(&SessionFilter {
                    live_only: live,
                    limit,
                    ..Default::default()
                })
                .await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("ID", &|s| s.id.to_string()),
                        ("USER", &|s| s.user_name.clone()),
                        ("SERVICE", &|s| s.service_name.clone()),
                        ("TARGET", &|s| s.target.to_string()),
                        ("STARTED", &|s| s.started_at.to_rfc3339()),
                        ("ENDED", &|s| ts(s.ended_at)),
                        ("UP", &|s| s.bytes_up.to_string()),
                        ("DOWN", &|s| s.bytes_down.to_string()),
                        ("END", &|s| {
                            s.end_reason
                                .map(|r| r.as_str().to_string())
                                .unwrap_or_else(|| "live".into())
                        }),
                    ],
                )
            }))
        }
        SessionsCmd::Terminate { id, reason, c } => {
            let x = ctx(&c).await?;
            let sid = SessionId(id.clone());
            let s = x
                .store
                .session(&sid)
                .await?
                .with_context(|| format!("no session `{id}`"))?;
            if s.ended_at.is_some() {
                bail!(
                    "session {id} already ended ({})",
                    s.end_reason.map(|r| r.as_str()).unwrap_or("unknown")
                );
            }
            let answer = control(
                &x.data.control_socket(),
                &ControlRequest::Terminate {
                    session: sid,
                    by: "admin-cli".into(),
                    reason,
                },
            )
            .await?;
            if answer["ok"] != json!(true) {
                bail!("session {id} is not live on this server");
            }
            Ok(print(x.json, json!({ "terminated": id }), || {
                format!("session {id} terminated")
            }))
        }
    }
}

async fn audit_cmd(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::List { category, limit, c } => {
            let x = ctx(&c).await?;
            let category = category.map(|c| c.parse()).transpose()?;
            let list = x
                .store
                .audit_records(&AuditFilter {
                    category,
                    limit,
                    ..Default::default()
                })
                .await?;
            Ok(print(x.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("SEQ", &|r| r.seq.to_string()),
                        ("AT", &|r| r.event.at.to_rfc3339()),
                        ("CATEGORY", &|r| r.event.category.as_str().into()),
                        ("ACTION", &|r| r.event.action.clone()),
                        ("ACTOR", &|r| r.event.actor.clone()),
                        ("DETAIL", &|r| r.event.detail.to_string()),
                    ],
                )
            }))
        }
        AuditCmd::Verify { c, s } => {
            let storage = s.storage()?;
            let x = ctx(&c).await?;
            let v = anchor(&x)?.verify().await?;
            // Every sealed recording's manifest, chain and file too.
            let r = x.data.verify_recordings_in(&storage).await?;
            let intact = v.is_intact() && r.failed.is_empty();
            let mut doc = json!(v);
            doc["recordings"] = json!(r);
            print(x.json, doc, || {
                let audit = match (&v.first_broken, v.checkpoint) {
                    (None, Some(seq)) => format!(
                        "audit chain intact: {} records, matching the signed checkpoint of record {seq}",
                        v.checked
                    ),
                    (None, None) => format!(
                        "audit chain intact: {} records (no signed checkpoint yet)",
                        v.checked
                    ),
                    (Some(b), _) => format!(
                        "audit chain BROKEN at record {} (found {}): {}",
                        b.expected_seq, b.found_seq, b.problem
                    ),
                };
                format!("{audit}\n{}", r.to_text())
            });
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCmd::Checkpoint { c } => {
            let x = ctx(&c).await?;
            let made = anchor(&x)?.checkpoint().await?;
            Ok(print(x.json, json!(made), || match &made {
                Some(cp) => format!("signed the {}: {}", cp.label(), cp.hash),
                None => "no records since the last checkpoint".to_string(),
            }))
        }
    }
}

/// The data dir's audit anchor: its store, host key and checkpoint file.
fn anchor(x: &Ctx) -> anyhow::Result<audit::Anchor> {
    Ok(audit::Anchor::new(
        x.store.clone(),
        cpam_core::record::RecordingKey::from_host_key(&x.data.host_key()?)?,
        audit::CheckpointLog::in_dir(&x.data.path),
    ))
}
