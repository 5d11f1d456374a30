//! From the client's first byte to the end of NLA on both legs: X.224
//! negotiation, TLS, CredSSP, and the client's MCS Connect Initial patched
//! for the target.

use ironrdp_connector::sspi;
use ironrdp_connector::{Credentials, ServerName};
use ironrdp_core::WriteBuf;
use ironrdp_pdu::{mcs, nego, x224};
use ironrdp_tokio::{FramedWrite as _, TokioFramed};
use serde_json::json;
use sha2::Digest as _;

use super::io::SyncStream;
use super::{CertificatePins, ProxyTls};
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::Credential;
use crate::model::Service;
use crate::proxy::ssh::PinCheck;
use crate::secret::Secret;
use crate::session::{SessionControl, Upstream};
use crate::tunnel::dialer::Connection;

pub(super) type ClientTls = tokio_rustls::server::TlsStream<SyncStream>;
pub(super) type TargetTls = ironrdp_tls::TlsStream<SyncStream>;

/// What a session's handshake needs.
pub(super) struct Setup<'a> {
    pub tls: &'a ProxyTls,
    pub pins: &'a dyn CertificatePins,
    pub service: &'a Service,
    /// The cpam user: the username the client must authenticate as.
    pub user_name: &'a str,
    /// The one-time proxy credential issued to the user, if any.
    pub proxy_secret: Option<Secret<String>>,
    /// The vault's credential for the target.
    pub credential: Credential,
    pub control: SessionControl,
}

/// Both legs after NLA, ready to relay.
pub(super) struct Linked {
    pub client: TokioFramed<ClientTls>,
    pub target: TokioFramed<TargetTls>,
    pub target_user: String,
    /// The client's MCS Connect Initial as the target got it (recorded
    /// first: it names the desktop size).
    pub connect_initial: Vec<u8>,
    pub client_protocol: String,
    pub target_protocol: String,
}

fn protocol_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Protocol, format!("{what}: {e}"))
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// The CredSSP protocol of a set the client offered, HYBRID_EX first.
fn nla_of(offered: nego::SecurityProtocol) -> Option<nego::SecurityProtocol> {
    if offered.contains(nego::SecurityProtocol::HYBRID_EX) {
        Some(nego::SecurityProtocol::HYBRID_EX)
    } else if offered.contains(nego::SecurityProtocol::HYBRID) {
        Some(nego::SecurityProtocol::HYBRID)
    } else {
        None
    }
}

/// Runs the handshake on the user's connection and the target's.
pub(super) async fn run(setup: Setup<'_>, user: Connection, upstream: Upstream) -> Result<Linked> {
    let mut cf = TokioFramed::new(SyncStream::new(user.into_stream()));

    // 1. X.224: the client's request first; a client without NLA is
    // refused before the target is even reached.
    let (_, frame) = cf
        .read_pdu()
        .await
        .map_err(|e| io_err("reading the client's connection request", e))?;
    let request: x224::X224<nego::ConnectionRequest> = ironrdp_core::decode(&frame)
        .map_err(|e| protocol_err("the client's connection request", e))?;
    let offered = request.0.protocol;
    let Some(client_protocol) = nla_of(offered) else {
        let refusal = nego::ConnectionConfirm::Failure {
            code: nego::FailureCode::HYBRID_REQUIRED_BY_SERVER,
        };
        if let Ok(bytes) = ironrdp_core::encode_vec(&x224::X224(refusal)) {
            let _ = cf.write_all(&bytes).await;
        }
        let _ = setup
            .control
            .record_event(
                "rdp.client_refused",
                json!({ "reason": "no_nla", "offered": format!("{offered:?}") }),
            )
            .await;
        return Err(Error::denied(format!(
            "the RDP client does not offer NLA (CredSSP), it offered {offered:?}; \
             enable NLA in the client"
        )));
    };
    let Some(proxy_secret) = setup.proxy_secret else {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "no one-time RDP credential was issued to `{}` for `{}`: run \
                 `cpam-connect rdp-credential {}` first",
                setup.user_name, setup.service.name, setup.service.name
            ),
        ));
    };
    let target = upstream.connect().await?;
    let mut sf = TokioFramed::new(SyncStream::new(target.into_stream()));
    let target_user = setup.credential.username.clone();
    let forwarded = nego::ConnectionRequest {
        nego_data: Some(nego::NegoRequestData::cookie(target_user.clone())),
        flags: request.0.flags,
        // The client's flags unchanged: mstsc fails if they are rewritten.
        protocol: offered,
        correlation_info: None,
    };
    let bytes = ironrdp_core::encode_vec(&x224::X224(forwarded))
        .map_err(|e| protocol_err("encoding the connection request", e))?;
    sf.write_all(&bytes)
        .await
        .map_err(|e| io_err("sending the target the connection request", e))?;
    let (_, frame) = sf
        .read_pdu()
        .await
        .map_err(|e| io_err("reading the target's connection confirm", e))?;
    let confirm: x224::X224<nego::ConnectionConfirm> = ironrdp_core::decode(&frame)
        .map_err(|e| protocol_err("the target's connection confirm", e))?;
    let (flags, target_protocol) = match confirm.0 {
        nego::ConnectionConfirm::Response { flags, protocol } => (flags, protocol),
        nego::ConnectionConfirm::Failure { code } => {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("the RDP target refused the connection ({code:?})"),
            ));
        }
    };
    if nla_of(target_protocol).is_none() {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("the RDP target selected {target_protocol:?}; credential injection needs NLA"),
        ));
    }
    let back = nego::ConnectionConfirm::Response {
        flags,
        protocol: client_protocol,
    };
    let bytes = ironrdp_core::encode_vec(&x224::X224(back))
        .map_err(|e| protocol_err("encoding the connection confirm", e))?;
    cf.write_all(&bytes)
        .await
        .map_err(|e| io_err("answering the client's connection request", e))?;

    // 2. TLS on both legs; the target's key is checked against its pin
    // before any credential is sent.
    // Nothing may come before TLS starts: bytes read past the X.224
    // exchange would be lost.
    let (c_stream, c_left) = cf.into_inner();
    if !c_left.is_empty() {
        return Err(protocol_err(
            "the RDP client",
            format!("{} bytes came before TLS", c_left.len()),
        ));
    }
    let (t_stream, t_left) = sf.into_inner();
    if !t_left.is_empty() {
        return Err(protocol_err(
            "the RDP target",
            format!("{} bytes came before TLS", t_left.len()),
        ));
    }
    super::tls::ensure_tls_provider();
    let (c_tls, t_tls) = tokio::join!(
        setup.tls.acceptor.accept(c_stream),
        ironrdp_tls::upgrade_with_certificate_validation(
            t_stream,
            "localhost",
            ironrdp_tls::CertificateValidation::DangerouslyAcceptInvalidCertificate,
        )
    );
    let c_tls = c_tls.map_err(|e| io_err("TLS with the RDP client", e))?;
    let (t_tls, t_cert) = t_tls.map_err(|e| io_err("TLS with the RDP target", e))?;
    let target_key = ironrdp_tls::extract_tls_server_public_key(&t_cert)
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "the target's certificate has no key"))?
        .to_vec();
    let spki = hex::encode(sha2::Sha256::digest(&target_key));
    match setup.pins.check(setup.service, &spki).await {
        Ok(PinCheck::Pinned) => {
            setup
                .control
                .record_event("rdp.certificate_pinned", json!({ "key_sha256": spki }))
                .await?;
        }
        Ok(PinCheck::Known) => {}
        Err(e) => {
            setup
                .control
                .record_event("rdp.certificate_refused", json!({ "message": e.message() }))
                .await?;
            return Err(e);
        }
    }
    let mut cf = TokioFramed::new(c_tls);
    let mut sf = TokioFramed::new(t_tls);

    // 3. CredSSP: server to the client (the one-time credential), client to
    // the target (the vault's credential), at once.
    let identity = sspi::AuthIdentity {
        username: sspi::Username::parse(setup.user_name)
            .map_err(|e| Error::invalid(format!("user name `{}`: {e}", setup.user_name)))?,
        password: proxy_secret.expose().clone().into(),
    };
    drop(proxy_secret);
    // The client's leg waits for the target's before it lets the client
    // in, so that a refused vault credential reads as a refused logon.
    let (target_done, target_outcome) = tokio::sync::watch::channel(None::<bool>);
    let client_leg = client_credssp(
        &mut cf,
        &identity,
        setup.tls.public_key.clone(),
        target_outcome,
    );
    let credential = setup.credential;
    let target_leg = async {
        let r = target_credssp(&mut sf, credential, target_protocol, target_key).await;
        let _ = target_done.send(Some(r.is_ok()));
        r
    };
    let (c, t) = tokio::join!(client_leg, target_leg);
    drop(identity);
    // The client learns whether it is let in (HYBRID_EX's early user
    // authorization result) only once both legs are done: a target that
    // refuses the vault's credential reads as a refused login to the client.
    early_user_auth_result(&mut cf, client_protocol, c.is_ok() && t.is_ok()).await;
    if let Err(e) = c {
        let _ = setup
            .control
            .record_event("rdp.proxy_login_failed", json!({ "message": e.message() }))
            .await;
        return Err(e);
    }
    if let Err(e) = t {
        let e = Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "the RDP target refused the stored credential for `{target_user}`: {}",
                e.message()
            ),
        );
        let _ = setup
            .control
            .record_event(
                "rdp.target_login_failed",
                json!({ "username": target_user, "message": e.message() }),
            )
            .await;
        return Err(e);
    }

    // 4. The MCS Connect Initial names the protocol the target selected.
    let (_, frame) = cf
        .read_pdu()
        .await
        .map_err(|e| io_err("reading the client's connect initial", e))?;
    let patched = patch_connect_initial(&frame, target_protocol)?;
    sf.write_all(&patched)
        .await
        .map_err(|e| io_err("sending the target the connect initial", e))?;
    Ok(Linked {
        client: cf,
        target: sf,
        target_user,
        connect_initial: patched,
        client_protocol: format!("{client_protocol:?}"),
        target_protocol: format!("{target_protocol:?}"),
    })
}

/// CredSSP as the server: the client must prove it knows `identity`.
/// Once it has, the server's proof of its key waits for the target's leg
/// (`target`); a target that refused the vault's credential gets the
/// client a `STATUS_LOGON_FAILURE` instead (the target's refusal is
/// reported by its own leg; this one ends without error).
async fn client_credssp(
    cf: &mut TokioFramed<ClientTls>,
    identity: &sspi::AuthIdentity,
    public_key: Vec<u8>,
    mut target: tokio::sync::watch::Receiver<Option<bool>>,
) -> Result<()> {
    let denied = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("the RDP client's NLA login failed: {e}"),
        )
    };
    let mut buf = WriteBuf::new();
    let mut seq = ironrdp_acceptor::credssp::CredsspSequence::init(
        identity,
        ServerName::new("cpam"),
        public_key,
        None,
    )
    .map_err(|e| denied(&e))?;
    let result: Result<()> = async {
        loop {
            let Some(hint) = seq.next_pdu_hint().map_err(|e| denied(&e))? else {
                break;
            };
            let pdu = cf
                .read_by_hint(hint)
                .await
                .map_err(|e| io_err("NLA with the client", e))?;
            let Some(ts) = seq.decode_client_message(&pdu).map_err(|e| denied(&e))? else {
                break;
            };
            let result = seq.process_ts_request(ts).resolve_to_result();
            let proven = matches!(
                &result,
                Ok(sspi::credssp::ServerState::ReplyNeeded(ts)) if ts.pub_key_auth.is_some()
            );
            if proven {
                let accepted = target
                    .wait_for(Option::is_some)
                    .await
                    .is_ok_and(|v| *v == Some(true));
                if !accepted {
                    let refusal = sspi::credssp::TsRequest {
                        error_code: Some(sspi::credssp::NStatusCode::LOGON_FAILURE),
                        ..Default::default()
                    };
                    let mut bytes = Vec::new();
                    if refusal.encode_ts_request(&mut bytes).is_ok() {
                        let _ = cf.write_all(&bytes).await;
                    }
                    return Ok(());
                }
            }
            buf.clear();
            let (written, _) = seq
                .handle_process_result(result, &mut buf)
                .map_err(|e| denied(&e))?;
            if let Some(n) = written.size() {
                cf.write_all(&buf[..n])
                    .await
                    .map_err(|e| io_err("NLA with the client", e))?;
            }
        }
        Ok(())
    }
    .await;
    result
}

/// With HYBRID_EX, tells the client whether its login was accepted.
async fn early_user_auth_result(
    cf: &mut TokioFramed<ClientTls>,
    protocol: nego::SecurityProtocol,
    accepted: bool,
) {
    use sspi::credssp::EarlyUserAuthResult;
    if !protocol.contains(nego::SecurityProtocol::HYBRID_EX) {
        return;
    }
    let answer = if accepted {
        EarlyUserAuthResult::Success
    } else {
        EarlyUserAuthResult::AccessDenied
    };
    let mut buf = WriteBuf::new();
    if answer.to_buffer(&mut buf).is_ok() {
        let _ = cf.write_all(&buf[..answer.buffer_len()]).await;
    }
}

/// CredSSP as the client: logs in to the target with the vault's credential.
async fn target_credssp(
    sf: &mut TokioFramed<TargetTls>,
    credential: Credential,
    protocol: nego::SecurityProtocol,
    target_key: Vec<u8>,
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::new(ErrorKind::PermissionDenied, e.to_string());
    let mut buf = WriteBuf::new();
    let (mut seq, mut ts) = ironrdp_connector::credssp::CredsspSequence::init(
        Credentials::UsernamePassword {
            username: credential.username.clone(),
            password: credential.secret.expose().clone(),
        },
        None,
        protocol,
        ServerName::new("localhost"),
        target_key,
        None,
    )
    .map_err(|e| failed(&e))?;
    drop(credential);
    loop {
        let state = seq
            .process_ts_request(ts)
            .resolve_to_result()
            .map_err(|e| failed(&e))?;
        buf.clear();
        let written = seq
            .handle_process_result(state, &mut buf)
            .map_err(|e| failed(&e))?;
        if let Some(n) = written.size() {
            sf.write_all(&buf[..n])
                .await
                .map_err(|e| io_err("NLA with the target", e))?;
        }
        let Some(hint) = seq.next_pdu_hint() else {
            break;
        };
        let pdu = sf.read_by_hint(hint).await.map_err(|e| {
            Error::new(
                ErrorKind::PermissionDenied,
                format!("the target closed NLA before accepting the login ({e})"),
            )
        })?;
        match seq.decode_server_message(&pdu).map_err(|e| failed(&e))? {
            Some(next) => ts = next,
            None => break,
        }
    }
    Ok(())
}

/// The client's MCS Connect Initial with `serverSelectedProtocol` set to
/// what the target selected.
fn patch_connect_initial(frame: &[u8], target: nego::SecurityProtocol) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| protocol_err("the client's MCS connect initial", e);
    let x: x224::X224<x224::X224Data<'_>> = ironrdp_core::decode(frame).map_err(|e| bad(&e))?;
    let mut ci: mcs::ConnectInitial = ironrdp_core::decode(&x.0.data).map_err(|e| bad(&e))?;
    let mut blocks = ci.conference_create_request.into_gcc_blocks();
    blocks.core.optional_data.server_selected_protocol = Some(target);
    // No graphics pipeline (EGFX): the target sends bitmap updates.
    if let Some(flags) = blocks.core.optional_data.early_capability_flags.as_mut() {
        flags.remove(ironrdp_pdu::gcc::ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL);
    }
    ci.conference_create_request =
        ironrdp_pdu::gcc::ConferenceCreateRequest::new(blocks).map_err(|e| bad(&e))?;
    let data = ironrdp_core::encode_vec(&ci).map_err(|e| bad(&e))?;
    ironrdp_core::encode_vec(&x224::X224(x224::X224Data { data: data.into() })).map_err(|e| bad(&e))
}
