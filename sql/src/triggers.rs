//! Row triggers: `CREATE TRIGGER … BEGIN …; END` and `DROP TRIGGER`.
//!
//! A trigger is kept in the catalog as its whole `CREATE TRIGGER` statement
//! (`TriggerMeta`), so it is as transactional as a view: a rolled-back
//! CREATE leaves nothing, DROP TABLE drops the table's triggers, ALTER TABLE
//! RENAME follows them. The SQL layer parses the text again when the
//! trigger fires.
//!
//! WHAT IS SUPPORTED (SQLite's triggers, which PostgreSQL writes as a
//! trigger function): `BEFORE` (the default) or `AFTER`, `INSERT`,
//! `DELETE`, `UPDATE [OF col, …]` (several joined by `OR`), `FOR EACH ROW`
//! (the only kind), `WHEN cond`, and a body of INSERT, UPDATE, DELETE and
//! SELECT statements between BEGIN and END. `NEW.col` and `OLD.col` name
//! the row's new and old values (NEW in INSERT and UPDATE triggers, OLD in
//! UPDATE and DELETE triggers; anything else is refused at CREATE).
//! `RAISE(ABORT, message)` in a body's SELECT fails the statement with
//! SQLSTATE P0001 (PostgreSQL's `raise_exception`) and the message when
//! the SELECT returns a row holding it (`SELECT RAISE(ABORT, 'no') WHERE
//! NEW.x < 0`, or in a CASE): firing turns it into [`raise_function`],
//! which marks the message ([`RAISED`]), and the SELECT's result is
//! searched for the mark. Raising only for returned rows, not when the
//! function is evaluated, keeps a plan that computes a projection before
//! its filter (DataFusion's projection pushdown may) from raising for rows
//! the WHERE rejects. So RAISE must be where the result shows it: an item of
//! a body SELECT's select list, alone or as a CASE result, with no LIMIT;
//! anywhere else (nested, WHEN, INSERT, UPDATE, DELETE) it is refused at
//! CREATE. The mark holds a random number per session and the function
//! refuses to run outside a trigger's SELECT ([`RaiseState`]), so no stored
//! value can forge a raise. Refused with 0A000: `INSTEAD OF`, `FOR EACH STATEMENT`,
//! `EXECUTE FUNCTION`, TRUNCATE events, `REFERENCING`, constraint and
//! temporary triggers, `RAISE(IGNORE | FAIL | ROLLBACK)`.
//!
//! HOW A STATEMENT FIRES THEM. Every statement that writes rows computes
//! them first (`dml.rs`, `insert.rs`), then:
//!
//! ```text
//!   BEFORE triggers, for each row     (old and new values of that row)
//!   the rows are written              (constraints checked)
//!   foreign-key actions
//!   AFTER triggers, for each row
//! ```
//!
//! A trigger's body runs once per row with `NEW.c`/`OLD.c` replaced by the
//! parameters `$1…$n` (NEW, in column order) and `$n+1…$2n` (OLD), bound to
//! the row's values, through the session's own dispatch: in the same
//! transaction and statement, so a body that fails fails the statement and
//! undoes everything it did (triggers included). Triggers of one table and
//! timing fire in creation order. A body's writes fire their own tables'
//! triggers; a trigger never fires itself again while it runs (SQLite's
//! default, `recursive_triggers = off`), so firing always ends.
//!
//! Differences: PostgreSQL and SQLite run each row's BEFORE triggers just
//! before that row is written; EntiDB runs all of them before the first
//! row is written, so a BEFORE trigger that reads the target table sees
//! none of the statement's rows, and one that writes a row its UPDATE or
//! DELETE (or foreign-key action) is about to change fails the statement
//! with 27000 ([`fire_before`] compares the transaction's own writes of
//! those keys before and after the triggers). A BEFORE
//! trigger cannot change `NEW` (as in SQLite). `WHEN` holds for TRUE or a
//! non-zero number (SQLite's rule), never for NULL; another type is 42804.
//!
//! NEVER SKIPPED. A write path that cannot fire triggers refuses a table
//! that has them (0A000) rather than skip them: INSERT … ON CONFLICT (and
//! SQLite's REPLACE), MERGE, and DataFusion's own insert path
//! (`EntiTable::insert_into`, reached by `EXPLAIN ANALYZE INSERT`), which
//! the session flags per table at every catalog change. The Arrow
//! `append`, COPY and the prepared one-row INSERT fire INSERT triggers like
//! INSERT. CREATE and DROP TRIGGER touch the table's schema (as CREATE
//! INDEX does), so a transaction that wrote it under the old set of
//! triggers fails at COMMIT. A trigger whose stored text no longer parses
//! counts as present ([`has`]), so firing reports the error. Trigger text
//! is never rewritten by ALTER TABLE: RENAME/DROP COLUMN of a table with
//! triggers, and RENAME of a table a body names, are refused
//! ([`refuse_if_used`]). The stack of running triggers is emptied at the
//! start of every statement, so a statement cancelled mid-trigger cannot
//! leave a trigger disarmed (the session undoes the cancelled statement's
//! writes, its triggers' included).

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::provider::EntiTable;
use crate::session::{Output, Session};
use arrow::array::{Array, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ConditionalStatements, CreateTrigger, DropTrigger, Expr as SqlExpr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, SelectItem,
    SetExpr, Statement as SqlStatement, TriggerEvent, TriggerObject, TriggerObjectKind,
    TriggerPeriod, Value, VisitMut, VisitorMut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use entidb_catalog::{Catalog, TriggerMeta};
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// When a trigger runs relative to the row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    Before,
    After,
}

/// The kind of row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Insert,
    Update,
    Delete,
}

/// The rows one statement changes in one table, in the table's schema:
/// `old` for UPDATE and DELETE, `new` for INSERT and UPDATE (aligned with
/// `old` row by row for UPDATE).
pub(crate) struct Changed<'a> {
    pub(crate) old: &'a [RecordBatch],
    pub(crate) new: &'a [RecordBatch],
    /// The columns an UPDATE assigns (for `UPDATE OF`).
    pub(crate) assigned: &'a [String],
}

/// A trigger parsed from its catalog text.
struct Trigger {
    name: String,
    timing: Timing,
    events: Vec<TriggerEvent>,
    condition: Option<SqlExpr>,
    body: Vec<SqlStatement>,
}

impl Trigger {
    fn parse(meta: &TriggerMeta) -> Result<Self> {
        let statement = parse_sql(&meta.sql)
            .map_err(|e| ErrorKind::Execution(format!("trigger {}: {e}", meta.name)))?
            .into_iter()
            .next();
        let Some(SqlStatement::CreateTrigger(ct)) = statement else {
            return Err(ErrorKind::Execution(format!(
                "trigger {} is not a CREATE TRIGGER statement",
                meta.name
            ))
            .into());
        };
        Ok(Self {
            name: meta.name.clone(),
            timing: timing(ct.period)?,
            events: ct.events,
            condition: ct.condition,
            body: ct
                .statements
                .map(|s| s.statements().clone())
                .unwrap_or_default(),
        })
    }

    /// True when this trigger fires for `event` (and, for UPDATE, the
    /// `assigned` columns).
    fn fires_on(&self, event: Event, assigned: &[String]) -> bool {
        self.events.iter().any(|e| match (e, event) {
            (TriggerEvent::Insert, Event::Insert) | (TriggerEvent::Delete, Event::Delete) => true,
            (TriggerEvent::Update(columns), Event::Update) => {
                columns.is_empty()
                    || columns
                        .iter()
                        .any(|c| assigned.iter().any(|a| *a == normalize(c)))
            }
            _ => false,
        })
    }
}

/// Parses a trigger's stored text (or its WHEN) with the statement depth
/// cap CREATE accepted it under (`stack::MAX_DEPTH`, not sqlparser's 50).
fn parse_sql(sql: &str) -> std::result::Result<Vec<SqlStatement>, ParserError> {
    Parser::new(&GenericDialect {})
        .with_recursion_limit(crate::stack::MAX_DEPTH)
        .try_with_sql(sql)?
        .parse_statements()
}

fn timing(period: Option<TriggerPeriod>) -> Result<Timing> {
    match period {
        None | Some(TriggerPeriod::Before) => Ok(Timing::Before),
        Some(TriggerPeriod::After) => Ok(Timing::After),
        Some(TriggerPeriod::InsteadOf) => {
            Err(ErrorKind::NotSupported("INSTEAD OF triggers".into()).into())
        }
        Some(TriggerPeriod::For) => {
            Err(ErrorKind::NotSupported("FOR triggers (use BEFORE or AFTER)".into()).into())
        }
    }
}

/// True when `table` has a trigger for `event`, of either timing (UPDATE
/// triggers whatever their column list).
pub(crate) fn any(catalog: &Catalog, table: &str, event: Event) -> bool {
    has(catalog, table, None, event)
}

/// True when `table` has a trigger for `event` of `timing` (either when
/// `None`). A trigger whose text no longer parses counts, so the statement
/// takes the firing path and reports the error instead of skipping it.
pub(crate) fn has(catalog: &Catalog, table: &str, timing: Option<Timing>, event: Event) -> bool {
    catalog.triggers_on(table).any(|t| match Trigger::parse(t) {
        Err(_) => true,
        Ok(t) => {
            timing.is_none_or(|timing| t.timing == timing)
                && t.events.iter().any(|e| {
                    matches!(
                        (e, event),
                        (TriggerEvent::Insert, Event::Insert)
                            | (TriggerEvent::Delete, Event::Delete)
                            | (TriggerEvent::Update(_), Event::Update)
                    )
                })
        }
    })
}

/// The 0A000 error for a statement that cannot fire `table`'s triggers.
pub(crate) fn refuse_if_any(catalog: &Catalog, table: &str, what: &str) -> Result<()> {
    match catalog.triggers_on(table).next() {
        Some(t) => Err(ErrorKind::NotSupported(format!(
            "{what} on table {table}, which has triggers ({})",
            t.name
        ))
        .into()),
        None => Ok(()),
    }
}

/// The first trigger whose body or WHEN names the relation `table` (or,
/// with `on`, that is on `table`), if any.
fn used_by<'a>(catalog: &'a Catalog, table: &str, on: bool) -> Option<&'a TriggerMeta> {
    catalog.triggers.iter().find(|meta| {
        (on && meta.table == table)
            || Trigger::parse(meta).map_or(true, |t| {
                let mut found = false;
                let mut names = |name: &ObjectName| {
                    if name
                        .0
                        .last()
                        .and_then(ObjectNamePart::as_ident)
                        .is_some_and(|i| crate::schemas::may_name(&normalize(i), table))
                    {
                        found = true;
                    }
                    ControlFlow::<()>::Continue(())
                };
                for s in &t.body {
                    let _ = visit_relations(s, &mut names);
                }
                if let Some(c) = &t.condition {
                    let _ = visit_relations(c, &mut names);
                }
                found
            })
    })
}

/// The 0A000 error for an ALTER TABLE (`what`) of `table` when a trigger
/// names it in its body (or, with `on`, is on it): a trigger's text is not
/// rewritten, so renaming or dropping a column (or renaming a table a body
/// writes) would leave a trigger that silently stops firing (`UPDATE OF` a
/// renamed column) or fails every write.
pub(crate) fn refuse_if_used(catalog: &Catalog, table: &str, on: bool, what: &str) -> Result<()> {
    match used_by(catalog, table, on) {
        Some(t) => Err(ErrorKind::NotSupported(format!(
            "{what} of table {table}, which trigger {} uses (drop the trigger, alter the \
             table, create the trigger again)",
            t.name
        ))
        .into()),
        None => Ok(()),
    }
}

/// CREATE TRIGGER.
pub(crate) fn create(session: &mut Session, ct: &CreateTrigger) -> Result<()> {
    let unsupported = |what: &str| Err(ErrorKind::NotSupported(what.to_string()).into());
    if ct.temporary {
        return unsupported("temporary triggers");
    }
    if ct.is_constraint || ct.characteristics.is_some() {
        return unsupported("constraint triggers");
    }
    if ct.exec_body.is_some() {
        return unsupported(
            "EXECUTE FUNCTION in a trigger (EntiDB has no stored functions: write the \
             trigger's statements between BEGIN and END)",
        );
    }
    if !ct.referencing.is_empty() || ct.referenced_table_name.is_some() {
        return unsupported("REFERENCING or FROM in a trigger");
    }
    if matches!(
        ct.trigger_object,
        Some(TriggerObjectKind::For(TriggerObject::Statement))
            | Some(TriggerObjectKind::ForEach(TriggerObject::Statement))
    ) {
        return unsupported("FOR EACH STATEMENT triggers");
    }
    if ct.or_alter {
        return unsupported("CREATE OR ALTER TRIGGER");
    }
    timing(ct.period)?;
    if ct
        .events
        .iter()
        .any(|e| matches!(e, TriggerEvent::Truncate))
    {
        return unsupported("TRUNCATE triggers");
    }
    let name = one_name(&ct.name)?;
    let table = crate::schemas::resolve_for_ddl(&session.catalog, &ct.table_name)?;
    let Some(meta) = session.catalog.table(&table) else {
        if session.catalog.view(&table).is_some() {
            return unsupported("BEFORE and AFTER triggers on a view");
        }
        return Err(ErrorKind::UndefinedTable { name: table }.into());
    };
    let columns: Vec<String> = session
        .tables
        .get(&table)
        .map(|t| {
            t.def()
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let events: Vec<Event> = ct
        .events
        .iter()
        .filter_map(|e| match e {
            TriggerEvent::Insert => Some(Event::Insert),
            TriggerEvent::Update(_) => Some(Event::Update),
            TriggerEvent::Delete => Some(Event::Delete),
            TriggerEvent::Truncate => None,
        })
        .collect();
    for e in &ct.events {
        if let TriggerEvent::Update(listed) = e {
            for c in listed {
                let c = normalize(c);
                if !columns.contains(&c) {
                    return Err(undefined_column(&c, &meta.name));
                }
            }
        }
    }
    let Some(body) = &ct.statements else {
        return unsupported("a trigger without a body");
    };
    if !matches!(body, ConditionalStatements::BeginEnd(_)) {
        // Without BEGIN … END sqlparser reads statements to the end of
        // the input: the rest of a script would become the body.
        return Err(
            ErrorKind::Syntax("a trigger's statements go between BEGIN and END".into()).into(),
        );
    }
    for s in body.statements() {
        if let SqlStatement::Query(q) = s
            && selects_into(q)
        {
            return unsupported("SELECT … INTO in a trigger");
        }
        if !matches!(
            s,
            SqlStatement::Insert(_)
                | SqlStatement::Update(_)
                | SqlStatement::Delete(_)
                | SqlStatement::Query(_)
        ) {
            return unsupported(
                "statements other than INSERT, UPDATE, DELETE and SELECT in a trigger",
            );
        }
    }
    check_row_references(ct, &events, &columns, &meta.name)?;
    check_raises(ct)?;
    let mut catalog = session.catalog.as_ref().clone();
    if catalog.trigger(&name).is_some() {
        if !ct.or_replace {
            return Err(
                ErrorKind::DuplicateObject(format!("trigger {name} already exists")).into(),
            );
        }
        catalog.triggers.retain(|t| t.name != name);
    }
    catalog.triggers.push(TriggerMeta {
        name,
        table,
        sql: ct.to_string(),
    });
    // Like CREATE INDEX: a transaction that wrote the table under an
    // older snapshot (and so fired none of this trigger) fails at COMMIT.
    let table_id = meta.table_id;
    session.slot.with(|t| {
        t.touch_schema(table_id)?;
        catalog.save(t)
    })?;
    Ok(())
}

/// A trigger's name: one identifier, normalised.
fn one_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Ok(normalize(ident)),
        _ => Err(ErrorKind::NotSupported(format!("qualified trigger name {name}")).into()),
    }
}

fn undefined_column(column: &str, table: &str) -> crate::error::Error {
    ErrorKind::UndefinedColumn {
        column: column.to_string(),
        relation: Some(table.to_string()),
    }
    .into()
}

/// Refuses `NEW.c`/`OLD.c` for a column the table lacks, and `NEW` (`OLD`)
/// in a trigger some of whose events have no new (old) row.
fn check_row_references(
    ct: &CreateTrigger,
    events: &[Event],
    columns: &[String],
    table: &str,
) -> Result<()> {
    let mut found = Vec::new();
    let mut collect = RowReferences {
        found: &mut found,
        columns,
        replace: false,
    };
    let mut ct = ct.clone();
    if let Some(c) = ct.condition.as_mut() {
        let _ = c.visit(&mut collect);
    }
    if let Some(body) = ct.statements.as_mut() {
        for s in statements_mut(body) {
            let _ = s.visit(&mut collect);
        }
    }
    for (pseudo, column) in found {
        if !columns.contains(&column) {
            return Err(undefined_column(&column, &pseudo.to_ascii_uppercase()));
        }
        let lacking = events.iter().find(|e| match pseudo.as_str() {
            "new" => **e == Event::Delete,
            _ => **e == Event::Insert,
        });
        if let Some(e) = lacking {
            return Err(ErrorKind::Plan(format!(
                "there is no {} row in a {e:?} trigger on {table} ({}.{column})",
                pseudo.to_ascii_uppercase(),
                pseudo.to_ascii_uppercase()
            ))
            .into());
        }
    }
    Ok(())
}

/// True when a query (or one of its set operands) is `SELECT … INTO`,
/// which creates a table.
fn selects_into(q: &Query) -> bool {
    fn walk(e: &SetExpr) -> bool {
        match e {
            SetExpr::Select(s) => s.into.is_some(),
            SetExpr::Query(q) => selects_into(q),
            SetExpr::SetOperation { left, right, .. } => walk(left) || walk(right),
            _ => false,
        }
    }
    walk(&q.body)
}

fn statements_mut(body: &mut ConditionalStatements) -> &mut Vec<SqlStatement> {
    match body {
        ConditionalStatements::Sequence { statements } => statements,
        ConditionalStatements::BeginEnd(b) => &mut b.statements,
    }
}

/// Finds `NEW.c` and `OLD.c` (as `("new" | "old", c)`), and with `replace`
/// turns them into the placeholders of [`params`]: `$i` for NEW's column
/// `i` (1-based), `$n+i` for OLD's.
struct RowReferences<'a> {
    found: &'a mut Vec<(String, String)>,
    columns: &'a [String],
    replace: bool,
}

impl VisitorMut for RowReferences<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        if self.replace
            && let Some(kind) = raise_kind(e)
        {
            // `RAISE(ABORT, m)` → `__entidb_raise('abort', m)`: its first
            // argument is a keyword, not a column.
            *kind = SqlExpr::value(Value::SingleQuotedString(
                normalize_kind(kind).unwrap_or_default(),
            ));
            if let SqlExpr::Function(f) = e {
                f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(RAISE_FN))]);
            }
        }
        let SqlExpr::CompoundIdentifier(parts) = e else {
            return ControlFlow::Continue(());
        };
        let [pseudo, column] = parts.as_slice() else {
            return ControlFlow::Continue(());
        };
        let pseudo = normalize(pseudo);
        if pseudo != "new" && pseudo != "old" {
            return ControlFlow::Continue(());
        }
        let column = normalize(column);
        if self.replace
            && let Some(i) = self.columns.iter().position(|c| *c == column)
        {
            let n = self.columns.len();
            let number = if pseudo == "new" { i + 1 } else { n + i + 1 };
            *e = SqlExpr::value(Value::Placeholder(format!("${number}")));
        }
        self.found.push((pseudo, column));
        ControlFlow::Continue(())
    }
}

/// The first argument of a `RAISE(kind, …)` call (the keyword `ABORT`,
/// `FAIL`, `ROLLBACK` or `IGNORE`), if `e` is one.
fn raise_kind(e: &mut SqlExpr) -> Option<&mut SqlExpr> {
    let SqlExpr::Function(f) = e else {
        return None;
    };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if normalize(name) != RAISE {
        return None;
    }
    let FunctionArguments::List(list) = &mut f.args else {
        return None;
    };
    match list.args.first_mut() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(kind)))
            if matches!(kind, SqlExpr::Identifier(_)) =>
        {
            Some(kind)
        }
        _ => None,
    }
}

/// The lower-case keyword of a RAISE kind argument.
fn normalize_kind(kind: &SqlExpr) -> Option<String> {
    match kind {
        SqlExpr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// Refuses a RAISE other than `RAISE(ABORT, message)` in a body's SELECT.
fn check_raises(ct: &CreateTrigger) -> Result<()> {
    struct Raises(Vec<(String, usize)>);
    impl VisitorMut for Raises {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
            if let SqlExpr::Function(f) = e
                && let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice()
                && normalize(name) == RAISE_FN
            {
                self.0.push((RAISE_FN.to_string(), 0));
            }
            let arguments = match e {
                SqlExpr::Function(f) => match &f.args {
                    FunctionArguments::List(list) => list.args.len(),
                    _ => 0,
                },
                _ => 0,
            };
            if let Some(kind) = raise_kind(e) {
                let kind = normalize_kind(kind).unwrap_or_default();
                self.0.push((kind, arguments));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ct = ct.clone();
    let mut raises = Raises(Vec::new());
    let mut misplaced = Raises(Vec::new());
    if let Some(c) = ct.condition.as_mut() {
        let _ = c.visit(&mut misplaced);
    }
    let mut hidden = false;
    if let Some(body) = ct.statements.as_mut() {
        for s in statements_mut(body) {
            if let SqlStatement::Query(q) = s {
                let before = raises.0.len();
                let _ = q.visit(&mut raises);
                hidden |= raises.0.len() - before != visible_raises(q);
            } else {
                let _ = s.visit(&mut misplaced);
            }
        }
    }
    if !misplaced.0.is_empty() {
        return Err(ErrorKind::NotSupported(
            "RAISE outside a SELECT of a trigger's body (write SELECT RAISE(ABORT, message) \
             WHERE …)"
                .into(),
        )
        .into());
    }
    if hidden {
        // It raises when the SELECT returns it: nested in another
        // expression, a subquery or a clause, or past a LIMIT, it might not.
        return Err(ErrorKind::NotSupported(
            "RAISE in a trigger's SELECT other than as an item of its select list (or a CASE \
             result there), or in a SELECT with LIMIT, OFFSET or FETCH"
                .into(),
        )
        .into());
    }
    for (kind, arguments) in raises.0 {
        match (kind.as_str(), arguments) {
            ("abort", 2) => {}
            ("abort", _) => {
                return Err(ErrorKind::Syntax(
                    "RAISE(ABORT, message) takes a kind and a message".into(),
                )
                .into());
            }
            (other, _) => {
                return Err(ErrorKind::NotSupported(format!(
                    "RAISE({}) in a trigger (RAISE(ABORT, message) fails the statement)",
                    other.to_ascii_uppercase()
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The RAISE calls of `q` where its result shows them: items of its select
/// list, alone or as CASE results, when no LIMIT/OFFSET/FETCH cuts rows.
fn visible_raises(q: &mut Query) -> usize {
    if q.limit_clause.is_some() || q.fetch.is_some() || !q.pipe_operators.is_empty() {
        return 0;
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return 0;
    };
    select
        .projection
        .iter_mut()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                result_raises(e)
            }
            _ => 0,
        })
        .sum()
}

/// RAISE calls that are `e`'s value: `e` itself, or CASE results.
fn result_raises(e: &mut SqlExpr) -> usize {
    if raise_kind(e).is_some() {
        return 1;
    }
    match e {
        SqlExpr::Nested(inner) => result_raises(inner),
        SqlExpr::Case {
            conditions,
            else_result,
            ..
        } => {
            conditions
                .iter_mut()
                .map(|c| result_raises(&mut c.result))
                .sum::<usize>()
                + else_result.as_deref_mut().map_or(0, result_raises)
        }
        _ => 0,
    }
}

/// SQLite's RAISE, as the body's text names it.
const RAISE: &str = "raise";

/// The function `RAISE(ABORT, m)` becomes when a trigger fires.
const RAISE_FN: &str = "__entidb_raise";

/// A session's RAISE: the mark its [`raise_function`] puts before a
/// message (NUL, a random number chosen when the session starts, NUL: no
/// stored text holds it by chance, and no user SQL can produce it, as the
/// function refuses to run outside a trigger's SELECT), and whether a
/// trigger's SELECT is running.
#[derive(Debug)]
pub(crate) struct RaiseState {
    mark: String,
    active: AtomicBool,
}

impl RaiseState {
    pub(crate) fn new() -> Arc<Self> {
        let nonce = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Arc::new(Self {
            mark: format!("\u{0}entidb raise {nonce:016x}\u{0}"),
            active: AtomicBool::new(false),
        })
    }

    /// Marks whether a trigger's SELECT runs (cleared by every statement).
    pub(crate) fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }
}

impl PartialEq for RaiseState {
    fn eq(&self, other: &Self) -> bool {
        self.mark == other.mark
    }
}

impl Eq for RaiseState {}

impl Hash for RaiseState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.mark.hash(state);
    }
}

/// `__entidb_raise(kind, message)`: the message as TEXT, marked with the
/// session's mark ([`RaiseState`]); outside a trigger's SELECT an error.
/// Volatile, so the planner never evaluates it ahead of the rows.
pub(crate) fn raise_function(state: Arc<RaiseState>) -> ScalarUDF {
    ScalarUDF::new_from_impl(RaiseFn {
        signature: Signature::any(2, Volatility::Volatile),
        state,
    })
}

/// The P0001 error for the first marked message in a body SELECT's result.
fn raised(out: &Output, mark: &str) -> Result<()> {
    let Output::Rows(_, batches) = out else {
        return Ok(());
    };
    for column in batches.iter().flat_map(RecordBatch::columns) {
        if !matches!(
            column.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            continue;
        }
        let text = arrow::compute::cast(column, &DataType::Utf8)?;
        for value in text.as_string::<i32>().iter().flatten() {
            if let Some((_, message)) = value.split_once(mark) {
                return Err(ErrorKind::RaiseException(message.to_string()).into());
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RaiseFn {
    signature: Signature,
    state: Arc<RaiseState>,
}

impl ScalarUDFImpl for RaiseFn {
    fn name(&self) -> &str {
        RAISE_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !self.state.active.load(Ordering::Relaxed) {
            return Err(crate::error::sql_to_df(
                ErrorKind::Plan("RAISE() may only be used within a trigger's SELECT".into()).into(),
            ));
        }
        let mark = |m: Option<&str>| format!("{}{}", self.state.mark, m.unwrap_or_default());
        match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => {
                let text = arrow::compute::cast(a, &DataType::Utf8)?;
                let marked: StringArray = text
                    .as_string::<i32>()
                    .iter()
                    .map(|m| Some(mark(m)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(marked)))
            }
            Some(ColumnarValue::Scalar(v)) => {
                let text = (!v.is_null()).then(|| v.to_string());
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(mark(
                    text.as_deref(),
                )))))
            }
            None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(mark(None))))),
        }
    }
}

/// DROP TRIGGER [IF EXISTS] name [ON table].
pub(crate) fn drop(session: &mut Session, d: &DropTrigger) -> Result<()> {
    let name = one_name(&d.trigger_name)?;
    let table = match &d.table_name {
        Some(written) => match crate::schemas::or_absent(
            crate::schemas::resolve_for_ddl(&session.catalog, written),
            d.if_exists,
        )? {
            Some(table) => Some(table),
            // IF EXISTS … ON a table of a schema that does not exist.
            None => return Ok(()),
        },
        None => None,
    };
    let found = session
        .catalog
        .trigger(&name)
        .filter(|t| table.as_ref().is_none_or(|table| t.table == *table));
    if found.is_none() {
        if d.if_exists {
            return Ok(());
        }
        return Err(ErrorKind::UndefinedObject {
            kind: "trigger",
            name,
        }
        .into());
    }
    let table_id = found
        .and_then(|t| session.catalog.table(&t.table))
        .map(|m| m.table_id);
    let mut catalog = session.catalog.as_ref().clone();
    catalog.triggers.retain(|t| t.name != name);
    session.slot.with(|t| {
        if let Some(id) = table_id {
            t.touch_schema(id)?;
        }
        catalog.save(t)
    })?;
    Ok(())
}

/// Renames the table `old` to `new` in the triggers defined on it.
pub(crate) fn rename_table(catalog: &mut Catalog, old: &str, new: &str) {
    let table_name = crate::schemas::object_name(catalog, new);
    for t in catalog.triggers.iter_mut().filter(|t| t.table == old) {
        t.table = new.to_string();
        if let Ok(mut statements) = parse_sql(&t.sql)
            && let Some(SqlStatement::CreateTrigger(ct)) = statements.first_mut()
        {
            ct.table_name = table_name.clone();
            t.sql = ct.to_string();
        }
    }
}

/// Runs the `timing` triggers of `table` for `event` over `changed`.
pub(crate) async fn fire(
    session: &mut Session,
    table: &EntiTable,
    timing: Timing,
    event: Event,
    changed: &Changed<'_>,
) -> Result<()> {
    let name = table.meta().name.clone();
    let triggers: Vec<Trigger> = session
        .catalog
        .triggers_on(&name)
        .map(Trigger::parse)
        .collect::<Result<_>>()?;
    let schema = table.def().schema.clone();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for trigger in triggers {
        if trigger.timing != timing
            || !trigger.fires_on(event, changed.assigned)
            || session.firing_triggers.contains(&trigger.name)
        {
            continue;
        }
        session.firing_triggers.push(trigger.name.clone());
        let result = run_trigger(session, &trigger, &schema, &columns, changed).await;
        session.firing_triggers.retain(|t| *t != trigger.name);
        result?;
    }
    Ok(())
}

/// Runs `table`'s BEFORE triggers for `event`, then fails with 27000 if
/// they wrote (changed or deleted) any of the rows with `keys`, which the
/// statement is about to change: writing its precomputed rows over the
/// trigger's work would resurrect a deleted row or lose the trigger's
/// write. Rows a trigger inserts, and other tables, do not count.
pub(crate) async fn fire_before(
    session: &mut Session,
    table: &EntiTable,
    event: Event,
    changed: &Changed<'_>,
    keys: &[&BinaryArray],
) -> Result<()> {
    if !has(
        &session.catalog,
        &table.meta().name,
        Some(Timing::Before),
        event,
    ) {
        return Ok(());
    }
    let id = table.def().id;
    let writes = |session: &Session| {
        session.slot.with(|t| {
            Ok(keys
                .iter()
                .flat_map(|k| k.iter().flatten())
                .map(|k| t.own_write(id, k))
                .collect::<Vec<_>>())
        })
    };
    let before = writes(session)?;
    fire(session, table, Timing::Before, event, changed).await?;
    if writes(session)? != before {
        return Err(ErrorKind::TriggeredDataChangeViolation(format!(
            "a BEFORE {event:?} trigger on {} changed or deleted a row this statement changes",
            table.meta().name
        ))
        .into());
    }
    Ok(())
}

/// Runs one trigger once per changed row.
async fn run_trigger(
    session: &mut Session,
    trigger: &Trigger,
    schema: &SchemaRef,
    columns: &[String],
    changed: &Changed<'_>,
) -> Result<()> {
    let mut bind = |mut s: SqlStatement| {
        let mut found = Vec::new();
        let _ = s.visit(&mut RowReferences {
            found: &mut found,
            columns,
            replace: true,
        });
        s
    };
    let condition = match &trigger.condition {
        Some(c) => parse_sql(&format!("SELECT ({c})"))
            .map_err(|e| ErrorKind::Execution(format!("trigger {}: {e}", trigger.name)))?
            .into_iter()
            .next()
            .map(&mut bind),
        None => None,
    };
    let body: Vec<SqlStatement> = trigger.body.iter().cloned().map(&mut bind).collect();
    let rows = changed
        .old
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>()
        .max(changed.new.iter().map(RecordBatch::num_rows).sum());
    for row in 0..rows {
        let params = params(schema, changed, row)?;
        if let Some(condition) = &condition
            && !is_true(run(session, condition.clone(), &params).await?)?
        {
            continue;
        }
        for s in &body {
            let select = matches!(s, SqlStatement::Query(_));
            session.raise.set_active(select);
            let out = run(session, s.clone(), &params).await;
            session.raise.set_active(false);
            if select {
                raised(&out?, &session.raise.mark)?;
            } else {
                out?;
            }
        }
    }
    Ok(())
}

/// Runs one bound statement in the current statement's transaction.
fn run<'a>(
    session: &'a mut Session,
    statement: SqlStatement,
    params: &'a [ScalarValue],
) -> futures::future::BoxFuture<'a, Result<Output>> {
    Box::pin(session.dispatch(DFStatement::Statement(Box::new(statement)), params))
}

/// True when a WHEN query's single value is TRUE, or (SQLite's rule) a
/// non-zero number; NULL is false. Any other type is 42804, never a
/// silent "does not fire".
fn is_true(out: Output) -> Result<bool> {
    let Output::Rows(_, batches) = out else {
        return Ok(false);
    };
    let Some(value) = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.columns().first())
    else {
        return Ok(false);
    };
    if value.is_null(0) {
        return Ok(false);
    }
    match value.data_type() {
        DataType::Boolean => Ok(value.as_boolean().value(0)),
        t if t.is_numeric() => {
            let zero = ScalarValue::new_zero(t)?;
            Ok(ScalarValue::try_from_array(value, 0)? != zero)
        }
        t => Err(ErrorKind::DatatypeMismatch(format!(
            "argument of a trigger's WHEN must be type boolean, not type {t}"
        ))
        .into()),
    }
}

/// The parameters of changed row `row`: NEW's values, then OLD's (typed
/// NULLs for the side the event lacks).
fn params(schema: &SchemaRef, changed: &Changed<'_>, row: usize) -> Result<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(schema.fields().len() * 2);
    for side in [changed.new, changed.old] {
        match locate(side, row) {
            Some((batch, i)) => {
                for column in batch.columns() {
                    out.push(ScalarValue::try_from_array(column, i)?);
                }
            }
            None => {
                for f in schema.fields() {
                    out.push(ScalarValue::try_from(f.data_type())?);
                }
            }
        }
    }
    Ok(out)
}

/// Batch and row of the `row`-th row of `batches`.
fn locate(batches: &[RecordBatch], mut row: usize) -> Option<(&RecordBatch, usize)> {
    for b in batches {
        if row < b.num_rows() {
            return Some((b, row));
        }
        row -= b.num_rows();
    }
    None
}
