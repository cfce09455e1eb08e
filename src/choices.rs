//! The values of enum-valued flags, for clap: `--help` lists them and a wrong one is a
//! usage error (exit 2) naming the choices, before any work starts.

use clap::ValueEnum;
use gdq_query::OutputFormat;
use gdq_schemas::ddl::Engine;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatChoice {
    /// A boxed table for people.
    Table,
    /// CSV with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line.
    #[value(alias = "jsonl")]
    Ndjson,
}

impl From<FormatChoice> for OutputFormat {
    fn from(choice: FormatChoice) -> OutputFormat {
        match choice {
            FormatChoice::Table => OutputFormat::Table,
            FormatChoice::Csv => OutputFormat::Csv,
            FormatChoice::Tsv => OutputFormat::Tsv,
            FormatChoice::Json => OutputFormat::Json,
            FormatChoice::Ndjson => OutputFormat::Ndjson,
        }
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressChoice {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    None,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatChoice {
    Text,
    Json,
}

/// `ddl --engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    Athena,
    Spark,
    Trino,
    #[value(name = "duckdb")]
    DuckDb,
    Snowflake,
}

impl From<EngineChoice> for Engine {
    fn from(choice: EngineChoice) -> Engine {
        match choice {
            EngineChoice::Athena => Engine::Athena,
            EngineChoice::Spark => Engine::Spark,
            EngineChoice::Trino => Engine::Trino,
            EngineChoice::DuckDb => Engine::DuckDb,
            EngineChoice::Snowflake => Engine::Snowflake,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine the DDL generator knows is offered on the command line, by its name.
    #[test]
    fn every_engine_is_a_choice() {
        for engine in Engine::ALL {
            let choice = EngineChoice::from_str(engine.name(), false)
                .unwrap_or_else(|e| panic!("{} is not offered: {e}", engine.name()));
            assert_eq!(Engine::from(choice), engine);
        }
        assert_eq!(EngineChoice::value_variants().len(), Engine::ALL.len());
    }
}
