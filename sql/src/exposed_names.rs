//! The names a FROM list exposes, checked before DataFusion binds
//! qualifiers to them.
//!
//! DataFusion matches a column's qualifier to a relation by
//! `TableReference::resolved_eq`, which lets a partial qualifier match a
//! bare one: the qualifier `s.t` (as in `s.t.id`) matches a relation
//! written `t`, or aliased `t`, whatever `t` really is. With schemas, that
//! reads the wrong table and answers wrongly, silently. PostgreSQL's rules,
//! which this module enforces before planning:
//!
//! - ONE NAME PER FROM LIST: the relations of one FROM list (a SELECT's; an
//!   UPDATE's target with its FROM; a DELETE's with its USING; a MERGE's
//!   target with its source) expose distinct names, 42712. A relation
//!   exposes its alias, or else its unqualified name; derived tables,
//!   table functions and UNNEST expose their alias (a derived table
//!   without one is given a hidden one, `dialect.rs`, so the names inside
//!   it are not seen outside, as in PostgreSQL 16 and SQLite); an unaliased
//!   parenthesised join exposes the names inside it (flattened), an aliased
//!   one only its alias. PostgreSQL also allows two unaliased tables of one
//!   name from different schemas (`FROM main.t, s.t`) and then refuses the
//!   bare qualifier `t` (42P09); EntiDB refuses the FROM list itself, a
//!   deliberate, stricter difference that keeps every qualifier unambiguous.
//! - SCHEMA-QUALIFIED QUALIFIERS: `s.t.id` (or `entidb.s.t.id`, or the
//!   wildcard `s.t.*`) must mean the relation of schema `s` named `t`,
//!   unaliased. The scopes are searched from the innermost query outwards
//!   (a correlated subquery sees its enclosing queries); in the first
//!   scope holding a relation that DataFusion would take for the qualifier,
//!   that relation must be the one meant. If it is not and no scope holds
//!   the one meant, the reference is invalid, 42P01, as in PostgreSQL. If
//!   an outer scope holds it (PostgreSQL would bind there, DataFusion
//!   would bind the inner one), EntiDB refuses with 0A000 and asks for an
//!   alias: a refused statement is better than a wrong answer.
//!
//! An INSERT's RETURNING and ON CONFLICT see its target (and `excluded`);
//! pipe syntax (`|>`) is refused (0A000), as is a qualifier naming another
//! database. Stored views are planned from SQL checked when they were
//! created.
//!
//! The walk is over the parsed statement: queries, their set operations and
//! SELECTs build the scopes, and a visitor finds the qualifiers (and the
//! subqueries, which it hands back to the walk) in each SELECT's clauses.

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::schemas::DATABASE;
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, FromTable, Ident, ObjectName, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement as SqlStatement, TableAlias, TableFactor,
    TableObject, TableWithJoins, UpdateTableFromKind, Visit, Visitor,
};
use entidb_catalog::MAIN;
use std::cell::RefCell;
use std::ops::ControlFlow;

/// Checks a statement as the module doc says.
///
/// # Errors
/// 42712, 42P01 or 0A000 (see the module doc).
pub(crate) fn check(statement: &DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => check_sql(s, &Scopes::default()),
        DFStatement::Explain(e) => check(&e.statement),
        DFStatement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => check_query(q, &Scopes::default()),
            CopyToSource::Relation(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_sql(statement: &SqlStatement, base: &Scopes) -> Result<()> {
    match statement {
        SqlStatement::Query(q) => check_query(q, base),
        SqlStatement::Explain { statement, .. } => check_sql(statement, base),
        SqlStatement::Update(update) => {
            let mut tables = vec![&update.table];
            if let Some(
                UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
            ) = &update.from
            {
                tables.extend(from);
            }
            let scopes = base.with(from_list(&tables, base)?);
            let view = scopes.view();
            check_joins(&tables, &view)?;
            check_exprs(&update.assignments, &view)?;
            check_exprs(&update.selection, &view)?;
            check_exprs(&update.order_by, &view)?;
            check_exprs(&update.limit, &view)?;
            check_exprs(&update.returning, &view)
        }
        SqlStatement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            let mut tables: Vec<&TableWithJoins> = from.iter().collect();
            if let Some(using) = &delete.using {
                tables.extend(using);
            }
            let scopes = base.with(from_list(&tables, base)?);
            let view = scopes.view();
            check_joins(&tables, &view)?;
            check_exprs(&delete.selection, &view)?;
            check_exprs(&delete.order_by, &view)?;
            check_exprs(&delete.limit, &view)?;
            check_exprs(&delete.returning, &view)
        }
        SqlStatement::Insert(insert) => {
            if let Some(source) = &insert.source {
                check_query(source, base)?;
            }
            // RETURNING and ON CONFLICT see the target by its alias or its
            // bare name (`insert.rs`, `upsert.rs`), and `excluded`.
            let mut scope = Scope::default();
            if let TableObject::TableName(name) = &insert.table {
                let entry = match &insert.table_alias {
                    Some(a) => Some(aliased_as(&a.alias)),
                    None => table_entry(name, None, false, base),
                };
                if let Some(mut entry) = entry {
                    entry.written_schema = None;
                    scope.entries.push(entry);
                }
            }
            scope.entries.push(Entry {
                exposed: "excluded".into(),
                written_schema: None,
                table_schema: None,
            });
            let scopes = base.with(scope);
            let view = scopes.view();
            check_exprs(&insert.on, &view)?;
            check_exprs(&insert.returning, &view)
        }
        SqlStatement::Merge(merge) => {
            let mut scope = Scope::default();
            add_factor(&mut scope, &merge.table, base)?;
            add_factor(&mut scope, &merge.source, base)?;
            let scopes = base.with(scope);
            let view = scopes.view();
            check_exprs(&merge.on, &view)?;
            check_exprs(&merge.clauses, &view)
        }
        // Every other statement: the queries it holds (INSERT … SELECT,
        // CREATE VIEW … AS, CREATE TABLE … AS), each from no scope.
        other => check_exprs(other, base),
    }
}

/// One FROM list: the names it exposes.
#[derive(Default)]
struct Scope {
    entries: Vec<Entry>,
}

/// A name a FROM list exposes.
struct Entry {
    /// The name a qualifier uses: the alias, or the unqualified name.
    exposed: String,
    /// The schema as written (`s` of `FROM s.t`); `None` for a name
    /// written without one and for an alias. DataFusion takes the
    /// qualifier `s.t` for this entry when the exposed name is `t` and this
    /// is `None` or `s`.
    written_schema: Option<String>,
    /// The schema of an unaliased table (`main` for a bare name); `None`
    /// for aliases, CTEs, derived tables and functions. The qualifier
    /// `s.t` means this entry exactly when this is `s`.
    table_schema: Option<String>,
}

/// The scopes a clause sees, innermost last, and the CTE names in force.
#[derive(Default, Clone)]
struct Scopes<'a> {
    stack: Vec<&'a Scope>,
    ctes: Vec<String>,
    /// Where [`relations_read`] collects the relations named.
    relations: Option<&'a RefCell<Vec<ObjectName>>>,
}

impl<'a> Scopes<'a> {
    fn with(&self, scope: Scope) -> ScopesOwned<'a> {
        ScopesOwned {
            outer: self.clone(),
            inner: scope,
        }
    }

    /// These scopes and, inside them, `scope` (what LATERAL sees).
    fn and<'b>(&self, scope: &'b Scope) -> Scopes<'b>
    where
        'a: 'b,
    {
        let mut stack = self.stack.clone();
        stack.push(scope);
        Scopes {
            stack,
            ctes: self.ctes.clone(),
            relations: self.relations,
        }
    }
}

/// [`Scopes`] with one more (owned) scope inside.
struct ScopesOwned<'a> {
    outer: Scopes<'a>,
    inner: Scope,
}

impl ScopesOwned<'_> {
    fn view(&self) -> Scopes<'_> {
        self.outer.and(&self.inner)
    }
}

fn check_query(query: &Query, outer: &Scopes) -> Result<()> {
    // `|> JOIN` would join under DataFusion's loose qualifiers with no
    // FROM list to check.
    if !query.pipe_operators.is_empty() {
        return Err(ErrorKind::NotSupported("pipe syntax (|>)".into()).into());
    }
    let mut scopes = outer.clone();
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            if with.recursive {
                scopes.ctes.push(normalize(&cte.alias.name));
                check_query(&cte.query, &scopes)?;
            } else {
                check_query(&cte.query, &scopes)?;
                scopes.ctes.push(normalize(&cte.alias.name));
            }
        }
    }
    match query.body.as_ref() {
        // ORDER BY of a single SELECT may name its FROM list's columns.
        SetExpr::Select(select) => {
            let inner = check_select(select, &scopes)?;
            check_exprs(&query.order_by, &inner.view())
        }
        body => {
            check_set_expr(body, &scopes)?;
            check_exprs(&query.order_by, &scopes)
        }
    }?;
    check_exprs(&query.limit_clause, &scopes)
}

fn check_set_expr(body: &SetExpr, scopes: &Scopes) -> Result<()> {
    match body {
        SetExpr::Select(select) => check_select(select, scopes).map(drop),
        SetExpr::Query(q) => check_query(q, scopes),
        SetExpr::SetOperation { left, right, .. } => {
            check_set_expr(left, scopes)?;
            check_set_expr(right, scopes)
        }
        SetExpr::Values(values) => check_exprs(&values.rows, scopes),
        _ => Ok(()),
    }
}

/// Checks a SELECT; returns the scopes its clauses saw.
fn check_select<'a>(select: &Select, outer: &Scopes<'a>) -> Result<ScopesOwned<'a>> {
    let tables: Vec<&TableWithJoins> = select.from.iter().collect();
    let scopes = outer.with(from_list(&tables, outer)?);
    let view = scopes.view();
    for item in &select.projection {
        if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) =
            item
        {
            let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
            check_qualifier(&parts, &name.to_string(), &view, true)?;
        }
    }
    check_exprs(&select.distinct, &view)?;
    check_exprs(&select.projection, &view)?;
    check_exprs(&select.prewhere, &view)?;
    check_exprs(&select.selection, &view)?;
    check_exprs(&select.group_by, &view)?;
    check_exprs(&select.having, &view)?;
    check_exprs(&select.named_window, &view)?;
    check_exprs(&select.qualify, &view)?;
    check_exprs(&select.sort_by, &view)?;
    check_joins(&tables, &view)?;
    Ok(scopes)
}

/// The scope of one FROM list (see [`add_factor`]); derived tables in it
/// are checked on the way.
fn from_list(tables: &[&TableWithJoins], outer: &Scopes) -> Result<Scope> {
    let mut scope = Scope::default();
    for table in tables {
        add_joined(&mut scope, table, outer)?;
    }
    Ok(scope)
}

fn add_joined(scope: &mut Scope, table: &TableWithJoins, outer: &Scopes) -> Result<()> {
    add_factor(scope, &table.relation, outer)?;
    for join in &table.joins {
        add_factor(scope, &join.relation, outer)?;
    }
    Ok(())
}

/// Adds the names one table factor exposes; 42712 when one is taken.
fn add_factor(scope: &mut Scope, factor: &TableFactor, outer: &Scopes) -> Result<()> {
    let entry = match factor {
        TableFactor::Table {
            name, alias, args, ..
        } => {
            check_exprs(args, &outer.and(scope))?;
            if let Some(relations) = outer.relations
                && args.is_none()
                && !is_cte(name, outer)
            {
                relations.borrow_mut().push(name.clone());
            }
            table_entry(name, alias.as_ref(), args.is_some(), outer)
        }
        TableFactor::Derived {
            lateral,
            subquery,
            alias,
            ..
        } => {
            if *lateral {
                check_query(subquery, &outer.and(scope))?;
            } else {
                check_query(subquery, outer)?;
            }
            alias.as_ref().map(aliased)
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } => {
            let mut inner = Scope::default();
            add_joined(&mut inner, table_with_joins, outer)?;
            // The ON clauses inside see the names inside (and outside).
            let seen = outer.and(&inner);
            for join in &table_with_joins.joins {
                check_exprs(&join.join_operator, &seen)?;
            }
            match alias {
                Some(alias) => Some(aliased(alias)),
                None => {
                    for entry in inner.entries {
                        add_entry(scope, entry)?;
                    }
                    None
                }
            }
        }
        TableFactor::Function {
            name, alias, args, ..
        } => {
            check_exprs(args, &outer.and(scope))?;
            Some(match alias {
                Some(alias) => aliased(alias),
                None => unaliased_function(name),
            })
        }
        // UNNEST and the like see the FROM items before them, as
        // DataFusion plans them (laterally).
        other => {
            check_exprs(other, &outer.and(scope))?;
            factor_alias(other).map(aliased)
        }
    };
    match entry {
        Some(entry) => add_entry(scope, entry),
        None => Ok(()),
    }
}

fn add_entry(scope: &mut Scope, entry: Entry) -> Result<()> {
    if scope.entries.iter().any(|e| e.exposed == entry.exposed) {
        return Err(ErrorKind::DuplicateAlias(format!(
            "table name \"{}\" specified more than once (give one of them an alias)",
            entry.exposed
        ))
        .into());
    }
    scope.entries.push(entry);
    Ok(())
}

/// The alias of the factors that only an alias names.
fn factor_alias(factor: &TableFactor) -> Option<&TableAlias> {
    match factor {
        TableFactor::TableFunction { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::JsonTable { alias, .. }
        | TableFactor::OpenJsonTable { alias, .. }
        | TableFactor::Pivot { alias, .. }
        | TableFactor::Unpivot { alias, .. }
        | TableFactor::MatchRecognize { alias, .. }
        | TableFactor::XmlTable { alias, .. }
        | TableFactor::SemanticView { alias, .. } => alias.as_ref(),
        _ => None,
    }
}

fn aliased(alias: &TableAlias) -> Entry {
    aliased_as(&alias.name)
}

fn aliased_as(alias: &Ident) -> Entry {
    Entry {
        exposed: normalize(alias),
        written_schema: None,
        table_schema: None,
    }
}

fn unaliased_function(name: &ObjectName) -> Entry {
    Entry {
        exposed: name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize)
            .unwrap_or_default(),
        written_schema: None,
        table_schema: None,
    }
}

fn table_entry(
    name: &ObjectName,
    alias: Option<&TableAlias>,
    function: bool,
    outer: &Scopes,
) -> Option<Entry> {
    if let Some(alias) = alias {
        return Some(aliased(alias));
    }
    if function {
        return Some(unaliased_function(name));
    }
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(normalize)
        .collect();
    let (written_schema, schema, table) = match parts.as_slice() {
        [table] if is_cte(name, outer) => (None, None, table),
        [table] => (None, Some(MAIN.to_string()), table),
        [schema, table] | [_, schema, table] => (Some(schema.clone()), Some(schema.clone()), table),
        // Longer names fail to resolve later, with their own error.
        _ => return None,
    };
    Some(Entry {
        exposed: table.clone(),
        written_schema,
        table_schema: schema,
    })
}

/// True when `name` is a CTE of the scopes (a one-part name).
fn is_cte(name: &ObjectName, scopes: &Scopes) -> bool {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .is_some_and(|i| scopes.ctes.contains(&normalize(i))),
        _ => false,
    }
}

/// The relations a statement's FROM lists name, as written, leaving out
/// the CTEs in scope where each is named; `None` when [`check`] refuses
/// the statement (the walk stopped there; callers fall back to every
/// name the statement holds).
pub(crate) fn relations_read(statement: &SqlStatement) -> Option<Vec<ObjectName>> {
    let relations = RefCell::new(Vec::new());
    let base = Scopes {
        relations: Some(&relations),
        ..Scopes::default()
    };
    check_sql(statement, &base).ok()?;
    Some(relations.into_inner())
}

/// Checks the ON clauses of the joins of a FROM list.
fn check_joins(tables: &[&TableWithJoins], scopes: &Scopes) -> Result<()> {
    for table in tables {
        for join in &table.joins {
            check_exprs(&join.join_operator, scopes)?;
        }
    }
    Ok(())
}

/// Checks the qualifiers and subqueries of clauses seen from `scopes`.
fn check_exprs<V: Visit>(clauses: &V, scopes: &Scopes) -> Result<()> {
    let mut visitor = Qualifiers {
        scopes,
        depth: 0,
        found: Ok(()),
    };
    let _ = clauses.visit(&mut visitor);
    visitor.found
}

/// Finds schema-qualified column references, and the subqueries of a
/// clause, which it checks in turn with the clause's scopes outside them.
struct Qualifiers<'a, 'b> {
    scopes: &'a Scopes<'b>,
    /// How deep in a subquery the visit is; only depth 0 is this clause's.
    depth: usize,
    found: Result<()>,
}

impl Visitor for Qualifiers<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.depth == 0
            && let Err(e) = check_query(query, self.scopes)
        {
            self.found = Err(e);
            return ControlFlow::Break(());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.depth == 0
            && let Some(idents) = column_path(expr)
            && let Some((_, qualifier)) = idents.split_last()
        {
            let parts: Vec<&Ident> = qualifier.to_vec();
            let written = idents
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(".");
            if let Err(e) = check_qualifier(&parts, &written, self.scopes, false) {
                self.found = Err(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The dotted names of a column reference: `s.t.id`, and `s.t.arr` of
/// `s.t.arr[1]` (DataFusion rebuilds the dotted root of a subscript).
fn column_path(expr: &Expr) -> Option<Vec<&Ident>> {
    match expr {
        Expr::CompoundIdentifier(idents) => Some(idents.iter().collect()),
        Expr::CompoundFieldAccess { root, access_chain } => {
            let Expr::Identifier(first) = root.as_ref() else {
                return None;
            };
            let dotted = access_chain.iter().map_while(|a| match a {
                AccessExpr::Dot(Expr::Identifier(i)) => Some(i),
                _ => None,
            });
            Some(std::iter::once(first).chain(dotted).collect())
        }
        _ => None,
    }
}

/// Checks one qualifier (`s.t` of `s.t.id`, `entidb.s.t` of
/// `entidb.s.t.*`); a bare one needs no check (one name per FROM list).
/// A wildcard's qualifier names the innermost scope only.
fn check_qualifier(
    qualifier: &[&Ident],
    written: &str,
    scopes: &Scopes,
    wildcard: bool,
) -> Result<()> {
    let names: Vec<String> = qualifier.iter().map(|i| normalize(i)).collect();
    let (schema, table) = match names.as_slice() {
        [schema, table] => (schema, table),
        [database, schema, table] if database == DATABASE => (schema, table),
        [_, _, _] if !scopes.stack.is_empty() => {
            return Err(ErrorKind::NotSupported(format!(
                "cross-database references are not implemented: {written}"
            ))
            .into());
        }
        _ => return Ok(()),
    };
    let searched = if wildcard {
        scopes.stack.last().copied().into_iter().collect()
    } else {
        scopes.stack.clone()
    };
    let exact = |e: &Entry| e.exposed == *table && e.table_schema.as_ref() == Some(schema);
    let taken =
        |e: &Entry| e.exposed == *table && e.written_schema.as_ref().is_none_or(|w| w == schema);
    for (depth, scope) in searched.iter().enumerate().rev() {
        let Some(entry) = scope.entries.iter().find(|e| taken(e)) else {
            continue;
        };
        if exact(entry) {
            return Ok(());
        }
        let outer_has_it = searched
            .get(..depth)
            .unwrap_or_default()
            .iter()
            .any(|s| s.entries.iter().any(exact));
        return Err(if outer_has_it {
            ErrorKind::NotSupported(format!(
                "{written}: a subquery's own relation named \"{table}\" hides {schema}.{table} \
                 of the enclosing query (give the inner one an alias)"
            ))
        } else {
            ErrorKind::InvalidTableReference(format!(
                "invalid reference to FROM-clause entry for table \"{table}\" in {written}: \
                 the relation named \"{table}\" here is not {schema}.{table}"
            ))
        }
        .into());
    }
    Ok(())
}
