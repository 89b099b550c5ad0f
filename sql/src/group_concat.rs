//! `group_concat(DISTINCT x [, sep])` as SQLite computes it: the distinct
//! values in the order they first appear.
//!
//! `dialect.rs` turns `group_concat(x, sep)` into `string_agg`, which keeps
//! the input order but whose DISTINCT form collects a hash set (and
//! DataFusion may plan any single DISTINCT aggregate as a GROUP BY), so the
//! order of the distinct values was arbitrary. A DISTINCT `group_concat`
//! becomes [`NAME`] instead, without the DISTINCT flag: the accumulator
//! keeps each value the first time it sees it. Across partitions the
//! values of a later partition follow those of an earlier one, as with
//! `string_agg`; a session that plans one partition (the SQLite corpus
//! runner) sees SQLite's order. NULLs are skipped; no value gives NULL.
//! With ORDER BY (the values sorted, not first-seen) `dialect.rs` keeps
//! `string_agg`. A sliding window frame is refused (no retract).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::scalar::ScalarValue;
use std::collections::HashSet;
use std::sync::Arc;

/// The aggregate a DISTINCT `group_concat` becomes.
pub(crate) const NAME: &str = "__group_concat_distinct";

/// The aggregate function `__group_concat_distinct(x [, sep])`.
pub(crate) fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(GroupConcatDistinct {
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Immutable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GroupConcatDistinct {
    signature: Signature,
}

impl AggregateUDFImpl for GroupConcatDistinct {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let separator = match args.exprs.get(1) {
            None => ",".to_string(),
            Some(e) => match e.downcast_ref::<Literal>().map(Literal::value) {
                Some(
                    ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
                ) => s.clone().unwrap_or_default(),
                // A NULL separator joins with nothing, as string_agg's.
                Some(ScalarValue::Null) => String::new(),
                _ => {
                    return Err(DataFusionError::Plan(
                        "the separator of group_concat(DISTINCT …) must be a constant".into(),
                    ));
                }
            },
        };
        Ok(Box::new(FirstSeen {
            separator,
            seen: HashSet::new(),
            values: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format_state_name(args.name, "values"),
            Field::new_list_field(DataType::Utf8, true),
            true,
        ))])
    }
}

/// The distinct values in first-seen order.
#[derive(Debug)]
struct FirstSeen {
    separator: String,
    seen: HashSet<String>,
    values: Vec<String>,
}

impl FirstSeen {
    fn add(&mut self, array: &ArrayRef) -> Result<()> {
        let text = arrow::compute::cast(array, &DataType::Utf8)?;
        for value in text.as_string::<i32>().iter().flatten() {
            if self.seen.insert(value.to_string()) {
                self.values.push(value.to_string());
            }
        }
        Ok(())
    }
}

impl Accumulator for FirstSeen {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(array) => self.add(array),
            None => Ok(()),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(
            (!self.values.is_empty()).then(|| self.values.join(&self.separator)),
        ))
    }

    fn size(&self) -> usize {
        let text: usize = self.values.iter().map(|v| 2 * v.len()).sum();
        size_of_val(self) + text + self.separator.len()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .values
            .iter()
            .map(|v| ScalarValue::Utf8(Some(v.clone())))
            .collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &DataType::Utf8,
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first() else {
            return Ok(());
        };
        let lists = lists.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.add(&lists.value(i))?;
            }
        }
        Ok(())
    }
}
