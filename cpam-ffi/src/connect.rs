//! `cpam_profile` (a Connection Manager profile), `cpam_forward` (a local
//! port forwarded to a service) and `cpam_stream` (one session as a byte
//! stream the caller reads and writes).

use std::ffi::c_char;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cpam_core::tunnel::connect::{ConnectClient, SessionStream};
use cpam_core::tunnel::desktop::DesktopClient;
use cpam_core::tunnel::profile::Profile;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::boundary::{
    Rt, arg_opt_str, arg_out, arg_ref, arg_str, boundary, boundary_or, c_string, copy_out,
    into_handle, put, take_handle, timeout,
};
use crate::status::{Failure, cpam_status};

/// The originator address the server records for in-process streams.
const IN_PROCESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A loaded Connection Manager profile: one user, one gatekeeper. Owns its
/// runtime and one SSH link to the server, dialed on first use.
#[derive(Debug)]
pub struct cpam_profile {
    rt: Rt,
    client: Arc<ConnectClient>,
}

/// A local listener whose every connection is a session to one service.
#[derive(Debug)]
pub struct cpam_forward {
    rt: Rt,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<cpam_core::Result<()>>>,
}

/// One session as a byte stream.
pub struct cpam_stream {
    rt: Rt,
    reader: tokio::sync::Mutex<Option<ReadHalf<SessionStream>>>,
    writer: tokio::sync::Mutex<Option<WriteHalf<SessionStream>>>,
}

impl std::fmt::Debug for cpam_stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cpam_stream").finish_non_exhaustive()
    }
}

/// Loads the profile file at `path` (exported by `cpam-server profile
/// export`); errors name the file and the field. Nothing is dialed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_load(
    path: *const c_char,
    out: *mut *mut cpam_profile,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C string per the header's contract.
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(out, "out")?;
        let profile = Profile::load(Path::new(path))?;
        let handle = cpam_profile {
            rt: Rt::new("profile")?,
            client: ConnectClient::new(profile)?,
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(handle)) };
        Ok(())
    })
}

/// Writes to `*json_out` the services the profile's user may use now, as a
/// JSON object `{"gatekeeper": NAME, "online": BOOL, "services": [{"name",
/// "kind", "target", "until"}...]}`; free it with `cpam_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_services(
    profile: *const cpam_profile,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let p = unsafe { arg_ref(profile, "profile") }?;
        let out = arg_out(json_out, "json_out")?;
        let services = p.rt.block_on(p.client.services())?;
        let text = serde_json::to_string(&services)
            .map_err(|e| Failure::new(cpam_status::CPAM_INTERNAL, e.to_string()))?;
        let text = c_string(text)?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// Checks the credential of `service` (kind `ssh`) out for `seconds` (0:
/// the service's longest checkout); the secret never leaves the server.
/// `*json_out` is the checkout (`{"id", "service_name", "started_at",
/// "expires_at", "status", ...}`); free it with `cpam_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_checkout(
    profile: *const cpam_profile,
    service: *const c_char,
    seconds: u64,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C string per the header's contract.
        let p = unsafe { arg_ref(profile, "profile") }?;
        // SAFETY: as above.
        let service = unsafe { arg_str(service, "service") }?;
        let out = arg_out(json_out, "json_out")?;
        let duration = (seconds > 0).then(|| Duration::from_secs(seconds));
        let checkout = p.rt.block_on(p.client.checkout(service, duration))?;
        let text = c_string(checkout.to_string())?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// Checks the credential of `service` back in; the user's sessions on it
/// end. `*json_out` is the ended checkout.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_checkin(
    profile: *const cpam_profile,
    service: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C string per the header's contract.
        let p = unsafe { arg_ref(profile, "profile") }?;
        // SAFETY: as above.
        let service = unsafe { arg_str(service, "service") }?;
        let out = arg_out(json_out, "json_out")?;
        let checkin = p.rt.block_on(p.client.checkin(service))?;
        let text = c_string(checkin.to_string())?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// Listens on `listen` (`IP:PORT`; port 0 picks a free one) and forwards
/// every accepted connection as a session to `service`, in the background,
/// until `cpam_forward_free`. `cpam_forward_local_addr` tells the bound
/// address. A session the server refuses closes that one connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_forward(
    profile: *const cpam_profile,
    service: *const c_char,
    listen: *const c_char,
    out: *mut *mut cpam_forward,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (p, service, listen) = unsafe {
            (
                arg_ref(profile, "profile")?,
                arg_str(service, "service")?,
                arg_str(listen, "listen")?,
            )
        };
        let out = arg_out(out, "out")?;
        let addr: SocketAddr = listen.parse().map_err(|_| {
            Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                format!("listen address `{listen}` must be IP:PORT"),
            )
        })?;
        let listener = {
            let _enter = p.rt.handle().enter();
            cpam_core::tunnel::bind_listener(addr)?
        };
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::from(cpam_core::Error::from(e)))?;
        let stop = CancellationToken::new();
        let task = p.rt.handle().spawn(p.client.clone().forward(
            service.to_string(),
            listener,
            stop.clone(),
        ));
        let fwd = cpam_forward {
            rt: p.rt.clone(),
            addr,
            stop,
            task: Some(task),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(fwd)) };
        Ok(())
    })
}

/// Copies the forward's bound address (`IP:PORT`) into `buf` (NUL-terminated;
/// 64 bytes always suffice) and its length to `*written`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_forward_local_addr(
    forward: *const cpam_forward,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and buffer per the header's contract.
        unsafe {
            let f = arg_ref(forward, "forward")?;
            copy_out(&f.addr.to_string(), buf, len, written)
        }
    })
}

/// Desktop Sharing: starts a remote desktop client on the forward's address
/// and blocks until it exits, writing its exit code to `*exit_code` (1 when
/// a signal ended it). `program` NULL picks the platform's native client on
/// `PATH` (`xfreerdp`, `mstsc`, `open rdp://`), with `args` after `/v:ADDR`;
/// a named `program` gets `{addr}` in `args` replaced by the address, or
/// `/v:ADDR` first. `args` holds `args_len` C strings (NULL when 0). No
/// native client is `CPAM_NOT_FOUND`, whose message names the address to
/// connect one to by hand; a program that cannot start is `CPAM_NOT_FOUND`
/// naming it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_forward_launch_desktop(
    forward: *const cpam_forward,
    program: *const c_char,
    args: *const *const c_char,
    args_len: usize,
    exit_code: *mut i32,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (f, program) = unsafe {
            (
                arg_ref(forward, "forward")?,
                arg_opt_str(program, "program")?,
            )
        };
        let out = arg_out(exit_code, "exit_code")?;
        let mut list = Vec::with_capacity(args_len);
        if args_len > 0 {
            if args.is_null() {
                return Err(crate::boundary::null("args"));
            }
            for i in 0..args_len {
                // SAFETY: `args` points to `args_len` C strings per the contract.
                let arg = unsafe { arg_str(*args.add(i), &format!("args[{i}]"))? };
                list.push(arg.to_string());
            }
        }
        let client = DesktopClient::choose(program.map(Path::new), &list, f.addr)?;
        let code = f.rt.block_on(client.run(&f.stop))?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, code) };
        Ok(())
    })
}

/// Stops listening, ends the forward's sessions, and frees it. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_forward_free(forward: *mut cpam_forward) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_profile_forward`, freed once.
        if let Some(mut f) = unsafe { take_handle(forward) } {
            f.stop.cancel();
            if let Some(task) = f.task.take() {
                let _ = f
                    .rt
                    .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
            }
        }
    })
}

/// Opens one session to `service` through the profile's gatekeeper and
/// writes a stream to `*out`. Blocks until the server accepted or refused
/// it: no grant now is `CPAM_PERMISSION_DENIED`, an unknown service
/// `CPAM_NOT_FOUND`, an offline gatekeeper or unreachable target
/// `CPAM_TUNNEL_UNAVAILABLE`. The stream stays usable after the profile is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_open_stream(
    profile: *const cpam_profile,
    service: *const c_char,
    out: *mut *mut cpam_stream,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C string per the header's contract.
        let (p, service) = unsafe { (arg_ref(profile, "profile")?, arg_str(service, "service")?) };
        let out = arg_out(out, "out")?;
        let stream = p.rt.block_on(p.client.open_stream(service, IN_PROCESS))?;
        let (r, w) = tokio::io::split(stream);
        let s = cpam_stream {
            rt: p.rt.clone(),
            reader: tokio::sync::Mutex::new(Some(r)),
            writer: tokio::sync::Mutex::new(Some(w)),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(s)) };
        Ok(())
    })
}

/// Frees a profile and closes its link to the server. Streams and forwards
/// made from it keep working until freed. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_profile_free(profile: *mut cpam_profile) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_profile_load`, freed once.
        drop(unsafe { take_handle(profile) });
    })
}

/// Reads up to `len` bytes into `buf`, waiting at most `timeout_ms`
/// (`CPAM_TIMEOUT_INFINITE`: no limit), and writes the count to `*read`;
/// 0 means the target closed its side (end of stream). `CPAM_TIMEOUT` when
/// nothing arrived in time (the stream stays usable). One reader at a time;
/// reading and writing from two threads at once is fine.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_stream_read(
    stream: *const cpam_stream,
    buf: *mut u8,
    len: usize,
    timeout_ms: u32,
    read: *mut usize,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let s = unsafe { arg_ref(stream, "stream") }?;
        if buf.is_null() {
            return Err(crate::boundary::null("buf"));
        }
        let read = arg_out(read, "read")?;
        if len == 0 {
            return Err(Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                "len is 0: a read of nothing cannot tell data from end of stream",
            ));
        }
        // SAFETY: the caller guarantees `buf` is valid for `len` bytes and
        // not used elsewhere during the call.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        let n =
            s.rt.block_on_timeout(timeout(timeout_ms), "reading the stream", async {
                let mut guard = s.reader.lock().await;
                match guard.as_mut() {
                    Some(r) => r
                        .read(buf)
                        .await
                        .map_err(|e| Failure::from(cpam_core::Error::from(e))),
                    None => Ok(0),
                }
            })??;
        // SAFETY: checked by `arg_out`.
        unsafe { put(read, n) };
        Ok(())
    })
}

/// Writes all `len` bytes of `buf`, waiting at most `timeout_ms` for the
/// peer to accept them. On `CPAM_TIMEOUT` part of the data may have been sent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_stream_write(
    stream: *const cpam_stream,
    buf: *const u8,
    len: usize,
    timeout_ms: u32,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let s = unsafe { arg_ref(stream, "stream") }?;
        if buf.is_null() {
            return Err(crate::boundary::null("buf"));
        }
        // SAFETY: the caller guarantees `buf` is valid for `len` bytes.
        let data = unsafe { std::slice::from_raw_parts(buf, len) };
        s.rt.block_on_timeout(timeout(timeout_ms), "writing the stream", async {
            let mut guard = s.writer.lock().await;
            let w = guard.as_mut().ok_or_else(|| {
                Failure::new(
                    cpam_status::CPAM_CLOSED,
                    "the stream's write side was shut down",
                )
            })?;
            w.write_all(data)
                .await
                .map_err(|e| Failure::from(cpam_core::Error::from(e)))?;
            w.flush()
                .await
                .map_err(|e| Failure::from(cpam_core::Error::from(e)))
        })?
    })
}

/// Closes the write side: the target reads end of stream; reading goes on
/// until the target closes too. Further writes fail with `CPAM_CLOSED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_stream_shutdown(stream: *const cpam_stream) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let s = unsafe { arg_ref(stream, "stream") }?;
        s.rt.block_on(async {
            let mut guard = s.writer.lock().await;
            if let Some(mut w) = guard.take() {
                w.shutdown()
                    .await
                    .map_err(|e| Failure::from(cpam_core::Error::from(e)))?;
            }
            Ok(())
        })
    })
}

/// Ends the session and frees the stream. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_stream_free(stream: *mut cpam_stream) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_profile_open_stream`, freed once.
        if let Some(s) = unsafe { take_handle(stream) } {
            let rt = s.rt.clone();
            let _enter = rt.handle().enter();
            drop(s);
        }
    })
}
