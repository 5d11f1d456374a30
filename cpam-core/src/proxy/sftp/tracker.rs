//! The SFTP observer of one channel, sans I/O: fed the client's bytes
//! (`up`) and the server's (`down`), it says what to pass on, what to
//! answer itself (a refusal), which requests of its own to send, and which
//! audit events happened.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;

use super::codec::{self, FrameError, Framer, PathOp, Reply, Request};
use super::digest::Digest;
use super::events;
use super::policy::{FilePolicy, normalize};
use crate::model::Timestamp;

/// Request ids the proxy uses for its own `realpath` requests, counting
/// down from the top of the id space (OpenSSH's clients count up from 0).
const OWN_IDS: u32 = 0xFFFF_0000;

/// An audit event: the session event action and its detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub action: &'static str,
    pub detail: serde_json::Value,
}

/// What to do with bytes fed to the tracker.
#[derive(Debug, Default)]
pub struct Output {
    /// Packets for the target (requests passed on, and the proxy's own).
    pub to_target: Vec<Bytes>,
    /// Packets for the vendor (replies passed on, and refusals).
    pub to_vendor: Vec<Bytes>,
    pub events: Vec<Event>,
}

/// The stream cannot be followed: the channel must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{direction}: {reason}")]
pub struct Fatal {
    pub direction: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Upload,
    Download,
}

impl Way {
    fn as_str(self) -> &'static str {
        match self {
            Way::Upload => "upload",
            Way::Download => "download",
        }
    }
}

/// A file opened (or being opened).
#[derive(Debug)]
struct File {
    path: String,
    way: Way,
    pflags: u32,
    started: Timestamp,
    read: Digest,
    written: Digest,
    /// The client read up to the end of the file.
    eof: bool,
    refused: Option<String>,
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    Open(Box<File>),
    Read {
        handle: Vec<u8>,
        offset: u64,
    },
    Close {
        handle: Vec<u8>,
    },
    Op {
        op: PathOp,
        path: String,
        second: Option<String>,
    },
    /// The proxy's `realpath(".")`: the session's working directory.
    Home,
    /// The proxy's `realpath` of a path a held request names.
    Resolve(Box<Held>),
}

/// A request held back until the target resolved its paths.
#[derive(Debug)]
struct Held {
    packet: Bytes,
    request: Request,
    /// The normalized paths still to resolve (the first is asked).
    paths: Vec<Vec<u8>>,
    /// What to do once all are inside the prefixes.
    then: Box<Pending>,
}

/// The SFTP observer and policy enforcer of one channel.
#[derive(Debug)]
pub struct Tracker {
    policy: FilePolicy,
    up: Framer,
    down: Framer,
    cwd: Option<Vec<u8>>,
    version: Option<Bytes>,
    home_pending: bool,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, File>,
    next_own: u32,
}

fn text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Tracker {
    pub fn new(policy: FilePolicy) -> Self {
        Self {
            policy,
            up: Framer::default(),
            down: Framer::default(),
            cwd: None,
            version: None,
            home_pending: false,
            pending: HashMap::new(),
            handles: HashMap::new(),
            next_own: u32::MAX,
        }
    }

    fn own_id(&mut self) -> u32 {
        let id = self.next_own;
        self.next_own = if id <= OWN_IDS { u32::MAX } else { id - 1 };
        id
    }

    /// The client's bytes.
    pub fn up(&mut self, data: &[u8], now: Timestamp) -> Result<Output, Fatal> {
        let fatal = |reason: String| Fatal {
            direction: "from the vendor",
            reason,
        };
        let packets = self.up.push(data).map_err(|e| fatal(e.to_string()))?;
        let mut out = Output::default();
        for packet in packets {
            let request = codec::parse_request(&packet).map_err(|e| fatal(e.to_string()))?;
            self.request(packet, request, now, &mut out);
        }
        Ok(out)
    }

    /// The server's bytes.
    pub fn down(&mut self, data: &[u8], now: Timestamp) -> Result<Output, Fatal> {
        let fatal = |reason: String| Fatal {
            direction: "from the target",
            reason,
        };
        let packets = self
            .down
            .push(data)
            .map_err(|e: FrameError| fatal(e.to_string()))?;
        let mut out = Output::default();
        for packet in packets {
            let reply = codec::parse_reply(&packet).map_err(|e| fatal(e.to_string()))?;
            self.reply(packet, reply, now, &mut out);
        }
        Ok(out)
    }

    /// The channel ended: every file still open is `incomplete`.
    pub fn finish(&mut self, now: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        let mut open: Vec<File> = self.handles.drain().map(|(_, f)| f).collect();
        open.extend(self.pending.drain().filter_map(|(_, p)| match p {
            Pending::Open(f) => Some(*f),
            _ => None,
        }));
        open.sort_by(|a, b| a.path.cmp(&b.path));
        for f in open {
            events.push(file_event(f, "incomplete", None, now));
        }
        events
    }

    fn refuse(&self, id: Option<u32>, why: &str, out: &mut Output) {
        if let Some(id) = id {
            out.to_vendor.push(codec::status(
                id,
                codec::FX_PERMISSION_DENIED,
                &format!("cpam policy: {why}"),
            ));
        }
    }

    /// A path the client named, normalized; or why it is refused.
    fn check_path(&self, path: &[u8]) -> Result<Vec<u8>, String> {
        let cwd = match &self.cwd {
            Some(c) => c.as_slice(),
            None if path.starts_with(b"/") || !self.policy.restricts() => b"/",
            None => return Err("relative path before the home directory is known".into()),
        };
        let n = normalize(cwd, path).map_err(|e| format!("path `{}`: {e}", text(path)))?;
        if !self.policy.path_allowed(&n) {
            return Err(format!(
                "path `{}` is outside the allowed directories",
                text(&n)
            ));
        }
        Ok(n)
    }

    fn request(&mut self, packet: Bytes, request: Request, now: Timestamp, out: &mut Output) {
        match &request {
            Request::Init => {
                out.to_target.push(packet);
                let own = self.own_id();
                self.pending.insert(own, Pending::Home);
                self.home_pending = true;
                out.to_target.push(codec::realpath(own, b"."));
            }
            Request::Open {
                id, path, pflags, ..
            } => {
                let way = if pflags & codec::FXF_WRITE != 0 {
                    Way::Upload
                } else {
                    Way::Download
                };
                let mut file = File {
                    path: text(path),
                    way,
                    pflags: *pflags,
                    started: now,
                    read: Digest::default(),
                    written: Digest::default(),
                    eof: false,
                    refused: None,
                };
                let checked = self.check_path(path).and_then(|n| {
                    file.path = text(&n);
                    if pflags & codec::FXF_WRITE != 0 && !self.policy.upload {
                        return Err("uploads are not allowed".into());
                    }
                    if pflags & codec::FXF_READ != 0 && !self.policy.download {
                        return Err("downloads are not allowed".into());
                    }
                    if self.policy.extension_blocked(&n) {
                        return Err(format!("`{}` has a blocked extension", text(&n)));
                    }
                    Ok(n)
                });
                match checked {
                    Ok(n) => self.pass_or_resolve(
                        *id,
                        packet,
                        request.clone(),
                        vec![n],
                        Pending::Open(Box::new(file)),
                        out,
                    ),
                    Err(why) => {
                        self.refuse(Some(*id), &why, out);
                        out.events
                            .push(file_event(file, "refused", Some(&why), now));
                    }
                }
            }
            Request::Read {
                id,
                handle,
                offset,
                len,
            } => {
                let limit = self.policy.max_size;
                match (self.handles.get_mut(handle), limit) {
                    (Some(f), Some(max)) if *offset >= max => {
                        let why = format!("the file is larger than the limit of {max} bytes");
                        f.refused = Some(why.clone());
                        self.refuse(Some(*id), &why, out);
                    }
                    (Some(_), Some(max)) if offset.saturating_add(u64::from(*len)) > max => {
                        // A short read up to the limit; the next one is refused.
                        let len = (max - offset) as u32;
                        self.pending.insert(
                            *id,
                            Pending::Read {
                                handle: handle.clone(),
                                offset: *offset,
                            },
                        );
                        out.to_target.push(codec::read(*id, handle, *offset, len));
                    }
                    (Some(_), _) => {
                        self.pending.insert(
                            *id,
                            Pending::Read {
                                handle: handle.clone(),
                                offset: *offset,
                            },
                        );
                        out.to_target.push(packet);
                    }
                    (None, _) => out.to_target.push(packet),
                }
            }
            Request::Write {
                id,
                handle,
                offset,
                data,
            } => {
                let len = (data.end - data.start) as u64;
                let limit = self.policy.max_size;
                match self.handles.get_mut(handle) {
                    Some(f) => {
                        if let Some(max) = limit.filter(|m| offset.saturating_add(len) > *m) {
                            let why = format!("the file would exceed the limit of {max} bytes");
                            f.refused = Some(why.clone());
                            self.refuse(Some(*id), &why, out);
                        } else {
                            f.written.feed(*offset, packet.slice(data.clone()));
                            out.to_target.push(packet);
                        }
                    }
                    None => out.to_target.push(packet),
                }
            }
            Request::Close { id, handle } => {
                self.pending.insert(
                    *id,
                    Pending::Close {
                        handle: handle.clone(),
                    },
                );
                out.to_target.push(packet);
            }
            Request::Path { id, op, path } => {
                let checked = self.check_path(path).and_then(|n| {
                    if op.modifies() && !self.policy.upload {
                        return Err("changes to the target's files are not allowed".into());
                    }
                    Ok(n)
                });
                match checked {
                    Ok(n) => {
                        let pending = Pending::Op {
                            op: *op,
                            path: text(&n),
                            second: None,
                        };
                        self.pass_or_resolve(*id, packet, request.clone(), vec![n], pending, out)
                    }
                    Err(why) => {
                        self.refuse(Some(*id), &why, out);
                        out.events
                            .push(op_event(*op, &text(path), None, "refused", &why));
                    }
                }
            }
            Request::HandleSetstat { id, handle } => {
                let path = self.handles.get(handle).map(|f| f.path.clone());
                if let Some(path) = path {
                    self.pending.insert(
                        *id,
                        Pending::Op {
                            op: PathOp::Setstat,
                            path,
                            second: None,
                        },
                    );
                }
                out.to_target.push(packet);
            }
            Request::TwoPaths {
                id,
                op,
                first,
                second,
            } => {
                // OpenSSH's symlink sends the link's target first and the
                // link second; a relative target is relative to the link.
                let checked = if *op == PathOp::Symlink {
                    self.check_path(second).and_then(|link| {
                        let dir = match link.iter().rposition(|b| *b == b'/') {
                            Some(0) | None => b"/".to_vec(),
                            Some(i) => link[..i].to_vec(),
                        };
                        let target = normalize(&dir, first)
                            .map_err(|e| format!("link target `{}`: {e}", text(first)))?;
                        if !self.policy.path_allowed(&target) {
                            return Err(format!(
                                "link target `{}` is outside the allowed directories",
                                text(&target)
                            ));
                        }
                        Ok((target, link))
                    })
                } else {
                    self.check_path(first).and_then(|a| {
                        let b = self.check_path(second)?;
                        if self.policy.extension_blocked(&b) {
                            return Err(format!("`{}` has a blocked extension", text(&b)));
                        }
                        Ok((a, b))
                    })
                };
                let checked = checked.and_then(|p| {
                    if !self.policy.upload {
                        return Err("changes to the target's files are not allowed".into());
                    }
                    Ok(p)
                });
                match checked {
                    Ok((a, b)) => {
                        let pending = Pending::Op {
                            op: *op,
                            path: text(&a),
                            second: Some(text(&b)),
                        };
                        // A symlink's target need not exist: only the
                        // link's directory is resolved.
                        let paths = if *op == PathOp::Symlink {
                            vec![b]
                        } else {
                            vec![a, b]
                        };
                        self.pass_or_resolve(*id, packet, request.clone(), paths, pending, out)
                    }
                    Err(why) => {
                        self.refuse(Some(*id), &why, out);
                        out.events.push(op_event(
                            *op,
                            &text(first),
                            Some(&text(second)),
                            "refused",
                            &why,
                        ));
                    }
                }
            }
            Request::UnknownExtended { id, name } => {
                if self.policy.restricts() {
                    let why = format!("extension `{name}` is not allowed under a file policy");
                    self.refuse(Some(*id), &why, out);
                } else {
                    out.to_target.push(packet);
                }
            }
            Request::Other { .. } => out.to_target.push(packet),
        }
    }

    /// Passes a checked request on, or, when the policy limits where files
    /// may be, first asks the target where its paths really lead (a symlink
    /// inside an allowed directory may point out of it).
    fn pass_or_resolve(
        &mut self,
        id: u32,
        packet: Bytes,
        request: Request,
        paths: Vec<Vec<u8>>,
        then: Pending,
        out: &mut Output,
    ) {
        if self.policy.prefixes.is_empty() || paths.is_empty() {
            self.pending.insert(id, then);
            out.to_target.push(packet);
            return;
        }
        let own = self.own_id();
        out.to_target.push(codec::realpath(own, &paths[0]));
        self.pending.insert(
            own,
            Pending::Resolve(Box::new(Held {
                packet,
                request,
                paths,
                then: Box::new(then),
            })),
        );
    }

    fn reply(&mut self, packet: Bytes, reply: Reply, now: Timestamp, out: &mut Output) {
        if let Reply::Version = reply {
            if self.home_pending {
                self.version = Some(packet);
            } else {
                out.to_vendor.push(packet);
            }
            return;
        }
        let pending = reply.id().and_then(|id| self.pending.remove(&id));
        match (pending, reply) {
            (Some(Pending::Home), reply) => {
                if let Reply::Name {
                    first: Some(home), ..
                } = reply
                    && home.starts_with(b"/")
                {
                    self.cwd = normalize(b"/", &home).ok();
                }
                self.home_pending = false;
                if let Some(v) = self.version.take() {
                    out.to_vendor.push(v);
                }
            }
            (Some(Pending::Resolve(mut held)), reply) => {
                let resolved = match reply {
                    Reply::Name {
                        first: Some(real), ..
                    } => Some(real),
                    // The path's directory does not exist: the request
                    // fails on the target as it would anyway.
                    _ => None,
                };
                let id = held.request.id().unwrap_or(0);
                if let Some(real) = resolved {
                    let inside = normalize(b"/", &real).is_ok_and(|n| self.policy.path_allowed(&n));
                    if !inside {
                        let why = format!(
                            "`{}` leads to `{}`, outside the allowed directories",
                            text(&held.paths[0]),
                            text(&real)
                        );
                        self.refuse(Some(id), &why, out);
                        match *held.then {
                            Pending::Open(f) => {
                                out.events.push(file_event(*f, "refused", Some(&why), now))
                            }
                            Pending::Op { op, path, second } => out.events.push(op_event(
                                op,
                                &path,
                                second.as_deref(),
                                "refused",
                                &why,
                            )),
                            _ => {}
                        }
                        return;
                    }
                }
                held.paths.remove(0);
                if held.paths.is_empty() {
                    self.pending.insert(id, *held.then);
                    out.to_target.push(held.packet);
                } else {
                    let own = self.own_id();
                    out.to_target.push(codec::realpath(own, &held.paths[0]));
                    self.pending.insert(own, Pending::Resolve(held));
                }
            }
            (Some(Pending::Open(mut f)), Reply::Handle { handle, .. }) => {
                f.started = now.min(f.started);
                self.handles.insert(handle, *f);
                out.to_vendor.push(packet);
            }
            (Some(Pending::Open(f)), Reply::Status { message, .. }) => {
                out.events
                    .push(file_event(*f, "failed", Some(&message), now));
                out.to_vendor.push(packet);
            }
            (Some(Pending::Read { handle, offset }), Reply::Data { data, .. }) => {
                if let Some(f) = self.handles.get_mut(&handle) {
                    f.read.feed(offset, packet.slice(data));
                }
                out.to_vendor.push(packet);
            }
            (Some(Pending::Read { handle, .. }), Reply::Status { code, .. }) => {
                if code == codec::FX_EOF
                    && let Some(f) = self.handles.get_mut(&handle)
                {
                    f.eof = true;
                }
                out.to_vendor.push(packet);
            }
            (Some(Pending::Close { handle }), Reply::Status { code, message, .. }) => {
                if let Some(f) = self.handles.remove(&handle) {
                    let result = if f.refused.is_some() {
                        "refused"
                    } else if code != codec::FX_OK {
                        "incomplete"
                    } else if f.way == Way::Download && !f.eof {
                        // The client stopped before the end of the file.
                        "incomplete"
                    } else {
                        "complete"
                    };
                    let why = f.refused.clone().or_else(|| {
                        (code != codec::FX_OK).then(|| format!("close failed: {message}"))
                    });
                    out.events.push(file_event(f, result, why.as_deref(), now));
                }
                out.to_vendor.push(packet);
            }
            (Some(Pending::Op { op, path, second }), Reply::Status { code, message, .. }) => {
                let result = if code == codec::FX_OK { "ok" } else { "failed" };
                out.events
                    .push(op_event(op, &path, second.as_deref(), result, &message));
                out.to_vendor.push(packet);
            }
            (_, _) => out.to_vendor.push(packet),
        }
    }
}

fn file_event(mut f: File, result: &str, reason: Option<&str>, now: Timestamp) -> Event {
    let (sha_read, ns_read) = f.read.finish();
    let (sha_written, ns_written) = f.written.finish();
    let (digest, sha256, non_sequential) = match f.way {
        Way::Upload => (&f.written, sha_written, ns_written),
        Way::Download => (&f.read, sha_read, ns_read),
    };
    let mut detail = json!({
        "path": f.path,
        "direction": f.way.as_str(),
        "open_flags": open_flags(f.pflags),
        "size": digest.bytes(),
        "offset": digest.first_offset().unwrap_or(0),
        "sha256": sha256,
        "non_sequential": non_sequential,
        "bytes_read": f.read.bytes(),
        "bytes_written": f.written.bytes(),
        "result": result,
        "started_at": f.started.to_rfc3339(),
        "ended_at": now.to_rfc3339(),
    });
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        detail["reason"] = json!(reason);
    }
    Event {
        action: events::FILE,
        detail,
    }
}

fn op_event(op: PathOp, path: &str, second: Option<&str>, result: &str, message: &str) -> Event {
    let mut detail = json!({ "op": op.as_str(), "path": path, "result": result });
    if let Some(second) = second {
        detail[if op == PathOp::Symlink { "link" } else { "to" }] = json!(second);
        if op == PathOp::Symlink {
            // OpenSSH's order: the target first, the link second.
            detail["path"] = json!(second);
            detail["target"] = json!(path);
            detail.as_object_mut().map(|o| o.remove("link"));
        }
    }
    if !message.is_empty() && result != "ok" {
        detail["reason"] = json!(message);
    }
    Event {
        action: events::FILE_OP,
        detail,
    }
}

fn open_flags(pflags: u32) -> Vec<&'static str> {
    [
        (codec::FXF_READ, "read"),
        (codec::FXF_WRITE, "write"),
        (codec::FXF_APPEND, "append"),
        (codec::FXF_CREAT, "create"),
        (codec::FXF_TRUNC, "truncate"),
        (codec::FXF_EXCL, "exclusive"),
    ]
    .into_iter()
    .filter(|(bit, _)| pflags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
