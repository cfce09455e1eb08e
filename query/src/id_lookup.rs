//! Lookups by id skip the files the id index rules out (see `gdq_schemas::IdIndex`).
//!
//! A scan whose filters pin `id` to a few values (`id = '…'`, `id in (…)`, ORs of those)
//! reads the id index of the snapshot's commits and keeps only the files that may hold one
//! of them; every other scan never reads the index. The index only narrows the scan: a file
//! it does not cover, and an index file that cannot be read, leave the scan as it was.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;

use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};

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
}
