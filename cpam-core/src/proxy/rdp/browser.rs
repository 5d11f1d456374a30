//! The browser desktop: a privileged RDP session whose user is a web page.
//!
//! The page is not an RDP client, so the server runs one in-process
//! (IronRDP's connector): the session is approved and run by the engine
//! through the same [`RdpProxy`] as a vendor's `xfreerdp` (so the target
//! leg — the gatekeeper's dialer, the pinned certificate, NLA with the
//! vault's credential, the filtered capabilities —, recording, the live
//! view, terminate, expiry and audit are the one path), with an in-memory
//! duplex as the user's stream. On the other end of the duplex the
//! in-process client pins the proxy's key, logs in with a one-time proxy
//! credential issued for this session after the master password the page
//! sent, and sends the page's keys and pointer as fast-path input PDUs
//! (relayed, and recorded, like any client's). The page sees the desktop
//! as the session's watchers do: the [`LiveHub`]'s whole desktop, then
//! PNG tiles of what changed, then the end with its reason. The target's
//! credential stays between the proxy and the target.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ironrdp_connector::{ClientConnector, Credentials, DesktopSize, ServerName};
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use ironrdp_tokio::TokioFramed;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};

use super::RdpProxy;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditCategory, AuditEvent, Service, ServiceKind, SessionProtocol, User};
use crate::record::{LiveHub, WatchFrame};
use crate::secret::Secret;
use crate::session::{LiveSession, Originator, Protocol, SessionControl, SessionEngine, Upstream};
use crate::throttle::Throttle;
use crate::tunnel::dialer::{Connection, Dialer};

/// A mouse button of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseButton {
    Left,
    Middle,
    Right,
}

/// What the page sends once the desktop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesktopInput {
    /// A key pressed or released: its set-1 scancode, `0xE0xx` for an
    /// extended key.
    Key { scancode: u16, down: bool },
    /// The pointer moved to (`x`, `y`).
    Pointer { x: u16, y: u16 },
    /// A button pressed or released at (`x`, `y`).
    Button {
        x: u16,
        y: u16,
        button: MouseButton,
        down: bool,
    },
    /// The vertical wheel turned at (`x`, `y`): positive away from the
    /// user, in wheel units (120 a notch).
    Wheel { x: u16, y: u16, delta: i16 },
}

impl DesktopInput {
    /// The input as one fast-path input PDU; `None` for a scancode that
    /// is not one.
    pub fn to_pdu(self) -> Option<Vec<u8>> {
        let event = match self {
            DesktopInput::Key { scancode, down } => {
                let mut flags = KeyboardFlags::empty();
                match scancode >> 8 {
                    0 => {}
                    0xE0 => flags |= KeyboardFlags::EXTENDED,
                    _ => return None,
                }
                if !down {
                    flags |= KeyboardFlags::RELEASE;
                }
                let code = u8::try_from(scancode & 0xff).ok()?;
                if code == 0 || code > 0x7f {
                    return None;
                }
                FastPathInputEvent::KeyboardEvent(flags, code)
            }
            DesktopInput::Pointer { x, y } => FastPathInputEvent::MouseEvent(MousePdu {
                flags: PointerFlags::MOVE,
                number_of_wheel_rotation_units: 0,
                x_position: x,
                y_position: y,
            }),
            DesktopInput::Button { x, y, button, down } => {
                let mut flags = match button {
                    MouseButton::Left => PointerFlags::LEFT_BUTTON,
                    MouseButton::Middle => PointerFlags::MIDDLE_BUTTON_OR_WHEEL,
                    MouseButton::Right => PointerFlags::RIGHT_BUTTON,
                };
                if down {
                    flags |= PointerFlags::DOWN;
                }
                FastPathInputEvent::MouseEvent(MousePdu {
                    flags,
                    number_of_wheel_rotation_units: 0,
                    x_position: x,
                    y_position: y,
                })
            }
            DesktopInput::Wheel { x, y, delta } => {
                let units = delta.clamp(-255, 255);
                let mut flags = PointerFlags::VERTICAL_WHEEL;
                if units < 0 {
                    flags |= PointerFlags::WHEEL_NEGATIVE;
                }
                FastPathInputEvent::MouseEvent(MousePdu {
                    flags,
                    number_of_wheel_rotation_units: units,
                    x_position: x,
                    y_position: y,
                })
            }
        };
        ironrdp_core::encode_vec(&FastPathInput::single(event)).ok()
    }
}

/// What the page asked for.
#[derive(Debug)]
pub struct DesktopRequest {
    pub user: User,
    pub service: Service,
    pub originator: Originator,
    pub master_password: Secret<String>,
    /// The desktop size asked of the target (it may choose another).
    pub width: u16,
    pub height: u16,
}

/// Runs browser desktops (see the module docs).
#[derive(Debug, Clone)]
pub struct BrowserDesktop {
    pub engine: Arc<SessionEngine>,
    pub proxy: Arc<RdpProxy>,
    /// How targets are reached (the hub's gatekeeper dialer).
    pub dialer: Arc<dyn Dialer>,
    /// Where the page's desktop images come from.
    pub live: Arc<LiveHub>,
    /// Master password failures (the hub's).
    pub throttle: Arc<Throttle>,
}

/// The RDP proxy, telling the page's side which session it runs.
#[derive(Debug)]
struct Announced {
    proxy: Arc<RdpProxy>,
    started: Mutex<Option<oneshot::Sender<SessionControl>>>,
}

#[async_trait]
impl Protocol for Announced {
    fn kind(&self) -> SessionProtocol {
        self.proxy.kind()
    }

    fn dials_itself(&self) -> bool {
        self.proxy.dials_itself()
    }

    async fn run(&self, user: Connection, upstream: Upstream, live: &LiveSession) -> Result<()> {
        let started = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = started {
            let _ = tx.send(live.control());
        }
        self.proxy.run(user, upstream, live).await
    }
}

/// Kerberos is not used (NTLM to the proxy): no network requests.
struct NoNetwork;

impl ironrdp_tokio::NetworkClient for NoNetwork {
    async fn send(
        &mut self,
        _: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!(
            "no network requests in the browser desktop"
        ))
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Protocol, format!("{what}: {e}"))
}

/// Why a session ended, as its watchers read it.
fn end_text(session: &crate::model::Session) -> String {
    match (&session.end_reason, &session.end_detail) {
        (Some(r), Some(d)) if !d.is_empty() => format!("{}: {d}", r.as_str()),
        (Some(r), _) => r.as_str().to_string(),
        (None, _) => "ended".to_string(),
    }
}

impl BrowserDesktop {
    /// Runs a desktop for `req` until the session ends or the page goes:
    /// the desktop's images and the end go to `frames`, `input` feeds the
    /// target. Refusals (no online gatekeeper, no grant or checkout, a
    /// wrong master password, a target that refuses the vault's
    /// credential) come back as errors whose message the page shows.
    pub async fn run(
        &self,
        req: DesktopRequest,
        input: mpsc::Receiver<DesktopInput>,
        frames: mpsc::Sender<WatchFrame>,
    ) -> Result<()> {
        if req.service.kind != ServiceKind::Rdp {
            return Err(Error::invalid(format!(
                "service `{}` is not an RDP service",
                req.service.name
            )));
        }
        let approval = self
            .engine
            .approve_in_server(&req.user, &req.service, &req.originator)
            .await?;
        crate::vault::verify_master_password(
            self.engine.store(),
            self.engine.audit(),
            &self.throttle,
            &req.user,
            &req.master_password,
        )
        .await?;
        let password = self
            .proxy
            .credentials()
            .issue(&req.user.id, &req.service.id);
        // Audited as a Connection Manager's request is; it never leaves
        // the server.
        self.engine
            .record(AuditEvent {
                at: self.engine.clock().now(),
                category: AuditCategory::UserActivity,
                action: "rdp.credential_issued".into(),
                actor: req.user.name.clone(),
                customer_id: Some(req.service.customer_id.clone()),
                session_id: None,
                detail: serde_json::json!({ "service": req.service.name,
                    "service_id": req.service.id, "for": "browser_desktop" }),
            })
            .await;
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (started_tx, started) = oneshot::channel();
        let protocol = Announced {
            proxy: self.proxy.clone(),
            started: Mutex::new(Some(started_tx)),
        };
        let mut session = {
            let (engine, dialer) = (self.engine.clone(), self.dialer.clone());
            tokio::spawn(async move {
                engine
                    .run(
                        approval,
                        Box::new(Connection::stream(theirs)),
                        dialer,
                        &protocol,
                    )
                    .await
            })
        };
        let client = Client {
            user: req.user.name.clone(),
            password,
            size: DesktopSize {
                width: req.width,
                height: req.height,
            },
            proxy_key: self.proxy.tls().public_key.clone(),
        };
        let connected = tokio::select! {
            r = client.connect(ours) => r,
            // The session ended before the desktop was up: its reason.
            ended = &mut session => return Err(match ended {
                Ok(Ok(s)) => Error::new(ErrorKind::Conflict, end_text(&s)),
                Ok(Err(e)) => e,
                Err(e) => Error::new(ErrorKind::Internal, format!("the session failed: {e}")),
            }),
        };
        let stream = match connected {
            Ok(s) => s,
            Err(e) => {
                // The proxy's view (e.g. the target refused the vault's
                // credential) says more than the client's.
                return Err(match session.await {
                    Ok(Ok(s)) if s.end_detail.as_deref().is_some_and(|d| !d.is_empty()) => {
                        Error::new(ErrorKind::PermissionDenied, end_text(&s))
                    }
                    Ok(Err(se)) => se,
                    _ => e,
                });
            }
        };
        let control = started.await.map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "the session did not start its protocol",
            )
        })?;
        let pump = pump(&self.live, &control, &frames);
        let relay = relay_input(stream, input);
        let (told, ()) = tokio::join!(pump, relay);
        let ended = session
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("the session failed: {e}")))??;
        if !told {
            // Ended before it could be shown: its end is said here.
            let _ = frames.send(WatchFrame::End(end_text(&ended))).await;
        }
        Ok(())
    }
}

/// The in-process RDP client's login.
struct Client {
    user: String,
    password: Secret<String>,
    size: DesktopSize,
    proxy_key: Vec<u8>,
}

type ClientTls = ironrdp_tls::TlsStream<tokio::io::DuplexStream>;

impl Client {
    /// The connection sequence with the proxy, up to the active session.
    async fn connect(self, stream: tokio::io::DuplexStream) -> Result<TokioFramed<ClientTls>> {
        let config = config(&self.user, self.password.expose(), self.size);
        drop(self.password);
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut connector = ClientConnector::new(config, addr);
        let mut framed = TokioFramed::new(stream);
        let upgrade = ironrdp_tokio::connect_begin(&mut framed, &mut connector)
            .await
            .map_err(|e| failed("connecting", e))?;
        let (stream, left) = framed.into_inner();
        if !left.is_empty() {
            return Err(failed("connecting", "bytes came before TLS"));
        }
        super::tls::ensure_tls_provider();
        let (tls, cert) = ironrdp_tls::upgrade_with_certificate_validation(
            stream,
            "cpam",
            ironrdp_tls::CertificateValidation::DangerouslyAcceptInvalidCertificate,
        )
        .await
        .map_err(|e| failed("TLS with the proxy", e))?;
        // In-process: the key must be the proxy's own.
        let key = ironrdp_tls::extract_tls_server_public_key(&cert)
            .ok_or_else(|| failed("TLS with the proxy", "no public key"))?
            .to_vec();
        if key != self.proxy_key {
            return Err(failed("TLS with the proxy", "not the proxy's key"));
        }
        let upgraded = ironrdp_tokio::mark_as_upgraded(upgrade, &mut connector);
        let mut framed = TokioFramed::new(tls);
        let outcome = ironrdp_tokio::connect_finalize(
            upgraded,
            connector,
            &mut framed,
            &mut NoNetwork,
            ServerName::new("cpam"),
            key,
            None,
        )
        .await
        .map_err(|e| failed("the RDP connection", e))?;
        outcome
            .into_connected()
            .map_err(|e| failed("the RDP connection", e))?;
        Ok(framed)
    }
}

/// How long the desktop may take to be shown once connected.
const DESKTOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The session's desktop, as its watchers see it, to the page until the
/// session ends or the page goes; whether the page was told the end.
async fn pump(live: &LiveHub, control: &SessionControl, frames: &mpsc::Sender<WatchFrame>) -> bool {
    let deadline = tokio::time::Instant::now() + DESKTOP_WAIT;
    let mut watch = loop {
        if let Some(w) = live.watch(control.id()) {
            break w;
        }
        if control.cancelled().is_cancelled() || tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            () = frames.closed() => return false,
        }
    };
    while let Some(frame) = tokio::select! {
        f = watch.next() => f,
        () = frames.closed() => None,
    } {
        let last = matches!(frame, WatchFrame::End(_));
        if frames.send(frame).await.is_err() || last {
            return last;
        }
    }
    false
}

/// The in-process client's settings: NLA only, no compression, the
/// page's desktop size.
fn config(user: &str, password: &str, size: DesktopSize) -> ironrdp_connector::Config {
    use ironrdp_pdu::gcc;
    use ironrdp_pdu::rdp::capability_sets::{MajorPlatformType, RailSupportLevel};
    ironrdp_connector::Config {
        desktop_size: size,
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: false,
        enable_credssp: true,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: user.to_string(),
            password: password.to_string(),
        },
        domain: None,
        client_build: 0,
        client_name: "cpam-browser".into(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: 0,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: None,
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: false,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// The page's input to the proxy (what the proxy sends back is drawn from
/// the live view, so it is only read), until the session or the page ends.
async fn relay_input(framed: TokioFramed<ClientTls>, mut input: mpsc::Receiver<DesktopInput>) {
    let (stream, left) = framed.into_inner();
    let (read, mut write) = tokio::io::split(stream);
    let mut read = TokioFramed::new_with_leftover(read, left);
    loop {
        tokio::select! {
            pdu = read.read_pdu() => if pdu.is_err() {
                break;
            },
            event = input.recv() => match event {
                Some(event) => {
                    let Some(pdu) = event.to_pdu() else { continue };
                    if write.write_all(&pdu).await.is_err() || write.flush().await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
#[path = "browser_tests.rs"]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::input::fast_path::FastPathInput;

    fn decode(pdu: &[u8]) -> Vec<FastPathInputEvent> {
        let input: FastPathInput = ironrdp_core::decode(pdu).expect("a fast-path input PDU");
        input.input_events().to_vec()
    }

    #[test]
    fn page_input_becomes_fast_path_input() {
        let key = DesktopInput::Key {
            scancode: 0x1e,
            down: true,
        };
        assert_eq!(
            decode(&key.to_pdu().expect("a key")),
            [FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::empty(),
                0x1e
            )]
        );
        let up = DesktopInput::Key {
            scancode: 0xe048,
            down: false,
        };
        assert_eq!(
            decode(&up.to_pdu().expect("an extended key")),
            [FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::EXTENDED | KeyboardFlags::RELEASE,
                0x48
            )]
        );
        for bad in [0x1ff, 0xe000, 0x80] {
            let k = DesktopInput::Key {
                scancode: bad,
                down: true,
            };
            assert!(k.to_pdu().is_none(), "{bad:#x}");
        }
        let click = DesktopInput::Button {
            x: 10,
            y: 20,
            button: MouseButton::Right,
            down: true,
        };
        assert_eq!(
            decode(&click.to_pdu().expect("a click")),
            [FastPathInputEvent::MouseEvent(MousePdu {
                flags: PointerFlags::RIGHT_BUTTON | PointerFlags::DOWN,
                number_of_wheel_rotation_units: 0,
                x_position: 10,
                y_position: 20,
            })]
        );
        let wheel = DesktopInput::Wheel {
            x: 1,
            y: 2,
            delta: -120,
        };
        let events = decode(&wheel.to_pdu().expect("a wheel"));
        let FastPathInputEvent::MouseEvent(m) = events[0] else {
            panic!("{events:?}")
        };
        assert!(m.flags.contains(PointerFlags::WHEEL_NEGATIVE));
        assert_eq!(m.number_of_wheel_rotation_units, -120);
    }
}
