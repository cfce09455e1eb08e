//! gdq's query side: Apache DataFusion over a gdq warehouse.
//!
//! [`open_session`] registers the tables an analyst needs (`findings`, every exported
//! version; `findings_latest`, the newest version of each finding) and the JSON functions
//! that reach into the raw `finding` column; [`run_sql`] plans and runs SQL text; [`format`]
//! prints results the way datafusion-cli does. Nothing here writes to the warehouse.

pub mod drift;
mod error;
pub mod format;
mod id_lookup;
pub mod latest;
mod session;
mod snapshot;

pub use datafusion::execution::context::SessionContext;
pub use error::QueryError;
pub use format::OutputFormat;
pub use session::{
    LATEST_VIEW, QueryResult, TABLE, WarehouseLocation, open_session, query_count, run_sql,
};
