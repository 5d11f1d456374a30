//! `cpam._cpam`: the native half of the `cpam` Python package.
//!
//! The pure-Python package (`python/cpam/__init__.py`) re-exports everything
//! here; `python/cpam/_cpam.pyi` holds the typed stubs. Each blocking call has
//! an `_async` twin; blocking calls release the GIL and stay interruptible
//! (see `rt`). Errors become one exception class per `ErrorKind` (`errors`).

mod audit;
mod connect;
mod errors;
mod gatekeeper;
mod hooks;
mod ipconnect;
mod live;
mod recordings;
mod rt;
mod server;

use pyo3::prelude::*;

#[pymodule]
fn _cpam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<connect::ConnectionManager>()?;
    m.add_class::<connect::Session>()?;
    m.add_class::<connect::Forward>()?;
    m.add_class::<gatekeeper::Gatekeeper>()?;
    m.add_class::<ipconnect::IpConnect>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<live::LiveWatch>()?;
    m.add_class::<hooks::Credential>()?;
    m.add_function(wrap_pyfunction!(gatekeeper::register_gatekeeper, m)?)?;
    m.add_function(wrap_pyfunction!(gatekeeper::register_gatekeeper_async, m)?)?;
    m.add_function(wrap_pyfunction!(audit::verify_audit, m)?)?;
    m.add_function(wrap_pyfunction!(audit::verify_audit_async, m)?)?;
    m.add_function(wrap_pyfunction!(audit::read_audit, m)?)?;
    m.add_function(wrap_pyfunction!(audit::read_audit_async, m)?)?;
    for f in [
        wrap_pyfunction!(recordings::list_recordings, m)?,
        wrap_pyfunction!(recordings::list_recordings_async, m)?,
        wrap_pyfunction!(recordings::read_recording, m)?,
        wrap_pyfunction!(recordings::read_recording_async, m)?,
        wrap_pyfunction!(recordings::recording_frame, m)?,
        wrap_pyfunction!(recordings::recording_frame_async, m)?,
        wrap_pyfunction!(recordings::recording_input, m)?,
        wrap_pyfunction!(recordings::recording_input_async, m)?,
        wrap_pyfunction!(recordings::verify_recording, m)?,
        wrap_pyfunction!(recordings::verify_recording_async, m)?,
        wrap_pyfunction!(recordings::search_recordings, m)?,
        wrap_pyfunction!(recordings::search_recordings_async, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
