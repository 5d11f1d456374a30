//! Checks of what the console needs: membership, IP Connect modes, settings,
//! role edits, deletions, console sessions and API tokens.

use crate::error::ErrorKind;
use crate::model::{
    ApiToken, CustomerId, IpConnectMode, Permission, Role, ServiceKind, Target, Timestamp, TokenId,
    WebSession, random_token,
};
use crate::store::{NewGrant, SessionFilter, Store};

use super::{T0, expect_error, new_customer, ok, unique};

/// Customer membership, per-user IP Connect mode and server-wide settings.
pub async fn membership_and_settings(store: &dyn Store) {
    let (a, b) = (new_customer(store).await, new_customer(store).await);
    let u = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    assert_eq!(
        ok(store.user_customers(&u.id).await, "user_customers"),
        Vec::<CustomerId>::new(),
        "store conformance: a new user is a member of no customer"
    );
    ok(
        store
            .set_user_customers(&u.id, &[b.id.clone(), a.id.clone(), a.id.clone()])
            .await,
        "set_user_customers",
    );
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(
        ok(store.user_customers(&u.id).await, "user_customers"),
        want,
        "store conformance: memberships, deduplicated and sorted"
    );
    ok(
        store
            .set_user_customers(&u.id, std::slice::from_ref(&b.id))
            .await,
        "set_user_customers",
    );
    assert_eq!(
        ok(store.user_customers(&u.id).await, "user_customers"),
        vec![b.id.clone()],
        "store conformance: set_user_customers replaces"
    );
    expect_error(
        store
            .set_user_customers(&u.id, &[CustomerId::generate()])
            .await,
        ErrorKind::NotFound,
        "membership of an unknown customer",
    );
    assert_eq!(
        ok(store.user_customers(&u.id).await, "user_customers"),
        vec![b.id.clone()],
        "store conformance: a refused membership change changes nothing"
    );

    assert_eq!(
        ok(
            store.user_ip_connect_mode(&u.id).await,
            "user_ip_connect_mode"
        ),
        IpConnectMode::Global,
        "store conformance: the default IP Connect mode is global"
    );
    for mode in IpConnectMode::ALL {
        ok(
            store.set_user_ip_connect_mode(&u.id, *mode).await,
            "set_user_ip_connect_mode",
        );
        assert_eq!(
            ok(
                store.user_ip_connect_mode(&u.id).await,
                "user_ip_connect_mode"
            ),
            *mode,
            "store conformance: IP Connect mode round trip"
        );
    }
    let ghost = crate::model::UserId::generate();
    expect_error(
        store.user_ip_connect_mode(&ghost).await,
        ErrorKind::NotFound,
        "IP Connect mode of an unknown user",
    );

    let key = unique("setting");
    assert_eq!(ok(store.setting(&key).await, "setting"), None);
    ok(store.put_setting(&key, "legacy").await, "put_setting");
    ok(store.put_setting(&key, "off").await, "put_setting again");
    assert_eq!(
        ok(store.setting(&key).await, "setting").as_deref(),
        Some("off"),
        "store conformance: put_setting replaces"
    );
}

/// Role edits: replace permissions, delete custom roles, refuse built-in ones.
pub async fn role_edits(store: &dyn Store) {
    let name = unique("role");
    ok(
        store
            .put_role(&Role {
                name: name.clone(),
                permissions: vec![Permission::VIEW_SESSIONS],
                builtin: false,
            })
            .await,
        "put_role",
    );
    let builtin = unique("builtin");
    ok(
        store
            .put_role(&Role {
                name: builtin.clone(),
                permissions: vec![Permission::VIEW_SESSIONS],
                builtin: true,
            })
            .await,
        "put_role builtin",
    );
    let u = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    ok(
        store
            .set_user_roles(&u.id, &[name.clone(), builtin.clone()])
            .await,
        "set_user_roles",
    );
    ok(
        store
            .set_role_permissions(
                &name,
                &[
                    Permission::MANAGE_SETTINGS,
                    Permission::ACCESS_ALL_CUSTOMERS,
                ],
            )
            .await,
        "set_role_permissions",
    );
    let perms = ok(store.user_permissions(&u.id).await, "user_permissions");
    assert_eq!(
        perms,
        vec![
            Permission::VIEW_SESSIONS,
            Permission::ACCESS_ALL_CUSTOMERS,
            Permission::MANAGE_SETTINGS
        ],
        "store conformance: permissions follow a role edit"
    );
    expect_error(
        store
            .set_role_permissions(&unique("none"), &[Permission::VIEW_SESSIONS])
            .await,
        ErrorKind::NotFound,
        "editing an unknown role",
    );
    expect_error(
        store.delete_role(&builtin).await,
        ErrorKind::Conflict,
        "deleting a built-in role",
    );
    ok(store.delete_role(&name).await, "delete_role");
    assert_eq!(
        ok(store.user_roles(&u.id).await, "user_roles"),
        vec![builtin.clone()],
        "store conformance: a deleted role is unassigned"
    );
    assert!(
        !ok(store.list_roles().await, "list_roles")
            .iter()
            .any(|r| r.name == name),
        "store conformance: a deleted role is gone"
    );
    expect_error(
        store.delete_role(&name).await,
        ErrorKind::NotFound,
        "deleting a role twice",
    );
    expect_error(
        store.set_user_roles(&u.id, &[unique("none")]).await,
        ErrorKind::NotFound,
        "assigning an unknown role",
    );
    assert_eq!(
        ok(store.user_roles(&u.id).await, "user_roles"),
        vec![builtin],
        "store conformance: a refused role change changes nothing"
    );
    ok(
        store.set_user_roles(&u.id, &[]).await,
        "set_user_roles empty",
    );
    assert!(ok(store.user_roles(&u.id).await, "user_roles").is_empty());
}

/// Deleting a service removes its grants; deleting a customer removes
/// everything of it but keeps session history.
pub async fn deletions(store: &dyn Store) {
    let c = new_customer(store).await;
    let gk = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    ok(
        store
            .put_registration_code(&gk.id, &random_token(16), T0)
            .await,
        "put_registration_code",
    );
    let target = Target {
        host: "10.0.0.1".into(),
        port: 22,
    };
    let s1 = ok(
        store
            .create_service(&c.id, "s1", ServiceKind::Custom, &target, T0, None)
            .await,
        "create_service",
    );
    let s2 = ok(
        store
            .create_service(&c.id, "s2", ServiceKind::Custom, &target, T0, None)
            .await,
        "create_service",
    );
    let u = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    ok(
        store
            .set_user_customers(&u.id, std::slice::from_ref(&c.id))
            .await,
        "set_user_customers",
    );
    let grant = |s: &crate::model::Service| NewGrant {
        user_id: u.id.clone(),
        service_id: s.id.clone(),
        not_before: T0,
        not_after: None,
        schedule: None,
        created_by: "test".into(),
    };
    let g1 = ok(store.create_grant(&grant(&s1), T0).await, "create_grant");
    ok(store.create_grant(&grant(&s2), T0).await, "create_grant");
    ok(store.delete_service(&s1.id).await, "delete_service");
    assert_eq!(ok(store.service(&s1.id).await, "service"), None);
    assert_eq!(
        ok(store.grant(&g1.id).await, "grant"),
        None,
        "store conformance: a deleted service's grants are gone"
    );
    expect_error(
        store.delete_service(&s1.id).await,
        ErrorKind::NotFound,
        "deleting a service twice",
    );
    let session = crate::model::Session {
        id: crate::model::SessionId::generate(),
        user_id: u.id.clone(),
        user_name: u.name.clone(),
        customer_id: c.id.clone(),
        gatekeeper_id: Some(gk.id.clone()),
        service_id: s2.id.clone(),
        service_name: s2.name.clone(),
        target: target.clone(),
        grant_id: None,
        protocol: crate::model::SessionProtocol::Tcp,
        node_id: None,
        started_at: T0,
        ended_at: Some(Timestamp(T0.0 + 1)),
        bytes_up: 1,
        bytes_down: 2,
        end_reason: Some(crate::model::EndReason::Completed),
        end_detail: None,
    };
    ok(store.insert_session(&session).await, "insert_session");

    // A second gatekeeper, deleted on its own with its code and profile key.
    let gk2 = ok(
        store.create_gatekeeper(&c.id, &unique("gk"), T0).await,
        "create_gatekeeper",
    );
    let code = random_token(16);
    ok(
        store
            .put_registration_code(&gk2.id, &code, Timestamp(T0.0 + 3_600_000))
            .await,
        "put_registration_code",
    );
    let token = random_token(10);
    let key = crate::model::UserKey {
        id: crate::model::KeyId::generate(),
        user_id: u.id.clone(),
        public_key: format!("ssh-ed25519 AAAA{token} profile"),
        fingerprint: format!("SHA256:{token}"),
        label: "profile".into(),
        gatekeeper_id: Some(gk2.id.clone()),
        created_at: T0,
    };
    ok(store.add_user_key(&key).await, "add_user_key");
    ok(store.delete_gatekeeper(&gk2.id).await, "delete_gatekeeper");
    assert_eq!(ok(store.gatekeeper(&gk2.id).await, "gatekeeper"), None);
    assert_eq!(
        ok(
            store.user_key_by_fingerprint(&key.fingerprint).await,
            "user_key_by_fingerprint"
        ),
        None,
        "store conformance: a deleted gatekeeper's profile keys are gone"
    );
    assert!(
        ok(
            store
                .redeem_registration_code(&code, "ssh-ed25519 AAAA x", "SHA256:x", T0)
                .await,
            "redeem_registration_code"
        )
        .is_err(),
        "store conformance: a deleted gatekeeper's code still registers"
    );
    assert!(ok(store.gatekeeper(&gk.id).await, "gatekeeper").is_some());
    expect_error(
        store.delete_gatekeeper(&gk2.id).await,
        ErrorKind::NotFound,
        "deleting a gatekeeper twice",
    );

    ok(store.delete_customer(&c.id).await, "delete_customer");
    assert_eq!(ok(store.customer(&c.id).await, "customer"), None);
    assert_eq!(ok(store.gatekeeper(&gk.id).await, "gatekeeper"), None);
    assert_eq!(ok(store.service(&s2.id).await, "service"), None);
    assert!(
        ok(store.list_grants(Some(&u.id)).await, "list_grants").is_empty(),
        "store conformance: a deleted customer's grants are gone"
    );
    assert!(ok(store.user_customers(&u.id).await, "user_customers").is_empty());
    let history = ok(
        store
            .list_sessions(&SessionFilter {
                customer_id: Some(c.id.clone()),
                ..SessionFilter::default()
            })
            .await,
        "list_sessions",
    );
    assert_eq!(
        history.len(),
        1,
        "store conformance: session history outlives its customer"
    );
    expect_error(
        store.delete_customer(&c.id).await,
        ErrorKind::NotFound,
        "deleting a customer twice",
    );
}

/// Console sessions and API tokens: stored by hash, touched, expired, deleted.
pub async fn web_sessions_and_tokens(store: &dyn Store) {
    let u = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    let other = ok(
        store.create_user(&unique("u"), None, T0).await,
        "create_user",
    );
    let session = |hash: &str, user: &crate::model::User, last: i64, end: i64| WebSession {
        id_hash: hash.to_string(),
        user_id: user.id.clone(),
        csrf_token: random_token(16),
        created_at: T0,
        last_seen: Timestamp(T0.0 + last),
        expires_at: Timestamp(T0.0 + end),
    };
    let fresh = session(&random_token(20), &u, 1_000, 100_000);
    let idle = session(&random_token(20), &u, 0, 100_000);
    let old = session(&random_token(20), &other, 50_000, 60_000);
    for s in [&fresh, &idle, &old] {
        ok(store.create_web_session(s).await, "create_web_session");
    }
    expect_error(
        store.create_web_session(&fresh).await,
        ErrorKind::Conflict,
        "duplicate console session",
    );
    assert_eq!(
        ok(store.web_session(&fresh.id_hash).await, "web_session").as_ref(),
        Some(&fresh)
    );
    ok(
        store
            .touch_web_session(&fresh.id_hash, Timestamp(T0.0 + 40_000))
            .await,
        "touch_web_session",
    );
    // Idle before T0+30s, or past the absolute end at T0+70s.
    let purged = ok(
        store
            .purge_web_sessions(Timestamp(T0.0 + 30_000), Timestamp(T0.0 + 70_000))
            .await,
        "purge_web_sessions",
    );
    assert!(purged >= 2, "store conformance: purge removed {purged}");
    assert_eq!(
        ok(store.web_session(&idle.id_hash).await, "web_session"),
        None
    );
    assert_eq!(
        ok(store.web_session(&old.id_hash).await, "web_session"),
        None
    );
    let kept = ok(store.web_session(&fresh.id_hash).await, "web_session");
    assert_eq!(
        kept.map(|s| s.last_seen),
        Some(Timestamp(T0.0 + 40_000)),
        "store conformance: touched session kept with its new last_seen"
    );
    ok(
        store.delete_web_session(&fresh.id_hash).await,
        "delete_web_session",
    );
    assert_eq!(
        ok(store.web_session(&fresh.id_hash).await, "web_session"),
        None
    );
    let again = session(&random_token(20), &u, 1, 100_000);
    ok(store.create_web_session(&again).await, "create_web_session");
    assert_eq!(
        ok(
            store.delete_user_web_sessions(&u.id).await,
            "delete_user_web_sessions"
        ),
        1
    );

    let token = |user: &crate::model::User, name: &str| ApiToken {
        id: TokenId::generate(),
        user_id: user.id.clone(),
        name: name.to_string(),
        token_hash: random_token(20),
        created_at: T0,
        expires_at: Some(Timestamp(T0.0 + 1)),
        last_used_at: None,
    };
    let t1 = token(&u, "ci");
    let t2 = token(&u, "backup");
    let t3 = token(&other, "theirs");
    for t in [&t1, &t2, &t3] {
        ok(store.create_api_token(t).await, "create_api_token");
    }
    let mine = ok(store.list_api_tokens(&u.id).await, "list_api_tokens");
    assert_eq!(mine.len(), 2, "store conformance: tokens of one user");
    assert!(mine.iter().all(|t| t.user_id == u.id));
    assert_eq!(
        ok(
            store.api_token_by_hash(&t3.token_hash).await,
            "api_token_by_hash"
        )
        .as_ref(),
        Some(&t3)
    );
    assert_eq!(
        ok(store.api_token_by_hash("nope").await, "api_token_by_hash"),
        None
    );
    ok(
        store.touch_api_token(&t1.id, Timestamp(T0.0 + 5)).await,
        "touch_api_token",
    );
    let t1_now = ok(store.api_token_by_hash(&t1.token_hash).await, "by hash");
    assert_eq!(
        t1_now.and_then(|t| t.last_used_at),
        Some(Timestamp(T0.0 + 5))
    );
    assert!(ok(store.delete_api_token(&t1.id).await, "delete_api_token"));
    assert!(!ok(
        store.delete_api_token(&t1.id).await,
        "delete_api_token twice"
    ));
    assert_eq!(
        ok(store.list_api_tokens(&u.id).await, "list_api_tokens").len(),
        1
    );
}
