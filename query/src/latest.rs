//! `findings_latest`: the newest version of each finding (per `id`, the row with the latest
//! `updated_at`, then the highest `count`).
//!
//! As a SQL view (`row_number() OVER (PARTITION BY id …) = 1`) DataFusion spends most of
//! the query in its window operator's per-partition bookkeeping: about 470k partitions of
//! two rows each on the 1M-finding benchmark (1.06 s of 1.5 s). A hash-partitioned sort
//! with a pass keeping the first row of each run of equal ids took 0.55 s, half of it
//! repartitioning and sorting 1M rows to drop 530k. [`NewestPerIdExec`] instead keeps one
//! hash table entry per id (where its newest version is, and how it ranks) while the scan
//! runs on every core, then gathers the winners. The table reads only the columns a query
//! needs plus the three that choose the version, and passes filters on `id` down to the
//! scan (bloom filters, row-group statistics).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{interleave_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use hashbrown::HashTable;

/// The columns that pick the version, in order of precedence after `id`.
const ID: &str = "id";
const NEWEST_FIRST: [&str; 2] = ["updated_at", "count"];

/// `findings_latest` over the `findings` table.
#[derive(Debug)]
pub struct LatestTable {
    pub findings: Arc<dyn TableProvider>,
}

fn index_of(schema: &SchemaRef, name: &str) -> Result<usize> {
    schema.index_of(name).map_err(DataFusionError::from)
}

/// Whether `filter` reads no column but `id`: such a filter selects whole groups of
/// versions, so it may run before the newest version is chosen.
fn only_on_id(filter: &Expr) -> bool {
    let columns = filter.column_refs();
    !columns.is_empty() && columns.iter().all(|c| c.name == ID)
}

#[async_trait]
impl TableProvider for LatestTable {
    fn schema(&self) -> SchemaRef {
        self.findings.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion filters the output again, the scan only prunes with them.
        Ok(filters
            .iter()
            .map(|f| {
                if only_on_id(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let key_columns = [ID, NEWEST_FIRST[0], NEWEST_FIRST[1]]
            .into_iter()
            .map(|name| index_of(&schema, name))
            .collect::<Result<Vec<_>>>()?;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let mut read = wanted.clone();
        for k in key_columns {
            if !read.contains(&k) {
                read.push(k);
            }
        }
        let id_filters: Vec<Expr> = filters.iter().filter(|f| only_on_id(f)).cloned().collect();
        let scan = self
            .findings
            .scan(state, Some(&read), &id_filters, None)
            .await?;
        let scanned = scan.schema();

        let column = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
            Ok(Arc::new(Column::new(name, index_of(&scanned, name)?)))
        };
        // The scan keeps its parallel partitions (decoding is most of the work); one
        // hash table then sees every version of an id.
        let single: Arc<dyn ExecutionPlan> = if scan.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(scan))
        } else {
            scan
        };
        let newest = Arc::new(NewestPerIdExec::try_new(single)?);

        let outputs: Vec<(Arc<dyn PhysicalExpr>, String)> = wanted
            .iter()
            .map(|&i| {
                let name = schema.field(i).name();
                Ok((column(name)?, name.clone()))
            })
            .collect::<Result<_>>()?;
        Ok(Arc::new(ProjectionExec::try_new(outputs, newest)?))
    }
}

/// Keeps, of all the rows of its single input partition, the newest version of each `id`:
/// latest `updated_at`, then highest `count`, a null losing to any value; of rows tied on
/// both, the first seen. Output order is unspecified.
#[derive(Debug)]
pub struct NewestPerIdExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    /// Column indices of `id`, `updated_at` and `count` in the input.
    keys: [usize; 3],
}

impl NewestPerIdExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        let schema = input.schema();
        let keys = [
            index_of(&schema, ID)?,
            index_of(&schema, NEWEST_FIRST[0])?,
            index_of(&schema, NEWEST_FIRST[1])?,
        ];
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(NewestPerIdExec {
            input,
            properties,
            keys,
        })
    }
}

impl DisplayAs for NewestPerIdExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let [updated, count] = NEWEST_FIRST;
        write!(
            f,
            "NewestPerIdExec: key={ID}, newest by [{updated} DESC NULLS LAST, {count} DESC NULLS LAST]"
        )
    }
}

impl ExecutionPlan for NewestPerIdExec {
    fn name(&self) -> &'static str {
        "NewestPerIdExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "NewestPerIdExec has one input".into(),
            ));
        }
        Ok(Arc::new(NewestPerIdExec::try_new(children.swap_remove(0))?))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "NewestPerIdExec has one output partition, not {partition}"
            )));
        }
        let input = self.input.execute(0, Arc::clone(&context))?;
        let schema = input.schema();
        let keys = self.keys;
        let batch_size = context.session_config().batch_size().max(1);
        let newest = futures::stream::once(async move {
            let mut versions = NewestVersions::new(keys);
            let mut input = input;
            while let Some(batch) = input.next().await {
                versions.add(batch?)?;
            }
            let batches = versions.gather(batch_size)?;
            Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, newest)))
    }
}

/// Stored rows beyond twice the ids seen before superseded versions are dropped.
const COMPACT_SLACK_ROWS: usize = 64 * 1024;
/// Rows per batch of the compacted versions.
const COMPACT_BATCH_ROWS: usize = 8192;

/// The version that wins: `(updated_at, count)`, compared with `None` below any value.
type Rank = (Option<i64>, Option<i64>);

/// One id's newest version so far: where it is and how it ranks.
struct Newest {
    batch: u32,
    row: u32,
    rank: Rank,
    hash: u64,
}

/// The newest version of each id among the batches added so far.
struct NewestVersions {
    keys: [usize; 3],
    batches: Vec<RecordBatch>,
    /// Indices into `newest`, hashed by id.
    table: HashTable<u32>,
    newest: Vec<Newest>,
    hashes: Vec<u64>,
    random: RandomState,
    /// Rows in `batches`, superseded ones included.
    stored_rows: usize,
}

/// The bytes of row `row` of an id column (`Utf8` or `Utf8View`); `None` for a null.
fn id_at(ids: &ArrayRef, row: usize) -> Option<&[u8]> {
    if ids.is_null(row) {
        return None;
    }
    match ids.data_type() {
        DataType::Utf8View => Some(ids.as_string_view().value(row).as_bytes()),
        _ => Some(ids.as_string::<i32>().value(row).as_bytes()),
    }
}

/// Reads a nullable 64-bit column (`Int64` or a timestamp) as `i64`s.
fn i64_column(column: &ArrayRef) -> Result<Int64Array> {
    let cast = datafusion::arrow::compute::cast(column, &DataType::Int64)?;
    Ok(cast.as_primitive::<Int64Type>().clone())
}

impl NewestVersions {
    fn new(keys: [usize; 3]) -> Self {
        NewestVersions {
            keys,
            batches: Vec::new(),
            table: HashTable::new(),
            newest: Vec::new(),
            hashes: Vec::new(),
            random: RandomState::default(),
            stored_rows: 0,
        }
    }

    fn add(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let [id_index, updated_index, count_index] = self.keys;
        let ids = Arc::clone(batch.column(id_index));
        if !matches!(ids.data_type(), DataType::Utf8 | DataType::Utf8View) {
            return Err(DataFusionError::Internal(format!(
                "findings_latest: id is {}, not a string",
                ids.data_type()
            )));
        }
        let updated = i64_column(batch.column(updated_index))?;
        let counts = i64_column(batch.column(count_index))?;
        self.hashes.clear();
        self.hashes.resize(rows, 0);
        create_hashes([&ids], &self.random, &mut self.hashes)?;
        let this_batch = u32::try_from(self.batches.len())
            .map_err(|_| DataFusionError::Execution("findings_latest: too many batches".into()))?;
        let Self {
            batches,
            table,
            newest,
            hashes,
            ..
        } = self;
        // Slots whose newest version is (for now) in this batch.
        let mut won_here: Vec<u32> = Vec::new();
        for (row, &hash) in hashes.iter().enumerate() {
            let id = id_at(&ids, row);
            let rank = (
                updated.is_valid(row).then(|| updated.value(row)),
                counts.is_valid(row).then(|| counts.value(row)),
            );
            let same_id = |&slot: &u32| {
                let seen = &newest[slot as usize];
                let seen_ids = if seen.batch == this_batch {
                    &ids
                } else {
                    batches[seen.batch as usize].column(id_index)
                };
                id_at(seen_ids, seen.row as usize) == id
            };
            match table.find(hash, same_id) {
                Some(&slot) => {
                    let seen = &mut newest[slot as usize];
                    if rank > seen.rank {
                        seen.batch = this_batch;
                        seen.row = row as u32;
                        seen.rank = rank;
                        won_here.push(slot);
                    }
                }
                None => {
                    let slot = newest.len() as u32;
                    newest.push(Newest {
                        batch: this_batch,
                        row: row as u32,
                        rank,
                        hash,
                    });
                    table.insert_unique(hash, slot, |&s| newest[s as usize].hash);
                    won_here.push(slot);
                }
            }
        }
        // Keep only this batch's winners, copied: a copy is as long as its rows, while the
        // scan's arrays carry their readers' spare capacity (178 MB held for 100 MB of rows
        // on the 1M benchmark when batches were kept as they came).
        won_here.sort_unstable();
        won_here.dedup();
        if !won_here.is_empty() {
            let mut kept: Vec<u32> = won_here.iter().map(|&s| newest[s as usize].row).collect();
            kept.sort_unstable();
            for &slot in &won_here {
                let entry = &mut newest[slot as usize];
                // `kept` holds each row once: its position is the row's place in the copy.
                entry.row = kept.partition_point(|&r| r < entry.row) as u32;
            }
            self.stored_rows += kept.len();
            batches.push(take_record_batch(&batch, &UInt32Array::from(kept))?);
        }
        // Most stored rows superseded (a recurring finding is exported again at each update,
        // so it can have hundreds of versions): keep only the newest ones, so memory follows
        // the number of ids, not of versions. A compaction needs as many new rows as it keeps,
        // so each row is copied O(1) times on average.
        if self.stored_rows >= 2 * self.newest.len() + COMPACT_SLACK_ROWS {
            self.compact(COMPACT_BATCH_ROWS)?;
        }
        Ok(())
    }

    /// Replaces the stored batches by the current newest versions alone.
    fn compact(&mut self, batch_size: usize) -> Result<()> {
        let compacted = self.gather(batch_size)?;
        for (i, newest) in self.newest.iter_mut().enumerate() {
            newest.batch = (i / batch_size) as u32;
            newest.row = (i % batch_size) as u32;
        }
        self.stored_rows = self.newest.len();
        self.batches = compacted;
        Ok(())
    }

    /// The newest versions, `batch_size` rows per batch, in the order ids were first seen.
    fn gather(&self, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let sources: Vec<&RecordBatch> = self.batches.iter().collect();
        self.newest
            .chunks(batch_size)
            .map(|chunk| {
                let indices: Vec<(usize, usize)> = chunk
                    .iter()
                    .map(|n| (n.batch as usize, n.row as usize))
                    .collect();
                Ok(interleave_record_batch(&sources, &indices)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    /// A batch of (id, updated_at, count, n): `n` names the row in assertions.
    fn batch(rows: &[(&str, Option<i64>, Option<i64>, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "updated_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("count", DataType::Int64, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let ids: StringArray = rows.iter().map(|r| Some(r.0)).collect();
        let updated: TimestampMillisecondArray = rows.iter().map(|r| r.1).collect();
        let counts: Int64Array = rows.iter().map(|r| r.2).collect();
        let n: Int64Array = rows.iter().map(|r| Some(r.3)).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(ids),
                Arc::new(updated.with_timezone("UTC")),
                Arc::new(counts),
                Arc::new(n),
            ],
        )
        .expect("test batch")
    }

    /// The `n` of each kept row, sorted.
    fn kept(batches: &[RecordBatch]) -> Vec<i64> {
        let mut n: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(3).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        n.sort_unstable();
        n
    }

    /// Adds one batch with a version of every id of `ids`, all ranked `(updated_at, count)`,
    /// named `first_n`, `first_n + 1`, … in order.
    fn add_round(versions: &mut NewestVersions, ids: &[String], rank: (i64, i64), first_n: i64) {
        let rows: Vec<(&str, Option<i64>, Option<i64>, i64)> = ids
            .iter()
            .zip(first_n..)
            .map(|(id, n)| (id.as_str(), Some(rank.0), Some(rank.1), n))
            .collect();
        versions.add(batch(&rows)).expect("add");
    }

    #[test]
    fn keeps_the_newest_version_of_each_id_across_batches() {
        let mut versions = NewestVersions::new([0, 1, 2]);
        versions
            .add(batch(&[
                ("a", Some(10), Some(1), 1),
                ("b", None, Some(9), 2),
                ("c", Some(5), None, 3),
                ("a", Some(20), Some(1), 4),
            ]))
            .expect("add");
        versions
            .add(batch(&[
                // a: same updated_at, higher count wins; then an older one loses.
                ("a", Some(20), Some(2), 5),
                ("a", Some(15), Some(9), 6),
                // b: any updated_at beats none; c: any count beats none.
                ("b", Some(1), Some(1), 7),
                ("c", Some(5), Some(0), 8),
                // d: tied on both, the first seen stays.
                ("d", Some(1), Some(1), 9),
                ("d", Some(1), Some(1), 10),
            ]))
            .expect("add");
        versions.add(batch(&[])).expect("an empty batch");
        let out = versions.gather(2).expect("batches");
        assert!(out.iter().all(|b| b.num_rows() <= 2));
        assert_eq!(kept(&out), vec![5, 7, 8, 9]);
    }

    #[test]
    fn many_ids_each_keep_one_row() {
        // Enough ids for the hash table to grow several times while batches refer back.
        let mut versions = NewestVersions::new([0, 1, 2]);
        let ids: Vec<String> = (0..5_000).map(|i| format!("{i:032x}")).collect();
        for round in 0..3_i64 {
            add_round(&mut versions, &ids, (round, 1), round * 10_000);
        }
        let out = versions.gather(1024).expect("batches");
        let expected: Vec<i64> = (0..5_000).map(|i| 20_000 + i).collect();
        assert_eq!(kept(&out), expected);
    }

    #[test]
    fn superseded_versions_are_dropped_as_they_pile_up() {
        // 100 ids, each updated 1,000 times: 100k versions, 100 results.
        let mut versions = NewestVersions::new([0, 1, 2]);
        let ids: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();
        for round in 0..1_000_i64 {
            add_round(&mut versions, &ids, (1, round), round * 100);
            assert!(versions.stored_rows < 2 * 100 + COMPACT_SLACK_ROWS);
        }
        assert!(versions.batches.len() < 1_000, "compacted at least once");
        let out = versions.gather(8192).expect("batches");
        let expected: Vec<i64> = (0..100).map(|i| 999 * 100 + i).collect();
        assert_eq!(kept(&out), expected);
    }
}
