//! Query errors, split by who must act: the user (bad SQL) or the environment.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan (syntax, unknown table or column, types).
    #[error("{}", with_hints(&one_line(.0)))]
    Plan(DataFusionError),
    /// The query planned but failed while running (unreadable files, resources).
    #[error("{}", one_line(.0))]
    Execution(DataFusionError),
    #[error("writing results: {0}")]
    Output(String),
    /// The warehouse's table could not be read (or is in a state gdq does not read).
    #[error(transparent)]
    Table(gdq_table::TableError),
    /// A report or command asked for something it cannot do as given.
    #[error("{0}")]
    Usage(String),
}

/// DataFusion messages carry context on several lines; a CLI error is one line.
fn one_line(e: &DataFusionError) -> String {
    let text = e.to_string();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Tables a user may have meant.
const TABLES: [&str; 3] = [
    crate::names::TABLE,
    crate::names::LATEST_VIEW,
    crate::names::OCSF_VIEW,
];

/// Edit distance (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Makes DataFusion's planning errors point at the fix: the table meant, and a column
/// suggestion without the list of every column after it.
fn with_hints(message: &str) -> String {
    if let Some(at) = message.find(" Valid fields are ")
        && message[..at].contains("Did you mean")
    {
        return message[..at].to_string();
    }
    if let Some(rest) = message.split("table '").nth(1)
        && let Some(name) = rest.split("' not found").next()
        && rest.contains("' not found")
    {
        let short = name.rsplit('.').next().unwrap_or(name);
        let best = TABLES
            .iter()
            .min_by_key(|t| distance(short, t))
            .filter(|t| distance(short, t) <= t.len() / 2);
        let tables = TABLES.join(", ");
        return match best {
            Some(t) => format!("{message}. Did you mean '{t}'? (tables: {tables})"),
            None => format!("{message} (tables: {tables})"),
        };
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tables_and_columns_point_at_the_right_name() {
        assert_eq!(
            with_hints("Error during planning: table 'datafusion.public.finding' not found"),
            "Error during planning: table 'datafusion.public.finding' not found. Did you mean 'findings'? (tables: findings, findings_latest, findings_ocsf)"
        );
        assert!(with_hints("table 'x.y.findings_lates' not found").contains("'findings_latest'"));
        assert!(!with_hints("table 'a.b.zzz' not found").contains("Did you mean"));
        assert_eq!(
            with_hints(
                "No field named sevrity. Did you mean 'findings.severity'? Valid fields are a, b."
            ),
            "No field named sevrity. Did you mean 'findings.severity'?"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
