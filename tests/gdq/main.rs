//! Integration tests of the `gdq` binary: one test binary (linking the tree once), one
//! module per area. They run the real binary on files from `testdata/` and check the
//! warehouse with independent oracles (serde_json over the raw input, Python readers).

mod cli;
mod compact;
mod crash;
mod dashboard;
mod ddl;
mod delta;
mod faults;
mod ingest;
mod moto;
mod normalize;
mod notebook;
mod ocsf;
mod proxy;
mod query;
mod readers;
mod reports;
mod s3_ingest;
mod s3_warehouse;
mod setup;
mod setup_regions;
mod support;
mod upgrade;
mod worker;
