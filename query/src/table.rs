//! `findings`: a scan over exactly the data files of one table snapshot.
//!
//! The snapshot (the Delta log, read once per session) names every file with its type,
//! size and row count, so no folder is listed: a query never sees a file no commit added,
//! or both the inputs and outputs of a compaction. Filters on `type` pick partitions
//! exactly; a lookup by id also drops the files the id index rules out
//! (`crate::id_lookup`); everything else the Parquet scan prunes with row-group statistics
//! and bloom filters.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use gdq_schemas::{PARTITION_COLUMN, findings_schema};
use gdq_table::{DataFile, Snapshot, Store};
use object_store::ObjectMeta;

use crate::id_lookup::looked_up_ids;

/// The raw JSON column: most of a row's bytes.
const RAW_COLUMN: &str = "finding";

/// The `findings` schema as readers see it: the stored columns plus the `type` partition.
pub(crate) fn table_schema() -> SchemaRef {
    let stored = findings_schema();
    let mut fields: Vec<Field> = stored.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(partition_field());
    Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
}

fn partition_field() -> Field {
    Field::new(PARTITION_COLUMN, DataType::Utf8, false)
}

/// `findings` over one snapshot.
#[derive(Debug)]
pub(crate) struct FindingsTable {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) store: Store,
    pub(crate) object_store_url: ObjectStoreUrl,
    /// The session's Parquet settings (page index, size hint, pushdown).
    pub(crate) parquet: TableParquetOptions,
}

impl FindingsTable {
    /// The types whose partitions pass the filters that read only `type`.
    fn partitions_passing(&self, filters: &[Expr]) -> Result<Option<Vec<bool>>> {
        let Some(filter) = conjunction(filters.iter().cloned()) else {
            return Ok(None);
        };
        let types: Vec<&str> = self
            .snapshot
            .files
            .iter()
            .map(|f| f.finding_type.as_str())
            .collect();
        let schema = Arc::new(Schema::new(vec![partition_field()]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(types))],
        )?;
        let df_schema = DFSchema::try_from(schema)?;
        let expr = create_physical_expr(
            &filter,
            &df_schema,
            &Default::default(),
            &PhysicalPlanningContext::default(),
        )?;
        let passes = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let passes = passes.as_boolean();
        Ok(Some(
            (0..passes.len())
                .map(|i| passes.is_valid(i) && passes.value(i))
                .collect(),
        ))
    }

    fn partitioned_file(&self, file: &DataFile) -> Result<PartitionedFile> {
        let location = self
            .store
            .path(&file.key())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let meta = ObjectMeta {
            location,
            last_modified: chrono::DateTime::from_timestamp_millis(file.modified_ms)
                .unwrap_or_default(),
            size: file.size,
            e_tag: None,
            version: None,
        };
        let mut partitioned = PartitionedFile::from(meta);
        partitioned.partition_values = vec![ScalarValue::Utf8(Some(file.finding_type.clone()))];
        if let Some(rows) = file.rows {
            let mut stats = Statistics::new_unknown(&findings_schema());
            stats.num_rows = Precision::Exact(rows as usize);
            stats.total_byte_size = Precision::Inexact(file.size as usize);
            partitioned = partitioned.with_statistics(Arc::new(stats));
        }
        Ok(partitioned)
    }
}

/// Splits files into `n` groups of about equal size (largest first, each to the lightest).
fn balanced_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
        (0..n.max(1)).map(|_| (0, Vec::new())).collect();
    for file in files {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lightest.0 += file.object_meta.size;
            lightest.1.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

#[async_trait]
impl TableProvider for FindingsTable {
    fn schema(&self) -> SchemaRef {
        table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter on the partition alone is answered exactly by picking partitions; the
        // rest prune row groups and are applied again above the scan.
        Ok(filters
            .iter()
            .map(|f| {
                if expr_applicable_for_cols(&[PARTITION_COLUMN], f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (partition_filters, _): (Vec<Expr>, Vec<Expr>) = filters
            .iter()
            .cloned()
            .partition(|f| expr_applicable_for_cols(&[PARTITION_COLUMN], f));
        let passing = self.partitions_passing(&partition_filters)?;
        let index = match looked_up_ids(filters) {
            Some(ids) => Some((
                ids,
                gdq_table::id_index::read_id_index(&self.store, &self.snapshot)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            )),
            None => None,
        };
        let mut files = Vec::new();
        for (i, file) in self.snapshot.files.iter().enumerate() {
            if passing.as_ref().is_some_and(|p| !p[i]) {
                continue;
            }
            if let Some((ids, index)) = &index
                && !index.may_contain(&file.key(), ids)
            {
                continue;
            }
            files.push(self.partitioned_file(file)?);
        }
        let schema = self.schema();
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Late materialization (the filter columns decoded first, the others only for the
        // rows that pass) pays when it spares decoding the raw `finding` text of every row a
        // filter drops (a lookup's `select *`); on narrow scans it costs more than it saves
        // (one-week range: 0.86x the wall time without it), so only scans of `finding` use it.
        let reads_raw = projection.is_none_or(|columns| {
            columns
                .iter()
                .any(|&i| i < schema.fields().len() && schema.field(i).name() == RAW_COLUMN)
        });
        let mut parquet = self.parquet.clone();
        parquet.global.pushdown_filters |= reads_raw;
        let format = ParquetFormat::default().with_options(parquet);
        let source = format.file_source(
            TableSchemaBuilder::new(findings_schema())
                .with_table_partition_cols(vec![Arc::new(partition_field())])
                .build(),
        );
        let mut statistics = Statistics::new_unknown(&schema);
        if let Some(rows) = files
            .iter()
            .map(|f| {
                f.statistics
                    .as_ref()
                    .and_then(|s| s.num_rows.get_value().copied())
            })
            .sum::<Option<usize>>()
        {
            statistics.num_rows = Precision::Exact(rows);
        }
        let groups = balanced_groups(files, state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.object_store_url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}
