//! Scalar functions EntiDB adds to, or widens in, DataFusion's set.
//!
//! - `length(bytea)` and `octet_length(bytea)`: the number of bytes, as in
//!   PostgreSQL. DataFusion's `length`/`octet_length` take only text, so
//!   [`ByteLength`] wraps each: binary arguments are counted with Arrow's
//!   `length` kernel, every other argument goes to the built-in function
//!   unchanged (same coercions, same result type).
//! - JSON over TEXT (`->`, `->>`, `json_get…`, `json_length`…) comes from the
//!   `datafusion-functions-json` crate, registered by the session.
//! - `__sqlite_number(x)` ([`SqliteNumber`]): SQLite's reading of a value as
//!   a number, for the sqlite dialect's `sum`/`avg`/`total` (`dialect.rs`):
//!   text becomes the DOUBLE its longest numeric prefix spells (`'12abc'`
//!   12, `'abc'` 0, as SQLite's aggregates read text), any other value
//!   passes unchanged.
//! - `__total_arg(x)` ([`TotalArg`]): `CAST(x AS DOUBLE)` under a name of its
//!   own, the argument `total(x)` sums (`dialect.rs`). DataFusion names a
//!   CAST by its operand, so `sum(CAST(x AS DOUBLE))` and `sum(x)` in one
//!   query were two aggregates with one name (an error).

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// The functions of this module that replace a built-in of the same name,
/// built from the session's current functions.
pub(crate) fn widened_functions(
    builtins: &std::collections::HashMap<String, Arc<ScalarUDF>>,
) -> Vec<ScalarUDF> {
    ["length", "octet_length"]
        .iter()
        .filter_map(|name| builtins.get(*name))
        .map(|inner| ScalarUDF::new_from_impl(ByteLength::new(Arc::clone(inner))))
        .collect()
}

/// The name of [`SqliteNumber`].
pub(crate) const SQLITE_NUMBER: &str = "__sqlite_number";

/// `__sqlite_number(x)`: see the module doc.
pub(crate) fn sqlite_number() -> ScalarUDF {
    ScalarUDF::new_from_impl(SqliteNumber {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SqliteNumber {
    signature: Signature,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ScalarUDFImpl for SqliteNumber {
    fn name(&self) -> &str {
        SQLITE_NUMBER
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(t) if is_text(t) => Ok(DataType::Float64),
            Some(t) => Ok(t.clone()),
            None => Ok(DataType::Null),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(value) = args.args.into_iter().next() else {
            return Err(DataFusionError::Plan(format!(
                "{SQLITE_NUMBER} takes one argument"
            )));
        };
        if !is_text(&value.data_type()) {
            return Ok(value);
        }
        let read = |array: &arrow::array::ArrayRef| -> DfResult<arrow::array::Float64Array> {
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            Ok(text
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(crate::dialect::text_as_real))
                .collect())
        };
        match value {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(read(&array)?))),
            ColumnarValue::Scalar(scalar) => {
                let numbers = read(&scalar.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &numbers, 0,
                )?))
            }
        }
    }
}

/// The name of [`TotalArg`].
pub(crate) const TOTAL_ARG: &str = "__total_arg";

/// `__total_arg(x)`: see the module doc.
pub(crate) fn total_arg() -> ScalarUDF {
    ScalarUDF::new_from_impl(TotalArg {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TotalArg {
    signature: Signature,
}

impl ScalarUDFImpl for TotalArg {
    fn name(&self) -> &str {
        TOTAL_ARG
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(value) = args.args.into_iter().next() else {
            return Err(DataFusionError::Plan(format!(
                "{TOTAL_ARG} takes one argument"
            )));
        };
        // As CAST: a value that is no number is an error, not NULL.
        let options = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        value.cast_to(&DataType::Float64, Some(&options))
    }
}

/// A text-length function that also counts the bytes of a binary value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByteLength {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

const BINARY_TYPES: [DataType; 2] = [DataType::Binary, DataType::LargeBinary];

impl ByteLength {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        let signature = Signature::one_of(
            vec![
                TypeSignature::Uniform(1, BINARY_TYPES.to_vec()),
                inner.signature().type_signature.clone(),
            ],
            Volatility::Immutable,
        );
        Self { inner, signature }
    }

    fn is_binary(arg_types: &[DataType]) -> bool {
        matches!(arg_types, [t] if BINARY_TYPES.contains(t))
    }
}

impl ScalarUDFImpl for ByteLength {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [DataType::Binary] => Ok(DataType::Int32),
            [DataType::LargeBinary] => Ok(DataType::Int64),
            _ => self.inner.return_type(arg_types),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        if !Self::is_binary(&types) {
            return self.inner.invoke_with_args(args);
        }
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.name()
            )));
        };
        match value {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(
                arrow::compute::kernels::length::length(array)?,
            )),
            ColumnarValue::Scalar(scalar) => {
                let lengths = arrow::compute::kernels::length::length(&scalar.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &lengths, 0,
                )?))
            }
        }
    }

    fn with_updated_config(&self, _config: &ConfigOptions) -> Option<ScalarUDF> {
        None
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
