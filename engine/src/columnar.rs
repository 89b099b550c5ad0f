//! The engine's own encoding of Arrow arrays, schemas and batches.
//!
//! Segments and WAL records must decode arbitrary (damaged) bytes without
//! panicking. Arrow's IPC reader does not promise that, so the engine writes
//! arrays in a small self-describing format and rebuilds them with
//! `ArrayDataBuilder::build`, which validates offsets, lengths, UTF-8 and
//! buffer sizes and reports violations as errors.
//!
//! ```text
//!   array  := type | len u32 | has_nulls u8 | [null bitmap bytes]
//!             | buffers u8 | (bytes)*            -- ArrayData buffers, offset 0
//!   type   := tag u8 | parameters               -- see `encode_type`
//!   field  := name str | nullable u8 | type
//!   schema := fields u32 | field*
//!   batch  := schema | rows u32 | array*        -- one array per field
//! ```
//!
//! Supported types: Boolean, Int8–64, UInt8–64, Float16/32/64, Utf8,
//! LargeUtf8, Utf8View, Binary, LargeBinary, BinaryView, FixedSizeBinary,
//! Date32/64, Time32/64, Timestamp (with time zone), Duration, Interval,
//! Decimal128/256. Nested types are refused with `InvalidArgument`.
#![deny(clippy::indexing_slicing)]

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use arrow::array::{
    Array, ArrayData, ArrayRef, MutableArrayData, RecordBatch, RecordBatchOptions, make_array,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// Fails unless the engine can store values of type `t`.
pub fn check_type(t: &DataType) -> Result<()> {
    encode_type(&mut Encoder::new(), t)
}

fn unit_tag(u: &TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

fn unit_from(d: &Decoder<'_>, v: u8) -> Result<TimeUnit> {
    Ok(match v {
        0 => TimeUnit::Second,
        1 => TimeUnit::Millisecond,
        2 => TimeUnit::Microsecond,
        3 => TimeUnit::Nanosecond,
        _ => return Err(d.error(format!("bad time unit {v}"))),
    })
}

/// Encodes a data type.
pub fn encode_type(e: &mut Encoder, t: &DataType) -> Result<()> {
    use DataType as T;
    match t {
        T::Boolean => e.u8(1),
        T::Int8 => e.u8(2),
        T::Int16 => e.u8(3),
        T::Int32 => e.u8(4),
        T::Int64 => e.u8(5),
        T::UInt8 => e.u8(6),
        T::UInt16 => e.u8(7),
        T::UInt32 => e.u8(8),
        T::UInt64 => e.u8(9),
        T::Float16 => e.u8(10),
        T::Float32 => e.u8(11),
        T::Float64 => e.u8(12),
        T::Utf8 => e.u8(13),
        T::LargeUtf8 => e.u8(14),
        T::Utf8View => e.u8(15),
        T::Binary => e.u8(16),
        T::LargeBinary => e.u8(17),
        T::BinaryView => e.u8(18),
        T::FixedSizeBinary(n) => e.u8(19).u32(*n as u32),
        T::Date32 => e.u8(20),
        T::Date64 => e.u8(21),
        T::Time32(u) => e.u8(22).u8(unit_tag(u)),
        T::Time64(u) => e.u8(23).u8(unit_tag(u)),
        T::Timestamp(u, tz) => {
            e.u8(24).u8(unit_tag(u));
            match tz {
                Some(tz) => e.u8(1).str(tz)?,
                None => e.u8(0),
            }
        }
        T::Duration(u) => e.u8(25).u8(unit_tag(u)),
        T::Interval(u) => e.u8(26).u8(match u {
            IntervalUnit::YearMonth => 0,
            IntervalUnit::DayTime => 1,
            IntervalUnit::MonthDayNano => 2,
        }),
        T::Decimal128(p, s) => e.u8(27).u8(*p).u8(*s as u8),
        T::Decimal256(p, s) => e.u8(28).u8(*p).u8(*s as u8),
        T::Null => e.u8(29),
        other => {
            return Err(Error::InvalidArgument(format!(
                "columns of type {other} cannot be stored"
            )));
        }
    };
    Ok(())
}

/// Decodes a data type.
pub fn decode_type(d: &mut Decoder<'_>) -> Result<DataType> {
    use DataType as T;
    let tag = d.u8()?;
    Ok(match tag {
        1 => T::Boolean,
        2 => T::Int8,
        3 => T::Int16,
        4 => T::Int32,
        5 => T::Int64,
        6 => T::UInt8,
        7 => T::UInt16,
        8 => T::UInt32,
        9 => T::UInt64,
        10 => T::Float16,
        11 => T::Float32,
        12 => T::Float64,
        13 => T::Utf8,
        14 => T::LargeUtf8,
        15 => T::Utf8View,
        16 => T::Binary,
        17 => T::LargeBinary,
        18 => T::BinaryView,
        19 => {
            let n = d.u32()?;
            T::FixedSizeBinary(i32::try_from(n).map_err(|_| d.error("bad width"))?)
        }
        20 => T::Date32,
        21 => T::Date64,
        22 => {
            let u = d.u8()?;
            T::Time32(unit_from(d, u)?)
        }
        23 => {
            let u = d.u8()?;
            T::Time64(unit_from(d, u)?)
        }
        24 => {
            let u = d.u8()?;
            let unit = unit_from(d, u)?;
            let tz = match d.u8()? {
                0 => None,
                _ => Some(Arc::from(d.str()?)),
            };
            T::Timestamp(unit, tz)
        }
        25 => {
            let u = d.u8()?;
            T::Duration(unit_from(d, u)?)
        }
        26 => T::Interval(match d.u8()? {
            0 => IntervalUnit::YearMonth,
            1 => IntervalUnit::DayTime,
            2 => IntervalUnit::MonthDayNano,
            v => return Err(d.error(format!("bad interval unit {v}"))),
        }),
        27 => T::Decimal128(d.u8()?, d.u8()? as i8),
        28 => T::Decimal256(d.u8()?, d.u8()? as i8),
        29 => T::Null,
        _ => return Err(d.error(format!("unknown type tag {tag}"))),
    })
}

/// Encodes a schema (field names, nullability, types; no metadata).
pub fn encode_schema(e: &mut Encoder, schema: &Schema) -> Result<()> {
    e.u32(schema.fields().len() as u32);
    for f in schema.fields() {
        e.str(f.name())?.u8(u8::from(f.is_nullable()));
        encode_type(e, f.data_type())?;
    }
    Ok(())
}

/// Decodes a schema written by [`encode_schema`].
pub fn decode_schema(d: &mut Decoder<'_>) -> Result<SchemaRef> {
    let n = d.count(6)?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let name = d.str()?.to_string();
        let nullable = d.u8()? != 0;
        let t = decode_type(d)?;
        fields.push(Field::new(name, t, nullable));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Encodes one array (self-describing).
pub fn encode_array(e: &mut Encoder, array: &dyn Array) -> Result<()> {
    encode_type(e, array.data_type())?;
    // Copy into fresh, tight buffers: a slice shares its parent's buffers
    // (the whole values buffer of a string array, a null bitmap with a bit
    // offset), and those must never be written as they are.
    let data = compact(array)?;
    if !data.child_data().is_empty() {
        return Err(Error::InvalidArgument(
            "nested arrays cannot be stored".into(),
        ));
    }
    e.u32(u32::try_from(data.len()).map_err(|_| Error::InvalidArgument("array too long".into()))?);
    match data.nulls() {
        Some(nulls) if nulls.null_count() > 0 => {
            e.u8(1);
            e.bytes(nulls.buffer().as_slice())?;
        }
        _ => {
            e.u8(0);
        }
    }
    e.u8(data.buffers().len() as u8);
    for b in data.buffers() {
        e.bytes(b.as_slice())?;
    }
    Ok(())
}

/// A copy of `array` whose buffers start at offset 0 and hold exactly its
/// rows.
fn compact(array: &dyn Array) -> Result<ArrayData> {
    let source = array.to_data();
    let mut copy = MutableArrayData::new(vec![&source], false, source.len());
    copy.try_extend(0, 0, source.len())?;
    Ok(copy.freeze())
}

/// Decodes and validates one array.
pub fn decode_array(d: &mut Decoder<'_>) -> Result<ArrayRef> {
    let at = d.offset();
    let t = decode_type(d)?;
    let len = d.u32()? as usize;
    let nulls = match d.u8()? {
        0 => None,
        _ => {
            let bitmap = d.bytes()?;
            if bitmap.len() < len.div_ceil(8) {
                return Err(d.error("null bitmap too short"));
            }
            Some(NullBuffer::new(arrow::buffer::BooleanBuffer::new(
                Buffer::from_slice_ref(bitmap),
                0,
                len,
            )))
        }
    };
    let n = d.u8()? as usize;
    let mut buffers = Vec::with_capacity(n);
    for _ in 0..n {
        buffers.push(Buffer::from_slice_ref(d.bytes()?));
    }
    // Arrow's validation asserts (panics) on a fixed-width buffer whose
    // length is not a multiple of its element width (found by fuzzing):
    // refuse such buffers first.
    let layout = arrow::array::layout(&t);
    for (i, (spec, buffer)) in layout.buffers.iter().zip(&buffers).enumerate() {
        if let arrow::array::BufferSpec::FixedWidth { byte_width, .. } = spec
            && *byte_width > 0
            && buffer.len() % byte_width != 0
        {
            return Err(d.error_at(
                at,
                format!(
                    "buffer {i} holds {} bytes, not a multiple of {byte_width}",
                    buffer.len()
                ),
            ));
        }
    }
    let data = ArrayData::builder(t)
        .len(len)
        .nulls(nulls)
        .buffers(buffers)
        .build()
        .map_err(|e| d.error_at(at, format!("invalid array: {e}")))?;
    Ok(make_array(data))
}

/// Encodes a batch: schema, row count, arrays.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut e = Encoder::new();
    encode_schema(&mut e, &batch.schema())?;
    e.u32(batch.num_rows() as u32);
    for c in batch.columns() {
        encode_array(&mut e, c.as_ref())?;
    }
    Ok(e.finish())
}

/// Decodes a batch written by [`encode_batch`].
pub fn decode_batch(d: &mut Decoder<'_>) -> Result<RecordBatch> {
    let schema = decode_schema(d)?;
    let rows = d.u32()? as usize;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let a = decode_array(d)?;
        if a.data_type() != f.data_type() || a.len() != rows {
            return Err(d.error("batch column does not match its schema"));
        }
        columns.push(a);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, columns, &options)
        .map_err(|e| d.error(format!("invalid batch: {e}")))
}
