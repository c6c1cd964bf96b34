//! Set-operation (UNION, INTERSECT, EXCEPT) and CTE templates.

use super::templates_select::q;
use super::{Class, Gen, Query, Tables, Task, Template, YEARS};

fn o_union(g: &mut Gen) -> Query {
    let (w, e, a) = (g.w, &g.w.d.entity, &g.w.d.agent);
    let cat = g.pick(&w.ents.iter().map(|r| r.cat).collect::<Vec<_>>());
    let val = g.pick(&w.agents.iter().map(|r| r.attr).collect::<Vec<_>>());
    let prompt = format!(
        "List the names of {} with {} {cat} together with the names of {} with {} {val}.",
        e.plural, e.cat_noun, a.plural, a.attr_noun
    );
    let sql = format!(
        "SELECT name FROM {} WHERE {} = '{cat}' UNION SELECT name FROM {} WHERE {} = '{val}';",
        e.table, e.cat_col, a.table, a.attr_col
    );
    let expl = format!(
        "This query combines names from {} and {} with UNION, removing duplicates.",
        e.table, a.table
    );
    q(
        Class::SetOps,
        Task::Retrieval,
        Tables::EA,
        prompt,
        sql,
        expl,
    )
}

fn o_except(g: &mut Gen) -> Query {
    let (e, v) = (&g.w.d.entity, &g.w.d.event);
    let prompt = match g.int(0, 1) {
        0 => format!("Which {} ids have no {}?", e.singular, v.plural),
        _ => format!(
            "Find the ids of {} that do not appear in {}.",
            e.plural, v.table
        ),
    };
    let sql = format!(
        "SELECT {id} FROM {} EXCEPT SELECT {id} FROM {};",
        e.table,
        v.table,
        id = e.id
    );
    let expl = format!(
        "This query uses EXCEPT to remove ids found in {} from the ids in {}.",
        v.table, e.table
    );
    q(
        Class::SetOps,
        Task::Retrieval,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn o_intersect(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let cat = g.pick(
        &w.ents_with_events()
            .iter()
            .map(|r| r.cat)
            .collect::<Vec<_>>(),
    );
    let prompt = format!(
        "Which {} ids belong to {} with {} {cat} and also appear in the {} records?",
        e.singular, e.plural, e.cat_noun, v.singular
    );
    let sql = format!(
        "SELECT {id} FROM {} WHERE {} = '{cat}' INTERSECT SELECT {id} FROM {};",
        e.table,
        e.cat_col,
        v.table,
        id = e.id
    );
    let expl = format!(
        "This query uses INTERSECT to keep ids present in both filtered {} and {}.",
        e.table, v.table
    );
    q(
        Class::SetOps,
        Task::Retrieval,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn o_union_all(g: &mut Gen) -> Query {
    let (w, v) = (g.w, &g.w.d.event);
    let ys = w.years();
    let y1 = g.pick(&ys);
    let others: Vec<i64> = YEARS.filter(|y| *y != y1).collect();
    let y2 = g.pick(&others);
    let prompt = format!(
        "Show the {} of {} from {y1} and from {y2} in one list, keeping duplicates.",
        v.measure_noun, v.plural
    );
    let sql = format!(
        "SELECT {m} FROM {t} WHERE year = {y1} UNION ALL SELECT {m} FROM {t} WHERE year = {y2};",
        t = v.table,
        m = v.measure_col
    );
    let expl = format!(
        "This query stacks the {} values of two years with UNION ALL.",
        v.measure_col
    );
    q(Class::SetOps, Task::Retrieval, Tables::F, prompt, sql, expl)
}

pub(super) const SET_OPS: &[Template] = &[o_union, o_except, o_intersect, o_union_all];

fn c_top_total(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let ae = &w.alias[0];
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Which {} has the largest total {}?",
            e.singular, v.measure_noun
        ),
        _ => format!(
            "Using a CTE, find the {} with the highest total {}.",
            e.singular, v.measure_noun
        ),
    };
    let sql = format!(
        "WITH totals AS (SELECT {id}, SUM({m}) AS total FROM {} GROUP BY {id}) SELECT {ae}.name, tot.total FROM {} {ae} JOIN totals tot ON {ae}.{id} = tot.{id} ORDER BY tot.total DESC LIMIT 1;",
        v.table, e.table, id = e.id, m = v.measure_col
    );
    let expl = format!(
        "The CTE totals sums {} per {}; the query joins it to {} and keeps the largest total.",
        v.measure_col, e.id, e.table
    );
    q(Class::Ctes, Task::Analytics, Tables::EF, prompt, sql, expl)
}

fn c_above_cat_avg(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let ae = &w.alias[0];
    let prompt = format!(
        "List the {} whose {} is above the average for their {}.",
        e.plural, e.num_noun, e.cat_noun
    );
    let sql = format!(
        "WITH cat_avg AS (SELECT {cat}, AVG({c}) AS avg_{c} FROM {t} GROUP BY {cat}) SELECT {ae}.name, {ae}.{c} FROM {t} {ae} JOIN cat_avg cavg ON {ae}.{cat} = cavg.{cat} WHERE {ae}.{c} > cavg.avg_{c};",
        t = e.table, cat = e.cat_col, c = e.num_col
    );
    let expl = format!(
        "The CTE computes the average {} per {}; the query keeps rows above their group's average.",
        e.num_col, e.cat_col
    );
    q(Class::Ctes, Task::Analytics, Tables::E, prompt, sql, expl)
}

fn c_yearly(g: &mut Gen) -> Query {
    let (w, v) = (g.w, &g.w.d.event);
    let mut totals: Vec<i64> = w
        .years()
        .iter()
        .map(|y| {
            w.events
                .iter()
                .filter(|f| f.year == *y)
                .map(|f| f.measure)
                .sum()
        })
        .collect();
    totals.sort_unstable();
    let max = *totals.last().unwrap_or(&1);
    let t = (max / 2 / 10) * 10;
    let prompt = format!(
        "Using a common table expression, show the years whose total {} exceeds {t}.",
        v.measure_noun
    );
    let sql = format!(
        "WITH yearly AS (SELECT year, SUM({m}) AS total FROM {} GROUP BY year) SELECT year, total FROM yearly WHERE total > {t};",
        v.table,
        m = v.measure_col
    );
    let expl = format!(
        "The CTE yearly sums {} per year; the query keeps years above {t}.",
        v.measure_col
    );
    q(Class::Ctes, Task::Analytics, Tables::F, prompt, sql, expl)
}

fn c_agent_count(g: &mut Gen) -> Query {
    let (w, a, v) = (g.w, &g.w.d.agent, &g.w.d.event);
    let aa = &w.alias[2];
    let prompt = match g.int(0, 1) {
        0 => format!(
            "How many {} does each {} have? Use a CTE.",
            v.plural, a.singular
        ),
        _ => format!(
            "For each {} with {}, count them using a common table expression.",
            a.singular, v.plural
        ),
    };
    let sql = format!(
        "WITH counts AS (SELECT {id}, COUNT(*) AS n FROM {} GROUP BY {id}) SELECT {aa}.name, cnt.n FROM {} {aa} JOIN counts cnt ON {aa}.{id} = cnt.{id};",
        v.table, a.table, id = a.id
    );
    let expl = format!(
        "The CTE counts {} rows per {}; the query joins it to {} for the names.",
        v.table, a.id, a.table
    );
    q(Class::Ctes, Task::Analytics, Tables::AF, prompt, sql, expl)
}

pub(super) const CTES: &[Template] = &[c_top_total, c_above_cat_avg, c_yearly, c_agent_count];
