//! Write templates (INSERT/UPDATE/DELETE and CREATE/ALTER/DROP), all "basic SQL", and the
//! full list of basic-SQL templates. Every statement changes the database it runs against.

use super::templates_select::{b_count_cat, b_events_year, b_list_by_cat, b_num_filter, b_top, q};
use super::{Class, Gen, Query, Tables, Task, Template, YEARS};

fn d_insert(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let cat = g.pick(&e.cats);
    let v = g.int(e.num_range.0, e.num_range.1);
    let id = w.ents.len() + 1;
    let name = w.spare_name;
    let prompt = match g.int(0, 2) {
        0 => format!(
            "Insert a new {} named {name} with {} {cat} and a {} of {v}.",
            e.singular, e.cat_noun, e.num_noun
        ),
        1 => format!(
            "Add a {} called {name} ({} {cat}, {} {v}) with id {id}.",
            e.singular, e.cat_noun, e.num_noun
        ),
        _ => format!(
            "Add a record for the {} {name}: {} {cat}, {} {v}.",
            e.singular, e.cat_noun, e.num_noun
        ),
    };
    let sql = format!(
        "INSERT INTO {} ({}, name, {}, {}) VALUES ({id}, '{name}', '{cat}', {v});",
        e.table, e.id, e.cat_col, e.num_col
    );
    let expl = format!(
        "This query inserts one row for '{name}' into the {} table.",
        e.table
    );
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn d_insert_event(g: &mut Gen) -> Query {
    let (w, v, e, a) = (g.w, &g.w.d.event, &g.w.d.entity, &g.w.d.agent);
    let id = w.events.len() + 1;
    let eid = g.int(1, w.ents.len() as i64);
    let aid = g.int(1, w.agents.len() as i64);
    let m = g.int(v.range.0, v.range.1);
    // A new event may also fall in the year after the last one recorded.
    let y = g.int(*YEARS.start(), *YEARS.end() + 1);
    let prompt = format!(
        "Record a new {} with id {id} for {} {eid} and {} {aid}: {} {m} in {y}.",
        v.singular, e.singular, a.singular, v.measure_noun
    );
    let sql = format!(
        "INSERT INTO {} ({}, {}, {}, {}, year) VALUES ({id}, {eid}, {aid}, {m}, {y});",
        v.table, v.id, e.id, a.id, v.measure_col
    );
    let expl = format!("This query adds one row to the {} table.", v.table);
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

fn d_update(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let r = &w.ents[g.int(0, w.ents.len() as i64 - 1) as usize];
    let mut v = g.int(e.num_range.0, e.num_range.1);
    if v == r.num {
        v += 1;
    }
    let verb = g.pick(&["Update", "Change", "Set"]);
    let prompt = format!(
        "{verb} the {} of the {} {} to {v}.",
        e.num_noun, e.singular, r.name
    );
    let sql = format!(
        "UPDATE {} SET {} = {v} WHERE name = '{}';",
        e.table, e.num_col, r.name
    );
    let expl = format!(
        "This query sets {} to {v} for the row named '{}' in {}.",
        e.num_col, r.name, e.table
    );
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn d_update_attr(g: &mut Gen) -> Query {
    let (w, a) = (g.w, &g.w.d.agent);
    let r = &w.agents[g.int(0, w.agents.len() as i64 - 1) as usize];
    let others: Vec<&str> = a.attrs.iter().copied().filter(|x| *x != r.attr).collect();
    let val = g.pick(&others);
    let prompt = format!(
        "Change the {} of the {} {} to {val}.",
        a.attr_noun, a.singular, r.name
    );
    let sql = format!(
        "UPDATE {} SET {} = '{val}' WHERE name = '{}';",
        a.table, a.attr_col, r.name
    );
    let expl = format!(
        "This query updates {} to '{val}' for '{}' in {}.",
        a.attr_col, r.name, a.table
    );
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::A,
        prompt,
        sql,
        expl,
    )
}

fn d_delete_year(g: &mut Gen) -> Query {
    let (w, v) = (g.w, &g.w.d.event);
    let y = g.pick(&w.years());
    let (word, op) = g.pick(&[("from", "="), ("before", "<"), ("after", ">")]);
    // "before"/"after" must hit a row: fall back to equality when nothing qualifies.
    let hits = w.events.iter().any(|f| match op {
        "<" => f.year < y,
        ">" => f.year > y,
        _ => true,
    });
    let (word, op) = if hits { (word, op) } else { ("from", "=") };
    let verb = g.pick(&["Delete", "Remove"]);
    let prompt = format!("{verb} all {} {word} {y}.", v.plural);
    let sql = format!("DELETE FROM {} WHERE year {op} {y};", v.table);
    let expl = format!(
        "This query deletes rows of {} whose year is {op} {y}.",
        v.table
    );
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

fn d_delete_ent(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let r = &w.ents[g.int(0, w.ents.len() as i64 - 1) as usize];
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Remove the {} named {} from the database.",
            e.singular, r.name
        ),
        _ => format!("Delete the record of the {} {}.", e.singular, r.name),
    };
    let sql = format!("DELETE FROM {} WHERE name = '{}';", e.table, r.name);
    let expl = format!(
        "This query deletes the row named '{}' from {}.",
        r.name, e.table
    );
    q(
        Class::Basic,
        Task::Manipulation,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn dd_create(g: &mut Gen) -> Query {
    let a = &g.w.d.agent;
    let pk = g.chance(0.5);
    let prompt = if pk {
        format!(
            "Create a table {} with columns {} (primary key), name and {}.",
            a.table, a.id, a.attr_col
        )
    } else {
        format!(
            "Create a table for {} with an id, a name and their {}.",
            a.plural, a.attr_noun
        )
    };
    let sql = format!(
        "CREATE TABLE {} ({} INT{}, name VARCHAR(50), {} VARCHAR(50));",
        a.table,
        a.id,
        if pk { " PRIMARY KEY" } else { "" },
        a.attr_col
    );
    let expl = format!(
        "This statement creates the {} table with three columns.",
        a.table
    );
    q(Class::Basic, Task::Definition, Tables::E, prompt, sql, expl)
}

fn dd_alter(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let (col, ty, noun) = g.pick(&[
        ("notes", "TEXT", "notes"),
        ("status", "VARCHAR(20)", "status"),
        ("last_updated", "DATE", "last updated date"),
        ("rating", "INT", "rating"),
        ("email", "VARCHAR(100)", "contact email"),
    ]);
    let prompt = match g.int(0, 1) {
        0 => format!("Add a {noun} column named {col} to the {} table.", e.table),
        _ => format!(
            "Alter the {} table to store a {noun} ({col}) for each {}.",
            e.table, e.singular
        ),
    };
    let sql = format!("ALTER TABLE {} ADD COLUMN {col} {ty};", e.table);
    let expl = format!(
        "This statement adds the {col} column of type {ty} to {}.",
        e.table
    );
    q(Class::Basic, Task::Definition, Tables::E, prompt, sql, expl)
}

fn dd_drop(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let prompt = match g.int(0, 1) {
        0 => format!("Drop the {} table.", v.table),
        _ => format!(
            "Remove the table that stores {} from the database.",
            v.plural
        ),
    };
    let sql = format!("DROP TABLE {};", v.table);
    let expl = format!(
        "This statement drops the {} table and all its rows.",
        v.table
    );
    q(
        Class::Basic,
        Task::Definition,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn dd_view(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let cat = g.pick(&w.ents.iter().map(|r| r.cat).collect::<Vec<_>>());
    let slug: String = cat
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let view = format!("{slug}_{}", e.table);
    let prompt = format!(
        "Create a view named {view} that shows all {} with {} {cat}.",
        e.plural, e.cat_noun
    );
    let sql = format!(
        "CREATE VIEW {view} AS SELECT * FROM {} WHERE {} = '{cat}';",
        e.table, e.cat_col
    );
    let expl = format!(
        "This statement creates the view {view} over {} filtered on {}.",
        e.table, e.cat_col
    );
    q(Class::Basic, Task::Definition, Tables::E, prompt, sql, expl)
}

fn dd_index(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let col = if g.chance(0.5) { e.cat_col } else { e.num_col };
    let prompt = format!(
        "Create an index on the {col} column of the {} table.",
        e.table
    );
    let sql = format!("CREATE INDEX idx_{t}_{col} ON {t} ({col});", t = e.table);
    let expl = format!(
        "This statement creates an index on {}.{col} to speed up lookups.",
        e.table
    );
    q(Class::Basic, Task::Definition, Tables::E, prompt, sql, expl)
}

/// All basic-SQL templates: retrieval, manipulation and definition.
pub(super) const BASIC_ALL: &[Template] = &[
    b_list_by_cat,
    b_num_filter,
    b_count_cat,
    b_events_year,
    b_top,
    d_insert,
    d_insert_event,
    d_update,
    d_update_attr,
    d_delete_year,
    d_delete_ent,
    dd_create,
    dd_alter,
    dd_drop,
    dd_view,
    dd_index,
];
