//! Per-chunk min/max statistics used to skip row groups.

use crate::codec::{Decoder, Encoder};
use crate::error::Result;
use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::compute::kernels::aggregate::{max, max_string, min, min_string};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

/// Longest string kept as a statistic (longer values disable string stats).
const MAX_STRING_STAT: usize = 64;

/// One statistic value.
#[derive(Debug, Clone, PartialEq)]
pub enum StatValue {
    /// No statistic (unsupported type, or all values null).
    None,
    /// Integer-like values (integers, dates, timestamps) as i64.
    Int(i64),
    /// Floating-point values as f64.
    Float(f64),
    /// Strings.
    Str(String),
}

impl StatValue {
    /// Encodes the value with a one-byte tag.
    pub fn encode(&self, e: &mut Encoder) -> Result<()> {
        match self {
            StatValue::None => {
                e.u8(0);
            }
            StatValue::Int(v) => {
                e.u8(1).i64(*v);
            }
            StatValue::Float(v) => {
                e.u8(2).u64(v.to_bits());
            }
            StatValue::Str(s) => {
                e.u8(3).str(s)?;
            }
        }
        Ok(())
    }

    /// Decodes a value written by [`StatValue::encode`].
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self> {
        Ok(match d.u8()? {
            0 => StatValue::None,
            1 => StatValue::Int(d.i64()?),
            2 => StatValue::Float(f64::from_bits(d.u64()?)),
            3 => StatValue::Str(d.str()?.to_string()),
            t => return Err(d.error(format!("unknown statistic tag {t}"))),
        })
    }
}

fn is_int_like(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
}

/// Computes `(min, max)` of an array.
pub fn min_max(array: &dyn Array) -> (StatValue, StatValue) {
    let t = array.data_type();
    if is_int_like(t) && !matches!(t, DataType::UInt64) {
        if let Ok(a) = cast(array, &DataType::Int64) {
            let a = a.as_primitive::<Int64Type>();
            if let (Some(lo), Some(hi)) = (min(a), max(a)) {
                return (StatValue::Int(lo), StatValue::Int(hi));
            }
        }
    } else if t.is_floating() {
        if let Ok(a) = cast(array, &DataType::Float64) {
            let a = a.as_primitive::<Float64Type>();
            if let (Some(lo), Some(hi)) = (min(a), max(a))
                && !lo.is_nan()
                && !hi.is_nan()
            {
                return (StatValue::Float(lo), StatValue::Float(hi));
            }
        }
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        && let Ok(a) = cast(array, &DataType::Utf8)
    {
        let a = a.as_string::<i32>();
        if let (Some(lo), Some(hi)) = (min_string(a), max_string(a))
            && lo.len() <= MAX_STRING_STAT
            && hi.len() <= MAX_STRING_STAT
        {
            return (
                StatValue::Str(lo.to_string()),
                StatValue::Str(hi.to_string()),
            );
        }
    }
    (StatValue::None, StatValue::None)
}
