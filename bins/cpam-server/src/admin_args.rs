//! The admin subcommands' arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct Common {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Customers.
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// Gatekeepers and their one-time registration codes.
    #[command(subcommand)]
    Gatekeeper(GatekeeperCmd),
    /// Users, their keys and passwords.
    #[command(subcommand)]
    User(UserCmd),
    /// Roles with named permissions.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Services (HOST:PORT) per customer.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Grants: user x service x time window.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Live and past sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Connection Manager profiles.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Session recordings: list, verify, cat, search, frame (RDP).
    #[command(subcommand)]
    Recordings(crate::recordings::RecordingsCmd),
    /// Credentials of services, injected into privileged sessions.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Users' checkouts of credentials.
    #[command(subcommand)]
    Checkouts(CheckoutsCmd),
    /// The server nodes sharing the database: address, version, heartbeat,
    /// live or lost.
    Nodes {
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum CustomerCmd {
    Add {
        name: String,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum GatekeeperCmd {
    Add {
        name: String,
        #[arg(long)]
        customer: String,
        #[arg(long, default_value = "24h")]
        code_ttl: String,
        #[command(flatten)]
        c: Common,
    },
    /// A new one-time registration code.
    Code {
        name: String,
        #[arg(long, default_value = "24h")]
        code_ttl: String,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    /// Deletes a gatekeeper with its codes and the profile keys bound to
    /// it; a running server closes its link and those profiles' connections
    /// and ends its live sessions.
    Delete {
        name: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    Add {
        name: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// OpenSSH public key file.
        #[arg(long)]
        key: Vec<PathBuf>,
        #[arg(long)]
        role: Vec<String>,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[command(flatten)]
        c: Common,
    },
    /// Keys.
    #[command(subcommand)]
    Key(UserKeyCmd),
    Disable {
        name: String,
        #[command(flatten)]
        c: Common,
    },
    Enable {
        name: String,
        #[command(flatten)]
        c: Common,
    },
    /// Set a user's IP Connect mode: global, legacy, driver,
    /// driver-with-legacy-fallback or off.
    IpConnectMode {
        name: String,
        mode: String,
        #[command(flatten)]
        c: Common,
    },
    /// Clear a user's master password; they set a new one with their login password.
    ResetMasterPassword {
        name: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserKeyCmd {
    Add {
        name: String,
        file: PathBuf,
        #[command(flatten)]
        c: Common,
    },
    /// The user's keys, profile keys (bound to a gatekeeper) included.
    List {
        name: String,
        #[command(flatten)]
        c: Common,
    },
    /// Deletes a key (its id or SHA256 fingerprint); a running server closes
    /// the connections it signed in.
    Delete {
        name: String,
        key: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    Add {
        name: String,
        #[arg(long, required = true)]
        permission: Vec<String>,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[command(flatten)]
        c: Common,
    },
    Assign {
        user: String,
        role: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    Add {
        name: String,
        #[arg(long)]
        customer: String,
        /// The gatekeeper whose network holds the target (name or id); only
        /// sessions through it reach the service. Default: the customer's
        /// only gatekeeper.
        #[arg(long)]
        gatekeeper: Option<String>,
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "custom")]
        kind: String,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    /// Forget the target host key pinned for an `ssh` service (the
    /// certificate key for an `rdp` one), after checking that it changed on
    /// purpose; the next session pins the new one.
    ForgetHostKey {
        /// SERVICE@CUSTOMER
        service: String,
        #[command(flatten)]
        c: Common,
    },
    /// Show the file-transfer policy of a service, or replace it: the
    /// options given form the whole new policy (see docs/file-transfer.md).
    FilePolicy {
        /// SERVICE@CUSTOMER
        service: String,
        /// Replace the policy with the options given (none: allow everything).
        #[arg(long)]
        set: bool,
        /// Refuse writing files to the target (and changing it).
        #[arg(long, requires = "set")]
        no_upload: bool,
        /// Refuse reading files from the target.
        #[arg(long, requires = "set")]
        no_download: bool,
        /// An absolute directory files may be in (repeatable; none: anywhere).
        #[arg(long = "prefix", requires = "set")]
        prefixes: Vec<String>,
        /// The largest file, in bytes.
        #[arg(long, requires = "set")]
        max_size: Option<u64>,
        /// A file extension that may not move (repeatable), e.g. `exe`.
        #[arg(long = "block-ext", requires = "set")]
        blocked_extensions: Vec<String>,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum GrantCmd {
    Add {
        #[arg(long)]
        user: String,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        service: String,
        /// Start (RFC 3339); default now.
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339).
        #[arg(long, conflicts_with = "for_")]
        until: Option<String>,
        /// Length from the start, e.g. 8h.
        #[arg(long = "for", id = "for_")]
        for_: Option<String>,
        /// Days of the week, e.g. mon-fri.
        #[arg(long, requires = "hours")]
        days: Option<String>,
        /// Time of day, UTC, e.g. 08:00-18:00.
        #[arg(long, requires = "days")]
        hours: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    List {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    Revoke {
        id: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCmd {
    List {
        #[arg(long)]
        live: bool,
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        c: Common,
    },
    Terminate {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    List {
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        c: Common,
    },
    /// Check the hash chain, against the last signed checkpoint, and every
    /// sealed recording.
    Verify {
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: crate::recordings::StorageArgs,
    },
    /// Sign the chain's head now into `audit-checkpoints.jsonl` (the
    /// server also does every `audit_checkpoint_secs` and at shutdown).
    Checkpoint {
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    Export {
        #[arg(long)]
        user: String,
        #[arg(long)]
        gatekeeper: String,
        #[arg(long)]
        out: PathBuf,
        /// The address vendors reach the server at (default: the configured one).
        #[arg(long)]
        server_address: Option<String>,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Store (or replace) the credential of SERVICE@CUSTOMER.
    Set {
        /// The service, as SERVICE@CUSTOMER.
        service: String,
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(
            long,
            conflicts_with = "key_file",
            required_unless_present = "key_file"
        )]
        password_stdin: bool,
        /// An unencrypted OpenSSH private key file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The longest checkout of the service (e.g. 4h; default 8h).
        #[arg(long)]
        max_checkout: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    /// Remove the credential of SERVICE@CUSTOMER.
    Remove {
        service: String,
        #[command(flatten)]
        c: Common,
    },
    /// Show stored credentials (never their secrets), or one service's.
    Info {
        service: Option<String>,
        #[command(flatten)]
        c: Common,
    },
    /// Re-encrypt every credential under a new data key and retire the old one.
    Rotate {
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckoutsCmd {
    /// List checkouts, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
        /// Only those active now.
        #[arg(long)]
        active: bool,
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        c: Common,
    },
    /// Revoke a checkout; the user's live sessions on the service end.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        c: Common,
    },
}
