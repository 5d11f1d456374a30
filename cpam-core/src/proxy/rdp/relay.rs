//! The session after NLA: PDUs pass both ways, each one counted and shown
//! to the session's observers; a session ended from outside sends the
//! client why (a Set Error Info PDU) and a disconnect PDU and closes both
//! legs.

use std::time::Duration;

use ironrdp_pdu::{mcs, x224};
use ironrdp_tokio::TokioFramed;
use tokio::io::{AsyncWriteExt as _, WriteHalf};

use super::filter;
use super::handshake::Linked;
use crate::error::{Error, ErrorKind, Result};
use crate::model::EndReason;
use crate::session::{Direction, LiveSession, Meter as _};

/// How long the close may take once the session is ended from outside.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Relays until either side closes, a side sends something that is not an
/// RDP PDU, or the session is ended.
pub(super) async fn run(linked: Linked, live: &LiveSession) -> Result<()> {
    let connect_initial = linked.connect_initial;
    let (c_stream, c_left) = linked.client.into_inner();
    let (t_stream, t_left) = linked.target.into_inner();
    let (c_read, mut c_write) = tokio::io::split(c_stream);
    let (t_read, mut t_write) = tokio::io::split(t_stream);
    let mut c_read = TokioFramed::new_with_leftover(c_read, c_left);
    let mut t_read = TokioFramed::new_with_leftover(t_read, t_left);
    let control = live.control();
    control.moved(Direction::Up, &connect_initial);
    let ended = {
        let up = async {
            loop {
                let (action, mut pdu) = match c_read.read_pdu().await {
                    Ok(p) => p,
                    Err(e) => break end_of("client", e),
                };
                if action == ironrdp_pdu::Action::X224 {
                    filter::patch_client_pdu(&mut pdu);
                }
                control.moved(Direction::Up, &pdu);
                if let Err(e) = write(&mut t_write, &pdu).await {
                    break end_of("target", e);
                }
            }
        };
        let down = async {
            loop {
                let (_, pdu) = match t_read.read_pdu().await {
                    Ok(p) => p,
                    Err(e) => break end_of("target", e),
                };
                control.moved(Direction::Down, &pdu);
                if let Err(e) = write(&mut c_write, &pdu).await {
                    break end_of("client", e);
                }
            }
        };
        tokio::select! {
            r = up => Some(r),
            r = down => Some(r),
            () = live.cancel().cancelled() => None,
        }
    };
    let result = match ended {
        // Ended from outside: the client is told why, then to disconnect.
        None => {
            let mut bytes = error_info(control.end_reason().map(|(r, _)| r)).unwrap_or_default();
            let ultimatum = mcs::DisconnectProviderUltimatum::from_reason(
                mcs::DisconnectReason::ProviderInitiated,
            );
            if let Ok(b) = ironrdp_core::encode_vec(&x224::X224(ultimatum)) {
                bytes.extend_from_slice(&b);
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, write(&mut c_write, &bytes)).await;
            Ok(())
        }
        Some(r) => r,
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let _ = c_write.shutdown().await;
        let _ = t_write.shutdown().await;
    })
    .await;
    result
}

/// The MCS channel of the server (the sender of its data PDUs) and the
/// I/O channel, as every RDP server numbers them.
const SERVER_CHANNEL_ID: u16 = 1002;
const IO_CHANNEL_ID: u16 = 1003;

/// A Set Error Info PDU saying why the session ends: an expiry is the
/// session time limit, anything else an administrator's disconnect (the
/// client shows it, e.g. FreeRDP's `ERRINFO_LOGON_TIMEOUT`).
fn error_info(reason: Option<EndReason>) -> Option<Vec<u8>> {
    use ironrdp_pdu::rdp::client_info::CompressionType;
    use ironrdp_pdu::rdp::headers::{
        CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
        StreamPriority,
    };
    use ironrdp_pdu::rdp::server_error_info::{
        ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu,
    };
    let code = match reason {
        Some(EndReason::Expired) => ProtocolIndependentCode::LogonTimeout,
        _ => ProtocolIndependentCode::RpcInitiatedDisconnect,
    };
    let header = ShareControlHeader {
        share_id: 0,
        pdu_source: SERVER_CHANNEL_ID,
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(
                ErrorInfo::ProtocolIndependentCode(code),
            )),
            stream_priority: StreamPriority::Undefined,
            compression_flags: CompressionFlags::empty(),
            compression_type: CompressionType::K8,
        }),
    };
    let user_data = ironrdp_core::encode_vec(&header).ok()?;
    let pdu = mcs::SendDataIndication {
        initiator_id: SERVER_CHANNEL_ID,
        channel_id: IO_CHANNEL_ID,
        user_data: user_data.into(),
    };
    ironrdp_core::encode_vec(&x224::X224(pdu)).ok()
}

async fn write<S: tokio::io::AsyncWrite>(w: &mut WriteHalf<S>, pdu: &[u8]) -> std::io::Result<()> {
    w.write_all(pdu).await?;
    w.flush().await
}

/// How one direction ended: a closed connection is how sessions end; bytes
/// that are not RDP end the session as an error.
fn end_of(side: &str, e: std::io::Error) -> Result<()> {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::UnexpectedEof
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::NotConnected => Ok(()),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            format!("the RDP {side} sent what is not RDP: {e}"),
        )),
    }
}
