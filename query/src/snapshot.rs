//! The `findings` table as of one consistent moment of compaction.
//!
//! `gdq compact` moves its outputs into `findings/` before its record is written and deletes
//! its inputs after (see `gdq_ingest::compact`). A plain directory listing could therefore
//! see both. This table wraps the listing table and drops, from every scan, the inputs of
//! committed compactions and the outputs of uncommitted ones. The records are read before
//! and after the listing; if a compaction committed in between, the scan is planned again,
//! so a query sees the files before a compaction or after it, never both or neither. A
//! lookup by id also drops the files the id index rules out (`crate::id_lookup`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Constraints, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::{ListingTable, PartitionedFile};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use gdq_schemas::{
    COMPACTIONS_DIR as COMPACTIONS, COMPACTIONS_DONE_DIR, CompactionView as Compactions,
    PARTITION_COLUMN,
};
use object_store::ObjectStore;

use crate::id_lookup::{looked_up_ids, table_relative};

/// How often a scan is planned again when compactions keep committing under it.
const ATTEMPTS: usize = 8;

/// Where the records are read from.
#[derive(Debug, Clone)]
pub(crate) enum RecordSource {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: String,
    },
}

fn add_record(compactions: &mut Compactions, bytes: &[u8]) -> Result<()> {
    compactions
        .add_record(bytes)
        .map_err(DataFusionError::Execution)
}

/// `dir` (relative to the warehouse root) in the store of a warehouse at `prefix`.
pub(crate) fn under_prefix(prefix: &str, dir: &str) -> object_store::path::Path {
    if prefix.is_empty() {
        object_store::path::Path::from(dir)
    } else {
        object_store::path::Path::from(format!("{prefix}/{dir}"))
    }
}

/// The entries of a local warehouse folder; none while the folder does not exist.
pub(crate) fn local_entries(
    dir: &Path,
) -> Result<std::iter::Flatten<std::option::IntoIter<std::fs::ReadDir>>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries).into_iter().flatten()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None.into_iter().flatten()),
        Err(e) => Err(DataFusionError::IoError(e)),
    }
}

impl RecordSource {
    async fn read(&self) -> Result<Compactions> {
        let mut compactions = Compactions::default();
        match self {
            RecordSource::Local(root) => {
                for entry in local_entries(&root.join(COMPACTIONS))? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        add_record(&mut compactions, &std::fs::read(&path)?)?;
                    }
                }
                if let Ok(done) = std::fs::read_dir(root.join(COMPACTIONS_DONE_DIR)) {
                    for entry in done {
                        let name = entry?.file_name();
                        if let Some(batch) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                            compactions.add_finished(batch);
                        }
                    }
                }
            }
            RecordSource::Store { store, prefix } => {
                let listed: Vec<_> = store
                    .list(Some(&under_prefix(prefix, COMPACTIONS)))
                    .try_collect()
                    .await?;
                let done = format!(
                    "/{}/",
                    COMPACTIONS_DONE_DIR.rsplit('/').next().unwrap_or("done")
                );
                let (finished, active): (Vec<_>, Vec<_>) = listed
                    .into_iter()
                    .filter(|m| m.location.as_ref().ends_with(".json"))
                    .partition(|m| m.location.as_ref().contains(&done));
                for m in &finished {
                    if let Some(batch) = m.location.filename().and_then(|n| n.strip_suffix(".json"))
                    {
                        compactions.add_finished(batch);
                    }
                }
                let bodies: Vec<_> = futures::stream::iter(active)
                    .map(|m| {
                        let store = Arc::clone(store);
                        async move {
                            object_store::ObjectStoreExt::get(&*store, &m.location)
                                .await?
                                .bytes()
                                .await
                        }
                    })
                    .buffer_unordered(8)
                    .try_collect()
                    .await?;
                for body in bodies {
                    add_record(&mut compactions, &body)?;
                }
            }
        }
        Ok(compactions)
    }
}

/// Keeps, in every file scan of `plan`, only the files `keep` accepts.
fn retain_files(
    plan: Arc<dyn ExecutionPlan>,
    keep: impl Fn(&PartitionedFile) -> bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite_scans(plan, |config| {
        let hidden = |f: &PartitionedFile| !keep(f);
        if !config.file_groups.iter().any(|g| g.iter().any(hidden)) {
            return None;
        }
        let mut groups: Vec<FileGroup> = config
            .file_groups
            .iter()
            .map(|g| FileGroup::new(g.iter().filter(|f| !hidden(f)).cloned().collect()))
            .filter(|g| !g.is_empty())
            .collect();
        if groups.is_empty() {
            // A scan of no partition at all breaks operators above it that need one (a
            // sort: "does not satisfy distribution requirements"); one empty group reads
            // nothing just as well.
            groups.push(FileGroup::new(Vec::new()));
        }
        // The listing's statistics counted the dropped files: they must not answer count(*).
        let schema = config.file_schema();
        Some(
            FileScanConfigBuilder::from(config.clone())
                .with_file_groups(groups)
                .with_statistics(Statistics::new_unknown(schema))
                .build(),
        )
    })
}

/// Replaces every file scan of `plan` by what `rewrite` makes of its configuration
/// (`None`: left as it is).
fn rewrite_scans(
    plan: Arc<dyn ExecutionPlan>,
    rewrite: impl Fn(&FileScanConfig) -> Option<FileScanConfig>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let rewritten = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            .and_then(&rewrite);
        Ok(match rewritten {
            Some(config) => {
                let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
                Transformed::yes(plan)
            }
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// The raw JSON column: most of a row's bytes.
const RAW_COLUMN: &str = "finding";

/// Turns on row-level filtering ("late materialization") in every Parquet scan of `plan`:
/// the filter columns are decoded first and the others only for the rows that pass. It
/// pays when it spares decoding the raw `finding` text of the rows a filter drops (a lookup
/// by id reads one row of a row group); when a scan reads only narrow columns, decoding in
/// two passes costs more than it saves (one-week range: 0.86x the wall time without it),
/// so the session leaves it off and scans that read `finding` turn it on. Row groups are
/// pruned with the predicate either way.
fn with_row_filters(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite_scans(plan, |config| {
        let source = config.file_source().downcast_ref::<ParquetSource>()?;
        if source.table_parquet_options().global.pushdown_filters {
            return None;
        }
        let source = source.clone().with_pushdown_filters(true);
        Some(
            FileScanConfigBuilder::from(config.clone())
                .with_source(Arc::new(source))
                .build(),
        )
    })
}

/// `findings`: the listing table minus what compaction hides.
#[derive(Debug)]
pub(crate) struct FindingsTable {
    pub(crate) inner: Arc<ListingTable>,
    pub(crate) records: RecordSource,
}

#[async_trait]
impl TableProvider for FindingsTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs::default()
            .with_projection(projection.map(|p| p.as_slice()))
            .with_filters(Some(filters))
            .with_limit(limit);
        Ok(self.scan_with_args(state, args).await?.into_inner())
    }

    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> Result<ScanResult> {
        let lookup = match args.filters().and_then(looked_up_ids) {
            Some(ids) => Some((ids, self.records.read_id_index().await?)),
            None => None,
        };
        let mut before = self.records.read().await?;
        for _ in 0..ATTEMPTS {
            let mut filters: Vec<Expr> = args.filters().map(<[Expr]>::to_vec).unwrap_or_default();
            if let Some((ids, index)) = &lookup {
                let types = self.records.partitions_that_may_hold(index, ids).await?;
                filters.push(if types.is_empty() {
                    // No file may hold the ids: a filter no partition passes (the type is
                    // never null) spares listing any.
                    col(PARTITION_COLUMN).is_null()
                } else {
                    col(PARTITION_COLUMN).in_list(types.into_iter().map(lit).collect(), false)
                });
            }
            let scan = ScanArgs::default()
                .with_projection(args.projection())
                .with_filters(Some(&filters))
                .with_limit(args.limit())
                .with_statistics_requests(args.statistics_requests());
            let plan = self.inner.scan_with_args(state, scan).await?.into_inner();
            let after = self.records.read().await?;
            if after == before {
                let plan = retain_files(plan, |f| {
                    !before.hides(f.object_meta.location.filename().unwrap_or_default())
                        && lookup.as_ref().is_none_or(|(ids, index)| {
                            index.may_contain(&table_relative(&f.object_meta.location), ids)
                        })
                })?;
                let schema = self.schema();
                let reads_raw = args.projection().is_none_or(|columns| {
                    columns
                        .iter()
                        .any(|&i| i < schema.fields().len() && schema.field(i).name() == RAW_COLUMN)
                });
                let plan = if reads_raw {
                    with_row_filters(plan)?
                } else {
                    plan
                };
                return Ok(plan.into());
            }
            before = after;
        }
        Err(DataFusionError::Execution(
            "compactions kept committing while the query was planned; run it again".into(),
        ))
    }
}
