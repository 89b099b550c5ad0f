//! SQL names for Arrow types: the type row of `.mode box`, `.schema`, and
//! the columns `.import` creates.

use arrow::datatypes::DataType;

/// The SQL type EntiDB accepts for `t` in `CREATE TABLE`, or `None` when
/// there is none (nested and exotic types).
pub fn sql_type(t: &DataType) -> Option<String> {
    Some(
        match t {
            DataType::Boolean => "BOOLEAN",
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "SMALLINT",
            DataType::Int32 | DataType::UInt16 => "INT",
            DataType::Int64 | DataType::UInt32 => "BIGINT",
            DataType::UInt64 => "DECIMAL(20, 0)",
            DataType::Float16 | DataType::Float32 => "REAL",
            DataType::Float64 => "DOUBLE",
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                return Some(format!("DECIMAL({p}, {s})"));
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT",
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA",
            DataType::Date32 | DataType::Date64 => "DATE",
            DataType::Time32(_) | DataType::Time64(_) => "TIME",
            DataType::Timestamp(_, None) => "TIMESTAMP",
            DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ",
            DataType::Interval(_) => "INTERVAL",
            DataType::Null => "TEXT",
            _ => return None,
        }
        .to_string(),
    )
}

/// The type as shown under a column header: the SQL name, or Arrow's.
pub fn display_type(t: &DataType) -> String {
    sql_type(t).unwrap_or_else(|| t.to_string())
}
