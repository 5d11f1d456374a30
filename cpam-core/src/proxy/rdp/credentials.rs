//! One-time proxy credentials: what a vendor's RDP client types at the
//! proxy's NLA prompt. NTLM needs the plaintext secret on the server side,
//! so the user's login or master password (stored only as Argon2id hashes)
//! cannot be it; instead the Connection Manager asks for a random one over
//! its signed-in SSH connection, after the master password, for one user
//! and one service. It lives only in the server's memory, is taken by the
//! first session that uses it (right or wrong) and expires unused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{ServiceId, UserId, random_token};
use crate::secret::Secret;

/// How long an issued credential may wait for its session.
pub const PROXY_CREDENTIAL_TTL: Duration = Duration::from_secs(300);

/// An issued credential and when it was issued, by user and service.
type Issued = HashMap<(UserId, ServiceId), (Secret<String>, Instant)>;

/// The one-time credentials issued and not yet used.
#[derive(Debug, Default)]
pub struct ProxyCredentials {
    issued: Mutex<Issued>,
}

impl ProxyCredentials {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new credential for `user` on `service`, replacing an unused one.
    pub fn issue(&self, user: &UserId, service: &ServiceId) -> Secret<String> {
        let password = random_token(20);
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        issued.retain(|_, (_, at)| now.duration_since(*at) < PROXY_CREDENTIAL_TTL);
        issued.insert(
            (user.clone(), service.clone()),
            (Secret::new(password.clone()), now),
        );
        Secret::new(password)
    }

    /// Takes the credential of `user` on `service`: `None` when none was
    /// issued, it was used, or it expired.
    pub fn take(&self, user: &UserId, service: &ServiceId) -> Option<Secret<String>> {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let (secret, at) = issued.remove(&(user.clone(), service.clone()))?;
        (at.elapsed() < PROXY_CREDENTIAL_TTL).then_some(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_taken_once_by_its_user_and_service() {
        let creds = ProxyCredentials::new();
        let (u, s) = (UserId("usr_a".into()), ServiceId("svc_a".into()));
        let issued = creds.issue(&u, &s);
        assert!(creds.take(&UserId("usr_b".into()), &s).is_none());
        assert!(creds.take(&u, &ServiceId("svc_b".into())).is_none());
        let taken = creds.take(&u, &s).expect("issued");
        assert_eq!(taken.expose(), issued.expose());
        assert!(taken.expose().len() >= 20);
        assert!(creds.take(&u, &s).is_none(), "a credential works once");
    }
}
