//! An Elle-style checker for list-append histories.
//!
//! A history is a set of transactions, each a sequence of micro-operations
//! (`r k [elements]`, `append k x`) with the values the database returned,
//! and an outcome (committed, aborted, or unknown: the COMMIT failed in a
//! way that does not say whether it took effect). Every appended element is
//! unique, so every read of a list names the writer of each element and the
//! order in which the appends were installed: the version order of each key
//! is its longest observed list (or the final state read after the run), and
//! every other read must be a prefix of it.
//!
//! From that order the checker infers Adya's direct dependencies between
//! committed transactions:
//!
//! * `ww` from the writer of element `i` of a key's order to the writer of
//!   element `i + 1`;
//! * `wr` from the writer of the last element a read saw (excluding the
//!   reader's own appends) to the reader;
//! * `rw` from a reader to the writer of the element that came right after
//!   the state it saw (an anti-dependency);
//! * `process` from each committed transaction of a connection to the next
//!   committed transaction of the same connection (strong session SI).
//!
//! and looks for the anomalies snapshot isolation forbids:
//!
//! | anomaly | how |
//! |---|---|
//! | G0 | a cycle of `ww` edges (strongly connected components of `ww`) |
//! | G1a | a committed read contains an element appended by an aborted txn |
//! | G1b | a committed read ends on an element that is not its writer's last append to that key |
//! | G1c | a cycle of `ww`/`wr` edges that is not G0 |
//! | G-single | a cycle with exactly one `rw` edge: for each `rw` edge `R → W` inside a strongly connected component, a `ww`/`wr` path `W ⇝ R` |
//! | lost-update | two committed txns appended to a key after reading the same state of it |
//! | lost-write | a committed append missing from the final state |
//! | internal | a txn's read disagrees with its own earlier reads and appends |
//! | incompatible-order | a read that is not a prefix of the key's version order ("impossible" read) |
//! | duplicate-elements, garbage-read | an element twice in one read; an element nobody appended |
//! | G-single-process, G1c-process | as above, with `process` edges too |
//! | stale-read | an `rw` edge `R → W` where `W`'s COMMIT returned before `R` sent BEGIN |
//! | future-read | a `wr` edge `W → R` where `R` finished before `W` began |
//!
//! Cycles with two or more `rw` edges and no shorter forbidden cycle
//! (G2-item, write skew) are allowed under snapshot isolation: they are
//! counted and a few are kept as examples, never reported as failures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::{self, Write as _};

pub type Key = u64;
pub type Elem = u64;

/// One micro-operation with what the database returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mop {
    /// `SELECT v FROM lists WHERE k = …`: the list (empty when no row).
    Read { k: Key, v: Vec<Elem> },
    /// Appended `x` to `k` (recorded once the write was attempted).
    Append { k: Key, x: Elem },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted,
    /// COMMIT failed with an error that does not say whether it took effect.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Txn {
    pub process: usize,
    pub ops: Vec<Mop>,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// Nanoseconds since the run started: BEGIN sent, COMMIT/ROLLBACK returned.
    pub begin: u64,
    pub end: u64,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub txns: Vec<Txn>,
    /// The state of every key read after all transactions finished, if known.
    pub final_state: Option<BTreeMap<Key, Vec<Elem>>>,
}

pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const PROCESS: u8 = 8;

fn edge_name(t: u8) -> &'static str {
    match t {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        _ => "process",
    }
}

/// A forbidden (or, for G2-item, allowed) phenomenon.
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub kind: &'static str,
    pub detail: String,
    /// The transactions involved (for cycles: in cycle order).
    pub txns: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub txns: usize,
    pub committed: usize,
    pub aborted: usize,
    pub unknown: usize,
    pub edges: [usize; 4],
    pub anomalies: Vec<Anomaly>,
    /// Strongly connected components whose only cycles have ≥ 2 `rw` edges.
    pub g2_item: usize,
    pub g2_examples: Vec<Anomaly>,
}

impl Report {
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.anomalies.iter().map(|a| a.kind).collect();
        k.sort_unstable();
        k.dedup();
        k
    }

    pub fn has(&self, kind: &str) -> bool {
        self.anomalies.iter().any(|a| a.kind == kind)
    }

    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// Edges with, per type, the key that explains them.
struct Graph {
    adj: Vec<Vec<(usize, u8)>>,
    why: HashMap<(usize, usize), Vec<(u8, Key)>>,
}

impl Graph {
    fn new(n: usize) -> Self {
        Self {
            adj: vec![Vec::new(); n],
            why: HashMap::new(),
        }
    }

    fn add(&mut self, a: usize, b: usize, t: u8, k: Key) -> bool {
        if a == b {
            return false;
        }
        let why = self.why.entry((a, b)).or_default();
        if why.iter().any(|&(u, _)| u == t) {
            return false;
        }
        why.push((t, k));
        self.adj[a].push((b, t));
        true
    }

    fn types(&self, a: usize, b: usize, mask: u8) -> Vec<(u8, Key)> {
        self.why
            .get(&(a, b))
            .map(|v| v.iter().copied().filter(|&(t, _)| t & mask != 0).collect())
            .unwrap_or_default()
    }

    /// Strongly connected components (of more than one node) over edges in
    /// `mask` (iterative Tarjan). Returns the component id of each node
    /// (`usize::MAX` for trivial ones) and the components.
    fn sccs(&self, mask: u8) -> (Vec<usize>, Vec<Vec<usize>>) {
        let n = self.adj.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut comp = vec![usize::MAX; n];
        let mut comps = Vec::new();
        let mut next = 0usize;
        for root in 0..n {
            if index[root] != usize::MAX || self.adj[root].is_empty() {
                continue;
            }
            let mut call: Vec<(usize, usize)> = vec![(root, 0)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(top) = call.last_mut() {
                let v = top.0;
                if top.1 < self.adj[v].len() {
                    let (w, t) = self.adj[v][top.1];
                    top.1 += 1;
                    if t & mask == 0 {
                        continue;
                    }
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        call.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                } else {
                    call.pop();
                    if let Some(&(parent, _)) = call.last() {
                        low[parent] = low[parent].min(low[v]);
                    }
                    if low[v] == index[v] {
                        let mut members = Vec::new();
                        loop {
                            let w = stack.pop().unwrap_or(v);
                            on_stack[w] = false;
                            members.push(w);
                            if w == v {
                                break;
                            }
                        }
                        if members.len() > 1 {
                            for &m in &members {
                                comp[m] = comps.len();
                            }
                            comps.push(members);
                        }
                    }
                }
            }
        }
        (comp, comps)
    }

    /// Shortest path `from ⇝ to` over edges in `mask`, staying inside
    /// component `c` of `comp`.
    fn path(
        &self,
        from: usize,
        to: usize,
        mask: u8,
        comp: &[usize],
        c: usize,
    ) -> Option<Vec<usize>> {
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        prev.insert(from, from);
        while let Some(v) = queue.pop_front() {
            if v == to {
                let mut p = vec![to];
                let mut cur = to;
                while cur != from {
                    cur = prev[&cur];
                    p.push(cur);
                }
                p.reverse();
                return Some(p);
            }
            for &(w, t) in &self.adj[v] {
                if t & mask != 0 && comp[w] == c && !prev.contains_key(&w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        None
    }
}

/// What the checker knows about the history, used to explain anomalies.
struct Ctx<'h> {
    h: &'h History,
}

impl Ctx<'_> {
    fn show_txn(&self, out: &mut String, i: usize) {
        let t = &self.h.txns[i];
        let ops: Vec<String> = t
            .ops
            .iter()
            .map(|m| match m {
                Mop::Read { k, v } => format!(
                    "r {k} [{}]",
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Mop::Append { k, x } => format!("append {k} {x}"),
            })
            .collect();
        let _ = write!(
            out,
            "  T{i} (conn {}, {:?}{}, t={}..{}µs): {}",
            t.process,
            t.outcome,
            t.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            t.begin / 1000,
            t.end / 1000,
            ops.join("; ")
        );
    }

    fn explain_cycle(&self, g: &Graph, cycle: &[usize], mask: u8) -> String {
        let mut out = String::new();
        for (j, &a) in cycle.iter().enumerate() {
            let b = cycle[(j + 1) % cycle.len()];
            self.show_txn(&mut out, a);
            let why: Vec<String> = g
                .types(a, b, mask)
                .iter()
                .map(|&(t, k)| format!("{} on key {k}", edge_name(t)))
                .collect();
            let _ = writeln!(out, "\n      --[{}]--> T{b}", why.join(" | "));
        }
        out
    }

    fn explain_txns(&self, txns: &[usize]) -> String {
        let mut out = String::new();
        for &t in txns {
            self.show_txn(&mut out, t);
            out.push('\n');
        }
        out
    }
}

/// How many steps of `cycle` need an `rw` edge and how many a `process`
/// edge, preferring `ww`/`wr`, then `process` (if in `base`), then `rw`.
fn cycle_edge_types(g: &Graph, cycle: &[usize], base: u8) -> (usize, usize) {
    let mut rw = 0;
    let mut process = 0;
    for (j, &a) in cycle.iter().enumerate() {
        let b = cycle[(j + 1) % cycle.len()];
        let ts: Vec<u8> = g.types(a, b, base | RW).iter().map(|&(t, _)| t).collect();
        if ts.iter().any(|&t| t & (WW | WR) != 0) {
            continue;
        }
        if base & PROCESS != 0 && ts.contains(&PROCESS) {
            process += 1;
        } else {
            rw += 1;
        }
    }
    (rw, process)
}

pub fn check(h: &History) -> Report {
    let n = h.txns.len();
    let mut report = Report {
        txns: n,
        ..Report::default()
    };
    let mut anomalies = Vec::new();

    // 1. Who appended what; appends must be unique.
    let mut writer: HashMap<(Key, Elem), usize> = HashMap::new();
    // Per txn, per key: its appends in order.
    let mut appends: Vec<BTreeMap<Key, Vec<Elem>>> = vec![BTreeMap::new(); n];
    for (i, t) in h.txns.iter().enumerate() {
        match t.outcome {
            Outcome::Committed => report.committed += 1,
            Outcome::Aborted => report.aborted += 1,
            Outcome::Unknown => report.unknown += 1,
        }
        for m in &t.ops {
            if let Mop::Append { k, x } = *m {
                if let Some(&other) = writer.get(&(k, x)) {
                    anomalies.push(Anomaly {
                        kind: "duplicate-appends",
                        detail: format!("element {x} appended to key {k} twice"),
                        txns: vec![other, i],
                    });
                }
                writer.insert((k, x), i);
                appends[i].entry(k).or_default().push(x);
            }
        }
    }

    // 2. Internal consistency: each read agrees with the txn's own earlier
    //    reads and appends of that key.
    enum Local {
        Known(Vec<Elem>),
        Suffix(Vec<Elem>),
    }
    for (i, t) in h.txns.iter().enumerate() {
        let mut state: HashMap<Key, Local> = HashMap::new();
        for m in &t.ops {
            match m {
                Mop::Append { k, x } => {
                    match state.entry(*k).or_insert(Local::Suffix(Vec::new())) {
                        Local::Known(l) | Local::Suffix(l) => l.push(*x),
                    }
                }
                Mop::Read { k, v } => {
                    let ok = match state.get(k) {
                        None => true,
                        Some(Local::Known(l)) => l == v,
                        Some(Local::Suffix(s)) => v.ends_with(s),
                    };
                    if !ok {
                        let expected = match &state[k] {
                            Local::Known(l) => format!("{l:?}"),
                            Local::Suffix(s) => format!("a list ending with {s:?}"),
                        };
                        anomalies.push(Anomaly {
                            kind: "internal",
                            detail: format!("T{i} read key {k} as {v:?}, expected {expected}"),
                            txns: vec![i],
                        });
                    }
                    state.insert(*k, Local::Known(v.clone()));
                }
            }
        }
    }

    // 3. Which txns count as committed: the committed ones, plus unknown
    //    ones whose appends somebody observed.
    let mut committed: Vec<bool> = h
        .txns
        .iter()
        .map(|t| t.outcome == Outcome::Committed)
        .collect();
    let observed = |k: Key, x: Elem| {
        h.txns.iter().any(|t| {
            t.outcome == Outcome::Committed
                && t.ops
                    .iter()
                    .any(|m| matches!(m, Mop::Read { k: rk, v } if *rk == k && v.contains(&x)))
        }) || h
            .final_state
            .as_ref()
            .is_some_and(|f| f.get(&k).is_some_and(|l| l.contains(&x)))
    };
    for (i, t) in h.txns.iter().enumerate() {
        if t.outcome == Outcome::Unknown
            && t.ops
                .iter()
                .any(|m| matches!(*m, Mop::Append { k, x } if observed(k, x)))
        {
            committed[i] = true;
        }
    }
    let ctx = Ctx { h };

    // The external part of each committed read: the elements before the
    // reader's own appends. (txn, key, full read, external length)
    let mut reads: Vec<(usize, Key, &Vec<Elem>, usize)> = Vec::new();
    for (i, t) in h.txns.iter().enumerate() {
        if !committed[i] {
            continue;
        }
        for m in &t.ops {
            if let Mop::Read { k, v } = m {
                let ext = v
                    .iter()
                    .position(|x| writer.get(&(*k, *x)) == Some(&i))
                    .unwrap_or(v.len());
                reads.push((i, *k, v, ext));
            }
        }
    }

    // 4. Every element of a committed read: once, appended by somebody, and
    //    not by an aborted txn (G1a).
    for &(i, k, v, _) in &reads {
        let mut seen = std::collections::HashSet::new();
        for &x in v {
            if !seen.insert(x) {
                anomalies.push(Anomaly {
                    kind: "duplicate-elements",
                    detail: format!("T{i} read key {k} as {v:?}: {x} twice"),
                    txns: vec![i],
                });
            }
            match writer.get(&(k, x)) {
                None => anomalies.push(Anomaly {
                    kind: "garbage-read",
                    detail: format!("T{i} read {x} in key {k}, which nobody appended"),
                    txns: vec![i],
                }),
                Some(&w) if h.txns[w].outcome == Outcome::Aborted => anomalies.push(Anomaly {
                    kind: "G1a",
                    detail: format!("T{i} read {x} in key {k}, appended by aborted T{w}"),
                    txns: vec![w, i],
                }),
                Some(_) => {}
            }
        }
    }

    // 5. Version order per key: the longest list observed; every other
    //    observation must be a prefix of it.
    let mut order: BTreeMap<Key, (Vec<Elem>, Option<usize>)> = BTreeMap::new();
    let mut observations: Vec<(Option<usize>, Key, &Vec<Elem>)> =
        reads.iter().map(|&(i, k, v, _)| (Some(i), k, v)).collect();
    if let Some(f) = &h.final_state {
        observations.extend(f.iter().map(|(k, v)| (None, *k, v)));
    }
    for &(i, k, v) in &observations {
        let e = order.entry(k).or_insert_with(|| (Vec::new(), i));
        if v.len() > e.0.len() {
            *e = (v.clone(), i);
        }
    }
    let who =
        |i: Option<usize>| i.map_or_else(|| "the final read".to_string(), |i| format!("T{i}"));
    for &(i, k, v) in &observations {
        let (longest, by) = &order[&k];
        if !longest.starts_with(v) {
            anomalies.push(Anomaly {
                kind: "incompatible-order",
                detail: format!(
                    "{} read key {k} as {v:?}, not a prefix of {longest:?} read by {}",
                    who(i),
                    who(*by)
                ),
                txns: i.into_iter().chain(*by).collect(),
            });
        }
    }
    if let Some(f) = &h.final_state {
        for (i, t) in h.txns.iter().enumerate() {
            if t.outcome != Outcome::Committed {
                continue;
            }
            for m in &t.ops {
                if let Mop::Append { k, x } = *m
                    && !f.get(&k).is_some_and(|l| l.contains(&x))
                {
                    anomalies.push(Anomaly {
                        kind: "lost-write",
                        detail: format!(
                            "committed T{i} appended {x} to key {k}; the final state is {:?}",
                            f.get(&k).cloned().unwrap_or_default()
                        ),
                        txns: vec![i],
                    });
                }
            }
        }
    }

    // 6. G1b: a read that ends on an element its writer later superseded.
    for &(i, k, v, ext) in &reads {
        if ext == 0 {
            continue;
        }
        let x = v[ext - 1];
        if let Some(&w) = writer.get(&(k, x))
            && w != i
            && committed[w]
        {
            let last = appends[w][&k].last().copied();
            if last != Some(x) {
                anomalies.push(Anomaly {
                    kind: "G1b",
                    detail: format!(
                        "T{i} read key {k} as {:?}, ending on {x}, but T{w} went on to append {:?}",
                        &v[..ext],
                        appends[w][&k]
                    ),
                    txns: vec![w, i],
                });
            }
        }
    }

    // 7. Lost updates: two committed txns that appended to a key after
    //    reading the same (external) state of it.
    let mut based_on: HashMap<(Key, usize), Vec<usize>> = HashMap::new();
    for (i, t) in h.txns.iter().enumerate() {
        if !committed[i] {
            continue;
        }
        let mut last_read: HashMap<Key, &Vec<Elem>> = HashMap::new();
        let mut done: std::collections::HashSet<Key> = std::collections::HashSet::new();
        for m in &t.ops {
            match m {
                Mop::Read { k, v } => {
                    last_read.insert(*k, v);
                }
                Mop::Append { k, .. } => {
                    if done.insert(*k)
                        && let Some(v) = last_read.get(k)
                    {
                        based_on.entry((*k, v.len())).or_default().push(i);
                    }
                }
            }
        }
    }
    let mut lost: Vec<_> = based_on
        .into_iter()
        .filter(|(_, ts)| ts.len() > 1)
        .collect();
    lost.sort();
    for ((k, len), ts) in lost {
        anomalies.push(Anomaly {
            kind: "lost-update",
            detail: format!(
                "{} all appended to key {k} after reading it with {len} elements\n{}",
                ts.iter()
                    .map(|t| format!("T{t}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                ctx.explain_txns(&ts)
            ),
            txns: ts,
        });
    }

    // 8. Dependency edges between committed txns.
    let mut g = Graph::new(n);
    let mut add = |g: &mut Graph, a: usize, b: usize, t: u8, k: Key| {
        if g.add(a, b, t, k) {
            report.edges[t.trailing_zeros() as usize] += 1;
        }
    };
    for (&k, (list, _)) in &order {
        let ws: Vec<Option<usize>> = list
            .iter()
            .map(|x| writer.get(&(k, *x)).copied().filter(|&w| committed[w]))
            .collect();
        for pair in ws.windows(2) {
            if let [Some(a), Some(b)] = *pair {
                add(&mut g, a, b, WW, k);
            }
        }
    }
    for &(i, k, v, ext) in &reads {
        if ext > 0
            && let Some(&w) = writer.get(&(k, v[ext - 1]))
            && committed[w]
        {
            add(&mut g, w, i, WR, k);
        }
        let list = &order[&k].0;
        if list.starts_with(&v[..ext])
            && let Some(next) = list.get(ext)
            && let Some(&w) = writer.get(&(k, *next))
            && committed[w]
        {
            add(&mut g, i, w, RW, k);
        }
    }
    let mut by_process: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, t) in h.txns.iter().enumerate() {
        if committed[i] {
            by_process.entry(t.process).or_default().push(i);
        }
    }
    for ts in by_process.values_mut() {
        ts.sort_by_key(|&i| h.txns[i].begin);
        for pair in ts.windows(2) {
            add(&mut g, pair[0], pair[1], PROCESS, 0);
        }
    }

    // 9. Real time: a reader that began after a writer's COMMIT returned
    //    must see it; a reader cannot see a writer that began after it ended.
    for a in 0..n {
        for &(b, t) in &g.adj[a] {
            let (ta, tb) = (&h.txns[a], &h.txns[b]);
            if t == RW && ta.outcome == Outcome::Committed && tb.end < ta.begin {
                anomalies.push(Anomaly {
                    kind: "stale-read",
                    detail: format!(
                        "T{a} began after T{b}'s COMMIT returned but did not see its write\n{}",
                        ctx.explain_cycle(&g, &[a, b], RW)
                    ),
                    txns: vec![a, b],
                });
            }
            if t == WR && tb.end < ta.begin {
                anomalies.push(Anomaly {
                    kind: "future-read",
                    detail: format!(
                        "T{b} read T{a}'s write but finished before T{a} began\n{}",
                        ctx.explain_cycle(&g, &[a, b], WR)
                    ),
                    txns: vec![a, b],
                });
            }
        }
    }

    // 10. Cycles.
    // G0: ww cycles.
    let (comp, comps) = g.sccs(WW);
    for (c, members) in comps.iter().enumerate() {
        if let Some(cycle) = cycle_in(&g, members[0], WW, &comp, c) {
            anomalies.push(cycle_anomaly(&ctx, &g, "G0", cycle, WW));
        }
    }
    // G1c: ww/wr cycles that are not G0, with and without process edges.
    let mut in_g1_cycle = vec![false; n];
    for (kind, base) in [("G1c", WW | WR), ("G1c-process", WW | WR | PROCESS)] {
        let (comp, comps) = g.sccs(base);
        if kind == "G1c" {
            for &m in comps.iter().flatten() {
                in_g1_cycle[m] = true;
            }
        }
        for (c, members) in comps.iter().enumerate() {
            // Prefer a cycle through a wr (or process) edge.
            let mut found = None;
            'search: for &a in members {
                for &(b, t) in &g.adj[a] {
                    if t & base & !WW != 0
                        && comp[b] == c
                        && let Some(p) = g.path(b, a, base, &comp, c)
                    {
                        let mut cycle = vec![a];
                        cycle.extend(&p[..p.len() - 1]);
                        found = Some(cycle);
                        break 'search;
                    }
                }
            }
            if let Some(cycle) = found {
                let (_, process) = cycle_edge_types(&g, &cycle, base);
                if kind == "G1c" || process > 0 {
                    anomalies.push(cycle_anomaly(&ctx, &g, kind, cycle, base));
                }
            }
        }
    }
    // G-single (one rw edge) and G2-item (≥ 2), with and without process
    // edges. Every cycle lies inside one SCC of all edges.
    for (kind, base) in [
        ("G-single", WW | WR),
        ("G-single-process", WW | WR | PROCESS),
    ] {
        let all = base | RW;
        let (comp, comps) = g.sccs(all);
        let mut cyclic_components = vec![false; comps.len()];
        for (c, members) in comps.iter().enumerate() {
            'search: for &r in members {
                for &(w, t) in &g.adj[r] {
                    if t == RW
                        && comp[w] == c
                        && let Some(p) = g.path(w, r, base, &comp, c)
                    {
                        // r -rw-> w ⇝ r
                        let mut cycle = vec![r];
                        cycle.extend(&p[..p.len() - 1]);
                        let (_, process) = cycle_edge_types(&g, &cycle, base);
                        if kind == "G-single" || process > 0 {
                            anomalies.push(cycle_anomaly(&ctx, &g, kind, cycle, all));
                        }
                        cyclic_components[c] = true;
                        break 'search;
                    }
                }
            }
        }
        if kind == "G-single" {
            // Components with cycles but no G-single: write skew (G2-item),
            // unless a G0/G1c lies inside (already reported).
            for (c, members) in comps.iter().enumerate() {
                if cyclic_components[c] || members.iter().any(|&m| in_g1_cycle[m]) {
                    continue;
                }
                report.g2_item += 1;
                if report.g2_examples.len() < 5
                    && let Some(cycle) = cycle_in(&g, members[0], all, &comp, c)
                {
                    report
                        .g2_examples
                        .push(cycle_anomaly(&ctx, &g, "G2-item", cycle, all));
                }
            }
        }
    }
    report.anomalies = anomalies;
    report
}

/// A shortest cycle through `start` (or, failing that, through any node of
/// its component) over `mask`.
fn cycle_in(g: &Graph, start: usize, mask: u8, comp: &[usize], c: usize) -> Option<Vec<usize>> {
    for &(b, t) in &g.adj[start] {
        if t & mask != 0
            && comp[b] == c
            && let Some(p) = g.path(b, start, mask, comp, c)
        {
            let mut cycle = vec![start];
            cycle.extend(&p[..p.len() - 1]);
            return Some(cycle);
        }
    }
    None
}

fn cycle_anomaly(
    ctx: &Ctx<'_>,
    g: &Graph,
    kind: &'static str,
    cycle: Vec<usize>,
    mask: u8,
) -> Anomaly {
    Anomaly {
        kind,
        detail: format!(
            "cycle of {} transactions:\n{}",
            cycle.len(),
            ctx.explain_cycle(g, &cycle, mask)
        ),
        txns: cycle,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} txns ({} committed, {} aborted, {} unknown); edges ww={} wr={} rw={} process={}; \
             G2-item (write skew, allowed) components: {}; anomalies: {}",
            self.txns,
            self.committed,
            self.aborted,
            self.unknown,
            self.edges[0],
            self.edges[1],
            self.edges[2],
            self.edges[3],
            self.g2_item,
            self.anomalies.len()
        )?;
        for a in self.anomalies.iter().take(20) {
            writeln!(f, "{}: {}", a.kind, a.detail)?;
        }
        Ok(())
    }
}

/// The history in Jepsen's JSON format (one op per line, an `invoke` at
/// BEGIN and an `ok`/`fail`/`info` completion at COMMIT or ROLLBACK), for
/// checking it again offline with elle-cli or another Elle implementation.
pub fn to_jepsen_json(h: &History) -> String {
    let mops = |t: &Txn, completed: bool| {
        let parts: Vec<String> = t
            .ops
            .iter()
            .map(|m| match m {
                Mop::Read { k, v } if completed => format!(
                    "[\"r\",{k},[{}]]",
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Mop::Read { k, .. } => format!("[\"r\",{k},null]"),
                Mop::Append { k, x } => format!("[\"append\",{k},{x}]"),
            })
            .collect();
        format!("[{}]", parts.join(","))
    };
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (i, t) in h.txns.iter().enumerate() {
        events.push((t.begin, i, false));
        events.push((t.end, i, true));
    }
    events.sort_unstable();
    let mut out = String::new();
    for (index, &(time, i, completed)) in events.iter().enumerate() {
        let t = &h.txns[i];
        let kind = match (completed, t.outcome) {
            (false, _) => "invoke",
            (true, Outcome::Committed) => "ok",
            (true, Outcome::Aborted) => "fail",
            (true, Outcome::Unknown) => "info",
        };
        let _ = writeln!(
            out,
            "{{\"index\":{index},\"time\":{time},\"type\":\"{kind}\",\"process\":{},\"f\":\"txn\",\"value\":{}}}",
            t.process,
            mops(t, completed)
        );
    }
    out
}
