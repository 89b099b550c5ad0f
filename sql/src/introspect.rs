//! Catalog introspection from the catalog itself: `DESCRIBE t` and
//! `SHOW CREATE TABLE t`.
//!
//! DataFusion answers both from the table provider, and EntiDB's providers
//! show DataFusion every column as nullable (NOT NULL is checked by
//! `provider::conform`, with SQLSTATE 23502), so DataFusion's DESCRIBE said
//! `YES` for primary-key and NOT NULL columns, and its SHOW CREATE TABLE
//! has no definition for a table. Here both are built from the table's
//! definition and catalog entry:
//!
//! - `DESCRIBE t` keeps DataFusion's columns (`column_name`, `data_type`,
//!   `is_nullable`) with the declared nullability.
//! - `SHOW CREATE TABLE t` keeps DataFusion's columns (`table_catalog`,
//!   `table_schema`, `table_name`, `definition`); the definition is a
//!   script that recreates the table: `CREATE TABLE` with types, NOT NULL,
//!   defaults, identity (`START WITH` its sequence's next value, so the new
//!   table goes on numbering), PRIMARY KEY, UNIQUE, CHECK and FOREIGN KEY
//!   constraints, then one `CREATE [UNIQUE] INDEX` per secondary index,
//!   each ending in `;`.
//!
//! Views are left to DataFusion (their SHOW CREATE is the text as written).

use crate::error::Result;
use crate::provider::EntiTable;
use crate::session::{Output, Session};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{DescribeAlias, ObjectName, ShowCreateObject, Statement};
use entidb_catalog::Catalog;
use std::collections::HashMap;
use std::sync::Arc;

/// Answers `DESCRIBE` and `SHOW CREATE TABLE` of an EntiDB table; `None`
/// for any other statement (and for views, which DataFusion describes).
pub(crate) fn run(session: &Session, stmt: &Statement) -> Option<Result<Output>> {
    match stmt {
        Statement::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            hive_format: None,
            table_name,
            ..
        } => table(session, table_name).map(|t| describe(&t)),
        Statement::ShowCreate {
            obj_type: ShowCreateObject::Table,
            obj_name,
        } => table(session, obj_name).map(|t| show_create(session, &t)),
        _ => None,
    }
}

fn table(session: &Session, name: &ObjectName) -> Option<Arc<EntiTable>> {
    let key = crate::schemas::resolve(&session.catalog, name).ok()?;
    session.tables.get(&key).cloned()
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn describe(table: &EntiTable) -> Result<Output> {
    let fields = table.def().schema.fields();
    let schema = Arc::new(Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Utf8, false),
    ]));
    let columns = vec![
        strings(fields.iter().map(|f| f.name().clone()).collect()),
        strings(fields.iter().map(|f| f.data_type().to_string()).collect()),
        strings(
            fields
                .iter()
                .map(|f| if f.is_nullable() { "YES" } else { "NO" }.to_string())
                .collect(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Output::Rows(schema, vec![batch]))
}

fn show_create(session: &Session, table: &EntiTable) -> Result<Output> {
    // Each identity column's next value becomes its START WITH, so the
    // script's table goes on numbering where this one is.
    let mut starts = HashMap::new();
    for identity in table
        .meta()
        .columns
        .iter()
        .filter_map(|c| c.identity.as_ref())
    {
        let next = session
            .slot
            .with(|t| crate::identity::next_value(t, &identity.sequence))?;
        if let Some(next) = next {
            starts.insert(identity.sequence.clone(), next);
        }
    }
    let catalog = &session.catalog;
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_catalog", DataType::Utf8, false),
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, true),
    ]));
    let (table_schema, name) = catalog.split(&table.meta().name);
    let columns = vec![
        strings(vec!["entidb".into()]),
        strings(vec![table_schema.into()]),
        strings(vec![name.into()]),
        strings(vec![create_script(catalog, table, &starts)]),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Output::Rows(schema, vec![batch]))
}

/// The statements that recreate `table` and its indexes; `starts` holds
/// the next value of each identity column's sequence.
pub(crate) fn create_script(
    catalog: &Catalog,
    table: &EntiTable,
    starts: &HashMap<String, i64>,
) -> String {
    let (def, meta) = (table.def(), table.meta());
    let fields = def.schema.fields();
    let column_name = |i: &usize| {
        fields
            .get(*i)
            .map(|f| quote_identifier(f.name()))
            .unwrap_or_default()
    };
    let mut lines: Vec<String> = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let column = meta.columns.get(i);
        let mut line = format!(
            "{} {}",
            quote_identifier(field.name()),
            sql_type(field.data_type())
        );
        match column.and_then(|c| c.identity.as_ref()) {
            Some(identity) => {
                line.push_str(if identity.always {
                    " GENERATED ALWAYS AS IDENTITY"
                } else {
                    " GENERATED BY DEFAULT AS IDENTITY"
                });
                if let Some(next) = starts.get(&identity.sequence).filter(|n| **n != 1) {
                    line.push_str(&format!(" (START WITH {next})"));
                }
            }
            None => {
                if let Some(default) = column.and_then(|c| c.default.as_ref()) {
                    line.push_str(&format!(" DEFAULT {default}"));
                }
            }
        }
        if !field.is_nullable() && !meta.primary_key.contains(&i) {
            line.push_str(" NOT NULL");
        }
        lines.push(line);
    }
    if !meta.primary_key.is_empty() {
        let key: Vec<String> = meta.primary_key.iter().map(column_name).collect();
        lines.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    for unique in &meta.unique {
        let key: Vec<String> = unique.iter().map(column_name).collect();
        lines.push(format!("UNIQUE ({})", key.join(", ")));
    }
    for check in &meta.checks {
        lines.push(format!(
            "CONSTRAINT {} CHECK ({})",
            quote_identifier(&check.name),
            check.sql
        ));
    }
    for fk in &meta.foreign_keys {
        lines.push(foreign_key_clause(catalog, fk));
    }
    let mut script = format!(
        "CREATE TABLE {} (\n  {}\n);",
        quote_key(catalog, &meta.name),
        lines.join(",\n  ")
    );
    for index in catalog.indexes.iter().filter(|i| i.table == meta.name) {
        let columns: Vec<String> = index.columns.iter().map(|c| quote_identifier(c)).collect();
        script.push_str(&format!(
            "\nCREATE {}INDEX {} ON {} ({});",
            if index.unique { "UNIQUE " } else { "" },
            quote_identifier(catalog.split(&index.name).1),
            quote_key(catalog, &meta.name),
            columns.join(", ")
        ));
    }
    script
}

/// An identifier as SQL reads it back: bare when it is lower case letters,
/// digits and `_` (not starting with a digit) and not a reserved word,
/// double-quoted otherwise.
pub fn quote_identifier(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare && !RESERVED.contains(&name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's reserved key words (its manual, appendix C), and the words
/// the parser reads as the start of a table constraint in a column list
/// (`key`, `index`, `fulltext`, `spatial`): a name spelled so is quoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "fulltext",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "index",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "key",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "spatial",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// The SQL type EntiDB maps to `t` (docs/sql.md, Types); Arrow's own name
/// for types only Arrow data brings (COPY from Parquet, append), which
/// DataFusion's CAST also reads for most of them.
pub(crate) fn sql_type(t: &DataType) -> String {
    sql_type_name(t).unwrap_or_else(|| t.to_string())
}

/// The SQL name of `t`, when it has one.
pub(crate) fn sql_type_name(t: &DataType) -> Option<String> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INTEGER UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::Duration(TimeUnit::Nanosecond) => "INTERVAL".into(),
        _ => return None,
    })
}

/// `CONSTRAINT name FOREIGN KEY (cols) REFERENCES parent (cols) [ON …]`.
/// A relation key as SQL reads it back: `t`, or `s.t` for schema `s`.
fn quote_key(catalog: &Catalog, key: &str) -> String {
    match catalog.split(key) {
        (entidb_catalog::MAIN, name) => quote_identifier(name),
        (schema, name) => format!("{}.{}", quote_identifier(schema), quote_identifier(name)),
    }
}

fn foreign_key_clause(catalog: &Catalog, fk: &entidb_catalog::ForeignKeyMeta) -> String {
    let list = |names: &[String]| -> String {
        names
            .iter()
            .map(|n| quote_identifier(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let action = |a: entidb_catalog::FkAction| match a {
        entidb_catalog::FkAction::NoAction => None,
        entidb_catalog::FkAction::Restrict => Some("RESTRICT"),
        entidb_catalog::FkAction::Cascade => Some("CASCADE"),
        entidb_catalog::FkAction::SetNull => Some("SET NULL"),
        entidb_catalog::FkAction::SetDefault => Some("SET DEFAULT"),
    };
    let mut clause = format!(
        "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
        quote_identifier(&fk.name),
        list(&fk.columns),
        quote_key(catalog, &fk.parent),
        list(&fk.parent_columns)
    );
    if let Some(a) = action(fk.on_delete) {
        clause.push_str(&format!(" ON DELETE {a}"));
    }
    if let Some(a) = action(fk.on_update) {
        clause.push_str(&format!(" ON UPDATE {a}"));
    }
    clause
}
