//! Integer arithmetic that fails on overflow instead of wrapping.
//!
//! DataFusion evaluates `+`, `-`, `*`, unary `-` and `SUM` on integers with
//! wrapping machine arithmetic: `9223372036854775807 + 1` is
//! `-9223372036854775808`, and a `SUM` that passes `i64::MAX` turns negative.
//! PostgreSQL and SQLite raise an error instead ("bigint out of range",
//! SQLSTATE 22003), and a silently wrong number is worse than an error, so
//! EntiDB does the same:
//!
//! - ARITHMETIC. The analyzer rule [`CheckedArithmetic`] runs after type
//!   coercion, when both operands of an integer `+ - *` have the same type.
//!   It replaces each such operator (and unary minus on a signed integer),
//!   in every expression of every plan node and subquery, by the scalar
//!   function [`CheckedOp`], which evaluates with Arrow's checked kernels.
//!   The function keeps the operator's column name (`a + Int64(1)`), so
//!   nothing that refers to the column by name changes. Expressions the
//!   optimizer later builds itself contain no integer arithmetic (the one
//!   rewrite that would, `SUM(x + c)` → `SUM(x) + c·COUNT(x)`, no longer
//!   matches once `x + c` is a function).
//! - SUM. [`CheckedSum`] replaces the built-in `sum` by name: for a
//!   (signed or unsigned) 64-bit integer result it accumulates with checked
//!   additions — per row group, per group of a hash aggregate, and over
//!   sliding window frames — and fails when the total leaves the type. Other
//!   types (floats, decimals, intervals) and `SUM(DISTINCT …)` keep the
//!   built-in accumulators.
//!
//! Only integers are checked here: float arithmetic follows IEEE 754
//! (infinity), and decimal overflow is Arrow's precision validation.

use crate::error::{ErrorKind, sql_to_df};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{
    ArrowNativeType, ArrowNativeTypeOp, ArrowNumericType, DataType, FieldRef, Int64Type, UInt64Type,
};
use arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, BinaryExpr, ColumnarValue, Documentation, EmitTo,
    Expr, ExprSchemable, GroupsAccumulator, LogicalPlan, Operator, ReversedUDAF,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::scalar::ScalarValue;
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::prim_op::PrimitiveGroupsAccumulator;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The checked operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `- a`
    Neg,
}

impl Op {
    fn from_operator(op: Operator) -> Option<Self> {
        match op {
            Operator::Plus => Some(Op::Add),
            Operator::Minus => Some(Op::Sub),
            Operator::Multiply => Some(Op::Mul),
            _ => None,
        }
    }

    fn function_name(self) -> &'static str {
        match self {
            Op::Add => "entidb_checked_add",
            Op::Sub => "entidb_checked_sub",
            Op::Mul => "entidb_checked_mul",
            Op::Neg => "entidb_checked_neg",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub | Op::Neg => "-",
            Op::Mul => "*",
        }
    }
}

/// The PostgreSQL name of an integer type, for "… out of range".
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        other => other.to_string(),
    }
}

/// The SQL error of a value that left its integer type.
fn out_of_range(t: &DataType) -> DataFusionError {
    sql_to_df(ErrorKind::NumericValueOutOfRange(format!("{} out of range", type_name(t))).into())
}

/// Turns Arrow's overflow error into [`out_of_range`]; other errors pass.
fn overflow_as_out_of_range(t: &DataType) -> impl Fn(ArrowError) -> DataFusionError + '_ {
    move |e| match e {
        ArrowError::ArithmeticOverflow(_) => out_of_range(t),
        other => DataFusionError::from(other),
    }
}

/// `+ - *` and unary `-` on integers, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedOp {
    op: Op,
    signature: Signature,
}

impl CheckedOp {
    fn udf(op: Op) -> Arc<ScalarUDF> {
        let arity = if op == Op::Neg { 1 } else { 2 };
        Arc::new(ScalarUDF::new_from_impl(Self {
            op,
            signature: Signature::any(arity, Volatility::Immutable),
        }))
    }
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        self.op.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("{} without arguments", self.name())))
    }

    /// The column name of the operator it replaces: `a + b`, `(- a)`.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(match (self.op, args) {
            (Op::Neg, [a]) => format!("(- {})", a.schema_name()),
            (op, [a, b]) => format!("{} {} {}", a.schema_name(), op.symbol(), b.schema_name()),
            _ => self.name().to_string(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let data_type = args.return_field.data_type().clone();
        let result = match (self.op, arrays.as_slice()) {
            (Op::Neg, [a]) => numeric::neg(a),
            (Op::Add, [a, b]) => numeric::add(a, b),
            (Op::Sub, [a, b]) => numeric::sub(a, b),
            (Op::Mul, [a, b]) => numeric::mul(a, b),
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "{} called with {} arguments",
                    self.name(),
                    arrays.len()
                )));
            }
        }
        .map_err(overflow_as_out_of_range(&data_type))?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

/// The analyzer rule replacing integer `+ - *` and unary `-` by
/// [`CheckedOp`] (see the module docs).
#[derive(Debug)]
pub struct CheckedArithmetic {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    neg: Arc<ScalarUDF>,
}

impl Default for CheckedArithmetic {
    fn default() -> Self {
        Self {
            add: CheckedOp::udf(Op::Add),
            sub: CheckedOp::udf(Op::Sub),
            mul: CheckedOp::udf(Op::Mul),
            neg: CheckedOp::udf(Op::Neg),
        }
    }
}

impl CheckedArithmetic {
    fn udf(&self, op: Op) -> Arc<ScalarUDF> {
        match op {
            Op::Add => self.add.clone(),
            Op::Sub => self.sub.clone(),
            Op::Mul => self.mul.clone(),
            Op::Neg => self.neg.clone(),
        }
    }

    /// Rewrites the integer arithmetic in one type-coerced expression over
    /// `schema`, innermost first.
    pub fn rewrite_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        expr.transform_up(|e| {
            let replacement = match &e {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => match Op::from_operator(*op) {
                    Some(op) if same_integer_type(left, right, schema) => {
                        Some((op, vec![left.as_ref().clone(), right.as_ref().clone()]))
                    }
                    _ => None,
                },
                Expr::Negative(inner) if is_signed_integer(inner, schema) => {
                    Some((Op::Neg, vec![inner.as_ref().clone()]))
                }
                _ => None,
            };
            Ok(match replacement {
                Some((op, args)) => Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(self.udf(op), args),
                )),
                None => Transformed::no(e),
            })
        })
    }

    /// Rewrites every expression of one plan node (not its inputs).
    fn rewrite_node(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let schema = match plan.inputs().as_slice() {
            [] => plan.schema().as_ref().clone(),
            inputs => merge_schema(inputs),
        };
        let rewritten = plan.map_expressions(|e| self.rewrite_expr(e, &schema))?;
        if !rewritten.transformed {
            return Ok(rewritten);
        }
        // A node's output schema is computed from its expressions: rebuild
        // it (names are unchanged, types are the operand types).
        rewritten.map_data(|p| p.recompute_schema())
    }
}

impl AnalyzerRule for CheckedArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| self.rewrite_node(node))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "entidb_checked_arithmetic"
    }
}

fn type_of(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    e.get_type(schema).ok()
}

fn same_integer_type(left: &Expr, right: &Expr, schema: &DFSchema) -> bool {
    match (type_of(left, schema), type_of(right, schema)) {
        (Some(l), Some(r)) => l == r && l.is_integer(),
        _ => false,
    }
}

fn is_signed_integer(e: &Expr, schema: &DFSchema) -> bool {
    type_of(e, schema).is_some_and(|t| t.is_signed_integer())
}

/// `sum` with checked accumulation for 64-bit integer results (see the
/// module docs); everything else is the built-in [`Sum`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedSum {
    builtin: Sum,
}

impl CheckedSum {
    /// The replacement `sum` aggregate.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            builtin: Sum::new(),
        })
    }
}

/// Whether `args` sum 64-bit integers without DISTINCT (the checked case).
fn checked_case(args: &AccumulatorArgs) -> Option<DataType> {
    let t = args.return_field.data_type();
    (!args.is_distinct && matches!(t, DataType::Int64 | DataType::UInt64)).then(|| t.clone())
}

impl AggregateUDFImpl for CheckedSum {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn signature(&self) -> &Signature {
        self.builtin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.builtin.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match checked_case(&args) {
            Some(DataType::Int64) => Ok(Box::new(CheckedSumAccumulator::<Int64Type>::new(
                DataType::Int64,
            ))),
            Some(DataType::UInt64) => Ok(Box::new(CheckedSumAccumulator::<UInt64Type>::new(
                DataType::UInt64,
            ))),
            _ => self.builtin.accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.builtin.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.builtin.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match checked_case(&args) {
            Some(DataType::Int64) => Ok(Box::new(CheckedGroups::<Int64Type>::new(DataType::Int64))),
            Some(DataType::UInt64) => {
                Ok(Box::new(CheckedGroups::<UInt64Type>::new(DataType::UInt64)))
            }
            _ => self.builtin.create_groups_accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match checked_case(&args) {
            Some(_) => self.accumulator(args),
            None => self.builtin.create_sliding_accumulator(args),
        }
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
        self.builtin.order_sensitivity()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.builtin.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> datafusion::logical_expr::SetMonotonicity {
        self.builtin.set_monotonicity(data_type)
    }
}

/// A running checked sum (also over sliding window frames).
struct CheckedSumAccumulator<T: ArrowNumericType> {
    sum: T::Native,
    /// Non-NULL values summed (NULL result while 0).
    count: u64,
    data_type: DataType,
}

impl<T: ArrowNumericType> Debug for CheckedSumAccumulator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedSumAccumulator({})", self.data_type)
    }
}

impl<T: ArrowNumericType> CheckedSumAccumulator<T> {
    fn new(data_type: DataType) -> Self {
        Self {
            sum: T::Native::usize_as(0),
            count: 0,
            data_type,
        }
    }

    fn sum_of(&self, values: &[ArrayRef]) -> Result<Option<T::Native>> {
        let Some(values) = values.first() else {
            return Ok(None);
        };
        arrow::compute::sum_checked(values.as_primitive::<T>())
            .map_err(overflow_as_out_of_range(&self.data_type))
    }

    fn non_null(values: &[ArrayRef]) -> u64 {
        values
            .first()
            .map_or(0, |v| (v.len() - v.null_count()) as u64)
    }
}

impl<T: ArrowNumericType> Accumulator for CheckedSumAccumulator<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(s) = self.sum_of(values)? {
            self.sum = self
                .sum
                .add_checked(s)
                .map_err(overflow_as_out_of_range(&self.data_type))?;
        }
        self.count += Self::non_null(values);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(s) = self.sum_of(values)? {
            self.sum = self
                .sum
                .sub_checked(s)
                .map_err(overflow_as_out_of_range(&self.data_type))?;
        }
        self.count = self.count.saturating_sub(Self::non_null(values));
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::new_primitive::<T>((self.count > 0).then_some(self.sum), &self.data_type)
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// The sum per group of a hash aggregate: DataFusion's primitive groups
/// accumulator with a checked addition that records an overflow, which the
/// next call reports.
struct CheckedGroups<T: ArrowNumericType + Send> {
    inner: Box<dyn GroupsAccumulator>,
    overflowed: Arc<AtomicBool>,
    data_type: DataType,
    _type: std::marker::PhantomData<T>,
}

impl<T: ArrowNumericType + Send> Debug for CheckedGroups<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedGroups({})", self.data_type)
    }
}

impl<T: ArrowNumericType + Send> CheckedGroups<T> {
    fn new(data_type: DataType) -> Self {
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let inner = PrimitiveGroupsAccumulator::<T, _>::new(
            &data_type,
            move |sum: &mut T::Native, v: T::Native| match sum.add_checked(v) {
                Ok(s) => *sum = s,
                Err(_) => flag.store(true, Ordering::Relaxed),
            },
        );
        Self {
            inner: Box::new(inner),
            overflowed,
            data_type,
            _type: std::marker::PhantomData,
        }
    }

    fn check(&self) -> Result<()> {
        if self.overflowed.load(Ordering::Relaxed) {
            Err(out_of_range(&self.data_type))
        } else {
            Ok(())
        }
    }
}

impl<T: ArrowNumericType + Send> GroupsAccumulator for CheckedGroups<T> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)?;
        self.check()
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)?;
        self.check()
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.check()?;
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.check()?;
        self.inner.state(emit_to)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}
