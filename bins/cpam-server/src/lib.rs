//! The server's web console and REST API as a library, so that tests and
//! the OpenAPI drift check read the same policy table the binary serves.

pub mod web;
