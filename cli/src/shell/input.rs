//! Splitting shell input into statements and dot-commands as it arrives.
//!
//! The shell runs each statement as soon as its terminating `;` has been
//! read, so a pipe or a FIFO can drive a long-lived session and a syntax
//! error in line 50 does not stop lines 1–49 from running. [`Splitter`]
//! receives the input line by line and returns the items that are complete.
//!
//! RULES
//!
//! - A `;` ends a statement unless it is inside a string (`'…'` with `''`
//!   escapes, `E'…'` with backslash escapes), a quoted identifier (`"…"`,
//!   `` `…` ``), a dollar-quoted string (`$$…$$`, `$tag$…$tag$`), or a
//!   comment (`-- …` to the end of the line, `/* … */`, nested).
//! - In `CREATE [TEMP] TRIGGER … BEGIN`, whose body holds statements of
//!   its own, a `;` ends the statement only after `; END` (as sqlite3's
//!   `sqlite3_complete` decides), so a `CASE … END;` inside the body does
//!   not end it. Before its BEGIN (`… EXECUTE FUNCTION f();`) a trigger
//!   ends at its first `;` like any statement.
//! - A line starting with `.` when no statement is pending is a dot-command;
//!   it is complete on its own (one line, no `;`).
//! - Text holding nothing but whitespace and comments is dropped.
//! - At the end of the input a pending statement without `;` still runs
//!   ([`Splitter::finish`]), as in sqlite3.
//!
//! The scan is incremental: each byte is looked at once, however many lines
//! a statement spans. All the characters that matter are ASCII, so scanning
//! bytes never splits a UTF-8 character.

/// One complete piece of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// One SQL statement, trimmed, with its `;` when it had one.
    Sql(String),
    /// A dot-command line, trimmed (`.mode csv`).
    Dot(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Normal,
    /// Inside `'…'`, `"…"` or `` `…` ``: the byte is the closing quote.
    Quoted(u8),
    /// Inside `E'…'`, where a backslash escapes the next byte.
    Escaped,
    LineComment,
    /// Inside `/* … */`, nested this deep.
    BlockComment(u32),
    /// Inside a dollar-quoted string; its tag is in `Splitter::tag`.
    Dollar,
}

/// Accumulates input lines and hands out complete items.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: String,
    /// Bytes of `buf` already scanned.
    pos: usize,
    /// Where the pending statement starts in `buf`.
    start: usize,
    state: State,
    /// The `$tag$` of the dollar-quoted string being scanned.
    tag: String,
    /// The pending statement has something besides whitespace and comments.
    content: bool,
    /// The pending statement's first words (up to [`HEAD_WORDS`]), upper case.
    head: Vec<String>,
    /// The last tokens of the pending statement were `;` and the word
    /// `END` (the end of a trigger's body).
    after_end: bool,
    /// The last token of the pending statement was a `;` inside a
    /// trigger's body.
    after_semicolon: bool,
    /// The pending `CREATE … TRIGGER` has reached the word `ON` (its
    /// table follows, then its WHEN or BEGIN).
    after_on: bool,
    /// The pending `CREATE … TRIGGER` has reached the word `BEGIN` after
    /// its `ON`.
    begun: bool,
}

/// How many leading words tell a `CREATE … TRIGGER`.
const HEAD_WORDS: usize = 5;

impl Splitter {
    /// A splitter with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while part of a statement has been read (the interactive shell
    /// then shows its continuation prompt).
    pub fn pending(&self) -> bool {
        !self.buf.trim().is_empty()
    }

    /// Forgets the pending statement (Ctrl-C at the prompt).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Adds one line (without or with its line end) and returns the items it
    /// completed, in order.
    pub fn push_line(&mut self, line: &str) -> Vec<Item> {
        if !self.pending() && line.trim_start().starts_with('.') {
            self.clear();
            return vec![Item::Dot(line.trim().to_string())];
        }
        self.buf.push_str(line.trim_end_matches(['\n', '\r']));
        self.buf.push('\n');
        self.scan()
    }

    /// The pending statement at the end of the input, if it has content.
    pub fn finish(&mut self) -> Option<Item> {
        let item = self.content.then(|| {
            Item::Sql(
                self.buf
                    .get(self.start..)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )
        });
        self.clear();
        item
    }

    fn scan(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        let bytes = self.buf.as_bytes();
        let mut i = self.pos;
        while let Some(&b) = bytes.get(i) {
            let next = bytes.get(i + 1).copied();
            let mut step = 1;
            match self.state {
                State::Normal => match (b, next) {
                    (b'-', Some(b'-')) => (self.state, step) = (State::LineComment, 2),
                    (b'/', Some(b'*')) => (self.state, step) = (State::BlockComment(1), 2),
                    (b'\'', _) => {
                        self.content = true;
                        self.state = if escape_prefix(bytes, i) {
                            State::Escaped
                        } else {
                            State::Quoted(b'\'')
                        };
                    }
                    (b'"' | b'`', _) => (self.content, self.state) = (true, State::Quoted(b)),
                    (b'$', _) => {
                        self.content = true;
                        if let Some(tag) = dollar_tag(bytes, i) {
                            step = tag.len();
                            self.tag = tag;
                            self.state = State::Dollar;
                        }
                    }
                    (b';', _) if self.in_trigger_body() => {
                        self.after_end = false;
                        self.after_semicolon = true;
                    }
                    (b';', _) => {
                        if self.content {
                            let text = self.buf.get(self.start..=i).unwrap_or_default();
                            items.push(Item::Sql(text.trim().to_string()));
                        }
                        self.start = i + 1;
                        self.content = false;
                        self.head.clear();
                        self.after_end = false;
                        self.after_semicolon = false;
                        self.begun = false;
                        self.after_on = false;
                    }
                    (b, _) if b.is_ascii_whitespace() => {}
                    (b, _) if b.is_ascii_alphabetic() || b == b'_' => {
                        self.content = true;
                        let word = bytes
                            .get(i..)
                            .unwrap_or_default()
                            .iter()
                            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                            .map(|c| c.to_ascii_uppercase() as char)
                            .collect::<String>();
                        step = word.len().max(1);
                        self.after_end = word == "END" && self.after_semicolon;
                        self.after_semicolon = false;
                        let begins = word == "BEGIN" && self.after_on;
                        if word == "ON" {
                            self.after_on = true;
                        }
                        if self.head.len() < HEAD_WORDS {
                            self.head.push(word);
                        }
                        if begins && self.is_trigger() {
                            self.begun = true;
                        }
                    }
                    _ => {
                        self.content = true;
                        self.after_end = false;
                        self.after_semicolon = false;
                    }
                },
                State::Quoted(q) if b == q => {
                    if next == Some(q) {
                        step = 2;
                    } else {
                        self.state = State::Normal;
                    }
                }
                State::Escaped => match (b, next) {
                    (b'\\', _) => step = 2,
                    (b'\'', Some(b'\'')) => step = 2,
                    (b'\'', _) => self.state = State::Normal,
                    _ => {}
                },
                State::LineComment if b == b'\n' => self.state = State::Normal,
                State::BlockComment(depth) => match (b, next) {
                    (b'/', Some(b'*')) => (self.state, step) = (State::BlockComment(depth + 1), 2),
                    (b'*', Some(b'/')) => {
                        step = 2;
                        self.state = match depth {
                            0 | 1 => State::Normal,
                            d => State::BlockComment(d - 1),
                        };
                    }
                    _ => {}
                },
                State::Dollar => {
                    if bytes
                        .get(i..)
                        .is_some_and(|rest| rest.starts_with(self.tag.as_bytes()))
                    {
                        step = self.tag.len();
                        self.state = State::Normal;
                    }
                }
                State::Quoted(_) | State::LineComment => {}
            }
            i += step;
        }
        self.pos = i.min(bytes.len());
        self.compact();
        items
    }

    /// True inside a `CREATE [TEMP] TRIGGER` whose `END` has not come yet:
    /// its `;` separate the body's statements.
    fn in_trigger_body(&self) -> bool {
        self.begun && !self.after_end
    }

    /// True when the pending statement is a `CREATE [TEMP] TRIGGER`.
    fn is_trigger(&self) -> bool {
        let mut words = self.head.iter().map(String::as_str);
        words.next() == Some("CREATE")
            && words
                .take_while(|w| matches!(*w, "TEMP" | "TEMPORARY" | "OR" | "REPLACE" | "TRIGGER"))
                .any(|w| w == "TRIGGER")
    }

    /// Drops the consumed text (and a remainder of only whitespace and
    /// comments) from the buffer.
    fn compact(&mut self) {
        if self.state == State::Normal && !self.content {
            self.clear();
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.pos = self.pos.saturating_sub(self.start);
            self.start = 0;
        }
    }
}

/// True when the quote at `i` opens an `E'…'` string (an `E` that is not
/// the end of a longer word).
fn escape_prefix(bytes: &[u8], i: usize) -> bool {
    let Some(before) = i.checked_sub(1).and_then(|j| bytes.get(j)) else {
        return false;
    };
    if !before.eq_ignore_ascii_case(&b'e') {
        return false;
    }
    match i.checked_sub(2).and_then(|j| bytes.get(j)) {
        None => true,
        Some(c) => !(c.is_ascii_alphanumeric() || *c == b'_'),
    }
}

/// The `$tag$` starting at `i` (`$$` included), or `None` for `$1` and a
/// lone `$`.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<String> {
    let rest = bytes.get(i + 1..)?;
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if rest.get(len) != Some(&b'$') || rest.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = bytes.get(i..i + len + 2)?;
    String::from_utf8(tag.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &str) -> Vec<Item> {
        let mut s = Splitter::new();
        let mut items: Vec<Item> = input.lines().flat_map(|l| s.push_line(l)).collect();
        items.extend(s.finish());
        items
    }

    fn sql(s: &str) -> Item {
        Item::Sql(s.to_string())
    }

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_comments() {
        let items = split(
            "SELECT 'a;b', \"c;d\", $$e;f$$, $x$g;h$x$, E'i\\';j'; -- k;\nSELECT /* l; /* m; */ n; */ 2;",
        );
        assert_eq!(
            items,
            vec![
                sql("SELECT 'a;b', \"c;d\", $$e;f$$, $x$g;h$x$, E'i\\';j';"),
                sql("SELECT /* l; /* m; */ n; */ 2;")
            ]
        );
    }

    #[test]
    fn a_trigger_body_keeps_its_semicolons_until_end() {
        let items = split(
            "create temp trigger t after insert on a begin\n  insert into b values (new.x);\n  \
             delete from c;\n  select case when new.x then 1 end; end;\nSELECT 'end;';\n\
             CREATE TRIGGER f AFTER INSERT ON a EXECUTE FUNCTION f();\nSELECT 2;\n\
             CREATE TRIGGER \"q\" INSERT ON \"a\" BEGIN SELECT 1; END;\nCREATE TABLE trigger_log (x INT); SELECT 1;",
        );
        assert_eq!(
            items,
            vec![
                sql(
                    "create temp trigger t after insert on a begin\n  insert into b values (new.x);\n  \
                     delete from c;\n  select case when new.x then 1 end; end;"
                ),
                sql("SELECT 'end;';"),
                sql("CREATE TRIGGER f AFTER INSERT ON a EXECUTE FUNCTION f();"),
                sql("SELECT 2;"),
                sql("CREATE TRIGGER \"q\" INSERT ON \"a\" BEGIN SELECT 1; END;"),
                sql("CREATE TABLE trigger_log (x INT);"),
                sql("SELECT 1;"),
            ]
        );
    }

    #[test]
    fn a_statement_spans_lines_and_completes_when_its_semicolon_arrives() {
        let mut s = Splitter::new();
        assert!(s.push_line("SELECT").is_empty());
        assert!(s.pending());
        assert!(s.push_line("  'it''s';  SELECT 2").len() == 1);
        assert_eq!(s.push_line(";"), vec![sql("SELECT 2\n;")]);
        assert!(!s.pending());
    }

    #[test]
    fn dot_commands_only_at_the_start_of_a_statement() {
        let items = split(".mode csv\nSELECT\n.5;\n  .tables\n");
        assert_eq!(
            items,
            vec![
                Item::Dot(".mode csv".into()),
                sql("SELECT\n.5;"),
                Item::Dot(".tables".into())
            ]
        );
    }

    #[test]
    fn comments_alone_are_dropped_and_an_unterminated_statement_runs_at_the_end() {
        assert_eq!(split("-- only a comment\n/* and */ ;\n"), vec![]);
        assert_eq!(
            split("SELECT 1; SELECT 2"),
            vec![sql("SELECT 1;"), sql("SELECT 2")]
        );
        assert_eq!(split("SELECT 'open"), vec![sql("SELECT 'open")]);
    }

    #[test]
    fn placeholders_are_not_dollar_quotes() {
        assert_eq!(
            split("SELECT $1; SELECT $2;"),
            vec![sql("SELECT $1;"), sql("SELECT $2;")]
        );
    }
}
