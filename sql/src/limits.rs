//! Resource limits and file access of a session.
//!
//! MEMORY. Every session's DataFusion runtime has a memory pool
//! ([`SessionOptions::memory_limit`], by default half the machine's memory,
//! changed with `SET entidb.memory_limit = '512MB'`): sorts, aggregates and
//! joins that need more spill to disk if they can, or fail with
//! `OutOfMemory` (SQLSTATE 53200) instead of growing until the process is
//! killed. Functions that build values from a length argument — `repeat`,
//! `lpad`, `rpad`, `array_repeat` — do not go through the pool, so they are
//! wrapped ([`Capped`]) to refuse, before allocating, a call whose results
//! would exceed the memory limit or 1 GiB (PostgreSQL's value limit):
//! `ProgramLimitExceeded` (54000).
//!
//! SPILLING. Spill files are plaintext Arrow IPC. For an encrypted database
//! ([`SessionOptions::spill`] false) the disk manager is disabled, so a
//! query over the limit fails with 53200 instead of writing table contents
//! in clear to the temporary directory; `SET datafusion.runtime.temp_directory`
//! is refused there.
//!
//! FILES. SQL touches files in two ways: `COPY … TO` writes them, and
//! `COPY … FROM`, file tables (`SELECT * FROM 'f.parquet'`, `read_csv(…)`)
//! and external tables read them (`files.rs`, `copy.rs`). One policy covers
//! both ([`check_write`], [`check_read`]): refused (`InsufficientPrivilege`,
//! 42501) when the file lies inside the directory of any database open in
//! this process ([`register_database_dir`]: its files belong to the engine),
//! and always when file access is off ([`SessionOptions::external_access`]
//! false, or `SET entidb.external_access = false`, which cannot be undone in
//! the session). URLs with another scheme than `file://` are not checked
//! (no object store is registered, so they fail anyway).

use crate::error::{Error, ErrorKind, Result, sql_to_df};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::scalar::ScalarValue;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The largest value a capped function builds (PostgreSQL's limit).
pub const MAX_VALUE_BYTES: usize = 1 << 30;

/// Settings of a session (the facade fills them from `OpenOptions`).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Bytes DataFusion may use for sorts, aggregates, joins….
    pub memory_limit: usize,
    /// Whether operators over the limit may spill to temporary files (false
    /// for encrypted databases: spill files would be plaintext).
    pub spill: bool,
    /// Where spill files go (`None`: the OS temporary directory).
    pub temp_directory: Option<PathBuf>,
    /// Whether SQL may read and write files (`COPY`, file tables).
    pub external_access: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            memory_limit: default_memory_limit(),
            spill: true,
            temp_directory: None,
            external_access: true,
        }
    }
}

/// Half of the machine's memory (`/proc/meminfo`), or 4 GiB when unknown.
pub fn default_memory_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kb| kb.saturating_mul(1024));
    total.map_or(4 << 30, |t| t / 2)
}

/// The DataFusion runtime for `options`.
pub fn runtime(options: &SessionOptions, memory_limit: usize) -> Result<Arc<RuntimeEnv>> {
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(memory_limit),
        NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
    );
    let mode = match (&options.temp_directory, options.spill) {
        (_, false) => DiskManagerMode::Disabled,
        (Some(dir), true) => DiskManagerMode::Directories(vec![dir.clone()]),
        (None, true) => DiskManagerMode::OsTmpDirectory,
    };
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
        .build_arc()?)
}

/// Parses a size: `1073741824`, `'512MB'`, `'2G'`, `'64 KiB'`.
pub fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim().trim_matches('\'').trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let bad = || {
        Error::from(ErrorKind::InvalidArgument(format!(
            "invalid size {text:?}: expected a number of bytes with an optional unit (KB, MB, GB, TB)"
        )))
    };
    let n: usize = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1usize << shift).ok_or_else(bad)
}

/// Parses a boolean setting.
pub fn parse_bool(text: &str) -> Result<bool> {
    match text.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(ErrorKind::InvalidArgument(format!("invalid boolean {text:?}")).into()),
    }
}

// ---------------------------------------------------------------------------
// Capped functions

/// Which length-building function a [`Capped`] wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `repeat(s, n)`: `len(s) * n` bytes.
    Repeat,
    /// `lpad/rpad(s, n [, fill])`: `n` characters.
    Pad,
    /// `array_repeat(x, n)`: `n` elements.
    ArrayRepeat,
}

/// A built-in function that refuses results over the limit (module docs).
#[derive(Debug)]
pub struct Capped {
    inner: Arc<ScalarUDF>,
    kind: Kind,
    limit: Arc<AtomicUsize>,
}

impl PartialEq for Capped {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.kind == other.kind
    }
}

impl Eq for Capped {}

impl std::hash::Hash for Capped {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.kind.hash(state);
    }
}

/// Wraps the session's `repeat`, `lpad`, `rpad` and `array_repeat`.
pub fn capped_functions(
    existing: &std::collections::HashMap<String, Arc<ScalarUDF>>,
    limit: &Arc<AtomicUsize>,
) -> Vec<ScalarUDF> {
    [
        ("repeat", Kind::Repeat),
        ("lpad", Kind::Pad),
        ("rpad", Kind::Pad),
        ("array_repeat", Kind::ArrayRepeat),
    ]
    .into_iter()
    .filter_map(|(name, kind)| {
        existing.get(name).map(|inner| {
            ScalarUDF::new_from_impl(Capped {
                inner: inner.clone(),
                kind,
                limit: limit.clone(),
            })
        })
    })
    .collect()
}

fn int_values(value: &ColumnarValue, rows: usize) -> DfResult<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(arrow::compute::cast(&array, &DataType::Int64)?)
}

/// Bytes of each row's first argument (strings) or 8 (anything else), one
/// per element of the argument's array (never indexed past it: a zero-row
/// batch once panicked here).
fn unit_sizes(value: &ColumnarValue, rows: usize) -> DfResult<Vec<u64>> {
    let array = value.to_array(rows)?;
    let sizes = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strings = arrow::compute::cast(&array, &DataType::LargeUtf8)?;
            match strings.as_string_opt::<i64>() {
                Some(strings) => strings
                    .iter()
                    .map(|s| s.map_or(0, |s| s.len() as u64))
                    .collect(),
                None => vec![8; array.len()],
            }
        }
        _ => vec![8; array.len()],
    };
    Ok(sizes)
}

/// `lpad`/`rpad` with a negative length give `''` (as in PostgreSQL);
/// DataFusion's kernels panic on a negative length read from a column, so
/// negative lengths are made 0 before the call.
fn clamp_pad_length(args: &mut ScalarFunctionArgs) -> DfResult<()> {
    let Some(length) = args.args.get_mut(1) else {
        return Ok(());
    };
    match length {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if *n < 0 => *n = 0,
        ColumnarValue::Array(array) => {
            if let Some(ints) = array.as_primitive_opt::<Int64Type>()
                && ints.iter().flatten().any(|n| n < 0)
            {
                let clamped: arrow::array::Int64Array =
                    arrow::compute::kernels::arity::unary(ints, |n: i64| n.max(0));
                *array = Arc::new(clamped);
            }
        }
        _ => {}
    }
    Ok(())
}

impl Capped {
    /// Refuses the call when its results would exceed the limit.
    fn check(&self, args: &ScalarFunctionArgs) -> DfResult<()> {
        if args.number_rows == 0 {
            return Ok(());
        }
        let rows = args.number_rows;
        let (Some(first), Some(count)) = (args.args.first(), args.args.get(1)) else {
            return Ok(());
        };
        let counts = int_values(count, rows)?;
        let counts = counts.as_primitive::<Int64Type>();
        let units = match self.kind {
            Kind::Pad => vec![1; rows],
            Kind::Repeat | Kind::ArrayRepeat => unit_sizes(first, rows)?,
        };
        let memory = self.limit.load(Ordering::Relaxed) as u64;
        let limit = memory.min(MAX_VALUE_BYTES as u64);
        let mut total: u64 = 0;
        for (i, unit) in units.iter().enumerate().take(counts.len()) {
            if counts.is_null(i) {
                continue;
            }
            let n = u64::try_from(counts.value(i)).unwrap_or(0);
            total = total.saturating_add(n.saturating_mul((*unit).max(1)));
            if total > limit {
                let name = self.inner.name();
                return Err(sql_to_df(
                    ErrorKind::ProgramLimitExceeded(format!(
                        "requested length too large: {name} would build more than {limit} bytes"
                    ))
                    .into(),
                ));
            }
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if matches!(self.kind, Kind::Pad) {
            clamp_pad_length(&mut args)?;
        }
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn with_updated_config(&self, _config: &ConfigOptions) -> Option<ScalarUDF> {
        None
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

// ---------------------------------------------------------------------------
// Files

static DATABASE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keeps a database directory registered while the database is open.
#[derive(Debug)]
pub struct DatabaseDir(PathBuf);

impl Drop for DatabaseDir {
    fn drop(&mut self) {
        let mut dirs = DATABASE_DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = dirs.iter().position(|d| *d == self.0) {
            dirs.swap_remove(i);
        }
    }
}

/// Registers the directory of an open database: SQL may not write files
/// inside it until the returned guard is dropped.
pub fn register_database_dir(dir: &Path) -> DatabaseDir {
    let dir = resolve(dir);
    DATABASE_DIRS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir.clone());
    DatabaseDir(dir)
}

/// `path` made absolute, with symlinks of its existing part resolved and
/// `.`/`..` applied as the OS would (a `..` after an existing symlink goes
/// to the link target's parent).
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => {
                out.push(other);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
        }
    }
    out
}

/// Refuses writing to `url` (a COPY target) when file access is off or the
/// target is inside an open database's directory.
pub fn check_write(url: &str, external_access: bool) -> Result<()> {
    check_file(url, external_access, "write to")
}

/// Refuses reading `url` (`COPY … FROM`, a file table, an external table)
/// when file access is off or the file is inside an open database's
/// directory (its files are the engine's alone).
pub fn check_read(url: &str, external_access: bool) -> Result<()> {
    check_file(url, external_access, "read")
}

fn check_file(url: &str, external_access: bool, verb: &str) -> Result<()> {
    if !external_access {
        return Err(ErrorKind::InsufficientPrivilege(
            "file access from SQL is disabled (entidb.external_access = false)".into(),
        )
        .into());
    }
    let path = match url.split_once("://") {
        Some(("file", rest)) => rest,
        Some(_) => return Ok(()),
        None => url,
    };
    let target = resolve(Path::new(path));
    let dirs = DATABASE_DIRS.lock().unwrap_or_else(PoisonError::into_inner);
    if dirs.iter().any(|d| target.starts_with(d)) {
        return Err(ErrorKind::InsufficientPrivilege(format!(
            "SQL cannot {verb} {}: it is inside the directory of an open database",
            target.display()
        ))
        .into());
    }
    Ok(())
}
