//! The vault on an in-memory store: encryption at rest, tampering, wrong
//! keys, rotation, associated data, master passwords.

use std::sync::Arc;

use super::*;
use crate::admin::Admin;
use crate::audit::{AuditSink, StoreAuditSink};
use crate::model::ServiceKind;
use crate::store::{AuditFilter, SqlStore};
use crate::throttle::{self, Throttle};

const CANARY: &str = "canary-Pa55word-7f3e";
/// A fresh unencrypted OpenSSH private key.
fn private_key() -> String {
    let key = crate::tunnel::keys::generate().unwrap();
    crate::tunnel::keys::private_openssh(&key)
        .unwrap()
        .expose()
        .clone()
}

pub(super) struct World {
    pub(super) store: Arc<dyn Store>,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) admin: Admin,
    pub(super) db: Service,
    pub(super) web: Service,
    pub(super) dir: tempfile::TempDir,
}

impl World {
    pub(super) fn key_path(&self) -> std::path::PathBuf {
        self.dir.path().join("vault.key")
    }

    pub(super) async fn vault(&self) -> Arc<Vault> {
        let secret = UnsealSecret::key_file(&self.key_path()).expect("key file");
        Vault::unseal(self.store.clone(), secret)
            .await
            .expect("unseals")
    }
}

/// Two ssh services of one customer, a user, and a fresh key file.
pub(super) async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let audit: Arc<dyn AuditSink> = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), audit.clone(), "test");
    admin.ensure_builtin_roles().await.unwrap();
    admin.add_customer("acme").await.unwrap();
    let db = admin
        .add_service("acme", "db", "10.0.0.5:22", ServiceKind::Ssh)
        .await
        .unwrap();
    let web = admin
        .add_service("acme", "web", "10.0.0.6:22", ServiceKind::Ssh)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("vault.key")).unwrap();
    World {
        store,
        audit,
        admin,
        db,
        web,
        dir,
    }
}

fn password(p: &str) -> CredentialSecret {
    CredentialSecret::Password(Secret::new(p.to_string()))
}

async fn secret_of(vault: &Vault, service: &Service) -> Result<String> {
    let c = vault.credential(service).await?.expect("a credential");
    Ok(c.secret.expose().clone())
}

#[tokio::test]
async fn credentials_round_trip_and_are_stored_only_encrypted() {
    let w = world().await;
    let vault = w.vault().await;
    let info = vault
        .set_credential(&w.db, "root", password(CANARY), "test")
        .await
        .unwrap();
    assert_eq!(
        (info.username.as_str(), info.kind),
        ("root", CredentialKind::Password)
    );
    let pem = private_key();
    vault
        .set_credential(
            &w.web,
            "deploy",
            CredentialSecret::PrivateKey(Secret::new(pem.clone())),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(secret_of(&vault, &w.db).await.unwrap(), CANARY);
    let key = vault.credential(&w.web).await.unwrap().unwrap();
    assert_eq!(key.kind, CredentialKind::PrivateKey);
    assert_eq!(key.secret.expose(), &pem);
    assert!(!format!("{key:?} {info:?}").contains(CANARY));

    let row = w.store.credential(&w.db.id).await.unwrap().unwrap();
    assert!(!row.ciphertext.contains(CANARY));
    assert!(!row.ciphertext.contains(&hex::encode(CANARY)));
    let info = vault.credential_info(&w.db).await.unwrap().unwrap();
    assert_eq!(info.username, "root");
    assert!(!serde_json::to_string(&info).unwrap().contains(CANARY));

    // Replacing keeps one row; removing leaves none.
    vault
        .set_credential(&w.db, "admin", password("second-secret"), "test")
        .await
        .unwrap();
    assert_eq!(secret_of(&vault, &w.db).await.unwrap(), "second-secret");
    vault.remove_credential(&w.db).await.unwrap();
    assert!(vault.credential(&w.db).await.unwrap().is_none());
    let e = vault.remove_credential(&w.db).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn bad_credentials_are_refused_without_quoting_them() {
    let w = world().await;
    let vault = w.vault().await;
    let refused = |r: Result<CredentialInfo>| {
        let e = r.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(!e.message().contains("not-a-key-canary"), "{e}");
        e
    };
    refused(vault.set_credential(&w.db, "root", password(""), "t").await);
    refused(vault.set_credential(&w.db, "", password("x"), "t").await);
    refused(
        vault
            .set_credential(&w.db, "a\nb", password("x"), "t")
            .await,
    );
    let e = refused(
        vault
            .set_credential(
                &w.db,
                "root",
                CredentialSecret::PrivateKey(Secret::new("not-a-key-canary".into())),
                "t",
            )
            .await,
    );
    assert!(e.message().contains("OpenSSH private key"), "{e}");
    assert!(w.store.credential(&w.db.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_tampered_ciphertext_fails_to_decrypt() {
    let w = world().await;
    let vault = w.vault().await;
    vault
        .set_credential(&w.db, "root", password(CANARY), "t")
        .await
        .unwrap();
    let mut row = w.store.credential(&w.db.id).await.unwrap().unwrap();
    // Flip one hex digit inside the ciphertext (past the nonce).
    let i = row.ciphertext.len() - 3;
    let flipped = if &row.ciphertext[i..=i] == "0" {
        "1"
    } else {
        "0"
    };
    row.ciphertext.replace_range(i..=i, flipped);
    w.store.put_credential(&row).await.unwrap();
    let e = vault.credential(&w.db).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage);
    assert!(e.message().contains("`db`"), "{e}");

    // A changed username (associated data) fails the same way.
    vault
        .set_credential(&w.db, "root", password(CANARY), "t")
        .await
        .unwrap();
    let mut row = w.store.credential(&w.db.id).await.unwrap().unwrap();
    row.username = "admin".into();
    w.store.put_credential(&row).await.unwrap();
    assert_eq!(
        vault.credential(&w.db).await.unwrap_err().kind(),
        ErrorKind::Storage
    );
}

#[tokio::test]
async fn two_rows_ciphertexts_cannot_be_swapped() {
    let w = world().await;
    let vault = w.vault().await;
    vault
        .set_credential(&w.db, "root", password("db-secret"), "t")
        .await
        .unwrap();
    vault
        .set_credential(&w.web, "root", password("web-secret"), "t")
        .await
        .unwrap();
    let mut a = w.store.credential(&w.db.id).await.unwrap().unwrap();
    let mut b = w.store.credential(&w.web.id).await.unwrap().unwrap();
    std::mem::swap(&mut a.ciphertext, &mut b.ciphertext);
    w.store.put_credential(&a).await.unwrap();
    w.store.put_credential(&b).await.unwrap();
    for s in [&w.db, &w.web] {
        let e = vault.credential(s).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
    }
}

#[tokio::test]
async fn a_wrong_key_file_does_not_unseal_and_changes_nothing() {
    let w = world().await;
    let vault = w.vault().await;
    vault
        .set_credential(&w.db, "root", password(CANARY), "t")
        .await
        .unwrap();
    let before = w.store.vault_keys().await.unwrap();
    let other = w.dir.path().join("other.key");
    create_key_file(&other).unwrap();
    let e = Vault::unseal(w.store.clone(), UnsealSecret::key_file(&other).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains(&other.display().to_string()), "{e}");
    assert!(e.message().contains("does not unseal"), "{e}");
    assert_eq!(w.store.vault_keys().await.unwrap(), before);

    // A passphrase does not open a vault sealed with a key file either.
    let e = Vault::unseal(
        w.store.clone(),
        UnsealSecret::passphrase(Secret::new("long passphrase".into())).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains(PASSPHRASE_ENV), "{e}");

    // Malformed and missing key files are named.
    let bad = w.dir.path().join("bad.key");
    std::fs::write(&bad, "not hex").unwrap();
    let e = UnsealSecret::key_file(&bad).unwrap_err();
    assert!(e.message().contains("bad.key"), "{e}");
    let e = UnsealSecret::key_file(&w.dir.path().join("gone.key")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("gone.key"), "{e}");
    // A key file is never overwritten.
    let before = std::fs::read(w.key_path()).unwrap();
    assert_eq!(
        create_key_file(&w.key_path()).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(std::fs::read(w.key_path()).unwrap(), before);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(w.key_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_passphrase_unseals_only_with_the_same_passphrase() {
    let w = world().await;
    let phrase = |p: &str| UnsealSecret::passphrase(Secret::new(p.into())).unwrap();
    let vault = Vault::unseal(w.store.clone(), phrase("correct horse battery"))
        .await
        .unwrap();
    assert_eq!(vault.unsealed_by(), "passphrase");
    vault
        .set_credential(&w.db, "root", password(CANARY), "t")
        .await
        .unwrap();
    let rows = w.store.vault_keys().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].salt.as_ref().is_some_and(|s| s.len() == 32));
    let e = Vault::unseal(w.store.clone(), phrase("wrong horse battery"))
        .await
        .unwrap_err();
    assert!(e.message().contains(PASSPHRASE_ENV), "{e}");
    let again = Vault::unseal(w.store.clone(), phrase("correct horse battery"))
        .await
        .unwrap();
    assert_eq!(secret_of(&again, &w.db).await.unwrap(), CANARY);
    assert!(UnsealSecret::passphrase(Secret::new(String::new())).is_err());
}

#[tokio::test]
async fn rotation_keeps_credentials_readable_and_retires_the_old_key() {
    let w = world().await;
    let vault = w.vault().await;
    // Another node holding the same vault, unsealed before the rotation.
    let other = w.vault().await;
    vault
        .set_credential(&w.db, "root", password("db-secret"), "t")
        .await
        .unwrap();
    vault
        .set_credential(&w.web, "root", password("web-secret"), "t")
        .await
        .unwrap();
    assert_eq!(vault.current_version(), 1);
    let r = vault.rotate_data_key().await.unwrap();
    assert_eq!(
        r,
        Rotation {
            version: 2,
            reencrypted: 2,
            retired: vec![1]
        }
    );
    for c in w.store.list_credentials().await.unwrap() {
        assert_eq!(c.key_version, 2);
    }
    let keys = w.store.vault_keys().await.unwrap();
    assert!(
        keys[0].retired_at.is_some() && keys[0].wrapped.is_none(),
        "{keys:?}"
    );
    assert!(keys[1].retired_at.is_none() && keys[1].wrapped.is_some());
    assert_eq!(secret_of(&vault, &w.db).await.unwrap(), "db-secret");
    // The other node loads the new version on first use and writes with it.
    assert_eq!(secret_of(&other, &w.web).await.unwrap(), "web-secret");
    other
        .set_credential(&w.db, "root", password("db-secret-2"), "t")
        .await
        .unwrap();
    assert_eq!(
        w.store
            .credential(&w.db.id)
            .await
            .unwrap()
            .unwrap()
            .key_version,
        2
    );
    assert_eq!(secret_of(&vault, &w.db).await.unwrap(), "db-secret-2");
    // Rotating again from that node works the same; a new unseal still works.
    assert_eq!(other.rotate_data_key().await.unwrap().version, 3);
    let fresh = w.vault().await;
    assert_eq!(secret_of(&fresh, &w.web).await.unwrap(), "web-secret");
    // A retired version cannot be retired while in use, nor come back.
    let e = w
        .store
        .retire_vault_key(3, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn master_passwords_are_set_with_proof_verified_throttled_and_reset() {
    let w = world().await;
    let throttle = Throttle::default();
    let user = w
        .admin
        .add_user("vera", Some(Secret::new("login-pass".into())), &[], &[])
        .await
        .unwrap();
    let s = |p: &str| Secret::new(p.to_string());
    let verify = |p: &'static str| {
        let (store, audit, throttle, user) = (&w.store, &w.audit, &throttle, &user);
        async move { verify_master_password(store, audit, throttle, user, &s(p)).await }
    };
    // None set yet: refused, saying how to set one.
    let e = verify("anything").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("master-password set"), "{e}");

    let set = |current: &'static str, new: &'static str| {
        let (store, audit, throttle, user) = (&w.store, &w.audit, &throttle, &user);
        async move { set_master_password(store, audit, throttle, user, &s(current), s(new)).await }
    };
    assert_eq!(
        set("login-pass", "short").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        set("wrong", "master-pass-1").await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    set("login-pass", "master-pass-1").await.unwrap();
    verify("master-pass-1").await.unwrap();
    // The login password is not the master password.
    assert_eq!(
        verify("login-pass").await.unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
    // The current master password proves the user too.
    set("master-pass-1", "master-pass-2").await.unwrap();
    verify("master-pass-2").await.unwrap();
    let hash = w
        .store
        .master_password_hash(&user.id)
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("master-pass-2"));

    // Wrong ones lock out, even for the right one afterwards.
    for _ in 0..throttle::USER_FAILURES {
        assert_eq!(
            verify("nope-nope").await.unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
    }
    let e = verify("master-pass-2").await.unwrap_err();
    assert!(e.message().contains("too many"), "{e}");
    let records = w
        .store
        .audit_records(&AuditFilter::default())
        .await
        .unwrap();
    let count = |a: &str| records.iter().filter(|r| r.event.action == a).count();
    assert_eq!(
        count("master_password.failure"),
        1 + 1 + throttle::USER_FAILURES
    );
    assert_eq!(count("master_password.lockout"), 1);
    assert_eq!(count("master_password.set"), 2);
    assert_eq!(count("master_password.set_refused"), 1);
    assert!(
        records
            .iter()
            .all(|r| !r.event.detail.to_string().contains("master-pass"))
    );

    // An administrator clears it; the user sets a new one with the login password.
    w.admin.reset_master_password(&user).await.unwrap();
    assert!(
        w.store
            .master_password_hash(&user.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        w.admin
            .reset_master_password(&user)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let records = w
        .store
        .audit_records(&AuditFilter::default())
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.event.action == "admin.master_password.reset")
    );
}
