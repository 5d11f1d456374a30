//! Conformance of [`VaultStore`](crate::store::VaultStore): data key
//! versions, credentials and their compare-and-swap, checkouts, checkout
//! limits and master password hashes.

use super::{T0, expect_error, new_customer, ok, unique};
use crate::error::ErrorKind;
use crate::model::{
    Checkout, CheckoutEnd, CheckoutId, CredentialKind, ServiceId, ServiceKind, StoredCredential,
    Target, Timestamp, UserId, VaultKeyRecord,
};
use crate::store::{CheckoutFilter, Store};

fn key(version: i64) -> VaultKeyRecord {
    VaultKeyRecord {
        version,
        kek: "key_file".into(),
        salt: None,
        wrapped: Some(format!("{version:02}ab")),
        created_at: T0,
        retired_at: None,
    }
}

/// Data keys and credentials: versions are unique, a version in use cannot
/// retire, a retired one loses its wrapped key, a credential's ciphertext is
/// swapped only if unchanged, deleting a service deletes its credential.
pub async fn vault_keys_and_credentials(store: &dyn Store) {
    let existing = ok(store.vault_keys().await, "vault_keys");
    let base = existing.iter().map(|k| k.version).max().unwrap_or(0);
    let (v1, v2) = (base + 1, base + 2);
    ok(store.insert_vault_key(&key(v1)).await, "insert_vault_key");
    expect_error(
        store.insert_vault_key(&key(v1)).await,
        ErrorKind::Conflict,
        "a data key version inserted twice",
    );
    ok(
        store.insert_vault_key(&key(v2)).await,
        "insert_vault_key v2",
    );
    let keys = ok(store.vault_keys().await, "vault_keys");
    let got: Vec<_> = keys.iter().filter(|k| k.version >= v1).cloned().collect();
    assert_eq!(
        got,
        vec![key(v1), key(v2)],
        "data keys round-trip, oldest first"
    );

    let c = new_customer(store).await;
    let target = Target {
        host: "10.1.1.1".into(),
        port: 22,
    };
    let svc = ok(
        store
            .create_service(&c.id, &unique("ssh"), ServiceKind::Ssh, &target, T0, None)
            .await,
        "create_service",
    );
    let cred = StoredCredential {
        service_id: svc.id.clone(),
        username: "root".into(),
        kind: CredentialKind::Password,
        key_version: v1,
        ciphertext: "aa01".into(),
        updated_at: T0,
        updated_by: "admin".into(),
    };
    ok(store.put_credential(&cred).await, "put_credential");
    assert_eq!(
        ok(store.credential(&svc.id).await, "credential"),
        Some(cred.clone())
    );
    expect_error(
        store
            .put_credential(&StoredCredential {
                service_id: ServiceId("svc_missing".into()),
                ..cred.clone()
            })
            .await,
        ErrorKind::NotFound,
        "a credential of an unknown service",
    );
    expect_error(
        store
            .put_credential(&StoredCredential {
                key_version: base + 99,
                ..cred.clone()
            })
            .await,
        ErrorKind::NotFound,
        "a credential under an unknown data key version",
    );
    expect_error(
        store.retire_vault_key(v1, T0).await,
        ErrorKind::Conflict,
        "retiring a data key a credential uses",
    );
    expect_error(
        store.retire_vault_key(base + 99, T0).await,
        ErrorKind::NotFound,
        "retiring an unknown data key",
    );
    // Compare-and-swap: a stale old ciphertext changes nothing.
    assert!(
        !ok(
            store
                .reencrypt_credential(&svc.id, v1, "stale", v2, "bb02")
                .await,
            "reencrypt stale"
        ),
        "a stale re-encryption must not apply"
    );
    assert!(ok(
        store
            .reencrypt_credential(&svc.id, v1, "aa01", v2, "bb02")
            .await,
        "reencrypt"
    ));
    let now = ok(store.credential(&svc.id).await, "credential").expect("still there");
    assert_eq!((now.key_version, now.ciphertext.as_str()), (v2, "bb02"));
    assert_eq!(now.username, "root");
    ok(
        store.retire_vault_key(v1, Timestamp(T0.0 + 5)).await,
        "retire v1",
    );
    let retired = ok(store.vault_keys().await, "vault_keys")
        .into_iter()
        .find(|k| k.version == v1)
        .expect("a retired key stays listed");
    assert_eq!(retired.wrapped, None, "retiring erases the wrapped key");
    assert_eq!(retired.retired_at, Some(Timestamp(T0.0 + 5)));
    assert!(
        ok(store.list_credentials().await, "list_credentials")
            .iter()
            .any(|c| c.service_id == svc.id)
    );
    ok(store.delete_service(&svc.id).await, "delete_service");
    assert_eq!(
        ok(store.credential(&svc.id).await, "credential after delete"),
        None,
        "deleting a service deletes its credential"
    );
    assert!(!ok(
        store.delete_credential(&svc.id).await,
        "delete_credential"
    ));
}

/// Checkouts and limits: listed newest first and filtered, ended once, an
/// unknown one `NotFound`; limits set and cleared.
pub async fn checkouts(store: &dyn Store) {
    let c = new_customer(store).await;
    let target = Target {
        host: "10.1.1.2".into(),
        port: 22,
    };
    let svc = ok(
        store
            .create_service(&c.id, &unique("ssh"), ServiceKind::Ssh, &target, T0, None)
            .await,
        "create_service",
    );
    let user = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    assert_eq!(
        ok(store.checkout_limit(&svc.id).await, "checkout_limit"),
        None
    );
    ok(
        store.set_checkout_limit(&svc.id, Some(600)).await,
        "set_checkout_limit",
    );
    ok(
        store.set_checkout_limit(&svc.id, Some(900)).await,
        "set_checkout_limit again",
    );
    assert_eq!(
        ok(store.checkout_limit(&svc.id).await, "checkout_limit"),
        Some(900)
    );
    ok(
        store.set_checkout_limit(&svc.id, None).await,
        "clear checkout_limit",
    );
    assert_eq!(
        ok(store.checkout_limit(&svc.id).await, "checkout_limit"),
        None
    );
    expect_error(
        store
            .set_checkout_limit(&ServiceId("svc_missing".into()), Some(5))
            .await,
        ErrorKind::NotFound,
        "a limit for an unknown service",
    );

    let make = |start: i64, expires: i64| Checkout {
        id: CheckoutId::generate(),
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        customer_id: c.id.clone(),
        service_id: svc.id.clone(),
        service_name: svc.name.clone(),
        started_at: Timestamp(T0.0 + start),
        expires_at: Timestamp(T0.0 + expires),
        ended_at: None,
        end_reason: None,
        ended_by: None,
    };
    let old = make(0, 100);
    let new = make(10, 1000);
    ok(store.insert_checkout(&old).await, "insert_checkout");
    ok(store.insert_checkout(&new).await, "insert_checkout");
    expect_error(
        store.insert_checkout(&new).await,
        ErrorKind::Conflict,
        "a checkout inserted twice",
    );
    assert_eq!(
        ok(store.checkout(&old.id).await, "checkout"),
        Some(old.clone())
    );
    let mine = CheckoutFilter {
        user_id: Some(user.id.clone()),
        ..CheckoutFilter::default()
    };
    let all = ok(store.list_checkouts(&mine).await, "list_checkouts");
    assert_eq!(all, vec![new.clone(), old.clone()], "newest first");
    let active = CheckoutFilter {
        active_at: Some(Timestamp(T0.0 + 200)),
        service_id: Some(svc.id.clone()),
        ..mine.clone()
    };
    assert_eq!(
        ok(store.list_checkouts(&active).await, "active checkouts"),
        vec![new.clone()],
        "an expired checkout is not active"
    );
    let one = CheckoutFilter {
        limit: Some(1),
        ..mine.clone()
    };
    assert_eq!(ok(store.list_checkouts(&one).await, "limit").len(), 1);
    let stranger = CheckoutFilter {
        user_id: Some(UserId("usr_nobody".into())),
        ..CheckoutFilter::default()
    };
    assert!(ok(store.list_checkouts(&stranger).await, "others").is_empty());

    let at = Timestamp(T0.0 + 50);
    assert!(ok(
        store
            .end_checkout(&new.id, at, CheckoutEnd::Revoked, "admin")
            .await,
        "end_checkout"
    ));
    assert!(
        !ok(
            store
                .end_checkout(&new.id, Timestamp(T0.0 + 60), CheckoutEnd::CheckedIn, "u")
                .await,
            "end_checkout twice"
        ),
        "the first end wins"
    );
    let ended = ok(store.checkout(&new.id).await, "checkout").expect("ended checkout");
    assert_eq!(ended.ended_at, Some(at));
    assert_eq!(ended.end_reason, Some(CheckoutEnd::Revoked));
    assert_eq!(ended.ended_by.as_deref(), Some("admin"));
    assert!(ok(store.list_checkouts(&active).await, "active").is_empty());
    expect_error(
        store
            .end_checkout(
                &CheckoutId("chk_missing".into()),
                at,
                CheckoutEnd::Revoked,
                "a",
            )
            .await,
        ErrorKind::NotFound,
        "ending an unknown checkout",
    );
}

/// Master password hashes: set, replaced, cleared; unknown user `NotFound`.
pub async fn master_passwords(store: &dyn Store) {
    let user = ok(
        store.create_user(&unique("u"), Some("$login"), T0).await,
        "create_user",
    );
    assert_eq!(ok(store.master_password_hash(&user.id).await, "hash"), None);
    ok(
        store
            .set_master_password_hash(&user.id, Some("$a"), T0)
            .await,
        "set",
    );
    ok(
        store
            .set_master_password_hash(&user.id, Some("$b"), T0)
            .await,
        "replace",
    );
    assert_eq!(
        ok(store.master_password_hash(&user.id).await, "hash"),
        Some("$b".to_string())
    );
    let login = ok(store.user(&user.id).await, "user").expect("user");
    assert_eq!(
        login.password_hash.as_deref(),
        Some("$login"),
        "the login password is apart"
    );
    ok(
        store.set_master_password_hash(&user.id, None, T0).await,
        "clear",
    );
    assert_eq!(ok(store.master_password_hash(&user.id).await, "hash"), None);
    expect_error(
        store
            .set_master_password_hash(&UserId("usr_missing".into()), Some("$x"), T0)
            .await,
        ErrorKind::NotFound,
        "a master password for an unknown user",
    );
}
