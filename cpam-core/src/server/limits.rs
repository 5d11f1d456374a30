//! Process limits a server needs at scale.

/// Raises this process's soft limit on open files to its hard limit and
/// returns the new soft limit.
///
/// Every gatekeeper tunnel, vendor connection and dialled target holds a
/// socket, and many systems start services with a soft limit of 1,024: a
/// node serving thousands of gatekeepers would refuse connections with
/// "too many open files" long before it ran short of memory. The hard
/// limit is what the operator allowed (systemd's `LimitNOFILE=`, `ulimit
/// -Hn`); nothing beyond it is attempted.
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard.max(soft))
}

/// On systems without `setrlimit`, the limit is left as it is.
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "open-files limits are not adjustable on this platform",
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use nix::sys::resource::{Resource, getrlimit};

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let now = super::raise_open_files_limit().expect("raise");
        assert_eq!(now, hard);
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0,
            hard
        );
    }
}
