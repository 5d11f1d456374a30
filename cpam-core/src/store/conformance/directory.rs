//! Checks of customers, gatekeepers, registration codes, users, keys, roles and services.

use std::future::Future;
use std::pin::Pin;

use crate::error::ErrorKind;
use crate::model::{
    CodeRefusal, CustomerId, GatekeeperId, KeyId, Permission, Role, ServiceId, ServiceKind, Target,
    Timestamp, UserId, UserKey, random_token,
};
use crate::store::Store;

use super::{T0, expect_error, join_all, new_customer, ok, unique};

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
        ErrorKind::Conflict,
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
        ErrorKind::Conflict,
        "duplicate gatekeeper name under another customer",
    );
    expect_error(
        store
            .create_gatekeeper(&CustomerId::generate(), &unique("gk"), T0)
            .await,
        ErrorKind::NotFound,
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
        store
            .set_gatekeeper_state(&g.id, true, true, Some("node-1"), at)
            .await,
        "set_gatekeeper_state",
    );
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert!(
        now.online
            && now.customer_disabled
            && now.last_contact == Some(at)
            && now.node_id.as_deref() == Some("node-1"),
        "store conformance: state not stored: {now:?}"
    );
    ok(
        store
            .set_gatekeeper_state(&g.id, false, false, Some("node-1"), Timestamp(at.0 + 1))
            .await,
        "set_gatekeeper_state",
    );
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert!(
        !now.online
            && !now.customer_disabled
            && now.last_contact == Some(Timestamp(at.0 + 1))
            && now.node_id.is_none(),
        "store conformance: offline state not stored (no node holds an offline link): {now:?}"
    );
    expect_error(
        store
            .set_gatekeeper_state(&GatekeeperId::generate(), true, false, None, at)
            .await,
        ErrorKind::NotFound,
        "state of an unknown gatekeeper",
    );

    assert_eq!(
        now.customer_schedule, None,
        "store conformance: no schedule yet"
    );
    for schedule in [Some("mon-fri 08:00-18:00"), None] {
        ok(
            store.set_gatekeeper_schedule(&g.id, schedule).await,
            "set_gatekeeper_schedule",
        );
        let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
        assert_eq!(
            now.customer_schedule.as_deref(),
            schedule,
            "store conformance: schedule not stored"
        );
    }
    expect_error(
        store
            .set_gatekeeper_schedule(&GatekeeperId::generate(), None)
            .await,
        ErrorKind::NotFound,
        "schedule of an unknown gatekeeper",
    );
}

use crate::tunnel::code_hash;

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
        ErrorKind::Conflict,
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
        ErrorKind::Conflict,
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
        "disabling an unknown user",
    );
    expect_error(
        store.set_password_hash(&UserId::generate(), None).await,
        ErrorKind::NotFound,
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
        ErrorKind::Conflict,
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
        Some(k2.clone()),
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
    // Deleting a key: only the owner's, once; the other key stays.
    let other = ok(
        store.create_user(&unique("other"), None, T0).await,
        "create_user",
    );
    assert!(
        !ok(
            store.delete_user_key(&other.id, &k1.id).await,
            "delete_user_key"
        ),
        "store conformance: delete_user_key deleted another user's key"
    );
    assert!(
        ok(
            store.delete_user_key(&u.id, &k1.id).await,
            "delete_user_key"
        ),
        "store conformance: delete_user_key found no key"
    );
    assert!(
        !ok(
            store.delete_user_key(&u.id, &k1.id).await,
            "delete_user_key"
        ),
        "store conformance: delete_user_key deleted a key twice"
    );
    assert_eq!(
        ok(store.user_keys(&u.id).await, "user_keys"),
        vec![k2.clone()],
        "store conformance: user_keys after delete_user_key"
    );
    assert_eq!(
        ok(
            store.user_key_by_fingerprint(&k1.fingerprint).await,
            "user_key_by_fingerprint"
        ),
        None,
        "store conformance: a deleted key still signs in"
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
            .create_service(&c1.id, "ssh", ServiceKind::Custom, &target, T0, None)
            .await,
        "create_service",
    );
    expect_error(
        store
            .create_service(&c1.id, "ssh", ServiceKind::FileTransfer, &target, T0, None)
            .await,
        ErrorKind::Conflict,
        "duplicate service name for one customer",
    );
    let s2 = ok(
        store
            .create_service(&c2.id, "ssh", ServiceKind::DesktopSharing, &v6, T0, None)
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
                None,
            )
            .await,
        ErrorKind::NotFound,
        "service of an unknown customer",
    );
    assert_eq!(
        ok(store.service(&s2.id).await, "service"),
        Some(s2.clone()),
        "store conformance: service by id (IPv6 target)"
    );
    // A service bound to a gatekeeper keeps it.
    let gk = ok(
        store.create_gatekeeper(&c1.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let bound = ok(
        store
            .create_service(
                &c1.id,
                "bound",
                ServiceKind::Custom,
                &target,
                T0,
                Some(&gk.id),
            )
            .await,
        "create_service with a gatekeeper",
    );
    assert_eq!(
        ok(store.service(&bound.id).await, "service").and_then(|s| s.gatekeeper_id),
        Some(gk.id.clone()),
        "store conformance: a service's gatekeeper round-trips"
    );
    assert_eq!(
        s.gatekeeper_id, None,
        "store conformance: no gatekeeper given"
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
        vec![bound.clone(), s.clone()],
        "store conformance: list_services(customer)"
    );
    let all = ok(store.list_services(None).await, "list_services");
    assert!(
        all.contains(&s) && all.contains(&s2),
        "store conformance: list_services(None)"
    );
}
