//! Printing query results in the shell's output modes, batch by batch.
//!
//! A [`Render`] receives a result's batches as they arrive and writes them
//! out; nothing holds a whole result:
//!
//! - `box` / `table` are aligned grids. Capped (on a terminal) they keep
//!   only the first and last rows and end with an `N rows (M shown)`
//!   footer. Uncapped (a pipe, a file) they size the columns from the first
//!   [`SAMPLE_ROWS`] rows and then stream; a later, wider value widens its
//!   own line, never truncated.
//! - `csv`, `json` (one array of row objects per result, NULL as `null`),
//!   `jsonl` (one object per line), `line` (`column = value`) and
//!   `markdown` write each batch as it comes.
//!
//! Every mode prints the header of an empty result (`json`: `[]`).

use super::failure::Failure;
use super::sql_type::display_type;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::collections::VecDeque;
use std::io::Write;
use std::str::FromStr;

/// Rows sized before an uncapped grid starts streaming.
pub const SAMPLE_ROWS: usize = 1000;

/// An output mode (`.mode NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Unicode box drawing, a row of column types, numbers right-aligned.
    Box,
    /// ASCII `+---+` grid.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON array of row objects per result.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// `column = value`, one line each, rows separated by a blank line.
    Line,
    /// A Markdown table.
    Markdown,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "box" => Mode::Box,
            "table" => Mode::Table,
            "csv" => Mode::Csv,
            "json" => Mode::Json,
            "jsonl" | "ndjson" => Mode::Jsonl,
            "line" => Mode::Line,
            "markdown" | "md" => Mode::Markdown,
            other => {
                return Err(format!(
                    "unknown mode {other}: use box, table, csv, json, jsonl, line or markdown"
                ));
            }
        })
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// The output mode.
    pub mode: Mode,
    /// Whether column headers are printed (`.headers on|off`).
    pub headers: bool,
    /// Grids show at most this many rows (first half and last half).
    pub max_rows: Option<usize>,
}

/// Receives one result's batches in order, then `finish`.
pub trait Render {
    /// Writes (or keeps) the rows of `batch`.
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure>;
    /// Writes what is left: the end of the grid, the footer, `]`.
    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Failure>;
}

/// A renderer for a result with `schema` in `style`.
pub fn renderer(style: &Style, schema: &SchemaRef) -> Box<dyn Render> {
    match style.mode {
        Mode::Box | Mode::Table => Box::new(Grid::new(style, schema)),
        Mode::Csv => Box::new(Csv {
            header: style.headers,
            schema: schema.clone(),
            wrote: false,
        }),
        Mode::Json => Box::new(Json {
            array: true,
            rows: 0,
        }),
        Mode::Jsonl => Box::new(Json {
            array: false,
            rows: 0,
        }),
        Mode::Line => Box::new(Lines::new(schema)),
        Mode::Markdown => Box::new(Markdown {
            names: names(schema),
            started: false,
        }),
    }
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Every value of `batch` from row `from` on, as text.
fn cells(batch: &RecordBatch, from: usize, null: &str) -> Result<Vec<Vec<String>>, Failure> {
    let options = FormatOptions::default().with_null(null);
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((from..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect()
        })
        .collect())
}

/// The lines of a grid: box drawing or ASCII.
struct Rules {
    top: [&'static str; 4],
    middle: [&'static str; 4],
    bottom: [&'static str; 4],
    bar: &'static str,
}

const BOX: Rules = Rules {
    top: ["┌", "─", "┬", "┐"],
    middle: ["├", "─", "┼", "┤"],
    bottom: ["└", "─", "┴", "┘"],
    bar: "│",
};

const ASCII: Rules = Rules {
    top: ["+", "-", "+", "+"],
    middle: ["+", "-", "+", "+"],
    bottom: ["+", "-", "+", "+"],
    bar: "|",
};

/// `box` and `table`.
struct Grid {
    rules: &'static Rules,
    /// Header lines: names, and in box mode the types.
    header: Vec<Vec<String>>,
    right: Vec<bool>,
    null: &'static str,
    cap: Option<usize>,
    head: Vec<Vec<String>>,
    tail: VecDeque<Vec<String>>,
    total: usize,
    /// Set once an uncapped grid has started streaming.
    widths: Option<Vec<usize>>,
}

impl Grid {
    fn new(style: &Style, schema: &SchemaRef) -> Self {
        let boxed = style.mode == Mode::Box;
        let mut header = Vec::new();
        if style.headers {
            header.push(names(schema));
            if boxed {
                header.push(
                    schema
                        .fields()
                        .iter()
                        .map(|f| display_type(f.data_type()).to_lowercase())
                        .collect(),
                );
            }
        }
        Self {
            rules: if boxed { &BOX } else { &ASCII },
            header,
            right: schema
                .fields()
                .iter()
                .map(|f| boxed && f.data_type().is_numeric())
                .collect(),
            null: if boxed { "NULL" } else { "" },
            cap: style.max_rows.map(|m| m.max(2)),
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            widths: None,
        }
    }

    fn head_cap(&self) -> Option<usize> {
        self.cap.map(|c| c.div_ceil(2))
    }

    fn widths(&self) -> Vec<usize> {
        let columns = self.right.len();
        let mut widths = vec![1; columns];
        let rows = self.header.iter().chain(&self.head).chain(&self.tail);
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.lines().map(|l| l.chars().count()).max().unwrap_or(0));
            }
        }
        widths
    }

    fn rule(
        &self,
        out: &mut dyn Write,
        parts: &[&str; 4],
        widths: &[usize],
    ) -> Result<(), Failure> {
        let [left, line, cross, right] = parts;
        let mut s = String::from(*left);
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                s.push_str(cross);
            }
            s.push_str(&line.repeat(w + 2));
        }
        s.push_str(right);
        writeln!(out, "{s}")?;
        Ok(())
    }

    /// Writes one row; `align` right-aligns the numeric columns (data rows,
    /// not headers).
    fn row(
        &self,
        out: &mut dyn Write,
        cells: &[String],
        widths: &[usize],
        align: bool,
    ) -> Result<(), Failure> {
        let lines: Vec<Vec<&str>> = cells
            .iter()
            .map(|c| {
                let l: Vec<&str> = c.split('\n').collect();
                l
            })
            .collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for i in 0..height {
            let mut s = String::from(self.rules.bar);
            for (col, w) in widths.iter().enumerate() {
                let text = lines.get(col).and_then(|l| l.get(i)).copied().unwrap_or("");
                let pad = w.saturating_sub(text.chars().count());
                s.push(' ');
                if align && self.right.get(col).copied().unwrap_or(false) {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(text);
                } else {
                    s.push_str(text);
                    s.push_str(&" ".repeat(pad));
                }
                s.push(' ');
                s.push_str(self.rules.bar);
            }
            writeln!(out, "{s}")?;
        }
        Ok(())
    }

    fn top(&self, out: &mut dyn Write, widths: &[usize]) -> Result<(), Failure> {
        self.rule(out, &self.rules.top, widths)?;
        if !self.header.is_empty() {
            for line in &self.header {
                self.row(out, line, widths, false)?;
            }
            self.rule(out, &self.rules.middle, widths)?;
        }
        Ok(())
    }
}

impl Render for Grid {
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure> {
        let n = batch.num_rows();
        if let (Some(cap), Some(head_cap)) = (self.cap, self.head_cap()) {
            let tail_cap = cap - head_cap;
            let room = head_cap.saturating_sub(self.head.len());
            // Rows that can end up neither in the head nor in the tail are
            // not formatted.
            let skip = n.saturating_sub(room + tail_cap);
            let mut rows = cells(batch, 0, self.null)?.into_iter();
            self.head.extend(rows.by_ref().take(room));
            for row in rows.skip(skip) {
                self.tail.push_back(row);
                if self.tail.len() > tail_cap {
                    self.tail.pop_front();
                }
            }
            self.total += n;
            return Ok(());
        }
        self.total += n;
        let rows = cells(batch, 0, self.null)?;
        match &self.widths {
            Some(widths) => {
                for row in &rows {
                    self.row(out, row, widths, true)?;
                }
            }
            None => {
                self.head.extend(rows);
                if self.head.len() >= SAMPLE_ROWS {
                    let widths = self.widths();
                    self.top(out, &widths)?;
                    for row in std::mem::take(&mut self.head) {
                        self.row(out, &row, &widths, true)?;
                    }
                    self.widths = Some(widths);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Failure> {
        let widths = match self.widths.take() {
            Some(w) => w,
            None => {
                let w = self.widths();
                self.top(out, &w)?;
                w
            }
        };
        for row in &self.head {
            self.row(out, row, &widths, true)?;
        }
        let shown = self.head.len() + self.tail.len();
        let truncated = self.cap.is_some() && shown < self.total;
        if truncated {
            let dots: Vec<String> = widths.iter().map(|_| "…".to_string()).collect();
            self.row(out, &dots, &widths, false)?;
        }
        for row in &self.tail {
            self.row(out, row, &widths, true)?;
        }
        self.rule(out, &self.rules.bottom, &widths)?;
        if self.cap.is_some() {
            let rows = if self.total == 1 { "row" } else { "rows" };
            if truncated {
                writeln!(out, "{} {rows} ({shown} shown)", self.total)?;
            } else if self.total != 1 {
                writeln!(out, "{} {rows}", self.total)?;
            }
        }
        Ok(())
    }
}

struct Csv {
    header: bool,
    schema: SchemaRef,
    wrote: bool,
}

impl Render for Csv {
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(self.header && !self.wrote)
                .build(&mut buf);
            w.write(batch)?;
        }
        self.wrote = true;
        out.write_all(&buf)?;
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Failure> {
        if !self.wrote && self.header {
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.batch(out, &empty)?;
        }
        Ok(())
    }
}

/// `json` (`array`) and `jsonl`.
struct Json {
    array: bool,
    rows: usize,
}

impl Render for Json {
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
            w.write(batch)?;
            w.finish()?;
        }
        if !self.array {
            out.write_all(&buf)?;
            return Ok(());
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.write_all(if self.rows == 0 { b"[" } else { b",\n" })?;
            out.write_all(line)?;
            self.rows += 1;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Failure> {
        if self.array {
            out.write_all(if self.rows == 0 { b"[]\n" } else { b"]\n" })?;
        }
        Ok(())
    }
}

struct Lines {
    names: Vec<String>,
    width: usize,
    rows: usize,
}

impl Lines {
    fn new(schema: &SchemaRef) -> Self {
        let names = names(schema);
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        Self {
            names,
            width,
            rows: 0,
        }
    }
}

impl Render for Lines {
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure> {
        for row in cells(batch, 0, "NULL")? {
            if self.rows > 0 {
                writeln!(out)?;
            }
            for (name, value) in self.names.iter().zip(&row) {
                writeln!(out, "{name:>w$} = {value}", w = self.width)?;
            }
            self.rows += 1;
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut dyn Write) -> Result<(), Failure> {
        Ok(())
    }
}

struct Markdown {
    names: Vec<String>,
    started: bool,
}

impl Markdown {
    fn line(out: &mut dyn Write, cells: &[String]) -> Result<(), Failure> {
        let escaped: Vec<String> = cells
            .iter()
            .map(|c| c.replace('|', "\\|").replace('\n', "<br>"))
            .collect();
        writeln!(out, "| {} |", escaped.join(" | "))?;
        Ok(())
    }

    fn start(&mut self, out: &mut dyn Write) -> Result<(), Failure> {
        if !self.started {
            self.started = true;
            Self::line(out, &self.names)?;
            let rule: Vec<String> = self.names.iter().map(|_| "---".to_string()).collect();
            writeln!(out, "|{}|", rule.join("|"))?;
        }
        Ok(())
    }
}

impl Render for Markdown {
    fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<(), Failure> {
        self.start(out)?;
        for row in cells(batch, 0, "NULL")? {
            Self::line(out, &row)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Failure> {
        self.start(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let s: Vec<Option<String>> = (from..from + n)
            .map(|i| (i % 2 == 0).then(|| format!("v{i}")))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(from..from + n)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap()
    }

    fn render(style: Style, batches: &[RecordBatch]) -> String {
        let schema = batches[0].schema();
        let mut r = renderer(&style, &schema);
        let mut out = Vec::new();
        for b in batches {
            r.batch(&mut out, b).unwrap();
        }
        r.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn style(mode: Mode, max_rows: Option<usize>) -> Style {
        Style {
            mode,
            headers: true,
            max_rows,
        }
    }

    #[test]
    fn a_capped_box_shows_first_and_last_rows_and_a_footer() {
        let out = render(style(Mode::Box, Some(4)), &[batch(0, 3), batch(3, 7)]);
        let expected = "\
┌────────┬──────┐
│ n      │ s    │
│ bigint │ text │
├────────┼──────┤
│      0 │ v0   │
│      1 │ NULL │
│ …      │ …    │
│      8 │ v8   │
│      9 │ NULL │
└────────┴──────┘
10 rows (4 shown)
";
        assert_eq!(out, expected);
    }

    #[test]
    fn a_table_without_rows_prints_its_header() {
        let out = render(style(Mode::Table, None), &[batch(0, 0)]);
        assert_eq!(out, "+---+---+\n| n | s |\n+---+---+\n+---+---+\n");
    }

    #[test]
    fn an_uncapped_grid_streams_after_the_sample() {
        let out = render(style(Mode::Table, None), &[batch(0, 1500)]);
        assert_eq!(out.lines().count(), 1500 + 4);
        assert!(
            out.contains("| 1499 |       |\n+------+-------+\n"),
            "{out}"
        );
    }

    #[test]
    fn json_writes_nulls_and_one_array() {
        let out = render(style(Mode::Json, None), &[batch(0, 2), batch(2, 1)]);
        assert_eq!(
            out,
            "[{\"n\":0,\"s\":\"v0\"},\n{\"n\":1,\"s\":null},\n{\"n\":2,\"s\":\"v2\"}]\n"
        );
        assert_eq!(render(style(Mode::Json, None), &[batch(0, 0)]), "[]\n");
    }

    #[test]
    fn csv_line_and_markdown() {
        assert_eq!(render(style(Mode::Csv, None), &[batch(0, 0)]), "n,s\n");
        assert_eq!(
            render(style(Mode::Csv, None), &[batch(0, 2)]),
            "n,s\n0,v0\n1,\n"
        );
        assert_eq!(
            render(style(Mode::Line, None), &[batch(0, 2)]),
            "n = 0\ns = v0\n\nn = 1\ns = NULL\n"
        );
        assert_eq!(
            render(style(Mode::Markdown, None), &[batch(0, 1)]),
            "| n | s |\n|---|---|\n| 0 | v0 |\n"
        );
    }
}
