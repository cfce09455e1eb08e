//! Lookups by id skip the files the id index rules out (see `gdq_schemas::IdIndex`).
//!
//! A scan whose filters pin `id` to a few values (`id = '…'`, `id in (…)`, ORs of those)
//! reads the warehouse's id index, lists only the type partitions that hold a file that may
//! hold one of them, and keeps only those files; every other scan never reads the index.
//! The index only narrows the scan: a file it does not cover, and an index file that
//! cannot be read, leave the scan as it was.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};
use futures::{StreamExt, TryStreamExt};
use gdq_schemas::{
    ID_INDEX_DIR, ID_INDEX_EXTENSION, IdIndex, PARTITION_COLUMN, decode_id_index,
    decode_partition_value,
};
use object_store::ObjectStore;

use crate::session::FINDINGS_DIR;
use crate::snapshot::{RecordSource, local_entries, under_prefix};

/// Beyond this many ids a lookup is a join in disguise: probing would still be cheap, but
/// few files would be left out.
const MAX_IDS: usize = 1024;

/// The ids one filter pins `id` to, if it does.
fn pinned(filter: &Expr) -> Option<BTreeSet<String>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq => match (is_id(left), is_id(right)) {
                (true, false) => string_literal(right).map(|s| BTreeSet::from([s])),
                (false, true) => string_literal(left).map(|s| BTreeSet::from([s])),
                _ => None,
            },
            Operator::Or => {
                let mut ids = pinned(left)?;
                ids.extend(pinned(right)?);
                Some(ids)
            }
            // Either side pinning `id` is enough; the narrower is the better.
            Operator::And => match (pinned(left), pinned(right)) {
                (Some(l), Some(r)) => Some(if l.len() <= r.len() { l } else { r }),
                (l, r) => l.or(r),
            },
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_id(expr) => list.iter().map(string_literal).collect(),
        _ => None,
    }
}

fn is_id(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == "id",
        // A string cast of a string column compares the same bytes.
        Expr::Cast(cast) => cast.field.data_type().is_string() && is_id(&cast.expr),
        _ => false,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// The ids a scan's filters (a conjunction) pin `id` to; `None` when they do not.
pub(crate) fn looked_up_ids(filters: &[Expr]) -> Option<Vec<String>> {
    filters
        .iter()
        .filter_map(pinned)
        .min_by_key(BTreeSet::len)
        .filter(|ids| ids.len() <= MAX_IDS)
        .map(|ids| ids.into_iter().collect())
}

/// A data file's path relative to the warehouse root, from its path in the object store:
/// its last three parts, `findings/type=<enc>/<name>.parquet`.
pub(crate) fn table_relative(location: &object_store::path::Path) -> String {
    let parts: Vec<&str> = location.as_ref().rsplitn(4, '/').take(3).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// Adds one index file's bytes; a damaged file adds nothing (its files stay in the scan).
fn add_index_file(index: &mut IdIndex, bytes: &[u8]) {
    if let Ok(entries) = decode_id_index(bytes) {
        let _ = index.add(entries);
    }
}

/// The partition of a table path (`findings/type=<enc>/…`), decoded.
fn partition_of(relative: &str) -> Option<String> {
    let dir = relative.split('/').nth(1)?;
    decode_partition_value(dir.strip_prefix(PARTITION_COLUMN)?.strip_prefix('=')?)
}

impl RecordSource {
    /// The types whose partitions hold a file that may hold one of `ids`: a file the index
    /// rules out is not counted, one it does not cover is. Restricting the scan to these
    /// partitions spares DataFusion's listing the per-file work for every other file (on an
    /// uncompacted warehouse of 6,471 files, most of a lookup's time and memory).
    pub(crate) async fn partitions_that_may_hold(
        &self,
        index: &IdIndex,
        ids: &[String],
    ) -> Result<BTreeSet<String>> {
        let mut types = BTreeSet::new();
        let mut consider = |relative: &str| {
            if relative.ends_with(".parquet")
                && index.may_contain(relative, ids)
                && let Some(finding_type) = partition_of(relative)
            {
                types.insert(finding_type);
            }
        };
        match self {
            RecordSource::Local(root) => {
                for partition in local_entries(&root.join(FINDINGS_DIR))? {
                    let partition = partition?;
                    // A partition that cannot be listed fails the query here rather than
                    // being left out of it; a stray file beside the partitions is no partition.
                    if !partition.file_type()?.is_dir() {
                        continue;
                    }
                    let dir = partition.file_name();
                    let dir = dir.to_string_lossy();
                    for file in local_entries(&partition.path())? {
                        let name = file?.file_name();
                        consider(&format!("{FINDINGS_DIR}/{dir}/{}", name.to_string_lossy()));
                    }
                }
            }
            RecordSource::Store { store, prefix } => {
                let mut listed = store.list(Some(&under_prefix(prefix, FINDINGS_DIR)));
                while let Some(meta) = listed.try_next().await? {
                    consider(&table_relative(&meta.location));
                }
            }
        }
        Ok(types)
    }

    /// Every id index file of the warehouse.
    pub(crate) async fn read_id_index(&self) -> Result<IdIndex> {
        let mut index = IdIndex::default();
        match self {
            RecordSource::Local(root) => {
                for entry in local_entries(&root.join(ID_INDEX_DIR))? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == ID_INDEX_EXTENSION) {
                        // Compaction may retire an index between the listing and the read.
                        if let Ok(bytes) = std::fs::read(&path) {
                            add_index_file(&mut index, &bytes);
                        }
                    }
                }
            }
            RecordSource::Store { store, prefix } => {
                let suffix = format!(".{ID_INDEX_EXTENSION}");
                let listed: Vec<_> = store
                    .list(Some(&under_prefix(prefix, ID_INDEX_DIR)))
                    .try_filter(|m| futures::future::ready(m.location.as_ref().ends_with(&suffix)))
                    .try_collect()
                    .await?;
                let bodies: Vec<_> = futures::stream::iter(listed)
                    .map(|m| {
                        let store: Arc<dyn ObjectStore> = Arc::clone(store);
                        async move {
                            match object_store::ObjectStoreExt::get(&*store, &m.location).await {
                                Ok(body) => body.bytes().await.map(Some),
                                Err(object_store::Error::NotFound { .. }) => Ok(None),
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .buffer_unordered(16)
                    .try_collect()
                    .await?;
                for body in bodies.into_iter().flatten() {
                    add_index_file(&mut index, &body);
                }
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ids(filters: &[Expr]) -> Option<Vec<String>> {
        looked_up_ids(filters)
    }

    #[test]
    fn finds_the_ids_a_filter_pins() {
        assert_eq!(ids(&[col("id").eq(lit("a"))]), Some(vec!["a".into()]));
        assert_eq!(ids(&[lit("a").eq(col("id"))]), Some(vec!["a".into()]));
        assert_eq!(
            ids(&[col("id").in_list(vec![lit("b"), lit("a")], false)]),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            ids(&[col("id").eq(lit("a")).or(col("id").eq(lit("b")))]),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            ids(&[
                col("severity").gt(lit(5)),
                col("id").in_list(vec![lit("a"), lit("b")], false),
                col("id").eq(lit("c")),
            ]),
            Some(vec!["c".into()]),
            "the narrowest conjunct wins"
        );
        assert_eq!(
            ids(&[col("id").eq(lit("a")).and(col("severity").gt(lit(5)))]),
            Some(vec!["a".into()])
        );
    }

    #[test]
    fn leaves_other_filters_alone() {
        assert_eq!(ids(&[]), None);
        assert_eq!(ids(&[col("id").not_eq(lit("a"))]), None);
        assert_eq!(ids(&[col("id").like(lit("a%"))]), None);
        assert_eq!(
            ids(&[col("id").in_list(vec![lit("a")], true)]),
            None,
            "not in"
        );
        assert_eq!(
            ids(&[col("id").eq(lit("a")).or(col("severity").gt(lit(5)))]),
            None,
            "an OR with another column can match any file"
        );
        assert_eq!(ids(&[col("account_id").eq(lit("a"))]), None);
        assert_eq!(ids(&[col("id").eq(col("account_id"))]), None);
        let many: Vec<Expr> = (0..=MAX_IDS).map(|i| lit(i.to_string())).collect();
        assert_eq!(ids(&[col("id").in_list(many, false)]), None);
    }

    #[test]
    fn a_location_maps_to_its_table_path() {
        // As listings give it: `parse` keeps the partition's own percent-encoding, where
        // `Path::from` would encode its `%` again.
        let location = object_store::path::Path::parse(
            "tmp/wh/findings/type=Recon%3AEC2%2FPortscan/b-00000.parquet",
        )
        .expect("a valid path");
        assert_eq!(
            table_relative(&location),
            "findings/type=Recon%3AEC2%2FPortscan/b-00000.parquet"
        );
    }
}
