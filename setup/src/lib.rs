//! `gdq setup`: GuardDuty's encrypted export path, built idempotently, verified, torn down.
//!
//! One module per link of the path, in the order setup builds them (the detector first: the
//! key and bucket policies name its ARN): [`detector`], [`key`], [`bucket`],
//! [`destination`], [`queue`], [`notification`], [`alerts`]. Each finds what exists,
//! compares it with what gdq wants, and changes only the difference, so a second run changes
//! nothing. Detectors and destinations are per region ([`regions`] says which); alerts
//! reach every region through [`forwarding`]; [`organization`] delegates GuardDuty's
//! administration and enables the members. [`policy`] holds the documents as pure functions; [`apply`], [`verify`] and
//! [`teardown`] run the steps; [`record`] is what setup leaves for the worker and ingest.

pub mod alerts;
pub mod apply;
pub mod bucket;
pub mod clients;
pub mod destination;
pub mod detector;
pub mod error;
pub mod forwarding;
pub mod key;
pub mod notification;
pub mod organization;
pub mod policy;
pub mod queue;
pub mod record;
pub mod regions;
pub mod report;
pub mod teardown;
pub mod verify;

pub use apply::{Built, SetupOptions, setup};
pub use clients::Clients;
pub use error::SetupError;
pub use record::SetupRecord;
pub use report::Report;
