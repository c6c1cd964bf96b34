//! Read-only templates: basic SELECTs and aggregations (plus the `q` constructor).
//! Each picks values from the row's world so that filters match existing rows.

use super::{Class, Gen, Query, Tables, Task, Template};

pub(super) fn q(
    class: Class,
    task: Task,
    tables: Tables,
    prompt: String,
    sql: String,
    explanation: String,
) -> Query {
    Query {
        class,
        task,
        tables,
        prompt,
        sql,
        explanation,
    }
}

pub(super) fn b_list_by_cat(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let cat = g.pick(&w.ents.iter().map(|r| r.cat).collect::<Vec<_>>());
    let verb = g.pick(&["List", "Show", "Display", "Find", "Get"]);
    let prompt = match g.int(0, 3) {
        0 => format!(
            "{verb} the names of all {} whose {} is {cat}.",
            e.plural, e.cat_noun
        ),
        1 => format!("Which {} have {} {cat}?", e.plural, e.cat_noun),
        2 => format!(
            "What are the names of the {} with a {} of {cat}?",
            e.plural, e.cat_noun
        ),
        _ => format!(
            "{verb} every {} where the {} is {cat}.",
            e.singular, e.cat_noun
        ),
    };
    let sql = format!(
        "SELECT name FROM {} WHERE {} = '{cat}';",
        e.table, e.cat_col
    );
    let expl = format!(
        "This query selects the name column from the {} table, keeping only rows whose {} is '{cat}'.",
        e.table, e.cat_col
    );
    q(Class::Basic, Task::Retrieval, Tables::E, prompt, sql, expl)
}

pub(super) fn b_num_filter(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let mut nums: Vec<i64> = w.ents.iter().map(|r| r.num).collect();
    nums.sort_unstable();
    let greater = g.chance(0.6);
    let (op, words, t) = if greater {
        let t = nums[g.int(0, nums.len() as i64 - 2) as usize];
        (
            ">",
            g.pick(&["more than", "greater than", "above", "over", "exceeding"]),
            t,
        )
    } else {
        let t = nums[g.int(1, nums.len() as i64 - 1) as usize];
        (
            "<",
            g.pick(&["less than", "below", "under", "lower than"]),
            t,
        )
    };
    let verb = g.pick(&["List", "Show", "Find", "Display"]);
    let prompt = match g.int(0, 2) {
        0 => format!("{verb} the {} with a {} {words} {t}.", e.plural, e.num_noun),
        1 => format!("Which {} have a {} {words} {t}?", e.plural, e.num_noun),
        _ => format!(
            "{verb} all {} whose {} is {words} {t}, with their {}.",
            e.plural, e.num_noun, e.num_noun
        ),
    };
    let sql = format!(
        "SELECT name, {c} FROM {} WHERE {c} {op} {t};",
        e.table,
        c = e.num_col
    );
    let expl = format!(
        "This query returns the name and {} of rows in {} where {} is {words} {t}.",
        e.num_col, e.table, e.num_col
    );
    q(Class::Basic, Task::Retrieval, Tables::E, prompt, sql, expl)
}

pub(super) fn b_count_cat(g: &mut Gen) -> Query {
    let (w, e) = (g.w, &g.w.d.entity);
    let cat = g.pick(&w.ents.iter().map(|r| r.cat).collect::<Vec<_>>());
    let prompt = match g.int(0, 2) {
        0 => format!("How many {} have {} {cat}?", e.plural, e.cat_noun),
        1 => format!(
            "Count the number of {} whose {} is {cat}.",
            e.plural, e.cat_noun
        ),
        _ => format!(
            "What is the number of {} with {} {cat}?",
            e.plural, e.cat_noun
        ),
    };
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {} = '{cat}';",
        e.table, e.cat_col
    );
    let expl = format!(
        "This query counts the rows of the {} table whose {} is '{cat}'.",
        e.table, e.cat_col
    );
    q(Class::Basic, Task::Analytics, Tables::E, prompt, sql, expl)
}

pub(super) fn b_events_year(g: &mut Gen) -> Query {
    let (w, v) = (g.w, &g.w.d.event);
    let y = g.pick(&w.years());
    let verb = g.pick(&["Show", "List", "Retrieve", "Get"]);
    let prompt = match g.int(0, 2) {
        0 => format!("{verb} all {} from {y}.", v.plural),
        1 => format!("{verb} every {} recorded in {y}.", v.singular),
        _ => format!("What {} took place in the year {y}?", v.plural),
    };
    let sql = format!("SELECT * FROM {} WHERE year = {y};", v.table);
    let expl = format!(
        "This query selects all columns of {} rows whose year is {y}.",
        v.table
    );
    q(Class::Basic, Task::Retrieval, Tables::F, prompt, sql, expl)
}

pub(super) fn b_top(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let k = g.int(1, 3);
    let high = g.chance(0.6);
    let (adj, dir) = if high {
        (g.pick(&["highest", "largest", "greatest"]), "DESC")
    } else {
        (g.pick(&["lowest", "smallest"]), "ASC")
    };
    let prompt = if k == 1 {
        match g.int(0, 1) {
            0 => format!("Which {} has the {adj} {}?", e.singular, e.num_noun),
            _ => format!("Find the {} with the {adj} {}.", e.singular, e.num_noun),
        }
    } else {
        match g.int(0, 1) {
            0 => format!(
                "List the top {k} {} by {} ({adj} first).",
                e.plural, e.num_noun
            ),
            _ => format!("Show the {k} {} with the {adj} {}.", e.plural, e.num_noun),
        }
    };
    let sql = format!(
        "SELECT name, {c} FROM {} ORDER BY {c} {dir} LIMIT {k};",
        e.table,
        c = e.num_col
    );
    let expl = format!(
        "This query sorts {} by {} in {} order and keeps the first {k} row(s).",
        e.table,
        e.num_col,
        if high { "descending" } else { "ascending" }
    );
    q(Class::Basic, Task::Retrieval, Tables::E, prompt, sql, expl)
}

fn a_sum_year(g: &mut Gen) -> Query {
    let (w, v) = (g.w, &g.w.d.event);
    let y = g.pick(&w.years());
    let prompt = match g.int(0, 2) {
        0 => format!("What is the total {} in {y}?", v.measure_noun),
        1 => format!(
            "Calculate the total {} of {} in {y}.",
            v.measure_noun, v.plural
        ),
        _ => format!(
            "Find the sum of {} across all {} in {y}.",
            v.measure_noun, v.plural
        ),
    };
    let sql = format!(
        "SELECT SUM({}) FROM {} WHERE year = {y};",
        v.measure_col, v.table
    );
    let expl = format!(
        "This query adds up {} over the {} rows whose year is {y}.",
        v.measure_col, v.table
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

fn a_avg_by_cat(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let fun = g.pick(&[
        ("average", "AVG"),
        ("maximum", "MAX"),
        ("minimum", "MIN"),
        ("total", "SUM"),
    ]);
    let prompt = match g.int(0, 2) {
        0 => format!(
            "What is the {} {} of {} for each {}?",
            fun.0, e.num_noun, e.plural, e.cat_noun
        ),
        1 => format!("Show the {} {} per {}.", fun.0, e.num_noun, e.cat_noun),
        _ => format!(
            "Calculate the {} {} of {}, grouped by {}.",
            fun.0, e.num_noun, e.plural, e.cat_noun
        ),
    };
    let sql = format!(
        "SELECT {cat}, {f}({n}) FROM {} GROUP BY {cat};",
        e.table,
        cat = e.cat_col,
        f = fun.1,
        n = e.num_col
    );
    let expl = format!(
        "This query groups {} by {} and computes the {} of {} in each group with {}.",
        e.table, e.cat_col, fun.0, e.num_col, fun.1
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn a_count_by_year(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let prompt = match g.int(0, 2) {
        0 => format!("How many {} were there in each year?", v.plural),
        1 => format!("Count the {} per year.", v.plural),
        _ => format!("Show the number of {} by year.", v.plural),
    };
    let sql = format!("SELECT year, COUNT(*) FROM {} GROUP BY year;", v.table);
    let expl = format!(
        "This query groups {} by year and counts the rows in each year.",
        v.table
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

fn a_minmax(g: &mut Gen) -> Query {
    let v = &g.w.d.event;
    let (adj, f) = g.pick(&[
        ("highest", "MAX"),
        ("maximum", "MAX"),
        ("lowest", "MIN"),
        ("minimum", "MIN"),
    ]);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "What is the {adj} {} of any {}?",
            v.measure_noun, v.singular
        ),
        _ => format!("Find the {adj} {} recorded.", v.measure_noun),
    };
    let sql = format!("SELECT {f}({}) FROM {};", v.measure_col, v.table);
    let expl = format!(
        "This query returns the {adj} value of {} in {} using {f}.",
        v.measure_col, v.table
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

fn a_having(g: &mut Gen) -> Query {
    let e = &g.w.d.entity;
    let (prompt, cond) = match g.int(0, 2) {
        0 => (
            format!(
                "Which {} values have more than one {}?",
                e.cat_noun, e.singular
            ),
            "> 1",
        ),
        1 => (
            format!(
                "List the {} values with at least two {}.",
                e.cat_noun, e.plural
            ),
            ">= 2",
        ),
        _ => (
            format!(
                "Show each {} that is shared by more than one {}, with the count.",
                e.cat_noun, e.singular
            ),
            "> 1",
        ),
    };
    let sql = format!(
        "SELECT {c}, COUNT(*) FROM {} GROUP BY {c} HAVING COUNT(*) {cond};",
        e.table,
        c = e.cat_col
    );
    let expl = format!(
        "This query groups {} by {} and keeps the groups whose row count is {cond}.",
        e.table, e.cat_col
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::E,
        prompt,
        sql,
        expl,
    )
}

fn a_sum_by_entity(g: &mut Gen) -> Query {
    let (v, e) = (&g.w.d.event, &g.w.d.entity);
    let prompt = match g.int(0, 1) {
        0 => format!(
            "What is the total {} for each {} id?",
            v.measure_noun, e.singular
        ),
        _ => format!("Sum the {} of {} per {}.", v.measure_noun, v.plural, e.id),
    };
    let sql = format!(
        "SELECT {eid}, SUM({m}) AS total_{m} FROM {} GROUP BY {eid};",
        v.table,
        eid = e.id,
        m = v.measure_col
    );
    let expl = format!(
        "This query groups {} by {} and sums {} in each group.",
        v.table, e.id, v.measure_col
    );
    q(
        Class::Aggregation,
        Task::Analytics,
        Tables::F,
        prompt,
        sql,
        expl,
    )
}

pub(super) const AGGREGATION: &[Template] = &[
    a_sum_year,
    a_avg_by_cat,
    a_count_by_year,
    a_minmax,
    a_having,
    a_sum_by_entity,
];
