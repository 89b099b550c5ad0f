//! Typed access to result rows: [`Rows`] (a query's batches and schema)
//! and [`Row`] (one row of them), read with [`Row::get`] by position or
//! column name into any [`FromValue`] type.
//!
//! Rows are views into the Arrow batches the query returned (no copy);
//! [`Row::get`] converts one value through `ScalarValue`, so it suits
//! application code, not scans of millions of rows (use the batches).

use crate::{Error, ErrorKind, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::scalar::ScalarValue;

/// A query result: its schema (also when it has no rows) and its batches.
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// # let db = entidb::Database::open_in_memory()?;
/// # let mut conn = entidb::BlockingConnection::new(&db)?;
/// let rows = conn.query_rows("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)", &[])?;
/// assert_eq!(rows.len(), 2);
/// let names: Vec<String> = rows.iter().map(|r| r.get("s")).collect::<Result<_, _>>()?;
/// assert_eq!(names, ["a", "b"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Rows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Rows {
    /// Rows of `batches`, all of `schema`.
    ///
    /// ```
    /// use entidb::Rows;
    /// use entidb::arrow::datatypes::Schema;
    /// let rows = Rows::new(Schema::empty().into(), vec![]);
    /// assert!(rows.is_empty());
    /// ```
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches }
    }

    /// The result's columns.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let rows = conn.query_rows("SELECT 1 AS one WHERE false", &[])?;
    /// assert_eq!(rows.schema().field(0).name(), "one"); // kept without rows
    /// # Ok(()) }
    /// ```
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of rows.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// assert_eq!(conn.query_rows("SELECT * FROM generate_series(1, 3)", &[])?.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn len(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// True when there are no rows.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// assert!(conn.query_rows("SELECT 1 WHERE false", &[])?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows in order.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let mut total = 0i64;
    /// for row in conn.query_rows("SELECT * FROM generate_series(1, 4) AS t(n)", &[])?.iter() {
    ///     total += row.get::<i64>("n")?;
    /// }
    /// assert_eq!(total, 10);
    /// # Ok(()) }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Row> + '_ {
        self.batches
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |index| Row::new(b.clone(), index)))
    }

    /// The first row, if any.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let rows = conn.query_rows("SELECT 42 AS n", &[])?;
    /// assert_eq!(rows.first().map(|r| r.get::<i64>(0)).transpose()?, Some(42));
    /// # Ok(()) }
    /// ```
    pub fn first(&self) -> Option<Row> {
        self.iter().next()
    }

    /// The Arrow batches.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let rows = conn.query_rows("SELECT 1", &[])?;
    /// assert_eq!(rows.batches()[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The Arrow batches, owned.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let batches = conn.query_rows("SELECT 1", &[])?.into_batches();
    /// assert_eq!(batches.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }
}

/// One row of a result.
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// # let db = entidb::Database::open_in_memory()?;
/// # let mut conn = entidb::BlockingConnection::new(&db)?;
/// let row = conn.query_one("SELECT 1 AS id, 'x' AS name, NULL AS missing", &[])?;
/// let id: i64 = row.get("id")?;
/// let name: String = row.get(1)?;
/// let missing: Option<i64> = row.get("missing")?;
/// assert_eq!((id, name.as_str(), missing), (1, "x", None));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Row {
    batch: RecordBatch,
    index: usize,
}

impl Row {
    fn new(batch: RecordBatch, index: usize) -> Self {
        Self { batch, index }
    }

    /// The value of `column` (a position or a name) as a `T`.
    ///
    /// # Errors
    /// `UndefinedColumn` (42703) for an unknown name or position,
    /// `DatatypeMismatch` (42804) when the value does not convert to `T`
    /// (a NULL needs `Option<T>`).
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let row = conn.query_one("SELECT CAST(7 AS INT) AS n", &[])?;
    /// assert_eq!(row.get::<i64>("n")?, 7); // widened
    /// assert_eq!(row.get::<String>("n").unwrap_err().sqlstate(), "42804");
    /// assert_eq!(row.get::<i64>("nope").unwrap_err().sqlstate(), "42703");
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromValue>(&self, column: impl ColumnIndex) -> Result<T> {
        let index = column.index_in(self.batch.schema_ref())?;
        let value = self.value_at(index)?;
        let name = self
            .batch
            .schema_ref()
            .fields()
            .get(index)
            .map(|f| f.name().clone())
            .unwrap_or_default();
        T::from_value(value)
            .map_err(|why| ErrorKind::DatatypeMismatch(format!("column {name}: {why}")).into())
    }

    /// The value of `column` as a `ScalarValue` (any Arrow type).
    ///
    /// # Errors
    /// `UndefinedColumn` (42703) for an unknown name or position.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// use entidb::datafusion::scalar::ScalarValue;
    /// let row = conn.query_one("SELECT DATE '2024-01-31' AS d", &[])?;
    /// assert!(matches!(row.value("d")?, ScalarValue::Date32(Some(_))));
    /// # Ok(()) }
    /// ```
    pub fn value(&self, column: impl ColumnIndex) -> Result<ScalarValue> {
        let index = column.index_in(self.batch.schema_ref())?;
        self.value_at(index)
    }

    fn value_at(&self, index: usize) -> Result<ScalarValue> {
        let array = self
            .batch
            .columns()
            .get(index)
            .ok_or_else(|| undefined(index))?;
        ScalarValue::try_from_array(array, self.index).map_err(Error::from)
    }

    /// Number of columns.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// assert_eq!(conn.query_one("SELECT 1, 2, 3", &[])?.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn len(&self) -> usize {
        self.batch.num_columns()
    }

    /// True for a row without columns.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// assert!(!conn.query_one("SELECT 1", &[])?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row's columns.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let db = entidb::Database::open_in_memory()?;
    /// # let mut conn = entidb::BlockingConnection::new(&db)?;
    /// let row = conn.query_one("SELECT 1 AS a", &[])?;
    /// assert_eq!(row.schema().field(0).name(), "a");
    /// # Ok(()) }
    /// ```
    pub fn schema(&self) -> &SchemaRef {
        self.batch.schema_ref()
    }
}

fn undefined(column: impl std::fmt::Display) -> Error {
    ErrorKind::UndefinedColumn {
        column: column.to_string(),
        relation: Some("the query result".into()),
    }
    .into()
}

/// A way to name a column of a [`Row`]: its position (`usize`) or its name
/// (`&str`, exact first, then case-insensitively).
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// # let db = entidb::Database::open_in_memory()?;
/// # let mut conn = entidb::BlockingConnection::new(&db)?;
/// let row = conn.query_one("SELECT 5 AS Five", &[])?;
/// assert_eq!(row.get::<i64>(0)?, row.get::<i64>("five")?);
/// # Ok(()) }
/// ```
pub trait ColumnIndex {
    /// The column's position in `schema`.
    ///
    /// # Errors
    /// `UndefinedColumn` (42703).
    ///
    /// ```
    /// use entidb::ColumnIndex;
    /// use entidb::arrow::datatypes::{DataType, Field, Schema};
    /// let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
    /// assert_eq!("a".index_in(&schema)?, 0);
    /// assert!(1usize.index_in(&schema).is_err());
    /// # Ok::<(), entidb::Error>(())
    /// ```
    fn index_in(&self, schema: &Schema) -> Result<usize>;
}

impl ColumnIndex for usize {
    fn index_in(&self, schema: &Schema) -> Result<usize> {
        if *self < schema.fields().len() {
            Ok(*self)
        } else {
            Err(undefined(format!("#{self}")))
        }
    }
}

impl ColumnIndex for &str {
    fn index_in(&self, schema: &Schema) -> Result<usize> {
        schema
            .index_of(self)
            .ok()
            .or_else(|| {
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(self))
            })
            .ok_or_else(|| undefined(self))
    }
}

impl ColumnIndex for &String {
    fn index_in(&self, schema: &Schema) -> Result<usize> {
        self.as_str().index_in(schema)
    }
}

/// A Rust type a value of a result can be read as ([`Row::get`]).
///
/// Integers convert from every integer type when they fit, floats from
/// floats and integers, `String` from text, `Vec<u8>` from binary, `bool`
/// from booleans; `Option<T>` reads NULL as `None`; `ScalarValue` takes
/// anything.
///
/// ```
/// use entidb::FromValue;
/// use entidb::datafusion::scalar::ScalarValue;
/// assert_eq!(i32::from_value(ScalarValue::Int64(Some(3))), Ok(3));
/// assert!(u8::from_value(ScalarValue::Int64(Some(300))).is_err());
/// assert_eq!(Option::<i64>::from_value(ScalarValue::Int64(None)), Ok(None));
/// ```
pub trait FromValue: Sized {
    /// Converts `value`.
    ///
    /// # Errors
    /// Why the value does not convert (a NULL, another type, out of range).
    ///
    /// ```
    /// use entidb::FromValue;
    /// use entidb::datafusion::scalar::ScalarValue;
    /// assert_eq!(String::from_value(ScalarValue::from("x")), Ok("x".to_string()));
    /// ```
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String>;
}

fn is_null(value: &ScalarValue) -> bool {
    value.is_null()
}

fn mismatch(value: &ScalarValue, want: &str) -> String {
    if is_null(value) {
        format!("NULL cannot be read as {want}; read an Option<{want}>")
    } else {
        format!("a {} value cannot be read as {want}", value.data_type())
    }
}

/// The value of any integer scalar.
fn integer(value: &ScalarValue) -> Option<i128> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => i128::from(*v),
        ScalarValue::Int16(Some(v)) => i128::from(*v),
        ScalarValue::Int32(Some(v)) => i128::from(*v),
        ScalarValue::Int64(Some(v)) => i128::from(*v),
        ScalarValue::UInt8(Some(v)) => i128::from(*v),
        ScalarValue::UInt16(Some(v)) => i128::from(*v),
        ScalarValue::UInt32(Some(v)) => i128::from(*v),
        ScalarValue::UInt64(Some(v)) => i128::from(*v),
        _ => return None,
    })
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
                let n = integer(&value).ok_or_else(|| mismatch(&value, stringify!($t)))?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}

from_integer!(i8, i16, i32, i64, u8, u16, u32, u64);

impl FromValue for f64 {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        match value {
            ScalarValue::Float64(Some(v)) => Ok(v),
            ScalarValue::Float32(Some(v)) => Ok(f64::from(v)),
            other => integer(&other)
                // Integers beyond 2^53 round, as in SQL's CAST.
                .map(|n| n as f64)
                .ok_or_else(|| mismatch(&other, "f64")),
        }
    }
}

impl FromValue for f32 {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        match value {
            ScalarValue::Float32(Some(v)) => Ok(v),
            other => Err(mismatch(&other, "f32")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        match value {
            ScalarValue::Boolean(Some(v)) => Ok(v),
            other => Err(mismatch(&other, "bool")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Ok(s),
            other => Err(mismatch(&other, "String")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        match value {
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b))
            | ScalarValue::FixedSizeBinary(_, Some(b)) => Ok(b),
            other => Err(mismatch(&other, "Vec<u8>")),
        }
    }
}

impl FromValue for ScalarValue {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        Ok(value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: ScalarValue) -> std::result::Result<Self, String> {
        if is_null(&value) {
            Ok(None)
        } else {
            T::from_value(value).map(Some)
        }
    }
}
