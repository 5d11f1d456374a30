//! The integration tests that drive cpam's binaries and library against real
//! peers (stock OpenSSH, PostgreSQL), one module per area, linked once.

mod admin_cli;
mod audit_anchor;
mod cluster_e2e;
mod cluster_relay_e2e;
mod console_limits;
mod demo_e2e;
mod deploy_files;
mod examples_run;
mod hardening_e2e;
mod harness_selfcheck;
mod hol_e2e;
mod ipconnect_driver_e2e;
mod ipconnect_e2e;
mod lifecycle_e2e;
mod limits_e2e;
mod psm_e2e;
mod rdp_e2e;
mod rdp_faults_e2e;
mod rdp_sdk_e2e;
mod recordings_e2e;
mod refusals_e2e;
mod rest_fuzz;
mod s3_store_e2e;
mod service_scope_e2e;
mod sftp_bad_input_e2e;
mod sftp_connect_e2e;
mod sftp_e2e;
mod store;
mod tunnel_e2e;
mod vault_e2e;
mod web_api;
mod web_ceilings;
mod web_mount;
mod web_rbac;
mod web_security;
