//! SQL-level errors: every failure a user can see, with a SQLSTATE.
//!
//! Engine errors travel through DataFusion wrapped in
//! `DataFusionError::External` ([`to_df`]); [`Error::from_df`] finds the root
//! cause again and turns it back into a typed [`ErrorKind`], so a conflict
//! raised deep inside a scan or sink reaches the user as
//! `ErrorKind::Engine(Conflict)` (SQLSTATE 40001), not as an opaque string.
//! Errors of a statement keep the statement's text.
//!
//! An engine failure is kept whole in [`ErrorKind::Engine`] rather than
//! copied into look-alike SQL variants: one type says what a conflict, a
//! damaged file or a poisoned database is, and [`engine_sqlstate`] gives it
//! its PostgreSQL code. The other kinds are the SQL layer's own.

use arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use entidb_engine::Error as EngineError;
use std::fmt;

/// Result alias of the SQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A failure of the storage engine, as the engine reported it:
    /// conflicts (`Conflict`, 40001), key violations (23505, 23502),
    /// damaged or locked files, I/O, a poisoned database, a wrong key.
    /// [`engine_sqlstate`] gives its SQLSTATE.
    #[error("{}", engine_message(.0))]
    Engine(EngineError),
    /// A row makes a CHECK constraint false.
    #[error("new row for relation {table} violates check constraint {constraint}")]
    CheckViolation {
        /// Table name.
        table: String,
        /// Constraint name.
        constraint: String,
    },
    /// NULL written into a NOT NULL column (a NOT NULL constraint of the
    /// catalog; the engine's own, on key columns, is [`ErrorKind::Engine`]).
    #[error("null value in column {column} of table {table} violates not-null constraint")]
    NotNullViolation {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// No such table or view.
    #[error("relation {name} does not exist")]
    UndefinedTable {
        /// Name.
        name: String,
    },
    /// No such column.
    #[error("column {column}{} does not exist", relation_suffix(.relation.as_deref()))]
    UndefinedColumn {
        /// The column as the statement named it.
        column: String,
        /// The relation it was looked up in, when known.
        relation: Option<String>,
    },
    /// An unqualified column name several relations have.
    #[error("column reference {column} is ambiguous")]
    AmbiguousColumn {
        /// The column name.
        column: String,
    },
    /// A value does not fit its type (integer overflow, cast out of range).
    #[error("numeric value out of range: {0}")]
    NumericValueOutOfRange(String),
    /// Division (or modulo) by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A `$n` parameter without a value.
    #[error("{0}")]
    UndefinedParameter(String),
    /// A column list names no matching constraint (ON CONFLICT (cols)).
    #[error("{0}")]
    InvalidColumnReference(String),
    /// A statement would change one row twice (upsert, MERGE), or a
    /// subquery returned more rows than allowed.
    #[error("{0}")]
    CardinalityViolation(String),
    /// No such index (or other named object).
    #[error("{kind} {name} does not exist")]
    UndefinedObject {
        /// What kind of object.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// Two relations of one FROM list go by the same name.
    #[error("{0}")]
    DuplicateAlias(String),
    /// A qualifier names a relation of the FROM list that it cannot mean
    /// (`SELECT s.t.id FROM t`).
    #[error("{0}")]
    InvalidTableReference(String),
    /// The schema does not exist.
    #[error("schema \"{name}\" does not exist")]
    UndefinedSchema {
        /// Name.
        name: String,
    },
    /// The schema already exists.
    #[error("schema \"{name}\" already exists")]
    DuplicateSchema {
        /// Name.
        name: String,
    },
    /// A name that cannot be used (a schema's holding a period, or one
    /// that would read as another schema's relation).
    #[error("{0}")]
    InvalidName(String),
    /// The table or view already exists.
    #[error("relation {name} already exists")]
    DuplicateTable {
        /// Name.
        name: String,
    },
    /// An I/O failure outside the database (a file COPY or `read_csv`
    /// reads or writes).
    #[error("I/O error: {0}")]
    Io(String),
    /// BEGIN inside a transaction, COMMIT outside one, and similar.
    #[error("{0}")]
    TransactionState(String),
    /// A change a transaction allows only before its first query
    /// (`SET TRANSACTION READ WRITE`).
    #[error("{0}")]
    ActiveSqlTransaction(String),
    /// The SQL does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The SQL parses but cannot be planned (unknown column, type mismatch…).
    #[error("{0}")]
    Plan(String),
    /// A feature EntiDB does not support (yet).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A runtime failure (division by zero, cast overflow…).
    #[error("{0}")]
    Execution(String),
    /// Invalid input to the API.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The statement nests too deeply to be planned safely.
    #[error("statement too complex: {0}")]
    StatementTooComplex(String),
    /// The statement needs more memory than the session's limit allows.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A value would exceed a size limit (string or array too long).
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// The statement needs a permission the session does not have (file
    /// access from SQL).
    #[error("permission denied: {0}")]
    InsufficientPrivilege(String),
    /// A named object (a constraint) already exists.
    #[error("{0}")]
    DuplicateObject(String),
    /// The column already exists.
    #[error("column {column} of relation {table} already exists")]
    DuplicateColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A column named twice in a column list (`INSERT (a, a)`).
    #[error("column {column} specified more than once")]
    ColumnSpecifiedTwice {
        /// Column name.
        column: String,
    },
    /// Other objects (views) depend on what the statement would drop.
    #[error("{0}")]
    DependentObjects(String),
    /// A row without its parent, or a parent row still referred to.
    #[error("{0}")]
    ForeignKeyViolation(String),
    /// A FOREIGN KEY whose referenced columns are not the parent's key.
    #[error("{0}")]
    InvalidForeignKey(String),
    /// The definition is not allowed (DROP NOT NULL of a key column…).
    #[error("{0}")]
    InvalidTableDefinition(String),
    /// A value in a loaded file is not valid text for its column's type
    /// (`COPY … FROM`; the error's context names file, line and column).
    #[error("invalid input syntax: {0}")]
    InvalidTextRepresentation(String),
    /// A loaded file is malformed: wrong number of fields, broken quoting,
    /// bad JSON (`COPY … FROM`).
    #[error("malformed file: {0}")]
    BadCopyFileFormat(String),
    /// A value cannot be converted to the requested type (`Row::get`).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// A query expected to return a row returned none (`query_row`).
    #[error("query returned no rows")]
    NoRows,
    /// An explicit value for a `GENERATED ALWAYS` identity column.
    #[error("{0}")]
    GeneratedAlways(String),
    /// The object is not in the state the operation needs (`currval`
    /// before `nextval`).
    #[error("{0}")]
    ObjectNotInPrerequisiteState(String),
    /// A trigger's `RAISE(ABORT, message)` ran: the statement fails with
    /// the trigger's message.
    #[error("{0}")]
    RaiseException(String),
    /// A BEFORE trigger changed or deleted a row its own statement was
    /// about to change.
    #[error("{0}")]
    TriggeredDataChangeViolation(String),
}

impl ErrorKind {
    /// The PostgreSQL-compatible SQLSTATE code.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ErrorKind::Engine(e) => engine_sqlstate(e),
            ErrorKind::NotNullViolation { .. } => "23502",
            ErrorKind::CheckViolation { .. } => "23514",
            ErrorKind::UndefinedTable { .. } => "42P01",
            ErrorKind::DuplicateTable { .. } => "42P07",
            ErrorKind::UndefinedSchema { .. } => "3F000",
            ErrorKind::DuplicateAlias(_) => "42712",
            ErrorKind::InvalidTableReference(_) => "42P01",
            ErrorKind::DuplicateSchema { .. } => "42P06",
            ErrorKind::InvalidName(_) => "42602",
            ErrorKind::UndefinedObject { .. } => "42704",
            ErrorKind::UndefinedColumn { .. } => "42703",
            ErrorKind::InvalidColumnReference(_) => "42P10",
            ErrorKind::NumericValueOutOfRange(_) => "22003",
            ErrorKind::DivisionByZero => "22012",
            ErrorKind::UndefinedParameter(_) => "42P02",
            ErrorKind::AmbiguousColumn { .. } => "42702",
            ErrorKind::CardinalityViolation(_) => "21000",
            ErrorKind::Io(_) => "58030",
            ErrorKind::TransactionState(_) => "25000",
            ErrorKind::ActiveSqlTransaction(_) => "25001",
            ErrorKind::Syntax(_) => "42601",
            ErrorKind::Plan(_) => "42000",
            ErrorKind::NotSupported(_) => "0A000",
            ErrorKind::Execution(_) => "XX000",
            ErrorKind::InvalidArgument(_) => "22023",
            ErrorKind::StatementTooComplex(_) => "54001",
            ErrorKind::OutOfMemory(_) => "53200",
            ErrorKind::ProgramLimitExceeded(_) => "54000",
            ErrorKind::InsufficientPrivilege(_) => "42501",
            ErrorKind::DuplicateColumn { .. } => "42701",
            ErrorKind::ColumnSpecifiedTwice { .. } => "42701",
            ErrorKind::DuplicateObject(_) => "42710",
            ErrorKind::DependentObjects(_) => "2BP01",
            ErrorKind::InvalidTableDefinition(_) => "42P16",
            ErrorKind::ForeignKeyViolation(_) => "23503",
            ErrorKind::InvalidForeignKey(_) => "42830",
            ErrorKind::InvalidTextRepresentation(_) => "22P02",
            ErrorKind::BadCopyFileFormat(_) => "22P04",
            ErrorKind::DatatypeMismatch(_) => "42804",
            ErrorKind::NoRows => "P0002",
            ErrorKind::GeneratedAlways(_) => "428C9",
            ErrorKind::ObjectNotInPrerequisiteState(_) => "55000",
            ErrorKind::RaiseException(_) => "P0001",
            ErrorKind::TriggeredDataChangeViolation(_) => "27000",
        }
    }
}

/// An error, with the statement that caused it when there was one, and
/// where in its input it happened (a file's line and column) when known.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    context: Option<String>,
    statement: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.kind, self.kind.sqlstate())?;
        if let Some(c) = &self.context {
            write!(f, "\n  context: {c}")?;
        }
        if let Some(s) = &self.statement {
            write!(f, "\n  in statement: {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self {
            kind,
            context: None,
            statement: None,
        }
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Self::from(kind_of_engine(&e))
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Self::from(kind_of_arrow(&e))
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Self::from_df(&e)
    }
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The SQLSTATE code.
    pub fn sqlstate(&self) -> &'static str {
        self.kind.sqlstate()
    }

    /// The statement that failed, if known.
    pub fn statement(&self) -> Option<&str> {
        self.statement.as_deref()
    }

    /// True when retrying the transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(&self.kind, ErrorKind::Engine(e) if e.is_retryable())
    }

    /// Where in the statement's input the error happened (`COPY … FROM`:
    /// file, line and column), if known.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// Attaches where the error happened (keeps an existing context).
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        if self.context.is_none() {
            self.context = Some(context.into());
        }
        self
    }

    /// Attaches the statement text (keeps an existing one).
    pub fn in_statement(mut self, sql: &str) -> Self {
        if self.statement.is_none() {
            self.statement = Some(sql.trim().to_string());
        }
        self
    }

    /// Recovers the typed error from a DataFusion error chain (an EntiDB
    /// error wrapped by [`sql_to_df`] comes back whole, with its context).
    pub fn from_df(e: &DataFusionError) -> Self {
        if let DataFusionError::External(inner) = e.find_root()
            && let Some(sql) = inner.downcast_ref::<Error>()
        {
            return sql.clone();
        }
        Self::from(kind_of_df(e))
    }
}

fn kind_of_df(e: &DataFusionError) -> ErrorKind {
    let root = e.find_root();
    if let DataFusionError::External(inner) = root {
        if let Some(engine) = inner.downcast_ref::<EngineError>() {
            return kind_of_engine(engine);
        }
        if let Some(sql) = inner.downcast_ref::<Error>() {
            return sql.kind.clone();
        }
    }
    let msg = strip_df_prefix(&root.to_string());
    match root {
        DataFusionError::SQL(e, _) if matches!(e.as_ref(), ParserError::RecursionLimitExceeded) => {
            ErrorKind::StatementTooComplex(format!(
                "parentheses or subqueries nest too deeply ({msg})"
            ))
        }
        DataFusionError::SQL(e, _) => ErrorKind::Syntax(parser_message(e)),
        DataFusionError::ResourcesExhausted(_) => ErrorKind::OutOfMemory(msg),
        DataFusionError::Plan(m) if m.contains("table '") && m.contains("not found") => {
            // DataFusion names the table it did not find in full
            // (`entidb.main.t`); another first part is another database.
            match between_quotes(m) {
                Some(q) if !q.starts_with("entidb.") && q.matches('.').count() >= 2 => {
                    ErrorKind::NotSupported(format!(
                        "cross-database references are not implemented: {q}"
                    ))
                }
                Some(q) => {
                    let q = q.strip_prefix("entidb.").unwrap_or(&q);
                    ErrorKind::UndefinedTable {
                        name: q.strip_prefix("main.").unwrap_or(q).to_string(),
                    }
                }
                None => ErrorKind::UndefinedTable { name: m.clone() },
            }
        }
        DataFusionError::Plan(m) if m.starts_with("failed to resolve schema: ") => {
            ErrorKind::UndefinedSchema {
                name: m
                    .trim_start_matches("failed to resolve schema: ")
                    .to_string(),
            }
        }
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { field, .. } => ErrorKind::UndefinedColumn {
                column: match &field.relation {
                    Some(r) => format!("{r}.{}", field.name),
                    None => field.name.clone(),
                },
                relation: None,
            },
            SchemaError::AmbiguousReference { field } => ErrorKind::AmbiguousColumn {
                column: field.name.clone(),
            },
            SchemaError::DuplicateQualifiedField { qualifier, .. } => {
                ErrorKind::DuplicateAlias(format!(
                    "table name \"{}\" specified more than once",
                    qualifier.table()
                ))
            }
            _ => ErrorKind::Plan(msg),
        },
        DataFusionError::ArrowError(e, _) => kind_of_arrow(e),
        DataFusionError::Plan(m) | DataFusionError::Execution(m)
            if m.starts_with("No value found for placeholder")
                || (m.starts_with("Placeholder '") && m.contains("not provided a value")) =>
        {
            ErrorKind::UndefinedParameter(msg)
        }
        DataFusionError::Plan(_) => ErrorKind::Plan(msg),
        DataFusionError::NotImplemented(_) => ErrorKind::NotSupported(msg),
        DataFusionError::IoError(_) => ErrorKind::Io(msg),
        _ => ErrorKind::Execution(msg),
    }
}

/// A parser error's message without its Debug wrapping (`ParserError("…")`).
fn parser_message(e: &ParserError) -> String {
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "recursion limit exceeded".into(),
    }
}

fn relation_suffix(relation: Option<&str>) -> String {
    relation
        .map(|r| format!(" of relation {r}"))
        .unwrap_or_default()
}

/// Arrow's compute errors: failed casts of text (22P02), values out of
/// range (22003), division by zero (22012).
fn kind_of_arrow(e: &ArrowError) -> ErrorKind {
    match e {
        ArrowError::CastError(m) if m.starts_with("Cannot cast string") => {
            ErrorKind::InvalidTextRepresentation(m.clone())
        }
        ArrowError::CastError(m) if m.contains("overflow") || m.starts_with("Can't cast value") => {
            ErrorKind::NumericValueOutOfRange(m.clone())
        }
        ArrowError::CastError(m) => ErrorKind::InvalidTextRepresentation(m.clone()),
        ArrowError::ArithmeticOverflow(m) => ErrorKind::NumericValueOutOfRange(m.clone()),
        ArrowError::DivideByZero => ErrorKind::DivisionByZero,
        other => ErrorKind::Execution(strip_df_prefix(&other.to_string())),
    }
}

/// A failed cast of a value written into `column` (INSERT, UPDATE, append).
pub(crate) fn cast_failure(column: &str, e: &ArrowError) -> ErrorKind {
    match kind_of_arrow(e) {
        ErrorKind::NumericValueOutOfRange(m) => {
            ErrorKind::NumericValueOutOfRange(format!("column {column}: {m}"))
        }
        ErrorKind::InvalidTextRepresentation(m) => {
            ErrorKind::InvalidTextRepresentation(format!("column {column}: {m}"))
        }
        other => other,
    }
}

fn between_quotes(m: &str) -> Option<String> {
    let start = m.find('\'')? + 1;
    let len = m.get(start..)?.find('\'')?;
    m.get(start..start + len).map(str::to_string)
}

fn strip_df_prefix(msg: &str) -> String {
    for p in [
        "Error during planning: ",
        "Execution error: ",
        "SQL error: ",
        "This feature is not implemented: ",
        "Arrow error: ",
        "Resources exhausted: ",
        "Schema error: ",
    ] {
        if let Some(rest) = msg.strip_prefix(p) {
            return rest.to_string();
        }
    }
    msg.to_string()
}

fn kind_of_engine(e: &EngineError) -> ErrorKind {
    ErrorKind::Engine(e.clone())
}

/// The SQLSTATE of an engine error (PostgreSQL's codes).
pub fn engine_sqlstate(e: &EngineError) -> &'static str {
    match e {
        EngineError::Conflict { .. } => "40001",
        EngineError::ConstraintViolation { .. } => "23505",
        EngineError::NotNullViolation { .. } => "23502",
        EngineError::TableNotFound { .. } => "42P01",
        EngineError::TableExists { .. } => "42P07",
        EngineError::Corruption { .. } => "XX001",
        EngineError::Locked { .. } => "55006",
        EngineError::Poisoned { .. } | EngineError::Io { .. } => "58030",
        EngineError::IncompatibleVersion { .. } => "XX002",
        EngineError::TransactionClosed => "25000",
        EngineError::ReadOnly => "25006",
        EngineError::InvalidArgument(_) => "22023",
        EngineError::WrongKey => "28P01",
        EngineError::EncryptionRequired => "28000",
        _ => "XX000",
    }
}

/// How an engine error reads in a SQL session: PostgreSQL's words for the
/// conditions it shares (`duplicate key value violates unique constraint`,
/// `relation … does not exist`), the engine's own message otherwise.
fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::Conflict { table, key } => format!(
            "could not serialize access: write conflict on {table} ({key}); retry the transaction"
        ),
        EngineError::ConstraintViolation { table, detail } => {
            format!("duplicate key value violates unique constraint on {table}: {detail}")
        }
        EngineError::TableNotFound { name } => format!("relation {name} does not exist"),
        EngineError::TableExists { name } => format!("relation {name} already exists"),
        other => other.to_string(),
    }
}

impl From<entidb_engine::OpenError> for Error {
    fn from(e: entidb_engine::OpenError) -> Self {
        Self::from(EngineError::from(e))
    }
}

impl From<entidb_engine::CommitError> for Error {
    fn from(e: entidb_engine::CommitError) -> Self {
        Self::from(EngineError::from(e))
    }
}

impl From<entidb_engine::CheckpointError> for Error {
    fn from(e: entidb_engine::CheckpointError) -> Self {
        Self::from(EngineError::from(e))
    }
}

/// Wraps an engine error for travel through DataFusion.
pub fn to_df(e: EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Wraps a SQL-layer error for travel through DataFusion.
pub fn sql_to_df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
