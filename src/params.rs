//! Statement parameters: Rust values into the `ScalarValue`s bound to
//! `$1`, `?1` or `?` placeholders.
//!
//! [`params!`](crate::params!) builds the `&[ScalarValue]` every `…_with`
//! and `…_prepared` method takes, converting each argument with
//! [`ToValue`].

use datafusion::scalar::ScalarValue;

/// A Rust value usable as a statement parameter.
///
/// Implemented for the integer and float types, `bool`, `&str`/`String`,
/// byte slices and vectors, `Option<T>` (`None` binds NULL) and
/// `ScalarValue` itself (any Arrow type).
///
/// ```
/// use entidb::ToValue;
/// use entidb::datafusion::scalar::ScalarValue;
/// assert_eq!(7i64.to_value(), ScalarValue::Int64(Some(7)));
/// assert_eq!(None::<i32>.to_value(), ScalarValue::Null);
/// ```
pub trait ToValue {
    /// The value as a DataFusion scalar.
    fn to_value(self) -> ScalarValue;
}

macro_rules! to_value_via_from {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(self) -> ScalarValue {
                ScalarValue::from(self)
            }
        }
    )*};
}

to_value_via_from!(
    i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool, &str, String
);

impl ToValue for &String {
    fn to_value(self) -> ScalarValue {
        ScalarValue::from(self.as_str())
    }
}

impl ToValue for &[u8] {
    fn to_value(self) -> ScalarValue {
        ScalarValue::Binary(Some(self.to_vec()))
    }
}

impl ToValue for Vec<u8> {
    fn to_value(self) -> ScalarValue {
        ScalarValue::Binary(Some(self))
    }
}

impl ToValue for ScalarValue {
    fn to_value(self) -> ScalarValue {
        self
    }
}

impl ToValue for &ScalarValue {
    fn to_value(self) -> ScalarValue {
        self.clone()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(self) -> ScalarValue {
        match self {
            Some(v) => v.to_value(),
            None => ScalarValue::Null,
        }
    }
}

/// Statement parameters: `params![1, "one", None::<f64>]` is a
/// `&[ScalarValue]` for `$1, $2, $3` (or `?, ?, ?`), each argument
/// converted with [`ToValue`](crate::ToValue).
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// use entidb::{BlockingConnection, Database, params};
/// let db = Database::open_in_memory()?;
/// let mut conn = BlockingConnection::new(&db)?;
/// conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")?;
/// conn.execute_with("INSERT INTO t VALUES (?, ?)", params![1, "one"])?;
/// let name: String = conn.query_row("SELECT name FROM t WHERE id = $1", params![1], |r| r.get(0))?;
/// assert_eq!(name, "one");
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[$crate::datafusion::scalar::ScalarValue]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::ToValue::to_value($value)),+] as &[$crate::datafusion::scalar::ScalarValue]
    };
}
