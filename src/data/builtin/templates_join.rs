//! Join templates: single joins (inner, left) and multiple joins over the three tables.

use super::templates_select::q;
use super::{Class, Gen, Query, Tables, Task, Template};

fn j_total_per_name(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let [ae, af, _] = &w.alias;
    let prompt = match g.int(0, 2) {
        0 => format!(
            "What is the total {} for each {}?",
            v.measure_noun, e.singular
        ),
        1 => format!(
            "Show each {} name with its total {}.",
            e.singular, v.measure_noun
        ),
        _ => format!(
            "Calculate the sum of {} per {}, listing the {} name.",
            v.measure_noun, e.singular, e.singular
        ),
    };
    let sql = format!(
        "SELECT {ae}.name, SUM({af}.{m}) AS total_{m} FROM {} {ae} JOIN {} {af} ON {ae}.{id} = {af}.{id} GROUP BY {ae}.name;",
        e.table, v.table, m = v.measure_col, id = e.id
    );
    let expl = format!(
        "This query joins {} with {} on {}, then sums {} for each {} name.",
        e.table, v.table, e.id, v.measure_col, e.singular
    );
    q(
        Class::SingleJoin,
        Task::Analytics,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn j_filter_cat(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let [ae, af, _] = &w.alias;
    let cat = g.pick(
        &w.ents_with_events()
            .iter()
            .map(|r| r.cat)
            .collect::<Vec<_>>(),
    );
    let verb = g.pick(&["List", "Show", "Display"]);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "{verb} the {} of {} for {} with {} {cat}.",
            v.measure_noun, v.plural, e.plural, e.cat_noun
        ),
        _ => format!(
            "What {} did {} whose {} is {cat} have, and what was their {}?",
            v.plural, e.plural, e.cat_noun, v.measure_noun
        ),
    };
    let sql = format!(
        "SELECT {ae}.name, {af}.{m} FROM {} {ae} INNER JOIN {} {af} ON {ae}.{id} = {af}.{id} WHERE {ae}.{c} = '{cat}';",
        e.table, v.table, m = v.measure_col, id = e.id, c = e.cat_col
    );
    let expl = format!(
        "This query inner joins {} and {} on {} and keeps rows whose {} is '{cat}'.",
        e.table, v.table, e.id, e.cat_col
    );
    q(
        Class::SingleJoin,
        Task::Retrieval,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn j_left_count(g: &mut Gen) -> Query {
    let (w, e, v) = (g.w, &g.w.d.entity, &g.w.d.event);
    let [ae, af, _] = &w.alias;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "How many {} does each {} have, including those with none?",
            v.plural, e.singular
        ),
        _ => format!(
            "Count the {} of every {}, showing zero for {} without any.",
            v.plural, e.singular, e.plural
        ),
    };
    let sql = format!(
        "SELECT {ae}.name, COUNT({af}.{fid}) AS num_records FROM {} {ae} LEFT JOIN {} {af} ON {ae}.{id} = {af}.{id} GROUP BY {ae}.name;",
        e.table, v.table, fid = v.id, id = e.id
    );
    let expl = format!(
        "This query left joins {} to {} so every {} appears, and counts its matching {}.",
        e.table, v.table, e.singular, v.plural
    );
    q(
        Class::SingleJoin,
        Task::Analytics,
        Tables::EF,
        prompt,
        sql,
        expl,
    )
}

fn j_agent_sum(g: &mut Gen) -> Query {
    let (w, a, v) = (g.w, &g.w.d.agent, &g.w.d.event);
    let [_, af, aa] = &w.alias;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "What is the total {} for each {}?",
            v.measure_noun, a.singular
        ),
        _ => format!(
            "Show every {} with the sum of their {}.",
            a.singular, v.measure_noun
        ),
    };
    let sql = format!(
        "SELECT {aa}.name, SUM({af}.{m}) AS total_{m} FROM {} {aa} JOIN {} {af} ON {aa}.{id} = {af}.{id} GROUP BY {aa}.name;",
        a.table, v.table, m = v.measure_col, id = a.id
    );
    let expl = format!(
        "This query joins {} with {} on {} and sums {} per {}.",
        a.table, v.table, a.id, v.measure_col, a.singular
    );
    q(
        Class::SingleJoin,
        Task::Analytics,
        Tables::AF,
        prompt,
        sql,
        expl,
    )
}

pub(super) const SINGLE_JOIN: &[Template] =
    &[j_total_per_name, j_filter_cat, j_left_count, j_agent_sum];

fn joins3(g: &Gen) -> String {
    let (w, e, v, a) = (g.w, &g.w.d.entity, &g.w.d.event, &g.w.d.agent);
    let [ae, af, aa] = &w.alias;
    format!(
        "FROM {} {af} JOIN {} {ae} ON {af}.{eid} = {ae}.{eid} JOIN {} {aa} ON {af}.{aid} = {aa}.{aid}",
        v.table, e.table, a.table, eid = e.id, aid = a.id
    )
}

fn m_attr_filter(g: &mut Gen) -> Query {
    let (w, e, v, a) = (g.w, &g.w.d.entity, &g.w.d.event, &g.w.d.agent);
    let [ae, af, aa] = &w.alias;
    let val = g.pick(
        &w.agents_with_events()
            .iter()
            .map(|r| r.attr)
            .collect::<Vec<_>>(),
    );
    let prompt = match g.int(0, 1) {
        0 => format!(
            "List the {} and {} names with the {} for {} whose {} is {val}.",
            e.singular, a.singular, v.measure_noun, a.plural, a.attr_noun
        ),
        _ => format!(
            "Show {} of {} with {} {val}, including the {} name and {}.",
            v.plural, a.plural, a.attr_noun, e.singular, v.measure_noun
        ),
    };
    let sql = format!(
        "SELECT {ae}.name, {aa}.name, {af}.{m} {} WHERE {aa}.{c} = '{val}';",
        joins3(g),
        m = v.measure_col,
        c = a.attr_col
    );
    let expl = format!(
        "This query joins {} with {} and {}, and keeps the rows whose {} is '{val}'.",
        v.table, e.table, a.table, a.attr_col
    );
    q(
        Class::MultipleJoins,
        Task::Retrieval,
        Tables::ALL,
        prompt,
        sql,
        expl,
    )
}

fn m_sum_by_cat_attr(g: &mut Gen) -> Query {
    let (w, e, v, a) = (g.w, &g.w.d.entity, &g.w.d.event, &g.w.d.agent);
    let [ae, af, aa] = &w.alias;
    let prompt = match g.int(0, 1) {
        0 => format!(
            "What is the total {} by {} {} and {} {}?",
            v.measure_noun, e.singular, e.cat_noun, a.singular, a.attr_noun
        ),
        _ => format!(
            "Break down the total {} by {} and {}.",
            v.measure_noun, e.cat_noun, a.attr_noun
        ),
    };
    let sql =
        format!(
        "SELECT {ae}.{c}, {aa}.{at}, SUM({af}.{m}) AS total_{m} {} GROUP BY {ae}.{c}, {aa}.{at};",
        joins3(g), c = e.cat_col, at = a.attr_col, m = v.measure_col
    );
    let expl = format!(
        "This query joins the three tables and sums {} for each pair of {} and {}.",
        v.measure_col, e.cat_col, a.attr_col
    );
    q(
        Class::MultipleJoins,
        Task::Analytics,
        Tables::ALL,
        prompt,
        sql,
        expl,
    )
}

fn m_year(g: &mut Gen) -> Query {
    let (w, e, a) = (g.w, &g.w.d.entity, &g.w.d.agent);
    let [ae, af, aa] = &w.alias;
    let y = g.pick(&w.years());
    let prompt = match g.int(0, 1) {
        0 => format!(
            "Which {} and {} pairs appear together in {y}?",
            e.singular, a.singular,
        ),
        _ => format!(
            "List the distinct {} and {} names linked by records from {y}.",
            e.singular, a.singular
        ),
    };
    let sql = format!(
        "SELECT DISTINCT {ae}.name, {aa}.name {} WHERE {af}.year = {y};",
        joins3(g)
    );
    let expl = format!(
        "This query joins {} with {} and {}, filters on year {y}, and removes duplicate pairs.",
        w.d.event.table, e.table, a.table
    );
    q(
        Class::MultipleJoins,
        Task::Retrieval,
        Tables::ALL,
        prompt,
        sql,
        expl,
    )
}

pub(super) const MULTIPLE_JOINS: &[Template] = &[m_attr_filter, m_sum_by_cat_attr, m_year];
