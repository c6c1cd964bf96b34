//! Templates with subqueries and window functions.

use super::templates_select::q;
use super::{Class, Gen, Query, Tables, Task, Template};

fn s_above_avg(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let (word, op) = g.pick(&[("above", ">"), ("higher than", ">"), ("below", "<")]);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Which {} have a {} {word} the average?",
            e.plural, e.num_noun
        ),
        _ => format!(
            "List the {} whose {} is {word} the average {} of all {}.",
            e.plural, e.num_noun, e.num_noun, e.plural
        ),
    };
    let sql = format!(
        "SELECT name FROM {t} WHERE {c} {op} (SELECT AVG({c}) FROM {t});",
        t = e.table,
        c = e.num_col
    );
    let expl = format!(
        "This query compares each {} with the average from a subquery over {} and keeps those {word} it.",
        e.num_col, e.table
    );
    q(
        Class::Subqueries,
        Task::Retrieval,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn s_in_year(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let y = g.pick(&w.years());
    let prompt = match g.int(0, 1) {
        0 => format!("List the {} that had {} in {y}.", e.plural, v.plural),
        _ => format!(
            "Which {} have at least one {} from {y}?",
            e.plural, v.singular
        ),
    };
    let sql = format!(
        "SELECT name FROM {} WHERE {id} IN (SELECT {id} FROM {} WHERE year = {y});",
        e.table,
        v.table,
        id = e.id
    );
    let expl = format!(
        "This query keeps {} whose {} appears in a subquery of {} rows from {y}.",
        e.plural, e.id, v.table
    );
    q(
        Class::Subqueries,
        Task::Retrieval,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn s_not_in(g: &mut Gen) -> Query {
    let (e, v) = (&g.w.d.entity, &g.w.d.event);
    let prompt = match g.int(0, 1) {
        0 => format!("Which {} have no {}?", e.plural, v.plural),
        _ => format!("Find the {} without any {}.", e.plural, v.plural),
    };
    let sql = format!(
        "SELECT name FROM {} WHERE {id} NOT IN (SELECT {id} FROM {});",
        e.table,
        v.table,
        id = e.id
    );
    let expl = format!(
        "This query returns {} whose {} does not appear in the {} table.",
        e.plural, e.id, v.table
    );
    q(
        Class::Subqueries,
        Task::Retrieval,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn s_max_event(g: &mut Gen) -> Query {
    let (e, v) = (&g.w.d.entity, &g.w.d.event);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Which {} had the {} with the highest {}?",
            e.singular, v.singular, v.measure_noun
        ),
        _ => format!(
            "Find the name of the {} behind the largest {}.",
            e.singular, v.measure_noun
        ),
    };
    let sql = format!(
        "SELECT name FROM {} WHERE {id} = (SELECT {id} FROM {} ORDER BY {m} DESC LIMIT 1);",
        e.table,
        v.table,
        id = e.id,
        m = v.measure_col
    );
    let expl = format!(
        "This query finds the {} of the {} row with the largest {} in a subquery, then returns its name.",
        e.id, v.table, v.measure_col
    );
    q(
        Class::Subqueries,
        Task::Analytics,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn s_delete(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let cat = g.pick(
        &w.ents_with_events()
            .iter()
            .map(|r| r.cat)
            .collect::<Vec<_>>(),
    );
    let verb = g.pick(&["Delete", "Remove"]);
    let prompt = format!(
        "{verb} all {} of {} whose {} is {cat}.",
        v.plural, e.plural, e.cat_noun
    );
    let sql = format!(
        "DELETE FROM {} WHERE {id} IN (SELECT {id} FROM {} WHERE {c} = '{cat}');",
        v.table,
        e.table,
        id = e.id,
        c = e.cat_col
    );
    let expl = format!(
        "This query deletes {} rows whose {} belongs to a {} with {} '{cat}', found by a subquery.",
        v.table, e.id, e.singular, e.cat_col
    );
    q(
        Class::Subqueries,
        Task::Manipulation,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn s_update(g: &mut Gen) -> Query {
    let (w, a, v) = (g.w, &g.w.d.agent, &g.w.d.event);
    let val = g.pick(
        &w.agents_with_events()
            .iter()
            .map(|r| r.attr)
            .collect::<Vec<_>>(),
    );
    let pct = g.pick(&[5, 10, 20]);
    let factor = format!("{:.2}", 1.0 + pct as f64 / 100.0);
    let prompt = format!(
        "Increase the {} by {pct}% for {} of {} with {} {val}.",
        v.measure_noun, v.plural, a.plural, a.attr_noun
    );
    let sql = format!(
        "UPDATE {} SET {m} = {m} * {factor} WHERE {id} IN (SELECT {id} FROM {} WHERE {c} = '{val}');",
        v.table,
        a.table,
        m = v.measure_col,
        id = a.id,
        c = a.attr_col
    );
    let expl = format!(
        "This query multiplies {} by {factor} for {} rows whose {} has {} '{val}'.",
        v.measure_col, v.table, a.singular, a.attr_col
    );
    q(
        Class::Subqueries,
        Task::Manipulation,
        Tables::AF,
        prompt,
        sql,
        expl,
    )
}

pub(super) const SUBQUERIES: &[Template] = &[
    s_above_avg,
    s_in_year,
    s_not_in,
    s_max_event,
    s_delete,
    s_update,
];

fn w_rank(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let (f, word) = g.pick(&[
        ("RANK", "Rank"),
        ("DENSE_RANK", "Rank"),
        ("ROW_NUMBER", "Number"),
    ]);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "{word} the {} by {} in descending order.",
            e.plural, e.num_noun
        ),
        _ => format!(
            "{word} all {} from the highest {} to the lowest.",
            e.plural, e.num_noun
        ),
    };
    let sql = format!(
        "SELECT name, {c}, {f}() OVER (ORDER BY {c} DESC) AS {c}_rank FROM {};",
        e.table,
        c = e.num_col
    );
    let expl = format!(
        "This query uses {f} over {} ordered by {} descending.",
        e.table, e.num_col
    );
    q(Class::Window, Task::Analytics, Tables::E, prompt, sql, expl)
}

fn w_partition_rank(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "For each {}, number the {} by {} from highest to lowest.",
            e.cat_noun, e.plural, e.num_noun
        ),
        _ => format!(
            "Rank {} within their {} by {}.",
            e.plural, e.cat_noun, e.num_noun
        ),
    };
    let sql = format!(
        "SELECT name, {cat}, {c}, ROW_NUMBER() OVER (PARTITION BY {cat} ORDER BY {c} DESC) AS row_num FROM {};",
        e.table,
        cat = e.cat_col,
        c = e.num_col
    );
    let expl = format!(
        "This query numbers rows of {} within each {} partition, ordered by {} descending.",
        e.table, e.cat_col, e.num_col
    );
    q(Class::Window, Task::Analytics, Tables::E, prompt, sql, expl)
}

fn w_running(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Show the running total of {} ordered by year.",
            v.measure_noun
        ),
        _ => format!(
            "Calculate the cumulative {} of {} over the years.",
            v.measure_noun, v.plural
        ),
    };
    let sql = format!(
        "SELECT {id}, year, {m}, SUM({m}) OVER (ORDER BY year, {id}) AS running_total FROM {};",
        v.table,
        id = v.id,
        m = v.measure_col
    );
    let expl = format!(
        "This query computes a running SUM of {} ordered by year.",
        v.measure_col
    );
    q(Class::Window, Task::Analytics, Tables::F, prompt, sql, expl)
}

fn w_lag(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let (f, word) = g.pick(&[("LAG", "previous"), ("LEAD", "next")]);
    let prompt = format!(
        "Show each {} with its {} and the {} of the {word} {} by year.",
        v.singular, v.measure_noun, v.measure_noun, v.singular
    );
    let sql = format!(
        "SELECT {id}, year, {m}, {f}({m}) OVER (ORDER BY year, {id}) AS {word}_{m} FROM {};",
        v.table,
        id = v.id,
        m = v.measure_col
    );
    let expl = format!(
        "This query uses {f} to show the {word} row's {} in year order.",
        v.measure_col
    );
    q(Class::Window, Task::Analytics, Tables::F, prompt, sql, expl)
}

fn w_share(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "What percentage of the total {} does each {} represent?",
            v.measure_noun, v.singular
        ),
        _ => format!(
            "Show each {}'s share of the overall {} as a percentage.",
            v.singular, v.measure_noun
        ),
    };
    let sql = format!(
        "SELECT {id}, {m}, 100.0 * {m} / SUM({m}) OVER () AS pct_of_total FROM {};",
        v.table,
        id = v.id,
        m = v.measure_col
    );
    let expl = format!(
        "This query divides each {} by the total over an empty window.",
        v.measure_col
    );
    q(Class::Window, Task::Analytics, Tables::F, prompt, sql, expl)
}

fn w_partition_sum(g: &mut Gen) -> Query {
    let (e, v) = (&g.w.d.entity, &g.w.d.event);
    let prompt = format!(
        "Show each {} along with the total {} of its {}.",
        v.singular, v.measure_noun, e.singular
    );
    let sql = format!(
        "SELECT {id}, {eid}, {m}, SUM({m}) OVER (PARTITION BY {eid}) AS {e}_total FROM {};",
        v.table,
        id = v.id,
        eid = e.id,
        m = v.measure_col,
        e = e.table
    );
    let expl = format!(
        "This query sums {} over a window partitioned by {}.",
        v.measure_col, e.id
    );
    q(Class::Window, Task::Analytics, Tables::F, prompt, sql, expl)
}

pub(super) const WINDOW: &[Template] = &[
    w_rank,
    w_partition_rank,
    w_running,
    w_lag,
    w_share,
    w_partition_sum,
];
