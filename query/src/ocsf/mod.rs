//! `findings_ocsf`: one row per finding id (its newest version) in the shape of an OCSF 1.6
//! Detection Finding, with nested structs, so `--format ndjson` prints OCSF documents.
//!
//! The mapping is plain JSON to JSON ([`mapping`]); the scalar function `gdq_ocsf` runs it
//! on each row's raw `finding` and decodes the documents into Arrow with the schema below
//! (arrow-json), and the view spreads that struct into top-level columns.

pub mod mapping;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Fields, Int64Type, Schema, TimestampMillisecondType,
};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use mapping::{Context, detection_finding};

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}
fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}
fn object(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}
fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        true,
    )
}
fn account() -> Field {
    object("account", vec![utf8("uid"), utf8("type"), int("type_id")])
}
fn endpoint(name: &str) -> Field {
    object(
        name,
        vec![
            utf8("ip"),
            int("port"),
            object("location", vec![utf8("country"), utf8("city")]),
            object("autonomous_system", vec![int("number"), utf8("name")]),
        ],
    )
}

/// The columns of `findings_ocsf`, in OCSF's order of attributes.
pub static OCSF_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    let resource = DataType::Struct(Fields::from(vec![
        utf8("type"),
        utf8("uid"),
        utf8("name"),
        utf8("region"),
        utf8("cloud_partition"),
        object("owner", vec![account()]),
        utf8("role"),
        int("role_id"),
    ]));
    let evidence = DataType::Struct(Fields::from(vec![
        object(
            "api",
            vec![
                utf8("operation"),
                object("service", vec![utf8("name")]),
                object("request", vec![utf8("uid")]),
            ],
        ),
        object(
            "connection_info",
            vec![
                utf8("direction"),
                int("direction_id"),
                utf8("protocol_name"),
            ],
        ),
        endpoint("src_endpoint"),
        endpoint("dst_endpoint"),
        object("query", vec![utf8("hostname")]),
        object(
            "process",
            vec![
                utf8("name"),
                int("pid"),
                object(
                    "file",
                    vec![
                        utf8("path"),
                        list_of(
                            "hashes",
                            DataType::Struct(Fields::from(vec![
                                utf8("algorithm"),
                                int("algorithm_id"),
                                utf8("value"),
                            ])),
                        ),
                    ],
                ),
                object("user", vec![utf8("name"), utf8("uid")]),
            ],
        ),
    ]));
    let observable = DataType::Struct(Fields::from(vec![
        utf8("name"),
        utf8("type"),
        int("type_id"),
        utf8("value"),
    ]));
    Fields::from(vec![
        int("activity_id"),
        utf8("activity_name"),
        int("category_uid"),
        utf8("category_name"),
        int("class_uid"),
        utf8("class_name"),
        int("type_uid"),
        utf8("type_name"),
        int("severity_id"),
        utf8("severity"),
        int("status_id"),
        utf8("status"),
        int("time"),
        int("count"),
        int("confidence_score"),
        utf8("message"),
        object(
            "cloud",
            vec![
                utf8("provider"),
                utf8("region"),
                utf8("cloud_partition"),
                account(),
            ],
        ),
        object(
            "metadata",
            vec![
                object("product", vec![utf8("name"), utf8("vendor_name")]),
                utf8("version"),
                utf8("uid"),
                int("processed_time"),
                list_of("profiles", DataType::Utf8),
            ],
        ),
        object(
            "finding_info",
            vec![
                utf8("uid"),
                utf8("uid_alt"),
                utf8("title"),
                utf8("desc"),
                list_of("types", DataType::Utf8),
                int("created_time"),
                int("modified_time"),
                int("first_seen_time"),
                int("last_seen_time"),
                object(
                    "analytic",
                    vec![
                        utf8("uid"),
                        utf8("name"),
                        utf8("type"),
                        int("type_id"),
                        utf8("category"),
                    ],
                ),
            ],
        ),
        list_of("resources", resource),
        list_of("evidences", evidence),
        list_of("observables", observable),
        utf8("raw_data"),
    ])
});

/// `gdq_ocsf(finding, versions, ingested_at)`: the OCSF document of each row as a struct.
#[derive(Debug, PartialEq, Eq, Hash)]
struct OcsfFunction {
    signature: Signature,
}

impl ScalarUDFImpl for OcsfFunction {
    fn name(&self) -> &str {
        "gdq_ocsf"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(OCSF_FIELDS.clone()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [finding, versions, ingested_at] = arrays.as_slice() else {
            return exec_err!("gdq_ocsf takes (finding, versions, ingested_at)");
        };
        let finding = finding.as_string::<i32>();
        let versions = versions.as_primitive::<Int64Type>();
        let ingested_at = ingested_at.as_primitive::<TimestampMillisecondType>();
        let mut lines = Vec::with_capacity(rows * 2048);
        for i in 0..rows {
            let raw = if finding.is_null(i) {
                "{}"
            } else {
                finding.value(i)
            };
            let parsed: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
            let cx = Context {
                versions: if versions.is_null(i) {
                    1
                } else {
                    versions.value(i)
                },
                ingested_at_ms: (!ingested_at.is_null(i)).then(|| ingested_at.value(i)),
            };
            let doc = serde_json::json!({ "o": detection_finding(&parsed, raw, cx) });
            serde_json::to_writer(&mut lines, &doc)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            lines.push(b'\n');
        }
        let schema = Arc::new(Schema::new(vec![Field::new(
            "o",
            DataType::Struct(OCSF_FIELDS.clone()),
            true,
        )]));
        let mut reader = ReaderBuilder::new(schema)
            .with_batch_size(rows.max(1))
            .build(std::io::Cursor::new(lines))?;
        let column: ArrayRef = match reader.next() {
            Some(batch) => batch?.column(0).clone(),
            None => Arc::new(StructArray::new_empty_fields(0, None)),
        };
        Ok(ColumnarValue::Array(column))
    }
}

pub fn ocsf_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(OcsfFunction {
        signature: Signature::any(3, Volatility::Immutable),
    })
}

/// The view's SQL: the newest version of each id, its number of versions, spread out.
pub fn view_sql() -> String {
    let columns: Vec<String> = OCSF_FIELDS
        .iter()
        .map(|f| format!("o['{0}'] as {0}", f.name()))
        .collect();
    format!(
        "create view {} as \
         with versions as (select id, count(*) as versions from findings group by id) \
         select {} from (select gdq_ocsf(l.finding, v.versions, l.ingested_at) as o \
         from findings_latest l join versions v on l.id = v.id)",
        crate::names::OCSF_VIEW,
        columns.join(", ")
    )
}
