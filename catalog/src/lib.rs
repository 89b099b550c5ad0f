//! The EntiDB catalog: logical definitions of tables, views and indexes.
//!
//! The engine stores physical tables (an id, an Arrow schema, key columns);
//! the catalog adds what SQL needs on top — column defaults (as SQL text),
//! NOT NULL, primary key and UNIQUE constraints, identity columns, views (name
//! and SQL text), triggers (name, table and SQL text), index definitions and
//! sequences (their counters live in an
//! engine table, see `sql/src/identity.rs`). The whole catalog is one blob that the engine keeps in
//! the manifest and changes through the WAL inside transactions, so catalog
//! changes are transactional: a rolled-back `CREATE TABLE` leaves nothing.
//!
//! The catalog never plans SQL: defaults and views are kept as text and
//! interpreted by the SQL layer.
//!
//! BLOB LAYOUT (see `docs/format.md`): `"ECAT" | version u16 | tables u32 |
//! table* | views u32 | view* | indexes u32 | index* | sequences u32 |
//! sequence*`, encoded with the engine's bounds-checked codec. Version 2
//! added identity columns and sequences, version 3 CHECK constraints (after
//! a table's UNIQUE lists: `checks u32 | (name str, sql str)*`), version 4
//! foreign keys (after the checks: `fks u32 | (name str | columns u32 str* |
//! parent str | parent_columns u32 str* | on_delete u8 | on_update u8)*`,
//! actions numbered as [`FkAction`]), version 5 triggers (after the
//! sequences: `triggers u32 | (name str | table str | sql str)*`), version
//! 6 schemas (after the triggers: `schemas u32 | name str*`); older blobs
//! still decode (without them) and are written back as version 6.
//!
//! NAMES AND SCHEMAS: every relation (table, view, index, sequence) is kept
//! under one string, its *key*. A relation of the default schema [`MAIN`]
//! is keyed by its name (`t`, or a quoted `"a.b"`); one of a created schema
//! `s` by `s.t`. [`Catalog::split`] tells the two apart, which is
//! unambiguous because of two invariants the SQL layer keeps when it
//! creates things (`sql/src/schemas.rs`): a schema's name holds no period,
//! and no `MAIN` relation's name starts with `s.` for an existing schema
//! `s`. Everything that refers to a relation (an index's table, a foreign
//! key's parent, a trigger's table, a sequence's owner) holds its key, so
//! schemas need no other field.
#![deny(clippy::indexing_slicing)]

use entidb_engine::codec::{Decoder, Encoder};
use entidb_engine::{Error, Result, Transaction};

const MAGIC: &[u8; 4] = b"ECAT";
const VERSION: u16 = 6;
/// The default schema: relations created without a schema live here.
pub const MAIN: &str = "main";
/// The oldest blob version this build decodes.
const OLDEST: u16 = 1;

/// One column's logical properties (name and type live in the engine schema).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnMeta {
    /// Column name.
    pub name: String,
    /// `DEFAULT` expression as SQL text.
    pub default: Option<String>,
    /// Identity column (`GENERATED … AS IDENTITY`, `SERIAL`, `AUTOINCREMENT`);
    /// its default is `nextval` of the sequence.
    pub identity: Option<Identity>,
}

/// How an identity column takes its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `GENERATED ALWAYS`: an explicit value is an error (`BY DEFAULT`,
    /// `SERIAL` and `AUTOINCREMENT` accept one).
    pub always: bool,
    /// The sequence that numbers the column.
    pub sequence: String,
}

/// A sequence (its counter lives in the engine, not in the catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceMeta {
    /// Sequence name.
    pub name: String,
    /// The table owning it (identity columns), dropped with the table.
    pub owner: Option<String>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// SQL name (normalised by the SQL layer).
    pub name: String,
    /// Engine table id.
    pub table_id: u64,
    /// Per-column properties, in schema order.
    pub columns: Vec<ColumnMeta>,
    /// Primary-key column indexes (empty: none).
    pub primary_key: Vec<usize>,
    /// UNIQUE constraints, each a list of column indexes.
    pub unique: Vec<Vec<usize>>,
    /// CHECK constraints, in definition order.
    pub checks: Vec<CheckMeta>,
    /// FOREIGN KEY constraints this table (the child) declares.
    pub foreign_keys: Vec<ForeignKeyMeta>,
}

/// What a foreign key does to the child rows of a parent row that is
/// deleted, or whose key is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FkAction {
    /// Refuse at the end of the statement if child rows still refer to it
    /// (SQL's default).
    #[default]
    NoAction,
    /// Refuse (EntiDB checks it at the same point as NO ACTION).
    Restrict,
    /// Delete the child rows, or update their referencing columns.
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
    /// Set the referencing columns to their defaults.
    SetDefault,
}

impl FkAction {
    fn code(self) -> u8 {
        match self {
            Self::NoAction => 0,
            Self::Restrict => 1,
            Self::Cascade => 2,
            Self::SetNull => 3,
            Self::SetDefault => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::NoAction,
            1 => Self::Restrict,
            2 => Self::Cascade,
            3 => Self::SetNull,
            4 => Self::SetDefault,
            _ => return None,
        })
    }
}

/// A FOREIGN KEY constraint: the child's `columns` refer to the parent's
/// `parent_columns`, which are the parent's primary key. Columns are kept
/// by name (the SQL layer resolves them when it registers the tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyMeta {
    /// Constraint name (given, or `<table>_<columns>_fkey`).
    pub name: String,
    /// Referencing columns of the child, in declaration order.
    pub columns: Vec<String>,
    /// The referenced (parent) table.
    pub parent: String,
    /// Referenced columns, paired with `columns`.
    pub parent_columns: Vec<String>,
    /// `ON DELETE` action.
    pub on_delete: FkAction,
    /// `ON UPDATE` action.
    pub on_update: FkAction,
}

/// A CHECK constraint: a boolean expression over one row of its table, kept
/// as SQL text (the SQL layer plans it). A row passes unless the expression
/// is false (NULL passes, as in SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMeta {
    /// Constraint name (given, or `<table>_<column>_check` / `<table>_check`).
    pub name: String,
    /// The expression.
    pub sql: String,
}

/// A view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMeta {
    /// View name.
    pub name: String,
    /// The defining query.
    pub sql: String,
}

/// A trigger: its whole `CREATE TRIGGER` statement as SQL text, which the
/// SQL layer parses when it fires (`sql/src/triggers.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerMeta {
    /// Trigger name (one namespace for every table's triggers, as in SQLite).
    pub name: String,
    /// The table it is defined on.
    pub table: String,
    /// The `CREATE TRIGGER` statement.
    pub sql: String,
}

/// An index definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMeta {
    /// Index name.
    pub name: String,
    /// Table name.
    pub table: String,
    /// Indexed column names, leading column first.
    pub columns: Vec<String>,
    /// UNIQUE index.
    pub unique: bool,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// Tables, in creation order.
    pub tables: Vec<TableMeta>,
    /// Views, in creation order (a view may use earlier views).
    pub views: Vec<ViewMeta>,
    /// Indexes.
    pub indexes: Vec<IndexMeta>,
    /// Sequences.
    pub sequences: Vec<SequenceMeta>,
    /// Triggers, in creation order.
    pub triggers: Vec<TriggerMeta>,
    /// Created schemas (never [`MAIN`], which always exists), in creation
    /// order.
    pub schemas: Vec<String>,
}

impl Catalog {
    /// The catalog as `txn` sees it.
    ///
    /// # Errors
    /// `Corruption` if the blob does not decode.
    pub fn load(txn: &mut Transaction) -> Result<Self> {
        let blob = txn.catalog()?;
        Self::decode(&blob)
    }

    /// Stores the catalog in `txn` (applied when it commits).
    ///
    /// # Errors
    /// As [`Transaction::set_catalog`].
    pub fn save(&self, txn: &mut Transaction) -> Result<()> {
        txn.set_catalog(self.encode()?)
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&TableMeta> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The view called `name`.
    pub fn view(&self, name: &str) -> Option<&ViewMeta> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&IndexMeta> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// The sequence called `name`.
    pub fn sequence(&self, name: &str) -> Option<&SequenceMeta> {
        self.sequences.iter().find(|s| s.name == name)
    }

    /// The trigger called `name`.
    pub fn trigger(&self, name: &str) -> Option<&TriggerMeta> {
        self.triggers.iter().find(|t| t.name == name)
    }

    /// The triggers defined on `table`, in creation order.
    pub fn triggers_on<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a TriggerMeta> {
        self.triggers.iter().filter(move |t| t.table == table)
    }

    /// True when the schema `name` exists ([`MAIN`] always does).
    pub fn has_schema(&self, name: &str) -> bool {
        name == MAIN || self.schemas.iter().any(|s| s == name)
    }

    /// A relation key split into its schema and its name within it: `s.t`
    /// is `(s, t)` when the schema `s` exists, anything else is in [`MAIN`].
    pub fn split<'a>(&self, key: &'a str) -> (&'a str, &'a str) {
        match key.split_once('.') {
            Some((schema, name)) if self.schemas.iter().any(|s| s == schema) => (schema, name),
            _ => (MAIN, key),
        }
    }

    /// The key of the relation `name` in `schema` (see the module doc).
    pub fn key(schema: &str, name: &str) -> String {
        if schema == MAIN {
            name.to_string()
        } else {
            format!("{schema}.{name}")
        }
    }

    /// True when a table or view is called `name`.
    pub fn has_relation(&self, name: &str) -> bool {
        self.table(name).is_some() || self.view(name).is_some()
    }

    /// Encodes the catalog blob.
    ///
    /// # Errors
    /// `InvalidArgument` for strings over 4 GiB.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut e = Encoder::new();
        e.raw(MAGIC).u16(VERSION).u32(self.tables.len() as u32);
        for t in &self.tables {
            e.str(&t.name)?.u64(t.table_id).u32(t.columns.len() as u32);
            for c in &t.columns {
                e.str(&c.name)?;
                match &c.default {
                    Some(d) => e.u8(1).str(d)?,
                    None => e.u8(0),
                };
                match &c.identity {
                    Some(i) => e.u8(if i.always { 2 } else { 1 }).str(&i.sequence)?,
                    None => e.u8(0),
                };
            }
            encode_indexes(&mut e, &t.primary_key);
            e.u32(t.unique.len() as u32);
            for u in &t.unique {
                encode_indexes(&mut e, u);
            }
            e.u32(t.checks.len() as u32);
            for c in &t.checks {
                e.str(&c.name)?.str(&c.sql)?;
            }
            e.u32(t.foreign_keys.len() as u32);
            for fk in &t.foreign_keys {
                e.str(&fk.name)?;
                encode_names(&mut e, &fk.columns)?;
                e.str(&fk.parent)?;
                encode_names(&mut e, &fk.parent_columns)?;
                e.u8(fk.on_delete.code()).u8(fk.on_update.code());
            }
        }
        e.u32(self.views.len() as u32);
        for v in &self.views {
            e.str(&v.name)?.str(&v.sql)?;
        }
        e.u32(self.indexes.len() as u32);
        for i in &self.indexes {
            e.str(&i.name)?.str(&i.table)?.u32(i.columns.len() as u32);
            for c in &i.columns {
                e.str(c)?;
            }
            e.u8(u8::from(i.unique));
        }
        e.u32(self.sequences.len() as u32);
        for s in &self.sequences {
            e.str(&s.name)?;
            match &s.owner {
                Some(o) => e.u8(1).str(o)?,
                None => e.u8(0),
            };
        }
        e.u32(self.triggers.len() as u32);
        for t in &self.triggers {
            e.str(&t.name)?.str(&t.table)?.str(&t.sql)?;
        }
        encode_names(&mut e, &self.schemas)?;
        Ok(e.finish())
    }

    /// Decodes a catalog blob; an empty blob is an empty catalog.
    ///
    /// # Errors
    /// `Corruption` for anything malformed.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        if blob.is_empty() {
            return Ok(Self::default());
        }
        let mut d = Decoder::new(blob, "catalog", 0);
        if d.take(4)? != MAGIC {
            return Err(d.error("bad catalog magic"));
        }
        let version = d.u16()?;
        if !(OLDEST..=VERSION).contains(&version) {
            return Err(Error::IncompatibleVersion {
                file: "catalog".into(),
                found: version.to_string(),
                supported: VERSION,
            });
        }
        let mut c = Catalog::default();
        for _ in 0..d.count(24)? {
            let name = d.str()?.to_string();
            let table_id = d.u64()?;
            let mut columns = Vec::new();
            for _ in 0..d.count(5)? {
                let name = d.str()?.to_string();
                let default = match d.u8()? {
                    0 => None,
                    _ => Some(d.str()?.to_string()),
                };
                let identity = d_identity(&mut d, version)?;
                columns.push(ColumnMeta {
                    name,
                    default,
                    identity,
                });
            }
            let primary_key = decode_indexes(&mut d)?;
            let mut unique = Vec::new();
            for _ in 0..d.count(4)? {
                unique.push(decode_indexes(&mut d)?);
            }
            let mut checks = Vec::new();
            if version >= 3 {
                for _ in 0..d.count(8)? {
                    let name = d.str()?.to_string();
                    let sql = d.str()?.to_string();
                    checks.push(CheckMeta { name, sql });
                }
            }
            let mut foreign_keys = Vec::new();
            if version >= 4 {
                for _ in 0..d.count(14)? {
                    foreign_keys.push(decode_foreign_key(&mut d)?);
                }
            }
            c.tables.push(TableMeta {
                name,
                table_id,
                columns,
                primary_key,
                unique,
                checks,
                foreign_keys,
            });
        }
        for _ in 0..d.count(8)? {
            let name = d.str()?.to_string();
            let sql = d.str()?.to_string();
            c.views.push(ViewMeta { name, sql });
        }
        for _ in 0..d.count(13)? {
            let name = d.str()?.to_string();
            let table = d.str()?.to_string();
            let mut columns = Vec::new();
            for _ in 0..d.count(4)? {
                columns.push(d.str()?.to_string());
            }
            let unique = d.u8()? != 0;
            c.indexes.push(IndexMeta {
                name,
                table,
                columns,
                unique,
            });
        }
        if version >= 2 {
            for _ in 0..d.count(5)? {
                let name = d.str()?.to_string();
                let owner = match d.u8()? {
                    0 => None,
                    _ => Some(d.str()?.to_string()),
                };
                c.sequences.push(SequenceMeta { name, owner });
            }
        }
        if version >= 5 {
            for _ in 0..d.count(12)? {
                let name = d.str()?.to_string();
                let table = d.str()?.to_string();
                let sql = d.str()?.to_string();
                c.triggers.push(TriggerMeta { name, table, sql });
            }
        }
        if version >= 6 {
            c.schemas = decode_names(&mut d)?;
            // `split` relies on these (see the module doc).
            for (i, schema) in c.schemas.iter().enumerate() {
                if schema.is_empty()
                    || schema.contains('.')
                    || schema == MAIN
                    || c.schemas
                        .get(..i)
                        .is_some_and(|earlier| earlier.contains(schema))
                {
                    return Err(d.error("bad schema name"));
                }
            }
        }
        d.finish()?;
        Ok(c)
    }
}

/// A column's identity (version 2 on): `0` none, `1` BY DEFAULT, `2`
/// ALWAYS, then the sequence name.
fn d_identity(d: &mut Decoder<'_>, version: u16) -> Result<Option<Identity>> {
    if version < 2 {
        return Ok(None);
    }
    let always = match d.u8()? {
        0 => return Ok(None),
        1 => false,
        2 => true,
        _ => return Err(d.error("bad identity kind")),
    };
    let sequence = d.str()?.to_string();
    Ok(Some(Identity { always, sequence }))
}

fn encode_names(e: &mut Encoder, names: &[String]) -> Result<()> {
    e.u32(names.len() as u32);
    for n in names {
        e.str(n)?;
    }
    Ok(())
}

fn decode_names(d: &mut Decoder<'_>) -> Result<Vec<String>> {
    let n = d.count(4)?;
    (0..n).map(|_| d.str().map(str::to_string)).collect()
}

fn decode_foreign_key(d: &mut Decoder<'_>) -> Result<ForeignKeyMeta> {
    let name = d.str()?.to_string();
    let columns = decode_names(d)?;
    let parent = d.str()?.to_string();
    let parent_columns = decode_names(d)?;
    let mut action = || {
        let code = d.u8()?;
        FkAction::from_code(code).ok_or_else(|| d.error("bad foreign key action"))
    };
    let on_delete = action()?;
    let on_update = action()?;
    if columns.is_empty() || columns.len() != parent_columns.len() {
        return Err(d.error("foreign key column lists differ in length"));
    }
    Ok(ForeignKeyMeta {
        name,
        columns,
        parent,
        parent_columns,
        on_delete,
        on_update,
    })
}

fn encode_indexes(e: &mut Encoder, v: &[usize]) {
    e.u32(v.len() as u32);
    for i in v {
        e.u32(*i as u32);
    }
}

fn decode_indexes(d: &mut Decoder<'_>) -> Result<Vec<usize>> {
    let n = d.count(4)?;
    (0..n).map(|_| d.u32().map(|v| v as usize)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Catalog {
            tables: vec![TableMeta {
                name: "t".into(),
                table_id: 3,
                columns: vec![
                    ColumnMeta {
                        name: "a".into(),
                        default: Some("1 + 1".into()),
                        identity: None,
                    },
                    ColumnMeta {
                        name: "b".into(),
                        default: Some("nextval('t_b_seq')".into()),
                        identity: Some(Identity {
                            always: true,
                            sequence: "t_b_seq".into(),
                        }),
                    },
                ],
                primary_key: vec![0],
                unique: vec![vec![1]],
                checks: vec![CheckMeta {
                    name: "t_a_check".into(),
                    sql: "a > 0".into(),
                }],
                foreign_keys: vec![ForeignKeyMeta {
                    name: "t_b_fkey".into(),
                    columns: vec!["b".into()],
                    parent: "t".into(),
                    parent_columns: vec!["a".into()],
                    on_delete: FkAction::Cascade,
                    on_update: FkAction::SetNull,
                }],
            }],
            views: vec![ViewMeta {
                name: "v".into(),
                sql: "SELECT a FROM t".into(),
            }],
            indexes: vec![IndexMeta {
                name: "i".into(),
                table: "t".into(),
                columns: vec!["b".into()],
                unique: false,
            }],
            sequences: vec![
                SequenceMeta {
                    name: "t_b_seq".into(),
                    owner: Some("t".into()),
                },
                SequenceMeta {
                    name: "s".into(),
                    owner: None,
                },
            ],
            triggers: vec![TriggerMeta {
                name: "tr".into(),
                table: "t".into(),
                sql: "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END".into(),
            }],
            schemas: vec!["s".into()],
        };
        assert_eq!(Catalog::decode(&c.encode().unwrap()).unwrap(), c);
        assert_eq!(Catalog::decode(&[]).unwrap(), Catalog::default());
        let mut blob = c.encode().unwrap();
        blob.truncate(blob.len() - 1);
        assert!(matches!(
            Catalog::decode(&blob),
            Err(Error::Corruption { .. })
        ));
    }

    /// `s.t` is in schema `s` only while `s` exists; a quoted `"x.y"` of
    /// the default schema stays whole.
    #[test]
    fn splits_keys_by_schema() {
        let c = Catalog {
            schemas: vec!["s".into()],
            ..Catalog::default()
        };
        assert_eq!(c.split("s.t"), ("s", "t"));
        assert_eq!(c.split("s.t.u"), ("s", "t.u"));
        assert_eq!(c.split("x.y"), (MAIN, "x.y"));
        assert_eq!(c.split("t"), (MAIN, "t"));
        assert_eq!(Catalog::key("s", "t"), "s.t");
        assert_eq!(Catalog::key(MAIN, "t"), "t");
        assert!(c.has_schema("s") && c.has_schema(MAIN) && !c.has_schema("x"));
    }

    /// A blob whose schema list breaks `split`'s invariants is corrupt.
    #[test]
    fn refuses_bad_schema_names() {
        for bad in [vec!["a.b"], vec![MAIN], vec![""], vec!["s", "s"]] {
            let c = Catalog {
                schemas: bad.iter().map(|s| s.to_string()).collect(),
                ..Catalog::default()
            };
            assert!(
                matches!(
                    Catalog::decode(&c.encode().unwrap()),
                    Err(Error::Corruption { .. })
                ),
                "{bad:?}"
            );
        }
    }

    /// A version-1 blob (written before identities and sequences) decodes.
    #[test]
    fn decodes_version_1() {
        let mut e = Encoder::new();
        e.raw(MAGIC).u16(1).u32(1);
        e.str("t").unwrap().u64(3).u32(1);
        e.str("a").unwrap().u8(1).str("7").unwrap();
        e.u32(0).u32(0).u32(0).u32(0);
        let c = Catalog::decode(&e.finish()).unwrap();
        assert_eq!(c.tables.len(), 1);
        assert_eq!(c.tables[0].columns[0].default.as_deref(), Some("7"));
        assert_eq!(c.tables[0].columns[0].identity, None);
        assert!(c.sequences.is_empty());
    }
}
