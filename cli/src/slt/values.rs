//! Result values as text, the two ways sqllogictest files expect them.
//!
//! - [`format_rows`]: by the value's own type (what DataFusion's and
//!   EntiDB's own `.slt` files expect): arrow's display, NULL as `NULL`, the
//!   empty string as `(empty)`.
//! - [`format_rows_as_declared`]: by the type letter the record declares for
//!   each column (`query IRT`), as SQLite's own harness prints them through
//!   `sqlite3_column_int64`/`_double`/`_text`: under `I` a float is
//!   truncated toward zero, a boolean is 0 or 1 and text is read as its
//!   leading integer (`'12abc'` → 12, `'abc'` → 0); under `R` every number
//!   prints `%.3f` (halves rounded away from zero, as SQLite's printf does,
//!   and no `-0.000`) and text is read as its leading decimal; under `T` a
//!   float prints as SQLite's `%!.15g`, the empty string as `(empty)`, and
//!   each byte outside printable ASCII becomes `@`. NULL is `NULL` under
//!   every letter. A column without a letter (more columns than the record
//!   declares) is formatted by its own type.

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::scalar::ScalarValue;
use entidb::Error;
use sqllogictest::DefaultColumnType;

/// Formats batches as rows of strings by each value's own type.
///
/// # Errors
/// When arrow cannot display a column's type.
pub fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Error> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(execution_error)?;
        for row in 0..batch.num_rows() {
            let cells = formatters
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| {
                    let s = f.value(row).to_string();
                    if s.is_empty() && !c.is_null(row) {
                        "(empty)".to_string()
                    } else {
                        s
                    }
                })
                .collect();
            rows.push(cells);
        }
    }
    Ok(rows)
}

/// Formats batches as rows of strings by the declared type letters.
///
/// # Errors
/// When a value cannot be read as a scalar.
pub fn format_rows_as_declared(
    batches: &[RecordBatch],
    letters: &[DefaultColumnType],
) -> Result<Vec<Vec<String>>, Error> {
    let by_own_type = format_rows(batches)?;
    let mut rows = Vec::with_capacity(by_own_type.len());
    let mut own_rows = by_own_type.into_iter();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let own = own_rows.next().unwrap_or_default();
            let mut cells = Vec::with_capacity(batch.num_columns());
            for (i, column) in batch.columns().iter().enumerate() {
                let value = ScalarValue::try_from_array(column, row).map_err(execution_error)?;
                let cell = match letters.get(i) {
                    Some(letter) => as_declared(&value, letter),
                    None => None,
                };
                cells.push(match cell {
                    Some(text) => text,
                    None => own.get(i).cloned().unwrap_or_default(),
                });
            }
            rows.push(cells);
        }
    }
    Ok(rows)
}

fn execution_error(e: impl std::fmt::Display) -> Error {
    Error::from(entidb_sql::ErrorKind::Execution(e.to_string()))
}

/// One value under one letter; `None` to fall back to its own display.
fn as_declared(value: &ScalarValue, letter: &DefaultColumnType) -> Option<String> {
    if value.is_null() {
        return Some("NULL".into());
    }
    let number = Number::of(value);
    let text = match letter {
        DefaultColumnType::Integer => match number {
            Number::Int(i) => i.to_string(),
            // `as` saturates, as SQLite's double-to-int64 conversion does.
            Number::Float(f) => (f.trunc() as i64).to_string(),
            Number::Text(s) => leading_integer(&s).to_string(),
            Number::Other => return None,
        },
        DefaultColumnType::FloatingPoint => match number {
            Number::Int(i) => sqlite_f3(i as f64),
            Number::Float(f) => sqlite_f3(f),
            Number::Text(s) => sqlite_f3(entidb_sql::dialect::text_as_real(&s)),
            Number::Other => return None,
        },
        DefaultColumnType::Text | DefaultColumnType::Any => match number {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => sqlite_g15(f),
            Number::Text(s) if s.is_empty() => "(empty)".into(),
            Number::Text(s) => s
                .bytes()
                .map(|b| {
                    if (b' '..=b'~').contains(&b) {
                        char::from(b)
                    } else {
                        '@'
                    }
                })
                .collect(),
            Number::Other => return None,
        },
    };
    Some(text)
}

/// A value as SQLite's storage classes see it.
enum Number {
    Int(i64),
    Float(f64),
    Text(String),
    /// Dates, lists, binary…: printed by their own type.
    Other,
}

impl Number {
    fn of(value: &ScalarValue) -> Number {
        use ScalarValue as S;
        match value {
            S::Boolean(Some(b)) => Number::Int(i64::from(*b)),
            S::Int8(Some(v)) => Number::Int(i64::from(*v)),
            S::Int16(Some(v)) => Number::Int(i64::from(*v)),
            S::Int32(Some(v)) => Number::Int(i64::from(*v)),
            S::Int64(Some(v)) => Number::Int(*v),
            S::UInt8(Some(v)) => Number::Int(i64::from(*v)),
            S::UInt16(Some(v)) => Number::Int(i64::from(*v)),
            S::UInt32(Some(v)) => Number::Int(i64::from(*v)),
            S::UInt64(Some(v)) => i64::try_from(*v)
                .map(Number::Int)
                .unwrap_or(Number::Float(*v as f64)),
            S::Float16(Some(v)) => Number::Float(f64::from(*v)),
            S::Float32(Some(v)) => Number::Float(f64::from(*v)),
            S::Float64(Some(v)) => Number::Float(*v),
            S::Decimal128(Some(v), _, scale) => {
                Number::Float(*v as f64 / 10f64.powi(i32::from(*scale)))
            }
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => {
                Number::Text(s.clone())
            }
            _ => Number::Other,
        }
    }
}

/// SQLite's text-to-integer reading: optional spaces and sign, then digits
/// up to the first other character; 0 when there are none. Saturates.
fn leading_integer(s: &str) -> i64 {
    let t = s.trim_start();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or("")),
        Some(b'+') => (false, t.get(1..).unwrap_or("")),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(b - b'0');
        value = value.saturating_mul(10).saturating_add(d);
    }
    if negative {
        value.saturating_neg()
    } else {
        value
    }
}

/// SQLite's `%.3f`: halves round away from zero (Rust's formatting rounds
/// them to even), a result of zero has no sign, and as SQLite's printf
/// prints at most 16 significant digits, the digits after the 16th are
/// zeros (`-9223372036854775808` prints `-9223372036854776000.000`).
fn sqlite_f3(f: f64) -> String {
    let rounded = (f * 1000.0).round() / 1000.0;
    if rounded == 0.0 {
        return "0.000".into();
    }
    if !rounded.is_finite() || rounded.abs() < 1e13 {
        // At most 13 integer digits and 3 decimals: 16 digits or fewer.
        return format!("{rounded:.3}");
    }
    sixteen_digits(rounded)
}

/// `%.3f` of `f` (|f| ≥ 1e13) rounded to 16 significant digits.
fn sixteen_digits(f: f64) -> String {
    let scientific = format!("{:.15e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let integer_digits = exponent.parse::<usize>().unwrap_or(0) + 1;
    let all: String = digits
        .chars()
        .chain(std::iter::repeat('0'))
        .take(integer_digits + 3)
        .collect();
    let integer = all.get(..integer_digits).unwrap_or_default();
    let fraction = all.get(integer_digits..).unwrap_or_default();
    let sign = if f < 0.0 { "-" } else { "" };
    format!("{sign}{integer}.{fraction}")
}

/// SQLite's `%!.15g`: 15 significant digits, trailing zeros dropped but a
/// decimal point always kept (`2.0`, `0.1`, `1.0e+20`).
fn sqlite_g15(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return "0.0".into();
    }
    // The exponent after rounding to 15 significant digits.
    let scientific = format!("{f:.14e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..15).contains(&exponent) {
        let decimals = usize::try_from(14 - exponent).unwrap_or(0);
        keep_point(trim_zeros(&format!("{f:.decimals$}")))
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            keep_point(trim_zeros(mantissa)),
            exponent.unsigned_abs()
        )
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').to_string()
    } else {
        s.to_string()
    }
}

fn keep_point(s: String) -> String {
    if s.ends_with('.') {
        format!("{s}0")
    } else if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_format_as_sqlite_does() {
        use DefaultColumnType::{FloatingPoint as R, Integer as I, Text as T};
        let cases: Vec<(ScalarValue, DefaultColumnType, &str)> = vec![
            (ScalarValue::Float64(Some(71.9)), I, "71"),
            (ScalarValue::Float64(Some(-71.9)), I, "-71"),
            (ScalarValue::Boolean(Some(true)), I, "1"),
            (ScalarValue::Utf8(Some("12abc".into())), I, "12"),
            (ScalarValue::Utf8(Some("abc".into())), I, "0"),
            (ScalarValue::Int64(Some(3)), R, "3.000"),
            (ScalarValue::Float64(Some(1.25)), R, "1.250"),
            (ScalarValue::Utf8(Some("2.5x".into())), R, "2.500"),
            (ScalarValue::Float64(Some(2.0)), T, "2.0"),
            (ScalarValue::Float64(Some(0.1 + 0.2)), T, "0.3"),
            (ScalarValue::Float64(Some(1e20)), T, "1.0e+20"),
            (ScalarValue::Utf8(Some(String::new())), T, "(empty)"),
            (ScalarValue::Utf8(Some("a\tb".into())), T, "a@b"),
            (ScalarValue::Utf8(Some("é".into())), T, "@@"),
            (ScalarValue::Float64(Some(0.0625)), R, "0.063"),
            (ScalarValue::Float64(Some(-0.0001)), R, "0.000"),
            (ScalarValue::Int64(None), R, "NULL"),
            (
                ScalarValue::Float64(Some(-9223372036854775808.0)),
                R,
                "-9223372036854776000.000",
            ),
            (
                ScalarValue::Float64(Some(-18446744073709551616.0)),
                R,
                "-18446744073709550000.000",
            ),
            (
                ScalarValue::Float64(Some(12345678901234.567)),
                R,
                "12345678901234.570",
            ),
            (
                ScalarValue::Float64(Some(1234567890123.456)),
                R,
                "1234567890123.456",
            ),
        ];
        for (value, letter, want) in cases {
            assert_eq!(
                as_declared(&value, &letter).as_deref(),
                Some(want),
                "{value:?} under {letter:?}"
            );
        }
    }
}
