//! One generated row's tiny database: entity, agent and event rows of a domain, and their
//! rendering as a compact `sql_context` (CREATE TABLE + INSERT statements).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::domains::Domain;

/// The years events fall in (and the years requests may name).
pub const YEARS: std::ops::RangeInclusive<i64> = 2010..=2024;

/// Which tables a query's context needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tables {
    pub entity: bool,
    pub event: bool,
    pub agent: bool,
}

impl Tables {
    pub const E: Tables = Tables {
        entity: true,
        event: false,
        agent: false,
    };
    pub const F: Tables = Tables {
        entity: false,
        event: true,
        agent: false,
    };
    pub const EF: Tables = Tables {
        entity: true,
        event: true,
        agent: false,
    };
    pub const AF: Tables = Tables {
        entity: false,
        event: true,
        agent: true,
    };
    pub const A: Tables = Tables {
        entity: false,
        event: false,
        agent: true,
    };
    pub const EA: Tables = Tables {
        entity: true,
        event: false,
        agent: true,
    };
    pub const ALL: Tables = Tables {
        entity: true,
        event: true,
        agent: true,
    };
}

#[derive(Debug, Clone)]
pub struct EntRow {
    pub id: i64,
    pub name: &'static str,
    pub cat: &'static str,
    pub num: i64,
}

#[derive(Debug, Clone)]
pub struct AgRow {
    pub id: i64,
    pub name: &'static str,
    pub attr: &'static str,
}

#[derive(Debug, Clone)]
pub struct EvRow {
    pub id: i64,
    pub ent: i64,
    pub ag: i64,
    pub measure: i64,
    pub year: i64,
}

/// A row's database. The last entity and the last agent never have events, so "without"
/// queries and outer joins have something to find.
#[derive(Debug, Clone)]
pub struct World {
    pub d: &'static Domain,
    pub ents: Vec<EntRow>,
    pub agents: Vec<AgRow>,
    pub events: Vec<EvRow>,
    /// An entity name not used in `ents` (for INSERTs).
    pub spare_name: &'static str,
    /// Table aliases (distinct) for entity, event and agent tables.
    pub alias: [String; 3],
}

/// A value in `[lo, hi]` rounded to a step that suits the range's size.
fn nice(rng: &mut ChaCha8Rng, (lo, hi): (i64, i64)) -> i64 {
    let span = hi - lo;
    let step = match span {
        s if s >= 100_000 => 1000,
        s if s >= 10_000 => 100,
        s if s >= 1000 => 10,
        _ => 1,
    };
    lo + rng.random_range(0..=span / step) * step
}

/// A table alias: the initials of the table's words, or its first three letters when the
/// initials spell an SQL keyword.
fn initials(table: &str) -> String {
    const KEYWORDS: [&str; 12] = [
        "as", "by", "do", "if", "in", "is", "no", "of", "on", "or", "to", "at",
    ];
    let a: String = table.split('_').filter_map(|w| w.chars().next()).collect();
    if KEYWORDS.contains(&a.as_str()) {
        table.chars().filter(|c| *c != '_').take(3).collect()
    } else {
        a
    }
}

impl World {
    pub fn build(d: &'static Domain, rng: &mut ChaCha8Rng) -> World {
        let e = &d.entity;
        let n_e = rng.random_range(3..=5usize);
        let mut names = e.names.clone();
        names.shuffle(rng);
        let mut nums: Vec<i64> = Vec::new();
        while nums.len() < n_e {
            let v = nice(rng, e.num_range);
            if !nums.contains(&v) {
                nums.push(v);
            }
        }
        let mut ents: Vec<EntRow> = (0..n_e)
            .map(|i| EntRow {
                id: i as i64 + 1,
                name: names[i],
                cat: e.cats[rng.random_range(0..e.cats.len())],
                num: nums[i],
            })
            .collect();
        // Two entities share a category: HAVING and per-category comparisons find something.
        ents[1].cat = ents[0].cat;
        let spare_name = names[n_e];

        let a = &d.agent;
        let n_a = rng.random_range(3..=4usize);
        let mut anames = a.names.clone();
        anames.shuffle(rng);
        let agents: Vec<AgRow> = (0..n_a)
            .map(|i| AgRow {
                id: i as i64 + 1,
                name: anames[i],
                attr: a.attrs[rng.random_range(0..a.attrs.len())],
            })
            .collect();

        let n_f = rng.random_range(3..=6usize);
        let events = (0..n_f)
            .map(|i| EvRow {
                id: i as i64 + 1,
                ent: rng.random_range(1..n_e as i64),
                ag: rng.random_range(1..n_a as i64),
                measure: nice(rng, d.event.range),
                year: rng.random_range(YEARS),
            })
            .collect();

        let mut alias = [
            initials(e.table),
            initials(d.event.table),
            initials(a.table),
        ];
        for i in 1..3 {
            while alias[..i].contains(&alias[i]) {
                alias[i].push('2');
            }
        }
        World {
            d,
            ents,
            agents,
            events,
            spare_name,
            alias,
        }
    }

    /// Entities that have at least one event.
    pub fn ents_with_events(&self) -> Vec<&EntRow> {
        self.ents
            .iter()
            .filter(|r| self.events.iter().any(|f| f.ent == r.id))
            .collect()
    }

    /// Agents that have at least one event.
    pub fn agents_with_events(&self) -> Vec<&AgRow> {
        self.agents
            .iter()
            .filter(|r| self.events.iter().any(|f| f.ag == r.id))
            .collect()
    }

    /// Distinct event years, ascending.
    pub fn years(&self) -> Vec<i64> {
        let mut y: Vec<i64> = self.events.iter().map(|f| f.year).collect();
        y.sort_unstable();
        y.dedup();
        y
    }

    pub fn entity_ddl(&self) -> String {
        let e = &self.d.entity;
        format!(
            "CREATE TABLE {} ({} INT, name VARCHAR(50), {} VARCHAR(50), {} INT);",
            e.table, e.id, e.cat_col, e.num_col
        )
    }

    pub fn agent_ddl(&self) -> String {
        let a = &self.d.agent;
        format!(
            "CREATE TABLE {} ({} INT, name VARCHAR(50), {} VARCHAR(50));",
            a.table, a.id, a.attr_col
        )
    }

    pub fn event_ddl(&self) -> String {
        let (v, e, a) = (&self.d.event, &self.d.entity, &self.d.agent);
        format!(
            "CREATE TABLE {} ({} INT, {} INT, {} INT, {} DECIMAL(10,2), year INT);",
            v.table, v.id, e.id, a.id, v.measure_col
        )
    }

    /// The `sql_context` holding the given tables (entity, agent, event order).
    pub fn context(&self, t: Tables) -> String {
        let (e, v, a) = (&self.d.entity, &self.d.event, &self.d.agent);
        let mut parts = Vec::new();
        if t.entity {
            let vals: Vec<String> = self
                .ents
                .iter()
                .map(|r| format!("({}, '{}', '{}', {})", r.id, r.name, r.cat, r.num))
                .collect();
            parts.push(self.entity_ddl());
            parts.push(format!(
                "INSERT INTO {} ({}, name, {}, {}) VALUES {};",
                e.table,
                e.id,
                e.cat_col,
                e.num_col,
                vals.join(", ")
            ));
        }
        if t.agent {
            let vals: Vec<String> = self
                .agents
                .iter()
                .map(|r| format!("({}, '{}', '{}')", r.id, r.name, r.attr))
                .collect();
            parts.push(self.agent_ddl());
            parts.push(format!(
                "INSERT INTO {} ({}, name, {}) VALUES {};",
                a.table,
                a.id,
                a.attr_col,
                vals.join(", ")
            ));
        }
        if t.event {
            let vals: Vec<String> = self
                .events
                .iter()
                .map(|r| format!("({}, {}, {}, {}, {})", r.id, r.ent, r.ag, r.measure, r.year))
                .collect();
            parts.push(self.event_ddl());
            parts.push(format!(
                "INSERT INTO {} ({}, {}, {}, {}, year) VALUES {};",
                v.table,
                v.id,
                e.id,
                a.id,
                v.measure_col,
                vals.join(", ")
            ));
        }
        parts.join(" ")
    }
}
