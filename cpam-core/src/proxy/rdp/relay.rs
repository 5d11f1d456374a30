//! The session after NLA: PDUs pass both ways, each one counted and shown
//! to the session's observers; a session ended from outside sends the
//! client a disconnect PDU and closes both legs.

use std::time::Duration;

use ironrdp_pdu::{mcs, x224};
use ironrdp_tokio::TokioFramed;
use tokio::io::{AsyncWriteExt as _, WriteHalf};

use super::filter;
use super::handshake::Linked;
use crate::error::{Error, ErrorKind, Result};
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
        // Ended from outside: the client is told to disconnect.
        None => {
            let ultimatum = mcs::DisconnectProviderUltimatum::from_reason(
                mcs::DisconnectReason::ProviderInitiated,
            );
            if let Ok(bytes) = ironrdp_core::encode_vec(&x224::X224(ultimatum)) {
                let _ = tokio::time::timeout(CLOSE_WAIT, write(&mut c_write, &bytes)).await;
            }
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
