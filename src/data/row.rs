//! One example in the schema of `gretelai/synthetic_text_to_sql` (11 fields, same names).

use serde::{Deserialize, Serialize};

/// A gretel-schema row. Field names and order are the dataset's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row {
    pub id: i64,
    pub domain: String,
    pub domain_description: String,
    pub sql_complexity: String,
    pub sql_complexity_description: String,
    pub sql_task_type: String,
    pub sql_task_type_description: String,
    pub sql_prompt: String,
    pub sql_context: String,
    pub sql: String,
    pub sql_explanation: String,
}

/// The 11 field names, in the dataset's column order.
pub const FIELDS: [&str; 11] = [
    "id",
    "domain",
    "domain_description",
    "sql_complexity",
    "sql_complexity_description",
    "sql_task_type",
    "sql_task_type_description",
    "sql_prompt",
    "sql_context",
    "sql",
    "sql_explanation",
];
