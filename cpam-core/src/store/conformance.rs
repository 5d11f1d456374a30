//! A conformance suite for [`Store`] implementations: a test kit.
//!
//! Run [`run_all`] against a fresh, migrated store; each check panics with a
//! message naming the broken promise. The checks create their own objects
//! with unique names, but some (orphan sessions, the audit chain) look at the
//! whole store, so run them one after another, not in parallel on one store.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::audit;
use crate::error::{ErrorKind, Result};
use crate::model::{
    AuditCategory, AuditEvent, CodeRefusal, Customer, CustomerId, EndReason, GatekeeperId, GrantId,
    KeyId, Permission, Role, Schedule, ServiceId, ServiceKind, Session, SessionId, Target,
    Timestamp, UserId, UserKey, random_token,
};
use crate::store::{AuditFilter, NewGrant, SessionFilter, Store};

const T0: Timestamp = Timestamp(1_700_000_000_000);

/// Runs every check, in order.
pub async fn run_all(store: &dyn Store) {
    customers(store).await;
    gatekeepers(store).await;
    registration_codes(store).await;
    concurrent_redemption(store).await;
    users_and_keys(store).await;
    roles_and_permissions(store).await;
    services(store).await;
    grants(store).await;
    sessions(store).await;
    audit_log(store).await;
    concurrent_audit_appends(&[store], 8, 25).await;
}

/// A name no other check uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", random_token(5))
}

#[track_caller]
fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("store conformance: {what} failed: {e} (kind {})", e.kind()),
    }
}

#[track_caller]
fn expect_error<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, needle: &str, what: &str) {
    match r {
        Err(e) if e.kind() == kind && e.message().contains(needle) => {}
        Err(e) => panic!(
            "store conformance: {what}: expected a `{kind}` error mentioning `{needle}`, got `{}` error: {e}",
            e.kind()
        ),
        Ok(v) => panic!("store conformance: {what}: expected a `{kind}` error, got Ok({v:?})"),
    }
}

/// Polls all `futures` concurrently on the current task.
pub async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

async fn new_customer(store: &dyn Store) -> Customer {
    ok(
        store.create_customer(&unique("cus"), T0).await,
        "create_customer",
    )
}

/// Customers: create, look up, list, unique names.
pub async fn customers(store: &dyn Store) {
    let name = unique("acme");
    let c = ok(store.create_customer(&name, T0).await, "create_customer");
    assert_eq!(
        (c.name.as_str(), c.created_at),
        (name.as_str(), T0),
        "store conformance: created customer"
    );
    expect_error(
        store.create_customer(&name, T0).await,
        ErrorKind::InvalidArgument,
        &format!("customer `{name}` already exists"),
        "duplicate customer name",
    );
    let by_name = ok(store.customer_by_name(&name).await, "customer_by_name");
    assert_eq!(
        by_name.as_ref(),
        Some(&c),
        "store conformance: customer_by_name"
    );
    let by_id = ok(store.customer(&c.id).await, "customer");
    assert_eq!(
        by_id.as_ref(),
        Some(&c),
        "store conformance: customer by id"
    );
    let upper = name.to_uppercase();
    assert_eq!(
        ok(store.customer_by_name(&upper).await, "customer_by_name"),
        None,
        "store conformance: names are case-sensitive"
    );
    assert_eq!(
        ok(store.customer(&CustomerId::generate()).await, "customer"),
        None,
        "store conformance: unknown customer"
    );
    let all = ok(store.list_customers().await, "list_customers");
    assert!(
        all.contains(&c),
        "store conformance: list_customers misses {name}"
    );
}

/// Gatekeepers: create, look up, list by customer, global unique names, live state.
pub async fn gatekeepers(store: &dyn Store) {
    let c1 = new_customer(store).await;
    let c2 = new_customer(store).await;
    let name = unique("gk");
    let g = ok(
        store.create_gatekeeper(&c1.id, &name, T0).await,
        "create_gatekeeper",
    );
    assert!(
        !g.is_registered() && !g.online && !g.customer_disabled && g.last_contact.is_none(),
        "store conformance: new gatekeeper {g:?}"
    );
    expect_error(
        store.create_gatekeeper(&c2.id, &name, T0).await,
        ErrorKind::InvalidArgument,
        &format!("gatekeeper `{name}` already exists"),
        "duplicate gatekeeper name under another customer",
    );
    expect_error(
        store
            .create_gatekeeper(&CustomerId::generate(), &unique("gk"), T0)
            .await,
        ErrorKind::NotFound,
        "customer",
        "gatekeeper of an unknown customer",
    );
    let other = ok(
        store.create_gatekeeper(&c2.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let of_c1 = ok(
        store.list_gatekeepers(Some(&c1.id)).await,
        "list_gatekeepers",
    );
    assert_eq!(
        of_c1,
        vec![g.clone()],
        "store conformance: list_gatekeepers(customer)"
    );
    let all = ok(store.list_gatekeepers(None).await, "list_gatekeepers");
    assert!(
        all.contains(&g) && all.contains(&other),
        "store conformance: list_gatekeepers(None)"
    );
    assert_eq!(
        ok(store.gatekeeper(&g.id).await, "gatekeeper"),
        Some(g.clone()),
        "store conformance: gatekeeper by id"
    );
    assert_eq!(
        ok(store.gatekeeper_by_name(&name).await, "gatekeeper_by_name"),
        Some(g.clone()),
        "store conformance: gatekeeper_by_name"
    );
    assert_eq!(
        ok(
            store.gatekeeper(&GatekeeperId::generate()).await,
            "gatekeeper"
        ),
        None,
        "store conformance: unknown gatekeeper"
    );

    let at = Timestamp(T0.0 + 5_000);
    ok(
        store.set_gatekeeper_state(&g.id, true, true, at).await,
        "set_gatekeeper_state",
    );
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert!(
        now.online && now.customer_disabled && now.last_contact == Some(at),
        "store conformance: state not stored: {now:?}"
    );
    ok(
        store
            .set_gatekeeper_state(&g.id, false, false, Timestamp(at.0 + 1))
            .await,
        "set_gatekeeper_state",
    );
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert!(
        !now.online && !now.customer_disabled && now.last_contact == Some(Timestamp(at.0 + 1)),
        "store conformance: state not stored: {now:?}"
    );
    expect_error(
        store
            .set_gatekeeper_state(&GatekeeperId::generate(), true, false, at)
            .await,
        ErrorKind::NotFound,
        "gatekeeper",
        "state of an unknown gatekeeper",
    );
}

fn code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// Registration codes: unknown, expired, replaced, redeemed once; a refused code changes nothing.
pub async fn registration_codes(store: &dyn Store) {
    let c = new_customer(store).await;
    let g = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let key = format!("ssh-ed25519 AAAA{} gk", random_token(20));
    let fp = format!("SHA256:{}", random_token(20));
    let now = Timestamp(T0.0 + 60_000);

    let r = ok(
        store
            .redeem_registration_code(&code_hash("nope"), &key, &fp, now)
            .await,
        "redeem",
    );
    assert_eq!(
        r,
        Err(CodeRefusal::Unknown),
        "store conformance: unknown code"
    );

    let expired = code_hash(&random_token(10));
    ok(
        store.put_registration_code(&g.id, &expired, now).await,
        "put_registration_code",
    );
    let r = ok(
        store
            .redeem_registration_code(&expired, &key, &fp, now)
            .await,
        "redeem",
    );
    assert_eq!(
        r,
        Err(CodeRefusal::Expired),
        "store conformance: a code is expired at its expiry time"
    );
    assert_eq!(
        ok(store.gatekeeper(&g.id).await, "gatekeeper"),
        Some(g.clone()),
        "store conformance: a refused code changed the gatekeeper"
    );

    let first = code_hash(&random_token(10));
    let second = code_hash(&random_token(10));
    let later = Timestamp(now.0 + 3_600_000);
    ok(
        store.put_registration_code(&g.id, &first, later).await,
        "put_registration_code",
    );
    ok(
        store.put_registration_code(&g.id, &second, later).await,
        "put_registration_code",
    );
    let r = ok(
        store.redeem_registration_code(&first, &key, &fp, now).await,
        "redeem",
    );
    assert!(
        r.is_err(),
        "store conformance: a replaced code was accepted"
    );
    assert_eq!(
        ok(store.gatekeeper(&g.id).await, "gatekeeper"),
        Some(g.clone()),
        "store conformance: a refused code changed the gatekeeper"
    );
    expect_error(
        store
            .put_registration_code(&GatekeeperId::generate(), &code_hash("x"), later)
            .await,
        ErrorKind::NotFound,
        "gatekeeper",
        "code for an unknown gatekeeper",
    );

    let enrolled = ok(
        store
            .redeem_registration_code(&second, &key, &fp, now)
            .await,
        "redeem",
    )
    .unwrap_or_else(|r| panic!("store conformance: a valid code was refused: {r}"));
    assert_eq!(
        enrolled.id, g.id,
        "store conformance: redeemed the wrong gatekeeper"
    );
    assert_eq!(
        (
            enrolled.public_key.as_deref(),
            enrolled.fingerprint.as_deref(),
            enrolled.registered_at
        ),
        (Some(key.as_str()), Some(fp.as_str()), Some(now)),
        "store conformance: enrolled key"
    );
    assert_eq!(
        ok(
            store.gatekeeper_by_fingerprint(&fp).await,
            "gatekeeper_by_fingerprint"
        ),
        Some(enrolled.clone()),
        "store conformance: gatekeeper_by_fingerprint"
    );

    let r = ok(
        store
            .redeem_registration_code(&second, "ssh-ed25519 BBBB other", "SHA256:other", now)
            .await,
        "redeem",
    );
    assert_eq!(
        r,
        Err(CodeRefusal::AlreadyUsed),
        "store conformance: a used code"
    );
    assert_eq!(
        ok(store.gatekeeper(&g.id).await, "gatekeeper"),
        Some(enrolled.clone()),
        "store conformance: a used code replaced the key"
    );

    // A key already enrolled elsewhere is refused, and the code stays usable.
    let g2 = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let third = code_hash(&random_token(10));
    ok(
        store.put_registration_code(&g2.id, &third, later).await,
        "put_registration_code",
    );
    expect_error(
        store.redeem_registration_code(&third, &key, &fp, now).await,
        ErrorKind::InvalidArgument,
        &fp,
        "enrolling a key twice",
    );
    let fp2 = format!("SHA256:{}", random_token(20));
    let r = ok(
        store
            .redeem_registration_code(&third, "ssh-ed25519 CCCC", &fp2, now)
            .await,
        "redeem",
    );
    assert!(
        r.is_ok(),
        "store conformance: a code was consumed by a failed redemption: {r:?}"
    );
}

/// 20 concurrent redemptions of one code: exactly one succeeds.
pub async fn concurrent_redemption(store: &dyn Store) {
    let c = new_customer(store).await;
    let g = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let hash = code_hash(&random_token(10));
    let now = Timestamp(T0.0 + 1_000);
    ok(
        store
            .put_registration_code(&g.id, &hash, Timestamp(now.0 + 60_000))
            .await,
        "put_registration_code",
    );
    let keys: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("ssh-ed25519 AAAA{i} racer"),
                format!("SHA256:{}-{i}", random_token(10)),
            )
        })
        .collect();
    let attempts = keys
        .iter()
        .map(|(key, fp)| {
            let hash = hash.as_str();
            Box::pin(async move { store.redeem_registration_code(hash, key, fp, now).await })
                as Pin<Box<dyn Future<Output = _> + Send + '_>>
        })
        .collect();
    let results = join_all(attempts).await;
    let mut won: Vec<crate::model::Gatekeeper> = Vec::new();
    for r in results {
        match ok(r, "concurrent redeem") {
            Ok(g) => won.push(g),
            Err(refusal) => assert_eq!(
                refusal,
                CodeRefusal::AlreadyUsed,
                "store conformance: concurrent loser's refusal"
            ),
        }
    }
    assert_eq!(
        won.len(),
        1,
        "store conformance: {} of 20 concurrent redemptions of one code succeeded",
        won.len()
    );
    let stored = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert_eq!(
        stored.fingerprint, won[0].fingerprint,
        "store conformance: the stored key is not the winner's"
    );
}

/// Users and their keys.
pub async fn users_and_keys(store: &dyn Store) {
    let name = unique("alice");
    let u = ok(
        store.create_user(&name, Some("$argon2id$hash"), T0).await,
        "create_user",
    );
    assert_eq!(
        (u.password_hash.as_deref(), u.disabled),
        (Some("$argon2id$hash"), false),
        "store conformance: new user"
    );
    expect_error(
        store.create_user(&name, None, T0).await,
        ErrorKind::InvalidArgument,
        &format!("user `{name}` already exists"),
        "duplicate user name",
    );
    assert_eq!(
        ok(store.user(&u.id).await, "user"),
        Some(u.clone()),
        "store conformance: user by id"
    );
    assert_eq!(
        ok(store.user_by_name(&name).await, "user_by_name"),
        Some(u.clone()),
        "store conformance: user_by_name"
    );
    assert!(
        ok(store.list_users().await, "list_users").contains(&u),
        "store conformance: list_users"
    );
    assert_eq!(
        ok(store.user(&UserId::generate()).await, "user"),
        None,
        "store conformance: unknown user"
    );

    ok(
        store.set_password_hash(&u.id, None).await,
        "set_password_hash",
    );
    ok(
        store.set_user_disabled(&u.id, true).await,
        "set_user_disabled",
    );
    let now = ok(store.user(&u.id).await, "user").expect("user exists");
    assert!(
        now.password_hash.is_none() && now.disabled,
        "store conformance: user changes not stored: {now:?}"
    );
    ok(
        store.set_password_hash(&u.id, Some("$argon2id$new")).await,
        "set_password_hash",
    );
    ok(
        store.set_user_disabled(&u.id, false).await,
        "set_user_disabled",
    );
    let now = ok(store.user(&u.id).await, "user").expect("user exists");
    assert!(
        now.password_hash.as_deref() == Some("$argon2id$new") && !now.disabled,
        "store conformance: user changes not stored: {now:?}"
    );
    expect_error(
        store.set_user_disabled(&UserId::generate(), true).await,
        ErrorKind::NotFound,
        "user",
        "disabling an unknown user",
    );
    expect_error(
        store.set_password_hash(&UserId::generate(), None).await,
        ErrorKind::NotFound,
        "user",
        "password of an unknown user",
    );

    let c = new_customer(store).await;
    let g = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let key = |label: &str, gatekeeper: Option<GatekeeperId>| UserKey {
        id: KeyId::generate(),
        user_id: u.id.clone(),
        public_key: format!("ssh-ed25519 AAAA{} {label}", random_token(10)),
        fingerprint: format!("SHA256:{}", random_token(20)),
        label: label.to_string(),
        gatekeeper_id: gatekeeper,
        created_at: T0,
    };
    let k1 = key("laptop", None);
    let k2 = UserKey {
        created_at: Timestamp(T0.0 + 1),
        ..key("profile", Some(g.id.clone()))
    };
    ok(store.add_user_key(&k1).await, "add_user_key");
    ok(store.add_user_key(&k2).await, "add_user_key");
    let dup = UserKey {
        id: KeyId::generate(),
        ..k1.clone()
    };
    expect_error(
        store.add_user_key(&dup).await,
        ErrorKind::InvalidArgument,
        &k1.fingerprint,
        "duplicate key fingerprint",
    );
    let mut keys = ok(store.user_keys(&u.id).await, "user_keys");
    keys.sort_by_key(|k| k.created_at);
    assert_eq!(
        keys,
        vec![k1.clone(), k2.clone()],
        "store conformance: user_keys"
    );
    assert_eq!(
        ok(
            store.user_key_by_fingerprint(&k2.fingerprint).await,
            "user_key_by_fingerprint"
        ),
        Some(k2),
        "store conformance: user_key_by_fingerprint"
    );
    assert_eq!(
        ok(
            store.user_key_by_fingerprint("SHA256:none").await,
            "user_key_by_fingerprint"
        ),
        None,
        "store conformance: unknown fingerprint"
    );
}

/// Roles: create, replace, built-in protection, assignment, permission union.
pub async fn roles_and_permissions(store: &dyn Store) {
    let reader = unique("reader");
    let mut role = Role {
        name: reader.clone(),
        permissions: vec![Permission::VIEW_SESSIONS, Permission::DOWNLOAD_IPCONNECT],
        builtin: false,
    };
    ok(store.put_role(&role).await, "put_role");
    role.permissions = vec![Permission::VIEW_SESSIONS, Permission::VERIFY_AUDIT_LOG];
    ok(store.put_role(&role).await, "put_role (replace)");
    let roles = ok(store.list_roles().await, "list_roles");
    let found = roles
        .iter()
        .find(|r| r.name == reader)
        .expect("store conformance: list_roles misses a role");
    let mut want = role.permissions.clone();
    want.sort();
    let mut got = found.permissions.clone();
    got.sort();
    assert_eq!(
        (got, found.builtin),
        (want, false),
        "store conformance: replaced role"
    );

    let fixed = Role {
        name: unique("Builtin Role"),
        permissions: vec![Permission::MANAGE_USERS],
        builtin: true,
    };
    ok(store.put_role(&fixed).await, "put_role (built-in)");
    let replacement = Role {
        permissions: Permission::ALL.to_vec(),
        builtin: false,
        ..fixed.clone()
    };
    expect_error(
        store.put_role(&replacement).await,
        ErrorKind::InvalidArgument,
        &fixed.name,
        "replacing a built-in role",
    );
    let stored = ok(store.list_roles().await, "list_roles")
        .into_iter()
        .find(|r| r.name == fixed.name)
        .expect("built-in role listed");
    assert_eq!(
        stored, fixed,
        "store conformance: a refused put_role changed the built-in role"
    );

    let u = ok(
        store.create_user(&unique("bob"), None, T0).await,
        "create_user",
    );
    assert!(
        ok(store.user_permissions(&u.id).await, "user_permissions").is_empty(),
        "store conformance: a user without roles has permissions"
    );
    ok(store.assign_role(&u.id, &reader).await, "assign_role");
    ok(
        store.assign_role(&u.id, &reader).await,
        "assign_role (again)",
    );
    ok(store.assign_role(&u.id, &fixed.name).await, "assign_role");
    let mut roles = ok(store.user_roles(&u.id).await, "user_roles");
    roles.sort();
    let mut want = vec![reader.clone(), fixed.name.clone()];
    want.sort();
    assert_eq!(roles, want, "store conformance: user_roles");
    let mut perms = ok(store.user_permissions(&u.id).await, "user_permissions");
    perms.sort();
    let mut want = vec![
        Permission::VIEW_SESSIONS,
        Permission::VERIFY_AUDIT_LOG,
        Permission::MANAGE_USERS,
    ];
    want.sort();
    assert_eq!(
        perms, want,
        "store conformance: user_permissions is the union of the roles'"
    );
    expect_error(
        store.assign_role(&u.id, &unique("no-such-role")).await,
        ErrorKind::NotFound,
        "role",
        "assigning an unknown role",
    );
}

/// Services: unique names per customer, look-ups, targets round-trip.
pub async fn services(store: &dyn Store) {
    let c1 = new_customer(store).await;
    let c2 = new_customer(store).await;
    let target: Target = "10.1.2.3:22".parse().expect("valid target");
    let v6: Target = "[fd00::7]:3389".parse().expect("valid target");
    let s = ok(
        store
            .create_service(&c1.id, "ssh", ServiceKind::Custom, &target, T0)
            .await,
        "create_service",
    );
    expect_error(
        store
            .create_service(&c1.id, "ssh", ServiceKind::FileTransfer, &target, T0)
            .await,
        ErrorKind::InvalidArgument,
        "service `ssh` already exists",
        "duplicate service name for one customer",
    );
    let s2 = ok(
        store
            .create_service(&c2.id, "ssh", ServiceKind::DesktopSharing, &v6, T0)
            .await,
        "same service name for another customer",
    );
    expect_error(
        store
            .create_service(
                &CustomerId::generate(),
                "x",
                ServiceKind::Custom,
                &target,
                T0,
            )
            .await,
        ErrorKind::NotFound,
        "customer",
        "service of an unknown customer",
    );
    assert_eq!(
        ok(store.service(&s2.id).await, "service"),
        Some(s2.clone()),
        "store conformance: service by id (IPv6 target)"
    );
    assert_eq!(
        ok(
            store.service_by_name(&c1.id, "ssh").await,
            "service_by_name"
        ),
        Some(s.clone()),
        "store conformance: service_by_name"
    );
    assert_eq!(
        ok(
            store.service_by_name(&c1.id, "rdp").await,
            "service_by_name"
        ),
        None,
        "store conformance: unknown service name"
    );
    assert_eq!(
        ok(store.service(&ServiceId::generate()).await, "service"),
        None,
        "store conformance: unknown service"
    );
    assert_eq!(
        ok(store.list_services(Some(&c1.id)).await, "list_services"),
        vec![s.clone()],
        "store conformance: list_services(customer)"
    );
    let all = ok(store.list_services(None).await, "list_services");
    assert!(
        all.contains(&s) && all.contains(&s2),
        "store conformance: list_services(None)"
    );
}

/// Grants: create, look up, revoke once.
pub async fn grants(store: &dyn Store) {
    let c = new_customer(store).await;
    let u = ok(
        store.create_user(&unique("carol"), None, T0).await,
        "create_user",
    );
    let other = ok(
        store.create_user(&unique("dave"), None, T0).await,
        "create_user",
    );
    let svc = ok(
        store
            .create_service(
                &c.id,
                "rdp",
                ServiceKind::DesktopSharing,
                &"h:3389".parse().expect("target"),
                T0,
            )
            .await,
        "create_service",
    );
    let schedule = Schedule {
        days: 0b001_1111,
        start_minute: 8 * 60,
        end_minute: 18 * 60,
    };
    let new = NewGrant {
        user_id: u.id.clone(),
        service_id: svc.id.clone(),
        not_before: T0,
        not_after: Some(Timestamp(T0.0 + 86_400_000)),
        schedule: Some(schedule),
        created_by: "admin-cli".into(),
    };
    let g = ok(
        store.create_grant(&new, Timestamp(T0.0 + 1)).await,
        "create_grant",
    );
    assert_eq!(
        (
            &g.user_id,
            &g.service_id,
            g.not_before,
            g.not_after,
            g.schedule,
            g.created_at,
            g.created_by.as_str(),
            g.revoked_at
        ),
        (
            &u.id,
            &svc.id,
            T0,
            new.not_after,
            Some(schedule),
            Timestamp(T0.0 + 1),
            "admin-cli",
            None
        ),
        "store conformance: created grant"
    );
    let open = ok(
        store
            .create_grant(
                &NewGrant {
                    not_after: None,
                    schedule: None,
                    ..new.clone()
                },
                T0,
            )
            .await,
        "create_grant",
    );
    let theirs = ok(
        store
            .create_grant(
                &NewGrant {
                    user_id: other.id.clone(),
                    ..new.clone()
                },
                T0,
            )
            .await,
        "create_grant",
    );
    expect_error(
        store
            .create_grant(
                &NewGrant {
                    user_id: UserId::generate(),
                    ..new.clone()
                },
                T0,
            )
            .await,
        ErrorKind::NotFound,
        "user",
        "grant for an unknown user",
    );
    assert_eq!(
        ok(store.grant(&g.id).await, "grant"),
        Some(g.clone()),
        "store conformance: grant by id"
    );
    assert_eq!(
        ok(store.grant(&GrantId::generate()).await, "grant"),
        None,
        "store conformance: unknown grant"
    );
    let mut mine = ok(store.list_grants(Some(&u.id)).await, "list_grants");
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = vec![g.clone(), open.clone()];
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(mine, want, "store conformance: list_grants(user)");
    assert!(
        ok(store.list_grants(None).await, "list_grants").contains(&theirs),
        "store conformance: list_grants(None)"
    );

    let at = Timestamp(T0.0 + 10);
    assert!(
        ok(store.revoke_grant(&g.id, at).await, "revoke_grant"),
        "store conformance: revoke_grant of a live grant returned false"
    );
    assert!(
        !ok(
            store.revoke_grant(&g.id, Timestamp(at.0 + 1)).await,
            "revoke_grant"
        ),
        "store conformance: revoking twice returned true"
    );
    let revoked = ok(store.grant(&g.id).await, "grant").expect("grant exists");
    assert_eq!(
        revoked.revoked_at,
        Some(at),
        "store conformance: the first revocation time is kept"
    );
    expect_error(
        store.revoke_grant(&GrantId::generate(), at).await,
        ErrorKind::NotFound,
        "grant",
        "revoking an unknown grant",
    );
    let mut for_pair = ok(store.grants_for(&u.id, &svc.id).await, "grants_for");
    for_pair.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = vec![revoked, open];
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        for_pair, want,
        "store conformance: grants_for includes revoked grants"
    );
}

/// Sessions: insert, finish, list newest first, close orphans.
pub async fn sessions(store: &dyn Store) {
    let uid = UserId::generate();
    let session = |started: i64| Session {
        id: SessionId::generate(),
        user_id: uid.clone(),
        user_name: "erin".into(),
        customer_id: CustomerId("cus_x".into()),
        gatekeeper_id: GatekeeperId("gk_x".into()),
        service_id: ServiceId("svc_x".into()),
        service_name: "ssh".into(),
        target: "10.0.0.1:22".parse().expect("target"),
        grant_id: Some(GrantId("grt_x".into())),
        started_at: Timestamp(T0.0 + started),
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    };
    let (a, b, c) = (session(1), session(2), session(3));
    for s in [&b, &a, &c] {
        ok(store.insert_session(s).await, "insert_session");
    }
    expect_error(
        store.insert_session(&a).await,
        ErrorKind::InvalidArgument,
        a.id.as_str(),
        "duplicate session id",
    );
    assert_eq!(
        ok(store.session(&a.id).await, "session"),
        Some(a.clone()),
        "store conformance: session round trip"
    );

    let big = u64::from(u32::MAX) * 3;
    let end = Timestamp(T0.0 + 100);
    ok(
        store
            .finish_session(
                &a.id,
                end,
                big,
                7,
                EndReason::TerminatedBy,
                Some("admin-cli"),
            )
            .await,
        "finish_session",
    );
    let done = ok(store.session(&a.id).await, "session").expect("session exists");
    assert_eq!(
        (
            done.ended_at,
            done.bytes_up,
            done.bytes_down,
            done.end_reason,
            done.end_detail.as_deref()
        ),
        (
            Some(end),
            big,
            7,
            Some(EndReason::TerminatedBy),
            Some("admin-cli")
        ),
        "store conformance: finished session"
    );
    expect_error(
        store
            .finish_session(
                &SessionId::generate(),
                end,
                0,
                0,
                EndReason::Completed,
                None,
            )
            .await,
        ErrorKind::NotFound,
        "session",
        "finishing an unknown session",
    );

    let filter = SessionFilter {
        user_id: Some(uid.clone()),
        ..SessionFilter::default()
    };
    let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let all = ok(store.list_sessions(&filter).await, "list_sessions");
    assert_eq!(
        ids(all),
        vec![c.id.clone(), b.id.clone(), a.id.clone()],
        "store conformance: list_sessions is newest first"
    );
    let live = ok(
        store
            .list_sessions(&SessionFilter {
                live_only: true,
                ..filter.clone()
            })
            .await,
        "list_sessions",
    );
    assert_eq!(
        ids(live),
        vec![c.id.clone(), b.id.clone()],
        "store conformance: list_sessions(live_only)"
    );
    let limited = ok(
        store
            .list_sessions(&SessionFilter {
                limit: Some(1),
                ..filter.clone()
            })
            .await,
        "list_sessions",
    );
    assert_eq!(
        ids(limited),
        vec![c.id.clone()],
        "store conformance: list_sessions(limit)"
    );

    let closed = ok(
        store
            .close_orphan_sessions(Timestamp(T0.0 + 200), "server restarted")
            .await,
        "close_orphan_sessions",
    );
    assert!(
        closed >= 2,
        "store conformance: close_orphan_sessions closed {closed}, expected at least 2"
    );
    for id in [&b.id, &c.id] {
        let s = ok(store.session(id).await, "session").expect("session exists");
        assert_eq!(
            (s.ended_at, s.end_reason, s.end_detail.as_deref()),
            (
                Some(Timestamp(T0.0 + 200)),
                Some(EndReason::Error),
                Some("server restarted")
            ),
            "store conformance: orphan session after close_orphan_sessions"
        );
    }
    let done = ok(store.session(&a.id).await, "session").expect("session exists");
    assert_eq!(
        done.end_reason,
        Some(EndReason::TerminatedBy),
        "store conformance: close_orphan_sessions touched an ended session"
    );
    assert!(
        ok(
            store
                .list_sessions(&SessionFilter {
                    live_only: true,
                    ..filter
                })
                .await,
            "list_sessions"
        )
        .is_empty(),
        "store conformance: live sessions after close_orphan_sessions"
    );
}

fn event(
    i: i64,
    category: AuditCategory,
    actor: &str,
    customer: Option<&CustomerId>,
) -> AuditEvent {
    AuditEvent {
        at: Timestamp(T0.0 + i),
        category,
        action: "session.start".into(),
        actor: actor.to_string(),
        customer_id: customer.cloned(),
        session_id: Some(SessionId(format!("ses_{i}"))),
        detail: serde_json::json!({
            "z": i, "a": "ünïcødé \"quoted\"", "nested": {"list": [1, -2, null, true], "empty": {}},
            "big": i64::MAX, "neg": -1
        }),
    }
}

/// The audit chain: appends, filters, a verifiable round trip.
pub async fn audit_log(store: &dyn Store) {
    let before = ok(audit::verify_store(store).await, "verify_store");
    assert!(
        before.is_intact(),
        "store conformance: audit chain broken before the check: {before:?}"
    );
    let first = i64::try_from(before.checked).expect("count fits") + 1;
    let actor = unique("auditor");
    let cus = CustomerId::generate();
    let mut appended = Vec::new();
    for i in 0..6 {
        let category = if i % 2 == 0 {
            AuditCategory::UserActivity
        } else {
            AuditCategory::SystemMessages
        };
        let customer = (i < 3).then_some(&cus);
        let r = ok(
            store
                .append_audit(&event(1_000 + i, category, &actor, customer))
                .await,
            "append_audit",
        );
        assert_eq!(r.seq, first + i, "store conformance: append_audit seq");
        appended.push(r);
    }
    let all = ok(
        store
            .audit_records(&AuditFilter {
                from_seq: Some(first),
                ..AuditFilter::default()
            })
            .await,
        "audit_records",
    );
    assert_eq!(
        all, appended,
        "store conformance: audit records do not round-trip"
    );
    let v = ok(audit::verify_store(store).await, "verify_store");
    assert!(
        v.is_intact(),
        "store conformance: audit chain broken after a round trip: {v:?}"
    );

    let seqs = |f: AuditFilter| {
        let mine = AuditFilter {
            actor: Some(actor.clone()),
            ..f
        };
        async move {
            ok(store.audit_records(&mine).await, "audit_records")
                .into_iter()
                .map(|r| r.seq - first)
                .collect::<Vec<_>>()
        }
    };
    let f = AuditFilter::default;
    assert_eq!(
        seqs(f()).await,
        vec![0, 1, 2, 3, 4, 5],
        "store conformance: audit_records(actor)"
    );
    assert_eq!(
        seqs(AuditFilter {
            category: Some(AuditCategory::SystemMessages),
            ..f()
        })
        .await,
        vec![1, 3, 5],
        "store conformance: audit_records(category)"
    );
    assert_eq!(
        seqs(AuditFilter {
            customer_id: Some(cus.clone()),
            ..f()
        })
        .await,
        vec![0, 1, 2],
        "store conformance: audit_records(customer)"
    );
    assert_eq!(
        seqs(AuditFilter {
            from_seq: Some(first + 4),
            ..f()
        })
        .await,
        vec![4, 5],
        "store conformance: audit_records(from_seq)"
    );
    assert_eq!(
        seqs(AuditFilter {
            limit: Some(2),
            ..f()
        })
        .await,
        vec![0, 1],
        "store conformance: audit_records(limit)"
    );
    let (since, until) = (Timestamp(T0.0 + 1_002), Timestamp(T0.0 + 1_004));
    assert_eq!(
        seqs(AuditFilter {
            since: Some(since),
            until: Some(until),
            ..f()
        })
        .await,
        vec![2, 3],
        "store conformance: audit_records(since inclusive, until exclusive)"
    );
    assert!(
        ok(
            store
                .audit_records(&AuditFilter {
                    actor: Some(unique("nobody")),
                    ..f()
                })
                .await,
            "audit_records"
        )
        .is_empty(),
        "store conformance: audit_records(unknown actor)"
    );
}

/// `tasks` x `per_task` concurrent appends, spread over `stores` (several
/// handles on one database stand for several processes): the chain stays intact.
pub async fn concurrent_audit_appends(stores: &[&dyn Store], tasks: usize, per_task: usize) {
    let first = stores
        .first()
        .expect("store conformance: concurrent_audit_appends needs a store");
    let before = ok(audit::verify_store(*first).await, "verify_store");
    assert!(
        before.is_intact(),
        "store conformance: audit chain broken before the check: {before:?}"
    );
    let actor = unique("writer");
    let writers = (0..tasks)
        .map(|t| {
            let store = stores[t % stores.len()];
            let actor = actor.clone();
            Box::pin(async move {
                let mut seqs = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let n = i64::try_from(t * 1_000 + i).expect("small");
                    let r = ok(
                        store
                            .append_audit(&event(n, AuditCategory::SystemMessages, &actor, None))
                            .await,
                        "concurrent append_audit",
                    );
                    seqs.push(r.seq);
                }
                seqs
            }) as Pin<Box<dyn Future<Output = Vec<i64>> + Send + '_>>
        })
        .collect();
    let mut seqs: Vec<i64> = join_all(writers).await.into_iter().flatten().collect();
    seqs.sort_unstable();
    seqs.dedup();
    let total = tasks * per_task;
    assert_eq!(
        seqs.len(),
        total,
        "store conformance: concurrent appends returned duplicate seqs"
    );
    let after = ok(audit::verify_store(*first).await, "verify_store");
    assert!(
        after.is_intact(),
        "store conformance: audit chain broken by concurrent appends: {after:?}"
    );
    let added = after.checked - before.checked;
    assert_eq!(
        added, total as u64,
        "store conformance: {added} records after {total} concurrent appends"
    );
    let mine = ok(
        first
            .audit_records(&AuditFilter {
                actor: Some(actor),
                ..AuditFilter::default()
            })
            .await,
        "audit_records",
    );
    assert_eq!(
        mine.len(),
        total,
        "store conformance: records of the concurrent writers"
    );
}
