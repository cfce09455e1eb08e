//! gdq's query side: Apache DataFusion over a gdq warehouse.
//!
//! [`open_session`] registers the tables an analyst needs (`findings`, every exported
//! version; `findings_latest`, the newest version of each finding) and the JSON functions
//! that reach into the raw `finding` column; [`print_sql`] plans SQL text and prints each
//! result as its batches arrive ([`format`]), [`run_sql`] collects them. Tables read one snapshot of the warehouse's
//! Delta table (`gdq-table`); nothing here writes to the warehouse.

pub mod dashboard;
pub mod drift;
mod error;
pub mod format;
mod id_lookup;
pub mod latest;
mod names;
pub mod ocsf;
pub mod reports;
mod result;
mod session;
pub mod status;
mod table;
#[cfg(test)]
mod test_support;

pub use dashboard::select_rows;
pub use datafusion::execution::context::SessionContext;
pub use error::QueryError;
pub use format::OutputFormat;
pub use session::{LATEST_VIEW, QueryResult, TABLE, open_session, print_sql, query_count, run_sql};
