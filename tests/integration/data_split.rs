//! Acceptance 6: splitting is seeded, leak-free (no id or prompt in two subsets), honours the
//! data's own test split, and stratified proportions are within one row per class.

use std::collections::{BTreeMap, HashMap};

use t2s::data::builtin;
use t2s::data::examples::{load_split, write_stored, Stored};
use t2s::data::load::LoadedRow;
use t2s::data::split::{split, Size, SplitParams};

fn stored(rows: Vec<t2s::data::Row>, test_every: usize) -> Vec<Stored> {
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| Stored {
            ids: vec![2, (i % 50) as u32 + 10, 1],
            prompt_len: 1,
            row: LoadedRow {
                split: if test_every > 0 && i % test_every == 0 {
                    "test".into()
                } else {
                    "train".into()
                },
                row,
            },
        })
        .collect()
}

fn no_leaks(subsets: &BTreeMap<String, Vec<Stored>>) {
    let mut id_home: HashMap<i64, &str> = HashMap::new();
    let mut prompt_home: HashMap<&str, &str> = HashMap::new();
    for (name, items) in subsets {
        for s in items {
            let r = &s.row.row;
            assert_eq!(
                *id_home.entry(r.id).or_insert(name),
                name.as_str(),
                "id {} leaks",
                r.id
            );
            let h = prompt_home.entry(r.sql_prompt.trim()).or_insert(name);
            assert_eq!(*h, name.as_str(), "prompt {:?} leaks", r.sql_prompt);
        }
    }
}

#[test]
fn stratified_split_is_leak_free_and_proportional() {
    let mut rows = builtin::generate(21, 4000);
    // Duplicate ids across different prompts must also stay together.
    let dup_id = rows[0].id;
    rows[17].id = dup_id;
    let pool = rows.len();
    let mut per_class: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *per_class.entry(r.sql_complexity.clone()).or_default() += 1;
    }
    let p = SplitParams {
        seed: 3,
        stratify: Some("sql_complexity".into()),
        train: Size::Rest,
        validation: Size::Count(400),
        test: Size::Fraction(0.15),
        use_source_test: true,
    };
    let (subsets, rep) = split(stored(rows.clone(), 0), &p);
    no_leaks(&subsets);
    assert!(!rep.source_test_used);
    let total: usize = subsets.values().map(Vec::len).sum();
    assert_eq!(total + rep.unused, pool);
    let test_n = (0.15 * pool as f64).round() as usize;
    let sizes = [
        ("test", test_n),
        ("validation", 400),
        ("train", pool - test_n - 400),
    ];
    for (name, want) in sizes {
        let got = subsets[name].len();
        assert!(got.abs_diff(want) <= 8, "{name}: {got} rows, asked {want}");
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &subsets[name] {
            *counts.entry(s.row.row.sql_complexity.clone()).or_default() += 1;
        }
        for (c, n_c) in &per_class {
            let expect = want as f64 * *n_c as f64 / pool as f64;
            let got = *counts.get(c).unwrap_or(&0) as f64;
            assert!(
                (got - expect).abs() <= 1.0 + 1e-9,
                "{name}/{c}: {got} rows, expected {expect:.2}"
            );
        }
    }
    // Same seed, same split; another seed, another split.
    let (again, _) = split(stored(rows.clone(), 0), &p);
    let ids = |m: &BTreeMap<String, Vec<Stored>>| {
        m["test"].iter().map(|s| s.row.row.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&subsets), ids(&again));
    let (other, _) = split(stored(rows, 0), &SplitParams { seed: 4, ..p });
    assert_ne!(ids(&subsets), ids(&other));
}

#[test]
fn source_test_split_is_the_test_set_and_subsets_round_trip() {
    let rows = builtin::generate(22, 1000);
    let items = stored(rows, 10);
    let n_test = items.iter().filter(|s| s.row.split == "test").count();
    let p = SplitParams {
        seed: 1,
        stratify: None,
        train: Size::Count(300),
        validation: Size::Fraction(0.1),
        test: Size::Rest,
        use_source_test: true,
    };
    let (subsets, rep) = split(items, &p);
    assert!(rep.source_test_used);
    no_leaks(&subsets);
    // The test set is exactly the source test split (train rows duplicating a test prompt
    // are left out of train and validation).
    assert!(subsets["test"].iter().all(|s| s.row.split == "test"));
    assert_eq!(subsets["test"].len(), n_test);
    assert!(subsets["train"]
        .iter()
        .chain(&subsets["validation"])
        .all(|s| s.row.split == "train"));
    assert_eq!(subsets["train"].len(), 300);

    let tmp = tempfile::tempdir().unwrap();
    for (name, items) in &subsets {
        write_stored(&tmp.path().join(name), items).unwrap();
    }
    let back = load_split(tmp.path(), "validation").unwrap();
    assert_eq!(back.len(), subsets["validation"].len());
    assert_eq!(back[0].row, subsets["validation"][0].row.row);
    assert_eq!(back[0].labels, vec![-100, back[0].input_ids[1] as i64, 1]);
    assert!(load_split(tmp.path(), "nope").is_err());
}
