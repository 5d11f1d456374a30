//! Capability filtering, sans I/O: the client's PDUs patched so the target
//! sends what the proxy's decoder reads (plain bitmap updates), as
//! Infisical's bridge does it: byte patches in place, because a typed
//! decode and encode may lose fields the target relies on.
//!
//! - Client Info: no bulk compression (`INFO_COMPRESSION` and the
//!   compression type cleared).
//! - Confirm Active: no drawing orders (`orderSupport` all zero) and no
//!   bitmap codecs (RemoteFX, NSCodec, AVC: the codec count set to 0).
//!
//! The MCS Connect Initial (patched in `handshake.rs`) also drops the
//! client's graphics pipeline (EGFX) flag.

use ironrdp_pdu::{mcs, x224};

/// `SEC_INFO_PKT`: the basic security header of a Client Info PDU.
const SEC_INFO_PKT: u16 = 0x0040;
/// `INFO_COMPRESSION` and `CompressionTypeMask` in TS_INFO_PACKET's flags.
const INFO_COMPRESSION_BITS: u32 = 0x0000_0080 | 0x0000_1E00;
/// `PDUTYPE_CONFIRMACTIVEPDU`, the low bits of a share control header's type.
const PDUTYPE_CONFIRMACTIVE: u16 = 0x3;
const CAPSTYPE_ORDER: u16 = 0x0003;
const CAPSTYPE_BITMAP_CODECS: u16 = 0x001D;
/// `orderSupport` starts this far into an order capability set.
const ORDER_SUPPORT_AT: usize = 36;

/// What [`patch_client_pdu`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Patched {
    Nothing,
    ClientInfo,
    ConfirmActive,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Where the MCS user data of a client slow-path PDU starts in `frame`.
fn user_data_at(frame: &[u8]) -> Option<usize> {
    let pdu: x224::X224<mcs::SendDataRequest<'_>> = ironrdp_core::decode(frame).ok()?;
    let data = pdu.0.user_data.as_ref();
    let at = (data.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    (at + data.len() <= frame.len()).then_some(at)
}

/// Patches one client-to-target PDU in place (a slow-path X.224 frame;
/// anything else is left alone).
pub(crate) fn patch_client_pdu(frame: &mut [u8]) -> Patched {
    let Some(at) = user_data_at(frame) else {
        return Patched::Nothing;
    };
    let data = &mut frame[at..];
    // Client Info: basic security header (flags, flagsHi), CodePage, flags.
    if u16_at(data, 0).is_some_and(|f| f & SEC_INFO_PKT != 0) {
        if let Some(flags) = u32_at(data, 8) {
            let cleared = flags & !INFO_COMPRESSION_BITS;
            data[8..12].copy_from_slice(&cleared.to_le_bytes());
            return Patched::ClientInfo;
        }
        return Patched::Nothing;
    }
    // Share control header: totalLength, pduType, pduSource.
    if u16_at(data, 2).is_some_and(|t| t & 0xF == PDUTYPE_CONFIRMACTIVE) {
        return if patch_confirm_active(data) {
            Patched::ConfirmActive
        } else {
            Patched::Nothing
        };
    }
    Patched::Nothing
}

/// Walks the capability sets of a Confirm Active PDU (from its share
/// control header) and patches the order and bitmap codec sets.
fn patch_confirm_active(pdu: &mut [u8]) -> bool {
    // shareControlHeader (6), shareId (4), originatorId (2),
    // lengthSourceDescriptor (2), lengthCombinedCapabilities (2).
    let Some(source_len) = u16_at(pdu, 12) else {
        return false;
    };
    let caps_at = 16 + usize::from(source_len);
    let Some(count) = u16_at(pdu, caps_at) else {
        return false;
    };
    // numberCapabilities (2), pad2Octets (2).
    let mut at = caps_at + 4;
    for _ in 0..count {
        let (Some(kind), Some(len)) = (u16_at(pdu, at), u16_at(pdu, at + 2)) else {
            return false;
        };
        let len = usize::from(len);
        if len < 4 || at + len > pdu.len() {
            return false;
        }
        let set = &mut pdu[at..at + len];
        match kind {
            CAPSTYPE_ORDER if set.len() >= ORDER_SUPPORT_AT + 32 => {
                set[ORDER_SUPPORT_AT..ORDER_SUPPORT_AT + 32].fill(0);
            }
            CAPSTYPE_BITMAP_CODECS if set.len() >= 5 => set[4] = 0,
            _ => {}
        }
        at += len;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client slow-path frame carrying `user_data` on channel 1003.
    fn frame(user_data: &[u8]) -> Vec<u8> {
        let pdu = mcs::SendDataRequest {
            initiator_id: 1007,
            channel_id: 1003,
            user_data: std::borrow::Cow::Borrowed(user_data),
        };
        ironrdp_core::encode_vec(&x224::X224(pdu)).expect("encodes")
    }

    fn user_data(frame: &[u8]) -> Vec<u8> {
        frame[user_data_at(frame).expect("user data")..].to_vec()
    }

    #[test]
    fn client_info_loses_its_compression_flags_and_nothing_else() {
        let mut info = vec![0x40, 0x00, 0x00, 0x00]; // SEC_INFO_PKT
        info.extend_from_slice(&0x0409u32.to_le_bytes()); // CodePage
        // INFO_MOUSE | INFO_DISABLECTRLALTDEL | INFO_UNICODE | INFO_MAXIMIZESHELL
        // | INFO_LOGONNOTIFY, plus INFO_COMPRESSION and PACKET_COMPR_TYPE_64K.
        let kept = 0x0000_4033u32;
        info.extend_from_slice(&(kept | 0x80 | 0x0200).to_le_bytes()); // flags
        info.extend_from_slice(b"rest of the packet");
        let mut f = frame(&info);
        assert_eq!(patch_client_pdu(&mut f), Patched::ClientInfo);
        let out = user_data(&f);
        assert_eq!(u32_at(&out, 8), Some(kept));
        assert_eq!(&out[12..], b"rest of the packet");
    }

    #[test]
    fn confirm_active_loses_orders_and_codecs() {
        let mut order = vec![0x03, 0x00, 88, 0x00];
        order.extend_from_slice(&[0xAA; 84]);
        let mut codecs = vec![0x1D, 0x00, 8, 0x00, 2, 0xBB, 0xBB, 0xBB];
        let general = [0x01, 0x00, 6, 0x00, 0xCC, 0xCC];
        let mut pdu = Vec::new();
        pdu.extend_from_slice(&[0, 0, 0x13, 0x00, 0xEF, 0x03]); // share control: confirm active
        pdu.extend_from_slice(&0x0001_03EAu32.to_le_bytes()); // shareId
        pdu.extend_from_slice(&0x03EAu16.to_le_bytes()); // originatorId
        pdu.extend_from_slice(&6u16.to_le_bytes()); // lengthSourceDescriptor
        pdu.extend_from_slice(&0u16.to_le_bytes()); // lengthCombinedCapabilities
        pdu.extend_from_slice(b"MSTSC\0");
        pdu.extend_from_slice(&3u16.to_le_bytes());
        pdu.extend_from_slice(&[0, 0]);
        pdu.extend_from_slice(&general);
        pdu.append(&mut order);
        pdu.append(&mut codecs);
        let mut f = frame(&pdu);
        assert_eq!(patch_client_pdu(&mut f), Patched::ConfirmActive);
        let out = user_data(&f);
        let sets = 16 + 6 + 4;
        assert_eq!(&out[sets..sets + 6], &general, "other sets untouched");
        let order_at = sets + 6;
        assert!(out[order_at + 36..order_at + 68].iter().all(|b| *b == 0));
        assert_eq!(
            out[order_at + 4],
            0xAA,
            "the rest of the order set untouched"
        );
        let codecs_at = order_at + 88;
        assert_eq!(out[codecs_at + 4], 0, "no codecs");
    }

    #[test]
    fn other_pdus_and_garbage_pass_unchanged() {
        let data_pdu = [0, 0, 0x17, 0x00, 0xEF, 0x03, 1, 2, 3];
        let mut f = frame(&data_pdu);
        let before = f.clone();
        assert_eq!(patch_client_pdu(&mut f), Patched::Nothing);
        assert_eq!(f, before);
        for garbage in [
            &b""[..],
            b"\x03\x00\x00\x04",
            b"\x03\x00\xff\xff\x02\xf0\x80\x64",
        ] {
            let mut g = garbage.to_vec();
            assert_eq!(patch_client_pdu(&mut g), Patched::Nothing);
            assert_eq!(g, garbage);
        }
    }
}
