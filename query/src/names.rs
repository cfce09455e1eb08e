//! The names of the tables a session offers.

/// Every exported version of every finding.
pub const TABLE: &str = "findings";
/// One row per finding id: its newest version (latest `updated_at`, then highest `count`).
pub const LATEST_VIEW: &str = "findings_latest";
/// One OCSF Detection Finding per finding id (`crate::ocsf`).
pub const OCSF_VIEW: &str = "findings_ocsf";
