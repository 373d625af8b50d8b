//! Generated types and stubs for `dapr.proto.sentry.v1`.
#![allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

tonic::include_proto!("dapr.proto.sentry.v1");
