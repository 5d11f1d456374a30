//! `vault` and `checkouts` subcommands: parse, call `cpam_core`, print.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::Context as _;
use cpam_core::Secret;
use cpam_core::model::Timestamp;
use cpam_core::policy;
use cpam_core::store::CheckoutFilter;
use cpam_core::vault::{CredentialSecret, Vault};
use serde_json::json;

use crate::admin::{CheckoutsCmd, Ctx, VaultCmd, ctx, print, recheck, table, ts};

/// The data dir's vault, unsealed with its key file (or the passphrase variable).
async fn unseal(x: &Ctx) -> anyhow::Result<std::sync::Arc<Vault>> {
    let secret = x.data.unseal_secret(&x.store).await?;
    Ok(Vault::unseal(x.store.clone(), secret).await?)
}

fn read_secret_line() -> anyhow::Result<Secret<String>> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    Ok(Secret::new(line))
}

pub async fn vault(cmd: VaultCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        VaultCmd::Set {
            service,
            username,
            password_stdin,
            key_file,
            max_checkout,
            c,
        } => {
            let x = ctx(&c).await?;
            let s = x.admin.service_spec(&service).await?;
            let limit = max_checkout
                .as_deref()
                .map(policy::parse_duration)
                .transpose()?;
            let secret = match (password_stdin, key_file) {
                (true, _) => CredentialSecret::Password(read_secret_line()?),
                (false, Some(path)) => CredentialSecret::PrivateKey(Secret::new(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read key file {}", path.display()))?,
                )),
                (false, None) => anyhow::bail!("give --password-stdin or --key-file FILE"),
            };
            let vault = unseal(&x).await?;
            let info = x
                .admin
                .set_credential(&vault, &s, &username, secret)
                .await?;
            if limit.is_some() {
                x.admin.set_checkout_limit(&s, limit).await?;
            }
            Ok(print(x.json, json!(info), || {
                format!(
                    "credential of {service} stored ({} for {}, data key v{})",
                    info.kind, info.username, info.key_version
                )
            }))
        }
        VaultCmd::Remove { service, c } => {
            let x = ctx(&c).await?;
            let s = x.admin.service_spec(&service).await?;
            let vault = unseal(&x).await?;
            x.admin.remove_credential(&vault, &s).await?;
            Ok(print(
                x.json,
                json!({ "service": service, "removed": true }),
                || format!("credential of {service} removed"),
            ))
        }
        VaultCmd::Info { service, c } => {
            let x = ctx(&c).await?;
            let vault = unseal(&x).await?;
            let services = match &service {
                Some(spec) => vec![x.admin.service_spec(spec).await?],
                None => x.store.list_services(None).await?,
            };
            let mut rows = Vec::new();
            for s in &services {
                if let Some(info) = vault.credential_info(s).await? {
                    let limit = cpam_core::vault::checkout_limit(&x.store, &s.id).await?;
                    rows.push((s.name.clone(), info, limit));
                }
            }
            if let (Some(spec), true) = (&service, rows.is_empty()) {
                anyhow::bail!("service {spec} has no stored credential");
            }
            let value = json!({
                "unsealed_by": vault.unsealed_by(),
                "data_key_version": vault.current_version(),
                "credentials": rows.iter().map(|(name, info, limit)| {
                    let mut v = json!(info);
                    v["service"] = json!(name);
                    v["max_checkout_secs"] = json!(limit.as_secs());
                    v
                }).collect::<Vec<_>>(),
            });
            Ok(print(x.json, value, || {
                let head = format!(
                    "vault unsealed by {}, data key v{}",
                    vault.unsealed_by(),
                    vault.current_version()
                );
                let body = table(
                    &rows,
                    &[
                        ("SERVICE", &|r| r.0.clone()),
                        ("USERNAME", &|r| r.1.username.clone()),
                        ("KIND", &|r| r.1.kind.to_string()),
                        ("KEY", &|r| format!("v{}", r.1.key_version)),
                        ("MAX CHECKOUT", &|r| cpam_core::vault::format_duration(r.2)),
                        ("UPDATED", &|r| r.1.updated_at.to_rfc3339()),
                        ("BY", &|r| r.1.updated_by.clone()),
                    ],
                );
                format!("{head}\n{body}")
            }))
        }
        VaultCmd::Rotate { c } => {
            let x = ctx(&c).await?;
            let vault = unseal(&x).await?;
            let r = x.admin.rotate_vault(&vault).await?;
            Ok(print(x.json, json!(r), || {
                format!(
                    "data key v{}: {} credentials re-encrypted, retired {:?}",
                    r.version, r.reencrypted, r.retired
                )
            }))
        }
    }
}

pub async fn checkouts(cmd: CheckoutsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CheckoutsCmd::List {
            user,
            active,
            limit,
            c,
        } => {
            let x = ctx(&c).await?;
            let user_id = match &user {
                Some(name) => Some(x.admin.user(name).await?.id),
                None => None,
            };
            let now = Timestamp::now();
            let filter = CheckoutFilter {
                user_id,
                active_at: active.then_some(now),
                limit,
                ..CheckoutFilter::default()
            };
            let list = x.admin.list_checkouts(&filter).await?;
            let value: Vec<_> = list
                .iter()
                .map(|k| {
                    let mut v = json!(k);
                    v["status"] = json!(k.status(now));
                    v
                })
                .collect();
            Ok(print(x.json, json!(value), || {
                table(
                    &list,
                    &[
                        ("ID", &|k| k.id.to_string()),
                        ("USER", &|k| k.user_name.clone()),
                        ("SERVICE", &|k| k.service_name.clone()),
                        ("STATUS", &|k| k.status(now).to_string()),
                        ("STARTED", &|k| k.started_at.to_rfc3339()),
                        ("EXPIRES", &|k| k.expires_at.to_rfc3339()),
                        ("ENDED", &|k| ts(k.ended_at)),
                    ],
                )
            }))
        }
        CheckoutsCmd::Revoke { id, reason, c } => {
            let x = ctx(&c).await?;
            let k = x.admin.revoke_checkout(&id, reason.as_deref()).await?;
            recheck(&x.data).await;
            Ok(print(x.json, json!(k), || {
                format!(
                    "checkout {id} of {} by {} revoked",
                    k.service_name, k.user_name
                )
            }))
        }
    }
}
