//! Run and node states: what `runs.status` and `nodes.status` hold, what `t2s runs` prints.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Defines a state enum stored and printed as its lowercase name.
macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The name stored in the tracking DB and printed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} `{text}`", stringify!($name)).into())
                })
            }
        }
    };
}

states! {
    /// A run's state (`runs.status`).
    RunStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Interrupted = "interrupted",
    }
}

states! {
    /// A node's state in a run (`nodes.status`).
    NodeStatus {
        Running = "running",
        /// Computed by this run.
        Ran = "ran",
        /// Found in the cache (local or remote).
        Cached = "cached",
        /// Computed by this run from a checkpoint an interrupted attempt left.
        Resumed = "resumed",
        Failed = "failed",
        /// Not started: something it needs failed.
        Skipped = "skipped",
        Interrupted = "interrupted",
    }
}

impl NodeStatus {
    /// The node's output exists: it ran, resumed, or was found.
    pub fn succeeded(self) -> bool {
        matches!(self, Self::Ran | Self::Cached | Self::Resumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Interrupted,
        ] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(NodeStatus::parse("resumed"), Some(NodeStatus::Resumed));
        assert_eq!(NodeStatus::parse("done"), None);
    }
}
