//! Query errors, split by who must act: the user (bad SQL) or the environment.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan (syntax, unknown table or column, types).
    #[error("{}", one_line(.0))]
    Plan(DataFusionError),
    /// The query planned but failed while running (unreadable files, resources).
    #[error("{}", one_line(.0))]
    Execution(DataFusionError),
    #[error("writing results: {0}")]
    Output(String),
}

/// DataFusion messages carry context on several lines; a CLI error is one line.
fn one_line(e: &DataFusionError) -> String {
    let text = e.to_string();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
