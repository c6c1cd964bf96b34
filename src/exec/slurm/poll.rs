//! Asking Slurm about a job: `scontrol -o show job ID` parsed into a [`JobStatus`], the states
//! that end a job, `scancel`, and how often to ask. (`sacct` needs an accounting database many
//! small clusters lack; `scontrol` answers from the controller itself.)

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// What `scontrol` says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, ...
    pub state: String,
    /// Why it is pending or ended (`Resources`, `NonZeroExitCode`, `None`...).
    pub reason: Option<String>,
    /// `EXIT:SIGNAL` of the batch script.
    pub exit_code: Option<String>,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Known(JobStatus),
    /// The controller no longer knows the job (purged `MinJobAge` after it ended).
    Gone,
}

/// States after which a job never runs again.
const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

impl JobStatus {
    pub fn is_terminal(&self) -> bool {
        TERMINAL.contains(&self.state.as_str())
    }

    /// What the user should do about a job that ended in this state without succeeding.
    pub fn advice(&self) -> &'static str {
        match self.state.as_str() {
            "CANCELLED" => "it was cancelled (scancel or an administrator); rerun to resume from its checkpoints",
            "TIMEOUT" => "it hit its time limit; raise the stage's `slurm.time`, then rerun to resume from its checkpoints",
            "OUT_OF_MEMORY" => "it ran out of memory; raise the stage's `slurm.mem`",
            "NODE_FAIL" | "BOOT_FAIL" => "its compute node failed; rerun to resume from its checkpoints",
            "PREEMPTED" => "it was preempted by a higher-priority job; rerun to resume from its checkpoints",
            "DEADLINE" => "it missed its deadline",
            _ => "see its log",
        }
    }
}

/// Parse `scontrol -o show job ID` output (one line of `Key=Value` fields).
pub fn parse(text: &str) -> Option<JobStatus> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let state = field("JobState")?;
    Some(JobStatus {
        // `CANCELLED by 0` is printed as `JobState=CANCELLED` plus a separate reason; some
        // versions add a `+` suffix for states with flags (`COMPLETING+`).
        state: state.trim_end_matches('+').to_string(),
        reason: field("Reason").filter(|r| r != "None"),
        exit_code: field("ExitCode"),
    })
}

/// Ask the controller about `job`. An error is a failure to ask (controller unreachable...).
pub fn query(job: &str) -> Result<Query, String> {
    // Own process group, as sbatch's (see `sbatch::submit`): a Ctrl-C is for t2s only.
    let out = Command::new("scontrol")
        .process_group(0)
        .args(["-o", "show", "job", job])
        .output()
        .map_err(|e| format!("cannot run scontrol: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(Query::Gone);
        }
        return Err(format!(
            "scontrol show job {job} failed ({}): {}",
            out.status,
            stderr.trim()
        ));
    }
    parse(&stdout).map(Query::Known).ok_or_else(|| {
        format!(
            "scontrol show job {job}: no JobState in its output: {}",
            stdout.trim()
        )
    })
}

/// `scancel JOB`; failures are returned for the log, not fatal (the job may have ended).
pub fn cancel(job: &str) -> Result<(), String> {
    let out = Command::new("scancel")
        .process_group(0)
        .arg(job)
        .output()
        .map_err(|e| format!("cannot run scancel: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// How long to wait before asking again about a job that has existed for `age`: often at
/// first (short jobs end fast), then less, up to every 10 s, to spare the controller.
pub fn interval(age: Duration) -> Duration {
    (age / 10).clamp(Duration::from_millis(250), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: &str = "JobId=7 JobName=t2s:smoke:load UserId=root(0) GroupId=root(0) \
        MCS_label=N/A Priority=1 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED \
        Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 \
        RunTime=00:00:02 TimeLimit=UNLIMITED";

    #[test]
    fn parses_state_reason_and_exit_code() {
        let s = parse(COMPLETED).unwrap();
        assert_eq!(s.state, "COMPLETED");
        assert_eq!(s.reason, None);
        assert_eq!(s.exit_code.as_deref(), Some("0:0"));
        assert!(s.is_terminal());
        let p = parse("JobId=8 JobState=PENDING Reason=Resources Dependency=(null)").unwrap();
        assert_eq!(p.reason.as_deref(), Some("Resources"));
        assert!(!p.is_terminal());
        let f = parse("JobId=9 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0").unwrap();
        assert!(f.is_terminal());
        assert_eq!(f.exit_code.as_deref(), Some("1:0"));
        assert!(parse("slurm_load_jobs error: Invalid job id specified").is_none());
    }

    #[test]
    fn every_failed_end_state_has_advice_and_is_terminal() {
        for state in TERMINAL.iter().filter(|s| **s != "COMPLETED") {
            let s = JobStatus {
                state: state.to_string(),
                reason: None,
                exit_code: None,
            };
            assert!(s.is_terminal());
            assert!(!s.advice().is_empty());
        }
        for running in [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "CONFIGURING",
            "REQUEUED",
        ] {
            let s = JobStatus {
                state: running.into(),
                reason: None,
                exit_code: None,
            };
            assert!(!s.is_terminal(), "{running}");
        }
    }

    #[test]
    fn polling_slows_down_with_age() {
        assert_eq!(interval(Duration::ZERO), Duration::from_millis(250));
        assert_eq!(interval(Duration::from_secs(20)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_secs(3600)), Duration::from_secs(10));
    }
}
